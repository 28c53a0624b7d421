"""Gaussian identity mixed models of any random-effects structure: the profiled REML/ML deviance.

With b = Lambda u (`_structure`) and the blocked factor L of [Z Lambda, X, y]'W[Z Lambda, X, y] + diag(I, 0, 0)
(`_pls.Factor` with F = [X y]), lme4's JSS paper (section 3.4-3.5) gives, with r^2 = L_yy^2 the
penalised residual sum of squares, L_X the X block of L and n the number of observations,

    -2 log L_ML(theta)   = log|L_Z|^2 + n (1 + log(2 pi r^2 / n)),
    -2 log L_REML(theta) = log|L_Z|^2 + log|L_X|^2 + (n - p) (1 + log(2 pi r^2 / (n - p))),

each plus -sum log w_i for prior (variance) weights w.  The cross-products are formed once, so one
evaluation costs a factorisation of the blocks only (MixedModels.jl's approach), independent of n.
Also here: the bounded optimiser shared with the GLMM driver (`minimize_bounded`).
"""
from dataclasses import dataclass

import numpy as np
from scipy import linalg, optimize
from scipy.linalg import lapack

from ._boundary import snap_to_bounds
from ._centring import centred_structure, centring_maps, to_original
from ._pls import Factor, Layout, crossprods
from ._polish import _newton_polish
from ._profile_gradient import profile_gradient
from ._schur import attach_schur_pairs, scale_rest_blocks, schur_pair, schur_product


# ----------------------------------------------------------------------------- optimiser
@dataclass
class BoundedResult:
    x: np.ndarray
    f: float
    hess: np.ndarray  # finite-difference Hessian at x over all coordinates (None when not computed)
    free: np.ndarray  # bool: coordinates not held at their lower bound
    converged: bool
    message: str
    n_iterations: int
    n_evaluations: int
    decrement: float


class Counted:
    """A scalar objective that counts its calls and remembers its best point; inf for failures."""

    def __init__(self, fun):
        self.fun, self.n = fun, 0
        self.best_x, self.best_f = None, np.inf

    def __call__(self, x):
        self.n += 1
        try:
            f = float(self.fun(np.asarray(x, float)))
        except (linalg.LinAlgError, FloatingPointError, ValueError, np.linalg.LinAlgError):
            f = np.inf
        if not np.isfinite(f):
            return np.inf
        if f < self.best_f:
            self.best_x, self.best_f = np.array(x, float), f
        return f


def minimize_bounded(fun, x0, lb, maxiter=200, tol=1e-6, step=1e-4, polish=True, fd_step=None, rough=False,
                     fg=None, probes=None, quasi_polish=False):
    """Minimise `fun` subject to x >= lb: L-BFGS-B on finite differences, then a check that the end is
    a minimum: central-difference gradient and Hessian over the free coordinates, Newton steps while
    the scaled gradient g'H^{-1}g / 2 exceeds `tol`, and at each coordinate held at its bound a probe
    inside (an even objective has a zero slope there at a maximum too); a better probe restarts the search.
    ``fg(x) -> (f, gradient)``, when given, replaces the finite differences (L-BFGS-B's gradient, and the
    polish's Hessian from differences of the gradient).  ``probes(x) -> list of points``, when given, adds
    structural probes at each end (`_boundary.ridge_probes`: a zero diagonal of Lambda_k, where moving it alone finds nothing).
    ``quasi_polish``: the polish's later Hessians BFGS updates (`_polish._newton_polish`); ``hess`` is then no
    exact one.
    """
    obj = Counted(fun)
    fgc = None
    if fg is not None:
        last = []  # (x, f, g) of the last call: the polish starts where L-BFGS-B ended

        def fgc(x):
            x = np.asarray(x, float)
            if last and np.array_equal(x, last[0]):
                return last[1], last[2].copy()
            obj.n += 1
            try:
                f, g = fg(x)
            except (linalg.LinAlgError, FloatingPointError, ValueError, np.linalg.LinAlgError):
                return np.inf, np.full(len(x), np.nan)
            if np.isfinite(f) and f < obj.best_f:
                obj.best_x, obj.best_f = np.array(x, float), float(f)
            last[:] = [x.copy(), f, np.array(g, float)]
            return f, g

        def lbfgs_fun(x):
            f, g = fgc(x)
            return (f, g) if np.isfinite(f) and np.all(np.isfinite(g)) else (1e300, np.zeros(len(x)))
    x0 = np.maximum(np.asarray(x0, float), lb)
    bounds = [(None if not np.isfinite(b) else b, None) for b in lb]
    iters = 0
    x = x0
    message = ""
    H = None
    decrement = np.inf
    for _restart in range(6):
        res = optimize.minimize(obj if fgc is None else lbfgs_fun, x, method="L-BFGS-B", bounds=bounds,
                                jac=None if fgc is None else True,
                                options={"maxiter": maxiter, "ftol": 1e-9 if rough else 1e-11,
                                         "gtol": 1e-4 if rough else 1e-6, "maxls": 40,
                                         **({"eps": fd_step} if fd_step else {})})
        iters += int(res.nit)
        x = obj.best_x if obj.best_x is not None else np.asarray(res.x, float)
        f = obj.best_f
        if not np.isfinite(f):
            return BoundedResult(x, np.inf, None, np.ones(len(x), bool), False,
                                 "no finite objective value was found", iters, obj.n, np.inf)
        message = str(res.message)
        if not polish:
            return BoundedResult(x, f, None, x > lb, bool(res.success), message, iters, obj.n, np.nan)
        x, f = snap_to_bounds(obj, x, f, lb)
        # probe inside each coordinate held at its bound
        better = None
        for i in np.flatnonzero(x <= lb):
            for h in (1e-2, 1e-1):
                xt = x.copy()
                xt[i] = lb[i] + h * max(1.0, abs(lb[i]) if np.isfinite(lb[i]) else 1.0)
                ft = obj(xt)
                if ft < f - 1e-9 * (1.0 + abs(f)):
                    better = xt
                    break
            if better is not None:
                break
        for xt in ([] if better is not None or probes is None else probes(x)):
            ft = obj(np.maximum(xt, lb))
            if ft < f - 1e-9 * (1.0 + abs(f)):
                better = np.maximum(xt, lb)
                break
        if better is not None:
            x = better
            continue
        x, f, H, free, decrement, ok = _newton_polish(obj, x, f, lb, tol, step, fgc, quasi=quasi_polish)
        if ok:
            return BoundedResult(x, f, H, free, True, "converged: scaled gradient below tolerance", iters, obj.n,
                                 decrement)
        message = f"the scaled gradient g'H^-1g/2 = {decrement:.3g} stays above {tol:g}"
        if probes is not None and not np.isfinite(decrement):  # not a minimum (a saddle): turn every column/row
            for xt in probes(x, near=False):
                xt = np.maximum(xt, lb)
                if obj(xt) < obj.best_f - 1e-9 * (1.0 + abs(obj.best_f)):
                    x = xt
                    break
    return BoundedResult(x, f, H, x > lb, False, message, iters, obj.n, decrement)


# ----------------------------------------------------------------------------- Gaussian profile
class GaussianProfile:
    """The profiled REML/ML deviance of a Gaussian identity model at covariance parameters theta.

    Cross-products of [Z X y] with the prior weights are formed once here; `__call__` costs one
    blocked factorisation.
    """

    def __init__(self, structure, y, X, weights=None, reml=True, n_obs=None, log_weights=0.0, condition=False):
        self.structure = structure
        self.layout = Layout(structure)
        self.y, self.X = y, X
        self.n, self.p = X.shape
        self.n_obs = float(self.n if n_obs is None else n_obs)
        self.reml = reml
        w = np.ones(self.n) if weights is None else np.asarray(weights, float)
        # condition: the cross-products of the OLS residual over its RMS, (y - X c) / s, in place of y: y = 1e6 +
        # 1e3 e loses 6 digits of r^2 to cancellation in [X y]'[X y] otherwise; beta = c + s beta_t, sigma = s sigma_t
        self.shift, self.yscale = np.zeros(self.p), 1.0
        if condition:
            self.shift, self.yscale, y = conditioned_response(y, X, w)
        self.cp = crossprods(self.layout, w, np.column_stack([X, y]))
        attach_schur_pairs(self.cp, self.layout)  # scalar terms: the Schur products without sparse x sparse
        self.log_weights = log_weights  # sum of log prior weights: the density's log sqrt(w) terms
        self.n_calls = 0

    def factor(self, params):
        """(Factor, per-term lambdas) at the covariance parameters; the last one is kept (the search ends where it
        last evaluated, and the fit's solution and conditional variances start there)."""
        params = np.asarray(params, float)
        last = self.__dict__.get("_last")
        if last is not None and np.array_equal(last[0], params):
            return last[1], last[2]
        self._last = None  # free the previous factor before building the next (peak memory)
        lams = self.layout.lambdas(self.structure.unpack(params))
        fac = Factor(self.layout, self.cp, lams)
        self._last = (params.copy(), fac, lams)
        return fac, lams

    def deviance(self, params, factor=None):
        """-2 log-likelihood (REML or ML) at the covariance parameters; inf where undefined."""
        self.n_calls += 1
        fac = self.factor(params)[0] if factor is None else factor
        LFF = fac.LFF
        if LFF is None:
            return np.inf
        p = self.p
        r2 = LFF[p, p] ** 2
        if not r2 > 0:
            return np.inf
        dof = self.n_obs - p if self.reml else self.n_obs
        dev = fac.logdet_Z + dof * (1.0 + np.log(2.0 * np.pi * r2 / dof))
        if self.reml:
            dev += 2.0 * float(np.sum(np.log(np.diag(LFF)[:p])))
        return dev - self.log_weights + 2.0 * dof * np.log(self.yscale)

    def __call__(self, params):
        return self.deviance(params)

    #: `value_and_grad` is analytic for every structure
    has_gradient = True

    def value_and_grad(self, params):
        """(deviance, its gradient in theta).  Any vector term: `_profile_gradient.profile_gradient` (exact at a
        singular Lambda too).  Scalar terms, on the Schur pairs' fast path: with P_k the projection on term k,
        H = Lambda'AL + I,
        r the weighted residual at the PLS solution and V = W^-1 + Z Lambda Lambda' Z':

            d log|H| / d theta_k      = (2 / theta_k) (n_k - tr(H^-1 P_k)),
            d r^2 / d theta_k         = -2 theta_k |Z_k'W r|^2                (envelope: u = Lambda'Z'W r),
            d log|X'V^-1X| / d theta_k = -2 theta_k |Z_k'V^-1 X L_X^-T|_F^2    (REML),

        the first read as its limit 0 at theta_k = 0 (the deviance is even in a scalar theta_k).
        """
        if not all(q == 1 for q in self.layout.q):
            return profile_gradient(self, params)
        pairs = self.cp.__dict__.get("_pairs")
        if self.layout.nR and pairs is None:  # the factor's Schur product and the gradient's trace product in one pass
            lam1 = float(self.layout.lambdas(self.structure.unpack(params))[0][0, 0])
            d1 = np.sqrt(1.0 + lam1 * lam1 * self.cp.A11[:, 0, 0])
            schur_pair(self.cp, lam1, lam1 / d1, ("trace", lam1), lam1 / d1 ** 2)
        fac, lams = self.factor(params)
        dev = self.deviance(params, fac)
        if not np.isfinite(dev):
            return dev, np.full(len(params), np.nan)
        lay, cp, p = self.layout, self.cp, self.p
        n1, nR = lay.n1, lay.nR
        LFF = fac.LFF
        theta = np.array([float(lams[pos][0, 0]) for pos in range(len(lams))])  # engine order
        beta, _, _, u, _, _ = self._solution(params, fac)  # on the conditioned response, as the cross-products
        d1 = fac.L11[:, 0, 0]

        AR1T = cp.AR1.T

        def A_times(v):  # (Z'WZ) v in the engine's order
            out1 = cp.A11[:, 0, 0] * v[:n1]
            if not nR:
                return out1
            out1 = out1 + AR1T @ v[n1:]
            return np.concatenate([out1, cp.AR1 @ v[:n1] + cp.ARR @ v[n1:]])

        lam_vec = np.concatenate([np.full(lay.n_levels[pos], theta[pos]) for pos in range(len(theta))])
        ZtWX = np.concatenate([cp.AF1[:p].T, cp.AFR[:p].T])  # (q, p)
        ZtWy = np.concatenate([cp.AF1[p], cp.AFR[p]])
        ZtWr = ZtWy - ZtWX @ beta - A_times(lam_vec * u)
        r2 = LFF[p, p] ** 2
        # tr(H^-1 P_k): the R block's diagonal of S^-1, and for the first term D^-2 + tr(S^-1 LR1 D^-2 LR1')
        tr = np.empty(len(theta))
        tr[0] = float(np.sum(1.0 / d1 ** 2))
        if nR:
            Sinv, info = lapack.dpotri(fac.LRR, lower=1)  # lower triangle of S^-1
            if info != 0:
                return dev, np.full(len(params), np.nan)
            dS = np.diag(Sinv).copy()
            if pairs is not None:  # tr(S^-1 lamR AR1 diag(w) AR1' lamR) = w'q, q_j = a_j' lamR S^-1 lamR a_j: a gather
                q = pairs.quad(scale_rest_blocks(Sinv, lay, theta))
                fac.sinv_parts = (dS, q)  # inverse_diag_blocks at this point needs nothing more
                tr[0] += theta[0] ** 2 * float(np.sum(q / d1 ** 4))
            else:
                lamR = fac.lamR
                G = schur_product(cp, ("trace", theta[0]), theta[0] / d1 ** 2)  # LR1 D^-2 LR1' = lamR G lamR
                # tr(S^-1 lamR G lamR) from the lower triangle dpotri wrote (the upper holds the factor's zeros)
                M = np.multiply(Sinv, G, out=Sinv)  # Sinv is not needed beyond its diagonal: no second nR x nR array
                tr[0] += 2.0 * float(lamR @ (M @ lamR)) - float(np.sum(dS * np.diag(G) * lamR ** 2))
            for pos in range(1, len(theta)):
                lo, hi = lay.offsets[pos] - n1, lay.offsets[pos + 1] - n1
                tr[pos] = float(np.sum(dS[lo:hi]))
        n_k = np.array(lay.n_levels, float)
        with np.errstate(divide="ignore", invalid="ignore"):
            g_logdet = np.where(theta > 0, 2.0 / theta * (n_k - tr), 0.0)
        g_r2 = np.array([-2.0 * theta[pos] * float(np.sum(ZtWr[lay.offsets[pos]:lay.offsets[pos + 1]] ** 2))
                         for pos in range(len(theta))])
        dof = self.n_obs - p if self.reml else self.n_obs
        grad = g_logdet + dof * g_r2 / r2
        if self.reml:  # Q = Z'V^-1X = Z'WX - A Lambda H^-1 Lambda Z'WX
            C = lam_vec[:, None] * ZtWX
            Y = np.column_stack([np.concatenate(fac.backward(*fac.forward(C[:n1, j], C[n1:, j])))
                                 for j in range(p)])
            Q = ZtWX - np.column_stack([A_times(lam_vec * Y[:, j]) for j in range(p)])
            QL = linalg.solve_triangular(LFF[:p, :p], Q.T, lower=True, check_finite=False)  # L_X^-1 Q'
            grad += np.array([-2.0 * theta[pos] * float(np.sum(QL[:, lay.offsets[pos]:lay.offsets[pos + 1]] ** 2))
                              for pos in range(len(theta))])
        out = np.empty(len(theta))
        out[lay.order] = grad  # engine order -> the packer's (user's) order
        return dev, out

    def solution(self, params, fac=None):
        """(beta, cov_beta, sigma^2, u (internal), factor, lams) at the covariance parameters."""
        beta, cov_beta, sigma2, u, fac, lams = self._solution(params, fac)
        s = self.yscale
        return self.shift + s * beta, s * s * cov_beta, s * s * sigma2, s * u, fac, lams

    def _solution(self, params, fac=None):
        """`solution` for the response of the cross-products (the conditioned one with ``condition``)."""
        fac, lams = self.factor(params) if fac is None else (fac, None)
        LFF, p = fac.LFF, self.p
        if LFF is None:
            raise linalg.LinAlgError("the fixed-effects block is not positive definite")
        LX = LFF[:p, :p]
        beta = linalg.solve_triangular(LX, LFF[p, :p], lower=True, trans="T")
        y1 = fac.LF1[p]
        yR = fac.LFR[p]
        u1, uR = fac.backward(y1, yR, beta, fac.LF1[:p], fac.LFR[:p])
        u = np.concatenate([u1, uR])
        dof = self.n_obs - p if self.reml else self.n_obs
        sigma2 = LFF[p, p] ** 2 / dof
        LXinv = linalg.solve_triangular(LX, np.eye(p), lower=True)
        return beta, sigma2 * (LXinv.T @ LXinv), sigma2, u, fac, lams


def conditioned_response(y, X, w):
    """(c, s, (y - X c) / s): c the weighted OLS coefficients, s the residual's weighted RMS -- the response of
    `GaussianProfile`'s ``condition`` (beta = c + s beta_t, sigma = s sigma_t); (0, 1, y) where they fail."""
    sw = np.sqrt(w)
    c = np.linalg.lstsq(X * sw[:, None], y * sw, rcond=None)[0]
    r = y - X @ c
    s = float(np.sqrt(np.sum(w * r * r) / len(y)))
    if np.all(np.isfinite(c)) and np.isfinite(s) and s > 0.0:
        return c, s, r / s
    return np.zeros(X.shape[1]), 1.0, y


def fit_gaussian(structure, y, X, weights=None, reml=True, n_obs=None, maxiter=200, tol=1e-6, log_weights=None):
    """Profiled REML/ML fit: (profile, BoundedResult).  ``n_obs`` (default: the rows) and ``log_weights`` (default:
    sum log w) as `GaussianProfile` takes them: frequency weights count sum(f) observations and sum f log v
    (`_weights.gaussian_weights`)."""
    log_w = log_weights
    if log_w is None:
        log_w = 0.0 if weights is None else float(np.sum(np.log(weights)))
    maps = centring_maps(structure)
    if maps is None:
        prof = GaussianProfile(structure, y, X, weights, reml, n_obs, log_w, condition=True)
        return prof, search_profile(prof, structure, y, X, weights, maxiter, tol)
    # a slope far from zero: the search on centred columns (`_centring`), its optimum mapped back
    centred = centred_structure(structure, maps)
    prof_c = GaussianProfile(centred, y, X, weights, reml, n_obs, log_w, condition=True)
    res = search_profile(prof_c, centred, y, X, weights, maxiter, tol)
    del prof_c
    prof = GaussianProfile(structure, y, X, weights, reml, n_obs, log_w, condition=True)
    res.x = to_original(structure, maps, centred, res.x)
    res.f, res.hess, res.free = prof(res.x), None, res.x > structure.lower_bounds()
    return prof, res


def search_profile(prof, structure, y, X, weights=None, maxiter=200, tol=1e-6):
    """The bounded search of a GaussianProfile from the moment start (fit_gaussian's, and fit_many's on
    shared cross-products): a BoundedResult.  With an analytic gradient, quasi-Newton steps from the start's
    Hessian first (`newton_search`); L-BFGS-B and the polish where they do not settle it."""
    # the decrement is in deviance units; Newton's last steps are cheap, so far below the caller's tol
    x0, lb, tol = moment_start(structure, y, X, weights), structure.lower_bounds(), min(tol, 1e-6) * 1e-3
    fg = prof.value_and_grad if prof.has_gradient else None
    if fg is None:
        return minimize_bounded(prof, x0, lb, maxiter=maxiter, tol=tol)
    if np.any(x0 <= MIN_MOMENT_START):  # a moment estimate at 0: likely a singular fit, L-BFGS-B's bounds suit it
        return minimize_bounded(prof, x0, lb, maxiter=maxiter, tol=tol, fg=fg, rough=True, quasi_polish=True)
    if np.all(lb == 0.0):
        # scalar terms, searched in log theta: the deviance's curvature in a small theta changes fast on the theta
        # scale (it is even in theta), so Newton from the start's Hessian there takes about half the steps

        def fg_log(v):
            theta = np.exp(v)
            f, g = fg(theta)
            return f, g * theta

        # the first engine term's theta last: the other differences reuse the start's Schur product (`_schur` cache)
        first = prof.layout.order[0]
        fd_order = [j for j in range(len(x0)) if j != first] + [first]
        res = newton_search(fg_log, np.log(x0), np.full(len(x0), np.log(MIN_NEWTON_THETA)), tol,
                            min(maxiter, 50), fd_order=fd_order)
        res.x = np.exp(res.x)
        res.free = res.x > 0.0
        if res.hess is not None:  # to theta's scale (g = 0 at the optimum: the chain rule's curvature term drops)
            res.hess = res.hess / np.outer(res.x, res.x)
    else:
        res = newton_search(fg, x0, lb, tol, min(maxiter, 50))
    if res.converged:
        return res
    fallback = minimize_bounded(prof, res.x if np.isfinite(res.f) else x0, lb, maxiter=maxiter, tol=tol, fg=fg,
                                rough=True, quasi_polish=True)
    fallback.n_evaluations += res.n_evaluations
    fallback.n_iterations += res.n_iterations
    return fallback


#: the log-theta Newton search hands over to the bounded search when a theta goes below this (a singular fit)
MIN_NEWTON_THETA = 1e-2


def newton_search(fg, x0, lb, tol, maxiter=50, step=1e-4, fd_order=None):
    """Quasi-Newton search for a smooth objective with an analytic gradient ``fg(x) -> (f, g)`` from a good start:
    the Hessian from forward differences of the gradient at x0 (len(x0) evaluations), then Newton steps with
    halving and BFGS updates of that Hessian, until the decrement g'H^-1g/2 < tol.  From the moment start this
    takes about half L-BFGS-B's evaluations plus its polish (L-BFGS-B's first steps, with no curvature yet,
    overshoot).  A BoundedResult, ``converged=False`` (for the caller's L-BFGS-B fallback) as soon as the
    Hessian is not positive definite, a step meets a lower bound or no step decreases f.  ``fd_order``: the order
    of the Hessian's difference columns (an objective that caches work by some coordinate wants it last)."""
    n_eval = 0

    def call(x):
        nonlocal n_eval
        n_eval += 1
        try:
            f, g = fg(x)
        except (linalg.LinAlgError, FloatingPointError, ValueError, np.linalg.LinAlgError):
            return np.inf, np.full(len(x), np.nan)
        return float(f), np.asarray(g, float)

    x = np.maximum(np.asarray(x0, float), lb)
    k = len(x)

    def out(converged, message, H=None, decrement=np.inf, iters=0):
        return BoundedResult(x, f, H, x > lb, converged, message, iters, n_eval, decrement)

    f, g = call(x)
    if not (np.isfinite(f) and np.all(np.isfinite(g))):
        return out(False, "no finite objective at the start")
    h = step * np.maximum(1.0, np.abs(x))
    if np.any(x - lb < 10.0 * h):
        return out(False, "start at a bound")
    H = np.empty((k, k))
    for j in (range(k) if fd_order is None else fd_order):
        e = np.zeros(k)
        e[j] = h[j]
        gj = call(x + e)[1]
        H[:, j] = (gj - g) / h[j]
    H = 0.5 * (H + H.T)
    decrement = np.inf
    for it in range(maxiter):
        try:
            c = linalg.cho_factor(H)
        except linalg.LinAlgError:
            return out(False, "Hessian not positive definite", H, decrement, it)
        d = -linalg.cho_solve(c, g)
        decrement = -0.5 * float(g @ d)
        if not np.all(np.isfinite(d)):
            return out(False, "Hessian not positive definite", H, decrement, it)
        if decrement < tol:
            return out(True, "converged: scaled gradient below tolerance", H, decrement, it)
        alpha = 1.0
        for _ in range(20):
            xt = x + alpha * d
            if np.any(xt <= lb):  # a bound: the bounded search (and its probes) takes over; free marks the others
                res = out(False, "a step meets a bound", H, decrement, it)
                res.free = xt > lb
                return res
            ft, gt = call(xt)
            if np.isfinite(ft) and ft < f and np.all(np.isfinite(gt)):
                break
            alpha *= 0.5
        else:
            # no decrease along Newton's direction: at rounding level when the decrement is tiny
            ok = decrement < 1e3 * tol
            return out(ok, "converged: no decrease along Newton's direction at rounding level" if ok
                       else "no decrease along Newton's direction", H, decrement, it)
        s, yv = xt - x, gt - g
        sy = float(s @ yv)
        if sy > 1e-12 * float(np.linalg.norm(s) * np.linalg.norm(yv)):  # BFGS update: keeps H positive definite
            Hs = H @ s
            H = H + np.outer(yv, yv) / sy - np.outer(Hs, Hs) / float(s @ Hs)
        x, f, g = xt, ft, gt
    return out(False, f"no convergence in {maxiter} Newton steps", H, decrement, maxiter)


#: moment starts below this relative scale are raised to it: the profiled deviance is even in each theta, so its
#: slope vanishes at 0 and a start there would hardly move
MIN_MOMENT_START = 0.05


def moment_start(structure, y, X, weights=None):
    """Start for the covariance parameters: each scalar term's theta a moment estimate sqrt(sigma_k^2 / sigma^2), each
    vector term's Lambda_k diagonal, column by column as a scalar term's (halves the optimiser's evaluations on
    crossed designs; InstEval's ``(service|dept)`` 58 -> 25).

    For term k alone on the OLS residual r, level j's weighted least-squares coefficient b_j (a_j = sum w z^2) has
    E sum_j a_j b_j^2 = sigma_k^2 (sum a - sum a^2 / sum a) + n_levels sigma_w^2 (the ANOVA estimator, unbalanced
    form), sigma_w^2 the within-level residual variance; sigma^2 = the OLS variance less the terms' variances.
    Only a start: the optimum does not depend on it.
    """
    start = structure.start_params()
    w = np.ones(len(y)) if weights is None else np.asarray(weights, float)
    with np.errstate(all="ignore"):
        sw = np.sqrt(w)
        beta = np.linalg.lstsq(X * sw[:, None], y * sw, rcond=None)[0]
        r = y - X @ beta
        n, p = X.shape
        total = float(np.sum(w * r * r)) / max(n - p, 1)
        sig, var, pos_of = [], [], []
        pos = 0
        for t in structure.terms:
            rows, cols = t.theta_positions()
            for c in range(t.q):  # a vector term: each z column alone, on Lambda_k's diagonal (off-diagonal 0)
                z = np.asarray(t.Z, float)[:, c]
                a = np.bincount(t.codes, weights=w * z * z, minlength=t.n_levels)
                b = np.bincount(t.codes, weights=w * z * r, minlength=t.n_levels) / np.where(a > 0, a, 1.0)
                within = float(np.sum(w * (r - z * b[t.codes]) ** 2)) / max(n - t.n_levels, 1)
                denom = float(np.sum(a) - np.sum(a * a) / np.sum(a))
                sig.append(max((float(np.sum(a * b * b)) - t.n_levels * within) / denom, 0.0))
                var.append(sig[-1] * float(np.sum(a) / np.sum(w)))  # its share of the OLS variance: mean w z^2
                pos_of.append(pos + int(np.flatnonzero((rows == c) & (cols == c))[0]))
            pos += t.n_theta
        resid = max(total - sum(var), 0.1 * total)
        theta = np.sqrt(np.array(sig) / resid)
    if not (np.all(np.isfinite(theta)) and resid > 0):
        return start
    start[pos_of] = np.maximum(theta, MIN_MOMENT_START)
    return start
