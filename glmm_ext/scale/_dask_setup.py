"""Setting up a Dask fit on the client: argument checks, the two row steps, global scaling and sizes.

Nothing here holds rows: it gathers sizes, group labels and counts, column sums and R factors from
the partitions (`_dask_rows`), and builds the `DaskDesign` that stands where the in-memory `Design`
stands for the results and report tables.
"""
import dataclasses
import sys

import numpy as np
import pandas as pd

from ..engine._families import Distribution
from ..engine._glmm import check_finite_mle
from ..formula import _data
from ..formula._codes import group_codes
from ..formula._design import GroupedModel, Scaling
from .._validation import check_groups_and_size, check_response_varies
from . import _dask_rows as rows_


@dataclasses.dataclass
class DaskDesign(GroupedModel):
    """What the client knows about the rows of a Dask fit: sizes, groups, names, scaling (no rows).

    It stands where `formula._design.Design` stands for an in-memory model, so the report tables read
    the same names; per-row arrays (``y``, ``X``, ``index`` ...) stay on the workers, and asking for one
    is a NotImplementedError that says so.
    """

    nobs: int
    n_obs: float  # the sum of the frequency weights where there are any
    n_dropped: int
    drop_reasons: dict
    counts: np.ndarray  # rows per group, by code (labels sorted)
    group_labels: np.ndarray
    group_name: str
    exog_names: list
    endog_name: str
    dist: Distribution
    scaling: Scaling
    has_trials: bool = False
    Z = None  # a random intercept only (no random slopes on Dask)

    ROWS = ("y", "X", "offset", "trials", "codes", "order", "index", "var_weights", "freq_weights", "dropped_index",
            "prior_weights", "starts", "engine_data", "lmm_weights", "log_var_weights", "response_scale")

    def __getattr__(self, name):
        if name in DaskDesign.ROWS:
            caller = _entry_point()
            raise NotImplementedError(
                f"{caller + ' is' if caller else 'this is'} not available for a Dask fit: it needs the rows in "
                f"memory (design.{name}), and the rows of a Dask fit stay on its workers. A Dask fit offers the "
                "estimates, report tables, summary(), diagnostics(), fittedvalues, resid and predict(); for "
                "anything else fit the model in memory (GLMM.from_formula(formula, ddf.compute(), ...)) if the "
                "data fit on one machine")
        raise AttributeError(name)



def _entry_point():
    """The glmm_ext function the user called (the outermost glmm_ext frame), e.g. 'glmm_ext.anova()'."""
    frame, name = sys._getframe(2), None
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.split(".")[0] == "glmm_ext" and not module.startswith("glmm_ext.scale._dask"):
            name = f"{frame.f_code.co_name}()"
        elif module.split(".")[0] != "glmm_ext" and name is not None:
            break
        frame = frame.f_back
    return None if name is None or name.startswith("<") else name


def prepare(model):
    """Both row steps, global scaling and checks for a `DaskGLMM`: (DaskDesign, what the fit needs).

    The per-partition arrays stay on the workers; only sizes, labels, counts and sums are gathered.
    """
    client = model.client
    cleaned = client.gather(client.map(rows_.cleaning_summary, model._cleaned, pure=False))
    spec = model._spec = dataclasses.replace(
        model._spec, levels=levels([c["values"] for c in cleaned], model._category_order))
    arrays = client.map(rows_.design_partition, model._cleaned, spec=spec, pure=False)
    info = client.gather(client.map(rows_.design_summary, arrays, pure=False))
    model._cleaned = None  # step 1's frames are released on the workers
    reasons = {}
    for part in cleaned + info:
        for key, value in part["reasons"].items():
            reasons[key] = reasons.get(key, 0) + value
    # in the in-memory order: columns as prepare() reads them, the groups, then what the formula produced
    first = list(dict.fromkeys(spec.response + spec.numeric + list(spec.extra.values()) + spec.categorical))
    first = first + [str(spec.groups), "NaN from evaluating the formula"]
    reasons = dict(sorted(reasons.items(), key=lambda kv: first.index(kv[0]) if kv[0] in first else len(first)))
    n_dropped = sum(part["n_dropped"] for part in cleaned + info)
    keep = [k for k, part in enumerate(info) if part["n"]]  # shuffling can leave partitions empty
    arrays, info = [arrays[k] for k in keep], [info[k] for k in keep]
    codes, labels, counts, names = _groups_and_names(model, info)
    weighted = any(part["weighted"] for part in info)
    dist = model.dist
    if weighted and dist.name in ("poisson", "gamma"):  # as in memory: their fused kernels take no weight
        dist = model.dist = Distribution(model.family, kernels=False)
    n = int(sum(part["n"] for part in info))
    gaussian_identity = dist.name == "gaussian" and dist.link_name == "identity"
    n_params = len(names) + (2 if gaussian_identity else 1 + int(dist.has_dispersion))
    check_groups_and_size(n, n_params, counts, dist.name, dist.link_name, model.group_name)
    scaling, total, y_center, y_scale = _moments(client, arrays, n, names, dist, info[0]["endog_name"])
    counted = any(part["counted"] for part in info)
    design = DaskDesign(
        nobs=n, n_obs=float(sum(part["freq_total"] for part in info)) if counted else n, n_dropped=int(n_dropped),
        drop_reasons=reasons, counts=counts, group_labels=labels, group_name=model.group_name,
        exog_names=list(names), endog_name=info[0]["endog_name"], dist=dist, scaling=scaling,
        has_trials=bool(len(spec.response) == 2 or "weights" in spec.extra))
    splits = np.cumsum([len(part["counts"]) for part in info])[:-1]
    prepared = {"arrays": arrays, "part_codes": np.split(codes, splits), "weighted": weighted,
                "y_center": y_center, "y_scale": y_scale, "response_scale": _response_scale(dist, total, n),
                "log_var_weights": float(sum(part["log_var_weights"] for part in info)),
                "mean_y": total["my"] / total["m"], "objectives": None}
    return design, prepared


def _groups_and_names(model, info):
    """(each partition's groups' codes in sorted label order, sorted labels, counts by code, column names)."""
    dist = model.dist
    if not info:
        check_groups_and_size(0, 1, np.zeros(0, int), dist.name, dist.link_name, model.group_name)
    names = info[0]["exog_names"]
    for part in info:
        if part["exog_names"] != names:
            raise ValueError(f"the formula gives the columns {part['exog_names']} on one partition and {names} on "
                             "another; code the predictors as numbers")
    labels = pd.concat([pd.Series(part["labels"]) for part in info], ignore_index=True)  # keeps their type
    counts = np.concatenate([part["counts"] for part in info])
    codes, sorted_labels = group_codes(labels)
    if len(sorted_labels) != len(labels):
        raise ValueError(f"a group of {model.group_name!r} is split across partitions (its labels are not hashed "
                         "alike, e.g. 1 and '1'); give the column one type")
    sorted_counts = np.empty_like(counts)
    sorted_counts[codes] = counts
    return codes, np.asarray(sorted_labels), sorted_counts, names


def _moments(client, arrays, n, names, dist, endog_name):
    """Two reductions: the global predictor scaling (with the rank check), response sums and checks."""
    first = client.gather(client.map(rows_.moments, arrays, pure=False))
    total = {key: sum(m[key] for m in first) for key in ("sum", "my", "m", "z", "zz", "log_y", "yy")}
    center = total["sum"] / n
    lo, hi = np.min([m["min"] for m in first], axis=0), np.max([m["max"] for m in first], axis=0)
    _check_rank(np.vstack([m["r"] for m in first]), n, names)
    y_center = total["z"] / n if _intercept(lo, hi) >= 0 else 0.0
    second = client.gather(client.map(rows_.moments, arrays, center=center, y_center=y_center, pure=False))
    scaling = _global_scaling(center, np.sqrt(np.sum([s[0] for s in second], axis=0) / n), lo, hi)
    y_span = np.array([min(m["y_min"] for m in first), max(m["y_max"] for m in first)])
    y_scale = None
    if dist.name == "gaussian" and dist.link_name == "identity":  # standardize_gaussian's centre and scale
        y_scale = np.sqrt(sum(s[1] for s in second) / n) if scaling.intercept >= 0 else np.sqrt(total["zz"] / n)
        if not y_scale > 0:
            raise ValueError(f"the response {endog_name!r} does not vary; there is nothing to fit")
    else:
        check_response_varies(dist.name, dist.link_name, y_span, np.array([any(m["offset"] for m in first)]),
                              endog_name)
        with np.errstate(all="ignore"):
            check_finite_mle(dist, Span(y_span))
    return scaling, total, y_center, y_scale


def levels(values, category_order):
    """Categorical column -> its levels over the whole data (sorted, or the dtype's order)."""
    levels = {}
    for col in dict.fromkeys(c for part in values for c in part):
        seen = pd.unique(np.concatenate([np.asarray(part[col], dtype=object) for part in values if col in part]))
        if col in category_order:
            levels[col] = [c for c in category_order[col] if c in set(seen)]
            continue
        numeric = [part for part in values if col not in part]
        if numeric and len(numeric) < len(values):
            raise ValueError(f"column {col!r} reads as numbers on some partitions and as categories on others; "
                             "convert it to one type first")
        try:
            levels[col] = sorted(seen)
        except TypeError:
            levels[col] = sorted(seen, key=str)
    return levels


class Span:
    """y's range as `check_finite_mle` reads data (y, m): all rows equal iff min == max."""

    def __init__(self, y_span):
        self.y, self.m = y_span, np.ones(2)


class Names:
    """The names statsmodels' results wrapper attaches (param_names, cov_names), for a model without rows."""

    def __init__(self, exog_names, endog_name):
        self.param_names = self.xnames = self.cov_names = list(exog_names)
        self.ynames = endog_name

    def wrap_output(self, obj, how="columns", names=None):
        if how == "columns":
            obj = np.asarray(obj)
            return pd.Series(obj, index=self.param_names) if obj.ndim <= 1 else pd.DataFrame(obj, index=self.param_names)
        if how == "cov":
            return pd.DataFrame(np.asarray(obj), index=self.cov_names, columns=self.cov_names)
        return obj


def row_columns(given, columns):
    """what -> column label for the per-row arguments; a clear error for anything but a column of the frame."""
    extra = {}
    for what, value in given.items():
        if value is None:
            continue
        if not _data._is_column_key(value, columns):
            raise ValueError(f"{what}: on a Dask DataFrame give the name of one of its columns; values given by "
                             f"position ({type(value).__name__}) cannot be aligned with its partitions (add them "
                             f"as a column first, e.g. ddf = ddf.assign({what}=...))")
        if value not in columns:
            raise ValueError(f"{what} column {value!r} is not in the data")
        extra[what] = value
    return extra


def check_family_arguments(dist, extra, n_response):
    """The in-memory checks that depend only on the family and the arguments (before any work)."""
    if "exposure" in extra and dist.link_name != "log":
        raise ValueError(f"exposure needs a log link (log(exposure) is the offset); the link is {dist.link_name}: "
                         "give offset= instead")
    if "weights" in extra and (dist.name != "binomial" or n_response != 1):
        raise ValueError("weights are the Binomial number of trials for a proportion response (as glmer's); "
                         f"they are not supported for the {dist.name} family or with two response columns; "
                         "for prior weights (lme4's weights= outside the Binomial family) use var_weights=")
    if n_response == 2 and dist.name != "binomial":
        raise ValueError(f"a two-column response is only for the Binomial family (successes + failures), "
                         f"not {dist.name}")


def _intercept(lo, hi):
    """Index of the first constant non-zero column (the intercept), -1 when there is none."""
    constant = np.flatnonzero((lo == hi) & (lo != 0))
    return int(constant[0]) if constant.size else -1


def _global_scaling(center, sd, lo, hi):
    """`formula._design.make_scaling` from global moments: a constant non-zero column is the intercept."""
    k0 = _intercept(lo, hi)
    scale = np.where(sd > 0, sd, 1.0) if k0 >= 0 else np.sqrt(sd**2 + center**2)
    scale = np.where(scale > 0, scale, 1.0)
    center = center.copy() if k0 >= 0 else np.zeros_like(center)
    if k0 >= 0:
        center[k0], scale[k0] = 0.0, lo[k0]
    return Scaling(center, scale, k0)


def _check_rank(r_blocks, n, names):
    """`_validation.check_rank` from the partitions' R factors: X = QR has X's singular values."""
    R = np.linalg.qr(r_blocks, mode="r")
    if R.shape[0] < R.shape[1]:
        R = np.vstack([R, np.zeros((R.shape[1] - R.shape[0], R.shape[1]))])
    rms = np.sqrt(np.sum(R * R, axis=0) / n)
    _, s, vt = np.linalg.svd(R / np.maximum(rms, 1e-300), full_matrices=False)
    tol = s.max() * max(n, R.shape[1]) * np.finfo(float).eps * 10
    if s.min() <= tol:
        null = vt[-1]
        involved = [names[i] for i in np.flatnonzero(np.abs(null) > 1e-6 * np.abs(null).max())]
        raise ValueError(f"the predictors are perfectly collinear: {', '.join(involved)}; drop one of them")


def _response_scale(dist, total, n):
    """`Design.response_scale` from global sums: Gamma's geometric mean or Gaussian-log's RMS, as a power of 2."""
    if not (dist.name == "gamma" or (dist.name == "gaussian" and dist.link_name == "log")):
        return 1.0
    size = np.exp(total["log_y"] / n) if dist.name == "gamma" else np.sqrt(total["yy"] / n)
    if not (np.isfinite(size) and size > 0):
        return 1.0
    return float(2.0 ** np.round(np.log2(size)))
