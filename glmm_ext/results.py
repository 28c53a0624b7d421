"""Results of a GLMM fit, in statsmodels' results/wrapper machinery (names follow MixedLM)."""
import numpy as np
import pandas as pd
from statsmodels.base import model as sm_base
from statsmodels.base import wrapper as sm_wrap
from functools import cached_property as cache_readonly

from . import _results_terms as _rt
from ._results_api import GLMMNames, wrapped_cov_params
from ._term_view import per_term, term_views
from .report import _tables
from ._validation import check_alpha


class GLMMResults(GLMMNames, sm_base.LikelihoodModelResults):
    """A fitted GLMM of any random-effects structure: a random intercept or a vector of random effects
    (random slopes) per group, or several terms (crossed and nested factors).

    Every attribute below is read from the per-term view of the fit (``_terms``, `_term_view.term_views`):
    a one-factor model is one term and keeps MixedLM's one-group API; several terms give dicts by term.

    Attributes
    ----------
    params, fe_params : Series
        Fixed effects, named as the model's columns.
    bse, bse_fe : Series
        Their standard errors (observed information by default; see ``cov_type``).
    cov_re : DataFrame
        1 x 1 random-intercept variance sigma_u^2; with random slopes the q x q covariance, named by term.
    scale : float
        Residual variance sigma_e^2 (Gaussian), the dispersion phi (Gamma, Gaussian-log), 1 otherwise: 1 for
        the negative binomial too, as statsmodels' NB GLM (its alpha is `alpha`, theta = 1/alpha `theta`).
    llf, aic, bic : float
        Log-likelihood (REML, ML, Laplace or AGQ, see ``llf_label``) and information criteria with
        k = p + 2 (Gaussian identity) or p + 1 (+1 with a dispersion).
    random_effects : dict
        Group label -> Series (``"Group"``): the BLUPs / conditional modes.
    mu, resid_response, resid_pearson, resid_deviance, resid_working, pearson_chi2
        GLMResults' formulas at the conditional means (see `glmm_ext._results_api`); GLM names with no
        mixed-model number (deviance, llnull, get_influence, ...) raise an error saying why.
    converged, singular : bool
    optsummary : OptSummary
        The optimiser's settings, iterations and return status.
    """

    def __init__(self, model, fit, cov_type="hessian"):
        self._fit = fit
        # statsmodels' NB GLM keeps alpha in its family and reports scale = 1: NB2's alpha is `alpha`, not scale
        scale = 1.0 if model.dist.name == "negativebinomial" else float(fit.scale)
        super().__init__(model, fit.beta, normalized_cov_params=fit.cov_beta / scale, scale=scale)
        self.use_t = False
        self.cov_type = cov_type if fit.method not in ("REML", "ML") else "exact (X'V^-1X)^-1"
        self.method = fit.method
        self.nobs = model.design.n_obs  # the sum of the frequency weights when given (statsmodels GLM)
        self.n_groups = model.n_groups
        self.n_dropped = model.design.n_dropped
        self.converged = bool(fit.converged)
        self.singular = bool(any(fit.singular))
        self.optsummary = fit.opt
        first = self._terms[0]
        self.var_re = float(first.cov[0, 0])
        if per_term(self):  # the one-factor arrays; several terms: random_effects / blup_table by term
            self.blups = self.blup_se = np.zeros(0)
        else:
            squeeze = first.q == 1 and first.z_names == ("Intercept",)
            self.blups = first.modes[:, 0] if squeeze else first.modes
            self.blup_se = first.mode_sd[:, 0] if squeeze else first.mode_sd
        self.k_params = int(fit.n_params)
        self.df_model = model.k_fe - 1  # statsmodels GLM's: rank(X) - 1
        self.df_resid = self.nobs - self.model.k_fe  # statsmodels' (GLM's, MixedLM's): n - rank(X); f_test's df
        self.se_note = fit.se_note
        self.nagq = model._fit_options.get("nagq", 1) if fit.method not in ("REML", "ML") else None
        self.fit_options = dict(model._fit_options)  # what refits (anova, intervals, bootstrap) reuse
        if not per_term(self):  # MixedLM's sizes: random effects per group, covariance parameters
            self.k_re = first.q
            self.k_re2 = sum(len(b) * (len(b) + 1) // 2 for b in first.blocks)

    # ------------------------------------------------------------------ MixedLM-style names
    @property
    def group_name(self):
        return self.model.group_name

    @cache_readonly
    def fe_params(self):
        return pd.Series(np.asarray(self.params, float), index=self.model.exog_names, name="fe_params")

    @cache_readonly
    def bse_fe(self):
        return pd.Series(np.sqrt(np.diag(self.cov_params_fe)), index=self.model.exog_names, name="bse_fe")

    @cache_readonly
    def cov_params_fe(self):
        return self._fit.cov_beta

    @cache_readonly
    def cov_params_pirls(self):
        """Cov(beta) from the PIRLS working weights (lme4's vcov(use.hessian = FALSE)); None for REML/ML."""
        cov = self._fit.cov_beta_pirls
        return None if cov is None else pd.DataFrame(cov, index=self.model.exog_names, columns=self.model.exog_names)

    @cache_readonly
    def _terms(self):
        """The fit's random-effect terms (`_term_view.TermView`, the user's order): one for a one-factor model."""
        return term_views(self)

    @property
    def is_multi(self):
        """True for a model specified with several random-effect terms: per-term dicts and tables."""
        return per_term(self)

    @cache_readonly
    def vcomp(self):
        """lme4's VarCorr print as a DataFrame (Group, Name, Variance, Std.Dev., Corr; a Residual row)."""
        return _rt.vcomp(self)

    @cache_readonly
    def singular_terms(self):
        """Term key -> singular flag."""
        return _rt.singular_terms(self)

    @cache_readonly
    def cov_re(self):
        """q x q covariance of the random effects (DataFrame); several terms: a dict by term."""
        return _rt.cov_re(self)

    @cache_readonly
    def cov_re_unscaled(self):
        """cov_re / scale (MixedLM's name)."""
        if isinstance(self.cov_re, dict):
            return {k: v / self.scale for k, v in self.cov_re.items()}
        return self.cov_re / self.scale

    @property
    def k_fe(self):
        """Number of fixed effects (MixedLM's name)."""
        return self.model.k_fe

    @cache_readonly
    def sigma_re(self):
        """Random-intercept standard deviation sigma_u."""
        return float(np.sqrt(self.var_re))

    @cache_readonly
    def random_effects(self):
        """Group label -> Series of its effects (MixedLM's shape); several terms: term -> levels x z DataFrame."""
        return _rt.random_effects(self)

    @cache_readonly
    def random_effects_se(self):
        """Conditional SDs of the random effects (by group; several terms: a dict by term)."""
        return _rt.random_effects_se(self)

    # ------------------------------------------------------------------ fit statistics
    @cache_readonly
    def llf(self):
        return float(self._fit.llf)

    @property
    def llf_label(self):
        labels = {"REML": "REML log-likelihood", "ML": "Log-likelihood (ML)", "Laplace": "Log-likelihood (Laplace)",
                  "PIRLS (nagq=0)": "Log-likelihood (Laplace, nagq=0)"}
        return labels.get(self.method, f"Log-likelihood (AGQ, {self.nagq} nodes)")

    @cache_readonly
    def aic(self):
        return -2.0 * self.llf + 2.0 * self.k_params

    @cache_readonly
    def bic(self):
        return -2.0 * self.llf + self.k_params * np.log(self.nobs)

    @cache_readonly
    def _icc_residual(self):
        """(sigma_e^2, its basis) where the ICC is defined (Gaussian identity, logit, probit), else None."""
        dist = self.model.dist
        if dist.name == "gaussian" and dist.link_name == "identity":
            return self.scale, f"{self.scale:.6g} (estimated residual variance)"
        return _tables.ICC_RESIDUAL.get((dist.name, dist.link_name))

    @cache_readonly
    def icc_basis(self):
        entry = self._icc_residual
        return None if entry is None else entry[1]

    @cache_readonly
    def icc(self):
        """sigma_u^2 / (sigma_u^2 + sigma_e^2) where sigma_e^2 has a basis (Gaussian, logit, probit), else None.

        With random slopes: ICC(0), the intercept variance's share (see `icc_at`)."""
        return _rt.icc(self)  # several terms: the adjusted ICC (every intercept variance); per term: icc_table()

    @cache_readonly
    def deff(self):
        """Design effect 1 + (n_bar - 1) ICC with n_bar the mean group size; None where the ICC is undefined."""
        if self.icc is None or not self._scalar_intercept:  # with slopes the ICC, so the design effect, varies with x
            return None
        return 1.0 + (self.nobs / self.n_groups - 1.0) * self.icc

    @cache_readonly
    def latent_lambda(self):
        """Mean expected count exp(x'beta + offset + sigma_u^2 / 2) over the rows (Poisson log latent variance),
        row i counted f_i times (its frequency weight), as the duplicated rows."""
        eta = self.model.predict(self.params, which="linear")
        var = _rt.row_variances(self)
        return float(np.average(np.exp(eta + 0.5 * var), weights=self.model.design.freq_weights))

    def icc_at(self, x):
        """ICC(x) = Var_between(x) / (Var_between(x) + sigma_e^2), Var_between(x) = z(x)' Sigma z(x).

        For random slopes: `x` is the slope covariate's value (a number with one slope term, else a
        dict term -> value).  For a random intercept the ICC does not depend on x.  None where the
        residual variance has no basis (see `icc_basis`).
        """
        return _rt.icc_at(self, x)

    # ------------------------------------------------------------------ inference
    def conf_int(self, alpha=0.05, method=None, nsim=200, seed=None, n_jobs=1, progress=None):
        """Confidence intervals at level 1 - alpha (50%-99.99%).

        Parameters
        ----------
        alpha : float
        method : {None, "wald", "profile", "boot"}
            None (default): statsmodels' shape, Wald intervals beta +- z SE of the fixed effects only.
            Otherwise a DataFrame with columns ``lower, upper`` and rows the fixed effects, then
            ``"<groups> SD"``, then ``"Residual SD"`` (Gaussian), ``"Dispersion"`` (Gamma) or ``"alpha"``
            (negative binomial): "wald" (variance parameters on the log scale), "profile"
            (likelihood-ratio, as lme4's ``confint``; a Gaussian REML fit is profiled by ML, as lme4) or
            "boot" (parametric bootstrap percentiles). With random slopes the variance rows are
            ``"<groups> SD <term>"`` per term and ``"<groups> Cor <a>,<b>"`` per correlated pair; with
            several random-effect terms ``"<term> SD <column>"`` and ``"<term> Cor <a>,<b>"`` per term.
        nsim, seed, n_jobs, progress :
            Bootstrap replicates, seed, worker processes (the same intervals for a given seed whatever
            n_jobs) and progress bar (default: when stderr is a terminal).
        """
        alpha = check_alpha(alpha)
        if method is None:
            return super().conf_int(alpha=alpha)
        from .inference import _bootstrap, _intervals, _intervals_terms

        # one random intercept: its own profile (adaptive quadrature too); any other structure: by term
        module = _intervals if self._scalar_intercept else _intervals_terms
        if method == "wald":
            return module.wald_intervals(self, alpha)
        if method == "profile":
            return module.profile_intervals(self, alpha)
        if method == "boot":
            return _bootstrap.bootstrap_intervals(self, alpha, nsim=nsim, seed=seed, n_jobs=n_jobs, progress=progress)
        raise ValueError(f"method must be None, 'wald', 'profile' or 'boot' (got {method!r})")

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self.model.dist.name == "negativebinomial" and self.scale != 1.0:  # pickled when scale held alpha
            self.normalized_cov_params = self.normalized_cov_params * self.scale  # cov_params() unchanged
            self.scale = 1.0

    # ------------------------------------------------------------------ analysis around the fit
    # (comparison, simulation and checks live in _comparison, _simulate, _checks)
    @property
    def alpha(self):
        """Negative binomial (NB2) alpha of Var = mu + alpha mu^2 (estimated); None for other families."""
        return self._phi if self.model.dist.name == "negativebinomial" else None

    @property
    def _phi(self):
        """The dispersion as the engine's `Distribution` takes it (its ``phi``): `scale`, or NB2's `alpha`
        (whose `scale` is 1, as statsmodels').  What the family's density, residuals and draws read."""
        return float(self._fit.scale)

    @property
    def theta(self):
        """Negative binomial theta = 1/alpha (glmmTMB's and glmer.nb's parametrisation); None otherwise."""
        return None if self.alpha is None else 1.0 / self.alpha

    def test_random_effect(self, term=None):
        """LRT of "no random effects" against the GLM (see glmm_ext._comparison.test_random_effect).

        Random intercept: p = 0.5 chi2_0 + 0.5 chi2_1 (Self & Liang 1987).  Random slopes: ``pvalue`` is the
        conservative chi2 with df = the number of covariance parameters, and ``pvalue_mixture`` the
        approximation 0.5 chi2_{df-1} + 0.5 chi2_df.  With several random-effect terms, ``term`` (a key of
        ``cov_re``) is tested against the model refitted without it (``llf_glm`` then holds that fit's llf)."""
        from .inference._comparison import test_random_effect

        if self.is_multi:
            from .inference._comparison_terms import test_random_effect as test_term

            return test_term(self, term)
        if term is not None and term != self.group_name:
            raise ValueError(f"test_random_effect: this fit has one grouping factor, {self.group_name!r}")
        return test_random_effect(self)

    def simulate(self, nsim=1, seed=None, use_re="conditional"):
        """DataFrame of nsim responses drawn from the fit, keeping the BLUPs ("conditional") or drawing new
        group effects ("new": N(0, sigma_u^2), or N(0, Sigma) per group with random slopes).  A Binomial
        ``successes + failures`` response gives integer counts, columns (sim_k, successes) and (sim_k, failures)
        as lme4's cbind; a proportion with ``weights=`` gives proportions, like its response."""
        from .inference._simulate import simulate

        return simulate(self, nsim=nsim, seed=seed, use_re=use_re)

    def r2(self, approximation="lognormal"):
        """Marginal and conditional R² of Nakagawa, Johnson & Schielzeth (2017) (with random slopes the
        random-effect variance is the mean of z_i' Sigma z_i over rows, Johnson 2014): a dict with "marginal",
        "conditional", "approximation" (how the latent residual variance was found) and the variances.
        ``approximation``: "lognormal" (default), "trigamma" or "delta" where the family has a choice."""
        from .inference._checks import r2

        return r2(self, approximation)

    def overdispersion(self):
        """Pearson chi2, df, chi2/df and p-value (as performance::check_overdispersion)."""
        from .inference._checks import overdispersion

        return overdispersion(self)

    def quantile_residuals(self, nsim=250, seed=None, use_re="new"):
        """DHARMa-style simulated quantile residuals with KS uniformity, dispersion and zero-inflation tests.
        ``use_re="new"`` (default) simulates new group effects and pairs the residuals with the
        population-level predictor; ``"conditional"`` (or True) keeps the BLUPs and pairs them with the
        conditional mean (``.predictor`` of the result)."""
        from .inference._checks import quantile_residuals

        return quantile_residuals(self, nsim=nsim, seed=seed, use_re=use_re)

    def plot_quantile_residuals(self, nsim=250, seed=None, fig=None, use_re="new"):
        """QQ plot against U(0, 1) and residuals vs the rank of the predictor on the simulated level
        (population-level for ``use_re="new"``, conditional for ``"conditional"``; needs the ``plot`` extra)."""
        from .inference._checks import plot_quantile_residuals

        return plot_quantile_residuals(self, nsim=nsim, seed=seed, fig=fig, use_re=use_re)

    # ------------------------------------------------------------------ tables
    def random_effects_table(self):
        return _rt.random_effects_table(self)

    def dispersion_table(self):
        """Negative binomial fits: alpha (NB2, Var = mu + alpha mu^2) and theta = 1/alpha; None otherwise."""
        return _tables.dispersion_table(self)

    def icc_table(self):
        return _rt.icc_table(self)

    def latent_variance_table(self):
        table = _tables.latent_variance_table(self)
        if not self._scalar_intercept and table is not None:  # the covariances are in the Random Effects table
            table = table.drop(columns=["Random-intercept variance"])
        return table

    def fixed_effects_table(self, alpha=0.05):
        return _tables.fixed_effects_table(self, alpha)

    def model_fit_table(self):
        return _tables.model_fit_table(self)

    def blup_table(self):
        """Modes / BLUPs with conditional SDs (several terms: long, a Term column)."""
        return _rt.blup_table(self)

    def diagnostics(self):
        """One row per row used (the data's index): fitted values, deviance and Pearson residuals, group effect."""
        return _rt.diagnostics_table(self)

    # ------------------------------------------------------------------ fitted values and prediction
    @cache_readonly
    def fittedvalues(self):
        """Conditional means (fixed effects + each row's BLUP), response scale, on the data's index."""
        values = self.model.dist.mean(self.model.predict(np.asarray(self.params, float), which="linear")
                                      + _rt.row_effects(self))
        return pd.Series(values, index=self.model.design.index, name="fittedvalues")

    @cache_readonly
    def resid(self):
        """Response minus `fittedvalues` (a proportion for a Binomial response with trials)."""
        return pd.Series(self.model.design.y - self.fittedvalues.to_numpy(), index=self.model.design.index,
                         name="resid")

    @cache_readonly
    def _blup_map(self):
        """Group label -> random intercept (a one-factor model)."""
        return dict(zip(self.model.group_labels, self.blups))

    def predict(self, exog=None, transform=True, groups=None, which="mean", new_groups="zero", offset=None,
                exposure=None):
        """Predictions as a Series on the new data's index (NaN for rows with a missing value).

        Parameters
        ----------
        exog : DataFrame or array_like, optional
            New data: for a formula model a DataFrame the formula's right side is applied to (as
            statsmodels does); otherwise the model's columns.  None: the fitted data, with each
            row's BLUP (equal to `fittedvalues`).
        groups : column name or array_like, optional
            The group of each new row; its BLUP is added.  None: population-level predictions
            (random effects 0).  With several random-effect terms: which terms to predict on (None or
            True: every term, False: none, or a list of term keys), the levels read from the new data.
        which : {"mean", "linear"}
            Response scale or linear predictor.
        new_groups : {"zero", "error"}
            A group not in the fit gets 0 with a warning ("zero"), or raises ValueError.
        offset, exposure : column name or array_like, optional
            For the new rows; a model fitted with ``offset="col"`` (``exposure="col"``) takes that
            column of the new data when it has one.
        """
        from .inference._prediction import _dict_frame, new_data
        from .inference._prediction_terms import predict

        if which not in ("mean", "linear"):
            raise ValueError(f"which must be 'mean' or 'linear' (got {which!r})")
        exog = _dict_frame(exog) if isinstance(exog, dict) else exog  # statsmodels' formula predict takes a dict
        rows = new_data(self, exog, transform, None if self.is_multi else groups, offset, exposure)
        values = predict(self, rows, exog, which, groups, new_groups)
        return pd.Series(values, index=rows.index, name="predicted" if which == "mean" else "linpred")

    def get_prediction(self, exog=None, transform=True, groups=None, offset=None, exposure=None,
                       new_groups="zero"):
        """Predictions with standard errors: ``.summary_frame(alpha)`` has mean, mean_se, mean_ci_lower and
        mean_ci_upper (delta method on the link scale).  With `groups`, each level's conditional covariance
        is added, for a one-factor model with its covariance with beta-hat: Henderson's prediction error,
        exact for Gaussian models, linearised with the working weights otherwise (see
        ``glmm_ext.inference._prediction_terms``).  Arguments as for `predict`."""
        from .inference._prediction_terms import get_prediction

        return get_prediction(self, exog, transform, groups, offset, exposure, new_groups)

    # ------------------------------------------------------------------ variance parameters
    @cache_readonly
    def params_vector(self):
        """The estimate on the model's parameter vector.  One random intercept: ``model.param_names``, (beta,
        sigma_u[, log scale]), what ``model.loglike`` takes.  Any other structure: beta, per term its SDs and
        correlations (named as the rows of ``conf_int(method="wald")``)[, log scale / log alpha]."""
        if self._scalar_intercept:
            values = list(np.asarray(self.params, float)) + [self.sigma_re]
            names = self.model.param_names
        else:
            from .inference._intervals_terms import psi_hat, row_names

            values, names = list(psi_hat(self)), row_names(self)[:-1] if self.model.dist.has_dispersion \
                else row_names(self)
        if self.model.dist.has_dispersion:
            if self._scalar_intercept:
                values.append(np.log(self._phi))
            else:
                names = names + ["log alpha" if self.model.dist.name == "negativebinomial" else "log scale"]
        return pd.Series(values, index=names, name="params_vector")

    @cache_readonly
    def cov_params_vector(self):
        """Inverse observed information over the variance parameters (the entries of `params_vector` after
        beta: sigma_u[, log scale], or per term SDs and correlations[, log scale]).

        REML fits use the REML criterion's curvature (beta profiled out), ML fits the log-likelihood's.
        With several parameters, those at the boundary (an SD at 0, a correlation tied to it or at +-1) are
        held there: NaN rows and columns.
        """
        if not self._scalar_intercept:
            from .inference._intervals_terms import variance_covariance

            return variance_covariance(self)[2]
        model, p = self.model, self.model.k_fe
        theta = self.params_vector.to_numpy()[p:]
        if self.method == "REML":
            from .engine._differences import second_differences
            from .engine._one_factor import reml_loglik_function

            criterion = reml_loglik_function(model.design)

            def reml(t):
                return criterion(t[0] ** 2, np.exp(t[1]))

            H, block = second_differences(reml, theta, 1e-4 * np.maximum(1.0, np.abs(theta))), slice(None)
        else:
            H, block = model.hessian(self.params_vector.to_numpy()), slice(p, None)
        try:
            return np.linalg.inv(-H)[block, block]
        except np.linalg.LinAlgError:
            return np.full((len(theta), len(theta)), np.nan)

    @property
    def _scalar_intercept(self):
        """One factor with one random intercept (MixedLM's one-group model)."""
        return not self.is_multi and self._terms[0].z_names == ("Intercept",)

    @cache_readonly
    def bse_re(self):
        """Standard error of the random-intercept variance sigma_u^2 (delta method, 2 sigma_u SE(sigma_u)).

        MixedLM's ``bse_re`` is on its internal scale (the variance relative to the residual variance,
        times sqrt(scale)); for a Gaussian fit ``bse_re / sqrt(scale)`` is that number.  Any other structure:
        the SE of each variance, a Series by z column (several terms: a dict by term of those).
        """
        if not self._scalar_intercept:
            from .inference._intervals_terms import bse_re

            out = bse_re(self)
            return out if self.is_multi else next(iter(out.values()))
        var_sd = self.cov_params_vector[0, 0]
        se = 2.0 * self.sigma_re * np.sqrt(var_sd) if var_sd >= 0 else np.nan
        return pd.Series([se], index=[f"{self.group_name} Var"], name="bse_re")

    @cache_readonly
    def random_effects_cov(self):
        """Group label -> 1 x 1 DataFrame: the conditional variance of its random intercept (as MixedLM);
        q x q by z column with random slopes; several terms: term -> {level: q x q DataFrame}."""
        return _rt.random_effects_cov(self)

    def remove_data(self):
        """Drop the per-row arrays (statsmodels' remove_data); predictions on new data keep working."""
        _ = self.latent_lambda if self.model.dist.name == "poisson" else None  # needed by the tables
        super().remove_data()
        design = self.model.design
        for name in ("y", "trials", "X", "offset", "codes", "order"):
            setattr(design, name, None)
        for name in ("fittedvalues", "resid"):
            self.__dict__.pop(name, None)

    def summary(self, alpha=0.05, blup_rows=10, from_cli=False, title=None, yname=None, xname_fe=None,
                xname_re=None, float_format=None):
        """statsmodels ``summary2.Summary`` holding every table; prints as text, renders as HTML in a notebook.

        ``blup_rows`` caps the BLUP table (default 10; ``blup_table()`` has every group).  MixedLM's
        ``title``, ``yname`` (response), ``xname_fe`` (fixed-effect names) and ``xname_re`` (the
        random-intercept row's name) relabel the tables.  ``float_format`` (e.g. ``"%.2f"``) formats every
        non-integer number of the tables; None: four decimals, scientific outside [1e-3, 1e6).
        """
        from .report._display import check_float_format, make_summary

        if isinstance(blup_rows, bool) or not isinstance(blup_rows, (int, np.integer)) or blup_rows < 0:
            raise ValueError(f"blup_rows must be a whole number >= 0 (got {blup_rows!r})")
        if xname_fe is not None and len(xname_fe) != len(self.model.exog_names):
            raise ValueError(f"xname_fe has {len(xname_fe)} names; the model has {len(self.model.exog_names)} "
                             "fixed effects")
        labels = {"title": title, "yname": yname, "xname_fe": xname_fe,
                  "float_format": check_float_format(float_format),
                  "xname_re": None if xname_re is None else list(np.atleast_1d(xname_re))[0]}
        return make_summary(self, alpha=alpha, blup_rows=int(blup_rows), from_cli=from_cli, labels=labels)

    def summary2(self, yname=None, xname=None, title=None, alpha=0.05, float_format=None, blup_rows=10):
        """statsmodels' GLM / MixedLM ``summary2``: the ``summary2.Summary`` that `summary` returns (the same
        tables, any random-effects structure).  ``xname`` names the fixed effects (``summary``'s
        ``xname_fe``); ``float_format`` formats every non-integer number of the tables (statsmodels'
        default is "%.4f"; None here keeps `summary`'s format, which switches to scientific notation for
        tiny variances rather than print 0.0000)."""
        return self.summary(alpha=alpha, blup_rows=blup_rows, title=title, yname=yname, xname_fe=xname,
                            float_format=float_format)

    def save(self, fname, remove_data=False):
        """Pickle the results (statsmodels' ``save``).  Unsafe for untrusted files: unpickling runs code and a
        formula model re-evaluates its stored formula; load only files you wrote."""
        return super().save(fname, remove_data=remove_data)

    def _repr_html_(self):
        return self.summary().as_html()

    def plot_blups(self, ax=None, alpha=0.05):
        """Caterpillar plot of the random intercepts with Wald intervals (needs the ``plot`` extra)."""
        from .plotting import plot_blups

        return plot_blups(self, ax=ax, alpha=alpha)

    def plot_diagnostics(self, fig=None):
        """Residuals vs fitted, QQ plots of the BLUPs and of the Pearson residuals (needs the ``plot`` extra)."""
        from .plotting import plot_diagnostics

        return plot_diagnostics(self, fig=fig)


class GLMMResultsWrapper(sm_wrap.ResultsWrapper):
    _attrs = {}
    _wrap_attrs = sm_wrap.union_dicts(sm_base.LikelihoodResultsWrapper._wrap_attrs, _attrs)
    _methods = {}
    _wrap_methods = {k: v for k, v in sm_wrap.union_dicts(sm_base.LikelihoodResultsWrapper._wrap_methods,
                                                           _methods).items() if k not in ("conf_int", "cov_params")}

    def save(self, fname, remove_data=False):
        """Pickle the results (statsmodels' ``save``); ``sm.load_pickle(fname)`` reads them back.

        Only load files you wrote: unpickling runs code, and a formula model re-evaluates its stored
        formula (patsy runs its Python).  Never ``load_pickle`` a file from an untrusted source.
        """
        return super().save(fname, remove_data=remove_data)

    def conf_int(self, alpha=0.05, method=None, **kwargs):
        """See GLMMResults.conf_int: statsmodels-shaped for method=None, else a lower/upper DataFrame."""
        out = self._results.conf_int(alpha, method=method, **kwargs)
        return self._results.model.data.wrap_output(out, how="columns") if method is None else out

    cov_params = wrapped_cov_params

    def _repr_html_(self):
        return self._results._repr_html_()


sm_wrap.populate_wrapper(GLMMResultsWrapper, GLMMResults)
