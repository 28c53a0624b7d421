"""The Newton polish of the bounded search (`_mixed_lmm.minimize_bounded`): gradient and Hessian by differences
of the objective or of its analytic gradient on the free coordinates, Newton steps with halving."""
import numpy as np
from scipy import linalg


def _fd_grad_hess(fun, x, f0, lb, step):
    """Central-difference gradient and Hessian of `fun` at x (one-sided at a lower bound)."""
    k = len(x)
    h = step * np.maximum(1.0, np.abs(x))
    up = np.array([fun(x + h[i] * np.eye(k)[i]) for i in range(k)])
    at_bound = x - h < lb
    down = np.array([np.nan if at_bound[i] else fun(x - h[i] * np.eye(k)[i]) for i in range(k)])
    g = np.where(at_bound, (up - f0) / h, (up - down) / (2.0 * h))
    H = np.empty((k, k))
    up2 = np.array([fun(x + 2.0 * h[i] * np.eye(k)[i]) if at_bound[i] else np.nan for i in range(k)])
    for i in range(k):
        H[i, i] = ((up2[i] - 2.0 * up[i] + f0) / h[i] ** 2 if at_bound[i]
                   else (up[i] - 2.0 * f0 + down[i]) / h[i] ** 2)
    for i in range(k):
        for j in range(i + 1, k):
            e_i, e_j = h[i] * np.eye(k)[i], h[j] * np.eye(k)[j]
            fpp = fun(x + e_i + e_j)
            if at_bound[i] or at_bound[j]:  # forward: (f(++) - f(+0) - f(0+) + f) / h_i h_j
                H[i, j] = (fpp - up[i] - up[j] + f0) / (h[i] * h[j])
            else:
                fmm = fun(x - e_i - e_j)
                fpm, fmp = fun(x + e_i - e_j), fun(x - e_i + e_j)
                H[i, j] = (fpp - fpm - fmp + fmm) / (4.0 * h[i] * h[j])
            H[j, i] = H[i, j]
    return g, H


def _grad_hess(fg, x, lb, step):
    """Gradient at x and the Hessian from forward differences of the analytic gradient."""
    k = len(x)
    f0, g0 = fg(x)
    h = step * np.maximum(1.0, np.abs(x))
    H = np.empty((k, k))
    for j in range(k):  # forward differences: the Hessian only scales the convergence test and Newton's step
        e = np.zeros(k)
        e[j] = h[j]
        H[:, j] = (fg(x + e)[1] - g0) / h[j]
    return g0, 0.5 * (H + H.T)


def _newton_polish(obj, x, f, lb, tol, step, fgc=None, max_steps=8, quasi=False):
    """Newton steps with finite-difference derivatives on the free coordinates; (x, f, H, free, dec, ok).
    ``quasi`` (with ``fgc``): after the first step, the Hessian a BFGS update of the last (one gradient, not
    len(x) + 1): for a caller that needs no exact Hessian at the end, only the optimum (the Gaussian profile)."""
    decrement = np.inf
    H = prev = None
    for _ in range(max_steps):
        g = None
        if quasi and fgc is not None and prev is not None:
            g = fgc(x)[1]
            s, yv = x - prev[0], g - prev[1]
            sy, Hs = float(s @ yv), H @ s
            if (np.all(np.isfinite(g)) and sy > 1e-12 * float(np.linalg.norm(s) * np.linalg.norm(yv))
                    and float(s @ Hs) > 0.0):
                H = H + np.outer(yv, yv) / sy - np.outer(Hs, Hs) / float(s @ Hs)
            else:  # no curvature information in the step: the differences afresh
                g = None
        if g is None:
            g, H = _fd_grad_hess(obj, x, f, lb, step) if fgc is None else _grad_hess(fgc, x, lb, step)
        prev = (np.array(x, float), g)
        at_bound = x <= lb
        free = ~(at_bound & (g >= 0))  # held: at its bound and pushed against it
        if not np.all(np.isfinite(g[free])) or not np.all(np.isfinite(H[np.ix_(free, free)])):
            return x, f, H, free, np.inf, False
        if not free.any():
            return x, f, H, free, 0.0, True
        Hf = H[np.ix_(free, free)]
        try:
            c = linalg.cho_factor(Hf)
            d = linalg.cho_solve(c, g[free])
        except linalg.LinAlgError:
            return x, f, H, free, np.inf, False  # not a minimum: the caller restarts
        decrement = 0.5 * float(g[free] @ d)
        if decrement < tol:
            return x, f, H, free, decrement, True
        direction = np.zeros_like(x)
        direction[free] = -d
        alpha, accepted = 1.0, False
        for _ in range(30):
            xt = np.maximum(x + alpha * direction, lb)
            ft = obj(xt)
            if ft < f:
                x, f, accepted = xt, ft, True
                break
            alpha *= 0.5
        if not accepted:  # no decrease along Newton's direction: at rounding level
            return x, f, H, free, decrement, decrement < 1e3 * tol
    return x, f, H, free, decrement, decrement < tol
