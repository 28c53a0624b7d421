"""Outer optimisation of the marginal log-likelihood: Newton steps with the observed information.

The Hessian is the objective's exact one where it has one (Laplace with a fused kernel,
`_laplace_hessian`); otherwise scipy's BFGS does the bulk of the search and Newton steps with a
finite-difference Hessian of the analytic gradient finish it.  Either way the Hessian at the
returned point is the observed information for standard errors.  The objective is infinite where
an identity or inverse link leaves the mean's support: scipy's L-BFGS-B stops at such a trial point
and reports success, BFGS's Wolfe line search steps back instead, and the Newton steps backtrack by
halving.
"""
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import linalg, optimize


def fd_columns(fun, x, columns, rel_step=1e-4, grad=None):
    """Columns j of the Hessian from differences of the gradient, as a (len(x), len(columns)) block.

    Central, H_ij = (g_i(x + h_j e_j) - g_i(x - h_j e_j)) / 2 h_j; or, when the gradient at x is
    given, forward, H_ij = (g_i(x + h_j e_j) - g_i(x)) / h_j with a smaller step (half the cost).
    """
    block = np.empty((len(x), len(columns)))
    if grad is not None:
        rel_step = rel_step * 0.1
    for c, j in enumerate(columns):
        h = rel_step * max(1.0, abs(x[j]))
        e = np.zeros(len(x))
        e[j] = h
        _, g_plus = fun(x + e)
        if grad is None:
            _, g_minus = fun(x - e)
            block[:, c] = (g_plus - g_minus) / (2.0 * h)
        else:
            block[:, c] = (g_plus - grad) / h
    return block


def fd_hessian(fun, x, rel_step=1e-4, grad=None):
    """The whole Hessian from differences of the gradient (see `fd_columns`), symmetrised."""
    H = fd_columns(fun, x, range(len(x)), rel_step, grad)
    return 0.5 * (H + H.T)


def _positive_definite(H):
    """H with its eigenvalues made positive (|lambda|, floored), for a descent direction."""
    if not np.all(np.isfinite(H)):  # a failed finite difference: fall back to a scaled identity
        diag = np.abs(np.diag(H))
        return np.diag(np.where(np.isfinite(diag) & (diag > 0), diag, 1.0))
    w, V = linalg.eigh(H)
    w = np.abs(w)
    w = np.maximum(w, 1e-8 * max(w.max(), 1e-8))
    return (V * w) @ V.T


def _backtrack(fun, x, f, g, direction, max_halvings=40):
    """Largest step 2^-k along `direction` with finite f and Armijo decrease; None if none found.

    When the full step leaves the support (f = inf), the components that leave it on their own are
    shrunk alone first (`_edge_step`): the search slides along the edge instead of stalling at it.
    """
    slope = float(g @ direction)
    alpha = 1.0
    for k in range(max_halvings):
        x_new = x + alpha * direction
        f_new, g_new = fun(x_new)
        if np.isfinite(f_new) and f_new <= f + 1e-4 * alpha * slope:
            return x_new, f_new, g_new
        if k == 0 and not np.isfinite(f_new):
            edge = _edge_step(fun, x, f, g, direction)
            if edge is not None:
                return edge
        alpha *= 0.5
    return None


def _edge_step(fun, x, f, g, direction, max_halvings=20):
    """Step with only the components that leave the support by themselves shrunk (by 2^-k).

    d' = d with d'_j = 2^-k d_j for each j such that f(x + d_j e_j) = inf; accepted with Armijo
    decrease along d'.  None when every or no component leaves alone, or nothing decreases f.
    """
    leaving = np.zeros(len(x), bool)
    for j in np.flatnonzero(direction):
        e = np.zeros(len(x))
        e[j] = direction[j]
        leaving[j] = not np.isfinite(fun(x + e)[0])
    if not leaving.any() or leaving.all():
        return None
    scale = 1.0
    for _ in range(max_halvings):
        scale *= 0.5
        step = np.where(leaving, scale * direction, direction)
        slope = float(g @ step)
        if slope >= 0:
            return None
        f_new, g_new = fun(x + step)
        if np.isfinite(f_new) and f_new <= f + 1e-4 * slope:
            return x + step, f_new, g_new
    return None


def _simplex_polish(fun, x, f, rel_size=0.05):
    """Nelder-Mead from x on f alone: it slides along the edge of the support (f = inf outside),
    where gradient steps stall.  Returns (x, f, g) when it finds a lower value, else None."""
    def value(v):
        try:
            out = fun(v, need_grad=False)[0]  # the objective's own value-only path when it has one
        except TypeError:
            out = fun(v)[0]
        return out if np.isfinite(out) else np.inf

    size = rel_size * np.maximum(np.abs(x), 0.1)
    simplex = np.vstack([x] + [x + size[j] * np.eye(len(x))[j] for j in range(len(x))])
    res = optimize.minimize(value, x, method="Nelder-Mead",
                            options={"initial_simplex": simplex, "xatol": 1e-9, "fatol": 1e-11,
                                     "maxfev": 80 * len(x)})
    if not (np.isfinite(res.fun) and res.fun < f - 1e-10 * (1.0 + abs(f))):
        return None
    f_new, g_new = fun(res.x)
    return np.asarray(res.x, float), f_new, g_new


def _quasi_newton(fun, x, f, g, hess0, maxiter, callback):
    """scipy's BFGS from x with inverse Hessian hess0^-1; returns (x, f, g, iterations, message).

    Its Wolfe line search steps back from a trial point outside the support (f = inf).
    """
    B_inv = linalg.inv(_positive_definite(hess0))
    B_inv = 0.5 * (B_inv + B_inv.T)
    counter = {"it": 0}

    def progress(intermediate_result):
        counter["it"] += 1
        if callback is not None:
            callback("optimize", counter["it"], float(intermediate_result.fun))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # line-search and precision-loss warnings: the Newton stage decides
        res = optimize.minimize(fun, x, jac=True, method="BFGS", callback=progress,
                                options={"hess_inv0": B_inv, "gtol": 1e-5, "maxiter": maxiter})
    iterations = int(res.nit)
    message = "" if res.status in (0, 2) else str(res.message)
    if np.isfinite(res.fun) and res.fun <= f:
        x, f, g = np.asarray(res.x, float), float(res.fun), np.asarray(res.jac, float)
    return x, f, g, iterations, message


@dataclass
class Minimum:
    """Result of `minimize`: the point, its value and gradient, the observed Hessian there, counts."""

    x: np.ndarray
    f: float
    g: np.ndarray
    hess: np.ndarray  # the observed information AT x (exact, or finite differences of the gradient)
    iterations: int
    decrement: float  # g' H^-1 g / 2 with that Hessian: the predicted gain of one more Newton step
    converged: bool
    message: str


def newton_decrement(H, g):
    """g' H^-1 g / 2 with H made positive definite: the decrease one Newton step predicts."""
    direction = -linalg.solve(_positive_definite(H), g, assume_a="pos")
    return -0.5 * float(g @ direction), direction


#: with an exact Hessian, a converged search still takes the Newton step when it would move a parameter by
#: more than FINAL_STEP times tol (relative): it squares the error of the estimates (a flat direction such
#: as sigma_u meets the decrement tolerance while its estimate is still ~1e-4 off) for one evaluation
FINAL_STEP = 10.0


#: with an exact Hessian, a Newton step changes no parameter by more than this (scaled units: predictors
#: standardised, sigma_u on the eta scale, log phi); longer ones are shortened along their direction
MAX_NEWTON_STEP = 2.0


def minimize(fun, x0, hess0=None, maxiter=100, tol=1e-6, callback=None, central=True, quasi_newton=True,
             hessian=None, final_step=True, edge_polish=True):
    """Minimise fun (returning value and gradient) from x0 with initial Hessian hess0.

    Converged when the Newton decrement g' H^{-1} g / 2 (the predicted decrease, in units of the
    objective) falls below `tol` with H the observed Hessian (exact, or finite differences) at the
    returned point; a point where no step decreases f any more (rounding) also counts when its decrement is
    below 10 tol.  ``quasi_newton=False`` skips the BFGS stage and starts Newton steps with `hess0`
    (a start already near the optimum, as AGQ after Laplace), switching to the observed Hessian
    when progress is slow.  The returned Hessian is always the observed one at the returned x
    (central differences, or forward ones with ``central=False`` where a gradient is expensive).
    With ``hessian`` (x -> the exact Hessian, or None where it has none) there is no BFGS stage:
    every step is a Newton step with the exact Hessian at the current point (finite differences
    only where ``hessian`` returns None; ``hess0``, when given, for the first step), no step longer than
    MAX_NEWTON_STEP, BFGS once where a Newton step finds no decrease, and one more step after convergence
    (`FINAL_STEP`) unless ``final_step=False`` (a start value that needs no such precision).
    ``edge_polish=False`` skips the derivative-free search along the edge of the support where Newton steps
    stall (`_simplex_polish`; for a caller that handles the edge itself).
    """
    x = np.asarray(x0, float)
    f, g = fun(x)
    if not np.isfinite(f):
        raise FloatingPointError("the starting values give a non-finite log-likelihood")
    iterations, message = 0, ""
    quasi_newton = quasi_newton and hessian is None
    if quasi_newton:
        x, f, g, iterations, message = _quasi_newton(fun, x, f, g, hess0, maxiter, callback)

    # Newton stage with the observed information (exact, or a finite-difference Hessian of the gradient)
    def observed(x, g):
        if hessian is not None:
            H = hessian(x)
            if H is not None and np.all(np.isfinite(H)):
                return H
        H = fd_hessian(fun, x, grad=None if central else g)
        if not np.all(np.isfinite(H)) and not central:  # a forward difference left the support
            H = fd_hessian(fun, x)
        return H

    refresh = quasi_newton or hessian is not None  # the observed Hessian at every new point
    if refresh and not (hessian is not None and hess0 is not None):
        H, exact = observed(x, g), True
    else:  # hess0 serves the first step (with an exact Hessian: a pilot fit's, say), then the observed one
        H, exact = hess0, False
    decrement, stalled, previous = np.inf, False, np.inf
    # finite-difference Newton steps allowed beyond maxiter when the last one is all that is missing (an
    # exact Hessian needs no such allowance: maxiter counts its Newton steps)
    polish = 2 if hessian is None else 0
    edge_rounds = int(edge_polish)  # derivative-free searches along the edge of the support when Newton steps stall
    crawling = 0  # consecutive Newton steps cut short by the edge
    final_step = final_step and hessian is not None  # one more exact Newton step after convergence
    rescue = hessian is not None  # BFGS once from where exact Newton steps find no decrease
    while True:
        decrement, direction = newton_decrement(H, g)
        if decrement < tol:
            if not exact:
                H, exact = observed(x, g), True  # confirm with the observed information (and keep it for SEs)
                continue
            if not (final_step and np.max(np.abs(direction) / np.maximum(1.0, np.abs(x))) > FINAL_STEP * tol):
                break
            final_step = False
        if not exact and decrement > 0.1 * previous:  # slow (linear) progress: the start Hessian is poor
            H, exact = observed(x, g), True
            decrement, direction = newton_decrement(H, g)
        if iterations >= maxiter:
            if not (exact and polish > 0 and decrement < 1e3 * tol):
                message = message or "maximum number of iterations reached"
                break
            polish -= 1
        longest = np.max(np.abs(direction)) if hessian is not None else 0.0
        if longest > MAX_NEWTON_STEP:  # far from the optimum the quadratic model can promise steps of 20+
            direction = direction * (MAX_NEWTON_STEP / longest)
        step = _backtrack(fun, x, f, g, direction) if crawling < 3 else None
        # a step gaining under 1% of its prediction was cut short by the edge of the support
        cut = step is not None and longest <= MAX_NEWTON_STEP and f - step[1] < 0.01 * decrement
        crawling = crawling + 1 if cut else 0
        if step is None and exact and rescue:  # BFGS's line search copes where Newton's model is poor
            rescue = False
            found = _quasi_newton(fun, x, f, g, H, maxiter, callback)
            if found[1] < f:
                step = found[:3]
                iterations += found[3]
        if step is None and exact and edge_rounds > 0:  # pressed against the edge: slide along it
            edge_rounds -= 1
            crawling = 0
            step = _simplex_polish(fun, x, f)
            if step is not None:
                H, exact = observed(step[0], step[2]), True
        if step is None:
            if not exact:
                H, exact = observed(x, g), True
                continue
            stalled = True
            message = message or "Newton step found no decrease"
            break
        iterations += 1
        moved = np.max(np.abs(step[0] - x) / np.maximum(1.0, np.abs(x)))
        x, f, g = step
        previous = decrement
        if callback is not None:
            callback("optimize", iterations, f)
        if moved > 1e-6 or not exact:
            exact = False
            if refresh:  # refresh every step; otherwise the start Hessian serves while it works
                H, exact = observed(x, g), True
    if not exact:  # the SEs need the observed information at the returned point
        H = observed(x, g)
        decrement, _ = newton_decrement(H, g)
    converged = bool(np.isfinite(decrement) and (decrement < tol or (stalled and decrement < 10.0 * tol)))
    if converged:
        message = "converged"
    return Minimum(x, f, g, H, iterations, float(decrement), converged, message)
