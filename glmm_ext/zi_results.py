"""Results of a zero-inflated / hurdle / dispersion fit, in statsmodels' results/wrapper machinery."""
from functools import cached_property

import numpy as np
import pandas as pd
import patsy
from scipy import stats
from scipy.special import expit
from statsmodels.base import model as sm_base
from statsmodels.base import wrapper as sm_wrap

from ._results_api import ZINames, wrapped_cov_params
from .engine._laplace_multi import linear_predictors
from .engine._zi_density import cond_mean, response_cdf, response_mean, simulate_rows
from .report import _zi_tables

WHICH = ("mean", "conditional", "zprob", "linear", "zlinear", "disp")


class ZeroInflatedResults(ZINames, sm_base.LikelihoodModelResults):
    """A fitted zero-inflated / hurdle / dispersion GLMM.

    Attributes
    ----------
    params : Series
        All parameters: the conditional fixed effects (patsy's names), the zero part's ``zi_<name>``,
        the dispersion's ``disp_<name>`` (log theta for NB2, log phi for NB1, log sigma^2 for Gaussian,
        log phi for Gamma), and the relative covariance factors (``<group> SD`` for a scalar term,
        ``zi_<group> SD`` in the zero part; the log-link / logit-scale random-effect SDs).
    fe_params, zi_params, disp_params : Series
        The three fixed-effect parts (names without prefix).
    bse, tvalues, pvalues, conf_int()
        Wald statistics from the Hessian (central differences of the exact gradient) at the returned point.
    llf, aic, bic : float
        Laplace log-likelihood (every constant included, glmmTMB's ``logLik``) and criteria with
        k = number of parameters.
    cov_re : dict
        Per part ("cond", "zi") and term: the covariance of the random effects (DataFrame).
    random_effects : dict
        Per part and term: the conditional modes (DataFrame, one row per level).
    converged, singular : bool
    zi_boundary : list of str
        Why the zero part is on its boundary (a probability at 0 or 1); empty when it is not.
    mu, resid_response, resid_pearson
        E[y] per fitted row, y - E[y] and (y - E[y]) / sqrt(Var[y]); statsmodels names with no number for a
        zero-inflated / hurdle model (resid_deviance, deviance, ...) raise an error saying why.  The results
        pickle (``save``, ``pickle.dumps``): see `ZeroInflatedResultsWrapper.save`.
    """

    def __init__(self, model, fit):
        self._fit = fit
        super().__init__(model, fit.theta, normalized_cov_params=fit.cov, scale=1.0)
        self.use_t = False
        self.method = "Laplace"
        self.nobs = model.nobs
        self.k_params = int(fit.theta.size)
        # statsmodels' ZeroInflatedPoisson convention: the count part's regressors (less one), the zero part,
        # the dispersion and the random-effect SDs counted as k_extra
        self.df_model = model.k_fe - 1
        self.df_resid = self.nobs - model.k_fe
        self.k_extra = self.k_params - model.k_fe
        self.converged = bool(fit.converged)
        self.fit_options = {}
        self.n_dropped = model.zdesign.n_dropped
        self.family_name = model.fam
        self.zero_part = model.zero_part

    # ------------------------------------------------------------------ pieces of params
    def _split(self):
        return self.model.prob.split(self._fit.theta)

    def _series(self, k):
        return pd.Series(self._split()[k], index=self.model.zdesign.names[k], name=("cond", "zi", "disp")[k])

    @property
    def fe_params(self):
        return self._series(0)

    @property
    def zi_params(self):
        return self._series(1)

    @property
    def disp_params(self):
        return self._series(2)

    def _bse_part(self, k):
        sizes = list(self.model.prob.p)
        start = sum(sizes[:k])
        return pd.Series(np.sqrt(np.diag(self.cov_params()))[start:start + sizes[k]], index=self.model.zdesign.names[k])

    @property
    def bse_fe(self):
        return self._bse_part(0)

    @property
    def llf(self):
        return -float(self._fit.value)

    @property
    def aic(self):
        return -2.0 * self.llf + 2.0 * self.k_params

    @property
    def bic(self):
        return -2.0 * self.llf + np.log(self.nobs) * self.k_params

    @property
    def optsummary(self):
        """The optimiser's record: Newton decrement (the predicted gain of one more step), iterations,
        objective evaluations, seconds, message, and the largest absolute gradient entry."""
        f = self._fit
        return {"decrement": f.decrement, "converged": f.converged, "iterations": f.n_iterations,
                "evaluations": f.n_evaluations, "seconds": f.seconds, "message": f.message,
                "max_abs_gradient": float(np.max(np.abs(f.gradient))) if f.gradient.size else 0.0}

    def llf_agq(self, nagq=25):
        """Log-likelihood at the (Laplace) estimates by adaptive Gauss-Hermite quadrature with `nagq` nodes
        per group: a check of the Laplace approximation for a model with one scalar random-effects term
        (nagq = 1 gives ``llf``).  ValueError for other random-effects structures."""
        from .engine._laplace_multi import agq_value

        return -agq_value(self.model.prob, self._fit.theta, nagq)

    @property
    def llf_label(self):
        return "Laplace" if self.model.prob.Q else "exact"

    @property
    def icc(self):
        """Not defined for these families (as for Poisson in the main tables): NaN."""
        return float("nan")

    # ------------------------------------------------------------------ random effects
    @cached_property
    def cov_re(self):
        out = {}
        pieces = self._split()
        for k, st in enumerate(self.model.zdesign.structures):
            if st is None:
                continue
            for term, cov in zip(st.terms, st.covariances(pieces[3 + k])):
                out[(("cond", "zi")[k], term.group)] = pd.DataFrame(cov, index=list(term.z_names),
                                                                    columns=list(term.z_names))
        return out

    @cached_property
    def random_effects(self):
        """Conditional modes b = Lambda u^ per part and term: {(part, group): DataFrame (levels x z columns)}."""
        out = {}
        pieces = self._split()
        u = self._fit.u
        d = self.model.zdesign
        for k, st in enumerate(d.structures):
            if st is None:
                continue
            lay = self.model.prob.layouts[k]
            start = lay.offset
            for term, lam, levels in zip(st.terms, st.unpack(pieces[3 + k]), d.re_levels[k]):
                size = term.n_levels * term.q
                U = u[start:start + size].reshape(term.n_levels, term.q)
                out[(("cond", "zi")[k], term.group)] = pd.DataFrame(U @ lam.T, index=levels,
                                                                    columns=list(term.z_names))
                start += size
        return out

    @cached_property
    def singular(self):
        pieces = self._split()
        for k, st in enumerate(self.model.zdesign.structures):
            if st is not None and any(st.singular(pieces[3 + k])):
                return True
        return False

    @cached_property
    def zi_boundary(self):
        """Reasons the zero part sits on its boundary: fitted pz all ~0, some ~0 or ~1 (coefficients off to inf)."""
        if self.zero_part == "none" or self.model.zdesign.X[1].shape[1] == 0:
            return []
        pz = expit(self._fit.eta[:, 1])
        out = []
        if np.all(pz < 1e-4):
            out.append(f"every zero-inflation probability is below 1e-4 (max {pz.max():.2g}): the data show no "
                       "zero inflation")
        else:
            lo, hi = int(np.sum(pz < 1e-6)), int(np.sum(pz > 1 - 1e-6))
            if lo:
                out.append(f"{lo} rows have a zero-part probability below 1e-6 (a coefficient at -infinity)")
            if hi:
                out.append(f"{hi} rows have a zero-part probability above 1 - 1e-6 (a coefficient at +infinity)")
        return out

    # ------------------------------------------------------------------ tables
    def fixed_effects_table(self, alpha=0.05):
        """Conditional part: estimate, SE, z, p, CI and (log link) the rate ratios exp(estimate) and CI."""
        return _zi_tables.coef_table(self, 0, alpha)

    def zi_table(self, alpha=0.05):
        """Zero part (logit): estimate, SE, z, p, CI and odds ratios with CI."""
        return _zi_tables.coef_table(self, 1, alpha)

    def disp_table(self, alpha=0.05):
        """Dispersion part (log): estimate, SE, z, p, CI and exp(estimate) with CI."""
        return _zi_tables.coef_table(self, 2, alpha)

    def random_effects_table(self):
        return _zi_tables.re_table(self)

    def model_fit_table(self):
        return _zi_tables.fit_table(self)

    def summary(self, alpha=0.05):
        return _zi_tables.summary(self, alpha)

    def summary2(self, yname=None, xname=None, title=None, alpha=0.05, float_format="%.4f"):
        """statsmodels' ``summary2``: a ``summary2.Summary`` with the model facts, one coefficient table per part
        (conditional, zero, dispersion), the random effects and the notes.  ``xname``: new names for every
        row of ``params`` (in its order); ``float_format`` formats the tables' numbers."""
        return _zi_tables.summary2(self, yname=yname, xname=xname, title=title, alpha=alpha,
                                   float_format=float_format)

    def _repr_html_(self):
        return self.summary().as_html()

    # ------------------------------------------------------------------ prediction
    def _new_etas(self, exog, re=True):
        """(n, 3) linear predictors for new data (a DataFrame with the formulas' columns)."""
        d = self.model.zdesign
        pieces = self._split()
        if exog is None:
            return self._fit.eta.copy() if re else self._fixed_etas_fitted()
        if not isinstance(exog, pd.DataFrame):
            raise ValueError("exog must be a DataFrame with the columns the formulas use")
        keep_nan = patsy.NAAction(NA_types=[])
        n = len(exog)
        eta = np.zeros((n, 3))
        for k in range(3):
            if d.design_infos[k] is None:
                if k == 2 and d.X[2].shape[1]:
                    eta[:, 2] = pieces[2][0]
                if k == 1 and self.zero_part == "hurdle" and d.X[1].shape[1] == 0:
                    eta[:, 1] = -np.inf
                continue
            X = np.asarray(patsy.build_design_matrices([d.design_infos[k]], exog, NA_action=keep_nan)[0], float)
            eta[:, k] = X @ pieces[k]
        if re:
            re_tables = self.random_effects
            for k, bars in enumerate(d.bars):
                for bar, info in zip(bars, d.re_infos[k]):
                    Z = np.asarray(patsy.build_design_matrices([info], exog, NA_action=keep_nan)[0], float)
                    cols = [c.strip() for c in bar.group.split(":")]
                    labels = exog[cols[0]] if len(cols) == 1 else exog[cols].astype(str).agg(":".join, axis=1)
                    table = re_tables[(("cond", "zi")[k], bar.group)]
                    B = table.reindex(pd.Index(labels)).to_numpy(float)
                    B = np.where(np.isnan(B), 0.0, B)  # an unseen group: its random effect is 0
                    eta[:, k] += np.sum(Z * B, axis=1)
        return eta

    def _fixed_etas_fitted(self):
        beta, gamma, delta = self._split()[:3]
        return self.model.prob.fixed_etas(beta, gamma, delta)

    def _transform(self, eta, which):
        fam, zp = self.family_name, self.zero_part
        if which == "mean":
            return response_mean(fam, zp, eta[:, 0], eta[:, 1], eta[:, 2])
        if which == "conditional":
            return cond_mean(fam, eta[:, 0])
        if which == "zprob":
            return expit(eta[:, 1]) if zp != "none" else np.zeros(eta.shape[0])
        if which == "linear":
            return eta[:, 0]
        if which == "zlinear":
            return eta[:, 1]
        return np.exp(eta[:, 2])

    def predict(self, exog=None, which="mean", re=True, offset=None):
        """Predictions (glmmTMB's ``predict(type=)``): "mean" = E[y] (``response``), "conditional" = mu of
        the count part (``conditional``), "zprob" = pz (``zprob``), "linear" = the conditional linear
        predictor (``link``), "zlinear" = the zero part's, "disp" = the dispersion.

        ``exog`` is new data (a DataFrame; None: the fitted rows); ``re=False`` leaves out the random
        effects (a population-level prediction); a group not in the fit gets 0.  ``offset`` is added to
        the conditional predictor of new data.
        """
        if which not in WHICH:
            raise ValueError(f"which must be one of {WHICH} (got {which!r})")
        exog = pd.DataFrame(exog) if isinstance(exog, dict) else exog  # statsmodels' formula predict takes a dict
        eta = self._new_etas(exog, re)
        if exog is not None and offset is not None:
            eta[:, 0] += np.asarray(offset, float).reshape(-1)
        out = self._transform(eta, which)
        index = self.model.zdesign.index if exog is None else exog.index
        return pd.Series(out, index=index, name=which)

    def get_prediction(self, exog=None, which="mean", re=True, alpha=0.05, offset=None):
        """Predictions with delta-method standard errors and Wald intervals (fixed-effect uncertainty, the
        random effects at their conditional modes, as glmmTMB's ``se.fit``); intervals are formed on the
        linear-predictor scale and transformed for "conditional", "zprob" and "disp", on the response scale
        for "mean".  Returns a DataFrame: predicted, se, ci_lower, ci_upper."""
        if which not in WHICH:
            raise ValueError(f"which must be one of {WHICH} (got {which!r})")
        exog = pd.DataFrame(exog) if isinstance(exog, dict) else exog  # statsmodels' formula predict takes a dict
        eta = self._new_etas(exog, re)
        if exog is not None and offset is not None:
            eta[:, 0] += np.asarray(offset, float).reshape(-1)
        base = self._split()[:3]
        d = self.model.zdesign
        # Jacobian of the linear predictors over the fixed parameters
        if exog is None:
            Xs = d.X
        else:
            keep_nan = patsy.NAAction(NA_types=[])
            Xs = [np.asarray(patsy.build_design_matrices([info], exog, NA_action=keep_nan)[0], float)
                  if info is not None else (np.ones((len(exog), 1)) if k == 2 and d.X[2].shape[1] else
                                            np.zeros((len(exog), 0)))
                  for k, info in enumerate(d.design_infos)]
        p = [len(b) for b in base]
        cov = self.cov_params()
        cov = np.asarray(cov)[:sum(p), :sum(p)]
        z = stats.norm.ppf(1 - alpha / 2)
        lin = {"linear": 0, "conditional": 0, "zprob": 1, "zlinear": 1, "disp": 2}
        if which in lin:
            k = lin[which]
            start = sum(p[:k])
            C = cov[start:start + p[k], start:start + p[k]]
            se_eta = np.sqrt(np.einsum("ij,jk,ik->i", Xs[k], C, Xs[k]))
            lo, hi = eta[:, k] - z * se_eta, eta[:, k] + z * se_eta
            tr = {0: (lambda v: v) if which in ("linear",) else (lambda v: cond_mean(self.family_name, v)),
                  1: (lambda v: v) if which == "zlinear" else expit, 2: np.exp}[k]
            pred = tr(eta[:, k])
            deriv = (tr(eta[:, k] + 1e-6) - tr(eta[:, k] - 1e-6)) / 2e-6
            se = np.abs(deriv) * se_eta
            lo, hi = tr(lo), tr(hi)
        else:
            pred = self._transform(eta, "mean")
            J = np.zeros((eta.shape[0], sum(p)))
            for k in range(3):
                if p[k] == 0:
                    continue
                h = 1e-6
                e2 = eta.copy()
                e2[:, k] += h
                e1 = eta.copy()
                e1[:, k] -= h
                dk = (self._transform(e2, "mean") - self._transform(e1, "mean")) / (2 * h)
                J[:, sum(p[:k]):sum(p[:k + 1])] = dk[:, None] * Xs[k]
            se = np.sqrt(np.einsum("ij,jk,ik->i", J, cov, J))
            lo, hi = pred - z * se, pred + z * se
        index = d.index if exog is None else exog.index
        frame = ZIPredictionFrame({"predicted": pred, "se": se, "ci_lower": lo, "ci_upper": hi}, index=index)
        frame.request = (self, exog, which, re, offset)
        return frame

    @property
    def fittedvalues(self):
        return self.predict(which="mean")

    @property
    def resid(self):
        return pd.Series(self.model.zdesign.y, index=self.model.zdesign.index) - self.fittedvalues

    # ------------------------------------------------------------------ simulation and residual checks
    def _sim_etas(self, rng, use_re):
        if use_re == "conditional":
            return self._fit.eta
        if use_re == "none":
            return self._fixed_etas_fitted()
        prob = self.model.prob
        u = rng.standard_normal(prob.Q)
        pieces = self._split()
        vals = prob.local_values([pieces[3], pieces[4]])
        return linear_predictors(prob, self._fixed_etas_fitted(), vals, u)

    def simulate(self, nsim=1, seed=None, use_re="conditional"):
        """Responses simulated from the fitted model, shape (nobs, nsim): the random effects at their
        conditional modes ("conditional"), new draws ("new", DHARMa's default) or 0 ("none")."""
        if use_re not in ("conditional", "new", "none"):
            raise ValueError(f"use_re must be 'conditional', 'new' or 'none' (got {use_re!r})")
        if not (isinstance(nsim, (int, np.integer)) and nsim >= 1):
            raise ValueError(f"nsim must be an integer >= 1 (got {nsim!r})")
        rng = np.random.default_rng(seed)
        out = np.empty((self.nobs, nsim))
        for j in range(nsim):
            eta = self._sim_etas(rng, use_re)
            out[:, j] = simulate_rows(self.family_name, self.zero_part, eta[:, 0], eta[:, 1], eta[:, 2], rng)
        return out

    def quantile_residuals(self, nsim=250, seed=None, use_re="new"):
        """DHARMa's simulated quantile residuals and tests: uniformity (KS), dispersion and, for counts,
        zero inflation (observed zeros against their simulated distribution, two-sided)."""
        from .inference._checks import QuantileResiduals, residual_tests

        y = self.model.zdesign.y
        rng = np.random.default_rng(seed)
        draws = self.simulate(nsim, seed=rng, use_re=use_re)
        r, tests = residual_tests(y, draws, rng, zero_test=self.family_name in ("poisson", "nb2", "nb1"))
        return QuantileResiduals(pd.Series(r, index=self.model.zdesign.index, name="quantile_residual"),
                                 draws.mean(axis=1), tests)

    def cdf(self, y=None):
        """P(Y <= y) per fitted row under the fitted model (random effects at their modes)."""
        eta = self._fit.eta
        y = self.model.zdesign.y if y is None else np.asarray(y, float)
        return response_cdf(self.family_name, self.zero_part, y, eta[:, 0], eta[:, 1], eta[:, 2])


class ZIPredictionFrame(pd.DataFrame):
    """`ZeroInflatedResults.get_prediction`'s DataFrame (predicted, se, ci_lower, ci_upper) with statsmodels'
    prediction-results methods: ``summary_frame(alpha)`` and ``conf_int(alpha)`` (the discrete count models'
    column names)."""

    _metadata = ["request"]

    @property
    def _constructor(self):
        return pd.DataFrame  # a slice or a computed frame is a plain DataFrame

    def summary_frame(self, alpha=0.05):
        """predicted, se, ci_lower, ci_upper at level 1 - alpha (a plain DataFrame)."""
        res, exog, which, re, offset = self.request
        return pd.DataFrame(res.get_prediction(exog, which=which, re=re, alpha=alpha, offset=offset))

    def conf_int(self, alpha=0.05):
        """(n, 2) ndarray of the interval at level 1 - alpha."""
        return self.summary_frame(alpha)[["ci_lower", "ci_upper"]].to_numpy()


class ZeroInflatedResultsWrapper(sm_base.LikelihoodResultsWrapper):
    _attrs = dict(sm_base.LikelihoodResultsWrapper._wrap_attrs)
    _wrap_attrs = _attrs
    _methods = {k: v for k, v in sm_base.LikelihoodResultsWrapper._wrap_methods.items() if k != "cov_params"}
    _wrap_methods = _methods
    cov_params = wrapped_cov_params

    def conf_int(self, alpha=0.05):
        """Wald intervals params +- z bse of every parameter (statsmodels' shape: columns 0 and 1)."""
        ci = self._results.conf_int(alpha=alpha)
        return pd.DataFrame(ci, index=self._results.model.param_names, columns=[0, 1])

    def save(self, fname, remove_data=False):
        """Pickle the results (statsmodels' ``save``); ``sm.load_pickle(fname)`` reads them back.

        The pickle keeps the formulas' text and the rows of the columns they name: patsy's designs (which
        patsy cannot pickle) are rebuilt from them on loading, so ``predict`` on new data gives the fit's
        columns, levels and transforms.  Only load files you wrote: unpickling runs code, and loading
        re-evaluates the stored formulas (patsy runs their Python, with numpy as ``np`` the only other name;
        a ``formula_mode="safe"`` fit checks them with the safe grammar again first).  Never
        ``load_pickle`` a file from an untrusted source.
        """
        return super().save(fname, remove_data=remove_data)

    def _repr_html_(self):
        return self._results._repr_html_()


sm_wrap.populate_wrapper(ZeroInflatedResultsWrapper, ZeroInflatedResults)
