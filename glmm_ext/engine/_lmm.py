"""Exact REML / ML for the Gaussian random-intercept model, profiled to one parameter.

Model: y = X beta + u_{g(i)} + e,  u_j ~ N(0, sigma^2 theta^2),  e ~ N(0, sigma^2).
With V_j = sigma^2 (I + theta^2 1 1'), the Woodbury identity gives, for any columns a, b,

    a' V^{-1} b * sigma^2 = W_ab + sum_j c_j S_aj S_bj,   c_j = 1 / (n_j (1 + n_j theta^2)),

where W is the within-group cross-product of [X y] and S_j the group sums.  One O(n p^2) pass
builds (W, S); every evaluation after that costs O(G p^2), or O(#sizes p^2) with the groups of one
size summed once (`LMMStats.by_size`).  beta and sigma^2 are profiled out and
theta >= 0 is found by a grid over log(theta) refined with bounded Brent, the boundary theta = 0
checked on its own, then polished by secant steps on the deviance's analytic slope.  No
approximation is involved.
"""
from dataclasses import dataclass, field

import numpy as np
from scipy import linalg, optimize

from ._segments import gram, group_starts, group_sums, to_rows

LOG_2PI = np.log(2.0 * np.pi)
#: relative SD theta below which a fit is reported singular (lme4's isSingular tolerance)
SINGULAR_TOL = 1e-4


@dataclass
class LMMStats:
    """Sufficient statistics of [X y]: within-group cross-products and group sums."""

    within: np.ndarray  # (p+1, p+1)
    sums: np.ndarray  # (G, p+1)
    counts: np.ndarray  # (G,)
    n: int
    p: int
    _by_size: tuple = field(default=None, init=False, repr=False, compare=False)

    def by_size(self):
        """(sizes u, groups of each size m, T_u = sum_{n_j = u} S_j S_j') or None: M(theta) depends on a group
        only through its size, so with few distinct sizes an evaluation costs O(#sizes p^2), not O(G p^2).
        None (evaluate group by group) when there are more than G / 8 sizes."""
        if self._by_size is None:
            u, inverse, m = np.unique(self.counts, return_inverse=True, return_counts=True)
            if len(u) > len(self.counts) // 8:
                self._by_size = ()
            else:
                S = self.sums[np.argsort(inverse, kind="stable")]
                T = np.add.reduceat(S[:, :, None] * S[:, None, :], group_starts(m), axis=0)
                self._by_size = (np.asarray(u, float), m.astype(float), T)
        return self._by_size or None

    def weighted_products(self, c):
        """S' diag(c(n_j)) S for c a function of the group size (a ufunc expression of an array)."""
        sizes = self.by_size()
        if sizes is None:
            return (self.sums * c(self.counts)[:, None]).T @ self.sums
        return np.tensordot(c(sizes[0]), sizes[2], axes=1)

    def size_sum(self, f):
        """sum_j f(n_j)."""
        sizes = self.by_size()
        return float(np.sum(f(self.counts))) if sizes is None else float(sizes[1] @ f(sizes[0]))


#: a column's within-group sum of squares computed as Z'Z - S'diag(1/n)S is kept when it is at least this share
#: of Z'Z (at most 2 bits lost to the subtraction); a column below it gets the exact two-pass deviations
ONE_PASS_SHARE = 0.25


def lmm_stats(X, y, starts, counts, weights=None, n_obs=None, codes=None):
    """W = sum_j (Z_j - mean_j)'(Z_j - mean_j) and S_j = Z_j' 1 for Z = [X y], rows sorted by group.

    With row weights w (var_weights times freq_weights, V_j = sigma^2 (W_j^-1 + theta^2 1 1')) the same
    identity holds with weighted sums S_j = Z_j' w_j, weighted means and within products, and the
    weight totals sum_j w in place of n_j; ``n_obs`` (the sum of the frequency weights) replaces n.
    X and y are used as given (not stacked into one n x (p+1) copy).  Unweighted, W is read off Z'Z
    where that loses nothing (`_within_unweighted`); weighted, from the within-group deviations.
    Unweighted rows in any order: ``codes`` (each row's group) in place of ``starts``.
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    n, p = X.shape
    counts = np.asarray(counts)
    sums = np.empty((len(counts), p + 1))
    if weights is None:
        segments = _Segments(starts, counts, codes)
        sums[:, :p] = segments.sums(X)
        sums[:, p] = segments.sums(y)
        totals = counts.astype(float)
        within = _within_unweighted(X, y, sums, segments)
        return LMMStats(within, sums, totals, n, p)
    if codes is not None:
        raise ValueError("weighted statistics read rows sorted by group (starts), not codes")
    weights = np.asarray(weights, dtype=float)
    sums[:, :p] = group_sums(X * weights[:, None], starts)
    sums[:, p] = group_sums(y * weights, starts)
    totals = group_sums(weights, starts)
    means = sums / totals[:, None]
    Xc = to_rows(means[:, :p], counts)  # then the within-group deviations, in place: no cancellation in W
    np.subtract(X, Xc, out=Xc)
    yc = to_rows(means[:, p], counts)
    np.subtract(y, yc, out=yc)
    wXc, wyc = Xc * weights[:, None], yc * weights
    within = np.empty((p + 1, p + 1))
    within[:p, :p] = wXc.T @ Xc
    within[:p, p] = within[p, :p] = wXc.T @ yc
    within[p, p] = wyc @ yc
    return LMMStats(within, sums, totals, n if n_obs is None else n_obs, p)


class _Segments:
    """Per-group sums and broadcasts over rows sorted by group (``starts``) or in any order (``codes``)."""

    def __init__(self, starts, counts, codes=None):
        self.starts, self.counts, self.codes = starts, np.asarray(counts), codes

    def sums(self, values):
        if self.codes is None:
            return group_sums(values, self.starts)
        G = len(self.counts)
        if values.ndim == 1:
            return np.bincount(self.codes, weights=values, minlength=G)
        return np.column_stack([np.bincount(self.codes, weights=v, minlength=G) for v in values.T])

    def to_rows(self, group_values):
        return to_rows(group_values, self.counts) if self.codes is None else group_values[self.codes]


def _within_unweighted(X, y, sums, segments):
    """W = Z'Z - S' diag(1/n_j) S for Z = [X y] (no n-sized temporary), with exact fallbacks.

    The subtraction loses the between-group share of each column's sum of squares: a column whose W_kk is
    below ONE_PASS_SHARE of its Z'Z_kk (a predictor or response that varies mostly between groups) has
    its row of W recomputed from its within-group deviations, as the two-pass formula does, so every
    entry keeps the two-pass accuracy up to a factor 1 / ONE_PASS_SHARE (Cauchy-Schwarz bounds an
    off-diagonal error by the diagonal ones).  A column equal to 1 on every row (the intercept of the
    standardized design) has W's row exactly 0.
    """
    n, p = X.shape
    counts = segments.counts
    zz = np.empty((p + 1, p + 1))
    zz[:p, :p] = gram(X)
    zz[:p, p] = zz[p, :p] = X.T @ y
    zz[p, p] = y @ y
    root = sums / np.sqrt(counts)[:, None]
    within = zz - root.T @ root  # (a.T @ a: one symmetric product)
    diag_z = np.diag(zz)
    ones = (diag_z == n) & np.all(sums == counts[:, None], axis=0)  # sum z = n_j in each group, sum z^2 = n: z = 1
    within[ones, :] = within[:, ones] = 0.0
    redo = np.flatnonzero(~ones & ~(np.diag(within) >= ONE_PASS_SHARE * diag_z))
    if redo.size:
        means = sums[:, redo] / counts[:, None]
        is_y = redo == p
        D = np.empty((n, redo.size))
        D[:, ~is_y] = X[:, redo[~is_y]]
        if is_y.any():
            D[:, is_y] = y[:, None]
        D -= segments.to_rows(means)
        # deviations times the raw columns are the within products, as the deviations sum to 0 in each
        # group; their rounded sums R_j (a mean of 1e8 is off by ~1e-8) are taken out: - sum_j R_j mean_j'
        cross = np.empty((redo.size, p + 1))
        cross[:, :p] = D.T @ X
        cross[:, p] = D.T @ y
        cross -= segments.sums(D).T @ (sums / counts[:, None])
        cross[:, redo] = D.T @ D
        cross[:, ones] = 0.0
        within[redo, :] = cross
        within[:, redo] = cross.T
    return within


def _factor(theta, stats):
    """Cholesky factor L of M(theta) = W + S' diag(c) S  (the [X y] block of sigma^2 V^{-1})."""
    M = stats.within + stats.weighted_products(lambda n_j: 1.0 / (n_j * (1.0 + n_j * theta * theta)))
    return linalg.cholesky(M, lower=True, check_finite=False)


def _log_det_v(theta, stats):
    """sum_j log(1 + n_j theta^2)."""
    return stats.size_sum(lambda n_j: np.log1p(n_j * theta * theta))


def lmm_deviance(theta, stats, reml=True):
    """-2 log-likelihood profiled over beta and sigma^2 at relative SD theta = sigma_u / sigma_e.

    ML:   sum_j log(1 + n_j theta^2) + n (1 + log(2 pi r^2 / n))
    REML: sum_j log(1 + n_j theta^2) + log|X'V^{-1}X sigma^2| + (n-p)(1 + log(2 pi r^2 / (n-p)))
    with r^2 the penalised residual sum of squares.
    """
    try:
        L = _factor(theta, stats)
    except linalg.LinAlgError:
        return np.inf
    p, n = stats.p, stats.n
    r2 = L[p, p] ** 2
    if not r2 > 1e-14 * n:  # rounding noise of an exact fit (the response is scaled to unit variance)
        return np.inf
    logdet_v = _log_det_v(theta, stats)
    if reml:
        dof = n - p
        return logdet_v + 2.0 * np.sum(np.log(np.diag(L)[:p])) + dof * (1.0 + LOG_2PI + np.log(r2 / dof))
    return logdet_v + n * (1.0 + LOG_2PI + np.log(r2 / n))


def lmm_deviance_slope(theta, stats, reml=True):
    """d deviance / d theta (theta > 0), analytic: with q_j = 1 + n_j theta^2, dM = S' diag(-2 theta / q^2) S,
    v = (-beta, 1) and r^2 = v'Mv,

        sum_j 2 n_j theta / q_j + dof v'dMv / r^2  [+ tr(M_xx^-1 dM_xx) for REML],  dof = n - p (REML) or n.
    """
    L = _factor(theta, stats)
    p = stats.p
    dM = stats.weighted_products(lambda n_j: -2.0 * theta / (1.0 + n_j * theta * theta) ** 2)
    Lx = L[:p, :p]
    beta = linalg.solve_triangular(Lx.T, L[p, :p], lower=False)
    v = np.append(-beta, 1.0)
    dof = stats.n - p if reml else stats.n
    slope = stats.size_sum(lambda n_j: 2.0 * n_j * theta / (1.0 + n_j * theta * theta))
    slope += dof * float(v @ dM @ v) / L[p, p] ** 2
    if reml:
        inv_lx = linalg.solve_triangular(Lx, np.eye(p), lower=True)
        slope += float(np.sum((inv_lx.T @ inv_lx) * dM[:p, :p]))
    return slope


def _polish_theta(theta, dev, stats, reml, maxiter=20):
    """The root of the deviance's slope near Brent's theta by secant steps: the deviance is flat to rounding
    over ~1e-7 in theta, its slope is not, so this pins theta to ~1e-12 (the same for any row order).
    Kept only when the deviance is no worse than Brent's to rounding."""
    try:
        t0, t1 = theta, theta * (1.0 + 1e-6)
        s0, s1 = lmm_deviance_slope(t0, stats, reml), lmm_deviance_slope(t1, stats, reml)
        for _ in range(maxiter):
            if s1 == s0:
                break
            t2 = t1 - s1 * (t1 - t0) / (s1 - s0)
            if not (0.0 < t2 and abs(t2 - theta) < 1e-2 * theta):  # a secant that wanders: keep Brent's
                return theta, dev
            t0, s0, t1 = t1, s1, t2
            if abs(t1 - t0) <= 1e-14 * t1:
                break
            s1 = lmm_deviance_slope(t1, stats, reml)
    except (linalg.LinAlgError, ValueError, FloatingPointError):
        return theta, dev
    polished = lmm_deviance(t1, stats, reml)
    return (t1, polished) if polished <= dev + 1e-10 * max(1.0, abs(dev)) else (theta, dev)


def reml_loglik(stats, var_re, scale):
    """REML log-likelihood at (sigma_u^2, sigma_e^2) = (var_re, scale) with beta at its GLS value:

    -[log|V| + log|X'V^{-1}X| + r'V^{-1}r + (n-p) log 2 pi] / 2, read off the factor of M(theta), which is
    sigma_e^2 [X y]'V^{-1}[X y] at theta = sigma_u / sigma_e (so sigma_e^2 is given, not profiled).
    """
    theta = np.sqrt(var_re / scale)
    L = _factor(theta, stats)
    p, n = stats.p, stats.n
    logdet_v = n * np.log(scale) + _log_det_v(theta, stats)
    logdet_x = 2.0 * np.sum(np.log(np.diag(L)[:p])) - p * np.log(scale)
    return -0.5 * (logdet_v + logdet_x + L[p, p] ** 2 / scale + (n - p) * LOG_2PI)


@dataclass
class LMMFit:
    """The profiled optimum, all on the scale of the data given to `fit_lmm`."""

    theta: float
    beta: np.ndarray
    cov_beta: np.ndarray
    sigma2: float
    llf: float
    blups: np.ndarray
    blup_sd: np.ndarray
    converged: bool
    n_evaluations: int
    message: str


def optimize_theta(stats, reml=True, tol=1e-6, maxiter=100):
    """Minimise the profiled deviance over theta >= 0: log-grid, bounded Brent, boundary check.

    Returns (theta, deviance, converged, n_evaluations, message).
    """
    def dev_log(log_theta):
        return lmm_deviance(np.exp(log_theta), stats, reml)

    grid = np.arange(-10.0, 8.01, 0.5)
    values = np.array([dev_log(v) for v in grid])
    while np.argmin(values) == len(grid) - 1 and grid[-1] < 30:  # optimum beyond the grid: extend it
        extra = grid[-1] + np.arange(0.5, 5.01, 0.5)
        grid = np.concatenate([grid, extra])
        values = np.concatenate([values, [dev_log(v) for v in extra]])
    n_eval = len(grid)
    if not np.isfinite(values).any():
        return np.nan, np.inf, False, n_eval, "the REML/ML criterion is not finite anywhere (a perfect fit?)"
    i = int(np.argmin(values))
    xatol = min(1e-8, tol * 1e-2)
    if i == 0:  # optimum near the boundary: search theta itself on [0, grid[1]]
        res = optimize.minimize_scalar(lambda t: lmm_deviance(t, stats, reml), bounds=(0.0, np.exp(grid[1])),
                                       method="bounded", options={"xatol": xatol, "maxiter": maxiter})
        theta, dev = float(res.x), float(res.fun)
        at_zero = lmm_deviance(0.0, stats, reml)
        if at_zero <= dev:
            theta, dev = 0.0, at_zero
    else:
        hi = min(i + 1, len(grid) - 1)
        res = optimize.minimize_scalar(dev_log, bounds=(grid[i - 1], grid[hi]), method="bounded",
                                       options={"xatol": xatol, "maxiter": maxiter})
        theta, dev = float(np.exp(res.x)), float(res.fun)
    if dev > values[i]:  # Brent never returns worse than the grid in practice; guard anyway
        theta, dev = float(np.exp(grid[i])), float(values[i])
    if theta > 0.0:
        theta, dev = _polish_theta(theta, dev, stats, reml)
    n_eval += int(res.nfev)
    converged = bool(res.success)
    return theta, dev, converged, n_eval, "Brent: " + ("converged" if converged else str(res.message))


def fit_lmm(stats, reml=True, tol=1e-6, maxiter=100):
    """Profiled REML/ML fit: theta, beta, Cov(beta) = sigma^2 (X'V^{-1}X sigma^2)^{-1}, BLUPs."""
    theta, dev, converged, n_eval, message = optimize_theta(stats, reml, tol, maxiter)
    p, n = stats.p, stats.n
    if not np.isfinite(dev):
        raise ValueError(message)
    L = _factor(theta, stats)
    r2 = L[p, p] ** 2
    sigma2 = r2 / (n - p if reml else n)
    Lx = L[:p, :p]
    beta = linalg.solve_triangular(Lx.T, L[p, :p], lower=False)
    inv_lx = linalg.solve_triangular(Lx, np.eye(p), lower=True)
    cov_beta = sigma2 * inv_lx.T @ inv_lx
    shrink = theta * theta / (1.0 + stats.counts * theta * theta)
    resid_sums = stats.sums[:, p] - stats.sums[:, :p] @ beta
    blups = shrink * resid_sums
    blup_sd = np.sqrt(sigma2 * shrink)
    return LMMFit(theta, beta, cov_beta, sigma2, -0.5 * dev, blups, blup_sd, converged, n_eval, message)
