"""Run the right engine on a Design and bring its estimates back to the data's units.

Gaussian + identity -> the exact REML/ML profile (_lmm.py) on a centred and scaled response;
every other pair -> Laplace / AGQ maximum likelihood (_glmm.py).  The output is on the original
scale of the predictors and response, ready for the results object.
"""
import time
from dataclasses import dataclass

import numpy as np

from ._glmm import fit_glmm
from ._lmm import SINGULAR_TOL, fit_lmm, lmm_stats
from ._optsummary import OptSummary
from .._validation import check_response_varies


@dataclass
class FitOutput:
    beta: np.ndarray
    cov_beta: np.ndarray
    var_re: float
    scale: float  # residual variance (Gaussian), dispersion (Gamma, Gaussian-log), 1 otherwise
    llf: float
    blups: np.ndarray  # by group code
    blup_sd: np.ndarray
    converged: bool
    singular: bool
    method: str  # "REML", "ML", "Laplace", "AGQ", "PIRLS (nagq=0)"
    opt: OptSummary
    n_params: int  # parameters counted by AIC/BIC
    cov_beta_pirls: np.ndarray = None
    se_note: str = ""
    separated_rows: int = 0
    notes: list = None  # warnings for the user (e.g. the Laplace approximation is poor for these data)


@dataclass
class StandardizedGaussian:
    """A Gaussian design on the profile's scale: X_s and y_s = (y - offset - c) / s, rows sorted by group.

    c is the response mean when there is an intercept (else 0) and s its SD (else its RMS), so the
    profile sees data of unit scale; `back` maps an estimate on that scale to the data's units.
    """

    X_s: np.ndarray
    y_s: np.ndarray
    y_center: float
    y_scale: float

    def back(self, design, fit_beta, fit_cov_beta, fit_llf, reml, n_obs=None):
        """(beta, Cov(beta), llf) in the data's units: beta = R (s gamma_s + c e_0), llf shifted by -dof log s
        with dof = n (ML) or n - p (REML; + log|det R|, the change of parametrisation of X); n is the
        number of observations (the sum of frequency weights where there are any)."""
        scaling = design.scaling
        R = scaling.matrix
        gamma = fit_beta * self.y_scale
        if scaling.intercept >= 0:
            gamma[scaling.intercept] += self.y_center
        n, p = (design.nobs if n_obs is None else n_obs), design.X.shape[1]
        llf = fit_llf - (n - p if reml else n) * np.log(self.y_scale) + (scaling.log_abs_det if reml else 0.0)
        return R @ gamma, (self.y_scale ** 2) * R @ fit_cov_beta @ R.T, llf


def standardize_gaussian(design):
    """The Gaussian design centred (when there is an intercept) and scaled; ValueError for a constant response."""
    o = design.order
    scaling = design.scaling
    y = design.y - design.offset
    y_center = float(np.mean(y)) if scaling.intercept >= 0 else 0.0
    y_scale = float(np.std(y - y_center)) if scaling.intercept >= 0 else float(np.sqrt(np.mean(y * y)))
    if not y_scale > 0:
        raise ValueError(f"the response {design.endog_name!r} does not vary; there is nothing to fit")
    return StandardizedGaussian(scaling.transform(design.X)[o], ((y - y_center) / y_scale)[o], y_center, y_scale)


def fit_profile(design, reml=True, maxiter=100, tol=1e-6, callback=None):
    """Exact REML/ML for Gaussian + identity, on a response centred (when there is an intercept) and scaled."""
    t0 = time.perf_counter()
    std = standardize_gaussian(design)
    X_s, y_s, y_scale = std.X_s, std.y_s, std.y_scale
    if callback is not None:
        callback("start values", 0, np.nan)
    weights, n_obs = design.lmm_weights()
    stats = lmm_stats(X_s, y_s, design.starts, design.counts, weights, n_obs)
    fit = fit_lmm(stats, reml=reml, tol=tol, maxiter=maxiter)
    if callback is not None:
        callback("REML" if reml else "ML", fit.n_evaluations, -fit.llf)
    beta, cov, llf = std.back(design, fit.beta, fit.cov_beta, fit.llf, reml, n_obs=n_obs)
    llf += 0.5 * design.log_var_weights  # the Gaussian density's log sqrt(w_i) terms
    p = design.X.shape[1]
    sigma2 = fit.sigma2 * y_scale**2
    method = f"{'REML' if reml else 'ML'} profile: log-grid + bounded Brent over theta = sigma_u/sigma_e"
    opt = OptSummary(method=method,
                     nagq=0, maxiter=maxiter, tol=tol, initial=np.array([np.nan]), final=np.array([fit.theta]),
                     n_iterations=fit.n_evaluations, n_evaluations=fit.n_evaluations, objective=-fit.llf,
                     newton_decrement=np.nan, converged=fit.converged, message=fit.message,
                     seconds=time.perf_counter() - t0)
    return FitOutput(beta=beta, cov_beta=cov, var_re=fit.theta**2 * sigma2, scale=sigma2, llf=llf,
                     blups=fit.blups * y_scale, blup_sd=fit.blup_sd * y_scale, converged=fit.converged,
                     singular=fit.theta < SINGULAR_TOL, method="REML" if reml else "ML", opt=opt, n_params=p + 2)


def unscale_response(fit, c, link_name, family_name, n):
    """Estimates for y from those for y / c (`Design.response_scale`), in place.

    log link: beta, sigma_u unchanged (log c sits in the offset); identity: beta, sigma_u, modes times c;
    inverse: divided by c.  Gamma's dispersion is unchanged, Gaussian's times c^2; llf - n log c.
    """
    if c == 1.0:
        return fit
    k = {"log": 1.0, "identity": c, "inverse": 1.0 / c}[link_name]
    fit.beta = fit.beta * k
    fit.cov_beta = fit.cov_beta * k * k
    fit.cov_beta_pirls = fit.cov_beta_pirls * k * k
    fit.var_re = fit.var_re * k * k
    fit.blups, fit.blup_sd = fit.blups * k, fit.blup_sd * k
    if family_name == "gaussian":
        fit.scale = fit.scale * c * c
    fit.llf = fit.llf - n * np.log(c)
    return fit


def fit_likelihood(design, nagq=1, maxiter=100, tol=1e-6, cov_type="hessian", callback=None):
    """Laplace / AGQ maximum likelihood (or nagq = 0) for any non-(Gaussian, identity) pair.

    Gamma and Gaussian-log responses are fitted on the scale y / c (`Design.response_scale`).
    """
    check_response_varies(design.dist.name, design.dist.link_name, design.y, design.offset, design.endog_name)
    data = design.engine_data(scale_response=True)
    with np.errstate(all="ignore"):  # trial points outside the support are rejected, not reported
        fit = fit_glmm(design.dist, data, nagq=nagq, maxiter=maxiter, tol=tol, cov_type=cov_type,
                       callback=callback)
    fit = unscale_response(fit, design.response_scale, design.dist.link_name, design.dist.name, design.n_obs)
    R = design.scaling.matrix
    method = {0: "PIRLS (nagq=0)", 1: "Laplace"}.get(nagq, "AGQ")
    return FitOutput(beta=R @ fit.beta, cov_beta=R @ fit.cov_beta @ R.T, var_re=fit.var_re, scale=fit.scale,
                     llf=fit.llf, blups=fit.blups, blup_sd=fit.blup_sd, converged=fit.converged,
                     singular=fit.singular, method=method, opt=fit.opt,
                     n_params=design.X.shape[1] + 1 + int(design.dist.has_dispersion),
                     cov_beta_pirls=R @ fit.cov_beta_pirls @ R.T, se_note=fit.se_note,
                     separated_rows=fit.separated_rows, notes=list(fit.notes or []))
