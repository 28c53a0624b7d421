"""The blocked Cholesky factor of `_pls` with its cross block dense: small models and one-term models.

`_pls.Factor` keeps L_R1 (the other terms' rows against the first term's columns) sparse, right when
the terms have thousands of levels.  With few random effects after the first term (VerbAgg's 24
items against 316 subjects) the sparse machinery's fixed costs dominate each Newton step of the
modes: here L_R1 is a dense nR x n1 array, the first term's q x q blocks are factored by a column loop
vectorised over the levels (no per-block LAPACK calls), and the cross-products of a weight vector come
from bincounts on index arrays found once (`DensePlan`).  One term (nR = 0) is the block-diagonal case:
its modes are the levels' independent q x q Newton problems, solved in batch.  The factor offers the
interface the GLMM objective uses (`solve`, `logdet_Z`, `row_leverages`, `inverse_diag_blocks`,
`dense_inverse`, `L11`, `LFF`) with the same numbers as `_pls.Factor`.
"""
import numpy as np
from scipy import linalg
from scipy.linalg import lapack

from ._stacks import batched_cholesky, lower_inverse_t
from ._pls import inverse_from_blocks, leverages_from_inverse, rest_blocks_of

#: dense L_R1 when nR^2 n1 (the flops of L_R1 L_R1') and nR n1 (its entries) stay below these
DENSE_FLOPS = 3e7
DENSE_ENTRIES = 4e6


def _chol(S):
    """Lower Cholesky factor by LAPACK directly (scipy's wrapper costs more than a small factor itself)."""
    L, info = lapack.dpotrf(S, lower=1, clean=1)
    if info != 0:
        raise linalg.LinAlgError("matrix not positive definite")
    return L


def _trsolve(L, b, trans=0):
    """L x = b (trans=0) or L' x = b (trans=1) for lower-triangular L, by LAPACK directly."""
    x, info = lapack.dtrtrs(L, b, lower=1, trans=trans)
    if info != 0:
        raise linalg.LinAlgError("singular triangular factor")
    return x


def use_dense(layout) -> bool:
    """True when the cross block is small enough to be dense (always for one term)."""
    nR, n1 = layout.nR, layout.n1
    return nR == 0 or (nR * nR * n1 <= DENSE_FLOPS and nR * n1 <= DENSE_ENTRIES)


def _unless_ones(z):
    """z, or None when every entry is 1 (random intercepts: the weights need no product)."""
    return None if np.all(z == 1.0) else z


class DensePlan:
    """Index arrays turning a weight vector into Z'WZ's blocks: A11 (n_levels_1, q1, q1) by level, AR1 dense
    (nR x n1) and ARR dense (nR x nR), each a bincount (the pattern does not depend on the weights)."""

    def __init__(self, layout, ops=None):
        self.layout = layout
        self.ops = RowOps(layout) if ops is None else ops
        n1, nR, K = layout.n1, layout.nR, len(layout.terms)
        q1, c1, Z1 = layout.q[0], layout.codes[0], layout.Z[0]
        rows_of = {}
        for pos in range(1, K):
            for a in range(layout.q[pos]):
                rows_of[pos, a] = (layout.offsets[pos] - n1) + layout.codes[pos] * layout.q[pos] + a
        keys, zz, flat, zr = [], [], [], []
        for pos in range(1, K):
            for a in range(layout.q[pos]):
                for b in range(q1):
                    keys.append(rows_of[pos, a] * n1 + c1 * q1 + b)
                    zz.append(layout.Z[pos][:, a] * Z1[:, b])
                for pos2 in range(1, K):
                    for b in range(layout.q[pos2]):
                        flat.append(rows_of[pos, a] * nR + rows_of[pos2, b])
                        zr.append(layout.Z[pos][:, a] * layout.Z[pos2][:, b])
        self.r1 = (np.concatenate(keys), _unless_ones(np.concatenate(zz)), len(keys)) if keys else None
        self.rr = (np.concatenate(flat), _unless_ones(np.concatenate(zr)), len(flat)) if flat else None
        # products of the first term's z columns, for A11 (upper triangle)
        self.z11 = {(a, b): _unless_ones(Z1[:, a] * Z1[:, b]) for a in range(q1) for b in range(a, q1)}

    def crossprods(self, w, F=None):
        """(A11, AR1, ARR, AF1, AFR, AFF) of the weights `w` (n,) and extra columns F (n, m) or None."""
        lay = self.layout
        q1, nl1, n1, nR = lay.q[0], lay.n_levels[0], lay.n1, lay.nR
        if self.ops.pair is not None:  # two crossed intercepts: every block from the table of level pairs
            AR1 = self.ops.pair_table(w)
            A11 = AR1.sum(axis=0)[:, None, None]
            ARR = np.diag(AR1.sum(axis=1))
            return (A11, AR1, ARR) + self._f_blocks(w, F)
        A11 = np.empty((nl1, q1, q1))
        for (a, b), zab in self.z11.items():
            v = self.ops.level_sums(0, w if zab is None else w * zab)
            A11[:, a, b] = v
            A11[:, b, a] = v
        AR1 = ARR = None
        if self.r1 is not None:
            keys, zz, reps = self.r1
            ww = np.tile(w, reps) if reps > 1 else w
            AR1 = np.bincount(keys, weights=ww if zz is None else ww * zz, minlength=nR * n1).reshape(nR, n1)
            flat, zr, reps = self.rr
            ww = np.tile(w, reps) if reps > 1 else w
            ARR = np.bincount(flat, weights=ww if zr is None else ww * zr, minlength=nR * nR).reshape(nR, nR)
        return (A11, AR1, ARR) + self._f_blocks(w, F)

    def _f_blocks(self, w, F):
        """(Z_1'WF', Z_R'WF', F'WF) transposed as `_pls.CrossProducts` holds them, or Nones without F."""
        if F is None:
            return None, None, None
        lay = self.layout
        WF = F * w[:, None]
        AF1 = np.asarray(lay.Zt[0] @ WF).T
        AFR = (np.concatenate([np.asarray(lay.Zt[pos] @ WF) for pos in range(1, len(lay.terms))]).T
               if lay.nR else np.zeros((F.shape[1], 0)))
        return AF1, AFR, F.T @ WF


def _rest_terms(layout):
    """Term position (minus 1) of each random effect after the first term's, cached on the layout."""
    idx = getattr(layout, "_rest_terms", None)
    if idx is None:
        idx = np.repeat(np.arange(len(layout.terms) - 1), [q * nl for q, nl in zip(layout.q[1:], layout.n_levels[1:])])
        layout._rest_terms = idx
    return idx


def _lambda_rest_dense(layout, lams):
    """Lambda of the terms after the first as a dense block-diagonal (nR x nR) array."""
    nR, n1 = layout.nR, layout.n1
    L = np.zeros((nR, nR))
    for pos in range(1, len(layout.terms)):
        q, nl, lo = layout.q[pos], layout.n_levels[pos], layout.offsets[pos] - n1
        idx = lo + np.arange(nl)[:, None] * q + np.arange(q)[None, :]
        L[idx[:, :, None], idx[:, None, :]] = lams[pos]
    return L


class DenseFactor:
    """The blocked lower Cholesky factor of [[Lambda'Z'WZ Lambda + I, Lambda'Z'WF], [., F'WF]] with L_R1 dense
    (`_pls.Factor`'s attributes and methods; LR1 an (nR, n1) array).  Raises `linalg.LinAlgError` when the
    random-effects part is not positive definite."""

    def __init__(self, layout, cps, lams):
        A11, AR1, ARR, AF1, AFR, AFF = cps
        self.layout = layout
        self.A11 = A11  # Z_1'WZ_1 by level: the analytic theta gradient of one term reuses it
        q1, nR = layout.q[0], layout.nR
        lam1 = lams[0]
        if q1 == 1:
            v = lam1[0, 0] ** 2 * A11[:, 0, 0] + 1.0
            if not np.all(v > 0):
                raise linalg.LinAlgError("first block not positive definite")
            d = np.sqrt(v)
            self.L11 = d[:, None, None]
            self.L11inv = (1.0 / d)[:, None, None]
            T1 = (lam1[0, 0] / d)[:, None, None]
            logdet = 2.0 * float(np.sum(np.log(d)))
        else:
            M11 = lam1.T @ A11 @ lam1
            M11 += np.eye(q1)
            self.L11 = batched_cholesky(M11)
            L11inv_t = lower_inverse_t(self.L11)
            self.L11inv = np.swapaxes(L11inv_t, 1, 2)
            T1 = lam1 @ L11inv_t  # Lambda_1 L11_j^-T
            logdet = 2.0 * float(np.sum(np.log(np.diagonal(self.L11, axis1=1, axis2=2))))
        self.T1 = T1
        scalar = all(q == 1 for q in layout.q)
        if nR:
            if scalar:
                lamR = np.array([lam[0, 0] for lam in lams[1:]]).take(_rest_terms(layout))
                self.lamR = lamR
                LR1 = AR1 * T1[:, 0, 0][None, :]
                LR1 *= lamR[:, None]
                S = ARR * lamR[:, None]
                S *= lamR[None, :]
            else:
                LamR = _lambda_rest_dense(layout, lams)
                self.LamR = LamR
                LR1 = LamR.T @ self._times_T1(AR1)
                S = LamR.T @ ARR @ LamR
            S -= LR1 @ LR1.T
            S[np.diag_indices(nR)] += 1.0
            self.LR1 = LR1
            self.LRR = _chol(S)
            logdet += 2.0 * float(np.sum(np.log(np.diag(self.LRR))))
        else:
            self.LR1 = np.zeros((0, layout.n1))
            self.LRR = np.zeros((0, 0))
        self.logdet_Z = logdet
        m = 0 if AFF is None else AFF.shape[0]
        self.m = m
        if m:
            self.LF1 = self._times_T1(AF1)
            if nR:
                rhsR = (AFR * self.lamR[None, :]).T if scalar else self.LamR.T @ AFR.T
                rhs = rhsR - self.LR1 @ self.LF1.T
                self.LFR = _trsolve(self.LRR, rhs).T
            else:
                self.LFR = np.zeros((m, 0))
            SFF = AFF - self.LF1 @ self.LF1.T - self.LFR @ self.LFR.T
            try:
                self.LFF = _chol(SFF)
            except linalg.LinAlgError:
                self.LFF = None
            self.SFF = SFF
        else:
            self.LF1, self.LFR, self.LFF = np.zeros((0, layout.n1)), np.zeros((0, nR)), np.zeros((0, 0))

    def _times_T1(self, A):
        """A blockdiag(T1) for an (r, n1) array A (the first term's columns level-major)."""
        q1 = self.layout.q[0]
        if q1 == 1:
            return A * self.T1[:, 0, 0][None, :]
        r = A.shape[0]
        return np.einsum("rja,jab->rjb", A.reshape(r, -1, q1), self.T1).reshape(r, -1)

    # ---------------------------------------------------------------- triangular solves
    def _l11_solve(self, x1, transpose=False):
        q1 = self.layout.q[0]
        Li = self.L11inv
        if q1 == 1:
            return x1 * Li[:, 0, 0]
        X = x1.reshape(-1, q1)
        M = np.swapaxes(Li, 1, 2) if transpose else Li
        return np.einsum("jab,jb->ja", M, X).ravel()

    def forward(self, g1, gR, gF=None):
        """Solve L y = g blockwise; returns (y1, yR, yF)."""
        y1 = self._l11_solve(g1)
        yR = gR
        if self.layout.nR:
            yR = _trsolve(self.LRR, gR - self.LR1 @ y1)
        yF = None
        if gF is not None and self.m:
            yF = _trsolve(self.LFF, gF - self.LF1 @ y1 - self.LFR @ yR)
        return y1, yR, yF

    def backward(self, y1, yR, xF=None):
        """Solve L_Z' x = y - (L_F.)' xF for the random-effects part, given the F part's solution xF."""
        if xF is not None and len(xF):
            y1 = y1 - self.LF1.T @ xF
            yR = yR - self.LFR.T @ xF
        xR = yR
        if self.layout.nR:
            xR = _trsolve(self.LRR, yR, trans=1)
            y1 = y1 - self.LR1.T @ xR
        return self._l11_solve(y1, transpose=True), xR

    def solve(self, g):
        """x = (L L')^{-1} g for the whole system (random effects, then the F columns)."""
        n1, nR = self.layout.n1, self.layout.nR
        y1, yR, yF = self.forward(g[:n1], g[n1:n1 + nR], g[n1 + nR:] if self.m else None)
        xF = None
        if self.m:
            xF = _trsolve(self.LFF, yF, trans=1)
        x1, xR = self.backward(y1, yR, xF)
        return np.concatenate([x1, xR] + ([xF] if xF is not None else []))

    # ---------------------------------------------------------------- inverse pieces
    def _sinv_and_y(self):
        """(S^-1, Y = L_R1' S^-1 (n1, nR)) with S = L_RR L_RR'."""
        Sinv, info = lapack.dpotri(self.LRR, lower=1)
        if info != 0:
            raise linalg.LinAlgError("singular factor")
        Sinv = np.tril(Sinv) + np.tril(Sinv, -1).T
        return Sinv, self.LR1.T @ Sinv

    def row_leverages(self, lams):
        """(s, traces) as `_pls.Factor.row_leverages`: s_i = z_i'Lambda H^-1 Lambda'z_i per row, tr(H^-1 P_k) per
        term (engine order); scalar terms only."""
        return leverages_from_inverse(self.layout, self.L11[:, 0, 0], lams, self._sinv_y_bsb)

    def _sinv_y_bsb(self):
        Sinv, Y = self._sinv_and_y()
        return Sinv, Y, np.einsum("rj,jr->j", self.LR1, Y)

    def inverse_diag_blocks(self, chunk=None):
        """Per term (engine order): (n_levels, q, q) diagonal blocks of (Lambda'Z'WZ Lambda + I)^{-1}: the first
        term's L11_j^-T (I + B_j'S^-1 B_j) L11_j^-1 (B_j = L_R1's columns of level j), the others' S^-1's.
        (`chunk` is `_pls.Factor`'s memory bound; the dense block is small, so it is unused here.)"""
        lay = self.layout
        q1, nR, nl1 = lay.q[0], lay.nR, lay.n_levels[0]
        Li1 = self.L11inv
        out = []
        if nR:
            Sinv, Y = self._sinv_and_y()
            B = self.LR1.reshape(nR, nl1, q1)
            G = np.einsum("rja,jbr->jab", B, Y.reshape(nl1, q1, nR)) + np.eye(q1)
        else:
            G = None
        if q1 == 1:
            g = 1.0 if G is None else G[:, 0, 0]
            out.append((g * Li1[:, 0, 0] ** 2)[:, None, None])
        else:
            LiT = np.swapaxes(Li1, 1, 2)
            out.append(LiT @ Li1 if G is None else LiT @ G @ Li1)
        return out + (rest_blocks_of(lay, Sinv) if len(lay.terms) > 1 else [])

    def dense_inverse(self):
        """(Lambda'Z'WZ Lambda + I)^{-1} as a dense array (engine order)."""
        return inverse_from_blocks(self.layout, self.L11, self.LR1, self.LRR)


# -------------------------------------------------------------------- row products without sparse matrices
class RowOps:
    """Z b, Z'r and per-level sums of a `Layout` without sparse matrices: bincounts and gathers by level code,
    or, for one term whose rows are sorted by level (every level present), contiguous segment sums
    (`np.add.reduceat`) and `np.repeat` (several times faster at 1e5 rows)."""

    def __init__(self, layout):
        self.layout = layout
        codes = layout.codes[0]
        self.segments = None
        if len(layout.terms) == 1 and codes.size and np.all(codes[1:] >= codes[:-1]):
            counts = np.bincount(codes, minlength=layout.n_levels[0])
            if np.all(counts > 0):
                self.segments = (counts, np.concatenate([[0], np.cumsum(counts)[:-1]]))
        # z columns contiguous (column-major copies) for the per-column products; None for a column of ones
        self.Zc = [[None if np.all(z == 1.0) else z for z in np.ascontiguousarray(Z.T)] for Z in layout.Z]
        # two crossed random intercepts: one scatter into the (level 2, level 1) table gives both terms' sums
        self.pair = None
        if len(layout.terms) == 2 and all(layout.intercept_only):
            self.pair = layout.codes[1] * layout.n_levels[0] + layout.codes[0]

    def pair_table(self, r):
        """(n_levels_2, n_levels_1) sums of r by the two intercepts' level pairs (``pair`` set)."""
        nl1, nl2 = self.layout.n_levels[0], self.layout.n_levels[1]
        return np.bincount(self.pair, weights=r, minlength=nl1 * nl2).reshape(nl2, nl1)

    def level_sums(self, pos, r):
        """(n_levels,) sums of the row vector r by term `pos`'s levels."""
        if self.segments is not None:
            return np.add.reduceat(r, self.segments[1])
        return np.bincount(self.layout.codes[pos], weights=r, minlength=self.layout.n_levels[pos])

    def to_rows(self, pos, v):
        """(n,) the per-level values v of term `pos` at each row."""
        if self.segments is not None:
            return np.repeat(v, self.segments[0])
        return v.take(self.layout.codes[pos])

    def times_Z(self, b):
        """Z b (n,) for an internal effects vector b (`Layout.times_Z`)."""
        lay = self.layout
        out = None
        for pos in range(len(lay.terms)):
            q = lay.q[pos]
            bk = b[lay.offsets[pos]:lay.offsets[pos + 1]]
            if lay.intercept_only[pos]:
                v = self.to_rows(pos, bk)
            else:
                bk = bk.reshape(-1, q)
                v = None
                for r, z in enumerate(self.Zc[pos]):
                    g = self.to_rows(pos, np.ascontiguousarray(bk[:, r]))
                    if z is not None:
                        g *= z
                    v = g if v is None else v + g
            out = v if out is None else out + v
        return out

    def Zt_times(self, r):
        """Z' r (internal order) for a row vector r (`Layout.Zt_times`)."""
        lay = self.layout
        if self.pair is not None:
            T = self.pair_table(r)
            return np.concatenate([T.sum(axis=0), T.sum(axis=1)])
        parts = []
        for pos in range(len(lay.terms)):
            if lay.intercept_only[pos]:
                parts.append(self.level_sums(pos, r))
            else:
                parts.append(np.stack([self.level_sums(pos, r if z is None else r * z) for z in self.Zc[pos]],
                                      axis=1).ravel())
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def quadratic_rows(self, M):
        """z_i' M_j z_i per row for a stack M (n_levels, q, q) of symmetric matrices of the first term (its level
        j at row i)."""
        lay = self.layout
        q, Zc = lay.q[0], self.Zc[0]
        out = None
        for a in range(q):
            for b in range(a, q):
                coef = M[:, a, b] * (1.0 if a == b else 2.0)
                v = self.to_rows(0, np.ascontiguousarray(coef))
                if Zc[a] is not None:
                    v *= Zc[a]
                if Zc[b] is not None:
                    v *= Zc[b]
                out = v if out is None else out + v
        return out
