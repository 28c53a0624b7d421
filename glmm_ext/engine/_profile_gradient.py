"""The analytic gradient of the profiled Gaussian REML/ML deviance (`_mixed_lmm.GaussianProfile`) in the covariance
parameters theta for any random-effects structure: vector terms, correlated (``(x|g)``) or diagonal (``(x||g)``).

With A = Z'WZ, H = Lambda'A Lambda + I = L L', V = W^-1 + Z Lambda Lambda'Z' (relative to sigma^2), r = y - X beta -
Z Lambda u the residual at the PLS solution (beta, u) and theta_a the entry (r_a, c_a) of term k's Lambda_k, so that
d Lambda / d theta_a = blockdiag over term k's levels of E_a = e_{r_a} e_{c_a}':

* d log|H| / d theta_a = 2 tr(H^-1 Lambda'A dLambda_a) = 2 M_k[c_a, r_a],  M_k = sum_j (H^-1 Lambda'A)_jj, the sum of
  the q_k x q_k diagonal blocks of H^-1 Lambda'A over term k's levels j;
* d r^2 / d theta_a = -2 (Z'W r)' dLambda_a u = -2 R_k[r_a, c_a],  R_k = sum_j v_j u_j' (v = Z'W r; envelope
  theorem: r^2 is the minimum over (beta, u), so only the explicit theta enters);
* d log|X'V^-1X| / d theta_a = -tr((X'V^-1X)^-1 X'V^-1 Z dGamma Z'V^-1 X) = -2 (T_k Lambda_k)[r_a, c_a],
  Gamma = Lambda Lambda', T_k = sum_j N_j N_j', N = Z'V^-1 X L_X^-T (REML; L_X L_X' = X'V^-1X);

and the deviance's gradient is d log|H| + dof d r^2 / r^2 (+ d log|X'V^-1X| for REML), dof = n (ML) or n - p.
Nothing divides by theta: the formulas hold at a singular Lambda (a zero diagonal, the bound) as anywhere.

The blocks of H^-1 Lambda'A come from the blocked factor (`_pls.Factor`; 1 = the first term, R = the others, S =
L_RR L_RR' the Schur complement, C = Lambda_R'A_R1, P = A_R1 blockdiag(Lambda_1), H_j = L11_j L11_j' the first term's
block of level j and Bt = C blockdiag(Lambda_1 H_j^-1) = L_R1 blockdiag(L11_j^-1)): with H^-1's blocks
(H^-1)_RR = S^-1, (H^-1)_R1 = -S^-1 Bt and (H^-1)_11 = H_1^-1 + Bt'S^-1 Bt,

    (H^-1 Lambda'A)_11,jj = H_j^-1 Lambda_1'A_j + Bt_j'S^-1 D_j,   D = Bt blockdiag(Lambda_1'A_j) - C,
    (H^-1 Lambda'A)_RR    = S^-1 E,                               E = Lambda_R'A_RR - Bt P',

so only S^-1 (as the conditional variances use it) and products with the sparse cross block are needed: one
D'S^-1 by chunks of levels (nnz(D) nR flops), one sparse Bt P' (the factor's own L_R1 L_R1' pattern).

A scalar first term (q_1 = 1, the common crossed design: a vector term among the smaller factors) with the cross
block's pair plan (`_schur.SchurPairs`) needs neither product: with t = lambda_1, a_j = A_jj, d_j^2 = 1 + t^2 a_j
and c_j = A_R1's column j, Bt_j = t Lambda_R'c_j / d_j^2 and D_j = -Lambda_R'c_j / d_j^2, so

    M_1 = sum_j t a_j / d_j^2 - t sum_j c_j'(Lambda_R S^-1 Lambda_R')c_j / d_j^4   (one gather of the pairs),
    E   = Lambda_R'G,  G = A_RR - A_R1 diag(t^2 / d^2) A_R1'                     (the factor's Schur product).
"""
import numpy as np
from scipy import linalg
from scipy.linalg import lapack

from ._pls import _block_diag_sparse


def _sinv(fac):
    """S^-1 = (L_RR L_RR')^-1, both triangles."""
    Sinv, info = lapack.dpotri(fac.LRR, lower=1)
    if info != 0:
        raise linalg.LinAlgError("singular factor")
    Sinv = np.tril(Sinv)
    Sinv += np.tril(Sinv, -1).T
    return Sinv


def _rest_blocks(lay, SE):
    """Per term after the first: sum over its levels j of the q x q diagonal blocks of S^-1 E, given as
    SE = (S^-1, E') or (S^-1 Lambda_R', G) (both read only on the blocks' rows and columns)."""
    left, right = SE
    out = []
    for pos in range(1, len(lay.terms)):
        lo, hi = lay.offsets[pos] - lay.n1, lay.offsets[pos + 1] - lay.n1
        q, nl = lay.q[pos], lay.n_levels[pos]
        # sum_j (left right')_jj [a, b] = sum_j sum_l left[jq + a, l] right[jq + b, l]
        out.append(np.einsum("jal,jbl->ab", left[lo:hi].reshape(nl, q, -1), right[lo:hi].reshape(nl, q, -1)))
    return out


def _logdet_blocks_pairs(fac, cp, lams, pairs):
    """`logdet_blocks` for a scalar first term from the pair plan of A_R1 (module docstring)."""
    lay = fac.layout
    t, a = float(lams[0][0, 0]), cp.A11[:, 0, 0]
    d2 = fac.L11[:, 0, 0] ** 2
    Sinv = _sinv(fac)
    LamR = fac.LamR
    SL = np.asarray(LamR @ Sinv).T  # S^-1 Lambda_R' (S^-1 symmetric)
    LSL = np.asfortranarray(np.asarray(LamR @ SL))  # Lambda_R S^-1 Lambda_R'
    del Sinv
    M1 = t * float(np.sum(a / d2)) - t * float(np.sum(pairs.quad(LSL) / (d2 * d2)))
    del LSL
    G = pairs.rest_minus(cp.ARR, t * t / d2)  # A_RR - A_R1 diag(t^2 / d^2) A_R1'
    # (S^-1 Lambda_R' G)_jj: G symmetric, so its rows stand for its columns
    return [np.array([[M1]])] + _rest_blocks(lay, (SL, G.T))  # G.T: C-ordered rows


def _a_times(cp, lay, v):
    """(Z'WZ) v for an internal random-effects vector v (the blocks of `_pls.CrossProducts`)."""
    n1, q1 = lay.n1, lay.q[0]
    out1 = np.einsum("jab,jb->ja", cp.A11, v[:n1].reshape(-1, q1)).ravel()
    if not lay.nR:
        return out1
    return np.concatenate([out1 + cp.AR1.T @ v[n1:], cp.AR1 @ v[:n1] + cp.ARR @ v[n1:]])


def logdet_blocks(fac, cp, lams, chunk=2000):
    """Per term (engine order): M_k = sum over its levels j of the q_k x q_k blocks (H^-1 Lambda'A)_jj, so that
    d log|H| / d Lambda_k[r, c] = 2 M_k[c, r] (module docstring)."""
    lay = fac.layout
    q1, nl1, nR = lay.q[0], lay.n_levels[0], lay.nR
    Li = fac.L11inv  # L11_j^-1
    LA = np.swapaxes(lams[0], 0, 1) @ cp.A11  # Lambda_1'A_j
    M1 = np.einsum("jba,jbc->ac", Li, Li @ LA)  # sum_j H_j^-1 Lambda_1'A_j, H_j^-1 = L^-T L^-1
    if not nR:
        return [M1]
    pairs = cp.__dict__.get("_pairs")
    if pairs is not None and q1 == 1:
        return _logdet_blocks_pairs(fac, cp, lams, pairs)
    Sinv = _sinv(fac)
    Bt = (fac.LR1 @ _block_diag_sparse(Li)).tocsr()
    LamRT = fac.LamR.T.tocsr()
    C = (LamRT @ cp.AR1).tocsr()
    D = (Bt @ _block_diag_sparse(LA) - C).T.tocsr()  # D' (n1, nR): rows level-major as the first term's effects
    BtT = Bt.T.tocsr()
    for start in range(0, nl1, chunk):  # sum_j Bt_j'S^-1 D_j by chunks of levels: D_c'S^-1 is (chunk q1, nR) dense
        stop = min(nl1, start + chunk)
        rows = slice(start * q1, stop * q1)
        Y = np.asarray(D[rows] @ Sinv)
        Bc = BtT[rows]
        idx = np.arange(stop - start) * q1
        for a in range(q1):
            Ba = Bc[idx + a] if q1 > 1 else Bc
            for b in range(q1):
                M1[a, b] += float(Ba.multiply(Y[idx + b] if q1 > 1 else Y).sum())
    P = (cp.AR1 @ _block_diag_sparse(np.broadcast_to(lams[0], (nl1, q1, q1)))).tocsr()
    E = np.asarray(LamRT @ cp.ARR) - (Bt @ P.T).toarray()
    return [M1] + _rest_blocks(lay, (Sinv, E.T))


def profile_gradient(prof, params):
    """(deviance, gradient in the user's parameter order) of a `GaussianProfile` at `params`, any structure."""
    fac, lams = prof.factor(params)
    dev = prof.deviance(params, fac)
    if not np.isfinite(dev):
        return dev, np.full(len(params), np.nan)
    lay, cp, p = prof.layout, prof.cp, prof.p
    LFF = fac.LFF
    beta, _, _, u, _, _ = prof._solution(params, fac)  # on the conditioned response, as the cross-products
    ZtWX = np.concatenate([cp.AF1[:p].T, cp.AFR[:p].T])  # (q_tot, p)
    ZtWy = np.concatenate([cp.AF1[p], cp.AFR[p]])
    v = ZtWy - ZtWX @ beta - _a_times(cp, lay, lay.lambda_times(lams, u))  # Z'W r
    r2 = LFF[p, p] ** 2
    dof = prof.n_obs - p if prof.reml else prof.n_obs
    M = logdet_blocks(fac, cp, lams)
    per_term = [2.0 * Mk.T - 2.0 * dof / r2 * (v[lay.offsets[pos]:lay.offsets[pos + 1]].reshape(-1, lay.q[pos]).T
                                                @ u[lay.offsets[pos]:lay.offsets[pos + 1]].reshape(-1, lay.q[pos]))
                for pos, Mk in enumerate(M)]  # q x q: entry [r, c] is the derivative in Lambda_k[r, c]
    if prof.reml:  # Q = Z'V^-1X = Z'WX - A Lambda H^-1 Lambda'Z'WX, N = Q L_X^-T
        Q = np.empty_like(ZtWX)
        n1 = lay.n1
        for j in range(p):
            c = lay.lambda_times(lams, ZtWX[:, j], transpose=True)
            h = np.concatenate(fac.backward(*fac.forward(c[:n1], c[n1:])[:2]))
            Q[:, j] = ZtWX[:, j] - _a_times(cp, lay, lay.lambda_times(lams, h))
        N = linalg.solve_triangular(LFF[:p, :p], Q.T, lower=True, check_finite=False)  # (p, q_tot)
        for pos in range(len(M)):
            Nk = N[:, lay.offsets[pos]:lay.offsets[pos + 1]].reshape(p, -1, lay.q[pos])
            per_term[pos] -= 2.0 * np.einsum("mja,mjb->ab", Nk, Nk) @ lams[pos]
    out = np.empty(len(params))
    slices = prof.structure._slices()
    for pos, k in enumerate(lay.order):
        rows, cols = lay.terms[pos].theta_positions()
        out[slices[k]] = per_term[pos][rows, cols]
    return dev, out
