"""Maximum-likelihood fit of a non-Gaussian (or non-identity) random-intercept GLMM, on arrays.

Stages (each a function a user can call alone): `glm_start` (statsmodels GLM without random
effects) -> `MarginalLikelihood` (Laplace / AGQ objective, _laplace.py) -> `_optimize.minimize`
(BFGS then Newton) -> standard errors and conditional modes.  `nagq = 0` instead estimates beta
inside PIRLS and optimises only the variance parameters (lme4's nAGQ = 0), an approximation.
"""
import copy
import time
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import linalg, optimize as sp_optimize
import statsmodels.api as sm

from ._laplace import MarginalLikelihood
from ._optimize import fd_columns, minimize
from ._optsummary import OptSummary
from ._segments import group_sums, to_rows

#: an intercept SD below this (on the linear-predictor scale) is a boundary (singular) fit, as lme4's
SINGULAR_TOL = 1e-4


@dataclass
class EngineFit:
    """A fit on the engine's parametrisation (scaled predictors)."""

    beta: np.ndarray
    cov_beta: np.ndarray
    var_re: float
    scale: float
    llf: float
    blups: np.ndarray
    blup_sd: np.ndarray
    converged: bool
    singular: bool
    opt: OptSummary
    cov_beta_pirls: np.ndarray = None
    se_note: str = ""
    separated_rows: int = 0


#: rows of the GLM start fit at most (an evenly spaced subset beyond): start values need not be exact
START_ROWS = 50_000


def glm_start(dist, data, maxiter=100):
    """Fixed effects and dispersion of the GLM without random effects (statsmodels GLM).

    Falls back to a least-squares fit of g(mean y) when the GLM fails or leaves the support.
    """
    gamma, scale = None, 1.0
    n = data.y.size
    rows = slice(None) if n <= START_ROWS else np.linspace(0, n - 1, START_ROWS).astype(np.intp)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = sm.GLM(data.y[rows], data.X[rows], family=copy.deepcopy(dist.family), offset=data.offset[rows],
                         var_weights=data.m[rows]).fit(maxiter=maxiter)
        if np.all(np.isfinite(res.params)) and dist.feasible(data.X @ res.params + data.offset).all():
            gamma, scale = np.asarray(res.params, float), float(res.scale)
            if dist.name == "negativebinomial":  # statsmodels' alpha is fixed: start NB2's alpha by moments
                scale = dist.start_dispersion(data.y[rows], np.asarray(res.fittedvalues, float))
    except Exception:  # noqa: BLE001 - any GLM failure only means another start is needed
        gamma = None
    if gamma is None:
        ybar = np.average(data.y, weights=data.m)
        target = np.full_like(data.y, float(dist.link(np.clip(ybar, 1e-6, None))))
        gamma = np.linalg.lstsq(data.X, target - data.offset, rcond=None)[0]
        if not dist.feasible(data.X @ gamma + data.offset).all():
            gamma = np.linalg.lstsq(data.X, target, rcond=None)[0]
        mu = dist.mean(data.X @ gamma + data.offset)
        scale = float(np.mean((data.y - mu) ** 2 / dist.family.variance(mu))) if dist.has_dispersion else 1.0
    if not np.isfinite(scale) or scale <= 0:
        scale = 1.0
    spread = np.max(np.abs(data.X @ gamma)) if gamma.size else 0.0
    if dist.name == "binomial" and spread > 15.0:  # separated data: start inside, the search goes outward
        gamma = gamma * (15.0 / spread)
    return gamma, scale


def pirls_information(X, weights, sigma, starts, counts):
    """Information for beta with the modes profiled out: X'WX - sum_j s^2 (X_j'w_j)(w_j'X_j) / (1 + s^2 sum w_j)."""
    Xw = X * weights[:, None]
    xw_sums = group_sums(Xw, starts)
    H = 1.0 + sigma * sigma * group_sums(weights, starts)
    return X.T @ Xw - (sigma * sigma) * (xw_sums / H[:, None]).T @ xw_sums


def _inverse(matrix):
    """Inverse of a symmetric information matrix; NaN where it is singular (reported, never raised)."""
    try:
        return linalg.inv(matrix)
    except (linalg.LinAlgError, ValueError):
        return np.full_like(matrix, np.nan)


def _initial_hessian(objective, theta):
    """Start Hessian for BFGS: PIRLS information for beta, finite differences for the variance parameters."""
    p, k = objective.p, objective.n_params
    md = objective.modes_at(theta)
    _, sigma, phi = objective.unpack(theta)
    d = md.d if np.all(md.d >= 0) else objective.dist.working_weights(md.eta, objective.data.m, phi)
    hess = np.zeros((k, k))
    hess[:p, :p] = pirls_information(objective.data.X, d, sigma, objective.data.starts, objective.data.counts)
    block = fd_columns(objective, theta, range(p, k))
    hess[:, p:] = block
    hess[p:, :] = block.T
    return hess


def _start_theta(objective, gamma, scale):
    """(gamma, s, log phi) start: GLM estimates and the best s on a short grid."""
    tail = [np.log(scale)] if objective.dist.has_dispersion else []
    best = None
    for s in (0.25, 0.5, 1.0, 2.0):
        theta = np.concatenate([gamma, [s], tail])
        f, _ = objective(theta, need_grad=False)
        if np.isfinite(f) and (best is None or f < best[0]):
            best = (f, theta)
    if best is None:
        raise ValueError("no starting point with a finite likelihood: the GLM start values leave the "
                         "family's support (check the link and the response)")
    objective(best[1], need_grad=False)  # leave the warm start at the chosen point
    return best[1]


def fit_glmm(dist, data, nagq=1, maxiter=100, tol=1e-6, cov_type="hessian", callback=None):
    """Maximum-likelihood fit by the Laplace approximation (nagq = 1) or AGQ (nagq > 1)."""
    t0 = time.perf_counter()
    gamma0, scale0 = glm_start(dist, data)
    if callback is not None:
        callback("start values", 0, np.nan)
    if nagq == 0:
        return _fit_nagq0(dist, data, gamma0, scale0, maxiter, tol, callback, t0)
    # Laplace first: cheap, and an excellent start for AGQ
    laplace = MarginalLikelihood(dist, data, nagq=1)
    theta0 = _start_theta(laplace, gamma0, scale0)
    hess0 = _initial_hessian(laplace, theta0)
    theta, f, g, hess, iters, decrement, message = minimize(laplace, theta0, hess0, maxiter, tol, callback)
    n_eval = laplace.n_calls
    objective = laplace
    if nagq > 1:
        objective = MarginalLikelihood(dist, data, nagq=nagq)
        objective.u_warm = laplace.u_warm.copy()
        theta, f, g, hess, more, decrement, message = minimize(objective, theta, hess, maxiter, tol, callback,
                                                               central=False, quasi_newton=False)
        iters += more
        n_eval += objective.n_calls
    converged = bool(decrement < tol) and iters <= maxiter
    if not message:
        message = "converged" if converged else "not converged"
    md = objective.modes_at(theta)
    if md is None:  # cannot happen for an accepted point; guard against a warm-start artefact
        raise FloatingPointError("no conditional modes at the optimum")
    separated = dist.separated_rows(data.y, md.eta)
    if separated:
        converged = False
        message = (f"complete or quasi-complete separation: {separated} rows are fitted with probability 0 or 1, "
                   "so some estimates diverge (no finite maximum)")
    p = objective.p
    _, sigma, phi = objective.unpack(theta)
    singular = sigma < SINGULAR_TOL
    if callback is not None:
        callback("standard errors", iters, f)
    weights = dist.working_weights(md.eta, data.m, phi)
    cov_pirls = _inverse(pirls_information(data.X, weights, sigma, data.starts, data.counts))
    if dist.name in ("gaussian", "gamma") and phi < 1e-10 * max(1.0, float(np.var(data.y))):
        converged = False
        message = ("the dispersion collapsed to zero: the fixed and random effects reproduce the data exactly, "
                   "so the likelihood has no maximum")
    keep = [j for j in range(len(theta)) if not (singular and j == p)]
    cov_beta, se_note = None, ""
    if cov_type == "hessian":
        sub = hess[np.ix_(keep, keep)]
        try:
            cov_beta = linalg.inv(linalg.cholesky(sub, lower=True))
            cov_beta = (cov_beta.T @ cov_beta)[:p, :p]
        except (linalg.LinAlgError, ValueError):
            se_note = ("the Hessian is not positive definite (or not finite at the edge of the support); "
                       "standard errors use the PIRLS working weights")
    if cov_beta is None:
        cov_beta = cov_pirls
    opt = OptSummary(method=f"BFGS + Newton ({'Laplace' if nagq == 1 else f'AGQ, {nagq} nodes'})", nagq=nagq,
                     maxiter=maxiter, tol=tol, initial=theta0, final=theta, n_iterations=iters,
                     n_evaluations=n_eval, objective=f, newton_decrement=float(decrement), converged=converged,
                     message=message, seconds=time.perf_counter() - t0)
    return EngineFit(beta=theta[:p].copy(), cov_beta=cov_beta, var_re=sigma * sigma, scale=phi, llf=-f,
                     blups=sigma * md.b, blup_sd=sigma / np.sqrt(md.H), converged=converged, singular=singular,
                     opt=opt, cov_beta_pirls=cov_pirls, se_note=se_note, separated_rows=separated)


def _joint_pirls(dist, data, sigma, phi, gamma, b, tol=1e-10, maxiter=100):
    """Maximise sum_i log f(y_i | X beta + sigma b) - |b|^2 / 2 over (beta, b) jointly (PIRLS, Fisher weights).

    The block (b) is eliminated group by group (Schur complement), so a step costs O(n p^2).
    """
    X, starts, counts = data.X, data.starts, data.counts

    def penalised(gamma, b):
        eta = X @ gamma + data.offset + sigma * to_rows(b, counts)
        ll = dist.loglik(data.y, eta, data.m, phi, data.const)
        return float(np.sum(ll) - 0.5 * b @ b), eta

    value, eta = penalised(gamma, b)
    for _ in range(maxiter):
        l1, _, _ = dist.derivatives(data.y, eta, data.m, phi, order=1)
        w = dist.working_weights(eta, data.m, phi)
        g_beta = X.T @ l1
        g_b = sigma * group_sums(l1, starts) - b
        xw = group_sums(X * w[:, None], starts)
        H = 1.0 + sigma * sigma * group_sums(w, starts)
        schur = X.T @ (X * w[:, None]) - sigma * sigma * (xw / H[:, None]).T @ xw
        rhs = g_beta - sigma * xw.T @ (g_b / H)
        d_beta = linalg.solve(schur, rhs, assume_a="pos")
        d_b = (g_b - sigma * xw @ d_beta) / H
        decrement = 0.5 * (g_beta @ d_beta + g_b @ d_b)
        if decrement < tol:
            break
        alpha = 1.0
        for _ in range(40):
            new_value, new_eta = penalised(gamma + alpha * d_beta, b + alpha * d_b)
            if new_value >= value:
                break
            alpha *= 0.5
        gamma, b, value, eta = gamma + alpha * d_beta, b + alpha * d_b, new_value, new_eta
    return gamma, b


def _fit_nagq0(dist, data, gamma0, scale0, maxiter, tol, callback, t0):
    """nagq = 0: beta from PIRLS at each (sigma, phi); only the variance parameters are optimised."""
    laplace = MarginalLikelihood(dist, data, nagq=1)
    state = {"gamma": gamma0.copy(), "b": np.zeros(data.n_groups), "n": 0}

    def objective(v):  # v = (log sigma, log phi): unconstrained, and not even in sigma as s would be
        sigma = float(np.exp(v[0]))
        phi = float(np.exp(v[1])) if dist.has_dispersion else 1.0
        gamma, b = _joint_pirls(dist, data, sigma, phi, state["gamma"], state["b"])
        state.update(gamma=gamma, b=b)
        state["n"] += 1
        theta = np.concatenate([gamma, [sigma], [np.log(phi)] if dist.has_dispersion else []])
        laplace.u_warm = sigma * b
        f, _ = laplace(theta, need_grad=False)
        if callback is not None:
            callback("optimize", state["n"], f)
        return f

    v0 = [np.log(0.5)] + ([np.log(scale0)] if dist.has_dispersion else [])
    # Powell: derivative-free line searches (Brent) over the one or two variance parameters
    bounds = [(np.log(SINGULAR_TOL) - 2.0, np.log(50.0))] + ([(-25.0, 10.0)] if dist.has_dispersion else [])
    res = sp_optimize.minimize(objective, v0, method="Powell", bounds=bounds,
                               options={"maxiter": maxiter, "xtol": 1e-6, "ftol": tol * 1e-3})
    sigma = float(np.exp(res.x[0]))
    if sigma < SINGULAR_TOL:  # log sigma ran towards -inf: the boundary
        sigma = 0.0
    phi = float(np.exp(res.x[1])) if dist.has_dispersion else 1.0
    f = objective(np.concatenate([[np.log(sigma) if sigma > 0 else -np.inf], res.x[1:]]))
    gamma = state["gamma"]
    theta = np.concatenate([gamma, [sigma], [np.log(phi)] if dist.has_dispersion else []])
    md = laplace.modes_at(theta)
    weights = dist.working_weights(md.eta, data.m, phi)
    cov = _inverse(pirls_information(data.X, weights, sigma, data.starts, data.counts))
    opt = OptSummary(method="Powell over the variance parameters, beta in PIRLS (nagq=0, approximate)",
                     nagq=0, maxiter=maxiter, tol=tol, initial=np.asarray(v0), final=theta,
                     n_iterations=int(res.nit), n_evaluations=state["n"], objective=f,
                     newton_decrement=np.nan, converged=bool(res.success), message=str(res.message),
                     seconds=time.perf_counter() - t0)
    return EngineFit(beta=gamma, cov_beta=cov, var_re=sigma * sigma, scale=phi, llf=-f, blups=sigma * md.b,
                     blup_sd=sigma / np.sqrt(md.H), converged=bool(res.success), singular=sigma < SINGULAR_TOL,
                     opt=opt, cov_beta_pirls=cov, se_note="nagq=0: standard errors from the PIRLS working weights")
