"""Laplace log-likelihood of a GLMM with a q-dimensional random effect per group, and its gradient.

Spherical form (Bates et al. 2015): b_j = Lambda u_j, u_j ~ N(0, I_q), Lambda lower triangular, and
with the fixed part eta^0 = X gamma + offset and w_i = Lambda' z_i for row i of group j,

    h_j(u) = sum_{i in j} log f(y_i | eta^0_i + w_i'u) - |u|^2 / 2,
    log L_j ~ h_j(u_j) - log|H_j| / 2,   H_j = I + Lambda' A_j Lambda,   A_j = sum_i d_i z_i z_i',

with u_j the conditional mode and d = -d^2 log f / d eta^2.  The modes come from Newton steps on all
groups at once (batched q x q solves, per-group step halving).  The gradient is analytic: with
K_j = H_j^{-1}, s_i = t_i w_i'K_j w_i / 2 (t = -d^3 log f / d eta^3), v_j = K_j sum_i s_i w_i,
g_j = sum_i l'_i z_i and S_j = sum_i s_i z_i,

    d/d gamma    = X' (l' - s + d (w'v))
    d/d Lambda   = sum_j (g_j - S_j + A_j Lambda v_j) u_j' - g_j v_j' - A_j Lambda K_j   (free entries)
    d/d log phi  = sum_i d log f_i / d log phi + sum_j (q - tr K_j) / 2 + v_j'u_j,

the envelope terms plus the derivative of log|H_j| through the modes (du_j/dtheta = K_j d^2h_j/du dtheta).
Only the Laplace approximation: adaptive quadrature in q dimensions is not offered (lme4's rule).
"""
from dataclasses import dataclass

import numpy as np

from ._laplace import FLAT_MODE
from ._segments import group_sums, to_rows


@dataclass
class VectorData:
    """Rows sorted by group, scaled predictors; Z the random-effects design (n, q)."""

    y: np.ndarray
    X: np.ndarray
    Z: np.ndarray
    offset: np.ndarray
    m: np.ndarray
    const: np.ndarray
    starts: np.ndarray
    counts: np.ndarray

    def __post_init__(self):
        q = self.Z.shape[1]
        self.pairs = np.triu_indices(q)
        self.ZZ = self.Z[:, self.pairs[0]] * self.Z[:, self.pairs[1]]  # z_ia z_ib, a <= b, once per fit

    @property
    def n_groups(self):
        return len(self.counts)

    def weighted_cross(self, weights):
        """A_j = sum_{i in j} weights_i z_i z_i' for every group, (G, q, q), from the stored pair products."""
        sums = group_sums(self.ZZ * weights[:, None], self.starts)
        q = self.Z.shape[1]
        A = np.empty((len(self.counts), q, q))
        A[:, self.pairs[0], self.pairs[1]] = sums
        A[:, self.pairs[1], self.pairs[0]] = sums
        return A

    def quadratic_rows(self, M):
        """z_i' M_{g(i)} z_i for every row, M a stack (G, q, q) of symmetric matrices."""
        a, b = self.pairs
        coef = M[:, a, b] * np.where(a == b, 1.0, 2.0)
        return np.einsum("np,np->n", self.ZZ, to_rows(coef, self.counts))


def _sandwich(A, lam):
    """Lambda' A_j Lambda for a stack A (G, q, q)."""
    return np.swapaxes(A @ lam, 1, 2) @ lam


def _h(dist, data, eta, u, phi):
    return group_sums(dist.loglik(data.y, eta, data.m, phi, data.const), data.starts) - 0.5 * np.sum(u * u, axis=1)


@dataclass
class VectorModes:
    u: np.ndarray  # (G, q)
    eta: np.ndarray
    h: np.ndarray  # (G,)
    H: np.ndarray  # (G, q, q)
    A: np.ndarray  # (G, q, q) sum_i d_i z_i z_i'
    W: np.ndarray  # (n, q) rows of Z Lambda
    l1: np.ndarray
    d: np.ndarray
    t: np.ndarray
    converged: bool


def vector_modes(dist, data, eta_fixed, lam, phi, u_start, tol=1e-10, maxiter=60, order=2):
    """Conditional modes u_j = argmax h_j(u), Newton steps for all groups at once; None if infeasible.

    The Newton matrix of a group uses the observed curvature d where it is positive definite (always
    when every d_i >= 0, as for canonical links), the working weights otherwise; a step that lowers h_j
    is halved for that group only.
    """
    G, q = data.n_groups, lam.shape[0]
    counts, starts = data.counts, data.starts
    W = data.Z @ lam
    eye = np.eye(q)

    def eta_at(u):
        return eta_fixed + np.einsum("nq,nq->n", W, to_rows(u, counts))

    u = np.zeros((G, q)) if u_start is None else np.array(u_start, float)
    eta = eta_at(u)
    h = _h(dist, data, eta, u, phi)
    if not np.isfinite(h).all():
        u[~np.isfinite(h)] = 0.0
        eta = eta_at(u)
        h = _h(dist, data, eta, u, phi)
        if not np.isfinite(h).all():
            return None
    converged = False
    for _ in range(maxiter):
        l1, d, _ = dist.derivatives(data.y, eta, data.m, phi, order=2)
        grad = group_sums(W * l1[:, None], starts) - u
        H = eye + _sandwich(data.weighted_cross(d), lam)
        if not np.all(d >= 0):  # the observed curvature where it is positive definite (quadratic
            # convergence), the working weights' where it is not (an ascent direction)
            indefinite = np.linalg.eigvalsh(H)[:, 0] <= 0.0
            if indefinite.any():
                fisher = eye + _sandwich(data.weighted_cross(dist.working_weights(eta, data.m, phi)), lam)
                H[indefinite] = fisher[indefinite]
        step = np.linalg.solve(H, grad[:, :, None])[:, :, 0]
        decrement = np.einsum("gq,gq->g", grad, step)
        active = decrement > tol * tol
        if not active.any():
            converged = True
            break
        step[~active] = 0.0
        noise = 1e-12 * (1.0 + np.abs(h))
        alpha = np.ones(G)
        for _ in range(30):
            u_try = u + alpha[:, None] * step
            eta_try = eta_at(u_try)
            h_try = _h(dist, data, eta_try, u_try, phi)
            worse = active & (~np.isfinite(h_try) | ((decrement > 1e-9) & ~(h_try >= h - noise)))
            if not worse.any():
                break
            alpha[worse] *= 0.5
            stuck = worse & (alpha < 1e-6)
            step[stuck] = 0.0
            active &= ~stuck
        u, eta, h = u_try, eta_try, h_try
    l1, d, t = dist.derivatives(data.y, eta, data.m, phi, order=order)
    A = data.weighted_cross(d)
    return VectorModes(u, eta, h, eye + _sandwich(A, lam), A, W, l1, d, t, converged)


class VectorLaplace:
    """Negative Laplace log-likelihood and gradient over theta = (gamma, free entries of Lambda, log phi).

    Lambda's diagonal is unconstrained here: flipping the sign of a column of Lambda (and of u) leaves
    the likelihood unchanged, so the optimum is reported with a non-negative diagonal.
    """

    def __init__(self, dist, data, pattern, inner_tol=1e-10):
        self.dist, self.data, self.pattern = dist, data, pattern
        self.p = data.X.shape[1]
        self.inner_tol = inner_tol
        self.u_warm = None
        self.n_calls = 0
        self.last_modes = None

    @property
    def n_params(self):
        return self.p + self.pattern.size + int(self.dist.has_dispersion)

    def unpack(self, theta):
        p, k = self.p, self.pattern.size
        phi = float(np.exp(theta[p + k])) if self.dist.has_dispersion else 1.0
        return theta[:p], self.pattern.build(theta[p:p + k]), phi

    def modes_at(self, theta):
        self(theta, need_grad=False)
        if self.last_modes is None:
            self.u_warm = None
            self(theta, need_grad=False)
        return self.last_modes

    def __call__(self, theta, need_grad=True):
        """(-loglik, -gradient); (inf, nan) where no mode inside the support exists."""
        value, grad = self._evaluate(np.asarray(theta, float), need_grad)
        if value is None:
            return np.inf, np.full(self.n_params, np.nan)
        return -value, (None if grad is None else -grad)

    def _evaluate(self, theta, need_grad):
        self.n_calls += 1
        self.last_modes = None
        dist, data = self.dist, self.data
        gamma, lam, phi = self.unpack(theta)
        eta_fixed = data.X @ gamma + data.offset
        with np.errstate(all="ignore"):
            md = vector_modes(dist, data, eta_fixed, lam, phi, self.u_warm, self.inner_tol,
                              order=3 if need_grad else 2)
        if md is None or not md.converged:
            return None, None
        curvatures = np.linalg.eigvalsh(md.H)  # ascending, per group
        if np.any(curvatures[:, 0] <= FLAT_MODE) or not np.all(np.isfinite(md.h)):
            return None, None  # a flat direction of a mode: outside the approximation (see FLAT_MODE)
        logdet = np.sum(np.log(curvatures), axis=1)
        self.u_warm = md.u
        self.last_modes = md
        value = float(np.sum(md.h - 0.5 * logdet))
        if not np.isfinite(value):
            return None, None
        if not need_grad:
            return value, None
        starts, counts = data.starts, data.counts
        u, W, Z = md.u, md.W, data.Z
        K = np.linalg.inv(md.H)
        lev = data.quadratic_rows(lam @ K @ lam.T)  # w_i'K_j w_i = z_i' Lambda K_j Lambda' z_i
        s = 0.5 * md.t * lev
        v = np.einsum("gqr,gr->gq", K, group_sums(W * s[:, None], starts))
        grad_gamma = data.X.T @ (md.l1 - s + md.d * np.einsum("nq,nq->n", W, to_rows(v, counts)))
        g = group_sums(Z * md.l1[:, None], starts)
        S = group_sums(Z * s[:, None], starts)
        A = md.A
        A_lam = A @ lam  # (G, q, q)
        left = g - S + np.einsum("gab,gb->ga", A_lam, v)
        grad_lam = (np.einsum("ga,gb->ab", left, u) - np.einsum("ga,gb->ab", g, v)
                    - np.sum(A_lam @ K, axis=0))
        parts = [grad_gamma, self.pattern.entries(grad_lam)]
        if dist.has_dispersion:
            q = lam.shape[0]
            direct = np.sum(dist.dloglik_dlogphi(data.y, md.eta, data.m, phi, data.const))
            trace_k = np.trace(K, axis1=1, axis2=2)
            parts.append([direct + np.sum(0.5 * (q - trace_k) + np.einsum("gq,gq->g", v, u))])
        grad = np.concatenate(parts)
        if not np.all(np.isfinite(grad)):  # a derivative beyond the floating-point range: no usable point
            return None, None
        return value, grad
