"""Every input check of glmm_ext, in one place.

Each check raises ValueError (TypeError for an object of the wrong kind) with a message that names
the offending argument, column, rows or value, before any optimisation starts.
"""
import numbers
import warnings

import numpy as np

from .engine._families import ALLOWED_LINKS, FAMILY_CLASSES, family_name, link_name
from .engine._segments import gram as gram_matrix

#: the confidence levels (in percent) the tables accept
CONF_LEVEL_RANGE = (50.0, 99.99)
#: the number of adaptive Gauss-Hermite nodes accepted by fit(nagq=...)
NAGQ_RANGE = (0, 100)
COV_TYPES = ("hessian", "pirls")


def _rows(positions, labels=None, limit=5):
    """'rows 3, 7 and 2 more' in the caller's labels (index values) where there are labels."""
    positions = np.asarray(positions)
    shown = [labels[i] if labels is not None else i for i in positions[:limit]]
    text = ", ".join(str(v) for v in shown)
    extra = len(positions) - limit
    word = "row" if len(positions) == 1 else "rows"
    return f"{word} {text}" + (f" and {extra} more" if extra > 0 else "")


def _values(values, limit=5):
    """'-3, -1, 0' for the first few offending values."""
    return ", ".join(f"{v:g}" for v in values[:limit])


# --------------------------------------------------------------------------------- family and link
def check_family(family):
    """A supported statsmodels family instance (None -> Gaussian with identity link)."""
    import statsmodels.genmod.families as sm_families

    if family is None:
        return sm_families.Gaussian()
    if isinstance(family, str):
        from .engine._families import make_family

        return make_family(family)
    if isinstance(family, type):
        raise TypeError(f"family must be an instance such as sm.families.{family.__name__}(), not the class")
    name = family_name(family)
    if name is None:
        allowed = ", ".join(f"sm.families.{cls.__name__}" for cls in FAMILY_CLASSES.values())
        raise ValueError(f"family {type(family).__name__} is not supported; use one of {allowed}")
    link = link_name(family.link)
    if link not in ALLOWED_LINKS[name]:
        raise ValueError(f"link {link!r} is not allowed with the {name} family; allowed links: "
                         f"{', '.join(ALLOWED_LINKS[name])}")
    return family


def check_family_name(name):
    key = str(name).strip().lower()
    if key not in FAMILY_CLASSES:
        raise ValueError(f"unknown family {name!r}; choose one of {', '.join(FAMILY_CLASSES)}")
    return key


def check_link_name(family, link):
    key = str(link).strip().lower()
    key = {"inverse_power": "inverse", "inversepower": "inverse"}.get(key, key)
    if key not in ALLOWED_LINKS[family]:
        raise ValueError(f"link {link!r} is not allowed with the {family} family; allowed links: "
                         f"{', '.join(ALLOWED_LINKS[family])}")
    return key


# --------------------------------------------------------------------------------- fit options
def is_positive_number(value) -> bool:
    """A finite real number above 0: not a bool, text, an array or NaN."""
    return not isinstance(value, bool) and isinstance(value, numbers.Real) and bool(np.isfinite(value)) and value > 0


def check_fit_options(maxiter, tol, nagq, cov_type="hessian"):
    if isinstance(maxiter, bool) or not isinstance(maxiter, numbers.Integral) or maxiter < 1:
        raise ValueError(f"maxiter must be a whole number >= 1 (got {maxiter!r})")
    if not is_positive_number(tol):
        raise ValueError(f"tol must be a positive number (got {tol!r})")
    lo, hi = NAGQ_RANGE
    if isinstance(nagq, bool) or not isinstance(nagq, numbers.Integral) or not lo <= nagq <= hi:
        raise ValueError(f"nagq must be a whole number from {lo} to {hi} (got {nagq!r}); 1 is the Laplace "
                         "approximation, 0 the faster PIRLS approximation")
    if cov_type not in COV_TYPES:
        raise ValueError(f"cov_type must be one of {', '.join(COV_TYPES)} (got {cov_type!r})")
    return int(maxiter), float(tol), int(nagq)


def check_alpha(alpha):
    """alpha for a (1 - alpha) interval, with the level inside 50%-99.99%."""
    lo, hi = CONF_LEVEL_RANGE
    try:
        level = 100.0 * (1.0 - float(alpha))
    except (TypeError, ValueError):
        raise ValueError(f"alpha must be a number (got {alpha!r})") from None
    if not np.isfinite(level) or not lo - 1e-9 <= level <= hi + 1e-9:
        raise ValueError(f"confidence level {level:g}% (alpha={alpha!r}) is outside {lo:g}%-{hi:g}%; "
                         f"use alpha between {1 - hi / 100:.4g} and {1 - lo / 100:g}")
    return float(alpha)


def check_conf_level(level):
    """A confidence level in percent (50-99.99) -> alpha."""
    lo, hi = CONF_LEVEL_RANGE
    try:
        level = float(level)
    except (TypeError, ValueError):
        raise ValueError(f"confidence level must be a number (got {level!r})") from None
    if not np.isfinite(level) or not lo <= level <= hi:
        raise ValueError(f"confidence level {level:g}% is outside {lo:g}%-{hi:g}%")
    return 1.0 - level / 100.0


# --------------------------------------------------------------------------------- data
def check_response(family, y, trials, name, labels):
    """The response inside the family's support; names the rows that are not."""
    if family == "binomial":
        if trials is None:
            bad = np.flatnonzero((y != 0) & (y != 1))
            if bad.size:
                raise ValueError(f"Binomial response {name!r} must be 0 or 1 (or give successes + failures); "
                                 f"{_rows(bad, labels)} hold {_values(y[bad])}")
        else:
            successes = y * trials
            bad = np.flatnonzero((successes < 0) | (trials - successes < 0))
            if bad.size:
                raise ValueError(f"Binomial response {name!r}: successes and failures must be >= 0; "
                                 f"{_rows(bad, labels)} are negative")
            bad = np.flatnonzero(np.abs(trials - np.round(trials)) > 1e-8)
            if bad.size:
                warnings.warn(f"Binomial response {name!r}: non-integer numbers of trials in {_rows(bad, labels)}",
                              UserWarning, stacklevel=4)
            bad = np.flatnonzero(np.abs(successes - np.round(successes)) > 1e-6 * np.maximum(1.0, trials))
            if bad.size:
                warnings.warn(f"Binomial response {name!r}: non-integer numbers of successes in "
                              f"{_rows(bad, labels)} (hold {_values(successes[bad])})", UserWarning, stacklevel=4)
    elif family in ("poisson", "negativebinomial"):
        bad = np.flatnonzero(y < 0)
        if bad.size:
            label = "Poisson" if family == "poisson" else "Negative binomial"
            raise ValueError(f"{label} response {name!r} must be >= 0; {_rows(bad, labels)} hold {_values(y[bad])}")
        bad = np.flatnonzero(np.abs(y - np.round(y)) > 1e-8)
        if bad.size:
            warnings.warn(f"Poisson response {name!r} has non-integer values in {_rows(bad, labels)}; "
                          "the likelihood is evaluated with gamma functions", UserWarning, stacklevel=4)
    elif family == "gamma":
        bad = np.flatnonzero(y <= 0)
        if bad.size:
            raise ValueError(f"Gamma response {name!r} must be > 0; {_rows(bad, labels)} hold "
                             f"{_values(y[bad])}")


def check_finite_mle_response(family, y, trials=None, name="y", weights=None):
    """ValueError when the response leaves the likelihood no finite maximum: every count 0 (Poisson,
    negative binomial), every Binomial row with no success or no failure.

    The likelihood then keeps rising as the linear predictor goes to -inf (+inf for all successes),
    whatever the fixed or random-effects structure, so any "fit" is only where the optimiser stopped.
    Rows with zero trials or zero weight carry nothing and are left out of the check.
    """
    if family not in ("poisson", "negativebinomial", "binomial"):
        return
    y = np.asarray(y, float)
    used = np.ones(y.shape, bool)
    for w in (trials, weights):
        if w is not None and np.ndim(w) and np.size(w) == y.size:
            used &= np.asarray(w, float) > 0
    y = y[used]
    if not y.size:
        return
    cases = [(0.0, "0", "-inf")] + ([(1.0, "1", "+inf")] if family == "binomial" else [])
    label = {"poisson": "Poisson", "negativebinomial": "negative binomial", "binomial": "Binomial"}[family]
    for value, what, bound in cases:
        if np.all(y == value):
            if family == "binomial" and trials is not None:
                what = "0 successes" if value == 0.0 else "all successes (no failures)"
            raise ValueError(f"the response {name!r} is {what} in every row: the {label} likelihood increases "
                             f"without bound as the intercept goes to {bound}, so there is no finite maximum-"
                             "likelihood estimate (nothing to fit), whatever the random-effects structure")


def check_response_varies(family, link, y, offset, name):
    """A constant response with no offset leaves a dispersion family nothing to estimate (phi -> 0)."""
    if family in ("gaussian", "gamma") and y.size and np.all(y == y[0]) and not np.any(offset):
        what = "residual variance" if (family, link) == ("gaussian", "identity") else "dispersion"
        raise ValueError(f"the response {name!r} does not vary (every row is {y[0]:g}): its {what} would be 0, "
                         "so there is nothing to fit")


def check_proportion(y, name, labels):
    """A Binomial response given with weights (trials) is a proportion in [0, 1]."""
    bad = np.flatnonzero((y < 0) | (y > 1))
    if bad.size:
        raise ValueError(f"with weights (trials) the Binomial response {name!r} is a proportion in [0, 1]; "
                         f"{_rows(bad, labels)} hold {_values(y[bad])} (successes > trials?)")


def check_trials(trials, name, labels):
    """Every Binomial row has at least one trial."""
    zero = np.flatnonzero(trials == 0)
    if zero.size:
        raise ValueError(f"Binomial response {name!r}: rows with zero trials carry no information; "
                         f"remove {_rows(zero, labels)}")


def check_vector(values, n, what, positive=False, allow_nan=False):
    """An offset/exposure/weights array: length n, finite (and > 0 where asked); NaN passes with allow_nan."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "biuf":
        try:
            arr = arr.astype(float)
        except (TypeError, ValueError):
            raise ValueError(f"{what} must be numeric (got dtype {arr.dtype})") from None
    arr = np.asarray(arr, dtype=float).reshape(-1) if arr.ndim <= 1 or 1 in arr.shape else arr
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{what} has {arr.size} values but the data have {n} rows")
    bad = np.flatnonzero(np.isinf(arr) | (np.isnan(arr) & (not allow_nan)))
    if bad.size:
        raise ValueError(f"{what} must be finite; not at {_rows(bad)} (values {_values(arr[bad])})")
    if positive:
        bad = np.flatnonzero(arr <= 0)
        if bad.size:
            raise ValueError(f"{what} must be > 0; not at {_rows(bad)} (values {_values(arr[bad])})")
    return arr


def check_groups_and_size(n_rows, n_params, counts, family, link, group_name):
    """Enough rows and groups to estimate the model."""
    if n_rows == 0:
        raise ValueError("no rows left after removing rows with missing, non-numeric or infinite values")
    if len(counts) < 2:
        raise ValueError(f"the grouping variable {group_name!r} has {len(counts)} group; a random intercept "
                         "needs at least 2 groups")
    if counts.max() < 2 and (family, link) == ("gaussian", "identity"):
        raise ValueError(f"every group of {group_name!r} has a single row: a Gaussian random intercept cannot be "
                         "told apart from the residual")
    if counts.max() < 2 and family in ("gaussian", "gamma"):
        warnings.warn(f"every group of {group_name!r} has a single row: the random-intercept variance and the "
                      "dispersion are told apart only by the shape of the distribution (weakly identified)",
                      UserWarning, stacklevel=5)
    elif counts.max() < 2 and family == "binomial":
        warnings.warn(f"every group of {group_name!r} has a single row: the random-intercept variance is told "
                      "apart from the Binomial variation only by the shape of the distribution (weakly "
                      "identified; with 0/1 rows it is not identified at all)", UserWarning, stacklevel=5)
    if n_rows <= n_params:
        raise ValueError(f"{n_rows} rows are too few for {n_params} parameters")


def check_rank(X, names):
    """Full column rank, or an error naming the collinear columns."""
    if X.shape[1] == 0:
        raise ValueError("the model has no fixed effects; include at least an intercept")
    gram = gram_matrix(X)  # (column dot products for a narrow column-major X: ~2.5x faster on 1e6 x 3)
    norms = np.maximum(np.sqrt(np.diag(gram) / max(X.shape[0], 1)), 1e-300)
    eigen = np.linalg.eigvalsh(gram / np.outer(norms, norms))
    if eigen.min() > 1e-8 * eigen.max():  # well conditioned: full rank, no need for the (slower) SVD
        return
    _, s, vt = np.linalg.svd(X / norms, full_matrices=False)
    tol = s.max() * max(X.shape) * np.finfo(float).eps * 10
    if s.min() <= tol:
        null = vt[-1]
        involved = [names[i] for i in np.flatnonzero(np.abs(null) > 1e-6 * np.abs(null).max())]
        raise ValueError(f"the predictors are perfectly collinear: {', '.join(involved)}; drop one of them")


def statsmodels_fit_options(method, start_params, full_output, extra):
    """Lines for optsummary.notes about statsmodels fit() options; ValueError for what cannot be honoured."""
    notes = []
    if method is not None:
        notes.append(f"method={method!r} ignored: glmm_ext runs its own search, the exact REML/ML profile (Gaussian) "
                     "or Newton steps on the Laplace/AGQ log-likelihood")
    if start_params is not None:
        notes.append("start_params ignored: start values come from a GLM fit without random effects")
    if full_output is not None:
        notes.append("full_output ignored: the optimiser's record is always kept (this optsummary)")
    for key in ("fe_pen", "cov_pen", "free"):
        if extra.pop(key, None) is not None:
            raise ValueError(f"{key} is not supported: glmm_ext fits unpenalised models")
    for key in ("niter_sa", "do_cg", "retall", "skip_hessian", "fargs", "gtol", "use_sqrt", "scale_fe",
                "minim_opts", "fit_method", "verbose"):
        if key in extra:
            notes.append(f"{key}={extra.pop(key)!r} ignored (a statsmodels optimiser option)")
    if extra:
        raise TypeError(f"fit() got unexpected keyword arguments: {', '.join(extra)}")
    return notes
