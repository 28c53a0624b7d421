"""Zero-inflated, hurdle and dispersion mixed models (glmmTMB's ``ziformula`` / ``dispformula`` /
``truncated_*``): the statsmodels shell around `engine._laplace_multi` and `engine._zi_fit`.

Made by ``GLMM.from_formula(..., zi_formula=..., disp_formula=...)`` or with a family of
`glmm_ext.families`; see docs/zero_inflated.md.
"""
import re
import warnings

import numpy as np
import pandas as pd
import statsmodels.api as sm
from statsmodels.base import model as sm_base
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from .engine._laplace_multi import ZIProblem, find_mode
from .engine._zi_density import COUNT_FAMILIES, HAS_DISPERSION
from .engine._zi_fit import fit_zi
from .families import family_code
from .formula import _zi_design

ZI_START = -3.0  # zero-part intercept start: logistic(-3) = 0.05, a little zero inflation

BOUNDARY_MESSAGE = ("boundary fit of the zero part: {what}. The zero-inflation parameters are not identified "
                    "there (their estimates run off towards +-infinity and their standard errors are "
                    "meaningless); consider a simpler zi_formula (or none).")


class ZIBoundaryWarning(UserWarning):
    """A zero-inflation probability estimated at 0 or 1 (the boundary), like a singular fit."""


def _part_label(k):
    return ("", "zi_", "disp_")[k]


class ZeroInflatedGLMM(sm_base.LikelihoodModel):
    """GLMM with a zero part (zero inflation or hurdle) and/or a dispersion model, fitted by Laplace.

    P(y) = pz 1[y = 0] + (1 - pz) f(y | mu, disp) (zero inflation), or P(0) = pz,
    P(y > 0) = (1 - pz) f(y) / (1 - f(0)) (hurdle, a truncated family); log mu = X beta + offset + Z b,
    logit pz = X_zi gamma + Z_zi b_zi, log disp = X_disp delta.  All random effects (conditional and
    zero part) are integrated jointly by the Laplace approximation; every constant of the density is
    included, so ``llf`` equals glmmTMB's ``logLik``.

    Use `glmm_ext.GLMM.from_formula` with ``zi_formula`` / ``disp_formula`` (or this class's
    ``from_formula``); parameters: see `ZeroInflatedResults`.
    """

    def __init__(self, design, family, formula, zi_formula=None, disp_formula=None, data_frame=None):
        self.zdesign = design
        self.family = family
        self.fam, self.zero_part = family_code(family)[0], design.zero_part
        self.formula, self.zi_formula, self.disp_formula = formula, zi_formula, disp_formula
        endog = pd.Series(design.y, index=design.index, name=design.endog_name)
        exog = pd.DataFrame(design.X[0], index=design.index, columns=design.names[0])
        super().__init__(endog, exog, missing="none")
        self.data.param_names = self.param_names
        self.k_fe = design.X[0].shape[1]
        self.prob = ZIProblem(self.fam, self.zero_part, design.y, design.X, design.offsets, design.structures)
        self.design = _AnovaDesign(design)
        self._data_frame = data_frame

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_formula(cls, formula, data, family=None, zi_formula=None, disp_formula=None, offset=None,
                     exposure=None, subset=None, missing="drop", groups=None, **kwargs):
        """Model from formulas, e.g. ``("count ~ spp + (1|site)", df, family=sm.families.Poisson(),
        zi_formula="~ spp")``; ``offset`` / ``exposure`` are column names or one value per row."""
        unknown = set(kwargs) - {"formula_mode", "eval_env"}
        if unknown:
            raise TypeError(f"zero-inflated / dispersion models do not take: {', '.join(sorted(unknown))}")
        if groups is not None:  # glmm_ext's groups= is the random intercept (1 | groups) of the count part
            if not isinstance(groups, str):
                raise ValueError("with zi_formula / disp_formula, groups must be a column name (or write the random "
                                 "effects in the formula, e.g. 'y ~ x + (1 | g)')")
            if not isinstance(formula, str) or re.search(rf"\|\s*{re.escape(groups)}\s*\)", formula) is None:
                formula = f"{formula} + (1 | {groups})"
        if missing not in ("drop", "raise", "none"):
            raise ValueError(f"missing must be 'drop', 'raise' or 'none' (got {missing!r})")
        family = sm.families.Poisson() if family is None else family
        fam, truncated = family_code(family)
        if not isinstance(data, pd.DataFrame):
            data = pd.DataFrame(data)
        if subset is not None:
            data = data.loc[subset]
        zero_part = "hurdle" if truncated else ("zi" if zi_formula is not None else "none")
        if zi_formula is not None and fam not in COUNT_FAMILIES:
            raise ValueError(f"zi_formula needs a count family (Poisson, negative binomial); got {type(family).__name__}")
        off = _offset_values(data, offset, exposure)
        design = _zi_design.build(formula, data, zi_formula, disp_formula, zero_part, HAS_DISPERSION[fam], off,
                                  missing, kwargs.get("formula_mode", "python"))
        y = design.y
        if fam in COUNT_FAMILIES:
            if np.any(y < 0) or np.any(y != np.round(y)):
                raise ValueError(f"the response {design.endog_name!r} must hold non-negative integer counts for "
                                 f"{type(family).__name__}")
            if design.zero_part == "zi" and not np.any(y == 0):
                raise ValueError(f"zero inflation needs zeros: the response {design.endog_name!r} has none (the "
                                 "zero-inflation probability would be 0, on the boundary); drop zi_formula")
            if design.zero_part == "hurdle" and np.any(y == 0) and zi_formula is None:
                raise ValueError("a truncated family gives P(y = 0) = 0: give zi_formula (the hurdle's zero part, "
                                 "e.g. '~ 1') or use a response without zeros")
            if design.zero_part == "hurdle" and zi_formula is not None and not np.any(y == 0):
                raise ValueError(f"the hurdle's zero part needs zeros: the response {design.endog_name!r} has none; "
                                 "drop zi_formula (a zero-truncated model)")
        if fam == "gamma" and np.any(y <= 0):
            raise ValueError(f"the Gamma family needs a positive response ({design.endog_name!r} has values <= 0)")
        if design.structures[0] is None and design.structures[1] is None:
            design.notes.append("no random-effects term: the likelihood is exact (no Laplace approximation)")
        return cls(design, family, formula, zi_formula, disp_formula)

    # ------------------------------------------------------------------ names and sizes
    @property
    def param_names(self):
        d = self.zdesign
        names = list(d.names[0]) + [f"zi_{c}" for c in d.names[1]] + [f"disp_{c}" for c in d.names[2]]
        for k, st in enumerate(d.structures):
            if st is None:
                continue
            for term in st.terms:
                rows, cols = term.theta_positions()
                for r, c in zip(rows, cols):
                    if term.q == 1:
                        names.append(f"{_part_label(k)}{term.group} SD")
                    else:
                        names.append(f"{_part_label(k)}{term.group} theta[{term.z_names[r]},{term.z_names[c]}]")
        return names

    @property
    def nobs(self):
        return int(self.zdesign.y.shape[0])

    @nobs.setter
    def nobs(self, value):
        pass

    # ------------------------------------------------------------------ likelihood
    def loglike(self, params):
        """Laplace log-likelihood at the parameter vector (names: ``param_names``)."""
        params = np.asarray(params, float).reshape(-1)
        if params.size != self.prob.n_params:
            raise ValueError(f"the parameter vector has {self.prob.n_params} entries; got {params.size}")
        st = find_mode(self.prob, params)
        return -np.inf if st is None else -st.value

    def score(self, params):
        from .engine._laplace_multi import laplace_gradient

        params = np.asarray(params, float).reshape(-1)
        st = find_mode(self.prob, params)
        return -laplace_gradient(self.prob, params, st)

    def hessian(self, params):
        from .engine._zi_fit import fd_hessian

        params = np.asarray(params, float).reshape(-1)
        return -fd_hessian(lambda t: -self.score(t), params, np.full(params.size, -np.inf))

    def start_params_default(self):
        """GLM start for beta, zero-part intercept logistic^-1(0.05) (zi) or the zero share (hurdle),
        dispersion intercept from the GLM, identity relative covariance factors."""
        d, fam = self.zdesign, self.fam
        y, X, off = d.y, d.X[0], d.offsets[0]
        rows = y > 0 if self.zero_part == "hurdle" else np.ones(y.size, bool)
        glm_family = {"gaussian": sm.families.Gaussian(), "gamma": sm.families.Gamma(sm.families.links.Log())}.get(
            fam, sm.families.Poisson())
        beta = np.zeros(X.shape[1])
        scale = 1.0
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                glm = sm.GLM(y[rows], X[rows], family=glm_family, offset=off[rows]).fit()
            if np.all(np.isfinite(glm.params)):
                beta, scale = np.asarray(glm.params), float(glm.scale)
        except Exception:  # a start only: fall back to an intercept at the mean
            icpt = _intercept_column(X)
            if icpt is not None:
                beta[icpt] = np.mean(y) if fam == "gaussian" else np.log(np.mean(y[rows]) + 0.1)
        gamma = np.zeros(d.X[1].shape[1])
        icpt = _intercept_column(d.X[1])
        if icpt is not None:
            share = np.clip(np.mean(y == 0), 0.02, 0.98)
            gamma[icpt] = ZI_START if self.zero_part == "zi" else np.log(share / (1 - share))
        delta = np.zeros(d.X[2].shape[1])
        icpt = _intercept_column(d.X[2])
        if icpt is not None and fam in ("gaussian", "gamma"):
            delta[icpt] = np.log(max(scale, 1e-8))
        lams = []
        for k, st in enumerate(d.structures):
            if st is not None:
                factor = np.sqrt(scale) if (fam == "gaussian" and k == 0) else 1.0
                lams.append(st.start_params() * factor)
        return np.concatenate([beta, gamma, delta, *lams])

    # ------------------------------------------------------------------ fitting
    def fit(self, start_params=None, maxiter=300, tol=1e-7, **kwargs):
        """Laplace maximum likelihood; returns `ZeroInflatedResultsWrapper`.

        Parameters
        ----------
        start_params : array_like, optional
            Start values in the order of ``param_names`` (default `start_params_default`).
        maxiter : int
            L-BFGS-B iterations before the Newton polish.
        tol : float
            Convergence: the Newton decrement g' H^-1 g / 2 (the predicted log-likelihood gain of one more
            Newton step) below `tol`.
        """
        from .zi_results import ZeroInflatedResults, ZeroInflatedResultsWrapper

        for key in ("method", "disp", "full_output", "callback"):
            kwargs.pop(key, None)
        if kwargs:
            raise TypeError(f"fit() got unexpected keyword arguments: {', '.join(kwargs)}")
        if not (isinstance(maxiter, (int, np.integer)) and maxiter >= 1):
            raise ValueError(f"maxiter must be an integer >= 1 (got {maxiter!r})")
        if not (np.isscalar(tol) and np.isfinite(tol) and tol > 0):
            raise ValueError(f"tol must be a positive number (got {tol!r})")
        theta0 = self.start_params_default() if start_params is None else np.asarray(start_params, float)
        if theta0.shape != (self.prob.n_params,):
            raise ValueError(f"start_params must have {self.prob.n_params} entries ({', '.join(self.param_names)})")
        fit = fit_zi(self.prob, theta0, maxiter=int(maxiter), tol=float(tol))
        res = ZeroInflatedResults(self, fit)
        if not fit.converged:
            warnings.warn(f"the optimiser did not converge (Newton decrement {fit.decrement:.2g}; {fit.message})",
                          ConvergenceWarning, stacklevel=2)
        for what in res.zi_boundary:
            warnings.warn(BOUNDARY_MESSAGE.format(what=what), ZIBoundaryWarning, stacklevel=2)
        if res.singular:
            from .model import SingularFitWarning

            warnings.warn("boundary (singular) fit: a random-effects variance is at or near zero (or a "
                          "correlation at +-1)", SingularFitWarning, stacklevel=2)
        if fit.flat is not None and fit.flat.any():
            names = [n for n, f in zip(self.param_names, fit.flat if fit.flat is not None else []) if f]
            shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
            warnings.warn("standard errors could not be computed: the Hessian is not positive definite at the "
                          "returned point (its flat directions involve " + (shown or "several parameters") +
                          "; typically zero-inflation coefficients running off to +-infinity); they are reported "
                          "as NaN", UserWarning, stacklevel=2)
        return ZeroInflatedResultsWrapper(res)


class _AnovaDesign:
    """What `glmm_ext.anova` reads of a model's rows (same rows, same response)."""

    def __init__(self, d):
        self.nobs = int(d.y.shape[0])
        self.n_obs = self.nobs
        self.index = d.index
        self.y = d.y
        self.trials = np.ones_like(d.y)
        self.var_weights = np.ones_like(d.y)  # as GLMM's design: ones when not given
        self.freq_weights = np.ones_like(d.y)
        self.endog_name = d.endog_name
        self.n_dropped = d.n_dropped


def _intercept_column(X):
    if X.shape[1] == 0:
        return None
    hits = np.flatnonzero(np.all(X == 1.0, axis=0))
    return int(hits[0]) if hits.size else None


def _offset_values(data, offset, exposure):
    total = None
    for what, value, transform in (("offset", offset, None), ("exposure", exposure, np.log)):
        if value is None:
            continue
        if isinstance(value, str):
            if value not in data.columns:
                raise ValueError(f"{what} {value!r} is not a column of the data")
            v = pd.to_numeric(data[value], errors="coerce").to_numpy(float)
        else:
            v = np.asarray(value, float).reshape(-1)
            if v.shape[0] != len(data):
                raise ValueError(f"{what} has {v.shape[0]} values; the data have {len(data)} rows")
        if transform is not None:
            if np.any(v[np.isfinite(v)] <= 0):
                raise ValueError("exposure must be positive")
            with np.errstate(divide="ignore", invalid="ignore"):
                v = transform(v)
        total = v if total is None else total + v
    return total
