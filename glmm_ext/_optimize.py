"""Outer optimisation of the marginal log-likelihood: BFGS with backtracking, then Newton polish.

scipy's L-BFGS-B stops and reports success when the objective is infinite at a trial point, which
happens whenever an identity or inverse link leaves the mean's support; this quasi-Newton method
treats such a point as a rejected step and halves it.  The last stage takes Newton steps with a
central-difference Hessian of the analytic gradient, which is also the observed information.
"""
import numpy as np
from scipy import linalg


def fd_hessian(fun, x, rel_step=1e-4, grad=None):
    """Hessian from differences of the gradient, symmetrised.

    Central, H_ij = (g_i(x + h_j e_j) - g_i(x - h_j e_j)) / 2 h_j; or, when the gradient at x is
    given, forward, H_ij = (g_i(x + h_j e_j) - g_i(x)) / h_j with a smaller step (half the cost).
    """
    k = len(x)
    H = np.empty((k, k))
    if grad is not None:
        rel_step = rel_step * 0.1
    for j in range(k):
        h = rel_step * max(1.0, abs(x[j]))
        e = np.zeros(k)
        e[j] = h
        _, g_plus = fun(x + e)
        if grad is None:
            _, g_minus = fun(x - e)
            H[:, j] = (g_plus - g_minus) / (2.0 * h)
        else:
            H[:, j] = (g_plus - grad) / h
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


def minimize(fun, x0, hess0, maxiter=100, tol=1e-6, callback=None, central=True):
    """Minimise fun (returning value and gradient) from x0 with initial Hessian hess0.

    Stops when the Newton decrement g' H^{-1} g / 2 (the predicted decrease) falls below `tol`.
    Returns (x, f, g, H, iterations, decrement, message); H is the final finite-difference Hessian
    (central differences, or forward ones with ``central=False`` where a gradient is expensive).
    """
    x = np.asarray(x0, float)
    f, g = fun(x)
    if not np.isfinite(f):
        raise FloatingPointError("the starting values give a non-finite log-likelihood")
    B_inv = linalg.inv(_positive_definite(hess0))
    iterations, message = 0, ""
    # quasi-Newton stage
    while iterations < maxiter:
        direction = -B_inv @ g
        if g @ direction >= 0:
            direction = -g / max(np.abs(np.diag(hess0)).max(), 1.0)
        step = _backtrack(fun, x, f, g, direction)
        iterations += 1
        if step is None:
            message = "line search found no decrease"
            break
        x_new, f_new, g_new = step
        s, y = x_new - x, g_new - g
        sy = s @ y
        if sy > 1e-12 * linalg.norm(s) * linalg.norm(y):
            rho = 1.0 / sy
            V = np.eye(len(x)) - rho * np.outer(s, y)
            B_inv = V @ B_inv @ V.T + rho * np.outer(s, s)
        f_change = f - f_new
        x, f, g = x_new, f_new, g_new
        if callback is not None:
            callback("optimize", iterations, f)
        if 0.5 * g @ B_inv @ g < tol and f_change < max(tol, 1e-12 * abs(f)):
            break
    # Newton stage with the observed information
    H = fd_hessian(fun, x, grad=None if central else g)
    decrement = np.inf
    for _ in range(8):
        H_pd = _positive_definite(H)
        direction = -linalg.solve(H_pd, g, assume_a="pos")
        decrement = -0.5 * g @ direction
        if decrement < tol:
            break
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
            H = fd_hessian(fun, x, grad=None if central else g)
    return x, f, g, H, iterations, decrement, message
