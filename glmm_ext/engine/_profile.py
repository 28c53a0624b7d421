"""After the local optimum: probe the profile of sigma_u for a higher peak, and the sigma_u = 0 (GLM) point.

The marginal likelihood of a GLMM can have more than one peak in sigma_u (binary data with small
clusters), and with identity or inverse links the search can stop against the edge of the support.
`probe_sigma` evaluates the profile

    f_prof(s) = min over (beta, log phi) of f(beta, s, log phi)

at s = 0 and at s = s_hat * (1/4, 1/2, 2, 4, 8), each by a few Newton steps on (beta, log phi) with
PIRLS information for beta (modes warm-started), and restarts the full search from any point
better than the optimum.  A probe whose predicted best (value minus three times its Newton
decrement, minus one) cannot beat the optimum stops after one evaluation, so the check costs about
one gradient evaluation per grid point.

On many groups a `Screen` from a pilot fit on a subset of the groups (whose own probes ran in full)
skips the probes that lie far below the pilot's optimum there: their deficit, scaled to all groups,
is recorded as an estimate instead.
"""
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import linalg

from ._optimize import _backtrack, _positive_definite, minimize
from ._pirls import _eta_scale, pirls_information

#: multiples of the estimate probed (and sigma_u = 0)
GRID = (0.25, 0.5, 2.0, 4.0, 8.0)
#: a probe must beat the optimum by this much (objective units) to trigger a restart
MARGIN = 1e-4
#: a pilot probe this far (log-likelihood units of the pilot's subset) below the pilot's optimum is not
#: evaluated on all groups: even a probe stopped early as hopeless is then >= 20 units down on the subset;
#: a probe of the full fit is matched with the pilot's at a sigma within a factor SCREEN_RATIO
SCREEN_MARGIN = 30.0
SCREEN_RATIO = 1.5


@dataclass
class Screen:
    """The sigma profile of a pilot fit on `n_subset` of `n_groups` groups, to skip hopeless probes.

    `deficits[i]` = the pilot's optimum minus its profile log-likelihood at its probe sigmas[i].
    """

    sigmas: list
    deficits: list
    n_subset: int
    n_groups: int

    def match(self, s):
        """Index of the pilot's probe at about sigma s (0 at 0, else within a factor SCREEN_RATIO), or None."""
        for i, t in enumerate(self.sigmas):
            if (s == 0.0 and t == 0.0) or (s > 0.0 and t > 0.0 and max(s / t, t / s) <= SCREEN_RATIO):
                return i
        return None

    def skips(self, s):
        """True when the pilot's probe at about sigma s lies beyond SCREEN_MARGIN below its optimum."""
        i = self.match(s)
        return i is not None and self.deficits[i] > SCREEN_MARGIN

    def estimate(self, s, llf):
        """The full profile log-likelihood at sigma s estimated from the pilot (deficit scaled to all groups)."""
        return llf - self.deficits[self.match(s)] * self.n_groups / self.n_subset

    @classmethod
    def from_probes(cls, probes, llf, n_subset, n_groups):
        return cls(list(probes.sigma), [llf - v for v in probes.llf], n_subset, n_groups)


@dataclass
class SigmaProbes:
    """What the profile check evaluated: sigma_u values, profile log-likelihoods, and the outcome."""

    sigma_hat: float
    sigma: list = field(default_factory=list)
    llf: list = field(default_factory=list)
    newton_steps: list = field(default_factory=list)
    screened: list = field(default_factory=list)  # True: llf estimated from a pilot fit on a subset of groups
    restarted: bool = False
    restart_sigma: float = np.nan
    llf_gain: float = 0.0
    agq9_gap: float = np.nan
    agq9_gap_groups: int = 0  # groups the AGQ(9) - Laplace gap was computed on (scaled up when fewer than all)

    def as_table(self):
        """A plain dict for OptSummary.sigma_profile."""
        return {"sigma_hat": self.sigma_hat, "sigma": list(self.sigma), "profile_llf": list(self.llf),
                "newton_steps": list(self.newton_steps), "screened": list(self.screened),
                "restarted": self.restarted, "restart_sigma": self.restart_sigma, "llf_gain": self.llf_gain,
                "agq9_gap": self.agq9_gap, "agq9_gap_groups": self.agq9_gap_groups}


def _fisher_block(objective, x, H_free):
    """Hessian over the free coordinates at x: PIRLS information for beta (fresh at this sigma), the
    optimum's rows for log phi (beta and the dispersion are nearly orthogonal)."""
    md = objective.last_modes
    if md is None:
        return H_free
    p = objective.p
    _, sigma, phi = objective.unpack(x)
    data = objective.data
    H = H_free.copy()
    H[:p, :p] = pirls_information(data.X, objective.dist.working_weights(md.eta, data.m, phi), sigma,
                                  data.starts, data.counts)
    return _positive_definite(H)


def _profile_point(fun, start, free, H_free, f_best, max_steps=6):
    """Approximate min over the free coordinates at fixed sigma: Fisher-scoring steps from `start`."""
    x = start.copy()
    f, g = fun(x)
    steps = 0
    if not np.isfinite(f):
        return np.inf, x, steps
    for _ in range(max_steps):
        H = _fisher_block(fun, x, H_free)
        direction = np.zeros_like(x)
        direction[free] = -linalg.solve(H, g[free], assume_a="pos")
        decrement = -0.5 * float(g @ direction)
        if decrement < 1e-7 or f - 3.0 * decrement - 1.0 > f_best:  # converged, or hopeless
            break
        step = _backtrack(fun, x, f, g, direction, max_halvings=12)
        steps += 1
        if step is None:
            break
        x, f, g = step
    return f, x, steps


def _attenuation(dist, sigma):
    """Binomial fixed effects scale with the random-intercept SD as sqrt(1 + c sigma^2) (c = 1 probit,
    (16 sqrt(3) / (15 pi))^2 logit: Zeger et al. 1988): the start for beta at another sigma."""
    if dist.name != "binomial":
        return 1.0
    c = 1.0 if dist.link_name == "probit" else (16.0 * np.sqrt(3.0) / (15.0 * np.pi)) ** 2
    return float(np.sqrt(1.0 + c * sigma * sigma))


#: barrier weights (objective units) of `edge_search`'s interior-point path, decreasing towards the plain objective
BARRIER_WEIGHTS = (1e-2, 1e-4)


def _with_barrier(objective, margins, tau):
    """f(theta) - tau sum_j log c_j(theta) and its gradient (c = the modes' edge margins, all > 0 inside)."""
    def fun(theta, need_grad=True):
        f, g = objective(theta, need_grad)
        if not np.isfinite(f):
            return np.inf, (np.full(len(theta), np.nan) if need_grad else None)
        c, dc = margins(theta)
        c = np.maximum(c, 1e-12)  # a finite f with c <= 0 is a mode on the edge to rounding
        f = f - tau * float(np.sum(np.log(c)))
        if need_grad:
            g = g - tau * np.sum(dc / c[:, None], axis=0)
        return f, g
    return fun


#: an unconverged search ending with an edge margin (h_j' at the edge, `MarginalLikelihood.edge_margins`) below
#: this is reported as stopped at the edge of the support
EDGE_MARGIN = 0.05


def edge_search(objective, res, restart, maxiter=100):
    """From a search that stopped unconverged where a group's conditional mode is near the edge of the support
    (Poisson-identity: a zero count's mean reaching 0, `MarginalLikelihood.edge_margins`), follow the
    log-barrier path min f - tau sum_j log c_j for decreasing tau: an interior-point method, which slides along
    the edge and back into the interior where Newton steps on f alone stall against it.  The plain search
    (`restart`) finishes from the path's end: converged at an interior optimum; where it ends at the edge
    (a margin c_j <= EDGE_MARGIN), f has no interior maximum: the best point next to the edge is returned,
    unconverged, with a message that says so.  Returns the better Minimum (`res` unless improved)."""
    margins = getattr(objective, "edge_margins", None)
    if res.converged or margins is None or margins(res.x) is None or not np.isfinite(res.f):
        return res
    x = res.x.copy()
    hess = _positive_definite(res.hess) if np.all(np.isfinite(res.hess)) else np.eye(len(x))
    moved = False
    for tau in BARRIER_WEIGHTS:
        fun = _with_barrier(objective, margins, tau)
        if not np.isfinite(fun(x, need_grad=False)[0]):
            break
        try:
            step = minimize(fun, x, hess, min(maxiter, 30), max(1e-8, 1e-2 * tau), edge_polish=False)
        except FloatingPointError:
            break
        x, hess, moved = step.x, _positive_definite(step.hess), True
    if not moved:
        return res
    try:
        new = restart(x, hess)
    except FloatingPointError:
        new = res
    if new.f < res.f - 1e-9 * (1.0 + abs(res.f)) or (new.converged and new.f <= res.f + 1e-9 * (1.0 + abs(res.f))):
        res = new
    objective(res.x, need_grad=False)  # leave the warm start at the returned point
    return res


def _edge_message(objective, res):
    """`res` with a message saying that it stopped at the edge of the support, when it did."""
    margins = getattr(objective, "edge_margins", None)
    edge = None if res.converged or margins is None else margins(res.x)
    at_edge = 0 if edge is None else int(np.sum(edge[0] <= EDGE_MARGIN))
    if not at_edge:
        return res
    return replace(res, message=(
        f"no interior maximum: the Laplace likelihood is highest at the edge of its support, where {at_edge} "
        "group(s) with zero counts have their conditional mode at a mean of 0 (the approximation does not "
        "apply there); the estimates are the best point found next to that edge"))


def probe_sigma(objective, res, gamma_glm, scale_glm, restart, screen=None):
    """Profile sigma_u around the optimum `res` (an _optimize.Minimum) and at 0; restart when better.

    `restart(theta, hess)` runs the full search from theta; `screen` (a `Screen`) skips the probes a
    pilot fit found hopeless.  A search stopped at the edge of the support first follows `edge_search`.
    Returns (best Minimum, SigmaProbes).
    """
    res = edge_search(objective, res, restart)
    p = objective.p
    theta = res.x
    sigma_hat = abs(float(theta[p]))
    probes = SigmaProbes(sigma_hat=sigma_hat)
    free = [j for j in range(len(theta)) if j != p]
    H_free = _positive_definite(res.hess[np.ix_(free, free)])
    ref = sigma_hat if sigma_hat > 1e-3 else 0.5 * _eta_scale(objective.dist, objective.data, theta[:p])
    u_opt = objective.u_warm.copy()
    md = D = None
    best = None
    for s in (0.0,) + tuple(ref * k for k in GRID):
        if screen is not None and screen.skips(s):
            probes.sigma.append(float(s))
            probes.llf.append(float(screen.estimate(s, -res.f)))
            probes.newton_steps.append(0)
            probes.screened.append(True)
            continue
        if md is None:
            md = objective.modes_at(theta)
            # modes predicted at another sigma: b_j ~ sigma S_j / (1 + sigma^2 D_j), D_j = (H_j - 1) / sigma_hat^2
            D = (md.H - 1.0) / sigma_hat**2 if md is not None and sigma_hat > 0 else None
        objective.u_warm = u_opt.copy()
        if D is not None and s > 0:
            objective.u_warm = s * md.b * (s * md.H) / (sigma_hat * (1.0 + s * s * D))
        start = theta.copy()
        start[p] = s
        start[:p] *= _attenuation(objective.dist, s) / _attenuation(objective.dist, sigma_hat)
        if s == 0.0:  # the GLM: from the better of the optimum's and the GLM's estimates
            glm = np.concatenate([gamma_glm, [0.0], [np.log(scale_glm)] if objective.dist.has_dispersion else []])
            if objective(glm, need_grad=False)[0] < objective(start, need_grad=False)[0]:
                start = glm
        f, x, steps = _profile_point(objective, start, free, H_free, res.f)
        if not np.isfinite(f) and s > 0:  # the attenuated start left the support: the optimum's beta
            start[:p] = theta[:p]
            objective.u_warm = u_opt.copy()
            f, x, steps = _profile_point(objective, start, free, H_free, res.f)
        probes.sigma.append(float(s))
        probes.llf.append(float(-f))
        probes.newton_steps.append(steps)
        probes.screened.append(False)
        if f < res.f - MARGIN and (best is None or f < best[0]):
            best = (f, x)
    objective.u_warm = u_opt
    if best is None:
        return _edge_message(objective, res), probes
    f_probe, x_probe = best
    probes.restart_sigma = float(abs(x_probe[p]))
    starts = [x_probe]
    if x_probe[p] == 0.0:  # from sigma = 0 the gradient in sigma vanishes: try just inside, then 0 itself
        inside = x_probe.copy()
        inside[p] = 0.25 * ref
        starts = [inside, x_probe]
    for x0 in starts:
        try:
            new = restart(x0, res.hess)
        except FloatingPointError:
            continue
        if new.f < res.f:
            probes.restarted = True
            probes.llf_gain += float(res.f - new.f)
            res = new
        if res.f <= f_probe + MARGIN:
            break
    objective(res.x, need_grad=False)  # leave the warm start at the returned point
    return _edge_message(objective, res), probes
