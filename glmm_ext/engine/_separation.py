"""Binomial separation: is there a direction of the fixed effects along which the likelihood keeps rising?

Rows fitted with probabilities within 1e-6 of 0 or 1 are only a symptom: a steep but finite
optimum gives them too.  Estimates diverge exactly when some d != 0 has

    x_i'd >= 0 for rows with y_i = 1,   x_i'd <= 0 for rows with y_i = 0,   x_i'd = 0 otherwise,

with at least one inequality strict (Albert and Anderson 1984; the linear program of Konis 2007):
moving beta along d then raises every term of the log-likelihood.  The random intercepts cannot
diverge this way (their N(0, sigma^2) density bounds them for fixed sigma).
"""
import numpy as np
from scipy import optimize

#: rows beyond which the linear program runs on the rows that can be separated only (a 0/1 response)
MAX_LP_ROWS = 200_000


def diverging_rows(dist, X, y, m):
    """Number of rows pushed to probability 0 or 1 along a separating direction (0: no separation).

    Solves  max sum_i s_i x_i'd  subject to  s_i x_i'd >= 0 (s_i = +1 for y = 1, -1 for y = 0),
    x_i'd = 0 for 0 < y < 1, and -1 <= d <= 1; separation iff the optimum is positive.
    """
    if dist.name != "binomial":
        return 0
    y = np.asarray(y, float)
    binary = (y == 0.0) | (y == 1.0)
    if not binary.any():
        return 0
    sign = np.where(y == 1.0, 1.0, -1.0)
    A = sign[binary, None] * X[binary]
    if A.shape[0] > MAX_LP_ROWS:  # duplicate rows add nothing to the program
        A = np.unique(np.round(A, 12), axis=0)
    eq = X[~binary]
    p = X.shape[1]
    res = optimize.linprog(-A.sum(axis=0), A_ub=-A, b_ub=np.zeros(A.shape[0]),
                           A_eq=eq if eq.shape[0] else None, b_eq=np.zeros(eq.shape[0]) if eq.shape[0] else None,
                           bounds=[(-1.0, 1.0)] * p, method="highs")
    if res.status != 0 or -res.fun <= 1e-7 * max(1.0, np.abs(A).sum()) ** 0.5:
        return 0
    push = A @ res.x
    return int(np.sum(push > 1e-9 * max(1.0, np.abs(push).max())))


def separation_message(rows: int) -> str:
    """The optimiser's message for separated data."""
    return (f"complete or quasi-complete separation: {rows} rows are fitted with probability 0 or 1 and a direction "
            "of the fixed effects pushes them further, so some estimates diverge (no finite maximum)")


def separated_fit_rows(dist, X, y, eta) -> int:
    """Rows of a Binomial fit pushed to 0 or 1 along a separating direction (0: none).  Rows fitted within 1e-6 of
    their 0/1 response are only the trigger for the linear program: large random effects give them too."""
    if not dist.separated_rows(y, eta):
        return 0
    return diverging_rows(dist, X, y, None)
