"""Maximum-likelihood fit of a non-Gaussian (or non-identity) random-intercept GLMM, on arrays.

Stages (each a function a user can call alone): `glm_start` (the GLM without random effects,
Fisher scoring in `_glm`) -> `MarginalLikelihood` (Laplace / AGQ objective, _laplace.py) ->
`_optimize.minimize` (Newton steps with the exact Hessian, `_laplace_hessian`; BFGS then Newton for
AGQ and pairs without a fused kernel) -> `_profile.probe_sigma` -> standard errors and conditional
modes.  With many groups a pilot fit on a subset of them starts the search (`_pilot_fit`).
`nagq = 0` instead estimates beta inside PIRLS and optimises only the variance parameters (lme4's
nAGQ = 0), an approximation.
"""
import time
from dataclasses import dataclass, replace

import numpy as np
from scipy import linalg

from ._gausshermite import gauss_hermite
from ._glm import Rows, glm_start_from, glm_sums, least_squares_sums
from ._laplace import (MarginalLikelihood, agq_log_integrals, evenly_spaced_groups, matvec, node_values,
                       subset_groups)
from ._lmm import SINGULAR_TOL
from ._optimize import fd_columns, minimize
from ._optsummary import OptSummary
from ._nagq0 import fit_nagq0
from ._pirls import inverse_or_nan, irls_start, pirls_information
from ._profile import Screen, probe_sigma
from ._record import MixedFit, scalar_record
from ._separation import separated_fit_rows, separation_message

#: a dispersion below this (relative to the internally scaled response's variance) has collapsed
DISPERSION_COLLAPSE = 1e-10
#: |AGQ(9) - Laplace| log-likelihood beyond which Laplace is reported as poor for the data
LAPLACE_GAP = 1.0


#: rows of the GLM start fit at most (an evenly spaced subset beyond): start values need not be exact
START_ROWS = 20_000


def glm_start(dist, data):
    """Fixed effects and dispersion of the GLM without random effects (`_glm.glm_start_from`: Fisher
    scoring from the least-squares fit of g(mean y)) on at most START_ROWS evenly spaced rows."""
    n = data.y.size
    take = slice(None) if n <= START_ROWS else np.linspace(0, n - 1, START_ROWS).astype(np.intp)
    aux = getattr(data, "aux", None)  # random-slope data (VectorData) have none
    rows = Rows(data.y[take], data.X[take], data.offset[take], data.m[take], data.const[take],
                None if aux is None else aux[take])

    def eta_at(gamma):  # every row: the start must hold where the subset does not reach
        return data.X @ gamma + data.offset

    def feasible(gamma):
        return bool(np.all(np.isfinite(gamma)) and dist.feasible(eta_at(gamma)).all())

    def edge_ratio(gamma):
        eta = eta_at(gamma)
        return float(np.min(eta) / np.mean(np.abs(eta)))

    ybar = float(np.average(rows.y, weights=np.broadcast_to(rows.m, rows.y.shape)))
    target = float(dist.link(np.clip(ybar, 1e-6, None)))
    return glm_start_from(dist, lambda g: glm_sums(dist, rows, g), least_squares_sums(rows, target), feasible,
                          data.X.shape[1], edge_ratio)


def _initial_hessian(objective, theta, beta_block=None):
    """Start Hessian for BFGS: PIRLS information for beta (`beta_block`, or computed at the modes at theta),
    finite differences for the variance parameters."""
    p, k = objective.p, objective.n_params
    if beta_block is None:
        md = objective.modes_at(theta)
        _, sigma, phi = objective.unpack(theta)
        d = md.d if np.all(md.d >= 0) else objective.dist.working_weights(md.eta, objective.data.m, phi)
        beta_block = pirls_information(objective.data.X, d, sigma, objective.data.starts, objective.data.counts)
    hess = np.zeros((k, k))
    hess[:p, :p] = beta_block
    block = fd_columns(objective, theta, range(p, k))
    hess[:, p:] = block
    hess[p:, :] = block.T
    return hess


#: start SDs tried, largest first, when the grid's group modes all leave the support (GLM start at its edge)
FALLBACK_SIGMAS = (0.1, 0.03, 0.01, 1e-3, 1e-4)


def _start_theta(objective, gamma, scale):
    """(gamma, s, log phi) start: GLM estimates and the best s on a short grid."""
    tail = [np.log(scale)] if objective.dist.has_dispersion else []
    best = None
    for s in (0.25, 0.5, 1.0, 2.0):
        theta = np.concatenate([gamma, [s], tail])
        f, _ = objective(theta, need_grad=False)
        if np.isfinite(f) and (best is None or f < best[0]):
            best = (f, theta)
    for s in FALLBACK_SIGMAS if best is None else ():  # modes pushed against the edge: a smaller sigma
        theta = np.concatenate([gamma, [s], tail])
        f, _ = objective(theta, need_grad=False)
        if np.isfinite(f):
            best = (f, theta)
            break
    if best is None:
        raise ValueError("no starting point with a finite likelihood: the GLM start values leave the "
                         "family's support (check the link and the response)")
    objective(best[1], need_grad=False)  # leave the warm start at the chosen point
    return best[1]


def exact_newton(laplace):
    """True when `_minimize_laplace` takes Newton steps with the exact Hessian (see there)."""
    return laplace.has_exact_hessian and laplace.dist.full_support


def _minimize_laplace(laplace, theta0, maxiter, tol, callback, final_step=True, hess0=None):
    """Newton steps with the exact Hessian (`_laplace_hessian`; ``hess0``, e.g. a pilot's, for the first
    step), or BFGS from ``hess0`` (default the PIRLS information) then Newton with finite differences:
    for pairs without an exact Hessian, and for identity/inverse links, whose searches follow the edge of
    the support (BFGS's Wolfe line search keeps small data away from regions where the Laplace value
    of a mode pressed against the edge is no longer reliable)."""
    if exact_newton(laplace):
        return minimize(laplace, theta0, hess0, maxiter, tol, callback, hessian=laplace.hessian,
                        final_step=final_step)
    hess0 = _initial_hessian(laplace, theta0) if hess0 is None else hess0
    return minimize(laplace, theta0, hess0, maxiter, tol, callback)


#: groups beyond which a pilot fit on PILOT_GROUPS of them starts the search and screens the sigma profile;
#: the pilot stops at a Newton decrement of PILOT_TOL (its estimates are a start, a few SEs from the end);
#: a pilot sigma_u below PILOT_MIN_SIGMA is no start (sigma_u = 0 is a stationary point of the even
#: objective, which Newton steps from near it do not leave): the search then starts from its grid
PILOT_ABOVE_GROUPS = 4000
PILOT_GROUPS = 200
PILOT_TOL = 1e-3
PILOT_MIN_SIGMA = 1e-2


@dataclass
class Pilot:
    """The Laplace optimum on an evenly spaced subset of the groups and the screen of its sigma profile."""

    theta: np.ndarray
    screen: Screen
    hess: np.ndarray  # the observed information at theta on the pilot's groups

    def start_hessian(self, n_groups):
        """The pilot's Hessian scaled to `n_groups` groups: the first Newton step's on all of them."""
        return self.hess * (n_groups / self.screen.n_subset)

    def start(self, p, n_groups):
        """(theta, Hessian) to start the search on `n_groups` groups from (p = fixed effects), or (None, None)
        when the pilot's sigma_u is near 0 (see PILOT_MIN_SIGMA)."""
        if abs(float(self.theta[p])) < PILOT_MIN_SIGMA:
            return None, None
        return self.theta, self.start_hessian(n_groups)


def _pilot_fit(dist, data, gamma0, scale0, maxiter, tol):
    """The full Laplace search (start grid, Newton, sigma profile) on PILOT_GROUPS evenly spaced groups.

    Its estimates are within a few standard errors of the full data's, so Newton steps from there
    converge in a few evaluations on all rows; its profile tells which probes are hopeless."""
    sub = subset_groups(data, evenly_spaced_groups(data.n_groups, PILOT_GROUPS))
    objective = MarginalLikelihood(dist, sub, nagq=1)
    tol = max(tol, PILOT_TOL)
    res = _minimize_laplace(objective, _start_theta(objective, gamma0, scale0), maxiter, tol, None, final_step=False)
    def restart(theta, hess):
        return _minimize_laplace(objective, theta, maxiter, tol, None, final_step=False,
                                 hess0=None if exact_newton(objective) else hess)

    res, probes = probe_sigma(objective, res, gamma0, scale0, restart)
    return Pilot(theta=res.x, screen=Screen.from_probes(probes, -res.f, sub.n_groups, data.n_groups), hess=res.hess)


#: a stopped Laplace search with a group's mode curvature below this is explained as a flat mode
FLAT_MODE_NOTE = 1e-2


def flat_mode_message(H, dist):
    """Why a stopped Laplace search stopped, when a group's conditional mode is flat (its curvature H_j
    below FLAT_MODE_NOTE, near `_laplace.FLAT_MODE`); None otherwise."""
    if not np.min(H) < FLAT_MODE_NOTE:
        return None
    flat = int(np.sum(H < FLAT_MODE_NOTE))
    return (f"the Laplace approximation breaks down: {flat} group(s) have a nearly flat conditional mode "
            f"(curvature {float(np.min(H)):.2g}, the prior's is 1), where the Laplace value overstates the "
            "likelihood without bound, and the search stopped at that edge; "
            f"{dist.name} with the {dist.link_name} link is not log-concave in eta, so a group's integrand can "
            "be this flat: try nagq > 1, another link, or fewer parameters")


#: sigma_u below this (on the engine's eta scale) is the boundary reached by rounding: reported as 0
BOUNDARY_SNAP = 1e-8


def _snap_to_boundary(objective, res):
    """`res` with sigma_u = 0 exactly when the search ended within BOUNDARY_SNAP of it and 0 is no worse
    (Newton steps approach the boundary of an even function fast but never land on it)."""
    p = objective.p
    if not 0.0 < abs(res.x[p]) < BOUNDARY_SNAP:
        return res
    x = res.x.copy()
    x[p] = 0.0
    f, g = objective(x)
    if not f <= res.f + 1e-12 * (1.0 + abs(res.f)):
        objective(res.x, need_grad=False)  # leave the warm start at the returned point
        return res
    exact = objective.hessian(x)
    return replace(res, x=x, f=f, g=g, hess=res.hess if exact is None else exact)


def fixed_effects_cov(hess, keep, p, cov_pirls, cov_type="hessian"):
    """(Cov(beta), note): the first p rows/columns of the inverse observed information over the parameters
    `keep` (a variance parameter on its boundary is left out), or the PIRLS covariance with a note
    when the Hessian is not positive definite (or cov_type="pirls")."""
    if cov_type == "hessian":
        try:
            inv_factor = linalg.inv(linalg.cholesky(hess[np.ix_(keep, keep)], lower=True))
            return (inv_factor.T @ inv_factor)[:p, :p], ""
        except (linalg.LinAlgError, ValueError):
            return cov_pirls, ("the Hessian is not positive definite (or not finite at the edge of the support); "
                               "standard errors use the PIRLS working weights")
    return cov_pirls, ""


def fit_glmm(dist, data, nagq=1, maxiter=100, tol=1e-6, cov_type="hessian", callback=None) -> MixedFit:
    """Maximum-likelihood fit by the Laplace approximation (nagq = 1) or AGQ (nagq > 1): the record
    (`_record.scalar_record`) on the engine's parametrisation (scaled predictors, response of ``data``).

    After the local optimum, sigma_u is profiled over a coarse grid (and at 0, the GLM) and the
    search restarts from any better point (`_profile.probe_sigma`), so the fit ends on the highest
    peak found and never below its sigma_u = 0 point.
    """
    t0 = time.perf_counter()
    check_finite_mle(dist, data)
    if nagq == 0:  # the start only where the fast path does not apply (it has its own pilot)
        return fit_nagq0(dist, data, lambda: irls_start(dist, data) or glm_start(dist, data), maxiter, tol,
                         callback, t0)
    gamma0, scale0 = glm_start(dist, data)
    if callback is not None:
        callback("start values", 0, np.nan)
    # Laplace first: cheap, and an excellent start for AGQ.  On many groups a pilot fit on a subset of
    # them gives the start and screens the sigma profile, so all rows see only the last Newton steps.
    laplace = MarginalLikelihood(dist, data, nagq=1)
    pilot = _pilot_fit(dist, data, gamma0, scale0, maxiter, tol) if data.n_groups > PILOT_ABOVE_GROUPS else None
    theta0, hess0 = (None, None) if pilot is None else pilot.start(laplace.p, data.n_groups)
    if theta0 is None:
        theta0 = _start_theta(laplace, gamma0, scale0)
    res = _minimize_laplace(laplace, theta0, maxiter, tol, callback, hess0=hess0)
    iters, objective = res.iterations, laplace
    if nagq > 1:
        objective = MarginalLikelihood(dist, data, nagq=nagq)
        objective.u_warm = laplace.u_warm.copy()
        try:
            res = minimize(objective, res.x, res.hess, maxiter, tol, callback, central=False, quasi_newton=False)
        except FloatingPointError:  # a node of the Laplace optimum leaves the support: BFGS from the start
            objective.u_warm = np.zeros_like(objective.u_warm)
            try:
                res = minimize(objective, theta0, _initial_hessian(laplace, theta0), maxiter, tol, callback,
                               central=False)
            except FloatingPointError:
                raise ValueError(f"the adaptive quadrature ({nagq} nodes) has no finite log-likelihood at the "
                                 "start values or at the Laplace estimates: quadrature nodes leave the support "
                                 f"of the {dist.link_name} link's mean; use nagq=1 or another link") from None
        iters += res.iterations
    if nagq == 1:
        def restart(theta, hess):  # BFGS (pairs without an exact Hessian) starts from the optimum's Hessian
            return _minimize_laplace(objective, theta, maxiter, tol, callback,
                                     hess0=None if exact_newton(objective) else hess)
    else:
        def restart(theta, hess):
            return minimize(objective, theta, hess, maxiter, tol, callback, central=False)
    res, probes = probe_sigma(objective, res, gamma0, scale0, restart,
                              screen=None if pilot is None else pilot.screen)
    res = _snap_to_boundary(objective, res)
    n_eval = laplace.n_calls + (objective.n_calls if objective is not laplace else 0)
    theta, f, hess, decrement = res.x, res.f, res.hess, res.decrement
    iters += res.iterations if probes.restarted else 0
    converged, message = res.converged, res.message
    md = objective.modes_at(theta)
    if md is None:  # cannot happen for an accepted point; guard against a warm-start artefact
        raise FloatingPointError("no conditional modes at the optimum")
    p = objective.p
    _, sigma, phi = objective.unpack(theta)
    separated = separated_fit_rows(dist, data.X, data.y, md.eta)
    if separated:
        converged, message = False, separation_message(separated)
    if not converged and nagq == 1:
        message = flat_mode_message(md.H, dist) or message
    singular = sigma < SINGULAR_TOL
    if callback is not None:
        callback("standard errors", iters, f)
    weights = dist.working_weights(md.eta, data.m, phi)
    cov_pirls = inverse_or_nan(pirls_information(data.X, weights, sigma, data.starts, data.counts))
    if dist.name in ("gaussian", "gamma") and phi < DISPERSION_COLLAPSE * max(1.0, float(np.var(data.y))):
        converged = False
        message = ("the dispersion collapsed to zero: the fixed and random effects reproduce the data exactly, "
                   "so the likelihood has no maximum")
    keep = [j for j in range(len(theta)) if not (singular and j == p)]
    cov_beta, se_note = fixed_effects_cov(hess, keep, p, cov_pirls, cov_type)
    notes = []
    if nagq == 1:
        gap, probes.agq9_gap_groups = laplace_agq_gap(objective, theta)
        probes.agq9_gap = gap
        if abs(gap) > LAPLACE_GAP:
            notes.append(laplace_note(gap, probes.agq9_gap_groups, data.n_groups))
    method = "Newton, exact Hessian" if exact_newton(laplace) else "BFGS + Newton"
    method += " (Laplace)" if nagq == 1 else f", then Newton (AGQ, {nagq} nodes)"
    opt = OptSummary(method=method, nagq=nagq, maxiter=maxiter, tol=tol, initial=theta0, final=theta,
                     n_iterations=iters, n_evaluations=n_eval, objective=f, newton_decrement=float(decrement),
                     converged=converged, message=message, seconds=time.perf_counter() - t0,
                     sigma_profile=probes.as_table())
    if pilot is not None:
        opt.notes.append(f"start and sigma_u probe screen from a pilot fit on {pilot.screen.n_subset} of "
                         f"{data.n_groups} groups")
    return scalar_record(beta=theta[:p].copy(), cov_beta=cov_beta, sigma=sigma, scale=phi, llf=-f,
                         modes=sigma * md.b, mode_sd=sigma / np.sqrt(md.H), converged=converged, opt=opt,
                         dispersion=dist.has_dispersion, cov_beta_pirls=cov_pirls, se_note=se_note,
                         separated_rows=separated, notes=notes)


def laplace_note(gap, used, n_groups):
    """The warning that Laplace is poor for the data (|AGQ(9) - Laplace| = |gap| > LAPLACE_GAP)."""
    sampled = f" (estimated from {used} of {n_groups} groups)" if used < n_groups else ""
    return (f"the Laplace approximation is poor for these data: at the estimates the 9-node adaptive "
            f"quadrature log-likelihood differs from Laplace's by {gap:+.2f}{sampled}; refit with nagq "
            "(e.g. fit(nagq=9)) for a more accurate likelihood and estimates")


def laplace_agq_gap(laplace, theta, max_groups=500):
    """(AGQ (9 nodes) minus Laplace log-likelihood at theta, groups it was computed on): a large value
    means Laplace is poor here.  Uses the Laplace modes at theta (AGQ centres its nodes there).

    With more than `max_groups` groups the sum over groups is estimated from an evenly spaced subset
    of them (`gap_from_subset`); the whole sum is computed only when the estimate does not decide.
    """
    G = laplace.data.n_groups
    if G > max_groups:
        keep = evenly_spaced_groups(G, max_groups)
        estimate, decided = gap_from_subset(group_gaps(laplace, theta, keep), G)
        if decided:
            return estimate, len(keep)
    gaps = group_gaps(laplace, theta)
    return (float(np.sum(gaps)) if np.all(np.isfinite(gaps)) else np.nan), G


def gap_from_subset(gaps, n_groups):
    """(estimate, decided): the sum of a per-group quantity over `n_groups` groups from a random or evenly
    spaced subset's values (mean times n_groups); decided when the estimate lies more than three standard
    errors (finite-population corrected) from LAPLACE_GAP in absolute value."""
    gaps = np.asarray(gaps, float)
    if len(gaps) < 2 or not np.all(np.isfinite(gaps)):
        return np.nan, False
    estimate = float(np.mean(gaps)) * n_groups
    se = float(np.std(gaps, ddof=1)) * n_groups / np.sqrt(len(gaps)) * np.sqrt(max(0.0, 1.0 - len(gaps) / n_groups))
    return estimate, abs(abs(estimate) - LAPLACE_GAP) > 3.0 * se


def group_gaps(laplace, theta, keep=None):
    """Per group (all, or the sorted codes `keep`): the 9-node AGQ log integral with nodes at the Laplace
    modes at theta minus the Laplace value h - log(H) / 2."""
    md = laplace.modes_at(theta)
    gamma, sigma, phi = laplace.unpack(theta)
    data, b, H, h = laplace.data, md.b, md.H, md.h
    if keep is not None:
        data, b, H, h = subset_groups(data, keep), b[keep], H[keep], h[keep]
    z, logw = gauss_hermite(9)
    eta_fixed = matvec(data.X, gamma)
    eta_fixed += data.offset
    node_h, _ = node_values(laplace.dist, data, eta_fixed, sigma, phi, b, H, z)
    return agq_log_integrals(node_h, H, z, logw)[0] - (h - 0.5 * np.log(H))


def check_finite_mle(dist, data):
    """ValueError when the response makes every estimate diverge: all 0 (Poisson, NB2, Binomial) or all 1
    (Binomial); the in-memory models refuse it earlier (``_validation.check_finite_mle_response``)."""
    if dist.name not in ("poisson", "negativebinomial", "binomial"):
        return
    y, m = data.y, np.asarray(data.m)
    if m.ndim and m.size == y.size and not (m.strides == (0,) and m.flat[0] > 0):  # (a compact m > 0: all rows)
        y = y[m > 0]
    for value, what in ((0.0, "0"), (1.0, "1")):
        if value == 1.0 and dist.name != "binomial":
            continue
        if y.size and y.flat[0] == value and np.all(y == value):  # (the first row usually settles it)
            bound = "-inf" if value == 0.0 else "+inf"
            label = "negative binomial" if dist.name == "negativebinomial" else dist.name.capitalize()
            raise ValueError(f"the response is {what} in every row: the {label} likelihood increases "
                             f"without bound as the intercept goes to {bound}, so there is no finite maximum-"
                             "likelihood estimate (nothing to fit)")
