"""Results of the drop-in entry points under the names, and with the numbers, of the classes they replace.

`MixedLMResultsWrapper` (``glmm_ext.mixedlm``): ``params`` holds the fixed effects followed by
MixedLM's variance parameters, the lower triangle of cov_re / scale ("Group Var", "Group x Time Cov",
"Time Var"), ``bse`` their standard errors (the inverse observed information of the fit's own
criterion, REML or ML, carried to MixedLM's parametrisation by the delta method; at the optimum that is
the inverse of MixedLM's Hessian), ``bse_re`` = sqrt(scale) times those (MixedLM's definition) and
``predict()`` without data the fixed part, as MixedLM's.

`BayesMixedGLMResultsWrapper` (``BinomialMixedGLM`` / ``PoissonMixedGLM``): BayesMixedGLMResults'
``fe_mean``, ``fe_sd``, ``vcp_mean``, ``vcp_sd`` (log SD scale), ``vc_mean``, ``vc_sd``,
``random_effects(term)`` and ``predict(exog, linear)``, read as the point estimates and standard
errors of the maximum-likelihood fit (not posterior means and SDs).
"""
import numpy as np
import pandas as pd
from scipy import stats

from .results import GLMMResultsWrapper


# ---------------------------------------------------------------------------------------- MixedLM
def _mixedlm_term(name):
    return "Group" if name == "Intercept" else str(name)  # MixedLM calls the random intercept "Group"


def variance_names(res):
    """MixedLM's names of the lower triangle of cov_re (np.tril_indices order)."""
    term = res._terms[0]
    if term.z_names == ("Intercept",):
        return ["Group Var"]
    names = [_mixedlm_term(n) for n in term.z_names]
    rows, cols = np.tril_indices(len(names))
    return [f"{names[i]} Var" if i == j else f"{names[j]} x {names[i]} Cov" for i, j in zip(rows, cols)]


def variance_params(res):
    """MixedLM's variance parameters: the lower triangle of cov_re / scale."""
    cov = np.atleast_2d(np.asarray(res.cov_re, float)) / res.scale
    return cov[np.tril_indices(cov.shape[0])]


def _scalar_variance_cov(res):
    """Var of sigma_u^2 / scale from the (sigma_u, log scale) covariance (delta method)."""
    sd, scale = res.sigma_re, float(res.scale)
    jac = np.array([[2.0 * sd / scale, -sd * sd / scale]])
    return jac @ np.asarray(res.cov_params_vector, float) @ jac.T


def _vector_variance_cov(res):
    """Covariance of the lower triangle of Sigma / scale from the SD / correlation / log-scale covariance."""
    from .inference._intervals_terms import variance_covariance

    pairs = res._terms[0].pairs
    q = res._terms[0].q
    omega, _, cov_omega, _ = variance_covariance(res)
    sd, corr, scale = omega[:q], omega[q:q + len(pairs)], np.exp(omega[-1])
    full_corr = np.eye(q)
    for m, (a, b) in enumerate(pairs):
        full_corr[a, b] = full_corr[b, a] = corr[m]
    rows, cols = np.tril_indices(q)
    jac = np.zeros((len(rows), len(omega)))
    for r, (i, j) in enumerate(zip(rows, cols)):
        value = sd[i] * sd[j] * full_corr[i, j] / scale
        jac[r, i] += sd[j] * full_corr[i, j] / scale
        jac[r, j] += sd[i] * full_corr[i, j] / scale
        for m, (a, b) in enumerate(pairs):
            if {a, b} == {i, j} and i != j:
                jac[r, q + m] = sd[i] * sd[j] / scale
        jac[r, -1] = -value
    return jac @ cov_omega @ jac.T


def variance_cov(res):
    """Covariance of MixedLM's variance parameters (NaN where the information is singular)."""
    try:
        scalar = res._terms[0].z_names == ("Intercept",)
        cov = _scalar_variance_cov(res) if scalar else _vector_variance_cov(res)
    except (np.linalg.LinAlgError, ValueError):
        k = len(variance_names(res))
        return np.full((k, k), np.nan)
    return np.asarray(cov, float)


class MixedLMResultsWrapper(GLMMResultsWrapper):
    """Results of ``glmm_ext.mixedlm``: GLMM results whose MixedLM names carry MixedLM's numbers.

    ``params``, ``bse``, ``tvalues``, ``pvalues`` and ``conf_int()`` include the variance parameters
    (cov_re / scale, lower triangle) after the fixed effects, as MixedLM's; ``bse_re`` is MixedLM's
    sqrt(scale) x SE(cov_re / scale); ``predict()`` without data is the fixed part X beta.
    ``cov_params()``, ``t_test``, ``f_test`` and ``wald_test_terms`` cover the fixed effects (MixedLM's
    ``t_test`` takes fixed-effect contrasts too).
    """

    @property
    def _variance(self):
        res = self._results
        cached = res.__dict__.get("_mixedlm_variance")
        if cached is None:
            names = variance_names(res)
            cov = variance_cov(res)
            cached = (pd.Series(variance_params(res), index=names), pd.Series(np.sqrt(np.diag(cov)), index=names))
            res.__dict__["_mixedlm_variance"] = cached
        return cached

    @property
    def params(self):
        return pd.concat([self._results.fe_params, self._variance[0]]).rename(None)

    def remove_data(self):
        """statsmodels' remove_data; the variance parameters' standard errors (which need the rows) are kept."""
        _ = self._variance
        return self._results.remove_data()

    @property
    def bse(self):
        return pd.concat([self._results.bse_fe, self._variance[1]]).rename(None)

    @property
    def tvalues(self):
        return self.params / self.bse

    @property
    def pvalues(self):
        return pd.Series(2.0 * stats.norm.sf(np.abs(self.tvalues.to_numpy())), index=self.params.index)

    @property
    def bse_re(self):
        """MixedLM's definition: sqrt(scale) x the standard error of each cov_re / scale entry."""
        return self._variance[1] * np.sqrt(self._results.scale)

    def _fixed_hypothesis(self, r_matrix):
        """A hypothesis on the variance parameters is refused with the reason (statsmodels' Wald tests of a
        variance at its boundary are not valid); fixed-effect hypotheses pass through."""
        names = list(self._variance[0].index)
        text = r_matrix if isinstance(r_matrix, str) else " ".join(r_matrix) \
            if isinstance(r_matrix, (list, tuple)) and all(isinstance(r, str) for r in r_matrix) else None
        wide = text is None and np.ndim(r_matrix) >= 1 and np.shape(np.atleast_2d(r_matrix))[1] == len(self.params)
        if (text is not None and any(name in text for name in names)) or wide:
            raise ValueError(f"Wald tests here cover the fixed effects ({', '.join(self._results.model.exog_names)}); "
                             f"for the variance parameters ({', '.join(names)}) use glmm_ext.anova of nested fits, "
                             "res.test_random_effect() or conf_int(method='profile')")
        return r_matrix

    def t_test(self, r_matrix, *args, **kwargs):
        """statsmodels' t_test on the fixed effects (MixedLM's t_test takes fixed-effect contrasts too)."""
        return self._results.t_test(self._fixed_hypothesis(r_matrix), *args, **kwargs)

    def f_test(self, r_matrix, *args, **kwargs):
        """statsmodels' f_test on the fixed effects (denominator df = df_resid = n - rank(X), as MixedLM)."""
        return self._results.f_test(self._fixed_hypothesis(r_matrix), *args, **kwargs)

    def wald_test(self, r_matrix, *args, **kwargs):
        """statsmodels' wald_test on the fixed effects."""
        return self._results.wald_test(self._fixed_hypothesis(r_matrix), *args, **kwargs)

    @property
    def reml(self):
        return self._results.method == "REML"

    @property
    def vcomp(self):
        return np.zeros(0)  # no variance components (vc_formula is refused)

    @property
    def aic(self):
        """MixedLM's: NaN for a REML fit (REML likelihoods of different fixed effects are not comparable)."""
        return np.nan if self.reml else self._results.aic

    @property
    def bic(self):
        """MixedLM's: NaN for a REML fit."""
        return np.nan if self.reml else self._results.bic

    def conf_int(self, alpha=0.05, method=None, **kwargs):
        """method=None: MixedLM's table, params +- z bse for every row (variance parameters included)."""
        if method is not None:
            return super().conf_int(alpha, method=method, **kwargs)
        fe = super().conf_int(alpha)
        z = stats.norm.isf(alpha / 2.0)
        value, se = self._variance
        extra = pd.DataFrame({0: value - z * se, 1: value + z * se})
        fe.columns = [0, 1]
        return pd.concat([fe, extra])

    def predict(self, exog=None, *args, **kwargs):
        """As GLMMResults.predict; without data and groups, MixedLM's fixed part X beta (+ offset)."""
        if exog is None and not args and kwargs.get("groups") is None:
            res = self._results
            which = kwargs.get("which", "mean")
            values = res.model.predict(np.asarray(res.params, float), which=which)
            return pd.Series(values, index=res.model.design.index, name="predicted" if which == "mean" else "linpred")
        return self._results.predict(exog, *args, **kwargs)


# ---------------------------------------------------------------------------------------- BayesMixedGLM
class BayesMixedGLMResultsWrapper(GLMMResultsWrapper):
    """Results of ``BinomialMixedGLM`` / ``PoissonMixedGLM``: BayesMixedGLMResults' names on an ML fit.

    ``fe_mean`` / ``fe_sd``: the ML estimates of the fixed effects and their standard errors;
    ``vcp_mean`` / ``vcp_sd``: log sigma_u and its standard error (BayesMixedGLM's log-SD scale);
    ``vc_mean`` / ``vc_sd``: the conditional modes of the random intercepts and their conditional SDs.
    ``params`` is BayesMixedGLMResults' full vector (fe_mean, vcp_mean, vc_mean) and ``cov_params()``
    the Series of their variances (fit_vb's shape); ``bse``, ``tvalues``, ``conf_int()``, ``t_test``
    and the tables cover the fixed effects (``fe_params``).
    """

    @property
    def params(self):
        return np.concatenate([self.fe_mean, self.vcp_mean, self.vc_mean])

    def cov_params(self, *args, **kwargs):
        """Variances of `params` by name (BayesMixedGLM's fit_vb shape); arguments: GLMMResults.cov_params on
        the fixed effects."""
        if args or kwargs:
            return self._results.cov_params(*args, **kwargs)
        names = list(self._results.model.exog_names) + self.vcp_names + self.vc_names
        sd = np.concatenate([self.fe_sd, self.vcp_sd, self.vc_sd])
        return pd.Series(sd * sd, index=names)

    def remove_data(self):
        """statsmodels' remove_data; vcp_sd (which needs the rows) is kept."""
        _ = self._results.cov_params_vector
        return self._results.remove_data()

    @property
    def optim_retvals(self):
        """The optimiser's record (an `OptSummary`; BayesMixedGLM's is scipy's OptimizeResult)."""
        return self._results.optsummary

    @property
    def fe_mean(self):
        return np.asarray(self._results.fe_params, float)

    @property
    def fe_sd(self):
        return np.asarray(self._results.bse_fe, float)

    @property
    def vcp_mean(self):
        with np.errstate(divide="ignore"):
            return np.array([np.log(self._results.sigma_re)])

    @property
    def vcp_sd(self):
        res = self._results
        var_sd = float(np.asarray(res.cov_params_vector)[0, 0])
        sd = res.sigma_re
        return np.array([np.sqrt(var_sd) / sd if var_sd >= 0 and sd > 0 else np.nan])

    @property
    def vc_mean(self):
        return np.asarray(self._results.blups, float).copy()

    @property
    def vc_sd(self):
        return np.asarray(self._results.blup_se, float).copy()

    @property
    def vcp_names(self):
        return [self._results.model._vc_key]

    @property
    def vc_names(self):
        model = self._results.model
        return [f"C({model._vc_column})[{label}]" for label in model.group_labels]

    def random_effects(self, term=None):
        """DataFrame of the random intercepts (``Mean``: conditional mode, ``SD``: conditional SD) by name.

        ``term`` is None, the variance component's name (the key of ``vc_formulas``) or its position (0).
        """
        if isinstance(term, (int, np.integer)) and not isinstance(term, bool) and term == 0:
            term = None
        if term is not None and term not in self.vcp_names:
            raise ValueError(f"term {term!r} is not a variance component of this model ({', '.join(self.vcp_names)})")
        return pd.DataFrame({"Mean": self.vc_mean, "SD": self.vc_sd}, index=self.vc_names)

    def predict(self, exog=None, linear=False, **kwargs):
        """BayesMixedGLMResults.predict: the mean structure (fixed effects and offset, random effects 0).

        ``exog`` is a design matrix with the model's columns, or new data the formula is applied to
        (a DataFrame or dict); ``linear=True`` gives the linear predictor.  Returns an ndarray.  The
        keywords of `GLMMResults.predict` (``groups=`` adds each group's random intercept) also work.
        """
        res = self._results
        which = "linear" if linear else kwargs.pop("which", "mean")
        if exog is None and kwargs.get("groups") is None:
            return np.asarray(res.model.predict(np.asarray(res.params, float), which=which))
        if isinstance(exog, np.ndarray) and kwargs.get("groups") is None:
            return np.asarray(res.model.predict(np.asarray(res.params, float), exog, which=which))
        return res.predict(exog, which=which, **kwargs).to_numpy()
