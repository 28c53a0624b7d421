"""Many responses, one right-hand side: ``fit_many`` (one GLMM per response column, e.g. per gene).

The design (patsy, listwise deletion of the predictors, group codes and sort, predictor scaling) is
built once from the right-hand side; each response then only swaps the response vector in (a
response with missing values gets the rows it has, with the same scaling).  Fits run in worker
processes of the standard library's ``concurrent.futures`` (default: one per CPU; the design is sent
to each worker once), in this process (``n_jobs=1``), or on a Dask cluster when ``client`` is a
``distributed.Client`` (the design is scattered to every worker once).  A fit that fails becomes a
row with ``converged=False`` and the error message; it never stops the other fits.

A random part other than one random intercept (random slopes, ``"~ x + (x | g)"``) is fitted as the
single fit of each response (``GLMM.from_formula(f"{response} ~ {rhs}", ...)``), so its numbers are
those of the single fit; the shared-design shortcut covers the random intercept only.  Several
random-effect terms (crossed / nested factors) share their structure and the engine's y-free
cross-products (`_many_multi`); their table has a variance column per term instead of ``var_re``.
"""
import io
import os
import tokenize
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import fdrcorrection

from ..engine import _kernels
from .._multiterm import design_structure, fit_design
from ..engine._mixed import random_intercept
from ..engine._memory import fast_allocation, set_thresholds
from .._progress import Progress
from .._validation import check_family, check_fit_options, check_groups_and_size, check_rank, check_response
from ..engine._families import family_name

COLUMNS = ["response", "term", "estimate", "std_err", "z", "p_value", "q_value", "var_re", "llf", "converged",
           "message"]


def _subset(design, keep):
    """The design restricted to the rows `keep` (a response's non-missing rows); the scaling is kept."""
    codes = design.codes[keep]
    used, codes = np.unique(codes, return_inverse=True)
    counts = np.bincount(codes, minlength=len(used))
    sub = replace(design, y=design.y[keep], trials=design.trials[keep], X=design.X[keep],
                  offset=design.offset[keep], var_weights=design.var_weights[keep],
                  freq_weights=design.freq_weights[keep], codes=codes, group_labels=design.group_labels[used], counts=counts,
                  order=np.argsort(codes, kind="stable"), index=design.index[keep])
    check_groups_and_size(sub.nobs, sub.X.shape[1] + 2, counts, design.dist.name, design.dist.link_name,
                          design.group_name)
    check_rank(sub.X, design.exog_names)
    return sub


@dataclass
class SingleFits:
    """What each response's single fit needs when the shared design cannot be used (random slopes):
    the data without the responses, the right-hand side and the model arguments (picklable)."""

    frame: pd.DataFrame
    rhs: str
    groups: object
    family: object
    exposure: object
    offset: object
    exog_names: list
    var_weights: object = None  # column names or one value per row of `frame`, as GLMM.from_formula takes them
    freq_weights: object = None


def _quoted(name):
    """A response name as patsy reads it on a left-hand side."""
    return name if str(name).isidentifier() else f"Q({str(name)!r})"


def _fit_single(job, name, y, options):
    """The single fit of one response (random slopes): estimates, SEs and llf exactly as GLMM.fit gives."""
    from ..model import GLMM

    frame = job.frame.assign(**{str(name): y})
    model = GLMM.from_formula(f"{_quoted(name)} ~ {job.rhs}", frame, groups=job.groups, family=job.family,
                              exposure=job.exposure, offset=job.offset, var_weights=job.var_weights,
                              freq_weights=job.freq_weights)
    res = model.fit(nagq=options["nagq"], reml=options["reml"], maxiter=options["maxiter"], tol=options["tol"],
                    cov_type=options["cov_type"])
    message = res.optsummary.message or ("converged" if res.converged else "not converged")
    if res.singular:
        message += "; boundary (singular) fit"
    return dict(response=name, terms=list(res.model.exog_names), estimate=res.fe_params.to_numpy(float),
                std_err=res.bse_fe.to_numpy(float), var_re=float(res.var_re), llf=float(res.llf),
                converged=bool(res.converged), message=message)


def _fit_one(design, name, y, options):
    """One response on the shared design -> its rows of the tidy table (a failure is a row too)."""
    from ._many_multi import SharedTerms, fit_response

    if isinstance(design, SharedTerms):  # several random-effect terms
        return fit_response(design, name, y, options)
    terms = list(design.exog_names)
    if isinstance(design, SingleFits):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return _fit_single(design, name, y, options)
        except Exception as exc:  # noqa: BLE001 - reported in the table, the other fits go on
            nan = np.full(len(terms), np.nan)
            return dict(response=name, terms=terms, estimate=nan, std_err=nan, var_re=np.nan, llf=np.nan,
                        converged=False, message=f"{type(exc).__name__}: {exc}")
    try:
        y = np.asarray(y, dtype=float)
        keep = np.isfinite(y)
        sub = replace(design, y=y) if keep.all() else _subset(replace(design, y=np.where(keep, y, 0.0)), keep)
        sub = replace(sub, endog_name=str(name))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check_response(sub.dist.name, sub.y, None, str(name), sub.index)
            fit = fit_design(sub, reml=options["reml"], nagq=options["nagq"], maxiter=options["maxiter"],
                             tol=options["tol"], cov_type=options["cov_type"])
    except Exception as exc:  # noqa: BLE001 - reported in the table, the other fits go on
        nan = np.full(len(terms), np.nan)
        return dict(response=name, terms=terms, estimate=nan, std_err=nan, var_re=np.nan, llf=np.nan,
                    converged=False, message=f"{type(exc).__name__}: {exc}")
    message = fit.opt.message or ("converged" if fit.converged else "not converged")
    if any(fit.singular):
        message += "; boundary (singular) fit"
    return dict(response=name, terms=terms, estimate=np.asarray(fit.beta, float),
                std_err=np.sqrt(np.diag(fit.cov_beta)), var_re=float(fit.cov_re[0][0, 0]), llf=float(fit.llf),
                converged=bool(fit.converged), message=message)


def _fit_chunk(design, names, Y, options, single_thread=False):
    """Fits for a block of responses (the columns of Y)."""
    if single_thread:  # on a Dask worker: the workers are the parallelism
        _kernels.THREADS = 1
    with fast_allocation():
        return [_fit_one(design, name, Y[:, j], options) for j, name in enumerate(names)]


_WORKER_DESIGN = {}


def _init_worker(design):
    _kernels.THREADS = 1  # the processes are the parallelism here
    set_thresholds()
    _WORKER_DESIGN["design"] = design


def _worker_chunk(names, Y, options):
    return _fit_chunk(_WORKER_DESIGN["design"], names, Y, options)


def _table(results, responses):
    """Tidy DataFrame in the order of `responses`, with z, p and Benjamini-Hochberg q-values per term."""
    by_name = {r["response"]: r for r in results}
    ordered = [by_name[name] for name in responses]
    k = len(ordered[0]["terms"])
    per_fit = {key: np.repeat([r[key] for r in ordered], k) for key in ("response", "var_re", "llf", "converged",
                                                                        "message")}
    estimate = np.concatenate([r["estimate"] for r in ordered])
    std_err = np.concatenate([r["std_err"] for r in ordered])
    with np.errstate(invalid="ignore", divide="ignore"):
        z = estimate / std_err
    p_value = 2.0 * stats.norm.sf(np.abs(z))
    q_value = np.full_like(p_value, np.nan)
    for j in range(k):  # per term, over the responses (rows j, j + k, ...)
        p = p_value[j::k]
        ok = np.isfinite(p)
        if ok.any():
            q = np.full(len(p), np.nan)
            q[ok] = fdrcorrection(p[ok], alpha=0.05, method="indep")[1]
            q_value[j::k] = q
    table = pd.DataFrame({"response": per_fit["response"], "term": np.tile(ordered[0]["terms"], len(ordered)),
                          "estimate": estimate, "std_err": std_err, "z": z, "p_value": p_value, "q_value": q_value,
                          "var_re": per_fit["var_re"], "llf": per_fit["llf"], "converged": per_fit["converged"],
                          "message": per_fit["message"]})[COLUMNS]
    if "var_terms" in ordered[0]:  # several terms: one variance column per term (and z column), after var_re
        names = list(dict.fromkeys(c for r in ordered for c in r["var_terms"]))
        at = COLUMNS.index("var_re") + 1
        for i, c in enumerate(names):
            table.insert(at + i, c, np.repeat([r["var_terms"].get(c, np.nan) for r in ordered], k))
        table = table.drop(columns="var_re")
    return table


def _chunks(n, n_chunks):
    bounds = np.linspace(0, n, n_chunks + 1).astype(int)
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


#: fewer responses than this per worker process are fitted in this process (starting processes costs more)
MIN_RESPONSES_PER_WORKER = 4


def _names_used(rhs):
    """The variable names a right-hand side reads (Python names not called as functions, not attributes,
    and the strings inside Q("...")); a response among them would be a predictor too."""
    names = set()
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(rhs).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return names
    for i, tok in enumerate(tokens):
        prev = tokens[i - 1].string if i else ""
        nxt = tokens[i + 1].string if i + 1 < len(tokens) else ""
        if tok.type == tokenize.NAME and nxt != "(" and prev != ".":
            names.add(tok.string)
        elif tok.type == tokenize.STRING and i >= 2 and tokens[i - 1].string == "(" and tokens[i - 2].string == "Q":
            try:
                names.add(str(eval(tok.string, {"__builtins__": {}})))  # a string literal only
            except Exception:  # noqa: BLE001 - not a plain literal: nothing to compare
                pass
    return names


def split_formula(formula, responses):
    """The right-hand side of `formula`, refusing a left-hand side and a response used as a predictor."""
    if not isinstance(formula, str):
        raise TypeError(f"formula must be a string such as '~ x1 + x2' (got {type(formula).__name__})")
    lhs, rhs = formula.split("~", 1) if "~" in formula else ("", formula)
    if lhs.strip():
        raise ValueError(f"fit_many takes a right-hand side only ('~ {rhs.strip()}'); the responses are the "
                         f"columns named in `responses`, so the left-hand side {lhs.strip()!r} would be ignored: "
                         "drop it (to fit one response, give responses=[...] with that column)")
    if not rhs.strip():
        raise ValueError("the formula has no right-hand side; give e.g. '~ 1' or '~ x1 + x2'")
    both = [r for r in responses if str(r) in _names_used(rhs)]
    if both:
        raise ValueError(f"response column{'s' if len(both) > 1 else ''} {', '.join(map(repr, both))} "
                         f"{'are' if len(both) > 1 else 'is'} also a predictor in the formula '~ {rhs.strip()}'; "
                         "a column cannot be fitted on itself: remove it from the formula or from responses")
    return rhs


def fit_many(data, responses, formula, groups=None, family=None, n_jobs=-1, client=None, progress=False, nagq=1,
             reml=True, maxiter=100, tol=1e-6, cov_type="hessian", exposure=None, offset=None, var_weights=None,
             freq_weights=None):
    """Fit one GLMM per response column, all with the same right-hand side.

    Parameters
    ----------
    data : pandas.DataFrame
        The responses and the predictors (and the groups column).
    responses : list of str
        Response columns, each fitted as ``response ~ <formula>``.
    formula : str
        The right-hand side, e.g. ``"~ x1 + x2"`` (a leading ``~`` is optional), with lme4 bars for
        random slopes, ``"~ x1 + (x1 | g)"``.  A left-hand side (``"gene1 ~ x1"``) is refused: the
        responses are the columns of `responses`.  A response that is also a predictor is refused.
    groups : str or array_like, optional
        The grouping column or one label per row; not needed when the formula has a bar ``( | g)``.
    family : statsmodels family instance, optional
        As in `GLMM` (default Gaussian).
    n_jobs : int
        -1 (default) = one worker process per CPU (``concurrent.futures``); k > 1 = k worker processes;
        1 = in this process.  At most one process per MIN_RESPONSES_PER_WORKER responses (fewer in
        all: this process).
    client : distributed.Client, optional
        Run the fits on this Dask cluster instead (``n_jobs`` is then ignored).
    progress : bool
        A progress bar on stderr.
    nagq, reml, maxiter, tol, cov_type :
        As in `GLMM.fit`.
    exposure, offset : str or array_like, optional
        As in `GLMM.from_formula`.
    var_weights, freq_weights : str or array_like, optional
        Prior weights shared by every response (column names or one value per row of `data`), with
        `GLMM.from_formula`'s meaning: each response's numbers are those of its single weighted fit.

    Returns
    -------
    pandas.DataFrame
        One row per (response, term): ``response, term, estimate, std_err, z, p_value, q_value,
        var_re, llf, converged, message``.  ``q_value`` is the Benjamini-Hochberg adjustment of the
        p-values of one term over all responses.  A failed fit has NaN estimates,
        ``converged=False`` and the error in ``message``.  With random slopes the numbers are those
        of each response's single fit (``GLMM.from_formula``), ``var_re`` being its ``var_re``;
        its full covariance of the random effects comes from fitting that response alone.  With
        several random-effect terms (``"~ x + (1|a) + (1|b)"``, ``"~ x + (1|a/b)"``) ``var_re`` is
        replaced by one column per term, ``var_re[a]``, ``var_re[b:a]`` (``var_re[a:x]`` per z column
        of a slope term), and the numbers are those of each response's single fit.

    Notes
    -----
    Rows where a predictor, the group or the offset is missing are dropped for every response;
    rows where only a response is missing are dropped for that response alone.
    """
    from ..model import GLMM

    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame (got {type(data).__name__})")
    if isinstance(responses, str):
        responses = [responses]
    responses = list(responses)
    if not responses:
        raise ValueError("responses is empty: give at least one response column")
    missing = [r for r in responses if r not in data.columns]
    if missing:
        raise ValueError(f"response columns not in data: {', '.join(map(str, missing))}")
    if len(set(responses)) != len(responses):
        raise ValueError("responses contains duplicate column names")
    maxiter, tol, nagq = check_fit_options(maxiter, tol, nagq, cov_type)
    if not isinstance(n_jobs, (int, np.integer)) or n_jobs == 0 or n_jobs < -1:
        raise ValueError(f"n_jobs must be a positive integer or -1 (got {n_jobs!r})")
    rhs = split_formula(formula, responses)
    # the design from the right-hand side alone: a placeholder response valid for every family (0, 1
    # alternating for the Binomial, 1, 2 otherwise: no family refuses it)
    frame = data.drop(columns=responses)
    placeholder = "_glmm_ext_response"
    family = check_family(family)
    frame[placeholder] = np.arange(len(frame)) % 2 + (0.0 if family_name(family) == "binomial" else 1.0)
    model = GLMM.from_formula(f"{placeholder} ~ {rhs}", frame, groups=groups, family=family, exposure=exposure,
                              offset=offset, var_weights=var_weights, freq_weights=freq_weights)
    weights = dict(var_weights=var_weights, freq_weights=freq_weights)
    design = model.design
    if design.terms is not None:  # several random-effect terms: the structure and cross-products shared
        from ._many_multi import prepare

        single = SingleFits(frame.drop(columns=placeholder), rhs, groups, family, exposure, offset,
                            list(design.exog_names), **weights)
        design = prepare(design, single, reml=reml, nagq=nagq)
        Y = data.loc[design.design.index, responses].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    elif not random_intercept(design_structure(design)):  # random slopes: each response's single fit
        design = SingleFits(frame.drop(columns=placeholder), rhs, groups, family, exposure, offset,
                            list(design.exog_names), **weights)
        Y = data[responses].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    else:
        Y = data.loc[design.index, responses].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    options = {"nagq": nagq, "reml": bool(reml), "maxiter": maxiter, "tol": tol, "cov_type": cov_type}
    jobs = (os.cpu_count() or 1) if n_jobs == -1 else int(n_jobs)
    jobs = max(1, min(jobs, len(responses) // MIN_RESPONSES_PER_WORKER))  # no process for fewer responses
    monitor = Progress(enabled=progress, maxiter=len(responses))
    results = []
    with monitor:
        if client is not None:
            results = _run_dask(client, design, responses, Y, options, monitor)
        elif jobs == 1:
            with fast_allocation():
                for j, name in enumerate(responses):
                    results.append(_fit_one(design, name, Y[:, j], options))
                    monitor("fit_many", j + 1, np.nan)
        else:
            blocks = _chunks(len(responses), min(len(responses), 4 * jobs))
            with ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker, initargs=(design,)) as pool:
                futures = [pool.submit(_worker_chunk, responses[b], Y[:, b], options) for b in blocks]
                for future in as_completed(futures):
                    results.extend(future.result())
                    monitor("fit_many", len(results), np.nan)
    return _table(results, responses)


def _run_dask(client, design, responses, Y, options, monitor):
    """The fits as Dask tasks: the design scattered to every worker once, blocks of responses mapped."""
    from distributed import as_completed as dask_completed

    shared = client.scatter(design, broadcast=True)
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    blocks = _chunks(len(responses), min(len(responses), 4 * n_workers))
    futures = [client.submit(_fit_chunk, shared, responses[b], Y[:, b], options, True, pure=False) for b in blocks]
    results = []
    for future in dask_completed(futures):
        results.extend(future.result())
        monitor("fit_many", len(results), np.nan)
    return results
