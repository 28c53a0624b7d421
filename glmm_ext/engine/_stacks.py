"""Linear algebra on stacks (G, q, q) of small matrices, vectorised over G: q is small, so q^3/6 vector
operations beat a LAPACK call per matrix; q = 2 (the random-slope case) in closed form."""
import numpy as np


def batched_cholesky(T):
    """Lower Cholesky factors of a stack (G, q, q) of positive definite matrices, by columns over all G at
    once (q is small: q^3/6 vector operations beat a per-matrix LAPACK call).  LinAlgError if one is not PD."""
    G, q, _ = T.shape
    L = np.zeros_like(T)
    if q == 2:  # the random-slope case in closed form (half the vector operations of the loop)
        d0 = T[:, 0, 0]
        if not np.all(d0 > 0):
            raise np.linalg.LinAlgError("a matrix of the stack is not positive definite")
        L[:, 0, 0] = l00 = np.sqrt(d0)
        L[:, 1, 0] = l10 = T[:, 1, 0] / l00
        d1 = T[:, 1, 1] - l10 * l10
        if not np.all(d1 > 0):
            raise np.linalg.LinAlgError("a matrix of the stack is not positive definite")
        L[:, 1, 1] = np.sqrt(d1)
        return L
    for j in range(q):
        d = T[:, j, j] - np.einsum("gm,gm->g", L[:, j, :j], L[:, j, :j]) if j else T[:, 0, 0]
        if not np.all(d > 0):
            raise np.linalg.LinAlgError("a matrix of the stack is not positive definite")
        L[:, j, j] = np.sqrt(d)
        for i in range(j + 1, q):
            off = T[:, i, j] - np.einsum("gm,gm->g", L[:, i, :j], L[:, j, :j]) if j else T[:, i, 0]
            L[:, i, j] = off / L[:, j, j]
    return L


def batched_forward(L, Ct):
    """B_g = L_g^{-1} C_g for a stack, given and returned transposed: Ct (G, k, q) -> B' (G, k, q)."""
    Bt = np.empty_like(Ct)
    if L.shape[1] == 2:  # closed form for the random-slope case
        np.divide(Ct[:, :, 0], L[:, 0, 0][:, None], out=Bt[:, :, 0])
        Bt[:, :, 1] = (Ct[:, :, 1] - Bt[:, :, 0] * L[:, 1, 0][:, None]) / L[:, 1, 1][:, None]
        return Bt
    for i in range(L.shape[1]):
        col = Ct[:, :, i] - np.einsum("gkm,gm->gk", Bt[:, :, :i], L[:, i, :i]) if i else Ct[:, :, 0]
        Bt[:, :, i] = col / L[:, i, i][:, None]
    return Bt


def mul2(A, B):
    """A_g B_g for stacks (or single matrices) of 2 x 2 matrices, elementwise: numpy's stacked matmul and einsum
    cost ~10x more per 2 x 2 product."""
    a00, a01, a10, a11 = A[..., 0, 0], A[..., 0, 1], A[..., 1, 0], A[..., 1, 1]
    b00, b01, b10, b11 = B[..., 0, 0], B[..., 0, 1], B[..., 1, 0], B[..., 1, 1]
    out = np.empty(np.broadcast_shapes(A.shape, B.shape))
    out[..., 0, 0] = a00 * b00 + a01 * b10
    out[..., 0, 1] = a00 * b01 + a01 * b11
    out[..., 1, 0] = a10 * b00 + a11 * b10
    out[..., 1, 1] = a10 * b01 + a11 * b11
    return out


def lower_inverse_t(L):
    """L_g^{-T} for a stack of lower-triangular factors (closed form when q = 2)."""
    if L.shape[1] != 2:
        return batched_forward(L, np.broadcast_to(np.eye(L.shape[1]), L.shape))
    out = np.zeros_like(L)
    out[:, 0, 0] = 1.0 / L[:, 0, 0]
    out[:, 1, 1] = 1.0 / L[:, 1, 1]
    out[:, 0, 1] = -L[:, 1, 0] * out[:, 0, 0] * out[:, 1, 1]
    return out
