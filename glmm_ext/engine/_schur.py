"""Schur products of scalar random-effects terms for the blocked Cholesky core (`_pls`).

With every term scalar, Lambda_k = theta_k I and the Schur complement of the first term's (diagonal) block is
S = I + Lam_R (A_RR - K) Lam_R with K = A_R1 diag(t) A_R1', t a function of the first term's theta alone.  K comes
either from scipy's sparse product (`schur_product`, `schur_pair`: kept for the last few values of t), or, when
A_R1's columns pair up into few enough products, from a fixed pair plan (`SchurPairs`) as one sparse
matrix-vector product straight into LAPACK's layout.
"""
import numpy as np
from scipy import sparse


#: K matrices (AR1 diag(t1^2) AR1') kept per cross-product set
SCHUR_CACHE = 2  # one theta_1's K and trace product: the Newton search's differences in theta_1 come last


def schur_product(cp, lam1, t1):
    """AR1 diag(t1^2) AR1' (dense), cached on `cp` by `lam1`, the first term's lambda (or a key derived from it),
    of which t1 is a function."""
    cache = cp.__dict__.setdefault("_schur_cache", [])
    for key, K in cache:
        if key == lam1:
            return K
    B = cp.AR1.copy()
    B.data *= t1[B.indices]
    K = (B @ B.T).toarray()
    cache.append((lam1, K))
    if len(cache) > SCHUR_CACHE:
        cache.pop(0)
    return K


def schur_pair(cp, key1, t1, key2, t2):
    """`schur_product` for two keys at once: one complex sparse product AR1 diag(t1^2 + i t2^2) AR1' gives both
    (its real and imaginary parts), a quarter faster than two real ones."""
    cache = cp.__dict__.setdefault("_schur_cache", [])
    keys = [key for key, _ in cache]
    if key1 in keys or key2 in keys:
        return
    B = cp.AR1.astype(complex)
    B.data *= (t1 * t1 + 1j * (t2 * t2))[B.indices]
    R = (B @ cp.AR1.T.astype(complex)).tocsr()
    del B
    for key, part in ((key1, R.data.real), (key2, R.data.imag)):
        K = sparse.csr_matrix((np.ascontiguousarray(part), R.indices, R.indptr), shape=R.shape).toarray()
        cache.append((key, K))
    del R
    while len(cache) > SCHUR_CACHE:
        cache.pop(0)


#: scalar terms: the Schur product is accumulated from AR1's entry pairs (`SchurPairs`) up to this many pairs
#: (12 bytes each); beyond, scipy's sparse product (a MovieLens-sized crossed design has ~1e8 pairs)
MAX_SCHUR_PAIRS = 6_000_000


class SchurPairs:
    """The pairs (r >= r') of stored entries of AR1 in one column j (one level of the first term), for scalar terms.

    K = AR1 diag(t) AR1' = sum_j t_j a_j a_j' is then one sparse matrix-vector product Q t, Q the
    (nR^2 x n1) matrix of the pairs' products a_rj a_r'j at row (r, r') of a Fortran-ordered nR x nR array: K's
    lower triangle comes out dense and in LAPACK's layout (factored in place, no copy).  The quadratic forms
    q_j = a_j' M a_j of a symmetric M (the gradient's trace tr(M AR1 diag(w) AR1') = w'q, the first term's
    conditional variances) are Q' times M's lower triangle.  No sparse x sparse product, no
    densification; AR1's pattern and values are fixed for a Gaussian profile, so this is built once per fit."""

    def __init__(self, AR1, nR):
        A = AR1.tocsc()
        A.sort_indices()
        ip, ind, dat = A.indptr, A.indices, A.data
        nnz, n1 = len(dat), A.shape[1]
        cnt = np.diff(ip)
        start = np.repeat(ip[:-1], cnt)  # first entry of each entry's column
        reps = np.arange(nnz) - start + 1  # entry e pairs with the entries of its column up to itself
        # pair number k of entry e (block offset o_e) pairs e with entry start_e + (k - o_e)
        offset = np.cumsum(reps) - reps
        second = np.arange(int(offset[-1] + reps[-1]) if nnz else 0) - np.repeat(offset - start, reps)
        r1, r2 = np.repeat(ind, reps), ind[second]
        itype = np.int32 if nR * nR < 2 ** 31 else np.int64
        flat = r2.astype(itype) * itype(nR) + r1  # (r1, r2), r1 >= r2, in a Fortran-ordered nR x nR array
        prod = np.repeat(dat, reps) * dat[second]
        del second, r1, r2
        indptr = np.concatenate([[0], np.cumsum(cnt * (cnt + 1) // 2)]).astype(itype)  # the pairs are by column
        self.QT = sparse.csr_matrix((prod, flat, indptr), shape=(n1, nR * nR))
        self.QTT = self.QT.T  # CSC: Q t scatters each column's pairs, as fast as a CSR copy of Q would be
        self.Asq = A.multiply(A).T.tocsr()  # (n1, nR): a_rj^2, for the pairs r = r'
        self.nR, self.n1 = nR, n1

    @staticmethod
    def count(AR1):
        cnt = np.diff(AR1.tocsc().indptr).astype(np.int64)
        return int(np.sum(cnt * (cnt + 1) // 2))

    def product(self, t):
        """AR1 diag(t) AR1' as a Fortran-ordered (nR, nR) array, the lower triangle only (the upper is 0)."""
        return (self.QTT @ t).reshape(self.nR, self.nR, order="F")

    def rest_minus(self, ARR, t):
        """ARR - AR1 diag(t) AR1' (dense, both triangles, Fortran-ordered) for a symmetric ARR."""
        G = self.product(t)
        G += G.T  # the lower triangle to both (numpy buffers the overlap), the diagonal twice
        G[np.diag_indices(self.nR)] *= 0.5
        return np.subtract(ARR, G, out=G)

    def quad(self, M):
        """q_j = a_j' M a_j for every column j of AR1, from the lower triangle of a symmetric Fortran-ordered M (the
        off-diagonal pairs stand for both triangles: twice, less the diagonal's once)."""
        return 2.0 * (self.QT @ M.ravel(order="F")) - self.Asq @ np.diagonal(M)


def attach_schur_pairs(cp, layout):
    """Give a fixed cross-product set with a scalar first term its `SchurPairs` (when within MAX_SCHUR_PAIRS): the
    Factor and the conditional variances use them when every term is scalar, the Gaussian gradient whenever the
    first is (`_profile_gradient`).  Returns the pairs or None."""
    if not layout.nR or layout.q[0] != 1:
        return None
    pairs = cp.__dict__.get("_pairs")
    if pairs is None and SchurPairs.count(cp.AR1) <= MAX_SCHUR_PAIRS:
        pairs = cp.__dict__["_pairs"] = SchurPairs(cp.AR1, layout.nR)
    return pairs


def scale_rest_blocks(M, layout, thetas):
    """M <- Lam_R M Lam_R in place on the lower blocks of an (nR, nR) array, scalar terms (Lam_R = theta_k I per
    term): a pass over the lower half instead of two over the whole."""
    n1 = layout.n1
    for p in range(1, len(layout.terms)):
        rp = slice(layout.offsets[p] - n1, layout.offsets[p + 1] - n1)
        for q in range(1, p + 1):
            M[rp, layout.offsets[q] - n1:layout.offsets[q + 1] - n1] *= thetas[p] * thetas[q]
    return M
