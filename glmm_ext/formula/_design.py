"""Cleaned data -> the model's design: response, trials, predictors, groups, offset and scaling.

Predictors are centred and scaled internally (X_s = (X - c) / s column-wise, the intercept column
kept) so that a predictor on a 1e6 scale or shifted by 1e7 gives the same fit; estimates go back
through beta = R gamma.  Rows are sorted by group once, so every per-group sum is a segment sum.
"""
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import pandas as pd

from ..engine._families import Distribution
from ..engine._laplace import GLMMData
from ..engine._segments import group_starts
from ..engine._weights import density_weights, differs, is_filled
from ._codes import counted_group_codes, group_order, group_runs
from ._data import filled
from .._validation import (check_finite_mle_response, check_groups_and_size, check_proportion, check_rank,
                           check_response, check_trials)


@dataclass
class Scaling:
    """Column centring and scaling of X with beta = R gamma for gamma fitted on X_s."""

    center: np.ndarray
    scale: np.ndarray
    intercept: int  # index of the constant column, -1 when there is none

    def transform(self, X):
        """X_s = (X - center) / scale (one new array)."""
        out = np.subtract(X, self.center, dtype=float)
        out /= self.scale
        return out

    @property
    def matrix(self):
        """R with beta = R gamma:  R_jj = 1 / s_j,  R_{k0 j} = -c_j / (v s_j) for the intercept column k0."""
        R = np.diag(1.0 / self.scale)
        k0 = self.intercept
        if k0 >= 0:
            for j in range(len(self.scale)):
                if j != k0:
                    R[k0, j] = -self.center[j] / (self.scale[k0] * self.scale[j])
        return R

    @property
    def log_abs_det(self):
        """log |det R| (R is diagonal but for one row): the REML log-likelihood's change of parametrisation."""
        return float(-np.sum(np.log(np.abs(self.scale))))


def make_scaling(X):
    """Centre on the mean and scale by the SD when an intercept column exists; else scale by the RMS.

    The mean and SD are numpy's (bit for bit: a search path can hang on the last bit of the scaled X),
    the SD's deviations written into one buffer reused for every column."""
    n, p = X.shape
    const = [j for j in range(p) if n and X[0, j] != 0 and np.all(X[:64, j] == X[0, j])
             and np.all(X[:, j] == X[0, j])]  # (a varying column usually shows it in its first rows)
    k0 = const[0] if const else -1
    center = np.zeros(p)
    scale = np.ones(p)
    buffer = np.empty(n)
    for j in range(p):
        col = X[:, j]
        if j == k0:
            scale[j] = col[0]
            continue
        if k0 >= 0:
            center[j] = col.mean()
            np.subtract(col, center[j], out=buffer)  # as np.std: the deviations from the mean, squared, averaged
        else:
            np.copyto(buffer, col)
        np.multiply(buffer, buffer, out=buffer)
        spread = np.sqrt(np.add.reduce(buffer) / max(n, 1))
        scale[j] = spread if spread > 0 else 1.0
    return Scaling(center, scale, k0)


class GroupedModel:
    """What a design with `counts` (rows per group) and `dist` answers without its rows (shared by the
    in-memory `Design` and the Dask design)."""

    @property
    def n_groups(self):
        return len(self.counts)

    @property
    def gaussian_identity(self):
        return self.dist.name == "gaussian" and self.dist.link_name == "identity"


@dataclass
class Design(GroupedModel):
    """Everything the engine needs, in the data's row order (``order`` sorts rows by group)."""

    y: np.ndarray  # response (a proportion when trials are given)
    trials: np.ndarray  # binomial trials per row (1 otherwise)
    X: np.ndarray
    offset: np.ndarray
    codes: np.ndarray  # group code of each row
    group_labels: np.ndarray  # label of each code
    counts: np.ndarray  # rows per group, by code
    order: np.ndarray  # stable sort of rows by group code (None: made on first use, `__getattr__`)
    dist: Distribution
    scaling: Scaling
    exog_names: list
    endog_name: str
    group_name: str
    index: pd.Index
    var_weights: np.ndarray = None  # statsmodels GLM's var_weights (ones when not given)
    freq_weights: np.ndarray = None  # statsmodels GLM's freq_weights (ones when not given)
    n_dropped: int = 0
    dropped_index: list = field(default_factory=list)
    drop_reasons: dict = field(default_factory=dict)
    has_trials: bool = False
    # random slopes (_bars.RandomDesign): Z in the data's row order, its term names and independent blocks
    Z: np.ndarray = None
    re_names: list = None
    re_blocks: list = None
    # several random-effect terms (_terms.TermLevels: the engine structure and each term's level labels)
    terms: object = None

    def __post_init__(self):
        for name in ("var_weights", "freq_weights"):
            if getattr(self, name) is None:
                setattr(self, name, filled(len(self.y), 1.0))
        if self.order is None:  # made on first use (`__getattr__`): the block profile never sorts the rows
            del self.__dict__["order"]

    def __getattr__(self, name):
        # only for attributes not set: ``order`` left to be made (the stable sort of the rows by group code)
        if name == "order" and "codes" in self.__dict__ and "counts" in self.__dict__:
            order = self.__dict__["order"] = group_order(self.codes, len(self.counts), self.row_runs)
            return order
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def same_rows(self, **changes):
        """`dataclasses.replace` for changes that keep the rows and their group codes: the sort by group stays
        unmade until it is used, and the row runs found are carried over."""
        new = replace(self, order=self.__dict__.get("order"), **changes)
        if "row_runs" in self.__dict__:
            new.__dict__["row_runs"] = self.__dict__["row_runs"]
        return new

    @property
    def nobs(self):
        return len(self.y)

    @property
    def n_obs(self):
        """Observations: rows, or the sum of the frequency weights (statsmodels GLM's nobs)."""
        return float(np.sum(self.freq_weights)) if self.has_freq_weights else self.nobs

    @cached_property
    def has_freq_weights(self):
        return differs(self.freq_weights, 1.0)

    @cached_property
    def has_var_weights(self):
        return differs(self.var_weights, 1.0)

    @property
    def prior_weights(self):
        """Per-row weight inside each density: Binomial trials times var_weights."""
        if is_filled(self.trials) and is_filled(self.var_weights):
            return filled(len(self.trials), self.trials[0] * self.var_weights[0])
        return self.trials * self.var_weights

    def engine_weights(self):
        """(var_weights, freq_weights) as the engine takes them: each None when all 1 (`engine._weights` owns
        their rules)."""
        return (self.var_weights if self.has_var_weights else None,
                self.freq_weights if self.has_freq_weights else None)

    def lmm_weights(self):
        """(row weights sorted by group or None, observations) for the Gaussian identity profile."""
        if not (self.has_trials or self.has_var_weights or self.has_freq_weights):
            return None, self.n_obs  # no weight (the usual case): nothing n-sized to build
        w = self.prior_weights * self.freq_weights
        return (None if np.all(w == 1.0) else w[self.order]), self.n_obs

    @property
    def log_var_weights(self):
        """sum_i f_i log v_i: the log-likelihood constant of Gaussian var_weights (log|V| loses it)."""
        if not self.has_var_weights:
            return 0.0
        return float(np.sum(self.freq_weights * np.log(self.var_weights)))

    @property
    def starts(self):
        return group_starts(self.counts)

    @property
    def response_scale(self):
        """c with the engine fitting y / c: Gamma and Gaussian-log responses (whose likelihood is
        equivariant in the units of y) are brought to unit size, as predictors are; 1 otherwise.

        c = the geometric mean of y (Gamma) or its root mean square (Gaussian-log), rounded to a power of
        2 so that y / c is exact.  Estimates map back by `unscale_response`.
        """
        if not (self.dist.name == "gamma" or (self.dist.name == "gaussian" and self.dist.link_name == "log")):
            return 1.0
        y = self.y
        size = np.exp(np.mean(np.log(y))) if self.dist.name == "gamma" else np.sqrt(np.mean(y * y))
        if not (np.isfinite(size) and size > 0):
            return 1.0
        return float(2.0 ** np.round(np.log2(size)))

    def engine_data(self, scale_response=False):
        """GLMMData on the scaled predictors, rows sorted by group (constant columns stored once).

        With ``scale_response`` the response is y / c (c = `response_scale`), see `engine_data`.  Built once
        per design and flag (it depends on the design's arrays only, and designs are never mutated: a new
        response is a new design by `dataclasses.replace`); its arrays are read-only so that no caller can
        change the cached copy.
        """
        cache = self.__dict__.setdefault("_engine_data_cache", {})
        key = bool(scale_response) and self.response_scale != 1.0
        if key not in cache:
            cache[key] = _frozen(self._build_engine_data(key))
        return cache[key]

    def design_cache(self, key, build):
        """`build()` computed once per design and `key` (design-only arrays the engine derives per fit)."""
        cache = self.__dict__.setdefault("_derived_cache", {})
        if key not in cache:
            cache[key] = build()
        return cache[key]

    def _build_engine_data(self, scale_response):
        def sort(values):  # rows already sorted by group (often) need no gather
            return values if self.presorted else values[self.order]

        X = np.empty(self.X.shape, order="F")  # column-major: X gamma and X' r over contiguous columns
        if self.presorted:
            X[...] = self.X
        else:  # gathered straight into the column-major copy (mode="clip": unbuffered; the order is valid)
            np.take(self.X, self.order, axis=0, out=X, mode="clip")
        X -= self.scaling.center
        X /= self.scaling.scale
        return engine_data(self.dist, sort(self.y), X, sort(self.offset), sort(self.prior_weights),
                           sort(self.freq_weights) if self.has_freq_weights else None, self.counts,
                           self.response_scale if scale_response else 1.0)

    @cached_property
    def presorted(self):
        """True when the rows are already sorted by group (``order`` is the identity)."""
        runs = self.row_runs
        return runs is not None and runs.in_code_order

    @cached_property
    def row_runs(self):
        """`GroupRuns` when each group's rows are contiguous (in any order of the groups), else None: the
        engine can then read per-group sums in the data's row order, with no sort of the rows."""
        return group_runs(self.codes, self.n_groups)


def engine_data(dist, y, X, offset, prior, freq, counts, c=1.0):
    """GLMMData from rows sorted by group with X already scaled: the response fitted as y / c with the
    offset moved to that scale (log link offset - log c, identity offset / c, inverse offset * c), the
    data-only part of log f, frequency weights folded in (`engine._weights.density_weights`),
    and the kernel's per-row data from y.  Used by the in-memory design and by each Dask partition."""
    if c != 1.0:
        y = y / c
        link = dist.link_name
        offset = offset - np.log(c) if link == "log" else (offset / c if link == "identity" else offset * c)
    # frequency weights folded in by the engine's rules (`engine._weights`, a `FrequencyTerm` for a dispersion family)
    m, const, term = density_weights(dist, y, var_weights=prior, freq_weights=freq)
    return GLMMData(y=y, X=X, offset=_compact(offset), m=_compact(m), const=_compact(const),
                    starts=group_starts(counts), counts=counts, dispersion_term=term, aux=dist.row_aux(y))


def _frozen(data):
    """`data` with read-only views of its arrays (a cached GLMMData is shared by every fit; the design's
    own arrays, which a presorted design passes through, stay as they are)."""
    for name in ("y", "X", "offset", "m", "const", "aux"):
        value = getattr(data, name)
        if isinstance(value, np.ndarray) and value.flags.writeable:
            view = value.view()
            view.flags.writeable = False
            setattr(data, name, view)
    return data


def _compact(values):
    """A read-only broadcast of one value when every entry is that value (no n-sized memory), else values."""
    values = np.asarray(values, dtype=float)
    if values.size and np.all(values == values.flat[0]):
        return np.broadcast_to(values.flat[0], values.shape)
    return values


def _proportion_with_var_weights(dist, y, clean, name):
    """A Binomial proportion with var_weights (statsmodels GLM's way to give trials): point to weights=."""
    prior = getattr(clean, "prior_weights", None) or {}
    if dist.name == "binomial" and "var_weights" in prior and np.any((y != 0) & (y != 1) & np.isfinite(y)):
        raise ValueError(f"Binomial response {name!r} holds proportions and var_weights are given: give the "
                         "numbers of trials as weights= (glmer's weights, e.g. weights='trials'), or the response "
                         "as 'successes + failures ~ ...'; var_weights multiply the trials of a 0/1 or "
                         "successes + failures response")


def build_design(clean, family):
    """Validate the cleaned data against the family and assemble the Design."""
    dist = Distribution(family)
    endog = clean.endog
    labels = endog.index  # only indexed to name offending rows in errors
    if clean.has_exposure and dist.link_name != "log":
        raise ValueError(f"exposure needs a log link (log(exposure) is the offset); the link is {dist.link_name}: "
                         "give offset= instead")
    if clean.weights is not None:
        if dist.name != "binomial" or endog.shape[1] != 1:
            raise ValueError("weights are the Binomial number of trials for a proportion response (as glmer's); "
                             f"they are not supported for the {dist.name} family or with two response columns; "
                             "for prior weights (lme4's weights= outside the Binomial family) use var_weights= "
                             "(freq_weights= for rows that stand for several observations)")
        y = endog.iloc[:, 0].to_numpy(dtype=float)
        name = str(endog.columns[0])
        check_proportion(y, name, labels)
        trials = np.asarray(clean.weights, float)
        check_response("binomial", y, trials, name, labels)
        has_trials = True
    elif endog.shape[1] == 2:
        if dist.name != "binomial":
            raise ValueError(f"a two-column response ({', '.join(map(str, endog.columns))}) is only for the "
                             f"Binomial family (successes + failures), not {dist.name}")
        successes = endog.iloc[:, 0].to_numpy(dtype=float)
        failures = endog.iloc[:, 1].to_numpy(dtype=float)
        trials = successes + failures
        name = " + ".join(map(str, endog.columns))
        check_trials(trials, name, labels)
        y = np.divide(successes, trials, out=np.zeros_like(trials), where=trials > 0)
        check_response("binomial", y, trials, name, labels)
        has_trials = True
    else:
        y = endog.iloc[:, 0].to_numpy(dtype=float)
        trials = filled(len(y), 1.0)
        name = str(endog.columns[0])
        _proportion_with_var_weights(dist, y, clean, name)
        check_response(dist.name, y, None, name, labels)
        has_trials = False
    prior = getattr(clean, "prior_weights", None) or {}
    weight = None
    for w in prior.values():  # zero-weight rows carry nothing
        weight = np.asarray(w, float) if weight is None else weight * np.asarray(w, float)
    check_finite_mle_response(dist.name, y, trials if has_trials else None, name, weight)
    if any(np.any(np.asarray(w) != 1.0) for w in prior.values()) and dist.name in ("poisson", "gamma"):
        dist = Distribution(family, kernels=False)  # their fused kernels take no prior weight: the generic path
    X = clean.exog.to_numpy(dtype=float)
    names = [str(c) for c in clean.exog.columns]
    codes, group_labels, counts = counted_group_codes(clean.groups)
    n_params = X.shape[1] + (2 if dist.name == "gaussian" and dist.link_name == "identity" else
                             1 + int(dist.has_dispersion))
    check_groups_and_size(len(y), n_params, counts, dist.name, dist.link_name, str(clean.groups.name))
    check_rank(X, names)
    runs = group_runs(codes, len(counts))
    design = Design(y=y, trials=trials, X=X, offset=np.asarray(clean.offset, float), codes=codes,
                    group_labels=group_labels, counts=counts, order=None,
                    dist=dist, scaling=make_scaling(X), exog_names=names, endog_name=name,
                    var_weights=prior.get("var_weights"), freq_weights=prior.get("freq_weights"),
                    group_name=str(clean.groups.name), index=clean.endog.index, n_dropped=clean.n_dropped,
                    dropped_index=clean.dropped_index, drop_reasons=clean.drop_reasons, has_trials=has_trials)
    design.__dict__["row_runs"] = runs  # the cached property's value (a design made by replace() computes its own)
    return design
