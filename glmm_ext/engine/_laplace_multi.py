"""Laplace approximation over the joint random effects of a model with several linear predictors per row.

Rows have a conditional predictor eta_c, a zero-part predictor eta_z and a dispersion predictor eta_d
(`_zi_density.row_terms` gives log f and its derivatives over them).  The conditional and zero parts
may carry random effects, each part with its own `ReStructure` (its covariance parameters are that
structure's packed Lambda entries).  With spherical effects u ~ N(0, I):

    eta_k = X_k beta_k + offset_k + A_k(lambda_k) u,      k in {c, z};  eta_d = X_d delta + offset_d,
    -log L ~= -sum_i log f_i(eta_i(u^)) + u^'u^ / 2 + log det H / 2,
    H = I + sum_{a,b} A_a' diag(W_ab) A_b,  W = -d^2 log f / d eta_a d eta_b  (at the joint mode u^).

The gradient over (beta, gamma, delta, lambda_c, lambda_z) is exact up to the third derivatives of log f,
taken by central differences of the closed-form second derivatives (one scalar function per row,
3 directions): d/dtheta = partial at fixed u + the mode's movement (implicit function theorem) + the
trace term of log det H.  H is factored densely (Cholesky) or, for many effects, by a sparse LU.
"""
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ._zi_density import row_terms, row_loglik

DENSE_MAX = 1500  # effects up to which H is factored densely


@dataclass
class PartLayout:
    """Where one part's random effects sit in the joint vector u, and its rows' z values."""

    structure: object  # ReStructure
    offset: int  # first index in u
    cols: np.ndarray  # (n, m) int: index in u of each row's local effect
    zraw: list  # per term, Z_t (n, q_t)
    blocks: list  # per term, slice of the m local columns
    size: int  # number of effects of this part


def make_layout(structure, start):
    if structure is None:
        return None
    cols, blocks, zraw, off, m = [], [], [], start, 0
    for term in structure.terms:
        codes = np.asarray(term.codes, np.int64)
        q = term.q
        cols.append(off + codes[:, None] * q + np.arange(q)[None, :])
        blocks.append(slice(m, m + q))
        zraw.append(np.asarray(term.Z, float))
        off += term.n_levels * q
        m += q
    return PartLayout(structure, start, np.hstack(cols), zraw, blocks, off - start)


@dataclass
class ZIProblem:
    """Arrays of one model: response, designs and offsets of the three parts, random-effects structures."""

    family: str
    zero_part: str
    y: np.ndarray
    X: tuple  # (X_c, X_z, X_d), each (n, p_k) (p_k may be 0)
    offsets: tuple  # (off_c, off_z, off_d)
    structures: tuple  # (ReStructure or None, ReStructure or None)

    def __post_init__(self):
        self.layouts = []
        start = 0
        for s in self.structures:
            lay = make_layout(s, start)
            self.layouts.append(lay)
            start += 0 if lay is None else lay.size
        self.Q = start
        self.p = tuple(x.shape[1] for x in self.X)
        self.n_cov = tuple(0 if s is None else s.n_cov_params for s in self.structures)
        # local columns of every row, both parts together, and the part (0 = c, 1 = z) of each
        locs, parts = [], []
        for k, lay in enumerate(self.layouts):
            if lay is not None:
                locs.append(lay.cols)
                parts.append(np.full(lay.cols.shape[1], k))
        n = self.y.shape[0]
        self.local_cols = np.hstack(locs) if locs else np.zeros((n, 0), np.int64)
        self.local_part = np.concatenate(parts) if parts else np.zeros(0, np.int64)

    @property
    def n_params(self):
        return sum(self.p) + sum(self.n_cov)

    def split(self, theta):
        theta = np.asarray(theta, float)
        cuts = np.cumsum([0, *self.p, *self.n_cov])
        return [theta[cuts[i]:cuts[i + 1]] for i in range(5)]

    def lower_bounds(self):
        lb = [np.full(sum(self.p), -np.inf)]
        for s in self.structures:
            if s is not None:
                lb.append(s.lower_bounds())
        return np.concatenate(lb)

    def local_values(self, lams):
        """(n, m) coefficients of each row's local effects: Z_t Lambda_t per term."""
        vals = []
        for lay, lam in zip(self.layouts, lams):
            if lay is None:
                continue
            for Zt, block, L in zip(lay.zraw, lay.blocks, lay.structure.unpack(lam)):
                vals.append(Zt @ L)
        return np.hstack(vals) if vals else np.zeros((self.y.shape[0], 0))

    def fixed_etas(self, beta, gamma, delta):
        n = self.y.shape[0]
        out = []
        for X, off, coef in zip(self.X, self.offsets, (beta, gamma, delta)):
            out.append((X @ coef if X.shape[1] else np.zeros(n)) + off)
        return np.column_stack(out)


class _Factor:
    """Cholesky (dense) or sparse LU of the symmetric positive definite H."""

    def __init__(self, H):
        self.sparse = sp.issparse(H)
        if self.sparse:
            self.lu = spla.splu(H.tocsc(), permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                                options={"SymmetricMode": True})
            d = self.lu.U.diagonal()
            if np.any(d <= 0) or not np.all(np.isfinite(d)):
                raise np.linalg.LinAlgError("H is not positive definite")
            self.logdet = float(np.sum(np.log(d)))
        else:
            self.c = sla.cho_factor(H, lower=True, check_finite=True)
            self.logdet = 2.0 * float(np.sum(np.log(np.diag(self.c[0]))))

    def solve(self, b):
        return self.lu.solve(b) if self.sparse else sla.cho_solve(self.c, b)

    def inverse(self):
        Q = self.lu.shape[0] if self.sparse else self.c[0].shape[0]
        return self.solve(np.eye(Q))


@dataclass
class ModeState:
    u: np.ndarray
    eta: np.ndarray  # (n, 3)
    ll: np.ndarray
    g: np.ndarray
    Hl: np.ndarray
    factor: object
    value: float  # the Laplace -log-likelihood
    vals: np.ndarray
    newton_iterations: int


def _assemble(prob, vals, Hl):
    """H = I + sum A_a' W_ab A_b from the rows' local coefficients (W = -Hl)."""
    Q = prob.Q
    L, part = prob.local_cols, prob.local_part
    m = L.shape[1]
    W = -Hl[:, part[:, None], part[None, :]]  # (n, m, m)
    data = (vals[:, :, None] * vals[:, None, :] * W).reshape(-1)
    rows = np.repeat(L, m, axis=1).reshape(-1)
    cols = np.tile(L, (1, m)).reshape(-1)
    if Q <= DENSE_MAX:
        H = np.bincount(rows * Q + cols, weights=data, minlength=Q * Q).reshape(Q, Q)
        H[np.diag_indices(Q)] += 1.0
        return H
    return (sp.coo_matrix((data, (rows, cols)), shape=(Q, Q)) + sp.identity(Q)).tocsc()


def _grad_u(prob, vals, g, u):
    L, part = prob.local_cols, prob.local_part
    return np.bincount(L.reshape(-1), weights=(vals * g[:, part]).reshape(-1), minlength=prob.Q) - u


def linear_predictors(prob, base, vals, u):
    """The (n, 3) linear predictors: the fixed parts `base` plus each row's random effects u (count part in
    column 0, zero part in column 1; `vals` the rows' z values of their local effects)."""
    eta = base.copy()
    if prob.Q:
        contrib = vals * u[prob.local_cols]
        for k in (0, 1):
            sel = prob.local_part == k
            if sel.any():
                eta[:, k] += contrib[:, sel].sum(axis=1)
    return eta


def _joint(prob, base, vals, u):
    eta = linear_predictors(prob, base, vals, u)
    ll = row_loglik(prob.family, prob.zero_part, prob.y, eta[:, 0], eta[:, 1], eta[:, 2])
    return float(np.sum(ll) - 0.5 * u @ u), eta


def find_mode(prob, theta, u0=None, maxiter=60):
    """The joint mode u^ of log f(y | u) + log phi(u) by damped Newton, and the Laplace value there."""
    beta, gamma, delta, lam_c, lam_z = prob.split(theta)
    base = prob.fixed_etas(beta, gamma, delta)
    vals = prob.local_values([lam_c, lam_z])
    u = np.zeros(prob.Q) if u0 is None else np.array(u0, float)
    it = 0
    for it in range(1, maxiter + 1):
        eta = linear_predictors(prob, base, vals, u)
        ll, g, Hl = row_terms(prob.family, prob.zero_part, prob.y, eta[:, 0], eta[:, 1], eta[:, 2])
        f = float(np.sum(ll) - 0.5 * u @ u)
        if not np.isfinite(f):
            if u0 is not None and np.any(u):  # a bad warm start: begin again at 0
                return find_mode(prob, theta, None, maxiter)
            return None
        if prob.Q == 0:
            break
        grad = _grad_u(prob, vals, g, u)
        H = _assemble(prob, vals, Hl)
        factor, ridge = None, 0.0
        while factor is None:  # away from the mode log f need not be concave: a ridge until H is PD
            try:
                factor = _Factor(H if ridge == 0 else H + ridge * (sp.identity(prob.Q) if sp.issparse(H)
                                                                     else np.eye(prob.Q)))
            except (np.linalg.LinAlgError, RuntimeError):
                ridge = max(1e-4, ridge * 10)
                if ridge > 1e8:
                    return None
        step = factor.solve(grad)
        dec = float(grad @ step)
        if dec < 1e-18 and ridge == 0:
            break
        t, accepted = 1.0, False
        while t > 1e-10:
            f_new, _ = _joint(prob, base, vals, u + t * step)
            if np.isfinite(f_new) and f_new >= f + 1e-4 * t * dec - 1e-12 * max(1.0, abs(f)):
                accepted = True
                break
            t *= 0.5
        if not accepted:
            break
        u = u + t * step
        if dec < 1e-14 and t == 1.0 and ridge == 0:  # quadratic convergence: this step reached the mode
            eta = linear_predictors(prob, base, vals, u)
            ll, g, Hl = row_terms(prob.family, prob.zero_part, prob.y, eta[:, 0], eta[:, 1], eta[:, 2])
            break
    if prob.Q == 0:
        return ModeState(u, eta, ll, g, Hl, None, -float(np.sum(ll)), vals, it)
    H = _assemble(prob, vals, Hl)
    try:
        factor = _Factor(H)
    except (np.linalg.LinAlgError, RuntimeError):
        return None  # no positive definite curvature at the mode: outside the Laplace approximation
    value = -float(np.sum(ll)) + 0.5 * float(u @ u) + 0.5 * factor.logdet
    return ModeState(u, eta, ll, g, Hl, factor, value, vals, it)


def _phi(prob, eta, S):
    """sum_ab W_ab(eta) S_ab per row (W over the parts with random effects)."""
    _, _, Hl = row_terms(prob.family, prob.zero_part, prob.y, eta[:, 0], eta[:, 1], eta[:, 2])
    return -np.einsum("iab,iab->i", Hl[:, :2, :2], S)


def _local_inverse(factor, L, Q, block=256):
    """Entries of H^-1 at every pair of one row's effects: from the dense inverse when H is small, else by
    solves for `block` unit vectors at a time (memory Q x block, not Q x Q)."""
    if not factor.sparse:
        Hinv = factor.inverse()
        return Hinv[L[:, :, None], L[:, None, :]]
    n, m = L.shape
    G = np.empty((n, m, m))
    for start in range(0, Q, block):
        stop = min(start + block, Q)
        E = np.zeros((Q, stop - start))
        E[np.arange(start, stop), np.arange(stop - start)] = 1.0
        X = factor.solve(E)  # columns start..stop-1 of H^-1
        for y in range(m):
            rows = (L[:, y] >= start) & (L[:, y] < stop)
            if rows.any():
                G[rows, :, y] = X[L[rows][:, :], (L[rows, y] - start)[:, None]]
    return G


def laplace_gradient(prob, theta, state, h=1e-5):
    """Gradient of the Laplace -log-likelihood over theta at the mode `state`."""
    beta, gamma, delta, lam_c, lam_z = prob.split(theta)
    g, Hl, u, vals, eta = state.g, state.Hl, state.u, state.vals, state.eta
    n = prob.y.shape[0]
    if prob.Q == 0:
        zeta = -g
        return np.concatenate([X.T @ zeta[:, k] for k, X in enumerate(prob.X)])
    L, part = prob.local_cols, prob.local_part
    G = _local_inverse(state.factor, L, prob.Q)  # (n, m, m): H^-1 among each row's own effects
    S = np.zeros((n, 2, 2))
    for a in (0, 1):
        for b in (0, 1):
            sa, sb = part == a, part == b
            if sa.any() and sb.any():
                S[:, a, b] = np.einsum("ix,ixy,iy->i", vals[:, sa], G[:, sa][:, :, sb], vals[:, sb])
    # third derivatives: gradient of phi_i over eta_i by central differences of the closed-form Hessian
    dphi = np.zeros((n, 3))
    for l in range(3):
        e = np.zeros(3)
        e[l] = h
        dphi[:, l] = (_phi(prob, eta + e, S) - _phi(prob, eta - e, S)) / (2 * h)
    # the mode's movement: psi = A' dphi, omega = H^-1 psi
    psi = np.bincount(L.reshape(-1), weights=(vals * dphi[:, part]).reshape(-1), minlength=prob.Q)
    omega = state.factor.solve(psi)
    Aomega = np.zeros((n, 2))
    contrib = vals * omega[L]
    for k in (0, 1):
        sel = part == k
        if sel.any():
            Aomega[:, k] = contrib[:, sel].sum(axis=1)
    xi = np.einsum("ik,ikl->il", Aomega, Hl[:, :2, :])
    zeta = -g + 0.5 * dphi + 0.5 * xi
    out = [X.T @ zeta[:, k] for k, X in enumerate(prob.X)]
    # covariance parameters: entry (r, s) of Lambda_t of part k
    W = -Hl[:, part[:, None], part[None, :]]
    tau = np.einsum("ixy,iy,ixy->ix", G, vals, W)  # tau[i, x] = sum_y Hinv[x, y] vals[y] W[part x, part y]
    for k, lay in enumerate(prob.layouts):
        if lay is None:
            continue
        pos0 = sum(prob.layouts[j].cols.shape[1] for j in range(k) if prob.layouts[j] is not None)
        grads = []
        for term, Zt, block in zip(lay.structure.terms, lay.zraw, lay.blocks):
            for r, s in zip(*term.theta_positions()):
                x = pos0 + block.start + s
                col = L[:, x]
                z = Zt[:, r]
                grads.append(np.sum(z * (zeta[:, k] * u[col] + 0.5 * g[:, k] * omega[col] + tau[:, x])))
        out.append(np.array(grads))
    return np.concatenate(out)


def laplace_value(prob, theta, u0=None):
    state = find_mode(prob, theta, u0)
    return np.inf if state is None else state.value


def agq_value(prob, theta, nagq):
    """-log-likelihood by adaptive Gauss-Hermite quadrature (`nagq` nodes per group) for a model whose only
    random effect is one scalar term (in either part): per group, nodes at u^_j + sqrt(2) s_j x_k with
    s_j = H_jj^-1/2 from the joint mode.  nagq = 1 is the Laplace value."""
    terms = [(k, t) for k, s in enumerate(prob.structures) if s is not None for t in s.terms]
    if len(terms) != 1 or terms[0][1].q != 1:
        raise ValueError("adaptive quadrature needs exactly one scalar random-effects term (e.g. (1 | g))")
    if not (isinstance(nagq, (int, np.integer)) and 1 <= nagq <= 100):
        raise ValueError(f"nagq must be an integer from 1 to 100 (got {nagq!r})")
    state = find_mode(prob, theta)
    if state is None:
        return np.inf
    k, term = terms[0]
    beta, gamma, delta, _, _ = prob.split(theta)
    base = prob.fixed_etas(beta, gamma, delta)
    z = state.vals[:, 0]  # Z Lambda of the one term, per row
    codes = term.codes
    G = term.n_levels
    W = -state.Hl[:, k, k]
    curv = 1.0 + np.bincount(codes, weights=z * z * W, minlength=G)
    if np.any(curv <= 0):
        return np.inf
    s = 1.0 / np.sqrt(curv)
    x, w = np.polynomial.hermite.hermgauss(int(nagq))
    logs = np.empty((G, x.size))
    for j, (xj, wj) in enumerate(zip(x, w)):
        u = state.u + np.sqrt(2.0) * s * xj
        eta = base.copy()
        eta[:, k] += z * u[codes]
        ll = row_loglik(prob.family, prob.zero_part, prob.y, eta[:, 0], eta[:, 1], eta[:, 2])
        logs[:, j] = np.bincount(codes, weights=ll, minlength=G) - 0.5 * u * u + xj * xj + np.log(wj)
    top = logs.max(axis=1)
    per_group = top + np.log(np.sum(np.exp(logs - top[:, None]), axis=1)) + np.log(np.sqrt(2.0) * s) \
        - 0.5 * np.log(2 * np.pi)
    return -float(np.sum(per_group))
