"""Confidence intervals for every parameter of a fit: Wald, likelihood-ratio profile and (in
_bootstrap.py) the parametric bootstrap.

Rows: the fixed effects, then "<groups> SD" (sigma_u), then the family's own parameter:
"Residual SD" (sqrt(phi), Gaussian), "Dispersion" (phi, Gamma) or "alpha" (NB2).

Profile intervals (as lme4's ``confint(method="profile")``) work on the maximum-likelihood objective
over psi = (beta, sigma_u, log phi), beta on the data's scale.  For one parameter at a value v the
others are re-optimised (BFGS warm-started from the previous point, with the inverse of the free
block of the Hessian at the optimum as its start matrix), giving the signed root

    zeta(v) = sign(v - v_hat) sqrt(2 (f(v) - f_hat)),   f = -log-likelihood,

which is close to linear in v (in log sigma_u for the SD).  The interval ends solve zeta = +-z_{1-alpha/2}
by secant steps from the Wald guess, then regula falsi once bracketed: a handful of fits per end.
A Gaussian REML fit is profiled on its ML likelihood, as lme4 does.
"""
import numpy as np
import pandas as pd
from scipy import linalg, optimize, stats

from ._comparison import is_reml, refit_ml, require_random_intercept, unwrap
from ..engine._differences import second_differences
from ..engine._optimize import fd_hessian

#: |zeta - target| at which an interval end is accepted (z units; the end is then within ~1e-4 SE)
ZETA_TOL = 1e-4
MAX_STEPS = 12


def extra_row_names(res):
    """Names of the rows after the fixed effects: the group SD and the family parameter, if any."""
    dist = res.model.dist
    names = [f"{res.group_name} SD"]
    if dist.name == "gaussian":
        names.append("Residual SD")
    elif dist.name == "gamma":
        names.append("Dispersion")
    elif dist.name == "negativebinomial":
        names.append("alpha")
    return names


def family_parameter(dist, log_phi):
    """log phi -> the reported parameter: sqrt(phi) (Gaussian), phi (Gamma), alpha (NB2)."""
    return np.exp(0.5 * log_phi) if dist.name == "gaussian" else np.exp(log_phi)


def _frame(res, lower, upper):
    names = list(res.model.exog_names) + extra_row_names(res)
    return pd.DataFrame({"lower": np.asarray(lower, float), "upper": np.asarray(upper, float)},
                        index=pd.Index(names))


class Profile:
    """-log-likelihood over psi = (beta, sigma_u[, log phi]) with its gradient; constrained refits.

    Built from an ML (or Laplace/AGQ) fit; the optimum is polished once so that f_hat is the minimum
    of exactly this objective.  ``n_fits`` counts the constrained refits.
    """

    def __init__(self, res):
        from ..engine._laplace import MarginalLikelihood

        design = res.model.design
        self.dist = design.dist
        self.nagq = max(1, int(res.nagq or 1))
        self.objective = MarginalLikelihood(design.dist, design.engine_data(), nagq=self.nagq)
        self.R_inv = np.linalg.inv(design.scaling.matrix)
        self.p = design.X.shape[1]
        psi = np.concatenate([np.asarray(res.params, float), [np.sqrt(res.var_re)],
                              [np.log(res._phi)] if design.dist.has_dispersion else []])
        self.n_fits = 0
        self.hessian = fd_hessian(self, psi)
        self.psi_hat, self.f_hat = self._minimize(psi, np.arange(len(psi)))
        self.psi_hat[self.p] = abs(self.psi_hat[self.p])

    def __call__(self, psi):
        p = self.p
        theta = np.concatenate([self.R_inv @ psi[:p], psi[p:]])
        f, g = self.objective(theta)
        if g is None or not np.all(np.isfinite(g)):
            return f, np.full(len(psi), np.nan) if not np.isfinite(f) else np.nan_to_num(g)
        return f, np.concatenate([self.R_inv.T @ g[:p], g[p:]])

    def _minimize(self, psi, free):
        """Minimise over the coordinates `free`, the others held at psi's values."""
        base = psi.copy()

        def fun(x):
            full = base.copy()
            full[free] = x
            f, g = self(full)
            return f, g[free]

        with np.errstate(all="ignore"):
            out = optimize.minimize(fun, psi[free], jac=True, method="BFGS",
                                    options={"hess_inv0": _pd_inverse(self.hessian[np.ix_(free, free)]), "gtol": 1e-7,
                                             "maxiter": 200})
        best = base.copy()
        best[free] = out.x
        return best, float(out.fun)

    def constrained(self, j, value, start):
        """min f with psi_j = value, from `start`: (f, psi)."""
        self.n_fits += 1
        psi = start.copy()
        psi[j] = value
        free = np.delete(np.arange(len(psi)), j)
        psi, f = self._minimize(psi, free)
        return f, psi

    def wald_cov(self, drop=()):
        """Inverse of the observed information over psi (NaN where singular), without the coordinates `drop`
        (held at their estimates: NaN rows and columns)."""
        keep = [j for j in range(len(self.hessian)) if j not in drop]
        cov = np.full_like(self.hessian, np.nan)
        cov[np.ix_(keep, keep)] = _inverse(self.hessian[np.ix_(keep, keep)])
        return cov


def _pd_inverse(H):
    """Inverse of H with its eigenvalues made positive (|lambda|, floored), exactly symmetric."""
    if not np.all(np.isfinite(H)):
        return np.eye(len(H))
    w, V = linalg.eigh(0.5 * (H + H.T))
    w = np.maximum(np.abs(w), 1e-10 * max(np.abs(w).max(), 1e-10))
    inv = (V / w) @ V.T
    return 0.5 * (inv + inv.T)


def _solve_end(zeta, x_hat, step, target, lower_limit=-np.inf):
    """x with zeta(x) = target, starting at x_hat + step; secant, then regula falsi once bracketed."""
    pts = [(x_hat, 0.0)]
    x = x_hat + step
    for _ in range(MAX_STEPS):
        x = max(x, lower_limit)
        z = zeta(x)
        if not np.isfinite(z):  # outside the support: halve the way back
            x = 0.5 * (x + pts[-1][0])
            continue
        if abs(z - target) < ZETA_TOL:
            return x
        pts.append((x, z))
        below = [(a, b) for a, b in pts if (b - target) * np.sign(target) < 0]
        above = [(a, b) for a, b in pts if (b - target) * np.sign(target) > 0]
        if below and above:  # regula falsi on the closest bracket
            (a, fa) = min(below, key=lambda t: abs(t[1] - target))
            (b, fb) = min(above, key=lambda t: abs(t[1] - target))
            x = a + (target - fa) * (b - a) / (fb - fa)
        else:
            (a, fa), (b, fb) = pts[-2], pts[-1]
            slope = (fb - fa) / (b - a) if b != a else 0.0
            if not slope * np.sign(target) * np.sign(step) > 0:  # flat or wrong way: go further out
                x = b + (b - x_hat)
            else:
                x = b + np.clip((target - fb) / slope, -4 * abs(b - x_hat), 4 * abs(b - x_hat))
    return x if abs(zeta(x) - target) < 1e-2 else np.nan


def profile_ends(prof, kinds, z):
    """(lower, upper, refits) of every coordinate of a `Profile` at |zeta| = z.

    `kinds` names each coordinate: "beta" and "phi" (log phi) are profiled as they are; "sd" on the
    log scale, its lower end 0 when sigma = 0 is inside the interval; "corr" within [-1, 1], an end
    +-1 when the edge is inside; "log_alpha" (NB2) gets -inf as lower end when alpha -> 0 (the Poisson
    model) is inside.
    """
    cov = prof.wald_cov()
    psi_hat = prof.psi_hat
    lower, upper, n_fits = [], [], []
    for j, kind in enumerate(kinds):
        before = prof.n_fits
        warm = {1.0: psi_hat.copy(), -1.0: psi_hat.copy()}
        se = np.sqrt(cov[j, j]) if np.isfinite(cov[j, j]) and cov[j, j] > 0 else 0.1 * max(1.0, abs(psi_hat[j]))
        use_log = kind == "sd" and psi_hat[j] > 1e-3 * max(se, 1e-12)  # log scale unless at the boundary

        def zeta(x, j=j, use_log=use_log):
            value = np.exp(x) if use_log else x
            x_hat = np.log(psi_hat[j]) if use_log else psi_hat[j]
            side = 1.0 if x >= x_hat else -1.0
            f, psi = prof.constrained(j, value, warm[side])
            if np.isfinite(f):
                warm[side] = psi
            return side * np.sqrt(max(0.0, 2.0 * (f - prof.f_hat))) if np.isfinite(f) else np.nan

        ends = []
        for sign in (-1.0, 1.0):
            edge = {"sd": (0.0, 0.0) if sign < 0 else None, "corr": (sign, sign),
                    "log_alpha": (psi_hat[j] - 25.0, -np.inf) if sign < 0 else None}.get(kind)
            if edge is not None:  # the interval may reach the edge of the parameter space
                f0, _ = prof.constrained(j, edge[0], psi_hat)
                if np.isfinite(f0) and np.sqrt(max(0.0, 2.0 * (f0 - prof.f_hat))) <= z:
                    ends.append(edge[1])
                    continue
            if use_log:
                ends.append(np.exp(_solve_end(zeta, np.log(psi_hat[j]), sign * z * se / psi_hat[j], sign * z)))
                continue
            step = sign * z * se
            if kind == "corr":
                step = sign * min(abs(step), 0.5 * (1.0 - sign * psi_hat[j]))
            x = _solve_end(zeta, psi_hat[j], step, sign * z, {"sd": 0.0, "corr": -1.0}.get(kind, -np.inf))
            ends.append(min(x, 1.0) if kind == "corr" else x)
        lower.append(ends[0])
        upper.append(ends[1])
        n_fits.append(prof.n_fits - before)
    return np.array(lower), np.array(upper), n_fits


def profile_intervals(res, alpha=0.05):
    """Likelihood-ratio (profile) intervals: ends where 2 (llf_hat - llf_profile) = chi2_1(1 - alpha)."""
    res = require_random_intercept(unwrap(res), "conf_int(method='profile')")
    fit = refit_ml(res) if is_reml(res) else res
    prof = Profile(fit)
    dist = prof.dist
    tail = ["log_alpha" if dist.name == "negativebinomial" else "phi"] if dist.has_dispersion else []
    lower, upper, n_fits = profile_ends(prof, ["beta"] * prof.p + ["sd"] + tail, stats.norm.isf(alpha / 2.0))
    if dist.has_dispersion:
        lower[-1], upper[-1] = family_parameter(dist, lower[-1]), family_parameter(dist, upper[-1])
    out = _frame(res, lower, upper)
    note = ""
    if is_reml(res):
        note = "Gaussian REML fit profiled on its ML likelihood (as lme4)"
    elif res.nagq == 0:
        note = "nagq=0 fit profiled on the Laplace likelihood"
    out.attrs.update(fits=dict(zip(out.index, n_fits)), method="profile", note=note)
    return out


# ----------------------------------------------------------------------------------------- Wald
def reml_negloglik(design, log_sd_re, log_sd_resid):
    """-REML log-likelihood of a Gaussian random-intercept model at (log sigma_u, log sigma_e)
    (``_lmm.reml_loglik``; with the fit's var_weights / freq_weights)."""
    from ..engine._lmm import lmm_stats, reml_loglik

    o = design.order
    st = lmm_stats(design.X[o], (design.y - design.offset)[o], design.starts, design.counts, *design.lmm_weights())
    return -reml_loglik(st, np.exp(2.0 * log_sd_re), np.exp(2.0 * log_sd_resid))


def _numeric_hessian(fun, x, h=1e-4):
    """Central second differences of a scalar function, absolute step h (a 2 x 2 problem here)."""
    return second_differences(fun, x, np.full(len(x), h))


def wald_intervals(res, alpha=0.05):
    """Wald intervals: beta +- z SE, and the SDs / dispersion on the log scale, exp(log s +- z SE(log s)).

    The variance parameters' SEs come from the observed information of the fit's own criterion
    (REML for a Gaussian REML fit, else the (Laplace/AGQ) log-likelihood); a boundary fit
    (sigma_u = 0) has no log-scale interval for sigma_u (NaN) and the others are conditional on it.
    """
    res = require_random_intercept(unwrap(res), "conf_int(method='wald')")
    z = stats.norm.isf(alpha / 2.0)
    beta = np.asarray(res.params, float)
    se_beta = np.asarray(res.bse, float)
    lower, upper = list(beta - z * se_beta), list(beta + z * se_beta)
    dist = res.model.dist
    sigma = np.sqrt(res.var_re)
    boundary = bool(res.singular) or not sigma > 0  # sigma_u = 0: the others' SEs are conditional on it
    if is_reml(res):
        design = res.model.design
        log_se = 0.5 * np.log(res.scale)
        with np.errstate(all="ignore"):
            if boundary:
                h = _numeric_hessian(lambda v: reml_negloglik(design, -np.inf, v[0]), np.array([log_se]))
                logs, se_log = np.array([np.nan, log_se]), np.array([np.nan, 1.0 / np.sqrt(h[0, 0])])
            else:
                logs = np.array([np.log(sigma), log_se])
                cov = _inverse(_numeric_hessian(lambda v: reml_negloglik(design, v[0], v[1]), logs))
                se_log = np.sqrt(np.diag(cov))
    else:
        prof = Profile(res)
        cov = prof.wald_cov(drop=[prof.p] if boundary else ())[prof.p:, prof.p:]
        psi = prof.psi_hat[prof.p:]
        se_log = np.sqrt(np.diag(cov)) / np.concatenate([[psi[0]], np.ones(len(psi) - 1)])
        logs = np.concatenate([[np.log(psi[0]) if psi[0] > 0 else np.nan], psi[1:]])
        if dist.name == "gaussian":  # log sigma_e = log(phi) / 2
            logs[1:], se_log[1:] = logs[1:] / 2.0, se_log[1:] / 2.0
    for value, se in zip(logs, se_log):  # log sigma_u, then log sigma_e (Gaussian) or log phi / log alpha
        lower.append(np.exp(value - z * se))
        upper.append(np.exp(value + z * se))
    out = _frame(res, lower, upper)
    out.attrs.update(method="wald")
    return out


def _inverse(matrix):
    try:
        return linalg.inv(matrix)
    except (linalg.LinAlgError, ValueError):
        return np.full_like(matrix, np.nan)
