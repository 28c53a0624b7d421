"""Sufficient statistics of the Gaussian block profile (`_lmm_blocks`): A'A for A = [X y] and the per-group
cross-products Z_j'Z_j, Z_j'A_j, from rows sorted by group (`vector_stats`) or, in one pass over the rows in
their own order with the standardisation folded in, from the raw design (`scaled_stats`)."""
from dataclasses import dataclass

import numpy as np


def cross_products(Z, A, starts):
    """Per-group Z_j'Z_j (G, q, q) and Z_j'A_j (G, q, k) for rows sorted by group: one product column at a time
    in a reused buffer (no (q, q + k, n) temporary to page in), the lower triangle of Z_j'Z_j mirrored."""
    n, q = Z.shape
    k = A.shape[1]
    Zt, At = np.ascontiguousarray(Z.T), np.ascontiguousarray(A.T)  # contiguous rows for the products
    ZtZ, ZtA = np.empty((len(starts), q, q)), np.empty((len(starts), q, k))
    buf = np.empty(n)
    for a in range(q):
        for b in range(a + 1):
            ZtZ[:, a, b] = ZtZ[:, b, a] = np.add.reduceat(np.multiply(Zt[a], Zt[b], out=buf), starts)
        for c in range(k):
            ZtA[:, a, c] = np.add.reduceat(np.multiply(Zt[a], At[c], out=buf), starts)
    return ZtZ, ZtA


@dataclass
class VectorStats:
    """Sufficient statistics of the Gaussian model: A'A for A = [X y] and the per-group cross-products."""

    AtA: np.ndarray  # (p+1, p+1)
    ZtZ: np.ndarray  # (G, q, q)
    ZtA: np.ndarray  # (G, q, p+1)
    n: int
    p: int
    #: form M = A'A - sum_j B_j'B_j in extended precision: columns of A whose mean exceeds their SD (data not
    #: centred, as the intervals' deviance on the data's own scale) make it cancel to ~1e-13, whose noise finite
    #: second differences magnify; the fit's centred, scaled data do not need it
    precise: bool = False


def vector_stats(X, y, Z, starts):
    """VectorStats of rows sorted by group."""
    A = np.column_stack([X, y])
    ZtZ, ZtA = cross_products(Z, A, starts)
    AtA = A.T @ A
    n = A.shape[0]
    # the moments from A'A and one column sum (two more passes over A bought nothing): only a flag is read
    # from them, and where the variance cancels against the squared mean the column counts as constant
    mean = (np.ones(n) @ A) / n  # (a BLAS product: numpy's column sums of a C-ordered A cost ~5x more)
    return VectorStats(AtA, ZtZ, ZtA, n, X.shape[1], _needs_precision(AtA, mean, n))


def _same_column(u, v):
    """u == v everywhere: the same memory (a z column that is a view of X's), or equal values (the first rows
    first: columns that differ usually show it there)."""
    if u.shape == v.shape and u.strides == v.strides and \
            u.__array_interface__["data"][0] == v.__array_interface__["data"][0]:
        return True
    return bool(np.array_equal(u[:64], v[:64]) and np.array_equal(u, v))


def scaled_stats(X, x_center, x_scale, y, Z, z_scale, codes, counts, intercept=-1, response="the response"):
    """(VectorStats, y_center, y_scale) of the standardised data X_s = (X - x_center) / x_scale,
    y_s = (y - y_center) / y_scale and Z_s = Z / z_scale, rows in any order (``codes``: each row's group,
    ``counts``: rows per group).  y is centred on its mean where X has an ``intercept`` column (else y_center = 0),
    and y_scale is the root mean square of y - y_center; ValueError when it is 0 (nothing to fit).

    One pass over the rows in their own order, no sort and no gathered copy: every column of A_s = [X_s y_s] and Z_s
    is a linear combination of a few base columns (1; each column of X and y as it is, or centred and scaled where
    its mean exceeds its SD, so that no sum below cancels by more than a factor ~4; the z columns that are not
    columns of X), so Z_j'Z_j, Z_j'A_j and A'A follow from the per-group sums of products of base columns, each
    one weighted bincount (a sum with the column 1 needs no product, with 1 twice none at all): a random
    intercept and the slope on an X column cost no product of their own.  The same sums as `vector_stats` of
    the sorted standardised rows, to rounding.
    """
    n, p = X.shape
    q, G = Z.shape[1], len(counts)
    in_x = [next((j for j in range(p) if _same_column(Z[:, k], X[:, j])), -1) for k in range(q)]
    # y's centre and scale: from its raw moments where the mean does not dominate, else two passes
    y_center = float(np.mean(y)) if intercept >= 0 else 0.0
    yy = float(y @ y)
    m2 = yy / n
    y_dev = None
    if y_center * y_center <= 0.5 * m2:
        y_scale = float(np.sqrt(max(m2 - y_center * y_center, 0.0)))
    else:
        y_dev = y - y_center
        y_scale = float(np.sqrt(y_dev @ y_dev / n))
    if not y_scale > 0:
        raise ValueError(f"the response {response!r} does not vary; there is nothing to fit")
    center = np.append(np.asarray(x_center, float), y_center)
    scale = np.append(np.asarray(x_scale, float), y_scale)
    base = [None]  # base column 0 is 1 (not stored)
    n_max = 1 + (p + 1) + q
    acoef = np.zeros((p + 1, n_max))  # A_s column j = sum_i acoef[j, i] base_i
    where = {}  # X column -> (its base column, scale, centre of that base column)
    for j in range(p + 1):
        if j == intercept:
            acoef[j, 0] = 1.0  # X_s's intercept column is exactly 1
            continue
        col = X[:, j] if j < p else y
        if abs(center[j]) <= scale[j]:  # raw column: x_s = x / s - c / s
            acoef[j, len(base)], acoef[j, 0] = 1.0 / scale[j], -center[j] / scale[j]
            where[j] = (len(base), 1.0, 0.0)
            base.append(col)
        else:  # a centred, scaled copy
            acoef[j, len(base)] = 1.0
            where[j] = (len(base), scale[j], center[j])
            base.append((y_dev if j == p and y_dev is not None else col - center[j]) / scale[j])
    zcoef = np.zeros((q, n_max))
    for k, j in enumerate(in_x):
        if j == intercept and j >= 0:
            zcoef[k, 0] = x_scale[j] / z_scale[k]  # X_s's intercept column times its scale
        elif j >= 0:  # z = x = a base column times its scale plus its centre
            i, s, c = where[j]
            zcoef[k, i], zcoef[k, 0] = s / z_scale[k], c / z_scale[k]
        else:
            zcoef[k, len(base)] = 1.0 / z_scale[k]
            base.append(np.ascontiguousarray(Z[:, k]))
    nb = len(base)
    acoef, zcoef = acoef[:, :nb], zcoef[:, :nb]
    gram = np.zeros((G, nb, nb))  # per-group sums of products of base columns, the pairs the blocks use
    z_used = np.flatnonzero(np.any(zcoef != 0, axis=0)).tolist()
    used = set(z_used).union(np.flatnonzero(np.any(acoef != 0, axis=0)).tolist())
    pairs = {(min(i, j), max(i, j)) for i in z_used for j in used}
    scratch = np.empty(n) if any(j > 0 for _, j in pairs) else None
    for i, j in sorted(pairs):
        if i == 0 and j == 0:
            sums = counts
        elif i == 0:
            weights = base[j]
            if not weights.flags.writeable:  # (bincount would copy read-only weights, pandas' columns, to new memory)
                np.copyto(scratch, weights)
                weights = scratch
            sums = np.bincount(codes, weights=weights, minlength=G)
        else:
            sums = np.bincount(codes, weights=np.multiply(base[i], base[j], out=scratch), minlength=G)
        gram[:, i, j] = gram[:, j, i] = sums
    flat = gram.reshape(G, nb * nb)
    ZtZ = (flat @ np.einsum("ai,bj->ijab", zcoef, zcoef).reshape(-1, q * q)).reshape(G, q, q)
    ZtA = (flat @ np.einsum("ai,cj->ijac", zcoef, acoef).reshape(-1, q * (p + 1))).reshape(G, q, p + 1)
    # A_s'A_s and the column sums from the base columns' inner products (BLAS dot products)
    inner = np.empty((nb, nb))
    inner[0, 0] = n
    for i in range(1, nb):  # sums over rows: of the group sums where made, else one pass
        for j in range(i + 1):
            if (j, i) in pairs:
                inner[i, j] = inner[j, i] = gram[:, j, i].sum()
            elif j == 0:
                inner[i, 0] = inner[0, i] = base[i].sum()
            else:
                inner[i, j] = inner[j, i] = yy if base[i] is y and base[j] is y else base[i] @ base[j]
    AtA = acoef @ inner @ acoef.T
    stats = VectorStats(AtA, ZtZ, ZtA, n, p, _needs_precision(AtA, acoef @ inner[:, 0] / n, n))
    return stats, y_center, y_scale


def _needs_precision(AtA, mean, n):
    """`VectorStats.precise` from A'A and the column means (where the variance cancels against the squared mean
    the column counts as constant: the intercept does not count)."""
    var = np.diag(AtA) / n - mean * mean
    varying = var > 1e-12 * np.maximum(mean * mean, 1e-300)
    return bool(np.any(mean[varying] ** 2 > var[varying]))
