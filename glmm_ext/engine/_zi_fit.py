"""Maximum (Laplace) likelihood of a zero-inflated / hurdle / dispersion model: the outer optimisation.

theta = (beta, gamma, delta, lambda_c, lambda_z).  L-BFGS-B on the exact Laplace objective and its
gradient (`_laplace_multi`), then Newton steps with the Hessian from central differences of that
gradient, until the Newton decrement g' H^-1 g / 2 (the predicted gain, on the objective's own scale) is
below `tol`.  Standard errors come from the same difference Hessian at the returned point.
"""
import time
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize

from ._laplace_multi import find_mode, laplace_gradient


@dataclass
class ZIFit:
    theta: np.ndarray
    value: float  # Laplace -log-likelihood
    gradient: np.ndarray
    hessian: np.ndarray
    cov: np.ndarray
    u: np.ndarray
    eta: np.ndarray
    converged: bool
    decrement: float
    message: str
    n_iterations: int
    n_evaluations: int
    seconds: float
    at_bound: np.ndarray
    notes: list = field(default_factory=list)


class _Objective:
    """Laplace value and gradient with the mode warm-started from the last point."""

    def __init__(self, prob):
        self.prob = prob
        self.u = None
        self.count = 0

    def state(self, theta):
        self.count += 1
        st = find_mode(self.prob, theta, self.u)
        if st is not None:
            self.u = st.u
        return st

    def value(self, theta):
        st = self.state(theta)
        return np.inf if st is None else st.value

    def value_grad(self, theta):
        st = self.state(theta)
        if st is None or not np.isfinite(st.value):
            return 1e300, np.zeros_like(theta)
        return st.value, laplace_gradient(self.prob, theta, st)

    def grad(self, theta):
        return self.value_grad(theta)[1]


def fd_hessian(grad, theta, lower):
    """Symmetrised central differences of the gradient (one-sided at a lower bound)."""
    p = theta.size
    H = np.zeros((p, p))
    for j in range(p):
        h = 1e-5 * max(1.0, abs(theta[j]))
        tp, tm = theta.copy(), theta.copy()
        tp[j] += h
        if theta[j] - h < lower[j]:
            H[:, j] = (grad(tp) - grad(theta)) / h
            continue
        tm[j] -= h
        H[:, j] = (grad(tp) - grad(tm)) / (2 * h)
    return 0.5 * (H + H.T)


def fit_zi(prob, theta0, maxiter=1000, tol=1e-8, polish=10):
    """Minimise the Laplace -log-likelihood from `theta0`; Newton polish; Hessian for standard errors."""
    t0 = time.perf_counter()
    obj = _Objective(prob)
    lower = prob.lower_bounds()
    bounds = [(None if np.isinf(lo) else lo, None) for lo in lower]
    if not np.isfinite(obj.value(theta0)):
        raise ValueError("the model's log-likelihood is not finite at the start values (check the response "
                         "against the family: counts for Poisson/NB, positive values for Gamma)")
    res = minimize(obj.value_grad, theta0, jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"maxiter": maxiter, "maxfun": 3 * maxiter, "ftol": 1e-13, "gtol": 1e-9})
    theta = np.maximum(np.asarray(res.x, float), lower)
    n_iter = int(res.nit)
    message = str(res.message)
    value, g = obj.value_grad(theta)
    H = None
    decrement = np.inf
    for _ in range(polish + 1):
        H = fd_hessian(obj.grad, theta, lower)
        at_bound = (theta <= lower + 1e-8) & (g > 0)
        free = ~at_bound
        try:
            Hf = H[np.ix_(free, free)]
            np.linalg.cholesky(Hf)
            step_f = -np.linalg.solve(Hf, g[free])
        except np.linalg.LinAlgError:
            decrement = np.nan
            message += "; the Hessian is not positive definite at the returned point"
            break
        decrement = float(-0.5 * g[free] @ step_f)
        if decrement < tol:
            break
        step = np.zeros_like(theta)
        step[free] = step_f
        t, moved = 1.0, False
        while t > 1e-6:
            cand = np.maximum(theta + t * step, lower)
            v, gc = obj.value_grad(cand)
            if v < value:
                theta, value, g, moved = cand, v, gc, True
                break
            t *= 0.5
        n_iter += 1
        if not moved:
            break
    at_bound = (theta <= lower + 1e-8) & (g > 0)
    st = obj.state(theta)
    converged = bool(np.isfinite(decrement) and decrement < max(tol, 1e-6))
    cov = np.full_like(H, np.nan)
    free = ~at_bound
    try:
        Hf = H[np.ix_(free, free)]
        w = np.linalg.eigvalsh(Hf)
        if w.min() > 1e-10 * max(1.0, w.max()):
            cov[np.ix_(free, free)] = np.linalg.inv(Hf)
    except np.linalg.LinAlgError:
        pass
    return ZIFit(theta=theta, value=float(st.value), gradient=g, hessian=H, cov=cov, u=st.u, eta=st.eta,
                 converged=converged, decrement=decrement, message=message, n_iterations=n_iter,
                 n_evaluations=obj.count, seconds=time.perf_counter() - t0, at_bound=at_bound)
