"""The bounded search's moves at the boundary of the covariance parameters (`_mixed_lmm.minimize_bounded`):
a coordinate left just above a zero bound put on it, and the probes that leave a zero diagonal of a q x q
relative factor Lambda_k where moving that coordinate alone finds nothing (lme4's parametrisation)."""
import numpy as np

#: a coordinate this close above a lower bound of 0 is tried at the bound (a variance L-BFGS-B left at ~1e-7)
SNAP_BELOW = 1e-3


def snap_to_bounds(obj, x, f, lb):
    """x with each coordinate within `SNAP_BELOW` of a zero lower bound put on it where that is no worse (to
    rounding): the search ends at exactly 0 where the bound is the optimum (lme4's singular fits), not at a
    variance of 5e-8 that no flag can tell from a small one."""
    near = np.flatnonzero((lb == 0.0) & (x > 0.0) & (x < SNAP_BELOW))
    for i in near[np.argsort(x[near])]:
        xt = x.copy()
        xt[i] = 0.0
        ft = obj(xt)
        if ft <= f + 1e-10 * (1.0 + abs(f)):
            x, f = xt, min(f, ft)
    return x, f


def ridge_probes(structure, offset=0):
    """Probes for a search that ends with a zero diagonal entry theta_jj of a q x q factor Lambda_k, as
    ``probes(x, near=True) -> list of points`` for `minimize_bounded` (x holds the covariance vector from
    ``offset``; ``near=False``: every column and row, for a search that ended at a saddle).

    Column j: at theta_jj = 0 the covariance depends on column j of Lambda_k only through l_j l_j' (l_j its
    entries below the diagonal), so -l_j gives the same likelihood; theta_jj's slope there is
    d f / d Sigma_k . (e_j l_j' + l_j e_j'), which flips sign with l_j.  A search held at theta_jj = 0 by a positive
    slope (moving theta_jj alone finds nothing) goes inside with the column negated and theta_jj = h > 0.
    Row j: the likelihood is even in theta_jj (a correlation at +-1), its slope 0; moving theta_jj alone changes
    the variance too, so the probes turn row j instead (its norm, the relative SD, kept; the correlation off 1).
    """
    cols = []
    start = offset
    for term in structure.terms:
        rows, pos_cols = term.theta_positions()
        if term.correlated and term.q > 1:
            for j in range(term.q):
                diag = start + int(np.flatnonzero((rows == j) & (pos_cols == j))[0])
                cols.append((diag, start + np.flatnonzero((pos_cols == j) & (rows > j)),
                             start + np.flatnonzero((rows == j) & (pos_cols < j))))
        start += term.n_theta

    def probes(x, near=True):
        out = []
        for diag, below, left in cols:
            norm = float(np.sqrt(np.sum(x[left] ** 2)))
            if near and x[diag] > 0.05 * max(norm, 1e-2):  # not near the bound (L-BFGS-B may stop inside it)
                continue
            if np.any(x[below] != 0.0):
                size = max(1e-3, float(np.sqrt(np.sum(x[below] ** 2))))
                for h in (1e-2, 1e-1):
                    xt = np.array(x, float)
                    xt[below] = -xt[below]
                    xt[diag] = h * size
                    out.append(xt)
            if norm > 0.0:
                for h in (0.1, 0.3, 0.6):
                    xt = np.array(x, float)
                    xt[left] *= np.sqrt(1.0 - h * h)
                    xt[diag] = h * norm
                    out.append(xt)
        return out

    return probes if cols else None
