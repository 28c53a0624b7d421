"""Worker side of the Dask fit: plain functions on one partition, which always holds whole groups.

A partition goes through two steps, each the whole-frame step of the in-memory path applied to its
rows: `clean_partition` (listwise deletion, as ``formula._data.prepare``) and `design_partition`
(the formula with the categorical levels of the whole data, the response and groups, as
``formula._design.build_design``).  The result, ``rows``, stays in the memory of its worker; every
later function takes it (or the objective built from it) and returns a few numbers per partition:
sums over rows, or one value per group.  Row-level outputs (`diagnostics`, `predict_frame`) are
pandas frames built on request, inside a Dask graph.
"""
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..engine import _glm, _glmm, _kernels
from ..engine._laplace import MarginalLikelihood, evenly_spaced_groups
from ..engine._lmm import lmm_stats
from ..engine._memory import set_thresholds
from ..engine._pirls import pirls_information
from ..engine._segments import group_starts
from ..formula import _data
from ..formula._codes import group_codes
from ..formula._design import engine_data as make_engine_data
from .._validation import check_proportion, check_response, check_trials

#: patsy transforms whose state (means, knots) would be computed per partition, not on the whole data
STATEFUL = ("center", "standardize", "scale", "bs", "cr", "cc", "te")


@dataclass
class RowSpec:
    """What a partition needs to turn its rows into the model's arrays (small and picklable)."""

    formula: str
    groups: object  # the grouping column's label
    response: list  # response columns (two: successes + failures)
    numeric: list  # predictor columns read as numbers
    categorical: list  # predictor columns inside C(...)
    extra: dict  # "offset" / "exposure" / "weights" / "var_weights" / "freq_weights" -> column label
    family: str
    missing: str = "drop"
    env: dict = field(default_factory=lambda: {"np": np})  # names besides the columns (formula_environment)
    levels: dict = None  # column -> the categories of the whole data (set between the two steps)


# ---------------------------------------------------------------------------------- step 1: cleaning
def clean_partition(frame, spec):
    """The partition's usable rows (prepare's listwise deletion) and its categorical values.

    Returns a dict with the cleaned frame, per-row vectors, group labels, the rows dropped (count and
    reasons by column) and, for each categorical predictor, the distinct values present.
    """
    extra_cols = list(dict.fromkeys(spec.extra.values()))
    cleaned, bad, reasons = _data.clean_frame(frame, spec.response, spec.numeric + extra_cols, spec.categorical,
                                              required_numeric=extra_cols)
    labels = frame[spec.groups]
    missing_group = _data._missing_labels(labels)
    if missing_group.any():
        reasons[str(spec.groups)] = int(missing_group.sum())
        bad = bad | missing_group
    _data._refuse_missing(spec.missing, bad, reasons, frame.index)
    rows = np.flatnonzero(~bad)
    kept = cleaned.iloc[rows]
    vectors = {what: cleaned[col].to_numpy(dtype=float)[rows] for what, col in spec.extra.items()}
    for what, values in vectors.items():
        _data._positive(values, what, kept.index)
    values = {}
    for col in spec.numeric + spec.categorical:
        series = kept[col]
        if col in spec.categorical or series.dtype.kind not in "biuf":
            values[col] = series.dropna().unique()
    return {"frame": kept, "vectors": vectors, "groups": _data.tidy_labels(labels.iloc[rows]),
            "n_dropped": int(bad.sum()), "reasons": reasons, "values": values}


def cleaning_summary(part):
    """What the client needs from step 1: rows dropped, reasons, categorical values seen."""
    return {key: part[key] for key in ("n_dropped", "reasons", "values")}


def with_levels(frame, levels):
    """The frame with each categorical column holding the whole data's categories (a copy).

    patsy then makes the same columns in every partition, and the same as on the whole data (its
    levels are the sorted values of the rows kept).  A value outside the levels is a ValueError.
    """
    if not levels:
        return frame
    frame = frame.copy()
    for col, cats in levels.items():
        if col not in frame.columns:
            continue
        series = frame[col]
        coded = pd.Categorical(series, categories=cats)
        unknown = pd.isna(coded) & pd.notna(series).to_numpy()
        if unknown.any():
            new = list(dict.fromkeys(series[unknown].tolist()))
            raise ValueError(f"column {col!r} has values that are not among the fitted data's levels: "
                             f"{', '.join(map(repr, new[:5]))}")
        frame[col] = coded
    return frame


def evaluate_formula(formula, frame, env):
    """The formula on a frame by statsmodels' formula machinery: (endog or None, exog, rows dropped mask)."""
    positional = frame.reset_index(drop=True)
    try:
        try:
            from statsmodels.formula._manager import FormulaManager
        except ImportError:  # statsmodels 0.14: patsy itself
            import patsy

            one_sided = formula.strip().startswith("~")
            build = patsy.dmatrix if one_sided else patsy.dmatrices
            out = build(formula, positional, eval_env=patsy.EvalEnvironment([env]), NA_action="drop",
                        return_type="dataframe")
        else:
            manager = FormulaManager()
            out = manager.get_matrices(formula, positional, eval_env=env, pandas=True,
                                       na_action=manager.get_na_action("drop"))
    except (ValueError, TypeError):
        raise
    except Exception as exc:  # patsy / formulaic evaluation errors
        message = str(exc).strip().splitlines()
        raise ValueError(f"formula {formula!r} could not be evaluated: {type(exc).__name__}: "
                         f"{message[0] if message else ''}") from None
    endog, exog = out if isinstance(out, tuple) else (None, out)
    dropped = ~np.isin(np.arange(len(frame)), np.asarray(exog.index))
    index = frame.index[~dropped]
    for table in (endog, exog):
        if table is not None:
            table.index = index
    return endog, exog, dropped


# ---------------------------------------------------------------------------------- step 2: arrays
def design_partition(part, spec):
    """The partition's arrays, rows sorted by group (as `Design` sorts them), raw predictors.

    Returns a dict: y (a proportion with trials), trials, var_weights / freq_weights (None when not
    given), X, offset (with log exposure), index (the data's row labels), labels and counts by group,
    the formula's column names and the rows step 2 dropped (a NaN or infinity from the formula).
    """
    frame = part["frame"]
    summary = {"n_dropped": 0, "reasons": {}}
    if len(frame) == 0:
        return {"n": 0, "summary": summary}
    frame = with_levels(frame, spec.levels)
    endog, exog, dropped = evaluate_formula(spec.formula, frame, spec.env)
    prepared = _data.Prepared(frame=frame, groups=part["groups"], vectors=part["vectors"], n_dropped=0,
                              dropped_index=[], drop_reasons={}, missing=spec.missing)
    clean = prepared.clean(endog, exog, dropped)
    summary = {"n_dropped": clean.n_dropped, "reasons": clean.drop_reasons}
    y, trials, name = _response(clean, spec.family)
    codes, labels = group_codes(clean.groups)
    order = np.argsort(codes, kind="stable")
    prior = clean.prior_weights
    sort = (lambda v: None if v is None else np.asarray(v, float)[order])
    return {"n": len(y), "y": y[order], "trials": trials[order], "X": clean.exog.to_numpy(dtype=float)[order],
            "offset": np.asarray(clean.offset, float)[order], "var_weights": sort(prior.get("var_weights")),
            "freq_weights": sort(prior.get("freq_weights")), "index": clean.endog.index[order],
            "labels": labels, "counts": np.bincount(codes, minlength=len(labels)), "summary": summary,
            "exog_names": [str(c) for c in clean.exog.columns], "endog_name": name}


def _response(clean, family):
    """(y, trials, name) as `build_design` reads the response (its checks and messages)."""
    endog = clean.endog
    labels = list(endog.index)
    if clean.weights is not None:
        y = endog.iloc[:, 0].to_numpy(dtype=float)
        name = str(endog.columns[0])
        check_proportion(y, name, labels)
        trials = np.asarray(clean.weights, float)
        check_response("binomial", y, trials, name, labels)
    elif endog.shape[1] == 2:
        successes = endog.iloc[:, 0].to_numpy(dtype=float)
        trials = successes + endog.iloc[:, 1].to_numpy(dtype=float)
        name = " + ".join(map(str, endog.columns))
        check_trials(trials, name, labels)
        y = np.divide(successes, trials, out=np.zeros_like(trials), where=trials > 0)
        check_response("binomial", y, trials, name, labels)
    else:
        y = endog.iloc[:, 0].to_numpy(dtype=float)
        trials = np.ones_like(y)
        name = str(endog.columns[0])
        check_response(family, y, None, name, labels)
    return y, trials, name


def design_summary(rows):
    """What the client needs from step 2: sizes, labels and counts by group, names, weights given."""
    out = dict(rows["summary"], n=rows["n"])
    if rows["n"]:
        out.update({key: rows[key] for key in ("labels", "counts", "exog_names", "endog_name")})
        out["freq_total"] = float(np.sum(_ones(rows, "freq_weights")))
        out["counted"] = rows["freq_weights"] is not None and bool(np.any(rows["freq_weights"] != 1.0))
        out["weighted"] = any(rows[k] is not None and np.any(rows[k] != 1.0) for k in ("var_weights", "freq_weights"))
        out["log_var_weights"] = 0.0 if rows["var_weights"] is None else float(
            np.sum(_ones(rows, "freq_weights") * np.log(rows["var_weights"])))
    return out


def _ones(rows, key):
    values = rows[key]
    return np.ones(rows["n"]) if values is None else values


def prior_weights(rows):
    """Each row's weight inside its density (trials times var_weights), as `Design.prior_weights`."""
    return rows["trials"] * _ones(rows, "var_weights")


# ---------------------------------------------------------------------------------- global moments
def moments(rows, center=None, y_center=0.0):
    """Sums for the global predictor scaling and response summaries (two passes: raw, then centred).

    First pass (center None): n, column sums, minima, maxima, the R factor of X (the rank check),
    sums of m y and m (m = prior times frequency weights), y - offset and log y / y^2 (response scale),
    the range of y and whether any offset is non-zero.  Second pass: centred squares of X and of y - offset.
    """
    X, y = rows["X"], rows["y"]
    z = y - rows["offset"]
    if center is not None:
        return ((X - center) ** 2).sum(axis=0), float(np.sum((z - y_center) ** 2))
    m = prior_weights(rows) * _ones(rows, "freq_weights")
    with np.errstate(divide="ignore", invalid="ignore"):
        log_y = float(np.sum(np.log(y)))
    return {"n": len(y), "sum": X.sum(axis=0), "min": X.min(axis=0), "max": X.max(axis=0),
            "r": np.linalg.qr(X, mode="r"), "my": float(np.sum(m * y)), "m": float(np.sum(m)),
            "z": float(np.sum(z)), "zz": float(np.sum(z * z)), "log_y": log_y, "yy": float(np.sum(y * y)),
            "y_min": float(y.min()), "y_max": float(y.max()), "offset": bool(np.any(rows["offset"] != 0))}


# ---------------------------------------------------------------------------------- Laplace / AGQ
def engine_data(rows, scaling, dist, c=1.0):
    """GLMMData on the globally scaled predictors, as `Design.engine_data(scale_response=True)`."""
    freq = _ones(rows, "freq_weights")
    return make_engine_data(dist, rows["y"], np.asfortranarray(scaling.transform(rows["X"])), rows["offset"],
                            prior_weights(rows), freq if np.any(freq != 1.0) else None, rows["counts"], c)


def objective(rows, scaling, dist, nagq, c=1.0):
    """The partition's MarginalLikelihood (kept on its worker: its modes warm-start there)."""
    _kernels.THREADS = 1  # the workers are the parallelism: no kernel threads inside them
    set_thresholds()  # the worker's allocator as in a fit in memory (engine._memory)
    return MarginalLikelihood(dist, engine_data(rows, scaling, dist, c), nagq=nagq)


def with_nodes(objective, nagq):
    """An AGQ objective on the same partition, warm-started from the Laplace modes."""
    agq = MarginalLikelihood(objective.dist, objective.data, nagq=nagq)
    agq.u_warm = objective.u_warm.copy()
    return agq


def evaluate(objective, theta, need_grad):
    with np.errstate(all="ignore"):
        return objective(theta, need_grad=need_grad)


def hessian(objective, theta):
    """The partition's exact Hessian of -log-likelihood (O(p^2) numbers), or None where it has none."""
    with np.errstate(all="ignore"):
        return objective.hessian(theta)


def n_groups(objective):
    return objective.data.n_groups


def pilot(objective, gamma0, scale0, maxiter, tol):
    """The engine's pilot fit (`engine._glmm._pilot_fit`) on this partition's groups, a random share of
    all groups after the shuffle (start, Hessian, the sigma-profile screen: a few numbers)."""
    with np.errstate(all="ignore"):
        return _glmm._pilot_fit(objective.dist, objective.data, gamma0, scale0, maxiter, tol)


def agq_gaps(objective, theta, n_subset=None):
    """AGQ(9) minus Laplace per group on `n_subset` evenly spaced groups of the partition, or their sum
    over all its groups (`engine._glmm.group_gaps`)."""
    with np.errstate(all="ignore"):
        if n_subset is None:
            return float(np.sum(_glmm.group_gaps(objective, theta)))
        keep = evenly_spaced_groups(objective.data.n_groups, max(2, n_subset))
        return _glmm.group_gaps(objective, theta, keep)


def glm_sums(objective, gamma):
    """The partition's `engine._glm.GLMSums` at gamma (the GLM start's Fisher scoring)."""
    return _glm.glm_sums(objective.dist, objective.data, gamma)


def least_squares(objective, target):
    """The partition's normal equations of the GLM start's least-squares point (`engine._glm`)."""
    return _glm.least_squares_sums(objective.data, target)


def eta_range(objective, gamma):
    """(min eta, sum |eta|, rows) of the partition at gamma (sigma_u = 0): the GLM start's distance to the edge."""
    data = objective.data
    eta = data.X @ gamma + data.offset
    return float(np.min(eta, initial=np.inf)), float(np.sum(np.abs(eta))), int(eta.size)


def feasible(objective, gamma):
    """True when every row's mean at gamma (sigma_u = 0) lies inside the family's support."""
    data = objective.data
    return bool(objective.dist.feasible(data.X @ gamma + data.offset).all())


def pirls_block(objective, theta):
    """PIRLS information of the partition at the modes (the start Hessian's beta block)."""
    md = objective.modes_at(theta)
    _, sigma, phi = objective.unpack(theta)
    data = objective.data
    d = md.d if np.all(md.d >= 0) else objective.dist.working_weights(md.eta, data.m, phi)
    return pirls_information(data.X, d, sigma, data.starts, data.counts)


def final(objective, theta):
    """At the optimum: conditional modes, their curvatures and SDs by group, PIRLS information, separated rows."""
    with np.errstate(all="ignore"):
        md = objective.modes_at(theta)
        _, sigma, phi = objective.unpack(theta)
        data, dist = objective.data, objective.dist
        w = dist.working_weights(md.eta, data.m, phi)
        return {"blups": sigma * md.b, "blup_sd": sigma / np.sqrt(md.H), "curvature": md.H,
                "info": pirls_information(data.X, w, sigma, data.starts, data.counts),
                "separated": int(dist.separated_rows(data.y, md.eta))}


# ---------------------------------------------------------------------------------- Gaussian profile
def standardized(rows, scaling, y_center, y_scale):
    """(X_s, y_s, row weights or None) as `engine._one_factor.standardize_gaussian` makes them."""
    w = prior_weights(rows) * _ones(rows, "freq_weights")
    return (scaling.transform(rows["X"]), (rows["y"] - rows["offset"] - y_center) / y_scale,
            None if np.all(w == 1.0) else w)


def lmm_sums(rows, scaling, y_center, y_scale, weighted):
    """The partition's share of the REML/ML sufficient statistics, compressed to O(p^2) numbers per group size.

    M(theta) = W + sum_j c_j(n_j) S_j S_j' depends on each group only through its size n_j (its
    weight total with weights), so the groups of one size enter through T_n = sum S_j S_j'.  Returns
    W and, per size, either the sums S_j themselves (at most p + 1 groups of that size) or T_n.
    """
    X_s, y_s, w = standardized(rows, scaling, y_center, y_scale)
    if weighted and w is None:
        w = np.ones(len(y_s))
    counts = rows["counts"]
    stats = lmm_stats(X_s, y_s, group_starts(counts), counts, w)
    k = stats.sums.shape[1]
    by_size = {}
    sizes, inverse = np.unique(stats.counts, return_inverse=True)
    for s, size in enumerate(sizes):
        S = stats.sums[inverse == s]
        by_size[float(size)] = (len(S), S if len(S) <= k else None, None if len(S) <= k else S.T @ S)
    return stats.within, by_size


def lmm_final(rows, scaling, y_center, y_scale, weighted, theta, beta, sigma2):
    """BLUPs and their SDs by group on the profile's scale (as `engine._lmm.fit_lmm` computes them)."""
    X_s, y_s, w = standardized(rows, scaling, y_center, y_scale)
    if weighted and w is None:
        w = np.ones(len(y_s))
    counts = rows["counts"]
    stats = lmm_stats(X_s, y_s, group_starts(counts), counts, w)
    p = stats.p
    shrink = theta * theta / (1.0 + stats.counts * theta * theta)
    blups = shrink * (stats.sums[:, p] - stats.sums[:, :p] @ beta)
    return blups, np.sqrt(sigma2 * shrink)


# ---------------------------------------------------------------------------------- after the fit
def row_sums(rows, beta, var_re):
    """Sums over rows at the estimates, row i counted f_i times (its frequency weight): sum exp(eta + var_re / 2)
    (the Poisson latent lambda), sum x'beta and sum (x'beta)^2 (its variance), and the count sum f."""
    fixed = rows["X"] @ beta
    f = _ones(rows, "freq_weights")
    return {"lambda": float(np.sum(f * np.exp(fixed + rows["offset"] + 0.5 * var_re))),
            "xb": float(np.sum(f * fixed)), "xb2": float(np.sum(f * fixed * fixed)), "count": float(np.sum(f))}


def diagnostics(rows, beta, blups, scale, dist):
    """`report._tables.diagnostics_table` for the partition's rows (its group effects given in label order)."""
    columns = ["fitted_values", "deviance_residuals", "pearson_residuals", "group_random_effect"]
    if not rows["n"]:
        return pd.DataFrame({c: np.array([], float) for c in columns})
    u = np.repeat(np.asarray(blups, float), rows["counts"])
    mu = dist.mean(rows["X"] @ beta + rows["offset"] + u)
    y, m = rows["y"], prior_weights(rows)
    return pd.DataFrame({"fitted_values": mu, "deviance_residuals": dist.deviance_residuals(y, mu, m, scale),
                         "pearson_residuals": dist.pearson_residuals(y, mu, m, scale),
                         "group_random_effect": u}, index=rows["index"])


def fitted(rows, beta, blups, dist, which="mean"):
    """Conditional mean (or linear predictor) of the partition's rows; with ``which="resid"`` y minus the mean."""
    if not rows["n"]:
        return pd.Series(np.array([], float))
    eta = rows["X"] @ beta + rows["offset"] + np.repeat(np.asarray(blups, float), rows["counts"])
    values = eta if which == "linear" else dist.mean(eta)
    return pd.Series(rows["y"] - values if which == "resid" else values, index=rows["index"])


def pearson_chi2(rows, beta, blups, scale, dist):
    """Sum of squared conditional Pearson residuals of the partition, row i counted f_i times (as nobs)."""
    if not rows["n"]:
        return 0.0
    pearson = diagnostics(rows, beta, blups, scale, dist)["pearson_residuals"].to_numpy()
    return float(np.sum(_ones(rows, "freq_weights") * pearson**2))
