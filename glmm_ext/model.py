"""The GLMM model class: a thin statsmodels shell around the numerical engine."""
import warnings

import numpy as np
import pandas as pd
from statsmodels.base import model as sm_base
from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationWarning

from . import _formula
from ._design import build_design
from ._fitting import fit_likelihood, fit_profile
from ._progress import Progress
from ._validation import check_family, check_fit_options, check_vector
from .results import GLMMResults, GLMMResultsWrapper

CONVERGENCE_ADVICE = ("Try: increase maxiter (100 -> 500); relax tol (1e-6 -> 1e-4); very few groups (2-3) make "
                      "the variance hard to estimate; predictors on very different scales can upset the GLM start "
                      "values (they are scaled internally, but extreme cases remain).")


class SingularFitWarning(UserWarning):
    """The random-intercept variance estimate is at (or near) zero: the boundary of its parameter space."""


SINGULAR_MESSAGE = ("boundary (singular) fit: the random-intercept variance is at or near zero. The groups explain "
                    "little variation, or there are too few groups or rows to separate group-level from residual "
                    "variation. Interpret the ICC and variance components with caution; a GLM without random "
                    "effects may be more appropriate.")


class GLMM(sm_base.LikelihoodModel):
    """Generalized linear mixed model with one random intercept per group.

    g(E[y | u]) = X beta + offset + u_group,  u_group ~ N(0, sigma_u^2).

    Parameters
    ----------
    endog : array_like
        Response: one column, or for the Binomial family two columns (successes, failures).
    exog : array_like
        Fixed-effects design matrix (include a constant column for an intercept).
    groups : array_like
        Group label of each row.
    family : statsmodels family instance, optional
        ``sm.families.Gaussian()`` (default), ``Binomial``, ``Poisson`` or ``Gamma`` with an allowed link.
    offset, exposure : array_like, optional
        Offset added to the linear predictor; exposure adds log(exposure) (log links).
    weights : array_like, optional
        Binomial only: the number of trials when ``endog`` is a proportion (glmer's convention).
    var_weights, freq_weights : array_like, optional
        Prior weights with statsmodels GLM's meaning, for every family: ``var_weights`` v scale each
        row's dispersion to phi / v (lme4's ``weights``; for Binomial they multiply the trials, for
        Poisson and negative binomial the log density), ``freq_weights`` f count a row f times (the
        results' ``nobs`` is their sum).

    Notes
    -----
    Gaussian with the identity link is fitted by exact REML (default) or ML; every other pair by
    maximum likelihood with the Laplace approximation (``nagq=1``) or adaptive Gauss-Hermite
    quadrature (``nagq > 1``).  Rows with a missing, non-numeric or infinite value are dropped.
    """

    def __init__(self, endog, exog, groups, family=None, offset=None, exposure=None, weights=None, missing="drop",
                 var_weights=None, freq_weights=None, **kwargs):
        self.family = check_family(family)
        clean = kwargs.pop("_clean", None)
        unknown = set(kwargs) - {"formula", "hasconst"}
        if unknown:
            raise TypeError(f"GLMM got unexpected keyword arguments: {', '.join(sorted(unknown))}")
        if clean is None:
            clean = _formula.from_arrays(endog, exog, groups, offset=offset, exposure=exposure, weights=weights,
                                         var_weights=var_weights, freq_weights=freq_weights)
        self.design = build_design(clean, self.family)
        self.dist = self.design.dist
        formula = kwargs.pop("formula", None)
        endog_used = clean.endog.iloc[:, 0] if clean.endog.shape[1] == 1 else clean.endog
        super().__init__(endog_used, clean.exog, missing="none", **kwargs)
        self.formula = formula
        self.design_info = clean.design_info
        self.k_fe = self.design.X.shape[1]
        self._fit_options = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_formula(cls, formula, data, groups=None, family=None, offset=None, exposure=None, weights=None,
                     subset=None, drop_cols=None, *args, var_weights=None, freq_weights=None, **kwargs):
        """Model from a patsy formula, e.g. ``GLMM.from_formula("y ~ x", df, groups="school")``.

        ``groups``, ``offset``, ``exposure``, ``weights``, ``var_weights`` and ``freq_weights`` are column
        names or arrays with one value
        per row of ``data``; ``"successes + failures ~ x"`` gives a Binomial response with trials.
        """
        if not isinstance(data, pd.DataFrame):
            data = pd.DataFrame(data)
        if subset is not None:
            data = data.loc[subset]
        family = check_family(family)
        clean = _formula.from_formula(formula, data, groups, offset=offset, exposure=exposure, weights=weights,
                                      var_weights=var_weights, freq_weights=freq_weights)
        if drop_cols:
            clean.exog = clean.exog.drop(columns=list(drop_cols))
        model = cls(None, None, None, *args, family=family, _clean=clean, formula=formula, **kwargs)
        model.data.frame = data
        return model

    # ------------------------------------------------------------------ names and sizes
    @property
    def nobs(self):
        return self.design.nobs

    @nobs.setter
    def nobs(self, value):  # statsmodels' base class assigns nobs; the design is the authority
        pass

    @property
    def n_groups(self):
        return self.design.n_groups

    @property
    def group_labels(self):
        return self.design.group_labels

    @property
    def group_name(self):
        return self.design.group_name

    @property
    def groups(self):
        """Group label of each row used, in the data's row order."""
        return self.design.group_labels[self.design.codes]

    @property
    def endog_name(self):
        return self.design.endog_name

    @property
    def exog_names(self):
        return list(self.design.exog_names)

    # ------------------------------------------------------------------ fitting
    def fit(self, reml=True, maxiter=100, tol=1e-6, nagq=1, cov_type="hessian", progress=False, callback=None,
            **kwargs):
        """Fit the model.

        Parameters
        ----------
        reml : bool
            Gaussian + identity only: REML (default) or ML. Every other pair is fitted by ML.
        maxiter : int
            Maximum optimiser iterations (>= 1).
        tol : float
            Convergence tolerance (> 0): the predicted log-likelihood gain of one more Newton step.
        nagq : int
            Non-Gaussian pairs: 1 = Laplace (default), 2-100 = adaptive Gauss-Hermite nodes per group,
            0 = beta inside PIRLS, only the variance optimised (fast approximation, lme4's nAGQ=0).
            Ignored for Gaussian + identity, whose likelihood is exact.
        cov_type : {"hessian", "pirls"}
            Standard errors from the observed information of the log-likelihood over (beta, sigma_u,
            dispersion), or from the PIRLS working weights (lme4's ``use.hessian = FALSE``).
        progress : bool
            Show the estimation stage and a progress bar on stderr.
        callback : callable, optional
            ``callback(stage, iteration, objective)`` after every stage and iteration.

        Returns
        -------
        GLMMResultsWrapper
        """
        if kwargs:
            raise TypeError(f"fit() got unexpected keyword arguments: {', '.join(kwargs)}")
        maxiter, tol, nagq = check_fit_options(maxiter, tol, nagq, cov_type)
        self._fit_options = {"reml": bool(reml), "maxiter": maxiter, "tol": tol, "nagq": nagq, "cov_type": cov_type}
        monitor = Progress(enabled=progress, callback=callback, maxiter=maxiter)
        with monitor:
            if self.design.gaussian_identity:
                fit = fit_profile(self.design, reml=bool(reml), maxiter=maxiter, tol=tol, callback=monitor)
            else:
                fit = fit_likelihood(self.design, nagq=nagq, maxiter=maxiter, tol=tol, cov_type=cov_type,
                                     callback=monitor)
            monitor("done", fit.opt.n_iterations, -fit.llf)
        if fit.singular:
            warnings.warn(SINGULAR_MESSAGE, SingularFitWarning, stacklevel=2)
        if fit.separated_rows:
            warnings.warn(f"{fit.opt.message}. A predictor (or combination) predicts the response perfectly; "
                          "its estimate and standard error are not meaningful. Consider removing it, merging "
                          "categories, or a penalised (Bayesian) model.", PerfectSeparationWarning, stacklevel=2)
        if not np.all(np.isfinite(np.diag(fit.cov_beta))):
            warnings.warn("standard errors could not be computed: the information matrix is singular (an "
                          "over-parameterised model or degenerate data); they are reported as NaN", UserWarning,
                          stacklevel=2)
        if not fit.converged and not fit.separated_rows:
            warnings.warn(f"the optimiser did not converge ({fit.opt.message}). {CONVERGENCE_ADVICE}",
                          ConvergenceWarning, stacklevel=2)
        return GLMMResultsWrapper(GLMMResults(self, fit, cov_type=cov_type))

    # ------------------------------------------------------------------ likelihood and prediction
    def loglike(self, params, var_re=None, scale=None, reml=False, nagq=1):
        """Marginal log-likelihood at fixed effects `params`, random-intercept variance `var_re` and `scale`.

        Gaussian + identity: the exact ML log-likelihood (or, with ``reml=True``, the REML one with
        beta profiled); otherwise the Laplace (nagq = 1) or AGQ value.
        """
        from ._lmm import lmm_deviance, lmm_stats
        from ._laplace import MarginalLikelihood

        design = self.design
        params = np.asarray(params, float)
        if var_re is None or (scale is None and (design.dist.has_dispersion)):
            raise ValueError("loglike needs var_re (and scale for Gaussian and Gamma families)")
        if design.gaussian_identity:
            if design.lmm_weights()[0] is not None:
                raise ValueError("loglike of a Gaussian identity model with var_weights/freq_weights is not "
                                 "available; the fit's llf includes the weights")
            o = design.order
            y = (design.y - design.offset)[o]
            X = design.X[o]
            if reml:
                stats = lmm_stats(X, y, design.starts, design.counts)
                return -0.5 * lmm_deviance(np.sqrt(var_re / scale), stats, reml=True)
            resid = y - X @ params
            return gaussian_ri_loglik(resid, design.starts, design.counts, var_re, scale)
        data = design.engine_data()
        R = design.scaling.matrix
        gamma = np.linalg.solve(R, params)
        theta = np.concatenate([gamma, [np.sqrt(var_re)], [np.log(scale)] if design.dist.has_dispersion else []])
        value, _ = MarginalLikelihood(design.dist, data, nagq=nagq)(theta, need_grad=False)
        return -value

    def predict(self, params, exog=None, offset=None, groups=None, which="mean", blups=None):
        """Linear predictor or mean; with ``groups`` (and ``blups``) each known group's effect is added."""
        if which not in ("mean", "linear"):
            raise ValueError(f"which must be 'mean' or 'linear' (got {which!r})")
        params = np.asarray(params, float)
        if exog is None:
            X, off = self.design.X, self.design.offset
            if groups is None and blups is not None:
                groups = self.groups
        else:
            if self.design_info is not None and isinstance(exog, pd.DataFrame):
                import patsy

                X = np.asarray(patsy.build_design_matrices([self.design_info], exog, NA_action="raise")[0])
            else:
                X = np.asarray(exog, float)
                X = X.reshape(-1, 1) if X.ndim == 1 else X
            if X.shape[1] != len(params):
                raise ValueError(f"exog has {X.shape[1]} columns; the model has {len(params)}")
            off = np.zeros(X.shape[0]) if offset is None else check_vector(offset, X.shape[0], "offset")
        eta = X @ params + off
        if groups is not None and blups is not None:
            groups = np.asarray(groups)
            if len(groups) != len(eta):
                raise ValueError(f"groups has {len(groups)} values; the predictions have {len(eta)} rows")
            eta = eta + pd.Series(groups).map(blups).fillna(0.0).to_numpy(dtype=float)  # unseen groups: 0
        return eta if which == "linear" else self.dist.mean(eta)


def gaussian_ri_loglik(resid, starts, counts, var_re, scale):
    """Exact Gaussian random-intercept log-likelihood of residuals sorted by group (Woodbury, per group)."""
    from ._segments import group_sums

    n = resid.size
    c = var_re / (scale * (scale + counts * var_re))
    sums = group_sums(resid, starts)
    quad = (resid @ resid) / scale - np.sum(c * sums * sums)
    logdet = n * np.log(scale) + np.sum(np.log1p(counts * var_re / scale))
    return -0.5 * (n * np.log(2 * np.pi) + logdet + quad)


def glmm(formula, data, groups, family=None, **kwargs):
    """Shortcut for ``GLMM.from_formula`` (like ``smf.mixedlm``)."""
    return GLMM.from_formula(formula, data, groups=groups, family=family, **kwargs)
