"""Run the vector-random-effect engines (random slopes) on a Design; estimates back in the data's units.

Predictors are centred and scaled as for the random-intercept path (beta = R gamma); each column of Z
is divided by its root mean square (no centring, which would change the model), so the engine's
b_s = D b with D = diag(rms) and Cov(b) = D^{-1} Cov(b_s) D^{-1}.  The Gaussian response is also
centred and scaled, the log-likelihood shifted back by the Jacobian as in `_fitting.fit_profile`.
"""
import time
from dataclasses import dataclass

import numpy as np

from ._fitting import FitOutput
from ._lmm_vector import SINGULAR_TOL, LambdaPattern, fit_vector_lmm
from ._optsummary import OptSummary


@dataclass
class VectorFitOutput(FitOutput):
    """FitOutput of a vector random effect: ``var_re`` is the first term's variance, ``blups`` (G, q)."""

    cov_re: np.ndarray = None  # (q, q)
    re_names: list = None
    blup_cov: np.ndarray = None  # (G, q, q) conditional covariances


def z_scale(Z):
    """Root mean square of each column of Z (1 for an all-zero column)."""
    rms = np.sqrt(np.mean(Z * Z, axis=0))
    return np.where(rms > 0, rms, 1.0)


def is_singular(lam_s):
    """Lambda at its boundary: a (relative) diagonal entry near 0, or an implied correlation of +-1."""
    if np.any(np.diag(lam_s) < SINGULAR_TOL):
        return True
    cov = lam_s @ lam_s.T
    sd = np.sqrt(np.diag(cov))
    corr = cov / np.outer(sd, sd)
    return bool(np.any(np.abs(corr[np.triu_indices_from(corr, 1)]) > 1.0 - 1e-6))


def _check_q(design):
    q = design.Z.shape[1]
    if design.n_groups <= q:
        raise ValueError(f"{design.n_groups} groups cannot identify a {q} x {q} random-effects covariance "
                         f"({', '.join(design.re_names)}); use fewer random terms or more groups")
    return q


def fit_vector_profile(design, reml=True, maxiter=100, tol=1e-6, callback=None):
    """Exact REML/ML for Gaussian + identity with a vector random effect per group."""
    t0 = time.perf_counter()
    q = _check_q(design)
    o = design.order
    scaling = design.scaling
    X_s = scaling.transform(design.X)[o]
    y = design.y - design.offset
    y_center = float(np.mean(y)) if scaling.intercept >= 0 else 0.0
    y_scale = float(np.std(y - y_center)) if scaling.intercept >= 0 else float(np.sqrt(np.mean(y * y)))
    if not y_scale > 0:
        raise ValueError(f"the response {design.endog_name!r} does not vary; there is nothing to fit")
    y_s = ((y - y_center) / y_scale)[o]
    zs = z_scale(design.Z)
    Z_s = design.Z[o] / zs
    pattern = LambdaPattern(q, design.re_blocks)
    if callback is not None:
        callback("start values", 0, np.nan)
    fit = fit_vector_lmm(X_s, y_s, Z_s, design.starts, pattern, reml=reml, tol=tol, maxiter=maxiter)
    if callback is not None:
        callback("REML" if reml else "ML", fit.n_evaluations, -fit.llf)
    R = scaling.matrix
    gamma = fit.beta * y_scale
    if scaling.intercept >= 0:
        gamma[scaling.intercept] += y_center
    n, p = design.nobs, design.X.shape[1]
    llf = fit.llf - (n - p if reml else n) * np.log(y_scale) + (scaling.log_abs_det if reml else 0.0)
    sigma2 = fit.sigma2 * y_scale**2
    back = y_scale / zs  # b = back * b_s
    cov_re = sigma2 * (fit.lam @ fit.lam.T) / np.outer(zs, zs)
    blup_cov = fit.blup_cov * np.outer(back, back)
    opt = OptSummary(method=f"{'REML' if reml else 'ML'} profile over Lambda (L-BFGS-B, diag >= 0; Powell polish)",
                     nagq=0, maxiter=maxiter, tol=tol, initial=pattern.start(1.0), final=fit.theta,
                     n_iterations=fit.n_evaluations, n_evaluations=fit.n_evaluations, objective=-fit.llf,
                     newton_decrement=np.nan, converged=fit.converged, message=fit.message,
                     seconds=time.perf_counter() - t0)
    return VectorFitOutput(beta=R @ gamma, cov_beta=(y_scale**2) * R @ fit.cov_beta @ R.T, var_re=cov_re[0, 0],
                           scale=sigma2, llf=llf, blups=fit.blups * back,
                           blup_sd=np.sqrt(np.diagonal(blup_cov, axis1=1, axis2=2)), converged=fit.converged,
                           singular=is_singular(fit.lam), method="REML" if reml else "ML", opt=opt,
                           n_params=p + 1 + pattern.size, cov_re=cov_re, re_names=list(design.re_names),
                           blup_cov=blup_cov)


def fit_vector(design, reml=True, nagq=1, maxiter=100, tol=1e-6, cov_type="hessian", callback=None):
    """The vector engine for this design: exact REML/ML (Gaussian identity) or Laplace (every other pair)."""
    if design.gaussian_identity:
        return fit_vector_profile(design, reml=reml, maxiter=maxiter, tol=tol, callback=callback)
    if nagq != 1:
        raise ValueError(f"nagq={nagq}: with a vector random effect ({', '.join(design.re_names)}) only the Laplace "
                         "approximation (nagq=1) is available; adaptive quadrature and nagq=0 need a scalar random "
                         "effect (as lme4's)")
    return fit_vector_likelihood(design, maxiter=maxiter, tol=tol, cov_type=cov_type, callback=callback)
