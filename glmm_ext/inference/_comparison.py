"""Comparing fits: likelihood-ratio tables (lme4's ``anova``) and the test of the random effects.

Everything works on fitted results; the only numerics of its own are the log-likelihood of the
model without random effects (the GLM, every normalising constant included) and the
boundary-corrected p-values of Self & Liang (1987).
"""
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, stats


def unwrap(res):
    """The GLMMResults behind a results wrapper (or the object itself)."""
    return getattr(res, "_results", res)


def require_random_intercept(res, what):
    """A ValueError unless the fit has one random intercept (one factor, one z column "Intercept")."""
    terms = getattr(res, "_terms", None)
    if terms is not None and (getattr(res, "is_multi", False) or terms[0].z_names != ("Intercept",)):
        raise ValueError(f"{what} is implemented for random-intercept models; this fit has random slopes or "
                         "several terms")
    return res


def fit_options(res):
    """The options a fit was made with (maxiter, tol, nagq, reml, cov_type)."""
    return dict(getattr(res, "fit_options", None) or res.model._fit_options)


def refit_ml(res):
    """The same model refitted by ML (a Gaussian REML fit); the caller's model keeps its stored options."""
    model = res.model
    saved = dict(model._fit_options)
    opts = fit_options(res)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            new = model.fit(reml=False, maxiter=opts.get("maxiter", 100), tol=opts.get("tol", 1e-6))
    finally:
        model._fit_options = saved
    return unwrap(new)


def is_reml(res):
    return res.method == "REML"


def _check_same_data(results):
    """Every fit uses the same rows and the same response (else the likelihoods are not comparable)."""
    first = results[0].model.design
    for k, res in enumerate(results[1:], start=2):
        design = res.model.design
        if design.nobs != first.nobs or not design.index.equals(first.index):
            raise ValueError(f"model {k} was fitted to different rows ({design.nobs} rows) than model 1 "
                             f"({first.nobs} rows); likelihood-ratio tests need the same data")
        same_y = np.allclose(design.y * design.trials, first.y * first.trials, rtol=1e-12, atol=0.0)
        if not same_y or not np.array_equal(design.trials, first.trials):
            raise ValueError(f"model {k} has a different response ({design.endog_name!r}) than model 1 "
                             f"({first.endog_name!r}); likelihood-ratio tests need the same response")
        if not (np.array_equal(design.var_weights, first.var_weights)
                and np.array_equal(design.freq_weights, first.freq_weights)):
            raise ValueError(f"model {k} has different var_weights/freq_weights than model 1; likelihood-ratio "
                             "tests need the same weights")


def random_part(res):
    """The fit's random effects in lme4's notation: "(1 | g)", "(1 + x | g)", "(1 | g) + (0 + x | g)"."""
    structure = getattr(res.model.design, "terms", None)
    if getattr(res, "is_multi", False) and structure is not None:
        return " + ".join(_term_text(term) for term in structure.terms)
    group = res.model.group_name
    random = getattr(res.model, "random_design", None)
    terms = getattr(res, "_terms", None)
    if terms is None or terms[0].z_names == ("Intercept",) or random is None:
        return f"(1 | {group})"
    try:
        names = list(random.names)
        terms = []
        for block in random.blocks:
            parts = ["1" if names[k] == "Intercept" else names[k] for k in block]
            if "1" not in parts:
                parts.insert(0, "0")
            terms.append(f"({' + '.join(parts)} | {random.group})")
    except (AttributeError, TypeError, IndexError):  # a random design of another shape: name its terms
        return f"({' + '.join(map(str, res.cov_re.columns))} | {group})"
    return " + ".join(terms)


def _term_text(term):
    """One random-effect term in lme4's notation: "(1 | g)", "(1 + x | g)", "(0 + x | g)", "(1 + x || g)"."""
    parts = ["1" if name == "Intercept" else str(name) for name in term.z_names]
    if "1" not in parts:
        parts.insert(0, "0")
    bar = "|" if term.correlated or len(term.z_names) == 1 else "||"
    return f"({' + '.join(parts)} {bar} {term.group})"


def model_labels(fits):
    """Row labels of anova: each model's fixed part and random part ("y ~ x + (1 | g)"); "model k: ..."
    where two labels would be the same."""
    labels = []
    for res in fits:
        formula = getattr(res.model, "formula", None)
        random = random_part(res)
        labels.append(f"{formula} + {random}" if isinstance(formula, str) else random)
    if len(set(labels)) < len(labels):
        labels = [f"model {k}: {label}" for k, label in enumerate(labels, start=1)]
    return labels


def anova(*results, names=None, refit=True):
    """Likelihood-ratio comparison of nested fits, as lme4's ``anova``.

    Parameters
    ----------
    *results : GLMM results
        Two or more fits of the same data and response.
    names : list of str, optional
        Row labels (default: each model's formula with its random part, e.g. ``"y ~ x + (1 | g)"``,
        prefixed by "model k: " where two would be the same).
    refit : bool
        True (default): Gaussian REML fits are refitted by ML.  False compares the REML likelihoods as
        they are (lme4's ``refit = FALSE``: only for fits with the same fixed effects, which is checked).

    Returns
    -------
    DataFrame
        One row per model sorted by the number of parameters: ``npar, AIC, BIC, logLik, deviance,
        Chisq, Df, Pr(>Chisq)`` with deviance = -2 logLik, Chisq = 2 (logLik_k - logLik_{k-1}) and
        Df = npar_k - npar_{k-1} against the previous row; the p-value is chi2(Df) upper tail.

    Notes
    -----
    Gaussian REML fits are refitted by ML first (REML likelihoods of different fixed effects are not
    comparable), with a warning, as lme4 does; ``df.attrs["note"]`` says so.
    """
    if len(results) == 1 and isinstance(results[0], (list, tuple)):
        results = tuple(results[0])
    if len(results) < 2:
        raise ValueError("anova needs at least two fitted models to compare")
    fits = []
    for k, res in enumerate(results, start=1):
        res = unwrap(res)
        if not hasattr(res, "model") or not hasattr(res.model, "design"):
            raise TypeError(f"argument {k} is not a glmm_ext fit (got {type(res).__name__})")
        fits.append(res)
    _check_same_data(fits)
    note = ""
    if not refit and any(is_reml(r) for r in fits):
        _check_same_fixed(fits)
        note = "REML likelihoods compared (refit=False): the models differ in their random effects only"
    elif any(is_reml(r) for r in fits):
        fits = [refit_ml(r) if is_reml(r) else r for r in fits]
        note = "refitting model(s) with ML (instead of REML)"
        warnings.warn(note, UserWarning, stacklevel=2)
    if names is None:
        names = model_labels(fits)
    elif len(names) != len(fits):
        raise ValueError(f"names has {len(names)} entries for {len(fits)} models")
    npar = np.array([r.k_params for r in fits])
    order = np.argsort(npar, kind="stable")
    llf = np.array([r.llf for r in fits])[order]
    npar = npar[order]
    nobs = fits[0].nobs
    chisq = np.concatenate([[np.nan], 2.0 * np.diff(llf)])
    df = np.concatenate([[np.nan], np.diff(npar).astype(float)])
    with np.errstate(invalid="ignore"):
        pvalue = np.where(df > 0, stats.chi2.sf(np.maximum(chisq, 0.0), np.where(df > 0, df, 1.0)), np.nan)
    table = pd.DataFrame({"npar": npar, "AIC": -2.0 * llf + 2.0 * npar, "BIC": -2.0 * llf + npar * np.log(nobs),
                          "logLik": llf, "deviance": -2.0 * llf, "Chisq": chisq, "Df": df, "Pr(>Chisq)": pvalue},
                         index=pd.Index([names[i] for i in order], name="model"))
    table.attrs["note"] = note
    return table


def _check_same_fixed(fits):
    """refit=False compares REML likelihoods: every fit must be REML with the same fixed-effects design."""
    first = fits[0].model.design
    for k, res in enumerate(fits[1:], start=2):
        X = res.model.design.X
        if not is_reml(res) or not is_reml(fits[0]) or X.shape != first.X.shape or not np.allclose(X, first.X):
            raise ValueError(f"anova(refit=False) compares REML fits with the same fixed effects; model {k} differs "
                             "(use refit=True to compare by ML)")


# ------------------------------------------------------------------------------- the random intercept
@dataclass
class RandomEffectTest:
    """Likelihood-ratio test of "no random effects": statistic, p-values and both log-likelihoods.

    ``df`` is the number of covariance parameters set to 0 (1 for a random intercept);
    ``pvalue_chi2`` = P(chi2_df >= T) (conservative on the boundary), ``pvalue_mixture`` =
    0.5 P(chi2_{df-1} >= T) + 0.5 P(chi2_df >= T) (Self & Liang 1987; exact for df = 1, an
    approximation for a q x q covariance); ``pvalue`` is the mixture for df = 1, else ``pvalue_chi2``.
    """

    statistic: float
    pvalue: float
    llf_glmm: float
    llf_glm: float
    method: str
    df: int = 1
    pvalue_chi2: float = float("nan")
    pvalue_mixture: float = float("nan")

    def __getitem__(self, key):  # also readable as a mapping: test["pvalue"]
        return getattr(self, key)

    def keys(self):
        return ["statistic", "pvalue", "llf_glmm", "llf_glm", "method", "df", "pvalue_chi2", "pvalue_mixture"]

    def __repr__(self):
        return (f"RandomEffectTest(statistic={self.statistic:.6g}, df={self.df}, pvalue={self.pvalue:.4g}, "
                f"pvalue_mixture={self.pvalue_mixture:.4g}, llf_glmm={self.llf_glmm:.6f}, "
                f"llf_glm={self.llf_glm:.6f}; {self.method})")


def boundary_pvalue(statistic, df=1):
    """0.5 P(chi2_{df-1} >= T) + 0.5 P(chi2_df >= T), chi2_0 the point mass at 0 (Self & Liang 1987).

    Exact for one variance on its boundary (df = 1); for df covariance parameters of a q x q
    covariance tested to 0 the true null is a more complex chi-bar-square mixture, and this is the
    usual approximation.
    """
    statistic = max(float(statistic), 0.0)
    lower = float(statistic <= 0.0) if df == 1 else float(stats.chi2.sf(statistic, df - 1))
    return 0.5 * lower + 0.5 * float(stats.chi2.sf(statistic, df))


def gaussian_lm_loglik(X, y, reml, var_weights=None, freq_weights=None):
    """Log-likelihood of the linear model y = X beta + e at its (RE)ML estimate, every constant included.

    ML: -n/2 (log(2 pi RSS/n) + 1).  REML (as R's ``logLik(lm, REML=TRUE)``), sigma^2 = RSS/(n-p):
    -((n-p) log(2 pi sigma^2) + (n-p) + log|X'X|) / 2.  With weights w = v f (weighted least squares),
    n = sum f, RSS and X'X weighted, plus sum f log(v) / 2.
    """
    v = np.ones(len(y)) if var_weights is None else np.asarray(var_weights, float)
    f = np.ones(len(y)) if freq_weights is None else np.asarray(freq_weights, float)
    w = v * f
    n, p = float(np.sum(f)), X.shape[1]
    sw = np.sqrt(w)
    beta, *_ = np.linalg.lstsq(X * sw[:, None], y * sw, rcond=None)
    rss = float(np.sum(w * (y - X @ beta) ** 2))
    const = 0.5 * float(np.sum(f * np.log(v)))
    if not reml:
        return -0.5 * n * (np.log(2.0 * np.pi * rss / n) + 1.0) + const
    _, logdet = np.linalg.slogdet(X.T @ (X * w[:, None]))
    return -0.5 * ((n - p) * np.log(2.0 * np.pi * rss / (n - p)) + (n - p) + logdet) + const


def glm_loglik(res):
    """Maximised log-likelihood of the model without the random intercept (sigma_u = 0), constants included.

    Gaussian identity: the linear model's ML (or, for a REML fit, REML) value in closed form.  Every
    other family: the engine's objective at sigma_u = 0, maximised over beta and the dispersion
    (alpha for NB2, which statsmodels' GLM would hold fixed), from the GLM start values.
    """
    from ..engine._glmm import glm_start
    from ..engine._laplace import MarginalLikelihood

    design = res.model.design
    if design.gaussian_identity:
        return gaussian_lm_loglik(design.X, design.y - design.offset, reml=is_reml(res),
                                  var_weights=design.var_weights, freq_weights=design.freq_weights)
    data = design.engine_data()
    objective = MarginalLikelihood(design.dist, data, nagq=1)
    p = data.X.shape[1]
    gamma, scale = glm_start(design.dist, data)
    free = np.concatenate([gamma, [np.log(scale)] if design.dist.has_dispersion else []])

    def fun(v):
        theta = np.concatenate([v[:p], [0.0], v[p:]])
        f, g = objective(theta)
        return f, (np.full(len(v), np.nan) if g is None else np.delete(g, p))

    with np.errstate(all="ignore"):
        out = optimize.minimize(fun, free, jac=True, method="BFGS", options={"gtol": 1e-7, "maxiter": 500})
    return -float(out.fun)


def test_random_effect(res):
    """Likelihood-ratio test of H0: no random effects (the GLM) against the fitted mixed model.

    T = 2 (llf_GLMM - llf_GLM), floored at 0.  A Gaussian REML fit is compared with the linear
    model's REML likelihood (same fixed effects, so the REML criteria are comparable); every other
    fit with the GLM's maximum likelihood, every constant included.

    Random intercept (H0: sigma_u^2 = 0, df = 1): p = 0.5 P(chi2_0 >= T) + 0.5 P(chi2_1 >= T), the
    boundary mixture of Self & Liang (1987).  Random slopes (H0: Sigma = 0, df = the number of
    covariance parameters, q(q+1)/2, or q for ``||``): the exact null is a chi-bar-square mixture
    that is complex for a q x q covariance, so ``pvalue`` is the conservative P(chi2_df >= T), and
    ``pvalue_mixture`` = 0.5 P(chi2_{df-1} >= T) + 0.5 P(chi2_df >= T) is reported as a documented
    approximation: smaller than P(chi2_df >= T); the exact mixture also puts weight on chi2 with
    fewer degrees of freedom, so both remain on the conservative side of it.
    """
    res = unwrap(res)
    llf_glm = glm_loglik(res)
    statistic = max(0.0, 2.0 * (res.llf - llf_glm))
    kind = "REML" if is_reml(res) else ("ML" if res.method == "ML" else res.llf_label)
    df = int(res.k_re2)  # covariance parameters: 1 for a random intercept
    chi2_p, mixture_p = float(stats.chi2.sf(statistic, df)), boundary_pvalue(statistic, df)
    if df == 1:
        pvalue, how = mixture_p, "p = 0.5 chi2_0 + 0.5 chi2_1 (Self & Liang 1987)"
    else:
        pvalue, how = chi2_p, (f"p = chi2_{df} (conservative, {df} covariance parameters); pvalue_mixture = "
                               f"0.5 chi2_{df - 1} + 0.5 chi2_{df} (Self & Liang-style approximation)")
    return RandomEffectTest(statistic=statistic, pvalue=pvalue, llf_glmm=float(res.llf), llf_glm=llf_glm,
                            method=f"{kind}; {how}", df=df, pvalue_chi2=chi2_p, pvalue_mixture=mixture_p)
