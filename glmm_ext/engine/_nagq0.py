"""nagq = 0 by Newton-type steps on the joint system: Binomial-logit and Poisson-log, one scalar term.

nagq = 0 (`_pirls`) maximises over sigma the PIRLS Laplace value

    L0(sigma) = P(u*(sigma); sigma) - sum_j log(H_j) / 2,   H_j = 1 + sigma^2 D_j,   u = (beta, b),

u*(sigma) the joint maximiser of the penalised log-likelihood P.  The scalar search in `_pirls` runs a
converged PIRLS at each trial sigma; here one pass over the rows (log f and its eta-derivatives l1, d, t,
group sums L1, D, T and S_d, S_t of d x and t x, and X'DX) gives at once the PIRLS step for u (the
Woodbury / Schur solve on the p x p block), the tangent du/dsigma (implicit function theorem, the same
Schur factor) and the total derivative

    dL0/dsigma = sum_j b_j L1_j - sum_j (2 sigma D_j + sigma^2 dD_j/dsigma) / (2 H_j),
    dD_j/dsigma = S_t,j' dbeta/dsigma + T_j (b_j + sigma db_j/dsigma)

(canonical link: the Fisher weights are d itself, whose eta-derivative is t; the first term is corrected
to first order for a u not yet converged).  Sigma takes secant steps on this derivative and u moves along
its tangent with each sigma step.  The same search on PILOT_GROUPS evenly spaced groups (from the GLM's
IRLS step) gives the start and the first curvature, scaled to all groups; on all rows it then takes three
passes as a rule.  Anything unusual (a point outside the support, sigma near 0, no convergence) returns
None: the caller then runs the scalar search, which handles the boundary.
"""
import time
from dataclasses import dataclass

import numpy as np
from scipy import linalg

from ._kernels import in_group_blocks
from ._laplace import evenly_spaced_groups, log_link_modes, matvec, subset_groups
from ._optsummary import OptSummary
from ._pirls import NAGQ0_SE_NOTE, _eta_scale, inverse_or_nan, irls_start
from ._record import scalar_record
from ._pirls import fit_nagq0 as scalar_fit
from ._segments import group_sums, to_rows

#: (family, link) pairs the joint steps serve: canonical links without a dispersion
PAIRS = (("binomial", "logit"), ("poisson", "log"))
#: groups of the pilot fit (the joint steps, or the scalar search of `_pirls`, on an evenly spaced subset)
PILOT_GROUPS = 200
#: groups from which the joint steps are used (below, the pilot would be most of the data)
ABOVE_GROUPS = 2 * PILOT_GROUPS
#: a pilot sigma_u below this fraction of the linear predictor's spread is near the boundary sigma = 0,
#: which the scalar search handles (the even objective is flat there)
MIN_PILOT_SIGMA = 0.05
#: passes at most on the pilot's groups and on all rows (three as a rule), and the largest sigma step
#: (relative) the tangent prediction is trusted for
MAX_PASSES = 40
MAX_FULL_PASSES = 12
MAX_LOG_STEP = 0.25
#: a u decrement per group above this: a PIRLS step alone (the sigma derivative is not yet informative)
JOINT_DECREMENT = 0.05
#: u decrements (log-likelihood units) below which a point's dL0/dsigma enters the secant, and below which
#: the next point is evaluated with log f (it may be the last)
SECANT_DECREMENT = 1e-2
LOGLIK_DECREMENT = 1.0
#: convergence: the Newton decrement of u (u within ~ sqrt(2 U_TOL) = 1e-2 standard errors) and the next
#: sigma step in standard errors of sigma
U_TOL = 5e-5
SIGMA_STEP = 1e-2


def applies(dist, data):
    """True when the joint steps serve this fit (else the scalar search of `_pirls`)."""
    return ((dist.name, dist.link_name) in PAIRS and dist._kernel is not None and data.n_groups >= ABOVE_GROUPS
            and data.dispersion_term is None)


@dataclass
class Point:
    """Everything one pass gives at (gamma, b, sigma)."""

    value: float  # L0 (the Laplace value when u is converged)
    penalised: float  # P
    step: tuple  # (d_beta, d_b): the PIRLS (Newton) step for u at this sigma
    decrement: float
    tangent: tuple  # (dbeta/dsigma, db/dsigma)
    grad_sigma: float  # dL0/dsigma
    schur: np.ndarray  # X'DX - sigma^2 S_d' diag(1/H) S_d: the PIRLS information for beta
    H: np.ndarray
    mode_step: np.ndarray  # h_j'(b_j) / H_j: the Newton step to the modes at (gamma, sigma)
    mode_gap: float  # sum_j h_j'(b_j)^2 / (2 H_j): the Laplace value at (gamma, sigma) minus value, to 2nd order


def _rows(values, r0, r1):
    """Rows r0:r1 of a per-row array (a broadcast one stays broadcast)."""
    return values[r0:r1] if np.ndim(values) else values


class JointSystem:
    """The per-pass sums on one data set, with what is computed once: the sum of the data-only part of
    log f, the constant columns of X (an intercept: their sums over rows are sums over groups) and whether
    t = d (Poisson-log: both are mu, so S_t = S_d)."""

    def __init__(self, dist, data):
        self.dist, self.data = dist, data
        const = data.const
        self.const_total = float(np.sum(const)) if np.ndim(const) and any(const.strides) else \
            float(np.asarray(const).flat[0] if np.size(const) else 0.0) * data.y.size
        X = data.X
        n = X.shape[0]  # a column differing in its first rows needs no pass over all of them
        self.constant = [k for k in range(X.shape[1])
                         if n and np.all(X[:8, k] == X[0, k]) and np.all(X[:, k] == X[0, k])]
        self.t_is_d = (dist.name, dist.link_name) == ("poisson", "log")
        self.offset = self.has_offset(data)
        self.passes = 0

    @staticmethod
    def has_offset(data):
        """False for a zero offset stored once (broadcast), which is not added."""
        offset = data.offset
        if not np.ndim(offset):
            return bool(offset != 0.0)
        return bool(any(offset.strides) or offset.size and offset.flat[0] != 0.0)

    def row_pass(self, gamma, b, sigma, loglik):
        """(sum log f or None, L1, D, T, S_d, X'DX, X'l1, t) at eta = X gamma + offset + sigma b_g: one pass,
        column by column (X is stored by columns), in blocks of whole groups on the kernel threads when the
        rows are many; None when a row leaves the support or a sum is not finite."""
        dist, data, constant = self.dist, self.data, self.constant
        X, starts, counts = data.X, data.starts, data.counts
        p = X.shape[1]
        varying = [k for k in range(p) if k not in constant]
        order = 2 if self.t_is_d else 3
        self.passes += 1

        def block(r0, r1, g0, g1):
            Xb, sb = X[r0:r1], starts[g0:g1] - r0
            eta = matvec(Xb, gamma)
            if self.offset:
                eta += _rows(data.offset, r0, r1)
            if sigma > 0:
                eta += to_rows(sigma * b[g0:g1], counts[g0:g1])
            ll, l1, d, t = dist.evaluate(_rows(data.y, r0, r1), eta, _rows(data.m, r0, r1), 1.0, 0.0,
                                         order=order, loglik=loglik,
                                         aux=None if data.aux is None else data.aux[r0:r1])
            t = d if self.t_is_d else t
            sums = np.empty((g1 - g0, 3 + p))
            XdX, Xl1 = np.zeros((p, p)), np.zeros(p)
            sums[:, 0], sums[:, 1] = group_sums(l1, sb), group_sums(d, sb)
            sums[:, 2] = sums[:, 1] if self.t_is_d else group_sums(t, sb)
            for k in varying:  # constant columns: their sums come from the group sums below
                xk = Xb[:, k]
                dx = np.multiply(d, xk, out=eta)  # eta is not needed any more
                sums[:, 3 + k] = group_sums(dx, sb)
                Xl1[k] = xk @ l1
                for j in varying[:varying.index(k) + 1]:
                    XdX[k, j] = XdX[j, k] = dx @ Xb[:, j]
            return (float(np.sum(ll)) if loglik else 0.0), sums, XdX, Xl1, t

        parts = in_group_blocks(block, X.shape[0], starts)
        total = sum(part[0] for part in parts) + self.const_total
        sums = np.concatenate([part[1] for part in parts])
        XdX, Xl1 = sum(part[2] for part in parts), sum(part[3] for part in parts)
        L1, D = sums[:, 0], sums[:, 1]
        for k in constant:
            c = float(X[0, k])
            sums[:, 3 + k] = c * D
            Xl1[k] = c * float(np.sum(L1))
        Sd = sums[:, 3:]
        column_sums = Sd.sum(axis=0)
        for k in constant:  # x_k = c: sum_i d_i x_k x_j = c sum_j S_d,j
            XdX[k, :] = XdX[:, k] = float(X[0, k]) * column_sums
        if not (np.isfinite(total) and np.all(np.isfinite(sums)) and np.all(np.isfinite(XdX))):
            return None
        t = parts[0][4] if len(parts) == 1 else np.concatenate([part[4] for part in parts])
        return (total if loglik else None), L1, D, sums[:, 2], Sd, XdX, Xl1, t

    def point(self, gamma, b, sigma, loglik=True):
        """`Point` at (gamma, b, sigma), or None (outside the support, or the information not positive
        definite); without ``loglik`` its value and penalised are NaN (log f not computed)."""
        data = self.data
        stats = self.row_pass(gamma, b, sigma, loglik)
        if stats is None:
            return None
        ll, L1, D, T, Sd, XdX, Xl1, t = stats
        s2 = sigma * sigma
        H = 1.0 + s2 * D
        SdH = Sd / H[:, None]
        schur = XdX - s2 * (Sd.T @ SdH)
        try:
            factor = linalg.cho_factor(schur)
        except (linalg.LinAlgError, ValueError):
            return None

        def solve(r_beta, r_b):  # A^-1 r, A = [[X'DX, sigma S_d'], [sigma S_d, diag(H)]] = -Hessian of P in u
            x_beta = linalg.cho_solve(factor, r_beta - sigma * (SdH.T @ r_b))
            return x_beta, (r_b - sigma * (Sd @ x_beta)) / H

        g_b = sigma * L1 - b
        d_beta, d_b = solve(Xl1, g_b)
        decrement = 0.5 * float(Xl1 @ d_beta + g_b @ d_b)
        # du/dsigma: A du = d(grad_u P)/dsigma = r = (-S_d' b, L1 - sigma D b)
        r_beta, r_b = -(Sd.T @ b), L1 - sigma * D * b
        e_beta, e_b = solve(r_beta, r_b)
        # dD_j/dsigma = sum_i t_i d eta_i/dsigma; S_t' dbeta/dsigma as the group sums of t (X dbeta/dsigma)
        St_e = Sd @ e_beta if self.t_is_d else group_sums(t * matvec(data.X, e_beta), data.starts)
        dD = St_e + T * (b + sigma * e_b)
        # dP/dsigma at the PIRLS solution u + (d_beta, d_b), to first order: b'L1 + r'(d_beta, d_b); without
        # the correction an unconverged u would give a wrong derivative (each group adds b_j h_j'(b_j) / sigma)
        d_penalised = float(b @ L1 + r_beta @ d_beta + r_b @ d_b)
        grad_sigma = d_penalised - 0.5 * float(np.sum((2.0 * sigma * D + s2 * dD) / H))
        if ll is None:
            penalised = value = np.nan
        else:
            penalised = ll - 0.5 * float(b @ b)
            value = penalised - 0.5 * float(np.sum(np.log(H)))
        if not (np.isfinite(decrement) and np.isfinite(grad_sigma)) or (ll is not None and not np.isfinite(value)):
            return None
        mode_step = g_b / H
        # P rises by g_b' mode_step / 2 on the way to the modes; log H_j moves by sigma^3 T_j mode_step_j / H_j
        mode_gap = 0.5 * float(g_b @ mode_step) - 0.5 * s2 * sigma * float(np.sum(T * mode_step / H))
        return Point(value, penalised, (d_beta, d_b), decrement, (e_beta, e_b), grad_sigma, schur, H, mode_step,
                     mode_gap)


def converge_u(system, gamma, b, sigma, tol=U_TOL, maxiter=30):
    """(gamma, b, Point): PIRLS at a fixed sigma from (gamma, b), full steps halved while P falls; or None."""
    at = system.point(gamma, b, sigma)
    for _ in range(maxiter):
        if at is None or at.decrement < tol:
            break
        alpha = 1.0
        while True:
            g_new, b_new = gamma + alpha * at.step[0], b + alpha * at.step[1]
            new = system.point(g_new, b_new, sigma)
            if new is not None and new.penalised >= at.penalised - 1e-12 * abs(at.penalised):
                break
            alpha *= 0.5
            if alpha < 1e-4:
                return None
        gamma, b, at = g_new, b_new, new
    return (gamma, b, at) if at is not None and at.decrement < tol else None


def pilot_curvature(system, gamma, b, sigma, rel=0.05):
    """d^2 L0 / dsigma^2 on the pilot's groups, by a difference of the analytic dL0/dsigma at sigma(1 +- rel)."""
    grads = []
    for s in (sigma * (1.0 - rel), sigma * (1.0 + rel)):
        done = converge_u(system, gamma, b * (s / sigma), s, tol=1e-10)
        if done is None:
            return None
        grads.append(done[2].grad_sigma)
    return (grads[1] - grads[0]) / (2.0 * rel * sigma)


#: Newton steps of the start modes (Binomial): two leave the first joint step in its quadratic region
START_STEPS = 2


def start_modes(dist, data, gamma, sigma, steps=START_STEPS):
    """Conditional modes at (gamma, sigma) on all rows: exact from group sums for Poisson-log (one pass);
    else `steps` Newton steps from 0 per group (each step at most 2 on the eta scale; the joint steps
    that follow make them exact), each a pass of l1 and d alone, cheaper than a joint pass."""
    eta_fixed = matvec(data.X, gamma)
    if JointSystem.has_offset(data):
        eta_fixed += data.offset
    if dist.name == "poisson":
        b = log_link_modes(dist, data.y, eta_fixed, sigma, 1.0, data.starts, data.counts, None)
        if b is not None:
            return b
    b = np.zeros(data.n_groups)
    starts, counts = data.starts, data.counts

    def block(r0, r1, g0, g1):  # (L1, D) of these groups at b, the kernel in this thread
        eta = to_rows(sigma * b[g0:g1], counts[g0:g1])
        eta += eta_fixed[r0:r1]
        _, l1, d, _ = dist.evaluate(_rows(data.y, r0, r1), eta, _rows(data.m, r0, r1), 1.0, 0.0, order=2,
                                    loglik=False, aux=None if data.aux is None else data.aux[r0:r1])
        sb = starts[g0:g1] - r0
        return group_sums(l1, sb), group_sums(d, sb)

    for _ in range(steps):
        parts = in_group_blocks(block, len(eta_fixed), starts)
        L1, D = (np.concatenate([part[k] for part in parts]) for k in (0, 1))
        step = (sigma * L1 - b) / (1.0 + sigma * sigma * D)
        if not np.all(np.isfinite(step)):
            return None
        b += np.clip(step, -2.0 / sigma, 2.0 / sigma)
    return b


def joint_search(system, gamma, b, sigma, curvature, floor=0.0, maxiter=MAX_PASSES):
    """Secant steps in sigma with PIRLS steps in u, u also moving along its tangent with sigma, from
    (gamma, b, sigma) and a (negative) curvature of L0 in sigma (None: the expected information at the
    start).  Ends where the u decrement is below U_TOL and the next sigma step below SIGMA_STEP standard
    errors (1 / sqrt(-curvature)), at a point evaluated with log f.  Returns (gamma, b, sigma, Point,
    the last curvature), or None after `maxiter` passes or when sigma falls below `floor` (the boundary
    sigma = 0 is the scalar search's)."""
    last = None  # (sigma, dL0/dsigma) at the last point with a small decrement, for the secant
    at = system.point(gamma, b, sigma, loglik=False)
    if curvature is None and at is not None:  # the expected information for sigma: 2 sigma^2 sum_j (D_j / H_j)^2
        curvature = -2.0 * sigma * sigma * float(np.sum(((at.H - 1.0) / (sigma * sigma * at.H)) ** 2))
    while at is not None and system.passes < maxiter:
        if at.decrement < SECANT_DECREMENT:
            if last is not None and sigma != last[0]:
                secant = (at.grad_sigma - last[1]) / (sigma - last[0])
                curvature = secant if secant < 0 else curvature
            last = (sigma, at.grad_sigma)
        ds = float(np.clip(-at.grad_sigma / curvature, -MAX_LOG_STEP * sigma, MAX_LOG_STEP * sigma))
        if at.decrement > JOINT_DECREMENT * len(b):  # u far from its solution: dL0/dsigma means little yet
            ds = 0.0
        small = bool(at.decrement < U_TOL) and abs(ds) < SIGMA_STEP / np.sqrt(-curvature)
        if small and np.isfinite(at.value):
            return gamma, b, sigma, at, curvature
        gamma_new = gamma + at.step[0] + ds * at.tangent[0]
        b_new = b + at.step[1] + ds * at.tangent[1]
        new = system.point(gamma_new, b_new, sigma + ds, loglik=small or at.decrement < LOGLIK_DECREMENT)
        # a failed step (outside the support, or a PIRLS step alone that did not bring u closer): a
        # line-searched PIRLS at this sigma first.  A sigma step may leave u further from its new solution
        # than the tangent predicts; the next steps are PIRLS steps alone then (JOINT_DECREMENT).
        if new is None or (ds == 0.0 and new.decrement > at.decrement):
            done = converge_u(system, gamma, b, sigma, tol=SECANT_DECREMENT)
            if done is None:
                return None
            gamma, b, at = done
            continue
        gamma, b, sigma, at = gamma_new, b_new, sigma + ds, new
        if not sigma > floor:
            return None
    return None


def pilot_fit(dist, sub, maxiter, tol, t0):
    """(gamma, sigma, curvature of L0 in sigma, sigma floor) on the pilot's groups `sub`, or None (sigma
    near 0 there, or no finite start): the joint steps from the GLM start and sigma = ref / 2 (ref the
    spread of the GLM's linear predictor), else the scalar search of `_pirls` and a difference of dL0/dsigma."""
    start = irls_start(dist, sub)
    if start is None:
        return None
    floor = MIN_PILOT_SIGMA * _eta_scale(dist, sub, start[0])
    sigma = 0.5 * floor / MIN_PILOT_SIGMA
    b = start_modes(dist, sub, start[0], sigma)
    found = None if b is None else joint_search(JointSystem(dist, sub), start[0].copy(), b, sigma, None, floor)
    if found is not None:
        return found[0], found[2], found[4], floor
    pilot = scalar_fit(dist, sub, start[0], start[1], maxiter, tol, None, t0)
    sigma = float(np.sqrt(pilot.cov_re[0][0, 0]))
    floor = MIN_PILOT_SIGMA * _eta_scale(dist, sub, pilot.beta)
    if not (pilot.converged and sigma > floor):
        return None
    curvature = pilot_curvature(JointSystem(dist, sub), pilot.beta, pilot.modes[0][:, 0] / sigma, sigma)
    if curvature is None or not curvature < 0:
        return None
    return pilot.beta, sigma, curvature, floor


def fit_nagq0(dist, data, start, maxiter, tol, callback, t0):
    """nagq = 0: the joint steps where they apply (`applies`, `fast_fit`), else the scalar search of
    `_pirls.fit_nagq0` from ``start()`` = (gamma0, scale0)."""
    if applies(dist, data):
        fit = fast_fit(dist, data, maxiter, tol, callback, t0)
        if fit is not None:
            return fit
    gamma0, scale0 = start()
    if callback is not None:
        callback("start values", 0, np.nan)
    return scalar_fit(dist, data, gamma0, scale0, maxiter, tol, callback, t0)


def fast_fit(dist, data, maxiter, tol, callback, t0):
    """The nagq = 0 fit by `joint_search` from a pilot fit on PILOT_GROUPS groups; None when it does not
    apply here (pilot near sigma = 0, a failed step): the caller runs the scalar search."""
    sub = subset_groups(data, evenly_spaced_groups(data.n_groups, PILOT_GROUPS))
    pilot = pilot_fit(dist, sub, maxiter, tol, t0)
    if pilot is None:
        return None
    gamma, sigma, curvature, floor = pilot
    if callback is not None:
        callback("start values", 0, np.nan)
    b = start_modes(dist, data, gamma, sigma)
    system = JointSystem(dist, data)
    found = None if b is None else joint_search(system, gamma.copy(), b, sigma,
                                                curvature * data.n_groups / sub.n_groups, 0.5 * floor,
                                                maxiter=MAX_FULL_PASSES)
    if found is None:  # heading for the boundary, or not converging: the scalar search decides
        return None
    start = np.concatenate([gamma, [sigma]])
    gamma, b, sigma, at, _ = found
    passes = system.passes
    b = b + at.mode_step  # the modes at (gamma, sigma), to second order
    llf = at.value + at.mode_gap  # the Laplace value there, to the same order
    if callback is not None:
        callback("optimize", passes, -llf)
    cov = inverse_or_nan(at.schur)
    theta = np.concatenate([gamma, [sigma]])
    opt = OptSummary(method="secant steps on dL0/dsigma with PIRLS steps in (beta, b) from a pilot fit "
                     f"on {sub.n_groups} groups (nagq=0, approximate)", nagq=0, maxiter=maxiter, tol=tol,
                     initial=start, final=theta,
                     n_iterations=passes, n_evaluations=passes, objective=-llf,
                     newton_decrement=at.decrement, converged=True, message="converged",
                     seconds=time.perf_counter() - t0)
    return scalar_record(beta=gamma, cov_beta=cov, sigma=sigma, scale=1.0, llf=llf, modes=sigma * b,
                         mode_sd=sigma / np.sqrt(at.H), converged=True, opt=opt, dispersion=dist.has_dispersion,
                         cov_beta_pirls=cov, se_note=NAGQ0_SE_NOTE)
