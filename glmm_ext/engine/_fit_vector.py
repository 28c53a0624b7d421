"""Run the vector-random-effect engines (random slopes) on a Design; estimates back in the data's units.

Predictors are centred and scaled as for the random-intercept path (beta = R gamma); each column of Z
is divided by its root mean square (no centring, which would change the model), so the engine's
b_s = D b with D = diag(rms) and Cov(b) = D^{-1} Cov(b_s) D^{-1}.  The Gaussian response is also
centred and scaled, the log-likelihood shifted back by the Jacobian as in `_fitting.fit_profile`.

Laplace fits (every non-(Gaussian, identity) pair) run on the any-structure engine (`_mixed.fit_mixed`) with
the one-term `ReStructure` of the design; the per-group engine (`_laplace_vector.VectorLaplace`) remains for
frequency weights of Gamma / Gaussian-log (its `FrequencyCorrection`), and as the profile intervals' objective.
"""
import time
from dataclasses import dataclass

import numpy as np

from ._fitting import FitOutput, standardize_gaussian
from ._glmm import fixed_effects_cov, glm_start
from ._laplace_vector import VectorData, VectorLaplace
from ._lmm_vector import SINGULAR_TOL, LambdaPattern, fit_vector_lmm
from ._mixed import fit_mixed
from ._optimize import fd_hessian, minimize
from ._optsummary import OptSummary
from ._pirls import inverse_or_nan
from ._segments import group_sums
from ._structure import ReStructure, ReTerm


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
    if design.has_freq_weights and dist_needs_frequency_correction(design.dist):
        # frequency weights of a dispersion family (Gamma, Gaussian-log) need `FrequencyCorrection`, which only
        # the one-term Laplace objective has: the old vector engine serves them
        return fit_vector_likelihood_rows(design, maxiter=maxiter, tol=tol, cov_type=cov_type, callback=callback)
    return fit_vector_likelihood(design, maxiter=maxiter, tol=tol, cov_type=cov_type, callback=callback)


def dist_needs_frequency_correction(dist):
    """True when frequency weights cannot be folded into the density's weight (a dispersion family but NB2)."""
    return bool(dist.has_dispersion and dist.name != "negativebinomial")


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


def one_term_structure(design):
    """ReStructure of a one-term random-slope design: one ReTerm per independent block of z columns
    (correlated within a block; a model of singleton blocks, ``(x || g)``, is one diagonal term), rows in the
    data's order with the design's group codes.  Returns (structure, column indices of each term)."""
    blocks = [list(b) for b in design.re_blocks]
    names = list(design.re_names)
    if all(len(b) == 1 for b in blocks):
        blocks = [[b[0] for b in blocks]]
        correlated = [False]
    else:
        correlated = [True] * len(blocks)
    terms = tuple(ReTerm(group=design.group_name, codes=np.asarray(design.codes, np.int64), n_levels=design.n_groups,
                         Z=np.ascontiguousarray(design.Z[:, b], dtype=float), z_names=tuple(names[c] for c in b),
                         correlated=corr) for b, corr in zip(blocks, correlated))
    return ReStructure(terms), blocks


def _full_lambda(structure, blocks, cov_params, q):
    """The q x q factor Lambda (data units, block diagonal in the design's column order) of the packed vector."""
    lam = np.zeros((q, q))
    for b, lam_k in zip(blocks, structure.unpack(cov_params)):
        lam[np.ix_(b, b)] = lam_k
    return lam


def fit_vector_likelihood(design, maxiter=100, tol=1e-6, cov_type="hessian", callback=None):
    """Laplace maximum likelihood with a vector random effect per group (any non-(Gaussian, identity) pair), on the
    any-structure engine (`_mixed.fit_mixed`), brought to the VectorFitOutput the results read."""
    t0 = time.perf_counter()
    q = _check_q(design)
    dist = design.dist
    structure, blocks = one_term_structure(design)
    prior = design.var_weights * (design.freq_weights if design.has_freq_weights else 1.0)
    if callback is not None:
        callback("start values", 0, np.nan)
    fit = fit_mixed(design.y, design.X, structure, dist, offset=design.offset,
                    prior_weights=None if np.all(prior == 1.0) else prior,
                    trials=design.trials if design.has_trials else None, nagq=1, maxiter=maxiter, tol=tol)
    phi = fit.scale
    lam = _full_lambda(structure, blocks, fit.cov_params, q)
    converged, message = bool(fit.converged), fit.message or ("converged" if fit.converged else "not converged")
    separated = dist.separated_rows(design.y, fit.eta)
    if separated:
        converged = False
        message = (f"complete or quasi-complete separation: {separated} rows are fitted with probability 0 or 1, "
                   "so some estimates diverge (no finite maximum)")
    if callback is not None:
        callback("standard errors", fit.n_iterations, -fit.llf)
    o = design.order
    m = (design.prior_weights * design.freq_weights)[o]
    eta = fit.eta[o]
    Z = design.Z[o]
    weights = np.broadcast_to(dist.working_weights(eta, m, phi), eta.shape) * 1.0
    cov_pirls = inverse_or_nan(_pirls_information(design.X[o], Z, lam, weights, design.starts))
    cov_beta, se_note = fit.cov_beta, ""
    if cov_type != "hessian":
        cov_beta = cov_pirls
    elif not np.all(np.isfinite(np.diag(cov_beta))):
        cov_beta, se_note = cov_pirls, ("the Hessian is not positive definite (or not finite at the edge of the "
                                        "support); standard errors use the PIRLS working weights")
    # conditional covariance of b_j: Lambda H_j^-1 Lambda', H_j = I + Lambda' A_j Lambda with the observed
    # curvature A_j = sum_i d_i z_i z_i' (the engine's H block of group j, cross-block entries included)
    _, d, _ = dist.derivatives(design.y[o], eta, m, phi, order=2)
    ZL = Z @ lam
    H = np.eye(q) + group_sums(d[:, None, None] * ZL[:, :, None] * ZL[:, None, :], design.starts)
    blup_cov = lam @ np.linalg.inv(H) @ lam.T
    blups = np.zeros((design.n_groups, q))
    for b, modes in zip(blocks, fit.modes):
        blups[:, b] = modes
    cov_re = lam @ lam.T
    opt = OptSummary(method="Laplace on the any-structure engine (PIRLS modes, bounded Newton)", nagq=1,
                     maxiter=maxiter, tol=tol, initial=structure.start_params(), final=np.asarray(fit.cov_params),
                     n_iterations=fit.n_iterations, n_evaluations=fit.n_evaluations, objective=-fit.llf,
                     newton_decrement=float(fit.decrement), converged=converged, message=message,
                     seconds=time.perf_counter() - t0)
    return VectorFitOutput(beta=fit.beta, cov_beta=cov_beta, var_re=cov_re[0, 0], scale=phi, llf=fit.llf, blups=blups,
                           blup_sd=np.sqrt(np.clip(np.diagonal(blup_cov, axis1=1, axis2=2), 0.0, None)),
                           converged=converged, singular=bool(any(fit.singular)), method="Laplace", opt=opt,
                           n_params=fit.n_params, cov_beta_pirls=cov_pirls, se_note=se_note, separated_rows=separated,
                           cov_re=cov_re, re_names=list(design.re_names), blup_cov=blup_cov)


def fit_vector_likelihood_rows(design, maxiter=100, tol=1e-6, cov_type="hessian", callback=None):
    """Laplace maximum likelihood with a vector random effect per group on the per-group engine (`VectorLaplace`):
    only for frequency weights of a dispersion family, which `fit_mixed` does not take (see `fit_vector`)."""
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
