"""Penalised least squares on the blocked Cholesky factor of Lambda'Z'WZ Lambda + I.

The system of a mixed model with random effects b = Lambda u (u spherical, `_structure`) and extra
columns F (the fixed-effects design, and for the Gaussian profile the response too) is

    [ Lambda'Z'WZ Lambda + I    Lambda'Z'WF ]   =  L L',
    [ F'WZ Lambda               F'WF        ]

factored blockwise as in Bates et al., "Mixed models with blocked Cholesky" (arXiv 2505.11674) and
lme4's JSS paper (section 3): the terms are ordered by number of levels, largest first.  The first
term's block is block diagonal (each row belongs to one level: n_1 blocks of q_1 x q_1, a vector
for a scalar term), so its factor is n_1 small Choleskys; its cross block with the other terms is
sparse (scipy.sparse), and the Schur complement of the other terms is one dense block (their levels
are few, or the first term's elimination fills it anyway: crossed factors); F's rows are dense.
For scalar terms the Schur product A_R1 diag(t) A_R1' comes from `_schur` (a fixed pair plan straight
into LAPACK's layout where A_R1's columns are short, scipy's sparse product otherwise).
Nothing here is n x (random effects): the row-level data enter only through `crossprods`, O(n) once
per weight vector, and one factorisation costs O(size of the blocks), independent of n.
"""
from dataclasses import dataclass

import numpy as np
from scipy import linalg, sparse
from scipy.linalg import lapack

from ._schur import scale_rest_blocks, schur_product

#: random effects of the terms after the first beyond which their dense Schur block is refused
MAX_DENSE_REST = 20_000


class Layout:
    """The terms of a `ReStructure` in the engine's order (levels descending) and their z columns as
    sparse matrices.  The internal random-effects vector is [first term's, the others'...], each term
    level-major (level j's q values together)."""

    def __init__(self, structure):
        terms = structure.terms
        self.structure = structure
        self.order = sorted(range(len(terms)), key=lambda k: -terms[k].n_levels)  # stable: user order on ties
        self.terms = [terms[k] for k in self.order]
        self.q = [t.q for t in self.terms]
        self.n_levels = [t.n_levels for t in self.terms]
        sizes = [t.q * t.n_levels for t in self.terms]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.n1 = sizes[0]  # random effects of the first (block-diagonal) term
        self.nR = int(self.offsets[-1]) - self.n1
        if self.nR > MAX_DENSE_REST:
            raise ValueError(f"the random-effects terms after the largest have {self.nR} random effects together, "
                             f"beyond the dense block this engine factors ({MAX_DENSE_REST}); fit fewer levels")
        self.n = structure.n_rows
        self.codes = [np.asarray(t.codes, dtype=np.intp) for t in self.terms]
        self.Z = [np.ascontiguousarray(t.Z, dtype=float) for t in self.terms]
        self.intercept_only = [bool(t.q == 1 and np.all(t.Z == 1.0)) for t in self.terms]
        # Z_k' as a sparse (n_k q_k) x n matrix: row j*q + r holds Z[i, r] for the rows i of level j
        self.Zt = []
        rows = np.arange(self.n)
        for codes, Z, q, nl in zip(self.codes, self.Z, self.q, self.n_levels):
            r_idx = (codes[:, None] * q + np.arange(q)[None, :]).ravel()
            c_idx = np.repeat(rows, q)
            self.Zt.append(sparse.csr_matrix((Z.ravel(), (r_idx, c_idx)), shape=(nl * q, self.n)))

    @property
    def n_random(self):
        return int(self.offsets[-1])

    def to_user(self, u):
        """Per term in the USER's order: the (n_levels, q) slices of an internal random-effects vector."""
        out = [None] * len(self.terms)
        for pos, k in enumerate(self.order):
            sl = u[self.offsets[pos]:self.offsets[pos + 1]]
            out[k] = sl.reshape(self.n_levels[pos], self.q[pos])
        return out

    def lambdas(self, user_lams):
        """Per-term factors in the engine's order from the user's order."""
        return [user_lams[k] for k in self.order]

    def times_Z(self, b):
        """Z b (n,) for an internal effects vector b (data units)."""
        out = np.zeros(self.n)
        for pos in range(len(self.terms)):
            bk = b[self.offsets[pos]:self.offsets[pos + 1]].reshape(self.n_levels[pos], self.q[pos])
            if self.intercept_only[pos]:
                out += bk[self.codes[pos], 0]
            else:
                out += np.einsum("ir,ir->i", self.Z[pos], bk[self.codes[pos]])
        return out

    def Zt_times(self, r):
        """Z' r (internal order) for a row vector r."""
        parts = []
        for pos in range(len(self.terms)):
            if self.intercept_only[pos]:
                parts.append(np.bincount(self.codes[pos], weights=r, minlength=self.n_levels[pos]))
            else:
                parts.append(self.Zt[pos] @ r)
        return np.concatenate(parts)

    def lambda_times(self, lams, u, transpose=False):
        """Lambda u (or Lambda' u) for an internal vector u, per-term factors `lams` in the engine's order."""
        out = np.empty_like(u)
        for pos, lam in enumerate(lams):
            sl = slice(self.offsets[pos], self.offsets[pos + 1])
            U = u[sl].reshape(self.n_levels[pos], self.q[pos])
            out[sl] = (U @ (lam if transpose else lam.T)).ravel()
        return out


@dataclass
class CrossProducts:
    """Z'WZ, Z'WF and F'WF by blocks (1 = the first term, R = the others, F = extra columns)."""

    A11: np.ndarray  # (n_levels_1, q1, q1)
    AR1: sparse.csr_matrix  # (nR, n1)
    ARR: np.ndarray  # (nR, nR) dense
    AF1: np.ndarray  # (m, n1)
    AFR: np.ndarray  # (m, nR)
    AFF: np.ndarray  # (m, m)


def _crossprod_plan(layout):
    """Index arrays that turn per-row weights into the blocks AR1 (CSR) and ARR (dense) by bincounts:
    the pattern of Z'WZ does not depend on W, so it is found once (np.unique over the rows' level pairs)."""
    plan = getattr(layout, "_plan", None)
    if plan is not None:
        return plan
    n, n1, nR, K = layout.n, layout.n1, layout.nR, len(layout.terms)
    q1, c1, Z1 = layout.q[0], layout.codes[0], layout.Z[0]
    rows_of = {}  # (pos, a) -> row index of each data row inside the R block
    for pos in range(1, K):
        for a in range(layout.q[pos]):
            rows_of[pos, a] = (layout.offsets[pos] - n1) + layout.codes[pos] * layout.q[pos] + a
    keys, zz = [], []
    for pos in range(1, K):
        for a in range(layout.q[pos]):
            for b in range(q1):
                keys.append(rows_of[pos, a].astype(np.int64) * n1 + (c1 * q1 + b))
                zz.append(layout.Z[pos][:, a] * Z1[:, b])
    if keys:
        uniq, inv = np.unique(np.concatenate(keys), return_inverse=True)
        row_of = uniq // n1
        r1 = (inv.astype(np.intp), np.concatenate(zz), (uniq % n1).astype(np.int32),
              np.searchsorted(row_of, np.arange(nR + 1)).astype(np.int32), len(uniq))
        flat, zr = [], []
        for pos in range(1, K):
            for pos2 in range(1, K):
                for a in range(layout.q[pos]):
                    for b in range(layout.q[pos2]):
                        flat.append(rows_of[pos, a].astype(np.int64) * nR + rows_of[pos2, b])
                        zr.append(layout.Z[pos][:, a] * layout.Z[pos2][:, b])
        rr = (np.concatenate(flat), np.concatenate(zr), len(flat))
    else:
        r1 = rr = None
    layout._plan = (r1, rr)
    return layout._plan


def crossprods(layout, w, F=None):
    """The weighted cross-products of [Z F] by blocks: O(n (sum q)^2) once per weight vector `w`."""
    q1, nl1 = layout.q[0], layout.n_levels[0]
    c1, Z1 = layout.codes[0], layout.Z[0]
    w = np.asarray(w, float)
    A11 = np.empty((nl1, q1, q1))
    for a in range(q1):
        for b in range(a, q1):
            v = np.bincount(c1, weights=w * Z1[:, a] * Z1[:, b], minlength=nl1)
            A11[:, a, b] = v
            A11[:, b, a] = v
    nR = layout.nR
    r1, rr = _crossprod_plan(layout)
    if r1 is not None:
        inv, zz, indices, indptr, nnz = r1
        reps = len(zz) // layout.n
        data = np.bincount(inv, weights=(np.tile(w, reps) if reps > 1 else w) * zz, minlength=nnz)
        AR1 = sparse.csr_matrix((data, indices, indptr), shape=(nR, layout.n1))
        flat, zr, reps = rr
        ARR = np.bincount(flat, weights=(np.tile(w, reps) if reps > 1 else w) * zr, minlength=nR * nR)
        ARR = ARR.reshape(nR, nR)
    else:
        AR1, ARR = sparse.csr_matrix((0, layout.n1)), np.zeros((0, 0))
    if F is None:
        m = 0
        AF1, AFR, AFF = np.zeros((0, layout.n1)), np.zeros((0, nR)), np.zeros((0, 0))
    else:
        WF = F * w[:, None]
        m = F.shape[1]
        AF1 = np.asarray(layout.Zt[0] @ WF).T
        AFR = (np.concatenate([np.asarray(layout.Zt[pos] @ WF) for pos in range(1, len(layout.terms))]).T
               if nR else np.zeros((m, 0)))
        AFF = F.T @ WF
    return CrossProducts(A11, AR1, ARR, AF1, AFR, AFF)


def _csr_rows(A):
    """Row index of each stored entry of a CSR matrix (cached on the matrix: its pattern is fixed)."""
    rows = getattr(A, "_row_of_entry", None)
    if rows is None or len(rows) != len(A.data):
        rows = np.repeat(np.arange(A.shape[0]), np.diff(A.indptr))
        A._row_of_entry = rows
    return rows


def _block_diag_sparse(blocks):
    """A sparse block-diagonal matrix from an (N, q, q) array."""
    N, q, _ = blocks.shape
    if q == 1:
        return sparse.diags(blocks[:, 0, 0]).tocsr()
    return sparse.bsr_matrix((blocks, np.arange(N), np.arange(N + 1)), shape=(N * q, N * q)).tocsr()


def _lambda_rest(layout, lams):
    """Lambda of the terms after the first as a sparse block-diagonal matrix (nR x nR)."""
    parts = [_block_diag_sparse(np.broadcast_to(lams[pos], (layout.n_levels[pos],) + lams[pos].shape))
             for pos in range(1, len(layout.terms))]
    return sparse.block_diag(parts, format="csr") if parts else sparse.csr_matrix((0, 0))


class Factor:
    """The blocked lower Cholesky factor L of [[Lambda'Z'WZ Lambda + I, Lambda'Z'WF], [., F'WF]].

    Attributes: L11 (n_levels_1, q1, q1) lower, LR1 sparse (nR x n1), LRR dense lower (nR x nR),
    LF1 (m x n1), LFR (m x nR), LFF lower (m x m) or None when F'WF's Schur complement is not positive
    definite; ``logdet_Z`` = log |Lambda'Z'WZ Lambda + I|.  Raises `linalg.LinAlgError` when the Z part is not
    positive definite (possible only with negative weights: observed curvatures of a non-log-concave f).
    """

    def __init__(self, layout, cp, lams):
        self.layout = layout
        q1 = layout.q[0]
        lam1 = lams[0]
        M11 = lam1.T @ cp.A11 @ lam1
        M11 += np.eye(q1)
        if q1 == 1:
            v = M11[:, 0, 0]
            if not np.all(v > 0):
                raise linalg.LinAlgError("first block not positive definite")
            self.L11 = np.sqrt(v)[:, None, None]
        else:
            self.L11 = np.linalg.cholesky(M11)  # LinAlgError when not positive definite
        # T1_j = Lambda_1 L11_j^{-T}: right factor that turns A_.1 into L_.1
        L11inv = 1.0 / self.L11 if q1 == 1 else np.linalg.inv(self.L11)
        self.L11inv = L11inv
        T1 = lam1 @ np.swapaxes(L11inv, 1, 2)
        logdet = 2.0 * float(np.sum(np.log(np.diagonal(self.L11, axis1=1, axis2=2))))
        nR = layout.nR
        self._lams = lams
        scalar = all(q == 1 for q in layout.q)
        # scalar terms: Lambda is diagonal, everything below is elementwise (no sparse matrices built per factor)
        T1s = None if scalar else _block_diag_sparse(T1)
        lamR = (np.repeat([float(lam[0, 0]) for lam in lams[1:]], layout.n_levels[1:]) if scalar
                else None)
        self.lamR = lamR
        if nR and scalar:
            # LR1 LR1' = Lam_R K Lam_R with K = AR1 diag(t1^2) AR1' a function of the first term's lambda alone: kept
            # for the last few values (finite differences in the other parameters, and the Gaussian profile's fixed
            # cross-products, reuse it)
            t1 = T1[:, 0, 0]
            self.t1 = t1
            self.LR1 = cp.AR1._with_data(cp.AR1.data * (lamR[_csr_rows(cp.AR1)] * t1[cp.AR1.indices]), copy=False)
            pairs = cp.__dict__.get("_pairs")
            if pairs is not None:  # S in one preallocated Fortran array, factored in place (lower triangle)
                self.pairs, self.thetas = pairs, [float(lam[0, 0]) for lam in lams]
                S = pairs.product(t1 * t1)
                np.subtract(cp.ARR.T, S, out=S)  # ARR is symmetric: its transpose is its Fortran-ordered self
                scale_rest_blocks(S, layout, self.thetas)
                S[np.diag_indices(nR)] += 1.0
                LRR, info = lapack.dpotrf(S, lower=1, overwrite_a=1, clean=1)
                if info != 0:
                    raise linalg.LinAlgError("Schur complement not positive definite")
                self.LRR = LRR
                nR = -1  # factored
            else:
                S = cp.ARR - schur_product(cp, float(lam1[0, 0]), t1)
                S *= lamR[:, None]
                S *= lamR[None, :]
        elif nR and q1 == 1 and cp.__dict__.get("_pairs") is not None:
            # a scalar first term, vector terms after it: S = I + Lam_R'(A_RR - K)Lam_R, K = A_R1 diag(t1^2) A_R1' from
            # the pair plan (a sparse matrix-vector product, not scipy's sparse x sparse)
            t1 = T1[:, 0, 0]
            self.LR1 = (self.LamR.T @ cp.AR1._with_data(cp.AR1.data * t1[cp.AR1.indices], copy=False)).tocsr()
            S = cp.__dict__["_pairs"].rest_minus(cp.ARR, t1 * t1)
            S = np.asarray(self.LamR.T @ S.T)  # S.T: the same symmetric matrix, C-ordered for scipy (no copy)
            S = np.asarray(self.LamR.T @ S.T).T
        elif nR:
            self.LR1 = (self.LamR.T @ cp.AR1 @ T1s).tocsr()
            S = np.asarray(self.LamR.T @ cp.ARR)
            S = np.asarray(self.LamR.T @ S.T).T
            S -= (self.LR1 @ self.LR1.T).toarray()
        if nR > 0:
            S[np.diag_indices(nR)] += 1.0
            self.LRR = linalg.cholesky(S, lower=True, overwrite_a=True, check_finite=False)
        nR = layout.nR
        if nR:
            logdet += 2.0 * float(np.sum(np.log(np.diag(self.LRR))))
        else:
            self.LR1 = cp.AR1
            self.LRR = np.zeros((0, 0))
        self.logdet_Z = logdet
        m = cp.AFF.shape[0]
        self.m = m
        if not m:
            self.LF1 = np.zeros((0, layout.n1))
        elif scalar:
            self.LF1 = cp.AF1 * T1[:, 0, 0]
        else:
            self.LF1 = np.asarray(T1s.T @ cp.AF1.T).T
        if m and nR:
            LamR_AFR = (cp.AFR * lamR).T if scalar else np.asarray(self.LamR.T @ cp.AFR.T)
            rhs = LamR_AFR - np.asarray(self.LR1 @ self.LF1.T)
            self.LFR = linalg.solve_triangular(self.LRR, rhs, lower=True, check_finite=False).T
        else:
            self.LFR = np.zeros((m, nR))
        SFF = cp.AFF - self.LF1 @ self.LF1.T - self.LFR @ self.LFR.T
        try:
            self.LFF = linalg.cholesky(SFF, lower=True, check_finite=False) if m else np.zeros((0, 0))
        except linalg.LinAlgError:
            self.LFF = None
        self.SFF = SFF

    @property
    def LamR(self):
        """Lambda of the terms after the first, sparse (nR x nR); built when first asked for."""
        if "_LamR" not in self.__dict__:
            self._LamR = _lambda_rest(self.layout, self._lams)
        return self._LamR

    @property
    def LR1T(self):
        """LR1' (a CSC view, made once: the solves use it on every call)."""
        if "_LR1T" not in self.__dict__:
            self._LR1T = self.LR1.T
        return self._LR1T

    # ---------------------------------------------------------------- triangular solves
    def _l11_solve(self, x1, transpose=False):
        q1 = self.layout.q[0]
        X = x1.reshape(-1, q1)
        Li = self.L11inv
        if q1 == 1:
            return (X[:, 0] * Li[:, 0, 0])
        M = np.swapaxes(Li, 1, 2) if transpose else Li
        return np.einsum("jab,jb->ja", M, X).ravel()

    def forward(self, g1, gR, gF=None):
        """Solve L y = g blockwise; returns (y1, yR, yF)."""
        y1 = self._l11_solve(g1)
        yR = gR - self.LR1 @ y1 if self.layout.nR else gR
        if self.layout.nR:
            yR = linalg.solve_triangular(self.LRR, yR, lower=True, check_finite=False)
        yF = None
        if gF is not None and self.m:
            yF = gF - self.LF1 @ y1 - self.LFR @ yR
            yF = linalg.solve_triangular(self.LFF, yF, lower=True, check_finite=False)
        return y1, yR, yF

    def backward(self, y1, yR, xF=None, LF1=None, LFR=None):
        """Solve L_Z' x = y - (L_F.)' xF for the random-effects part, given the F part's solution xF
        (and the rows of LF1 / LFR that xF multiplies; default all)."""
        LF1 = self.LF1 if LF1 is None else LF1
        LFR = self.LFR if LFR is None else LFR
        if xF is not None and len(xF):
            y1 = y1 - LF1.T @ xF
            yR = yR - LFR.T @ xF
        if self.layout.nR:
            xR = linalg.solve_triangular(self.LRR, yR, lower=True, trans="T", check_finite=False)
            y1 = y1 - self.LR1T @ xR
        else:
            xR = yR
        return self._l11_solve(y1, transpose=True), xR

    def solve(self, g):
        """x = (L L')^{-1} g for the whole system (random effects, then the F columns)."""
        n1, nR = self.layout.n1, self.layout.nR
        g1, gR, gF = g[:n1], g[n1:n1 + nR], g[n1 + nR:]
        y1, yR, yF = self.forward(g1, gR, gF if self.m else None)
        xF = None
        if self.m:
            xF = linalg.solve_triangular(self.LFF, yF, lower=True, trans="T", check_finite=False)
        x1, xR = self.backward(y1, yR, xF)
        return np.concatenate([x1, xR] + ([xF] if xF is not None else []))

    def row_leverages(self, lams):
        """(s, traces): s_i = z_i'Lambda H^-1 Lambda'z_i for every row and tr(H^-1 P_k) per term (engine order),
        scalar terms only, without H^-1 itself.

        With c_i = lambda_1 z_1i / d_j (j the row's first-term level, d = L11), e_R the row's entries in the other
        terms and b_j = L_R1's column j:  s_i = c_i^2 (1 + b_j'S^-1 b_j) + e_R'S^-1 e_R - 2 c_i e_R'S^-1 b_j,
        from S^-1 (dpotri) and Y = L_R1'S^-1 (nnz(L_R1) nR flops)."""
        return leverages_from_inverse(self.layout, self.L11[:, 0, 0], lams, self._sinv_y_bsb)

    def _sinv_y_bsb(self):
        """(S^-1, Y = L_R1'S^-1, b_j'S^-1 b_j) with S = L_RR L_RR'."""
        Sinv, info = lapack.dpotri(self.LRR, lower=1)
        if info != 0:
            raise linalg.LinAlgError("singular factor")
        Sinv = np.tril(Sinv) + np.tril(Sinv, -1).T
        P = self.LR1.T.tocsr()
        Y = np.asarray(P @ Sinv)
        return Sinv, Y, np.asarray(P.multiply(Y).sum(axis=1)).ravel()

    def dense_inverse(self):
        """(Lambda'Z'WZ Lambda + I)^{-1} as a dense array (engine order), from the blocked factor (small models)."""
        return inverse_from_blocks(self.layout, self.L11, self.LR1.toarray() if self.layout.nR else None, self.LRR)

    def inverse_diag_blocks(self, chunk=2000):
        """Per term (engine order): (n_levels, q, q) diagonal blocks of (Lambda'Z'WZ Lambda + I)^{-1}.

        With S = L_RR L_RR': the R blocks are S^-1's; the first term's block j is
        L11_j^-T (I + B_j' S^-1 B_j) L11_j^-1, B_j = L_R1's columns of level j (sparse: the products B' S^-1
        cost nnz(L_R1) nR, not nR^2 n1)."""
        lay = self.layout
        q1, nR, nl1 = lay.q[0], lay.nR, lay.n_levels[0]
        out = []
        Li1 = self.L11inv  # (L11_j)^{-1}
        if nR and all(q == 1 for q in lay.q):
            return self._inverse_diag_scalar(chunk)
        if nR:
            Sinv, info = lapack.dpotri(self.LRR, lower=1)
            if info != 0:
                raise linalg.LinAlgError("singular factor")
            Sinv = np.tril(Sinv) + np.tril(Sinv, -1).T
            P = self.LR1.T.tocsr()  # (n1, nR): row j*q1 + a is column a of B_j
            G = np.zeros((nl1, q1, q1))
            for start in range(0, nl1, chunk):
                stop = min(nl1, start + chunk)
                rows = slice(start * q1, stop * q1)
                Pc = P[rows]
                Y = np.asarray(Pc @ Sinv)  # (rows, nR) = B' S^-1 on this chunk
                for a in range(q1):
                    for b in range(q1):
                        ra = np.arange(stop - start) * q1 + a
                        rb = np.arange(stop - start) * q1 + b
                        G[start:stop, a, b] = np.asarray(Pc[ra].multiply(Y[rb]).sum(axis=1)).ravel()
            G += np.eye(q1)
        else:
            G = np.broadcast_to(np.eye(q1), (nl1, q1, q1))
        out.append(np.swapaxes(Li1, 1, 2) @ G @ Li1)
        return out + (rest_blocks_of(lay, Sinv) if len(lay.terms) > 1 else [])

    def _inverse_diag_scalar(self, chunk):
        """`inverse_diag_blocks` for scalar terms from L_RR^{-1} alone (half dpotri's flops, no symmetrised copy):
        diag(S^-1) = column sums of squares of L_RR^-1, and b_j'S^-1 b_j = |L_RR^-1 b_j|^2."""
        lay = self.layout
        pairs = getattr(self, "pairs", None)
        if pairs is not None:  # S^-1 (its lower triangle) and one gather: b_j'S^-1 b_j = t1_j^2 a_j' Lam_R S^-1 Lam_R a_j
            parts = getattr(self, "sinv_parts", None)  # the Gaussian gradient's, at this factor
            if parts is None:
                Sinv, info = lapack.dpotri(self.LRR, lower=1)
                if info != 0:
                    raise linalg.LinAlgError("singular factor")
                parts = (np.diagonal(Sinv).copy(), pairs.quad(scale_rest_blocks(Sinv, lay, self.thetas)))
            dS, q = parts
            bSb = self.t1 ** 2 * q
            return _scalar_inverse_blocks(lay, self.L11[:, 0, 0], bSb, dS)
        Linv, info = lapack.dtrtri(self.LRR, lower=1)
        if info != 0:
            raise linalg.LinAlgError("singular factor")
        Linv = np.tril(Linv)  # dtrtri leaves the other triangle as it found it
        dS = np.einsum("ij,ij->j", Linv, Linv)
        LinvT = np.ascontiguousarray(Linv.T)
        del Linv
        P = self.LR1.T.tocsr()  # (n1, nR): row j is b_j'
        nl1 = lay.n_levels[0]
        bSb = np.empty(nl1)
        for start in range(0, nl1, chunk):
            stop = min(nl1, start + chunk)
            Y = np.asarray(P[start:stop] @ LinvT)  # rows b_j' L^-T
            bSb[start:stop] = np.einsum("ij,ij->i", Y, Y)
        return _scalar_inverse_blocks(lay, self.L11[:, 0, 0], bSb, dS)


def _scalar_inverse_blocks(lay, d1, bSb, dS):
    """Per term the (n_levels, 1, 1) diagonal of H^-1 for scalar terms: (1 + b_j'S^-1 b_j) / d_j^2 for the first
    term's levels, diag(S^-1) for the others'."""
    out = [((1.0 + bSb) / (d1 * d1))[:, None, None]]
    for pos in range(1, len(lay.terms)):
        lo, hi = lay.offsets[pos] - lay.n1, lay.offsets[pos + 1] - lay.n1
        out.append(dS[lo:hi][:, None, None])
    return out


def leverages_from_inverse(lay, d1, lams, inverse_parts):
    """(s, traces) of `Factor.row_leverages` (scalar terms) from d = diag(L11) and `inverse_parts()` = (S^-1,
    Y = L_R1'S^-1, bSb_j = b_j'S^-1 b_j), called only when there are terms after the first: with
    c_i = lambda_1 z_1i / d_j, s_i = c_i^2 (1 + bSb_j) + e_R'S^-1 e_R - 2 c_i e_R'S^-1 b_j;
    tr(H^-1 P_1) = sum_j (1 + bSb_j) / d_j^2 and tr(H^-1 P_k) = the trace of S^-1's block of term k."""
    n1, j1 = lay.n1, lay.codes[0]
    zl = [lay.Z[pos][:, 0] * float(lams[pos][0, 0]) for pos in range(len(lams))]
    c = zl[0] / d1[j1]
    if not lay.nR:
        return c * c, np.array([float(np.sum(1.0 / d1 ** 2))])
    Sinv, Y, bSb = inverse_parts()
    s = c * c * (1.0 + bSb[j1])
    rows = [(lay.offsets[pos] - n1) + lay.codes[pos] for pos in range(1, len(zl))]
    for a, ra in enumerate(rows):
        za = zl[a + 1]
        s -= 2.0 * c * za * Y[j1, ra]
        for b, rb in enumerate(rows):
            s += za * zl[b + 1] * Sinv[ra, rb]
    dS = np.diag(Sinv)
    traces = [float(np.sum((1.0 + bSb) / d1 ** 2))]
    traces += [float(np.sum(dS[lay.offsets[pos] - n1:lay.offsets[pos + 1] - n1])) for pos in range(1, len(zl))]
    return s, np.array(traces)


def inverse_from_blocks(lay, L11, LR1, LRR):
    """H^-1 (dense, engine order) from the blocks of its Cholesky factor: L11 (n_levels, q1, q1), the dense L_R1
    and L_RR."""
    q1, n1, nR = lay.q[0], lay.n1, lay.nR
    L = np.zeros((n1 + nR, n1 + nR))
    idx = np.arange(n1).reshape(-1, q1)
    L[idx[:, :, None], idx[:, None, :]] = L11
    if nR:
        L[n1:, :n1] = LR1
        L[n1:, n1:] = LRR
    inv, info = lapack.dpotri(L, lower=1)
    if info != 0:
        raise linalg.LinAlgError("singular factor")
    return np.tril(inv) + np.tril(inv, -1).T


def rest_blocks_of(lay, Sinv):
    """Per term after the first: its (n_levels, q, q) diagonal blocks of S^-1 (engine order)."""
    out = []
    for pos in range(1, len(lay.terms)):
        lo = lay.offsets[pos] - lay.n1
        q, nl = lay.q[pos], lay.n_levels[pos]
        idx = lo + np.arange(nl)[:, None] * q + np.arange(q)[None, :]
        out.append(Sinv[idx[:, :, None], idx[:, None, :]])
    return out
