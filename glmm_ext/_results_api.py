"""statsmodels' results names (GLMResults, LikelihoodModelResults, MixedLMResults) on glmm_ext's results.

Each name either carries the number statsmodels' definition gives for a mixed model (the conditional
fitted means at the random effects' modes wherever GLM uses its fitted means) or raises `NotAvailableError`
naming why it has no such number here and what to use instead.  `NotAvailableError` is an AttributeError
(``hasattr`` and ``getattr(res, name, default)`` keep working) and a NotImplementedError.
"""
import numpy as np
import pandas as pd


class NotAvailableError(AttributeError, NotImplementedError):
    """A statsmodels results name with no well-defined number for this model (the message says why)."""


def _refusal(name, why):
    """A property raising `NotAvailableError` for statsmodels' `name` (so ``hasattr`` is False)."""

    def getter(self):
        raise NotAvailableError(f"{name} is not available for {type(self).__name__}: {why}")

    getter.__name__ = name
    getter.__doc__ = f"Not available: {why}"
    return property(getter)


def _method_refusal(name, why):
    """statsmodels' method `name`, refused on access (``hasattr`` is False; calling it raises the reason)."""
    return _refusal(f"{name}()", why)


DEVIANCE_WHY = ("a mixed model's 'deviance' is ambiguous (the conditional sum of unit deviances at the random "
                "effects' modes, or -2 llf); use -2 * res.llf, or (res.resid_deviance ** 2).sum() for the "
                "conditional one")
NULL_WHY = ("statsmodels' null model is a GLM refitted with the intercept only; for a mixed model compare fits "
            "with glmm_ext.anova (or res.test_random_effect() for the random effects)")
INFLUENCE_WHY = ("GLM influence measures (hat matrix, Cook's distance) ignore the random effects; no mixed-model "
                 "version is provided (refit without a group to measure its influence)")
PLOT_WHY = "statsmodels' GLM regression plots ignore the random effects; use res.plot_diagnostics()"
MARGEFF_WHY = "marginal effects of the discrete models are not provided for a mixed model"
ANSCOMBE_WHY = "Anscombe residuals are not provided; use resid_pearson, resid_deviance or quantile_residuals()"
CRITERIA = ("aic", "bic", "aicc", "hqic")


def criterion(res, crit, scale=None, dk_params=0):
    """statsmodels' ``info_criteria``: "aic", "bic", "aicc" or "hqic" with k = ``k_params + dk_params``.

    GLM counts only the mean parameters; a mixed model's criteria count every estimated parameter
    (fixed effects, variance parameters, dispersion), as ``aic`` and ``bic`` do.  "qaic" needs a
    quasi-likelihood, which a mixed model has not: ValueError.
    """
    crit = str(crit).lower()
    if crit == "qaic":
        raise ValueError("qaic needs a quasi-likelihood (llf / scale of a GLM); a mixed model's likelihood "
                         "integrates the random effects, so QAIC is not defined here")
    if crit not in CRITERIA:
        raise ValueError(f"crit must be one of {', '.join(CRITERIA)} (got {crit!r})")
    if scale is not None:
        raise ValueError("scale is used only by qaic, which is not defined for a mixed model")
    k, n, llf = res.k_params + dk_params, res.nobs, res.llf
    if crit == "aic":
        return -2.0 * llf + 2.0 * k
    if crit == "bic":
        return -2.0 * llf + k * np.log(n)
    if crit == "aicc":
        if n - k - 1 <= 0:
            raise ValueError(f"aicc needs nobs > k_params + 1 (nobs {n}, k {k})")
        return -2.0 * llf + 2.0 * k * n / (n - k - 1)
    return -2.0 * llf + 2.0 * k * np.log(np.log(n))


def _rows(res):
    """(y, prior weights) of the fitted rows; ValueError after remove_data()."""
    design = res.model.design
    if design.y is None:
        raise ValueError("the per-row data were removed by remove_data(): mu and the residuals need the fitted "
                         "rows; refit, or keep res.diagnostics() before remove_data()")
    return design.y, design.prior_weights


class CommonNames:
    """Names shared by every glmm_ext results class (needs ``llf``, ``k_params``, ``nobs``, ``model``)."""

    @property
    def bic_llf(self):
        """BIC from the log-likelihood (GLM's name): -2 llf + k log(nobs), k = k_params, equal to ``bic``."""
        return criterion(self, "bic")

    def info_criteria(self, crit, scale=None, dk_params=0):
        return criterion(self, crit, scale, dk_params)

    info_criteria.__doc__ = criterion.__doc__

    @property
    def family(self):
        """The statsmodels family the model was fitted with (GLMResults' name)."""
        return self.model.family

    deviance = _refusal("deviance", DEVIANCE_WHY)
    bic_deviance = _refusal("bic_deviance", DEVIANCE_WHY)
    null_deviance = _refusal("null_deviance", NULL_WHY)
    llnull = _refusal("llnull", NULL_WHY)
    null = _refusal("null", NULL_WHY)
    pseudo_rsquared = _method_refusal("pseudo_rsquared", "use res.r2() (marginal and conditional R2 of "
                                      "Nakagawa & Schielzeth) where the family has it")
    llf_scaled = _method_refusal("llf_scaled", "the likelihood of a mixed model has no GLM scale to rescale by")
    get_influence = _method_refusal("get_influence", INFLUENCE_WHY)
    get_hat_matrix_diag = _method_refusal("get_hat_matrix_diag", INFLUENCE_WHY)
    plot_added_variable = _method_refusal("plot_added_variable", PLOT_WHY)
    plot_partial_residuals = _method_refusal("plot_partial_residuals", PLOT_WHY)
    plot_ceres_residuals = _method_refusal("plot_ceres_residuals", PLOT_WHY)
    get_margeff = _method_refusal("get_margeff", MARGEFF_WHY)
    score_test = _method_refusal("score_test", "score tests are not provided; use glmm_ext.anova of nested fits")
    resid_anscombe = _refusal("resid_anscombe", ANSCOMBE_WHY)
    resid_anscombe_scaled = _refusal("resid_anscombe_scaled", ANSCOMBE_WHY)
    resid_anscombe_unscaled = _refusal("resid_anscombe_unscaled", ANSCOMBE_WHY)
    profile_re = _method_refusal("profile_re", "use res.conf_int(method='profile') (likelihood-ratio intervals "
                                 "of every variance parameter)")
    bootstrap = _method_refusal("bootstrap", "use res.conf_int(method='boot') (parametric bootstrap intervals)")

    @property
    def mle_retvals(self):
        """The optimiser's return values in statsmodels' shape: converged, iterations, fopt (the minimised
        objective), message, and (where recorded) the function evaluations; see ``optsummary``."""
        opt = self.optsummary
        get = opt.get if isinstance(opt, dict) else (lambda k, d=None: getattr(opt, k, d))
        out = {"converged": bool(self.converged),
               "iterations": get("iterations", get("n_iterations")),
               "fcalls": get("evaluations", get("n_evaluations")),
               "fopt": -float(self.llf) / self.nobs,  # statsmodels minimises -llf / nobs
               "message": get("message", "")}
        return out

    @property
    def mle_settings(self):
        """The fit's settings (statsmodels' name): the optimiser and the options it was called with."""
        opt = self.optsummary
        settings = {"optimizer": getattr(opt, "method", None) or self.method}
        for key in ("maxiter", "tol", "nagq"):
            value = getattr(opt, key, None)
            if value is not None:
                settings[key] = value
        settings.update(getattr(self, "fit_options", {}) or {})
        return settings


def _mixedlm_size(name, default):
    """MixedLM's size `name` of a one-factor fit (set in GLMMResults.__init__); refused for several terms, where
    MixedLM's encoding (one grouping factor plus variance components) is not the model's."""

    def get(self):
        if self.is_multi:
            raise NotAvailableError(f"{name} is not available for a fit with several random-effect terms: MixedLM's "
                                    "k_re, k_re2 and k_vc describe one grouping factor and its variance components; "
                                    "see cov_re (a dict by term) and params_vector (every variance parameter)")
        return self.__dict__.get(f"_{name}", default)

    def set(self, value):
        self.__dict__[f"_{name}"] = value

    return property(get, set, doc=f"MixedLM's {name} (one grouping factor); refused with several terms.")


class GLMMNames(CommonNames):
    """GLMResults' residuals on `GLMMResults`: statsmodels' formulas with the conditional means ``mu``."""

    k_re = _mixedlm_size("k_re", 1)  # random effects per group (1: a random intercept)
    k_re2 = _mixedlm_size("k_re2", 1)  # covariance parameters of one group's effects
    k_vc = _mixedlm_size("k_vc", 0)  # variance components: none (vc_formula is not taken)

    @property
    def mu(self):
        """Conditional fitted means (fixed effects + each row's random effects), response scale: ndarray."""
        _rows(self)  # the fitted rows must be in memory (not after remove_data(), nor on a Dask cluster)
        return np.asarray(self.fittedvalues, float)

    def _row_series(self, values, name):
        return pd.Series(values, index=self.model.design.index, name=name)

    @property
    def resid_response(self):
        """trials (y - mu) (GLM's formula: y - mu, equal to ``resid``, except for a Binomial response with trials,
        where it counts successes rather than proportions)."""
        y, _ = _rows(self)
        return self._row_series(self.model.design.trials * (y - self.mu), "resid_response")

    @property
    def resid_pearson(self):
        """(y - mu) sqrt(prior weight) / sqrt(V(mu)) at the conditional means (GLM's formula: the dispersion
        is not divided out; NB2: V = mu + alpha mu^2)."""
        y, m = _rows(self)
        return self._row_series(self.model.dist.pearson_residuals(y, self.mu, m, self._phi), "resid_pearson")

    @property
    def resid_deviance(self):
        """Signed square roots of the unit deviances at the conditional means (GLM's formula)."""
        y, m = _rows(self)
        return self._row_series(self.model.dist.deviance_residuals(y, self.mu, m, self._phi), "resid_deviance")

    @property
    def resid_working(self):
        """(y - mu) g'(mu): the working residuals of the last IRLS step (GLM's formula)."""
        y, _ = _rows(self)
        if self.model.design.has_trials and np.any(self.model.design.trials != 1):
            raise NotAvailableError("resid_working is not available for a Binomial response with trials: "
                                    "statsmodels' GLM multiplies it by the trials twice (its own code questions "
                                    "this); use (y - mu) * g'(mu) from res.mu, or resid_pearson")
        mu = self.mu
        return self._row_series((y - mu) * self.model.dist.link.deriv(mu), "resid_working")

    @property
    def pearson_chi2(self):
        """Sum of the squared conditional Pearson residuals times the frequency weights (GLM's formula;
        ``overdispersion()['chisq']`` without frequency weights)."""
        return float(np.sum(self.model.design.freq_weights * self.resid_pearson.to_numpy() ** 2))


def zi_response_variance(res):
    """Var[y] per fitted row of a count model, the zero part included (random effects at their modes):
    (1 - p)(V + p mu^2) with zero inflation; E[y^2] - E[y]^2, E[y^2] = (1 - p)(V + mu^2) / (1 - f(0)), for a
    hurdle; V = Var of the count distribution (Poisson mu, NB2 mu + mu^2/theta, NB1 mu(1 + phi))."""
    from scipy.special import expit

    from .engine._zi_density import _scipy_cond, cond_mean

    if res.family_name not in ("poisson", "nb2", "nb1"):
        raise NotAvailableError(f"resid_pearson is not available for the {res.family_name} family with a dispersion "
                                "model: statsmodels' GLM does not divide by the dispersion, glmmTMB does; use "
                                "resid_response or quantile_residuals()")
    eta = res._fit.eta
    mu = cond_mean(res.family_name, eta[:, 0])
    dist = _scipy_cond(res.family_name, mu, eta[:, 2])
    V = dist.var()
    if res.zero_part == "none":
        return V
    p = expit(eta[:, 1])
    if res.zero_part == "zi":
        return (1.0 - p) * (V + p * mu * mu)
    kept = 1.0 - dist.pmf(0)  # the count part is zero-truncated
    mean = (1.0 - p) * mu / kept
    return (1.0 - p) * (V + mu * mu) / kept - mean * mean


class ZINames(CommonNames):
    """GLMResults' names on `ZeroInflatedResults` (``mu`` = E[y], the zero part included)."""

    cov_type = "hessian"  # inverse of the observed information (central differences of the exact gradient)
    resid_deviance = _refusal("resid_deviance", "no unit deviance is defined for a zero-inflated / hurdle "
                              "mixture; use resid_pearson, resid_response or quantile_residuals()")
    resid_working = _refusal("resid_working", "the model is not fitted by IRLS: there is no working response")

    @property
    def resid_pearson(self):
        """(y - E[y]) / sqrt(Var[y]) with the zero part's mean and variance (statsmodels' ZeroInflatedPoisson
        and glmmTMB's definition); count families only."""
        return (self.resid / np.sqrt(zi_response_variance(self))).rename("resid_pearson")

    @property
    def pearson_chi2(self):
        """Sum of the squared Pearson residuals."""
        return float(np.sum(self.resid_pearson.to_numpy() ** 2))

    @property
    def mu(self):
        """E[y] per fitted row (the zero part included): ndarray."""
        return np.asarray(self.fittedvalues, float)

    @property
    def resid_response(self):
        """y - E[y] (equal to ``resid``)."""
        return self.resid.rename("resid_response")

    @property
    def k_fe(self):
        """Number of fixed effects of the conditional (count) part (MixedLM's name)."""
        return len(self.fe_params)

    def wald_test_terms(self, skip_single=False, extra_constraints=None, combine_terms=None, scalar=None):
        return zi_wald_test_terms(self, skip_single, extra_constraints, combine_terms, scalar)

    def t_test_pairwise(self, term_name, method="hs", alpha=0.05, factor_labels=None):
        """statsmodels' t_test_pairwise for a factor of the conditional (count) part: every pair of its levels,
        with the multiple-testing correction `method`."""
        info = self.model.zdesign.design_infos[0]
        terms = [] if info is None else list(info.term_names)
        if term_name not in terms:
            raise ValueError(f"term_name {term_name!r} is not a term of the conditional part ({', '.join(terms)}); "
                             "pairwise comparisons cover the conditional part's factors")
        self.model.data.model_spec = info  # statsmodels reads the term's columns there; they come first in params
        return super().t_test_pairwise(term_name, method=method, alpha=alpha, factor_labels=factor_labels)



    bootstrap = _method_refusal("bootstrap", "no bootstrap is provided for a zero-inflated / hurdle fit; "
                                "res.simulate(nsim) draws responses to refit")
    profile_re = _method_refusal("profile_re", "no profile intervals are provided for a zero-inflated / hurdle fit; "
                                 "use conf_int() (Wald)")
    resid_anscombe = _refusal("resid_anscombe", "Anscombe residuals are not defined for a zero-inflated / hurdle "
                              "response; use resid_pearson, resid_response or quantile_residuals()")


def wrapped_cov_params(wrapper, r_matrix=None, column=None, scale=None, cov_p=None, other=None):
    """statsmodels' cov_params with names: the full matrix as a DataFrame; for ``column`` the rows and
    columns of those parameters; for ``r_matrix`` R Cov R' (an ndarray, as statsmodels' own)."""
    res = wrapper._results
    out = res.cov_params(r_matrix=r_matrix, column=column, scale=scale, cov_p=cov_p, other=other)
    if r_matrix is not None or other is not None:
        return out
    names = list(res.model.data.param_names)
    if column is not None and np.ndim(column) == 0:
        return out
    if column is not None:
        cols = np.atleast_1d(column)
        if cols.dtype.kind in "US" or cols.dtype == object:
            raise ValueError("column takes positions of the parameters (integers), as statsmodels' cov_params")
        chosen = [names[int(c)] for c in cols]
        out = np.atleast_2d(out)
        return out if out.shape != (len(chosen), len(chosen)) else pd.DataFrame(out, index=chosen, columns=chosen)
    return pd.DataFrame(out, index=names, columns=names)


def zi_wald_test_terms(res, skip_single=False, extra_constraints=None, combine_terms=None, scalar=None):
    """statsmodels' wald_test_terms for a zero-inflated / dispersion fit: one joint chi2 test per formula term
    of each part (a factor's columns together; the zero part's terms prefixed ``zi_``, the dispersion's
    ``disp_``); the random-effect SDs are left out (a Wald test of a variance at its boundary is not valid)."""
    from statsmodels.stats.contrast import WaldTestResults

    design = res.model.zdesign
    sizes = list(res.model.prob.p)
    identity = np.eye(len(res.params))
    constraints = []
    for k, prefix in enumerate(("", "zi_", "disp_")):
        start = sum(sizes[:k])
        info = design.design_infos[k]
        if info is not None:
            slices = info.term_name_slices.items()
        else:  # a part without a formula: its intercept only
            slices = [(name, slice(j, j + 1)) for j, name in enumerate(design.names[k])]
        for name, cols in slices:
            matrix = identity[start + cols.start:start + cols.stop]
            if matrix.shape[0] and not (skip_single and matrix.shape[0] == 1):
                constraints.append((prefix + name, matrix))
    for cname in combine_terms or []:
        rows = [m for name, m in constraints if cname in name]
        if rows:
            constraints.append((cname, np.vstack(rows)))
    rows, index = [], []
    for name, constraint in constraints + list(extra_constraints or []):
        wt = res.wald_test(constraint, scalar=scalar)
        rows.append([wt.statistic, wt.pvalue, int(wt.df_denom)])
        index.append(name)
    table = pd.DataFrame(rows, index=index, columns=["statistic", "pvalue", "df_constraint"])
    return WaldTestResults(None, "chi2", None, table=table)
ZINames.wald_test_terms.__doc__ = zi_wald_test_terms.__doc__
