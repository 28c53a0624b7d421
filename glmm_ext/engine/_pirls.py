"""nagq = 0 (lme4's nAGQ = 0): beta and the modes jointly by penalised IRLS, only the variance optimised.

For fixed (sigma, phi), PIRLS maximises the penalised log-likelihood

    P(beta, b) = sum_i log f(y_i | x_i'beta + offset_i + sigma b_{g(i)}) - |b|^2 / 2

over (beta, b) jointly; the objective of the outer search is its Laplace value

    L0(sigma, phi) = P(beta_hat, b_hat) - sum_j log(1 + sigma^2 sum_{i in j} w_i) / 2,

w the Fisher working weights.  Binomial and Poisson have one variance parameter: a bounded scalar
search (Brent) over log sigma; Gamma and Gaussian-log add log phi (Powell's method in two dimensions).
The reported llf is the Laplace value (observed curvature, _laplace.py) at the returned estimates.
"""
import time

import numpy as np
from scipy import linalg, optimize

from ._laplace import MarginalLikelihood, conditional_modes, evenly_spaced_groups, subset_groups
from ._lmm import SINGULAR_TOL
from ._optsummary import OptSummary
from ._record import scalar_record
from ._segments import group_sums, to_rows

#: how a nagq = 0 fit's standard errors were obtained (its record's se_note)
NAGQ0_SE_NOTE = "nagq=0: standard errors from the PIRLS working weights"
#: groups of the subset on which nagq = 0 first locates sigma_u (Binomial, Poisson with many groups)
SUBSET_GROUPS = 1000


def pirls_information(X, weights, sigma, starts, counts):
    """Information for beta with the modes profiled out: X'WX - sum_j s^2 (X_j'w_j)(w_j'X_j) / (1 + s^2 sum w_j)."""
    Xw = X * weights[:, None]
    xw_sums = group_sums(Xw, starts)
    H = 1.0 + sigma * sigma * group_sums(weights, starts)
    return X.T @ Xw - (sigma * sigma) * (xw_sums / H[:, None]).T @ xw_sums


def inverse_or_nan(matrix):
    """Inverse of a symmetric information matrix; NaN where it is singular (reported, never raised)."""
    try:
        inv = linalg.inv(matrix)
    except (linalg.LinAlgError, ValueError):
        return np.full_like(matrix, np.nan)
    return inv if np.all(np.isfinite(inv)) else np.full_like(matrix, np.nan)


class PenalisedFit:
    """Warm-started joint PIRLS at a sequence of (sigma, phi): the state is (gamma, b)."""

    def __init__(self, dist, data, gamma, tol=1e-7, maxiter=50):
        self.dist, self.data, self.tol, self.maxiter = dist, data, tol, maxiter
        #: a full step with a decrement below this ends the iteration (canonical links only: Newton)
        self.quadratic = 1e-3 if dist._natural else 0.0
        self.gamma = np.asarray(gamma, float).copy()
        self.b = np.zeros(data.n_groups)
        self.iterations = 0
        self.converged = True
        self.sigma, self.W = 0.0, None  # the last positive sigma and its group sums of weights

    def penalised(self, gamma, b, sigma, phi, eta=None):
        """P(beta, b) and eta; `eta` may be given when already known (a step's trial point)."""
        data = self.data
        if eta is None:
            eta = data.X @ gamma + data.offset
            if sigma > 0:
                eta = eta + sigma * to_rows(b, data.counts)
        ll = self.dist.evaluate(data.y, eta, data.m, phi, data.const, order=0, aux=data.aux)[0]  # row-blocked
        value = float(np.sum(ll) - 0.5 * b @ b)
        return (value if np.isfinite(value) else -np.inf), eta

    def fit(self, sigma, phi):
        """Maximise P over (beta, b) from the stored state; returns the Laplace value L0 (or -inf)."""
        dist, data = self.dist, self.data
        X, starts = data.X, data.starts
        b = self.b if sigma > 0 else np.zeros_like(self.b)
        if sigma > 0 and self.sigma > 0 and self.W is not None:
            # first-order prediction of the modes at the new sigma: b_j ~ sigma S_j / (1 + sigma^2 W_j)
            b = b * (sigma * (1.0 + self.sigma**2 * self.W)) / (self.sigma * (1.0 + sigma * sigma * self.W))
        gamma = self.gamma
        value, eta = self.penalised(gamma, b, sigma, phi)
        if not np.isfinite(value):  # the warm start left the support at this sigma: modes from 0
            b = np.zeros_like(b)
            value, eta = self.penalised(gamma, b, sigma, phi)
            if not np.isfinite(value):
                return -np.inf
        s2 = sigma * sigma
        converged = False
        natural = dist._natural  # canonical link: the Fisher weights are the observed curvature
        for _ in range(self.maxiter):
            if natural:  # canonical link: the Fisher weights are -l'', from the same pass as l'
                _, l1, w, _ = dist.evaluate(data.y, eta, data.m, phi, data.const, order=2, loglik=False)
            else:
                l1, _, _ = dist.derivatives(data.y, eta, data.m, phi, order=1)
                w = dist.working_weights(eta, data.m, phi)
            Xw = X * w[:, None]
            xw = group_sums(Xw, starts)
            H = 1.0 + s2 * group_sums(w, starts)
            g_beta = X.T @ l1
            g_b = sigma * group_sums(l1, starts) - b
            schur = X.T @ Xw - s2 * (xw / H[:, None]).T @ xw
            Xw = None
            rhs = g_beta - sigma * xw.T @ (g_b / H)
            try:
                d_beta = linalg.solve(schur, rhs, assume_a="pos")
            except (linalg.LinAlgError, ValueError):
                d_beta = np.linalg.lstsq(schur, rhs, rcond=None)[0]
            d_b = (g_b - sigma * xw @ d_beta) / H
            decrement = 0.5 * (g_beta @ d_beta + g_b @ d_b)
            self.iterations += 1
            if not np.isfinite(decrement):
                break
            if decrement < self.tol:
                converged = True
                break
            alpha = 1.0
            d_eta = X @ d_beta
            if sigma > 0:
                d_eta += sigma * to_rows(d_b, data.counts)
            for _ in range(30):  # halve until inside the support and not lower
                new_value, new_eta = self.penalised(gamma + alpha * d_beta, b + alpha * d_b, sigma, phi,
                                                    eta + alpha * d_eta)
                if new_value >= value - 1e-12 * abs(value):
                    break
                alpha *= 0.5
            else:
                converged = decrement < 1e3 * self.tol  # rounding floor: no ascent left
                break
            gamma, b, value, eta = gamma + alpha * d_beta, b + alpha * d_b, new_value, new_eta
            if alpha == 1.0 and decrement < self.quadratic:  # Newton's quadratic convergence: the next
                converged = True  # decrement is ~ decrement^2, far below tol; skip the confirming pass
                break
        self.converged = converged
        self.gamma, self.b = gamma, (b if sigma > 0 else self.b)
        W = group_sums(dist.working_weights(eta, data.m, phi), starts)
        if sigma > 0:
            self.sigma, self.W = sigma, W
        logdet = np.sum(np.log1p(s2 * W))
        return value - 0.5 * logdet


def irls_start(dist, data):
    """One IRLS step of the GLM from statsmodels' starting mean (lme4's nAGQ = 0 starts this way too).

    mu0 = family.starting_mu(y), z = g(mu0) + (y - mu0) g'(mu0) - offset, gamma = (X'WX)^-1 X'Wz;
    None when the step leaves the support (the caller falls back to the full GLM start).
    """
    fam = dist.family
    mu0 = np.asarray(fam.starting_mu(data.y), float)
    if dist.name == "gaussian":  # a Gaussian-log mean must be positive
        mu0 = np.where(mu0 > 0, mu0, np.mean(np.abs(data.y)) + 1e-8)
    eta0 = dist.link(mu0)
    z = eta0 - data.offset + (data.y - mu0) * dist.link.deriv(mu0)
    w = fam.weights(mu0) * data.m
    gamma = np.linalg.lstsq(data.X * np.sqrt(w)[:, None], z * np.sqrt(w), rcond=None)[0]
    eta = data.X @ gamma + data.offset
    if not (np.all(np.isfinite(gamma)) and dist.feasible(eta).all()):
        return None
    scale = 1.0
    if dist.has_dispersion:
        mu = dist.mean(eta)
        scale = float(np.mean((data.y - mu) ** 2 / fam.variance(mu)))
        if not (np.isfinite(scale) and scale > 0):
            scale = 1.0
    return gamma, scale


def _eta_scale(dist, data, gamma):
    """Typical size of the linear predictor: the reference for the sigma_u search interval."""
    eta = data.X @ gamma + data.offset
    return max(float(np.std(eta)), 0.1 * abs(float(np.mean(eta))), 0.1)


def _parabola_step(fun, x0, h, lo, hi):
    """Minimum of the parabola through fun at x0 - h, x0, x0 + h when it is a bracketed minimum
    (curvature > 0, vertex within [x0 - h, x0 + h]); one more evaluation at the vertex, which is kept
    when it is the lowest.  Returns a scipy-like result (x, fun, nfev, success) or None (use Brent)."""
    if x0 - h < lo or x0 + h > hi:
        return None
    f_lo, f_mid, f_hi = fun(x0 - h), fun(x0), fun(x0 + h)
    curvature = f_lo - 2.0 * f_mid + f_hi
    if not (np.isfinite(curvature) and curvature > 0 and f_mid <= min(f_lo, f_hi)):
        return None
    x = x0 + 0.5 * h * (f_lo - f_hi) / curvature
    f = fun(x)
    best = min((f, x), (f_mid, x0))
    return optimize.OptimizeResult(x=best[1], fun=best[0], nfev=4, success=True)


def fit_nagq0(dist, data, gamma0, scale0, maxiter, tol, callback, t0):
    """nagq = 0: beta from PIRLS at each (sigma, phi); only the variance parameters are optimised."""
    pirls = PenalisedFit(dist, data, gamma0, tol=1e-10 if dist.has_dispersion else 1e-7)
    counter = {"n": 0}
    ref = _eta_scale(dist, data, gamma0)
    lo, hi = np.log(1e-3 * ref), np.log(20.0 * ref)

    def objective(v):
        best = counter.get("best")
        if best is not None and np.array_equal(best[0], v):  # the best point so far, asked again
            pirls.gamma, pirls.b, pirls.sigma, pirls.W = best[2]
            return best[1]
        sigma = float(np.exp(v[0])) if np.isfinite(v[0]) else 0.0
        phi = float(np.exp(v[1])) if dist.has_dispersion else 1.0
        counter["n"] += 1
        value = -pirls.fit(sigma, phi)
        if callback is not None:
            callback("optimize", counter["n"], value)
        value = value if np.isfinite(value) else 1e300
        if best is None or value < best[1]:
            counter["best"] = (np.array(v, float), value, (pirls.gamma, pirls.b, pirls.sigma, pirls.W))
        return value

    if dist.has_dispersion:
        v0 = np.array([np.log(0.5 * ref), np.log(scale0)])
        res = optimize.minimize(objective, v0, method="Powell", bounds=[(lo, hi), (v0[1] - 25.0, v0[1] + 10.0)],
                                options={"maxiter": maxiter, "xtol": 1e-4, "ftol": tol * 1e-3})
        v, success, nit = np.array(res.x, float), bool(res.success), int(res.nit)
        v[0] = min(max(v[0], lo), hi)
    else:
        if data.n_groups > 4 * SUBSET_GROUPS:  # locate sigma on a subset of the groups first (cheap)
            sub = PenalisedFit(dist, subset_groups(data, evenly_spaced_groups(data.n_groups, SUBSET_GROUPS)),
                               gamma0)
            rough = optimize.minimize_scalar(lambda s: -sub.fit(float(np.exp(s)), 1.0), bounds=(lo, hi),
                                             method="bounded", options={"xatol": 1e-2})
            pirls.gamma = sub.gamma.copy()
            # modes of every group at the subset's estimates (one-dimensional Newton, O(n) a step), so
            # that the joint PIRLS on all rows starts next to its solution
            sigma_sub = float(np.exp(rough.x))
            md = conditional_modes(dist, data, data.X @ pirls.gamma + data.offset, sigma_sub, 1.0,
                                   np.zeros(data.n_groups), tol=1e-2, order=2)
            if md is not None:
                pirls.b, pirls.sigma, pirls.W = md.b, sigma_sub, group_sums(md.d, data.starts)
            res = _parabola_step(lambda s: objective([s]), float(rough.x), 0.05, lo, hi)
            if res is None:
                near = (max(lo, rough.x - 0.2), min(hi, rough.x + 0.2))  # ~ 5 SEs of the subset estimate
                res = optimize.minimize_scalar(lambda s: objective([s]), bounds=near, method="bounded",
                                               options={"xatol": 3e-3, "maxiter": 20 * maxiter})
                if min(res.x - near[0], near[1] - res.x) < 0.01 and (near[0] > lo or near[1] < hi):
                    res = None  # the subset's bracket was too narrow: search the whole interval
        else:
            res = None
        if res is None:
            res = optimize.minimize_scalar(lambda s: objective([s]), bounds=(lo, hi), method="bounded",
                                           options={"xatol": 3e-3, "maxiter": 20 * maxiter})
        v, success, nit = np.array([res.x]), bool(res.success), int(res.nfev)
    def at_zero(v):
        """(the point sigma_u = 0 with its best log phi, its objective): the GLM, the search's boundary."""
        if not dist.has_dispersion:
            w = np.array([-np.inf])
            return w, objective(w)
        best = optimize.minimize_scalar(lambda lp: objective(np.array([-np.inf, lp])), method="bounded",
                                        bounds=(v[1] - 10.0, v[1] + 10.0), options={"xatol": 1e-7})
        w = np.array([-np.inf, best.x])
        return w, objective(w)

    f = objective(v)
    if v[0] < lo + 3.0:  # near the lower end: the boundary sigma = 0 (the GLM) when it is at least as good
        state = (pirls.gamma.copy(), pirls.b.copy())
        v0, f0 = at_zero(v)
        if f0 <= f:
            v, f = v0, f0
        else:
            pirls.gamma, pirls.b = state
            f = objective(v)
    sigma = float(np.exp(v[0])) if np.isfinite(v[0]) else 0.0
    if sigma < SINGULAR_TOL * 1e-2:
        sigma = 0.0
    phi = float(np.exp(v[1])) if dist.has_dispersion else 1.0
    gamma = pirls.gamma.copy()
    converged = success and pirls.converged and np.isfinite(f) and f < 1e300
    theta = np.concatenate([gamma, [sigma], [np.log(phi)] if dist.has_dispersion else []])
    laplace = MarginalLikelihood(dist, data, nagq=1)
    laplace.u_warm = sigma * pirls.b
    value, _ = laplace(theta, need_grad=False)
    md = laplace.last_modes if np.isfinite(value) else laplace.modes_at(theta)
    llf = -laplace(theta, need_grad=False)[0] if md is not None and not np.isfinite(value) else -value
    # never below the sigma = 0 point (the GLM, where PIRLS and Laplace agree exactly); with a canonical
    # link the search's own objective is the Laplace value and the lower end was checked above
    if sigma > 0 and (not dist._natural or md is None):
        state = (pirls.gamma.copy(), pirls.b.copy())
        v0, f0 = at_zero(v)
        if -f0 > llf:
            sigma, gamma, llf = 0.0, pirls.gamma.copy(), -f0
            phi = float(np.exp(v0[1])) if dist.has_dispersion else 1.0
            theta = np.concatenate([gamma, [0.0], v0[1:]])
            md = laplace.modes_at(theta)
        else:
            pirls.gamma, pirls.b = state
    if md is None:  # the Laplace formula has no interior mode here: report the PIRLS modes
        eta = data.X @ gamma + data.offset + sigma * to_rows(pirls.b, data.counts)
        w = dist.working_weights(eta, data.m, phi)
        b, H = pirls.b, 1.0 + sigma * sigma * group_sums(w, data.starts)
        converged = False
    else:
        eta, b, H = md.eta, md.b, md.H
    weights = dist.working_weights(eta, data.m, phi)
    cov = inverse_or_nan(pirls_information(data.X, weights, sigma, data.starts, data.counts))
    message = "converged" if converged else "the variance search or PIRLS did not converge"
    method = ("Brent over log sigma_u" if not dist.has_dispersion else "Powell over (log sigma_u, log phi)")
    opt = OptSummary(method=f"{method}, beta and modes in PIRLS (nagq=0, approximate)",
                     nagq=0, maxiter=maxiter, tol=tol, initial=np.array([np.nan]), final=theta,
                     n_iterations=nit, n_evaluations=counter["n"], objective=-llf,
                     newton_decrement=np.nan, converged=converged, message=message,
                     seconds=time.perf_counter() - t0)
    return scalar_record(beta=gamma, cov_beta=cov, sigma=sigma, scale=phi, llf=llf, modes=sigma * b,
                         mode_sd=sigma / np.sqrt(np.maximum(H, 1e-300)), converged=converged, opt=opt,
                         dispersion=dist.has_dispersion, cov_beta_pirls=cov, se_note=NAGQ0_SE_NOTE)
