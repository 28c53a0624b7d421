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
    flat: np.ndarray = None  # parameters without a standard error (flat directions of the Hessian)


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
        st = self.state(theta)
        if st is None or not np.isfinite(st.value):  # no mode there: a difference Hessian must not use it
            return np.full(theta.size, np.nan)
        return laplace_gradient(self.prob, theta, st)


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


def _newton_step(H, g):
    """Step -H_m^-1 g with H_m = H's eigenvalues made positive (|w|, floored): a descent direction also
    where the surface is flat or not convex (a zi coefficient running off towards -inf)."""
    if not (np.all(np.isfinite(H)) and np.all(np.isfinite(g))):
        return np.zeros_like(g), np.inf, False
    w, V = np.linalg.eigh(H)
    floor = 1e-8 * max(1.0, np.max(np.abs(w)))
    wm = np.maximum(np.abs(w), floor)
    step = -V @ ((V.T @ g) / wm)
    return step, float(-0.5 * g @ step), bool(w.min() > floor)


def _polish(obj, theta, free, tol, polish):
    """Newton steps on the `free` coordinates (eigenvalue-modified difference Hessian, BFGS updates near the
    optimum, a fresh difference Hessian after a capped or shortened step).  Returns (theta, value, g, its,
    note)."""
    lower = np.full(int(free.sum()), -np.inf)

    def full(x):
        out = theta_ref.copy()
        out[free] = x
        return out

    def grad(x):
        return obj.grad(full(x))[free]

    theta_ref = np.array(theta, float)
    x = theta_ref[free]
    value, gfull = obj.value_grad(theta_ref)
    g = gfull[free]
    H = fd_hessian(grad, x, lower)
    fresh, refreshes, its, note = True, 1, 0, ""
    for _ in range(polish + 1):
        step, decrement, pd_hessian = _newton_step(H, g)
        if decrement < tol:
            if fresh or refreshes >= 45:
                break
            H = fd_hessian(grad, x, lower)  # confirm on a difference Hessian, not on the BFGS one
            fresh, refreshes = True, refreshes + 1
            continue
        big = np.max(np.abs(step))
        if big > 5.0:  # a flat direction: a bounded move
            step *= 5.0 / big
        t, moved = 1.0, False
        while t > 1e-8:
            cand = x + t * step
            v, gc = obj.value_grad(full(cand))
            gc = gc[free]
            if v < value:
                moved = True
                break
            t *= 0.5
        its += 1
        if not moved:
            if fresh or refreshes >= 45:
                note = "; Newton polish: no decrease along the step"
                break
            H = fd_hessian(grad, x, lower)
            fresh, refreshes = True, refreshes + 1
            continue
        s_, y_ = cand - x, gc - g
        x, value, g = cand, v, gc
        Hs = H @ s_
        if (big > 5.0 or t < 1.0 or not pd_hessian) and refreshes < 40:
            # far from the quadratic region (a capped or shortened step, or negative curvature): a fresh
            # difference Hessian, as BFGS updates learn flat directions too slowly
            H = fd_hessian(grad, x, lower)
            fresh, refreshes = True, refreshes + 1
            continue
        if s_ @ y_ > 1e-12 * np.linalg.norm(s_) * np.linalg.norm(y_) and s_ @ Hs > 0:  # BFGS update
            H = H + np.outer(y_, y_) / (y_ @ s_) - np.outer(Hs, Hs) / (s_ @ Hs)
        fresh = False
    return full(x), value, its, note


def _variance_entries(prob):
    """Indices in theta of the SD-like entries (scalar and diagonal terms) that may sit at 0."""
    out, start = [], sum(prob.p)
    for st in prob.structures:
        if st is None:
            continue
        for term in st.terms:
            if term.q == 1 or not term.correlated:
                out.extend(range(start, start + term.n_theta))
            start += term.n_theta
    return out


def fit_zi(prob, theta0, maxiter=300, tol=1e-7, polish=200):
    """Minimise the Laplace -log-likelihood from `theta0`; Newton polish; Hessian for standard errors.

    The covariance parameters are unbounded: the likelihood is unchanged when a column of Lambda_k
    changes sign, so a variance at 0 is an interior stationary point, not a wall the search sticks to;
    `normalise_signs` makes the diagonals non-negative at the end.  An SD whose value at exactly 0 is as
    good (within 1e-7) is set to 0 (a singular fit, as lme4's boundary) and the others polished again; it
    has no standard error.
    """
    t0 = time.perf_counter()
    obj = _Objective(prob)
    if not np.isfinite(obj.value(theta0)):
        raise ValueError("the model's log-likelihood is not finite at the start values (check the response "
                         "against the family: counts for Poisson/NB, positive values for Gamma)")
    res = minimize(obj.value_grad, theta0, jac=True, method="L-BFGS-B",
                   options={"maxiter": maxiter, "maxfun": 3 * maxiter, "ftol": 1e-13, "gtol": 1e-9})
    message = f"L-BFGS-B: {res.message}"
    free = np.ones(prob.n_params, bool)
    theta, value, n_pol, note = _polish(obj, np.asarray(res.x, float), free, tol, polish)
    n_iter = int(res.nit) + n_pol
    for j in _variance_entries(prob):  # a variance at its boundary: fix it at 0
        if abs(theta[j]) < 0.05:
            trial = theta.copy()
            trial[j] = 0.0
            if obj.value(trial) <= value + 1e-7:
                theta, free[j] = trial, False
                value = obj.value(theta)
    if not free.all():
        theta, value, n_pol, note = _polish(obj, theta, free, tol, polish)
        n_iter += n_pol
        message += "; a random-effects SD at 0 (boundary)"
    message += note
    theta = normalise_signs(prob, theta)
    st = obj.state(theta)
    value, g = obj.value_grad(theta)
    lower = np.full(int(free.sum()), -np.inf)

    def grad_free(x):
        full = theta.copy()
        full[free] = x
        return obj.grad(full)[free]

    Hf = fd_hessian(grad_free, theta[free], lower)
    _, decrement, _ = _newton_step(Hf, g[free])
    converged = bool(np.isfinite(decrement) and decrement < max(tol, 1e-6))
    cov_f, flat_f = covariance(Hf)
    p = theta.size
    H, cov, flat = np.full((p, p), np.nan), np.full((p, p), np.nan), np.zeros(p, bool)
    H[np.ix_(free, free)], cov[np.ix_(free, free)], flat[free] = Hf, cov_f, flat_f
    if flat.any():
        message += (f"; the Hessian is not positive definite at the returned point ({int(flat.sum())} parameters "
                    "in its flat directions have no standard error)")
    return ZIFit(theta=theta, value=float(st.value), gradient=g, hessian=H, cov=cov, u=st.u, eta=st.eta,
                 converged=converged, decrement=decrement, message=message, n_iterations=n_iter,
                 n_evaluations=obj.count, seconds=time.perf_counter() - t0, at_bound=~free, flat=flat)


def covariance(H, rel=1e-7, loading=0.1):
    """(inverse Hessian, flat): where H is not positive definite every entry is NaN (as glmmTMB's NA), and
    `flat` marks the parameters that carry its flat or negative directions (eigenvector loadings >
    `loading`; typically zero-part coefficients running off to +-infinity).  Holding those fixed would
    give the others smaller standard errors than their marginal ones (they stay coupled through the
    combination that runs off), so none are reported."""
    p = H.shape[0]
    if not np.all(np.isfinite(H)):
        return np.full((p, p), np.nan), np.ones(p, bool)
    w, V = np.linalg.eigh(H)
    small = w <= rel * max(1.0, np.max(np.abs(w)))
    if not small.any():
        return np.linalg.inv(H), np.zeros(p, bool)
    return np.full((p, p), np.nan), np.any(np.abs(V[:, small]) > loading, axis=1)


def normalise_signs(prob, theta):
    """Columns of each Lambda_k with a negative diagonal flipped (the same model)."""
    theta = np.array(theta, float)
    pieces = prob.split(theta)
    start = sum(prob.p)
    for k, s in enumerate(prob.structures):
        if s is None:
            continue
        lams = s.unpack(pieces[3 + k])
        for L in lams:
            sign = np.where(np.diag(L) < 0, -1.0, 1.0)
            L *= sign[None, :]
        theta[start:start + s.n_cov_params] = s.pack(lams)
        start += s.n_cov_params
    return theta
