"""Laplace and adaptive Gauss-Hermite marginal log-likelihood of a random-intercept GLMM.

Spherical form (as in Bates et al. 2015): u_j = sigma b_j with b_j ~ N(0, 1), so for group j

    L_j = (2 pi)^{-1/2} int exp(h_j(b)) db,   h_j(b) = sum_{i in j} log f(y_i | eta_i + sigma b) - b^2 / 2,

with eta the fixed part (X beta + offset).  The conditional mode b_j maximises h_j (penalised IRLS,
one Newton problem per group, all groups at once); H_j = -h_j''(b_j) = 1 + sigma^2 sum_i d_i with
d = -d^2 log f / d eta^2.  With K Gauss-Hermite nodes z_k, log-weights log w_k and c_j = sqrt(2 / H_j):

    log L_j ~ -log(pi H_j) / 2 + log sum_k w_k exp(h_j(b_j + c_j z_k) + z_k^2)

and K = 1 (z = 0, w = sqrt(pi)) is the Laplace value h_j(b_j) - log(H_j) / 2.  The gradient in
(beta, sigma, log phi) is analytic: the envelope terms plus the derivative of H_j and of the node
positions through the modes, which needs the third derivative of log f; the exact Hessian of the
Laplace value is in `_laplace_hessian` (fourth derivative, O(n p^2)).
Nothing else here is larger than O(n p); no loop runs over groups or rows.
"""
from dataclasses import dataclass

import numpy as np
from scipy import special

from ._gausshermite import gauss_hermite
from ._laplace_hessian import laplace_hessian
from ._segments import group_starts, group_sums, to_rows
from ._weights import take_rows


@dataclass
class GLMMData:
    """Rows sorted by group; float arrays on the engine's (scaled) parametrisation."""

    y: np.ndarray
    X: np.ndarray
    offset: np.ndarray
    m: np.ndarray  # prior weights: binomial trials, else 1
    const: np.ndarray  # data-only part of the log density
    starts: np.ndarray
    counts: np.ndarray
    # phi -> (value, d value / d log phi): the eta-free part of the log-likelihood that frequency weights
    # of a dispersion family add (`_weights.FrequencyTerm`, whose rows(rows) gives a
    # subset's); None without frequency weights
    dispersion_term: object = None
    aux: np.ndarray = None  # per-row data the kernel computes once from y (`Distribution.row_aux`), or None

    @property
    def n_groups(self):
        return len(self.counts)


def subset_groups(data, keep):
    """GLMMData with only the groups `keep` (sorted codes): for cheap estimates on large data."""
    rows = np.concatenate([np.arange(data.starts[j], data.starts[j] + data.counts[j]) for j in keep])

    counts = data.counts[keep]
    term = data.dispersion_term
    return GLMMData(y=data.y[rows], X=data.X[rows], offset=take_rows(data.offset, rows),
                    m=take_rows(data.m, rows), const=take_rows(data.const, rows), starts=group_starts(counts),
                    counts=counts,
                    dispersion_term=None if term is None else term.rows(rows),
                    aux=None if data.aux is None else data.aux[rows])


def evenly_spaced_groups(n_groups, k):
    """k group codes spread evenly over 0..n_groups-1."""
    return np.unique(np.linspace(0, n_groups - 1, k).astype(np.intp))


@dataclass
class Modes:
    """Conditional modes and the per-row/per-group quantities at them."""

    b: np.ndarray  # (G,) modes on the spherical scale
    eta: np.ndarray  # (n,) linear predictor at the modes
    h: np.ndarray  # (G,) h_j(b_j)
    H: np.ndarray  # (G,) 1 + sigma^2 sum d  (observed curvature)
    l1: np.ndarray  # (n,) d log f / d eta
    d: np.ndarray  # (n,) -d2 log f / d eta2
    t: np.ndarray  # (n,) -d3 log f / d eta3 (None unless asked for)
    converged: bool
    iterations: int


def matvec(X, v):
    """X v for a tall, thin X by numpy's own loop (einsum), not BLAS: a threaded BLAS call leaves its
    threads spinning for a while, and they compete with the element-wise work that follows."""
    return np.einsum("ij,j->i", X, v)


def rmatvec_rows(w, X, starts):
    """Per group sum_{i in j} w_i x_i, as a (G, p) array."""
    return group_sums(w[:, None] * X, starts)


def rmatvec(X, r):
    """X' r, by einsum for the same reason as `matvec`."""
    return np.einsum("ij,i->j", X, r)


def _h(dist, data, eta, b, phi):
    """h_j(b_j) = sum_{i in j} log f(y_i | eta_i) - b_j^2 / 2 for all groups."""
    ll = dist.evaluate(data.y, eta, data.m, phi, data.const, order=0, aux=data.aux)[0]  # the kernel, row-blocked
    return group_sums(ll, data.starts) - 0.5 * b * b


def _gradient_noise2(eta, d, sigma, b, starts):
    """Squared rounding floor of h_j'(b): eta carries a relative error eps, which moves each row's
    score by d_i eps |eta_i|:  (sigma eps)^2 sum_i (d_i eta_i)^2 + (eps b_j)^2."""
    eps = np.finfo(float).eps
    return (sigma * eps) ** 2 * group_sums((d * eta) ** 2, starts) + (eps * b) ** 2


def node_values(dist, data, eta_fixed, sigma, phi, b, H, z, keep_eta=False):
    """h_j at the adaptive nodes b_j + sqrt(2 / H_j) z_k, as a (G, K) array, and each node's eta (or None)."""
    c = np.sqrt(2.0 / H)
    node_h = np.empty((len(b), len(z)))
    node_eta = []
    for k in range(len(z)):
        bk = b + c * z[k]
        eta_k = eta_fixed + sigma * to_rows(bk, data.counts)
        node_h[:, k] = _h(dist, data, eta_k, bk, phi)
        node_eta.append(eta_k if keep_eta else None)
    return node_h, node_eta


def agq_log_integrals(node_h, H, z, logw):
    """(log L_j, the log of each node's term) by adaptive Gauss-Hermite:
    log L_j = -log(pi H_j) / 2 + log sum_k w_k exp(h_j(node_k) + z_k^2)."""
    terms = logw + node_h + z * z
    return -0.5 * np.log(np.pi * H) + special.logsumexp(terms, axis=1), terms


def _point(dist, data, eta, b, phi, order):
    """(h, l1, d, t) at eta from one fused pass: a step that is accepted needs no second evaluation."""
    ll, l1, d, t = dist.evaluate(data.y, eta, data.m, phi, data.const, order=order, aux=data.aux)
    return group_sums(ll, data.starts) - 0.5 * b * b, l1, d, t


#: Newton steps on a mode that move eta by at most this are taken without a line search (log-concave f);
#: after steps below FINAL_MODE_STEP the modes are converged as a rule, so log f is computed with them
SHORT_STEP = 0.1
FINAL_MODE_STEP = 1e-4
#: a mode whose curvature H_j = 1 + sigma^2 sum_i d_i (the prior's is 1) falls below this is flat: the
#: Laplace term -log(H_j)/2 grows without bound as H_j -> 0 while the true integral stays finite (only a
#: density that is not log-concave in eta gives H_j < 1), so the approximation does not apply there
FLAT_MODE = 1e-3


def log_link_modes(dist, y, eta_fixed, sigma, phi, starts, counts, b_start, maxiter=100):
    """Modes of a Poisson-log or Gamma-log model from group sums alone: O(G) work per Newton step.

    With a log link each row's mean at b factorises, mu_i = e^{a_i} e^{sigma b} (a = the fixed part), so
    the mode condition h'(b) = sigma sum_i l1_i - b = 0 of group j reads

        Poisson:  sigma (Y_j - M_j e^{sigma b}) - b = 0,        Y_j = sum y_i,  M_j = sum e^{a_i},
        Gamma:    sigma k (W_j e^{-sigma b} - n_j) - b = 0,     W_j = sum y_i e^{-a_i},  k = 1 / phi,

    i.e. sigma (alpha - beta e^{rho sigma b}) - b = 0 with beta rho > 0: a strictly concave problem.
    Newton steps (at most 2 on the eta scale) inside a bracket of the root, bisection when a step
    leaves it.  Returns b, or None when a sum is not finite.
    """
    if dist.name == "poisson":
        alpha, beta, rho = group_sums(y, starts), group_sums(np.exp(eta_fixed), starts), 1.0
    else:
        k = 1.0 / phi
        alpha, beta, rho = -k * counts, -k * group_sums(y * np.exp(-eta_fixed), starts), -1.0
    if not (np.all(np.isfinite(alpha)) and np.all(np.isfinite(beta))):
        return None
    b = np.zeros(len(counts)) if b_start is None else np.array(b_start, dtype=float)
    lo, hi = np.full_like(b, -np.inf), np.full_like(b, np.inf)
    cap = 2.0 / sigma
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(maxiter):
            e = np.exp(rho * sigma * b)
            grad = sigma * (alpha - beta * e) - b
            lo = np.where(grad > 0, np.maximum(lo, b), lo)
            hi = np.where(grad < 0, np.minimum(hi, b), hi)
            new = b + np.clip(grad / (1.0 + (sigma * sigma * rho) * beta * e), -cap, cap)
            outside = ((new < lo) | (new > hi)) & np.isfinite(lo) & np.isfinite(hi)  # on a bound: converged
            new = np.where(outside, 0.5 * (lo + hi), new)
            if not np.all(np.isfinite(new)):
                return None
            done = np.all(np.abs(new - b) <= 1e-13 * (1.0 + np.abs(b)))  # quadratic: the next is rounding
            b = new
            if done:
                break
    return b


def _inside_start(dist, eta_fixed, sigma, starts, counts):
    """Per group b = 0, or where the fixed part leaves a mean outside the support (identity/inverse links:
    eta > 0 needed) the smallest b putting every row's eta at least 1% of the group's largest |eta| inside:
    a start from which the mode search can proceed (from b = 0 it could not, and the point looked infeasible
    however far inside the support its mode lay)."""
    b = np.zeros(len(counts))
    if dist.full_support or not sigma > 0:
        return b
    low = np.minimum.reduceat(eta_fixed, starts)
    big = np.maximum.reduceat(np.abs(eta_fixed), starts)
    margin = 0.01 * np.maximum(big, 1e-8)
    return np.where(low > margin, 0.0, (margin - low) / sigma)


def conditional_modes(dist, data, eta_fixed, sigma, phi, b_start, tol=1e-10, maxiter=60, order=2, min_steps=0,
                      exact_start=False):
    """Modes b_j = argmax h_j(b) by Newton steps with per-group step halving (PIRLS in one dimension).

    The step uses the observed curvature where it is positive and the working-weight (Fisher)
    curvature otherwise; a step that lowers h_j is halved for that group only.  For a log-concave f
    (h_j strictly concave) a long step is judged by the gradient instead, |h_j'| must fall, so it
    needs no log f: log f is computed with the derivatives only where the steps are short (the last
    one, as a rule).  Returns None when no starting point inside the family's support is found.
    With ``order=3`` the modes carry t too.  ``min_steps`` Newton steps are taken even from a start
    inside the tolerance (a predicted start: one step squares its error, so the analytic gradient,
    which assumes exact modes, keeps full accuracy).  ``exact_start``: the start is the mode as a rule
    (`log_link_modes`), so log f and the derivatives are computed there at once.
    """
    counts, starts = data.counts, data.starts
    concave = dist.log_concave  # implies a full support
    b = np.zeros(data.n_groups) if sigma == 0.0 else np.array(b_start, dtype=float)
    eta = eta_fixed + sigma * to_rows(b, counts)
    h = None
    cheap_start = (min_steps > 0 or concave) and dist.full_support and not exact_start
    if cheap_start:
        # a start that is stepped from (or judged by its gradient): log f (and t) are needed only at the
        # next point, unless a long step must be line-searched (then h is computed below)
        _, l1, d, t = dist.evaluate(data.y, eta, data.m, phi, data.const, order=min(order, 2), loglik=False)
        if not (np.isfinite(group_sums(l1, starts)).all() and np.isfinite(group_sums(d, starts)).all()):
            h = np.full(data.n_groups, np.nan)  # overflow somewhere: the checked path below
        elif concave and min_steps == 0:
            t = None  # a start that may be the mode: t (and log f) are filled in at the end if so
    if h is not None or not cheap_start:
        h, l1, d, t = _point(dist, data, eta, b, phi, order)
    bad = np.zeros(data.n_groups, bool) if h is None else ~np.isfinite(h)
    if bad.any():  # warm start left the support: restart those groups at b = 0, or just inside the support
        b[bad] = _inside_start(dist, eta_fixed, sigma, starts, counts)[bad]
        eta = eta_fixed + sigma * to_rows(b, counts)
        h, l1, d, t = _point(dist, data, eta, b, phi, order)
        if not np.isfinite(h).all():
            return None
    converged = False
    it = 0
    s2 = sigma * sigma
    for it in range(1, maxiter + 1):
        grad = sigma * group_sums(l1, starts) - b
        H = s2 * group_sums(d, starts) + 1.0
        H_dir = H
        if not (H > 0).all():
            w = dist.working_weights(eta, data.m, phi)
            H_dir = np.where(H > 0, H, s2 * group_sums(w, starts) + 1.0)
        active = grad * grad > (tol * tol if it > min_steps else 0.0) * H_dir
        if active.any() and it > 3:  # slow: is the gradient at its rounding floor? (counts of 1e9)
            active &= grad * grad > 16.0 * _gradient_noise2(eta, d, sigma, b, starts)
        if not active.any():
            converged = True
            break
        l1 = d = t = None  # not needed at the old point any more
        step = np.where(active, grad / H_dir, 0.0)
        # a change of h below rounding noise (sums of many log densities) is not a decrease, and a
        # Newton step that promises less than 1e-9 is inside the quadratic region: only the support
        # can reject it.  So is a step moving eta by at most SHORT_STEP for a log-concave f whose third
        # eta-derivative is at most about its second (|t| <= d: logit, Poisson-log, Gamma-log): the
        # quadratic model of h then errs by a few per cent at most.
        searched = active & (0.5 * grad * step > 1e-9)
        if concave:
            searched &= np.abs(sigma * step) > SHORT_STEP
            # log f where this point is likely the mode: after a step this short Newton's next is below tol
            with_loglik = not searched.any() and np.max(np.abs(sigma * step)) < FINAL_MODE_STEP
        else:
            with_loglik = True
            if h is None:  # the start's log f was skipped: needed only for a searched step
                h = _h(dist, data, eta, b, phi) if searched.any() else np.full_like(b, -np.inf)
            noise = 1e-12 * (1.0 + np.abs(h))
        alpha = np.ones_like(b)
        stuck_any = False
        for _ in range(30):
            b_try = b + alpha * step
            eta_try = to_rows(sigma * b_try, counts)  # scale G values, not n
            eta_try += eta_fixed
            if with_loglik:
                h_try, l1, d, t = _point(dist, data, eta_try, b_try, phi, order)
            else:
                h_try, l1, d, t = dist.evaluate(data.y, eta_try, data.m, phi, data.const, order=2, loglik=False)
            if concave:  # a long step must lower |h'| (h' is decreasing); a short one only stay finite
                grad_try = sigma * group_sums(l1, starts) - b_try
                worse = active & (~np.isfinite(grad_try) | (searched & ~(np.abs(grad_try) < np.abs(grad))))
            else:
                worse = active & (~np.isfinite(h_try) | (searched & ~(h_try >= h - noise)))
            if not worse.any():
                break
            alpha[worse] *= 0.5
            stuck = worse & (alpha < 1e-6)
            if stuck.any():  # no ascent left along this direction: stay put
                step[stuck] = 0.0
                active &= ~stuck
                stuck_any = True
        b, eta, h = b_try, eta_try, h_try
        if stuck_any:  # a mode pinned against the edge of the support (or lost to rounding): not stationary
            break
    if not converged:  # H above belongs to the point before the last step
        H = s2 * group_sums(d, starts) + 1.0
    if h is None or (t is None and order == 3):  # stopped at a point evaluated without them
        h, l1, d, t = _point(dist, data, eta, b, phi, order)
    return Modes(b, eta, h, H, l1, d, t, converged, it)


class MarginalLikelihood:
    """Negative Laplace (nagq = 1) or AGQ (nagq > 1) log-likelihood and its gradient.

    Parameter vector: (gamma, s, log phi) with gamma the fixed effects for ``data.X``, s the signed
    random-intercept SD (sigma = |s|: the likelihood is even in s, so no bound is needed) and log phi
    present only for families with a dispersion.  Modes are warm-started between calls.
    """

    def __init__(self, dist, data, nagq=1, inner_tol=1e-10):
        self.dist, self.data, self.nagq = dist, data, int(nagq)
        self.p = data.X.shape[1]
        self.inner_tol = inner_tol
        self.u_warm = np.zeros(data.n_groups)  # modes on the eta scale, for warm starts
        self._tangent = None  # (u_warm, eta_fixed, sigma, log phi, d, H) at the last converged modes
        self.n_calls = 0
        self.last_modes = None
        self.last_theta = None  # the point last_modes belong to

    @property
    def has_exact_hessian(self):
        """True when `hessian` is analytic (Laplace with a fused kernel); else it is None."""
        return self.nagq == 1 and self.dist.has_exact_hessian

    @property
    def n_params(self):
        return self.p + 1 + int(self.dist.has_dispersion)

    def unpack(self, theta):
        gamma = theta[: self.p]
        sigma = abs(float(theta[self.p]))
        phi = float(np.exp(theta[self.p + 1])) if self.dist.has_dispersion else 1.0
        return gamma, sigma, phi

    def modes_at(self, theta):
        """Conditional modes at theta (retrying from b = 0 if the warm start fails); None if infeasible.
        The last evaluation's modes when it was at theta."""
        if self.last_modes is not None and np.array_equal(self.last_theta, theta):
            return self.last_modes
        self(theta, need_grad=False)
        if self.last_modes is None:
            self.u_warm = np.zeros_like(self.u_warm)
            self(theta, need_grad=False)
        return self.last_modes

    def _predicted_modes(self, eta_fixed, sigma, phi):
        """Warm start u = sigma b at the new point: one Newton step on the mode condition linearised
        at the last modes.

        With L1_j, D_j (sums of l1 and d over group j, taken at the last modes u0, where s0^2 L1 = u0)
        and r = phi0 / phi (l1 and d scale as 1 / phi), solving u = s^2 r (L1 - D (u - u0) - sum_i d_i
        d eta_i) gives u = s^2 r (u0 / s0^2 + D u0 - sum_i d_i d eta_i) / (1 + s^2 r D): exact to
        first order, and it follows the s^2 / (1 + s^2 D) growth of the modes over large steps in s.
        Without a usable tangent (none yet, u_warm set from outside, a curvature <= 0) the last
        modes themselves are the start.
        """
        tangent = self._tangent
        if tangent is None or tangent[0] is not self.u_warm or sigma <= 0:
            return self.u_warm
        u0, eta_old, s0, lphi0, d, H0 = tangent
        change = eta_fixed - eta_old
        change *= d
        ratio = sigma * sigma * np.exp(lphi0 - np.log(phi))
        D = (H0 - 1.0) / (s0 * s0)
        u = ratio * (u0 / (s0 * s0) + D * u0 - group_sums(change, self.data.starts))
        denom = 1.0 + ratio * D
        return np.where((H0 > 0) & (denom > 0), u / denom, u0)

    def modes(self, theta, order=2):
        gamma, sigma, phi = self.unpack(theta)
        eta_fixed = matvec(self.data.X, gamma)
        offset = self.data.offset
        if any(offset.strides) or offset.size and offset.flat[0] != 0.0:  # skip a stored-once zero offset
            eta_fixed += offset
        b_start = None
        if self.dist.log_link_modes and sigma > 0:  # the modes from group sums: one pass over the rows
            b_start = log_link_modes(self.dist, self.data.y, eta_fixed, sigma, phi, self.data.starts,
                                     self.data.counts, self.u_warm / sigma)
            min_steps, exact = 0, b_start is not None
        if b_start is None:
            u_start = self._predicted_modes(eta_fixed, sigma, phi)
            b_start = u_start / sigma if sigma > 0 else None
            min_steps, exact = int(u_start is not self.u_warm), False
        modes = conditional_modes(self.dist, self.data, eta_fixed, sigma, phi, b_start, self.inner_tol,
                                  order=order, min_steps=min_steps, exact_start=exact)
        if modes is not None and modes.converged:
            self.u_warm = sigma * modes.b
            # the tangent of the mode prediction (log-link modes come from group sums and need none)
            self._tangent = ((self.u_warm, eta_fixed, sigma, np.log(phi), modes.d, modes.H)
                             if sigma > 0 and modes.d is not None and not self.dist.log_link_modes else None)
        return eta_fixed, modes

    def edge_margins(self, theta):
        """How far each group's conditional mode is from the edge of the support, for Poisson-identity (the
        one pair whose modes can reach it: a zero count's mean may reach 0); None for every other pair.

        In a group whose lowest fixed part eta_k belongs to a zero count, h_j is finite at the edge
        b0 = -eta_k / sigma (where mu_k = 0 and mu_i = eta_i - eta_k) and concave, so its mode is inside
        the support iff h_j'(b0) > 0:

            c_j = sigma (sum_{i: y_i > 0} m_i y_i / (eta_i - eta_k) - sum_i m_i) + eta_k / sigma.

        Returns (c, dc/dtheta) for those groups ((G',), (G', len(theta))); other groups never reach it.
        """
        dist, data = self.dist, self.data
        if not (dist.name == "poisson" and dist.link_name == "identity"):
            return None
        gamma, sigma, _ = self.unpack(theta)
        k = len(theta)
        if not sigma > 0:
            return np.empty(0), np.empty((0, k))
        X, y, counts, starts = data.X, data.y, data.counts, data.starts
        m = np.broadcast_to(data.m, y.shape)
        eta = matvec(X, gamma) + data.offset
        group = to_rows(np.arange(data.n_groups), counts)
        low = np.lexsort((y == 0, eta, group))[starts]  # each group's lowest eta (a positive count on a tie)
        eta_k = eta[low]
        diff = eta - to_rows(eta_k, counts)
        pos = y > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(pos, m * y / np.where(pos, diff, 1.0), 0.0)
        keep = (y[low] == 0) & np.isfinite(group_sums(ratio, starts)) & (group_sums(pos & (diff <= 0), starts) == 0)
        S = group_sums(ratio, starts) - group_sums(m, starts)
        c = sigma * S + eta_k / sigma
        dS = rmatvec_rows(np.where(pos, -ratio / np.where(pos, diff, 1.0), 0.0), X, starts)  # sum w_i x_i
        wsum = group_sums(np.where(pos, -ratio / np.where(pos, diff, 1.0), 0.0), starts)
        x_k = X[low]
        grad = np.zeros((data.n_groups, k))
        with np.errstate(invalid="ignore"):  # groups not kept may hold inf
            grad[:, :self.p] = sigma * (dS - wsum[:, None] * x_k) + x_k / sigma
        grad[:, self.p] = (S - eta_k / sigma**2) * (1.0 if theta[self.p] >= 0 else -1.0)
        return c[keep], grad[keep]

    def hessian(self, theta):
        """Exact Hessian of -loglik at theta (`_laplace_hessian`), or None when it has no closed form here
        (AGQ, pairs without a fused kernel, a point outside the support)."""
        if not self.has_exact_hessian:
            return None
        theta = np.asarray(theta, float)
        md = self.last_modes
        if md is None or md.t is None or self.last_theta is None or not np.array_equal(self.last_theta, theta):
            self(theta, need_grad=True)
            md = self.last_modes
        if md is None:
            return None
        _, sigma, phi = self.unpack(theta)
        curvature = 0.0
        if self.data.dispersion_term is not None and self.dist.has_dispersion:  # eta-free: a difference is cheap
            step = 1e-4
            curvature = (self.data.dispersion_term(phi * np.exp(step))[1]
                         - self.data.dispersion_term(phi * np.exp(-step))[1]) / (2.0 * step)
        hess = -laplace_hessian(self.dist, self.data, sigma, phi, md, curvature)
        if theta[self.p] < 0:  # the objective is even in the signed SD s: d/ds = sign(s) d/dsigma
            hess[self.p, :] *= -1.0
            hess[:, self.p] *= -1.0
        return hess

    def __call__(self, theta, need_grad=True):
        """(-loglik, -gradient); (inf, nan) where no mode inside the support exists."""
        value, grad = self._evaluate(theta, need_grad)
        if value is None:
            return np.inf, np.full(self.n_params, np.nan)
        return -value, (None if grad is None else -grad)

    def _evaluate(self, theta, need_grad):
        self.n_calls += 1
        self.last_modes = None  # release the previous evaluation's row arrays first
        self.last_theta = np.array(theta, float)
        dist, data = self.dist, self.data
        gamma, sigma, phi = self.unpack(theta)
        if not (0.0 < phi < np.inf and np.isfinite(sigma) and np.all(np.isfinite(gamma))):
            return None, None  # log phi beyond the floating-point range, or a non-finite trial point
        eta_fixed, md = self.modes(theta, order=3 if need_grad else 2)
        if md is None or not md.converged:
            # no stationary mode: it sits on the edge of the mean's support (identity/inverse links),
            # where the Laplace and AGQ formulas do not apply; the point is treated as infeasible
            return None, None
        self.last_modes = md
        counts, starts = data.counts, data.starts
        b, H = md.b, md.H
        if np.any(H <= FLAT_MODE) or not np.all(np.isfinite(md.h)):
            return None, None
        z, logw = gauss_hermite(self.nagq)
        K = len(z)
        if K == 1:
            F = md.h - 0.5 * np.log(H)
        else:
            c = np.sqrt(2.0 / H)
            node_h, node_eta = node_values(dist, data, eta_fixed, sigma, phi, b, H, z,
                                           keep_eta=need_grad and data.y.size * K <= 4_000_000)
            F, terms = agq_log_integrals(node_h, H, z, logw)
        value = float(np.sum(F))
        extra_dlphi = 0.0
        if data.dispersion_term is not None and dist.has_dispersion:
            extra, extra_dlphi = data.dispersion_term(phi)
            value += extra
        if not np.isfinite(value):
            return None, None
        if not need_grad:
            return value, None

        # ---- gradient ------------------------------------------------------------------
        t = md.t
        L1 = group_sums(md.l1, starts)
        D = group_sums(md.d, starts)
        T = group_sums(t, starts)
        s2 = sigma * sigma
        if K == 1:
            E = np.zeros_like(b)
            A = -0.5 / H
            l1_bar = md.l1
            direct_sigma = b * L1
            if dist.has_dispersion:
                direct_lphi = group_sums(dist.dloglik_dlogphi(data.y, md.eta, data.m, phi, data.const), starts)
        else:
            pi = np.exp(terms - special.logsumexp(terms, axis=1, keepdims=True))  # (G, K)
            l1_bar = np.zeros_like(md.l1)
            node_L1 = np.zeros_like(pi)
            node_P = np.zeros_like(pi)
            for k in range(K):
                if pi[:, k].max() < 1e-17:  # this node adds nothing to any group's gradient
                    continue
                bk = b + c * z[k]
                eta_k = node_eta[k] if node_eta[k] is not None else eta_fixed + sigma * to_rows(bk, counts)
                ok = dist.feasible(eta_k)
                l1_k, _, _ = dist.derivatives(data.y, np.where(ok, eta_k, 1.0), data.m, phi, order=1)
                l1_k = np.where(ok, l1_k, 0.0)  # a node outside the support has weight 0
                node_L1[:, k] = group_sums(l1_k, starts)
                l1_bar += to_rows(pi[:, k], counts) * l1_k
                if dist.has_dispersion:
                    pk = dist.dloglik_dlogphi(data.y, np.where(ok, eta_k, 1.0), data.m, phi, data.const)
                    node_P[:, k] = group_sums(np.where(ok, pk, 0.0), starts)
            node_b = b[:, None] + c[:, None] * z[None, :]
            hb = sigma * node_L1 - node_b  # h_j'(b) at each node
            E = np.sum(pi * hb, axis=1)
            A = -0.5 / H - 0.5 * (c / H) * np.sum(pi * hb * z, axis=1)
            direct_sigma = np.sum(pi * node_b * node_L1, axis=1)
            if dist.has_dispersion:
                direct_lphi = np.sum(pi * node_P, axis=1)

        # fixed effects: every group-level term folds into one weight per row, then X' r
        r = l1_bar + s2 * to_rows(A, counts) * t - sigma * to_rows((E + s2 * sigma * A * T) / H, counts) * md.d
        grad = [rmatvec(data.X, r)]
        # random-intercept SD
        db_dsigma = (L1 - sigma * b * D) / H
        dH_dsigma = 2.0 * sigma * D + s2 * T * (b + sigma * db_dsigma)
        grad.append([np.sum(direct_sigma + E * db_dsigma + A * dH_dsigma)])
        if dist.has_dispersion:
            dscore = dist.dscore_dlogphi(data.y, md.eta, data.m, phi)  # None: (-l', -d), log f linear in 1/phi
            dL1, dD = (-L1, -D) if dscore is None else (group_sums(dscore[0], starts), group_sums(dscore[1], starts))
            db_dlphi = sigma * dL1 / H
            dH_dlphi = s2 * dD + s2 * sigma * T * db_dlphi
            grad.append([np.sum(direct_lphi + E * db_dlphi + A * dH_dlphi) + extra_dlphi])
        grad = np.concatenate(grad)
        if not np.all(np.isfinite(grad)):  # a derivative beyond the floating-point range: no usable point
            return None, None
        if theta[self.p] < 0:
            grad[self.p] = -grad[self.p]
        return value, grad
