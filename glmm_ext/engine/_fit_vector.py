"""Run the vector-random-effect engines (random slopes) on a Design; estimates back in the data's units.

Predictors are centred and scaled as for the random-intercept path (beta = R gamma); each column of Z
is divided by its root mean square (no centring, which would change the model), so the engine's
b_s = D b with D = diag(rms) and Cov(b) = D^{-1} Cov(b_s) D^{-1}.  The Gaussian response is also
centred and scaled, the log-likelihood shifted back by the Jacobian as in `_fitting.fit_profile`.
"""
import time
from dataclasses import dataclass

import numpy as np

from ._fitting import FitOutput, standardize_gaussian
from ._glmm import fixed_effects_cov, glm_start
from ._laplace_vector import VectorData, VectorLaplace
from ._lmm_vector import SINGULAR_TOL, LambdaPattern, fit_vector_lmm
from ._optimize import fd_hessian, minimize
from ._optsummary import OptSummary
from ._pirls import inverse_or_nan
from ._segments import group_sums


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
    """q, or a ValueError when the groups (or, Gaussian, the rows) cannot identify the covariance."""
    q = design.Z.shape[1]
    if design.n_groups <= q:
        raise ValueError(f"{design.n_groups} groups cannot identify a {q} x {q} random-effects covariance "
                         f"({', '.join(design.re_names)}); use fewer random terms or more groups")
    if design.gaussian_identity and design.nobs <= design.n_groups * q:
        raise ValueError(f"{design.nobs} rows for {design.n_groups * q} random effects ({design.n_groups} groups x "
                         f"{q} terms): the residual variance is not identifiable; use fewer random terms")
    return q


def fit_vector_profile(design, reml=True, maxiter=100, tol=1e-6, callback=None):
    """Exact REML/ML for Gaussian + identity with a vector random effect per group."""
    t0 = time.perf_counter()
    q = _check_q(design)
    o = design.order
    std = standardize_gaussian(design)
    X_s, y_s, y_scale = std.X_s, std.y_s, std.y_scale
    zs = z_scale(design.Z)
    Z_s = design.Z[o] / zs
    pattern = LambdaPattern(q, design.re_blocks)
    if callback is not None:
        callback("start values", 0, np.nan)
    fit = fit_vector_lmm(X_s, y_s, Z_s, design.starts, pattern, reml=reml, tol=tol, maxiter=maxiter)
    if callback is not None:
        callback("REML" if reml else "ML", fit.n_evaluations, -fit.llf)
    beta, cov_beta, llf = std.back(design, fit.beta, fit.cov_beta, fit.llf, reml)
    sigma2 = fit.sigma2 * y_scale**2
    back = y_scale / zs  # b = back * b_s
    cov_re = sigma2 * (fit.lam @ fit.lam.T) / np.outer(zs, zs)
    blup_cov = fit.blup_cov * np.outer(back, back)
    opt = OptSummary(method=f"{'REML' if reml else 'ML'} profile over Lambda (SLSQP, then Newton steps)",
                     nagq=0, maxiter=maxiter, tol=tol, initial=pattern.start(1.0), final=fit.theta,
                     n_iterations=fit.n_evaluations, n_evaluations=fit.n_evaluations, objective=-fit.llf,
                     newton_decrement=fit.decrement, converged=fit.converged, message=fit.message,
                     seconds=time.perf_counter() - t0)
    return VectorFitOutput(beta=beta, cov_beta=cov_beta, var_re=cov_re[0, 0],
                           scale=sigma2, llf=llf, blups=fit.blups * back,
                           blup_sd=np.sqrt(np.diagonal(blup_cov, axis1=1, axis2=2)), converged=fit.converged,
                           singular=is_singular(fit.lam), method="REML" if reml else "ML", opt=opt,
                           n_params=design.X.shape[1] + 1 + pattern.size, cov_re=cov_re, re_names=list(design.re_names),
                           blup_cov=blup_cov)


def fit_vector(design, reml=True, nagq=1, maxiter=100, tol=1e-6, cov_type="hessian", callback=None):
    """The vector engine for this design: exact REML/ML (Gaussian identity) or Laplace (every other pair)."""
    if design.gaussian_identity:
        return fit_vector_profile(design, reml=reml, maxiter=maxiter, tol=tol, callback=callback)
    if nagq != 1:
        raise ValueError(f"nagq={nagq}: with a vector random effect ({', '.join(design.re_names)}) only the Laplace "
                         "approximation (nagq=1) is available; adaptive quadrature needs a scalar random effect "
                         "(lme4's rule) and nagq=0 is not implemented for random slopes")
    return fit_vector_likelihood(design, maxiter=maxiter, tol=tol, cov_type=cov_type, callback=callback)


def _pirls_information(X, Z, lam, weights, starts):
    """Information for beta with the modes profiled out: X'WX - sum_j C_j' (I + Lambda'A_jLambda)^{-1} C_j,
    C_j = Lambda' sum_i w_i z_i x_i', A_j = sum_i w_i z_i z_i' (the working weights w)."""
    W = Z @ lam
    C = group_sums(weights[:, None, None] * W[:, :, None] * X[:, None, :], starts)
    H = np.eye(lam.shape[0]) + group_sums(weights[:, None, None] * W[:, :, None] * W[:, None, :], starts)
    return X.T @ (X * weights[:, None]) - np.einsum("gqa,gqb->ab", C, np.linalg.solve(H, C))


def _start(objective, gamma, scale):
    """Start point: GLM estimates, Lambda = c I with the best c on a short grid."""
    tail = [np.log(scale)] if objective.dist.has_dispersion else []
    best = None
    for c in (0.25, 0.5, 1.0):
        theta = np.concatenate([gamma, objective.pattern.start(c), tail])
        f, _ = objective(theta, need_grad=False)
        if np.isfinite(f) and (best is None or f < best[0]):
            best = (f, theta)
    if best is None:
        raise ValueError("no starting point with a finite likelihood: the GLM start values leave the "
                         "family's support (check the link and the response)")
    objective.u_warm = None
    objective(best[1], need_grad=False)
    return best[1]


def fit_vector_likelihood(design, maxiter=100, tol=1e-6, cov_type="hessian", callback=None):
    """Laplace maximum likelihood with a vector random effect per group (any non-(Gaussian, identity) pair)."""
    t0 = time.perf_counter()
    q = _check_q(design)
    dist = design.dist
    base = design.engine_data()
    zs = z_scale(design.Z)
    data = VectorData(y=base.y, X=base.X, Z=design.Z[design.order] / zs, offset=base.offset, m=base.m,
                      const=base.const, starts=base.starts, counts=base.counts)
    pattern = LambdaPattern(q, design.re_blocks)
    objective = VectorLaplace(dist, data, pattern)
    with np.errstate(all="ignore"):
        gamma0, scale0 = glm_start(dist, data)
        if callback is not None:
            callback("start values", 0, np.nan)
        theta0 = _start(objective, gamma0, scale0)
        # forward differences of the analytic gradient (half the evaluations of central ones)
        hess0 = fd_hessian(objective, theta0, grad=objective(theta0)[1])
        res = minimize(objective, theta0, hess0, maxiter, tol, callback, central=False)
        iters = res.iterations
        p, k = objective.p, pattern.size
        if np.any(np.abs(res.x[p:p + k][pattern.is_diag]) < SINGULAR_TOL):  # boundary: re-check from Lambda = I
            retry = np.concatenate([res.x[:p], pattern.start(1.0), res.x[p + k:]])
            objective.u_warm = None
            if np.isfinite(objective(retry, need_grad=False)[0]):
                second = minimize(objective, retry, fd_hessian(objective, retry, grad=objective(retry)[1]), maxiter,
                                  tol, callback, central=False)
                iters += second.iterations
                if second.f < res.f - 1e-9:
                    res = second
    theta, f, hess, decrement = res.x, res.f, res.hess, res.decrement
    # report Lambda with a non-negative diagonal: flip the sign of a column (and of the Hessian's rows)
    lam = pattern.build(theta[p:p + k])
    signs = np.where(np.diag(lam) < 0, -1.0, 1.0)
    flip = np.ones(len(theta))
    flip[p:p + k] = signs[pattern.cols]
    theta, hess = theta * flip, hess * np.outer(flip, flip)
    md = objective.modes_at(theta)
    if md is None:
        raise FloatingPointError("no conditional modes at the optimum")
    _, lam, phi = objective.unpack(theta)
    converged = bool(res.converged)
    message = res.message or ("converged" if converged else "not converged")
    separated = dist.separated_rows(data.y, md.eta)
    if separated:
        converged = False
        message = (f"complete or quasi-complete separation: {separated} rows are fitted with probability 0 or 1, "
                   "so some estimates diverge (no finite maximum)")
    if callback is not None:
        callback("standard errors", iters, f)
    weights = dist.working_weights(md.eta, data.m, phi)
    cov_pirls = inverse_or_nan(_pirls_information(data.X, data.Z, lam, weights, data.starts))
    at_zero = np.flatnonzero(pattern.is_diag & (np.abs(theta[p:p + k]) < SINGULAR_TOL)) + p
    keep = [j for j in range(len(theta)) if j not in set(at_zero)]
    cov_beta, se_note = fixed_effects_cov(hess, keep, p, cov_pirls, cov_type)
    K = np.linalg.inv(md.H)
    blup_cov = (lam @ K @ lam.T) / np.outer(zs, zs)
    R = design.scaling.matrix
    opt = OptSummary(method="BFGS + Newton (Laplace, vector random effect)", nagq=1, maxiter=maxiter, tol=tol,
                     initial=theta0, final=theta, n_iterations=iters, n_evaluations=objective.n_calls, objective=f,
                     newton_decrement=float(decrement), converged=converged, message=message,
                     seconds=time.perf_counter() - t0)
    cov_re = (lam @ lam.T) / np.outer(zs, zs)
    return VectorFitOutput(beta=R @ theta[:p], cov_beta=R @ cov_beta @ R.T, var_re=cov_re[0, 0], scale=phi, llf=-f,
                           blups=(md.u @ lam.T) / zs, blup_sd=np.sqrt(np.diagonal(blup_cov, axis1=1, axis2=2)),
                           converged=converged, singular=is_singular(lam), method="Laplace", opt=opt,
                           n_params=p + k + int(dist.has_dispersion), cov_beta_pirls=R @ cov_pirls @ R.T,
                           se_note=se_note, separated_rows=separated, cov_re=cov_re, re_names=list(design.re_names),
                           blup_cov=blup_cov)
