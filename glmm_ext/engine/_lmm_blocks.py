"""Exact REML / ML for a Gaussian model with a vector random effect per group (random slopes).

Model (lme4's formulation, Bates et al. 2015):  y = X beta + Z_j b_j + e,  b_j = sigma Lambda u_j,
u_j ~ N(0, I_q),  e ~ N(0, sigma^2 I), with Lambda the q x q lower-triangular relative covariance
factor (free entries: the lower triangle of each independent block; diag(Lambda) >= 0).
For each group, with A_j = [X_j y_j],

    L_j L_j' = Lambda' Z_j'Z_j Lambda + I_q,    B_j = L_j^{-1} Lambda' Z_j'A_j,
    M = A'A - sum_j B_j'B_j = R'R  (Cholesky),   R = [[R_X, c_beta], [0, r]],

so the penalised residual sum of squares is r^2 and log|V sigma^-2| = 2 sum_j log|L_j|.  The
profiled deviances are

    ML:   2 sum log|L_j| + n (1 + log(2 pi r^2 / n))
    REML: 2 sum log|L_j| + 2 log|R_X| + (n - p)(1 + log(2 pi r^2 / (n - p))).

One O(n q (p + q)) pass over the rows in their own order builds Z_j'Z_j, Z_j'A_j and A'A (`scaled_stats`:
weighted bincounts, no sort); an evaluation then costs O(G q^2 p) with batched q x q Cholesky factors (no
n x n matrix), with the gradient and the exact Hessian in Lambda's free entries (`vector_deviance`) from the
same per-group blocks.  Newton steps with that Hessian from moment estimates of Lambda (`moment_start`) find
an interior optimum in two or three evaluations; otherwise (a boundary optimum, a start worse than the
identity starts) SLSQP (a bounded quasi-Newton method) with the diagonal bounded below by 0 (lme4's bobyqa
constraint) searches from the best of three starts Lambda = c I (a boundary optimum is re-checked from the
second best) and Newton steps with the exact Hessian judge and finish its point.
"""
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import linalg, optimize

from ._optimize import MAX_NEWTON_STEP, Minimum, minimize, newton_decrement
from ._stacks import batched_cholesky, batched_forward, lower_inverse_t, mul2
from ._lmm import LOG_2PI, SINGULAR_TOL  # one singular-fit tolerance (lme4 isSingular) for Lambda and theta


class LambdaPattern:
    """Free entries of the lower-triangular factor Lambda: the lower triangle of each independent block."""

    def __init__(self, q, blocks):
        rows, cols = [], []
        for block in blocks:
            for i, a in enumerate(block):
                for b in block[: i + 1]:
                    rows.append(max(a, b))
                    cols.append(min(a, b))
        self.q = q
        self.rows, self.cols = np.array(rows, np.intp), np.array(cols, np.intp)
        self.is_diag = self.rows == self.cols

    @property
    def size(self):
        return len(self.rows)

    def build(self, theta):
        """Lambda from its free entries theta."""
        lam = np.zeros((self.q, self.q))
        lam[self.rows, self.cols] = theta
        return lam

    def entries(self, lam):
        """The free entries of a q x q matrix (the inverse of `build`, or a gradient's free part)."""
        return lam[self.rows, self.cols]

    def start(self, scale=1.0):
        return np.where(self.is_diag, scale, 0.0)

    def bounds(self):
        return [(0.0, None) if d else (None, None) for d in self.is_diag]


def right_multiply(stack, lam):
    """stack_g' Lambda for every g, with one BLAS product: (G, a, b) -> (G, b, q)."""
    G, a, b = stack.shape
    return (np.swapaxes(stack, 1, 2).reshape(G * b, a) @ lam).reshape(G, b, lam.shape[1])


def _transposed(stack):
    """Each matrix of a stack transposed, as a contiguous array (numpy's stacked matmul is ~2.5x slower on views)."""
    return np.ascontiguousarray(np.swapaxes(stack, 1, 2))


def _stack_sum(A, B):
    """sum_g A_g B_g for stacks (G, a, b) and (G, b, c), as one BLAS product."""
    G, a, b = A.shape
    return np.ascontiguousarray(np.swapaxes(A, 0, 1)).reshape(a, G * b) @ B.reshape(G * b, -1)


def _factors(lam, stats):
    """(L_j stack, B_j' stack (G, p+1, q), Cholesky factor of M) at Lambda; LinAlgError when not positive."""
    q = lam.shape[0]
    T = right_multiply(right_multiply(stats.ZtZ, lam), lam) + np.eye(q)  # Lambda' Z'Z Lambda + I
    L = batched_cholesky(T)
    Bt = batched_forward(L, right_multiply(stats.ZtA, lam))
    flat = np.swapaxes(Bt, 1, 2).reshape(-1, Bt.shape[1])  # rows: every (g, q) pair
    if stats.precise:
        flat = flat.astype(np.longdouble)
        M = (stats.AtA - flat.T @ flat).astype(float)
    else:
        M = stats.AtA - flat.T @ flat
    return L, Bt, linalg.cholesky(M, lower=True, check_finite=False)


def _profiled(logdet, R, p, n, reml):
    """The profiled deviance from log|V| = logdet and the Cholesky factor R of M (inf when r^2 = 0)."""
    r2 = R[p, p] ** 2
    if not r2 > 0:
        return np.inf
    dof = n - p if reml else n
    dev = logdet + dof * (1.0 + LOG_2PI + np.log(r2 / dof))
    if reml:
        dev += 2.0 * np.sum(np.log(np.diag(R)[:p]))
    return dev


def identity_deviances(scales, stats, reml=True):
    """`vector_deviance` at Lambda = c I for every c of `scales`, in one batch of stacked blocks (the search's
    starts): T_j = c^2 S_j + I, B_j = c L_j^{-1} Z_j'A_j."""
    c = np.asarray(scales, float)[:, None, None, None]
    k, (G, q, a) = len(scales), stats.ZtA.shape
    L = batched_cholesky((c * c * stats.ZtZ).reshape(k * G, q, q) + np.eye(q))
    Bt = batched_forward(L, (c * np.swapaxes(stats.ZtA, 1, 2)).reshape(k * G, a, q))
    flat = np.swapaxes(Bt.reshape(k, G, a, q), 2, 3).reshape(k, G * q, a)
    if stats.precise:
        flat = flat.astype(np.longdouble)
    M = (stats.AtA - np.swapaxes(flat, 1, 2) @ flat).astype(float)
    logdet = 2.0 * np.log(np.diagonal(L, axis1=1, axis2=2)).reshape(k, -1).sum(axis=1)
    out = np.full(k, np.inf)
    for i in range(k):
        try:
            out[i] = _profiled(logdet[i], linalg.cholesky(M[i], lower=True, check_finite=False), stats.p, stats.n, reml)
        except (np.linalg.LinAlgError, linalg.LinAlgError):
            pass
    return out


def _bmm(A, B):
    """A_g B_g for stacks (G, a, b) x (G, b, c) (or one matrix broadcast): elementwise when both are 2 x 2."""
    if A.shape[-2:] == (2, 2) and B.shape[-2:] == (2, 2):
        return mul2(A, B)
    return np.matmul(A, B)


def directions(pattern, lam):
    """dPsi / dtheta_a for Psi = Lambda Lambda': E_a = e_r lambda_c' + lambda_c e_r' for the free entry (r, c)."""
    E = np.zeros((pattern.size, pattern.q, pattern.q))
    for a, (r, c) in enumerate(zip(pattern.rows, pattern.cols)):
        E[a, r, :] += lam[:, c]
        E[a, :, r] += lam[:, c]
    return E


def vector_deviance(theta, pattern, stats, reml=True, need_grad=False, need_hess=False):
    """-2 log-likelihood (REML or ML) profiled over beta and sigma^2, at Lambda's free entries theta.

    With ``need_grad`` returns (deviance, gradient in theta), with ``need_hess`` (deviance, gradient, Hessian).
    The deviance depends on Lambda through Psi = Lambda Lambda' only:  V = I + Z Psi Z' (relative to sigma^2),

        f(Psi) = sum_j log|I + S_j Psi| + k log r^2 [+ log|M_X| (REML)],   M_X = X'V^{-1}X = R_X R_X',

    with S_j = Z_j'Z_j, k = n (ML) or n - p (REML) and r^2 = min_beta (y - X beta)'V^{-1}(y - X beta).
    Per group, G_j = Lambda T_j^{-1} Lambda' = Psi (I + S_j Psi)^{-1} (T_j = L_j L_j'), K_j = I - G_j S_j,
    W_j = K_j'S_j = S_j - S_j G_j S_j (= (S_j^{-1} + Psi)^{-1}), the conditional residual's Z-products
    e_j = K_j'Z_j'(y_j - X_j beta) and X~_j = K_j'Z_j'X_j, P_j = X~_j M_X^{-1} X~_j'.  From dG_j[E] = K_j E K_j'
    (so dW_j[E] = -W_j E W_j), with tr(D dPsi) the first differential,

        D = sum_j (W_j - k/r^2 e_j e_j' [- P_j]),        gradient_a = tr(D E_a) = 2 (D Lambda)_(r_a, c_a),

    E_a = dPsi/dtheta_a = e_r lambda_c' + lambda_c e_r' for the free entry (r, c) of theta_a.  Differentiating again
    (beta moves with Psi: d beta = -M_X^{-1} sum_j X~_j' dPsi e_j, which adds the h term; REML's log|M_X| adds the
    P and A terms) gives the exact Hessian

        H_ab = sum_j tr(Pi_j E_a W_j E_b) - k/r^4 g_a g_b - 2k/r^2 h_a'M_X^{-1}h_b [- tr(A_a A_b)]
               + 2 [c_a = c_b] D_(r_a, r_b),
        Pi_j = -W_j + 2k/r^2 e_j e_j' [+ 2 P_j],   g_a = -sum_j e_j'E_a e_j,   h_a = sum_j X~_j'E_a e_j,
        A_a = R_X^{-1} (sum_j X~_j'E_a X~_j) R_X^{-T},

    the last term from d^2 Psi / dtheta_a dtheta_b = U_a U_b' + U_b U_a' (U_a the unit matrix of entry (r_a, c_a)).
    Every group sum is one BLAS product over the stacked q x q (q x p) blocks: O(G q^2 (q + p)^2) in all.
    """
    lam = pattern.build(theta)
    try:
        L, Bt, R = _factors(lam, stats)
    except (np.linalg.LinAlgError, linalg.LinAlgError):
        bad = (np.inf, np.full(len(theta), np.nan), np.full((len(theta), len(theta)), np.nan))
        return bad[: 2 + need_hess] if (need_grad or need_hess) else np.inf
    p, n = stats.p, stats.n
    r2 = R[p, p] ** 2
    dev = _profiled(2.0 * np.sum(np.log(np.diagonal(L, axis1=1, axis2=2))), R, p, n, reml)
    if not np.isfinite(dev):
        bad = (np.inf, np.full(len(theta), np.nan), np.full((len(theta), len(theta)), np.nan))
        return bad[: 2 + need_hess] if (need_grad or need_hess) else np.inf
    if not (need_grad or need_hess):
        return dev
    dof = n - p if reml else n
    G, q = stats.ZtZ.shape[:2]
    S = stats.ZtZ
    Linv_t = lower_inverse_t(L)  # L_j^{-T}
    F = _bmm(S, _transposed(right_multiply(Linv_t, lam.T)))  # F_j = S_j Lambda L_j^{-T}
    # K_j'Z_j'A_j = Z_j'A_j - S_j G_j Z_j'A_j = Z_j'A_j - F_j B_j (B_j = L_j^{-1} Lambda' Z_j'A_j, from _factors)
    At = stats.ZtA.copy()
    for b in range(q):
        At -= F[:, :, b, None] * Bt[:, None, :, b]
    # [Y_j e_j] = K_j'Z_j'A_j [[R_X^{-T}, -beta], [0, 1]] (Y_j = X~_j R_X^{-T}): one BLAS product for all j
    Rx_inv = linalg.solve_triangular(R[:p, :p], np.eye(p), lower=True, check_finite=False)
    beta = Rx_inv.T @ R[p, :p]  # R_X^{-T} c_beta
    right = np.zeros((p + 1, p + 1))
    right[:p, :p], right[:p, p], right[p, p] = Rx_inv.T, -beta, 1.0
    Ye = (At.reshape(G * q, p + 1) @ right).reshape(G, q, p + 1)
    e = Ye[:, :, p]  # e_j = K_j'Z_j'(y_j - X_j beta)
    Yf = Ye[:, :, :p].reshape(G, q * p)  # Y_j row by row
    Ty = (Yf.T @ Yf).reshape(q, p, q, p)  # sum_j Y_j[i, r] Y_j[m, s]
    Psum = np.trace(Ty, axis1=1, axis2=3)  # sum_j Y_j Y_j' = sum_j P_j
    ee = e.T @ e
    # sum_j W_j Lambda = sum_j S_j Lambda T_j^{-1} = sum_j F_j L_j^{-1} (no cancellation), one BLAS product
    DL = _stack_sum(F, _transposed(Linv_t)) - ((dof / r2) * ee + (Psum if reml else 0.0)) @ lam
    grad = 2.0 * pattern.entries(DL)
    if not need_hess:
        return dev, grad
    W = S - _bmm(F, _transposed(F))  # S_j - S_j G_j S_j
    Pi = (2.0 * dof / r2) * (e[:, :, None] * e[:, None, :]) - W
    D = W.sum(axis=0) - (dof / r2) * ee
    if reml:
        Y = Yf.reshape(G, q, p)
        for i in range(q):  # + 2 P_j, P_j = Y_j Y_j' (column by column: a stacked matmul of q x p blocks is ~5x slower)
            for m in range(i + 1):
                Pim = 2.0 * np.einsum("gr,gr->g", Y[:, i], Y[:, m])
                Pi[:, i, m] += Pim
                if m != i:
                    Pi[:, m, i] += Pim
        D -= Psum
    E = directions(pattern, lam)
    Y4 = (Pi.reshape(G, q * q).T @ W.reshape(G, q * q)).reshape(q, q, q, q)
    H = np.einsum("iklm,akl,bmi->ab", Y4, E, E)
    g = -np.einsum("aim,im->a", E, ee)
    H -= (dof / r2**2) * np.outer(g, g)
    Hy = (Yf.T @ e).reshape(q, p, q)  # sum_j Y_j[i, r] e_j[m]
    h = np.einsum("aim,irm->ar", E, Hy)
    H -= (2.0 * dof / r2) * h @ h.T
    if reml:
        A = np.einsum("aim,irms->ars", E, Ty)
        H -= np.einsum("ars,bsr->ab", A, A)
    same = pattern.cols[:, None] == pattern.cols[None, :]
    H += 2.0 * np.where(same, D[pattern.rows[:, None], pattern.rows[None, :]], 0.0)
    return dev, grad, 0.5 * (H + H.T)


@dataclass
class VectorLMMFit:
    """The profiled optimum on the scale of the data given to `fit_vector_stats`."""

    theta: np.ndarray
    lam: np.ndarray
    beta: np.ndarray
    cov_beta: np.ndarray
    sigma2: float
    llf: float
    blups: np.ndarray  # (G, q)
    blup_cov: np.ndarray  # (G, q, q) conditional covariance of b_j
    converged: bool
    n_evaluations: int
    message: str
    decrement: float = np.nan  # Newton decrement at the optimum (log-likelihood units)


def moment_start(pattern, stats):
    """Lambda's free entries from moment estimates: per-group least-squares b_j of the OLS residuals on Z_j,
    Cov(b_j) less their mean sampling covariance sigma^2 (Z_j'Z_j)^{-1}, relative to sigma^2 (the within-group
    residual variance), restricted to the pattern's blocks and floored to positive definite.  None when too
    few groups have a full-rank Z_j'Z_j.  A start independent of any optimiser's path."""
    p, q = stats.p, pattern.q
    XtX, Xty = stats.AtA[:p, :p], stats.AtA[:p, p]
    beta = np.linalg.lstsq(XtX, Xty, rcond=None)[0]
    rss = stats.AtA[p, p] - 2.0 * beta @ Xty + beta @ XtX @ beta
    Zr = stats.ZtA[:, :, p] - stats.ZtA[:, :, :p] @ beta  # Z_j'r_j, (G, q)
    if q == 2:  # closed forms (numpy's stacked eigvalsh, solve and inv cost ~10x more on 2 x 2 blocks)
        a, c, d = stats.ZtZ[:, 0, 0], stats.ZtZ[:, 1, 0], stats.ZtZ[:, 1, 1]
        det = a * d - c * c
        top = 0.5 * (a + d) + np.sqrt(0.25 * (a - d) ** 2 + c * c)  # the larger eigenvalue
        ok = det > 1e-8 * np.maximum(top, 1e-300) ** 2  # smaller / larger eigenvalue > 1e-8
        if ok.sum() <= q:
            return None
        inv = np.stack([np.stack([d, -c], axis=1), np.stack([-c, a], axis=1)], axis=1)[ok] / det[ok, None, None]
    else:
        w = np.linalg.eigvalsh(stats.ZtZ)
        ok = w[:, 0] > 1e-8 * np.maximum(w[:, -1], 1e-300)
        if ok.sum() <= q:
            return None
        inv = np.linalg.inv(stats.ZtZ[ok])
    b = np.einsum("gab,gb->ga", inv, Zr[ok])  # per-group least squares (Z_j'Z_j)^{-1} Z_j'r_j
    dof = stats.n - p - q * int(ok.sum())
    within = rss - np.sum(Zr[ok] * b)
    sigma2 = within / dof if dof > 0 and within > 0 else rss / stats.n
    if not sigma2 > 0:
        return None
    sigma = (b.T @ b) / len(b) - sigma2 * np.mean(inv, axis=0)
    same_block = np.zeros((q, q), bool)
    same_block[pattern.rows, pattern.cols] = True
    rel = np.where(same_block | same_block.T, sigma, 0.0) / sigma2
    vals, vecs = np.linalg.eigh(0.5 * (rel + rel.T))
    vals = np.maximum(vals, 1e-2 * max(vals.max(), 1e-2))  # floored: a start strictly inside
    lam = np.linalg.cholesky((vecs * vals) @ vecs.T)
    return pattern.entries(lam)


def _canonical(theta, pattern):
    """The same Lambda Lambda' with a non-negative diagonal: columns with a negative diagonal entry flipped."""
    signs = np.where(np.diag(pattern.build(theta)) < 0, -1.0, 1.0)
    return theta * signs[pattern.cols]


#: a Hessian eigenvalue below -SADDLE_TOL (log-likelihood units, scaled data) marks a saddle, not a maximum
SADDLE_TOL = 1e-6


def _finish(half, hessian, theta, tol, maxiter, judge_start=True):
    """Newton steps with the exact Hessian (`vector_deviance`) on the half deviance (log-likelihood units) from
    theta, without bounds: Lambda Lambda' is unchanged by flipping a column's sign, so the bounds of the search
    only fix a sign.  Converged when the Newton decrement is below tol and the Hessian has no clearly negative
    eigenvalue (a boundary point where the deviance rises into the interior is a saddle in these coordinates:
    left along its negative direction).  Returns (Minimum, decrement at the start; nan without ``judge_start``)."""
    start_decrement = np.nan
    if judge_start:
        _, g0 = half(theta)
        H0 = hessian(theta)
        start_decrement = newton_decrement(H0, g0)[0] if np.all(np.isfinite(H0)) else np.inf
    res = minimize(half, theta, None, maxiter, tol, hessian=hessian)
    for _ in range(3):  # leave a saddle (an even direction at a zero diagonal entry, say)
        w, V = linalg.eigh(res.hess)
        if not (np.all(np.isfinite(w)) and w[0] < -SADDLE_TOL * max(1.0, abs(w[-1]))):
            break
        step = V[:, 0] * max(0.1, 0.1 * np.max(np.abs(res.x)))
        tries = [res.x + step, res.x - step]
        values = [half(t, need_grad=False)[0] for t in tries]
        if not min(values) < res.f:
            break
        x = tries[int(np.argmin(values))]
        res = minimize(half, x, None, maxiter, tol, hessian=hessian)
    return res, start_decrement


@dataclass
class LambdaSearch:
    """Result of `search_lambda`: Lambda's free entries, the deviance there, and how the search ended."""

    theta: np.ndarray
    deviance: float
    converged: bool
    n_evaluations: int
    message: str
    decrement: float  # Newton decrement at theta (log-likelihood units)


def optimize_lambda(pattern, stats, reml=True, tol=1e-6, maxiter=100):
    """`search_lambda` as a tuple (theta, deviance, converged, n_evaluations, message)."""
    s = search_lambda(pattern, stats, reml, tol, maxiter)
    return s.theta, s.deviance, s.converged, s.n_evaluations, s.message


def search_lambda(pattern, stats, reml=True, tol=1e-6, maxiter=100):
    """Minimise the profiled deviance over Lambda's free entries (diagonal >= 0).

    Newton steps with the exact Hessian from the moment estimates when they reach an interior optimum
    (`_newton_from_moments`); else SLSQP (bounded, diagonal >= 0) from the best of three starts c I, then
    Newton steps with the exact Hessian judge and finish the point: SLSQP's own success flag can be set tens of
    log-likelihood units from the optimum (its quasi-Newton model jumps to the bound and back).  Converged
    means a Newton decrement below tol (log-likelihood units) where no Hessian eigenvalue is clearly negative.
    When SLSQP and that judgement disagree (SLSQP failed, or its point is not a maximum), a second search
    starts from the moment estimates (`moment_start`) and the better point is kept.
    """
    count = {"n": 0}
    known = {}  # theta -> (deviance, gradient[, Hessian]): the Newton stage re-asks for points it has evaluated

    def dev(theta):
        count["n"] += 1
        return vector_deviance(theta, pattern, stats, reml)

    def evaluate(theta, hess):
        key = np.asarray(theta, float).tobytes()
        if key not in known or (hess and len(known[key]) < 3):
            count["n"] += 1
            known[key] = vector_deviance(theta, pattern, stats, reml, need_grad=True, need_hess=hess)
        return known[key]

    def per_row(theta):
        # SLSQP's first quasi-Newton step is the gradient itself: per row it is a step of the size of Lambda, not
        # n times it (the full deviance's made it overshoot and back off for ~10 evaluations)
        d, g = evaluate(theta, False)[:2]
        return d / stats.n, g / stats.n

    def half(theta, need_grad=True):  # log-likelihood units, the scale of tol; the Newton stage's Hessian with it
        if not need_grad:
            return 0.5 * dev(theta), None
        d, g = evaluate(theta, True)[:2]
        return 0.5 * d, 0.5 * g

    def hessian(theta):
        return 0.5 * evaluate(theta, True)[2]

    bounds = pattern.bounds()
    scales = (0.3, 1.0, 3.0)
    starts = [pattern.start(c) for c in scales]
    values = list(identity_deviances(scales, stats, reml))  # Lambda = c I for every pattern
    count["n"] += len(scales)
    quick = _newton_from_moments(pattern, stats, half, hessian, min(values), tol, maxiter)
    if quick is not None:
        return _polished(quick, half, pattern, tol, count, "Newton from the moment estimates")
    best = None
    for k in np.argsort(values)[:2]:
        res = optimize.minimize(per_row, starts[k], jac=True, method="SLSQP", bounds=bounds,
                                options={"maxiter": 50 * maxiter, "ftol": 1e-13})
        res.fun = res.fun * stats.n
        if best is None or (np.isfinite(res.fun) and res.fun < best.fun):
            best = res
        if not np.any(np.asarray(best.x)[pattern.is_diag] < SINGULAR_TOL):
            break  # an interior optimum; a boundary one is checked from a second start (lme4 can stop there)
    theta = np.asarray(best.x, float)
    if not np.isfinite(best.fun):
        return LambdaSearch(theta, np.inf, False, count["n"], "SLSQP: " + str(best.message), np.inf)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res, start_decrement = _finish(half, hessian, theta, tol, maxiter)
        method = "SLSQP + Newton"
        if not (best.success and start_decrement < tol and res.converged):  # disagreement: a second start
            second = moment_start(pattern, stats)
            if second is not None and np.isfinite(dev(second)):
                other, _ = _finish(half, hessian, second, tol, maxiter)
                if other.f < res.f - 1e-9 * (1.0 + abs(res.f)) or (other.converged and not res.converged
                                                                    and other.f <= res.f + tol):
                    res, method = other, "SLSQP + Newton (second start: moment estimates)"
    return _polished(res, half, pattern, tol, count, method)


def _plain_newton(half, hessian, x, tol, maxiter):
    """Full Newton steps with the exact Hessian while it is positive definite and every step decreases the
    deviance: the Minimum once the Newton decrement g'H^{-1}g / 2 is below tol, else None (then the guarded
    `_finish`).  Where it returns, it agrees with `_optimize.minimize` (a positive definite Hessian is its own
    positive definite stand-in) without its safeguards' overhead: the common case near the moment start."""
    f, g = half(x)
    for it in range(maxiter + 1):
        H = hessian(x)
        try:
            step = linalg.cho_solve((np.linalg.cholesky(H), True), g, check_finite=False)
        except (np.linalg.LinAlgError, linalg.LinAlgError, ValueError):
            return None
        decrement = 0.5 * float(g @ step)
        if decrement < tol:
            return Minimum(x, f, g, H, it, decrement, True, "converged")
        if it == maxiter or np.max(np.abs(step)) > MAX_NEWTON_STEP:
            return None
        x_new = x - step
        f_new, g_new = half(x_new)
        if not (np.isfinite(f_new) and f_new <= f - 1e-4 * 2.0 * decrement):  # Armijo, as `_optimize`'s steps
            return None
        x, f, g = x_new, f_new, g_new
    return None


def _newton_from_moments(pattern, stats, half, hessian, best_start, tol, maxiter):
    """Newton steps from the moment estimates (`moment_start`, usually within a fraction of a log-likelihood
    unit of the optimum) when they beat the starts c I: the Minimum when it converged to an interior
    maximum, else None (the full search runs: bounds, several starts, the boundary checks)."""
    first = moment_start(pattern, stats)
    if first is None:
        return None
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = 2.0 * half(first)[0]  # with its gradient: the Newton stage's first evaluation
        if not (np.isfinite(value) and value <= best_start):
            return None
        res = _plain_newton(half, hessian, first, tol, maxiter)
        if res is None:  # not plain sailing: the guarded Newton stage (backtracking, saddles, the edge)
            res, _ = _finish(half, hessian, first, tol, maxiter, judge_start=False)
    if not (res.converged and np.isfinite(res.f) and 2.0 * res.f <= value):
        return None
    if np.any(np.abs(np.asarray(res.x)[pattern.is_diag]) < SINGULAR_TOL):
        return None  # a boundary optimum: the bounded search and its second start judge it
    return res


def _polished(res, half, pattern, tol, count, method):
    """LambdaSearch from the Newton stage's Minimum, after one more Newton step."""
    x, f = np.asarray(res.x, float), float(res.f)
    if res.converged and np.all(np.isfinite(res.hess)):  # one more Newton step: the optimum to rounding, as cheap
        try:                                              # as one evaluation (the search stops within tol of it)
            step = np.linalg.solve(res.hess, res.g)
        except np.linalg.LinAlgError:
            step = None
        if step is not None and np.all(np.isfinite(step)):
            f_new, _ = half(x - step, need_grad=False)
            if f_new <= f:
                x, f = x - step, f_new
    theta, value = _canonical(x, pattern), 2.0 * f
    converged = bool(np.isfinite(value) and res.converged)
    message = method + ": " + ("converged" if converged else
                               f"not converged (Newton decrement {res.decrement:.3g} > {tol:g}; {res.message})")
    return LambdaSearch(theta, value, converged, count["n"], message, float(res.decrement))


def fit_vector_stats(stats, pattern, reml=True, tol=1e-6, maxiter=100):
    """Profiled REML/ML fit: Lambda, beta, Cov(beta) = sigma^2 (R_X'R_X)^{-1}, BLUPs and their covariances.

    BLUPs: u_j = L_j^{-T} (c_j - R_ZX_j beta) with c_j, R_ZX_j the y and X columns of B_j; b_j = Lambda u_j,
    Var(b_j | y) = sigma^2 Lambda (L_j L_j')^{-1} Lambda' (beta treated as known, as lme4's condVar).
    """
    search = search_lambda(pattern, stats, reml, tol, maxiter)
    theta, dev = search.theta, search.deviance
    if not np.isfinite(dev):
        raise ValueError("the REML/ML criterion is not finite anywhere (a perfect fit?)")
    lam = pattern.build(theta)
    L, Bt, R = _factors(lam, stats)
    p, n = stats.p, stats.n
    sigma2 = R[p, p] ** 2 / (n - p if reml else n)
    inv_rx = linalg.solve_triangular(R[:p, :p], np.eye(p), lower=True, check_finite=False)
    beta = inv_rx.T @ R[p, :p]
    cov_beta = sigma2 * inv_rx.T @ inv_rx
    resid = np.einsum("gkq,k->gq", Bt, np.append(-beta, 1.0))  # c_j - R_ZX_j beta, (G, q)
    Linv_t = lower_inverse_t(L)  # L_j^{-T} (closed form for q = 2)
    u = np.einsum("gab,gb->ga", Linv_t, resid)
    blups = u @ lam.T
    Linv_lam = right_multiply(Linv_t, lam.T)  # L_j^{-1} Lambda' (one BLAS product)
    blup_cov = sigma2 * _bmm(_transposed(Linv_lam), Linv_lam)
    return VectorLMMFit(theta, lam, beta, cov_beta, sigma2, -0.5 * dev, blups, blup_cov, search.converged,
                        search.n_evaluations, search.message, search.decrement)
