"""The GLM without random effects (sigma_u = 0) by Fisher scoring on sums over rows: the start of every fit.

Each step solves (X'WX) delta = X'l1 (W the IRLS working weights, l1 = d log f / d eta per row) and is
halved while the log-likelihood falls or leaves the family's support; the iteration stops when the
predicted gain l1'X delta is below 1e-12 of |log-likelihood|.  `glm_sums` gives every sum from one pass
over the rows, so the same iteration runs on arrays in memory (`glm_start`) and on the partitions of
a Dask DataFrame.  The dispersion is statsmodels GLM's, Pearson chi2 / (n - p); NB2's alpha is
started by moments (statsmodels' NegativeBinomial family holds it fixed at 1, as the scoring does).
"""
from dataclasses import dataclass

import numpy as np
from scipy import linalg


@dataclass
class Rows:
    """The rows `glm_sums` reads (a GLMMData has them too): response, scaled predictors, offset, prior
    weights, the data-only part of log f and the kernel's per-row data (or None)."""

    y: np.ndarray
    X: np.ndarray
    offset: np.ndarray
    m: np.ndarray
    const: np.ndarray
    aux: np.ndarray = None


@dataclass
class GLMSums:
    """Sums over rows at one gamma (add those of several partitions with +)."""

    loglik: float
    info: np.ndarray  # X'WX
    score: np.ndarray  # X'l1
    pearson: float  # sum m (y - mu)^2 / V(mu)
    nb_moments: np.ndarray  # (sum (y - mu)^2 - mu, sum mu^2)
    spread: float  # max |X gamma|
    n: int

    def __add__(self, other):
        return GLMSums(self.loglik + other.loglik, self.info + other.info, self.score + other.score,
                       self.pearson + other.pearson, self.nb_moments + other.nb_moments,
                       max(self.spread, other.spread), self.n + other.n)


def glm_sums(dist, rows, gamma):
    """`GLMSums` of `rows` (y, X, offset, m, const, aux: a GLMMData or its rows) at gamma, with phi = 1
    (the scoring's working weights; NB2 at alpha = 1)."""
    with np.errstate(all="ignore"):
        fixed = rows.X @ gamma
        eta = fixed + rows.offset
        ll, l1, _, _ = dist.evaluate(rows.y, eta, rows.m, 1.0, rows.const, order=1, aux=rows.aux)
        w = dist.working_weights(eta, rows.m, 1.0)
        mu = dist.mean(eta)
        r = rows.y - mu
        pearson = float(np.sum(rows.m * r * r / dist.family.variance(mu)))
        nb = np.array([np.sum(r * r - mu), np.sum(mu * mu)])
    return GLMSums(float(np.sum(ll)), rows.X.T @ (rows.X * w[:, None]), rows.X.T @ l1, pearson, nb,
                   float(np.max(np.abs(fixed))) if fixed.size else 0.0, int(rows.y.size))


def least_squares_sums(rows, target):
    """(X'X, X'(target - offset), X' target): the normal equations of the least-squares starts."""
    X = rows.X
    return X.T @ X, X.T @ (target - rows.offset), X.T @ np.full(X.shape[0], target)


def least_squares_start(dist, sums, feasible):
    """gamma with X gamma ~ g(mean y) - offset, or ~ g(mean y) when that leaves the support (`feasible(gamma)`
    False): the start of the scoring.  ``sums`` = `least_squares_sums`."""
    gram, with_offset, without = sums
    gamma = np.linalg.lstsq(gram, with_offset, rcond=None)[0]
    return gamma if feasible(gamma) else np.linalg.lstsq(gram, without, rcond=None)[0]


def fisher_scoring(sums_at, gamma, maxiter=50):
    """(gamma, GLMSums at gamma) maximising the GLM log-likelihood from `gamma`, or None when the start has
    no finite log-likelihood or a step cannot be solved; ``sums_at(gamma)`` returns the GLMSums."""
    sums = sums_at(gamma)
    if not np.isfinite(sums.loglik):
        return None
    for _ in range(maxiter):
        try:
            step = linalg.solve(sums.info, sums.score, assume_a="pos")
        except (linalg.LinAlgError, ValueError):
            return None
        if not float(sums.score @ step) > 1e-12 * max(1.0, abs(sums.loglik)):
            break
        for _ in range(30):
            trial = sums_at(gamma + step)
            if np.isfinite(trial.loglik) and trial.loglik >= sums.loglik - 1e-12 * abs(sums.loglik):
                break
            step = 0.5 * step
        else:
            break
        gamma, sums = gamma + step, trial
    return gamma, sums


def dispersion(dist, sums, p):
    """Start value of the dispersion: Pearson chi2 / (n - p), NB2's alpha by moments, 1 without one."""
    if dist.name == "negativebinomial":
        alpha = sums.nb_moments[0] / sums.nb_moments[1] if sums.nb_moments[1] > 0 else np.nan
        return float(np.clip(alpha if np.isfinite(alpha) else 1.0, 0.01, 10.0))
    if not dist.has_dispersion:
        return 1.0
    scale = sums.pearson / max(sums.n - p, 1)
    return float(scale) if np.isfinite(scale) and scale > 0 else 1.0


#: an identity/inverse-link start keeps every row's linear predictor above this fraction of its mean: a GLM
#: optimum on the edge of the support is no start (the groups' modes leave the support at any sigma_u)
EDGE_MARGIN = 1e-3


def glm_start_from(dist, sums_at, least_squares, feasible, p, edge_ratio=None):
    """(gamma, dispersion) of the GLM: Fisher scoring from the least-squares start (`least_squares` =
    `least_squares_sums`, `feasible(gamma)` = every row's mean inside the support); when the scoring
    fails or leaves the support, the least-squares point itself with the dispersion by moments.
    A Binomial start is kept inside |x'gamma| <= 15 (`separation_cap`); with an identity or inverse
    link, ``edge_ratio(gamma)`` = min eta / mean |eta| is kept above EDGE_MARGIN by moving towards the
    least-squares point."""
    inside = least_squares_start(dist, least_squares, feasible)
    gamma = inside
    found = fisher_scoring(sums_at, gamma)
    if found is not None and feasible(found[0]):
        gamma, sums = found
        scale = dispersion(dist, sums, p)
    else:
        sums = sums_at(gamma)
        scale = dispersion(dist, sums, 0)  # Pearson chi2 / n
    if edge_ratio is not None and not dist.full_support:
        for t in (1.0, 0.99, 0.9, 0.5, 0.0):
            candidate = inside + t * (gamma - inside)
            if edge_ratio(candidate) >= EDGE_MARGIN or t == 0.0:
                gamma = candidate
                break
    return separation_cap(dist, gamma, sums.spread), scale


def separation_cap(dist, gamma, spread):
    """A Binomial start with |x'gamma| > 15 somewhere (separated data) is shrunk inside; the search goes outward."""
    if dist.name == "binomial" and spread > 15.0:
        return gamma * (15.0 / spread)
    return gamma
