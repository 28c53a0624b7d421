"""Outer optimisation of the marginal log-likelihood: scipy's BFGS, then Newton steps.

The objective is infinite where an identity or inverse link leaves the mean's support.  scipy's
L-BFGS-B stops at such a trial point and reports success; BFGS's Wolfe line search steps back
instead, and the Newton stage backtracks by halving.  The Newton stage uses a finite-difference
Hessian of the analytic gradient, which is also the observed information for standard errors.
"""
import warnings

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
    """Largest step 2^-k along `direction` with finite f and Armijo decrease; None if none found."""
    slope = float(g @ direction)
    alpha = 1.0
    for _ in range(max_halvings):
        x_new = x + alpha * direction
        f_new, g_new = fun(x_new)
        if np.isfinite(f_new) and f_new <= f + 1e-4 * alpha * slope:
            return x_new, f_new, g_new
        alpha *= 0.5
    return None


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


def minimize(fun, x0, hess0, maxiter=100, tol=1e-6, callback=None, central=True, quasi_newton=True):
    """Minimise fun (returning value and gradient) from x0 with initial Hessian hess0.

    Stops when the Newton decrement g' H^{-1} g / 2 (the predicted decrease) falls below `tol`.
    Returns (x, f, g, H, iterations, decrement, message); H is the final finite-difference Hessian
    (central differences, or forward ones with ``central=False`` where a gradient is expensive).
    ``quasi_newton=False`` skips the BFGS stage and takes Newton steps with `hess0` until the
    observed information is needed (a start already near the optimum, as AGQ after Laplace).
    """
    x = np.asarray(x0, float)
    f, g = fun(x)
    if not np.isfinite(f):
        raise FloatingPointError("the starting values give a non-finite log-likelihood")
    iterations, message = 0, ""
    if quasi_newton:
        x, f, g, iterations, message = _quasi_newton(fun, x, f, g, hess0, maxiter, callback)

    # Newton stage with the observed information (a finite-difference Hessian of the gradient)
    def observed(x, g):
        return fd_hessian(fun, x, grad=None if central else g)

    H, exact = (observed(x, g), True) if quasi_newton else (hess0, False)
    decrement = np.inf
    for _ in range(12):
        direction = -linalg.solve(_positive_definite(H), g, assume_a="pos")
        decrement = -0.5 * g @ direction
        if decrement < tol:
            if exact:
                break
            H, exact = observed(x, g), True  # confirm with the observed information (and keep it for SEs)
            continue
        if iterations >= maxiter:
            message = message or "maximum number of iterations reached"
            break
        step = _backtrack(fun, x, f, g, direction)
        iterations += 1
        if step is None:
            message = message or "Newton step found no decrease"
            break
        moved = np.max(np.abs(step[0] - x) / np.maximum(1.0, np.abs(x)))
        x, f, g = step
        if callback is not None:
            callback("optimize", iterations, f)
        if moved > 1e-6:
            exact = False
            if quasi_newton:  # refresh every step; otherwise the start Hessian serves until the end
                H, exact = observed(x, g), True
    return x, f, g, H, iterations, decrement, message
