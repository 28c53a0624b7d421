"""Wald and profile intervals for fits with a vector random effect (random slopes).

Parameters, as lme4's ``confint`` (``.sig01``, ... in its column-wise order), psi =

    (beta, SD of each term, correlation of each pair of correlated terms, log phi),

beta on the data's scale, phi = sigma^2 (Gaussian) or the family's dispersion.  Sigma = D C D with
D = diag(SD), C the correlation matrix, so the engine's relative factor is Lambda = D chol(C) / sigma
(Gaussian) or Lambda_s = diag(rms of Z) D chol(C) (Laplace, scaled Z): an SD of 0 is allowed, a
correlation beyond +-1 counts as +-1 (so the refits need no bounds) and a correlation matrix that is
not positive semidefinite gives f = inf.

Objective f(psi) = -log-likelihood (ML):
  Gaussian, exact:  2 f = 2 sum_j log|L_j| + n log(2 pi sigma^2) + a'Ma / sigma^2,  a = (-beta, 1)
  (``_lmm_vector``: a'Ma is the penalised residual sum of squares at beta);
  other families: the Laplace approximation of ``_laplace_vector.VectorLaplace``.
Its gradient is by central differences (a handful of parameters).  The profile intervals are
``_intervals.profile_ends`` (signed root zeta, secant / regula falsi ends); SDs are profiled on
the log scale, correlations on their own scale within (-1, 1).  A Gaussian REML fit is profiled on
its ML likelihood, as lme4 does (lme4's REML and ML profiles of sleepstudy agree to 1e-6).

Wald intervals for the variance parameters (lme4 gives none; glmmTMB uses log SDs): the delta method
on the observed information of the fit's own criterion (REML for a Gaussian REML fit, beta profiled
out), with log SD -> exp(log s +- z se), correlation -> tanh(atanh r +- z se) and log sigma.  A
boundary fit (an SD at 0 or a correlation of +-1) gets NaN for the parameters at or tied to the
boundary; the others are conditional on it.
"""
import numpy as np
import pandas as pd
from scipy import linalg, stats

from ._comparison import is_reml, refit_ml, unwrap
from ..engine._differences import central_gradient, second_differences
from ._intervals import Profile, _inverse, family_parameter, profile_ends
from ..engine._lmm_vector import LOG_2PI, SINGULAR_TOL, LambdaPattern, _factors, vector_stats


def correlated_pairs(design):
    """(a, b), a < b, for every pair of terms with a free correlation (lme4's column-wise order)."""
    pattern = LambdaPattern(design.Z.shape[1], design.re_blocks)
    return [(int(c), int(r)) for r, c in zip(pattern.rows, pattern.cols) if r != c]


def covariance_rows(res):
    """(names, pairs): "<g> SD <term>" per term, then "<g> Cor <a>,<b>" per correlated pair (a, b)."""
    names = list(res._fit.re_names)
    pairs = correlated_pairs(res.model.design)
    g = res.group_name
    labels = [f"{g} SD {n}" for n in names] + [f"{g} Cor {names[a]},{names[b]}" for a, b in pairs]
    return labels, pairs


def row_names(res):
    labels, _ = covariance_rows(res)
    dist = res.model.dist
    tail = {"gaussian": ["Residual SD"], "gamma": ["Dispersion"], "negativebinomial": ["alpha"]}.get(dist.name, [])
    return list(res.model.exog_names) + labels + tail


def _frame(res, lower, upper):
    return pd.DataFrame({"lower": np.asarray(lower, float), "upper": np.asarray(upper, float)},
                        index=pd.Index(row_names(res)))


def _corr_factor(q, pairs, corr):
    """Lower-triangular F with F F' = C, the correlation matrix with the given pair values (clipped to
    [-1, 1]); a zero column where C is singular (a correlation of +-1).  None if C is not semidefinite."""
    C = np.eye(q)
    for (a, b), r in zip(pairs, np.clip(corr, -1.0, 1.0)):
        C[a, b] = C[b, a] = r
    F = np.zeros((q, q))
    for j in range(q):  # Cholesky by columns, tolerating zero pivots
        d = C[j, j] - F[j, :j] @ F[j, :j]
        if d < -1e-10:
            return None
        F[j, j] = np.sqrt(max(d, 0.0))
        for i in range(j + 1, q):
            rest = C[i, j] - F[i, :j] @ F[j, :j]
            if F[j, j] > 1e-8:
                F[i, j] = rest / F[j, j]
            elif abs(rest) > 1e-6:
                return None
    return F


def _psi_hat(res, pairs):
    """psi at the fit: beta, SDs, correlations (0 where an SD is 0), log phi."""
    cov = res._fit.cov_re
    sd = np.sqrt(np.maximum(np.diag(cov), 0.0))
    corr = [cov[a, b] / (sd[a] * sd[b]) if sd[a] > 0 and sd[b] > 0 else 0.0 for a, b in pairs]
    tail = [np.log(res.scale)] if res.model.dist.has_dispersion else []
    return np.concatenate([np.asarray(res.params, float), sd, np.clip(corr, -1.0, 1.0), tail])


class GaussianDeviance:
    """Exact Gaussian -log-likelihood (ML) and -REML criterion over psi (see the module docstring)."""

    def __init__(self, design, pairs):
        o = design.order
        self.stats = vector_stats(design.X[o], (design.y - design.offset)[o], design.Z[o], design.starts)
        self.q, self.pairs, self.p = design.Z.shape[1], pairs, design.X.shape[1]

    def _parts(self, sd, corr, log_phi):
        chol_c = _corr_factor(self.q, self.pairs, corr)
        if chol_c is None or not np.isfinite(log_phi):
            return None
        sigma = np.exp(0.5 * log_phi)
        try:
            L, _, R = _factors((np.abs(sd)[:, None] * chol_c) / sigma, self.stats)
        except (np.linalg.LinAlgError, linalg.LinAlgError):
            return None
        return 2.0 * np.sum(np.log(np.diagonal(L, axis1=1, axis2=2))), R, sigma**2

    def ml(self, psi):
        p, q, k = self.p, self.q, len(self.pairs)
        parts = self._parts(psi[p:p + q], psi[p + q:p + q + k], psi[-1])
        if parts is None:
            return np.inf
        logdet, R, s2 = parts
        a = np.concatenate([-psi[:p], [1.0]])
        prss = float(np.sum((R.T @ a) ** 2))
        n = self.stats.n
        return 0.5 * (logdet + n * (LOG_2PI + np.log(s2)) + prss / s2)

    def reml(self, omega):
        """-REML log-likelihood at omega = (SDs, correlations, log phi) (beta profiled out)."""
        q, k, p, n = self.q, len(self.pairs), self.p, self.stats.n
        parts = self._parts(omega[:q], omega[q:q + k], omega[-1])
        if parts is None:
            return np.inf
        logdet, R, s2 = parts
        r2 = R[p, p] ** 2
        return 0.5 * (logdet + 2.0 * np.sum(np.log(np.diag(R)[:p])) + (n - p) * (LOG_2PI + np.log(s2)) + r2 / s2)


class LaplaceDeviance:
    """The Laplace -log-likelihood of the fit's family over psi."""

    def __init__(self, design, pairs):
        from ..engine._fit_vector import z_scale
        from ..engine._laplace_vector import VectorData, VectorLaplace

        base = design.engine_data()
        self.zs = z_scale(design.Z)
        data = VectorData(y=base.y, X=base.X, Z=design.Z[design.order] / self.zs, offset=base.offset, m=base.m,
                          const=base.const, starts=base.starts, counts=base.counts)
        self.pattern = LambdaPattern(design.Z.shape[1], design.re_blocks)
        self.objective = VectorLaplace(design.dist, data, self.pattern)
        self.R_inv = np.linalg.inv(design.scaling.matrix)
        self.q, self.pairs, self.p = design.Z.shape[1], pairs, design.X.shape[1]
        self.has_phi = design.dist.has_dispersion

    def ml(self, psi):
        p, q, k = self.p, self.q, len(self.pairs)
        chol_c = _corr_factor(q, self.pairs, psi[p + q:p + q + k])
        if chol_c is None:
            return np.inf
        lam = (self.zs * np.abs(psi[p:p + q]))[:, None] * chol_c
        theta = np.concatenate([self.R_inv @ psi[:p], self.pattern.entries(lam), psi[-1:] if self.has_phi else []])
        with np.errstate(all="ignore"):
            f, _ = self.objective(theta, need_grad=False)
        return float(f) if np.isfinite(f) else np.inf


def _steps(psi):
    return 1e-5 * np.maximum(np.abs(psi), 1e-2)


def fd_gradient(fun, x):
    """Central differences, relative steps."""
    return central_gradient(fun, x, _steps(x))


def fd_hessian_values(fun, x):
    """Central second differences of a scalar function, relative steps (10x the gradient's)."""
    return second_differences(fun, x, 10.0 * _steps(x))


class DevianceProfile(Profile):
    """A profile whose objective is ``self.deviance.ml`` (ML deviance over psi) with a difference gradient."""

    def __call__(self, psi):
        f = self.deviance.ml(psi)
        if not np.isfinite(f):
            return f, np.full(len(psi), np.nan)
        with np.errstate(all="ignore"):
            g = fd_gradient(self.deviance.ml, psi)
        return f, np.nan_to_num(g)


class VectorProfile(DevianceProfile):
    """`_intervals.Profile` over psi of a random-slope fit (constrained refits, Wald covariance)."""

    def __init__(self, res, pairs):
        design = res.model.design
        self.dist = design.dist
        self.deviance = (GaussianDeviance if design.gaussian_identity else LaplaceDeviance)(design, pairs)
        self.p = design.X.shape[1]
        psi = _psi_hat(res, pairs)
        self.n_fits = 0
        with np.errstate(all="ignore"):
            self.hessian = fd_hessian_values(self.deviance.ml, psi)
            self.psi_hat, self.f_hat = self._minimize(psi, np.arange(len(psi)))
        q = design.Z.shape[1]
        self.psi_hat[self.p:self.p + q] = np.abs(self.psi_hat[self.p:self.p + q])
        k = len(pairs)
        self.psi_hat[self.p + q:self.p + q + k] = np.clip(self.psi_hat[self.p + q:self.p + q + k], -1.0, 1.0)



def _kinds(res, pairs):
    """Per psi coordinate: "beta", "sd", "corr" or "phi"."""
    q = len(res._fit.re_names)
    tail = ["phi"] if res.model.dist.has_dispersion else []
    return ["beta"] * len(res.params) + ["sd"] * q + ["corr"] * len(pairs) + tail


def profile_intervals(res, alpha=0.05):
    """Likelihood-ratio intervals for every parameter of a random-slope fit (see the module docstring)."""
    res = unwrap(res)
    _, pairs = covariance_rows(res)
    fit = refit_ml(res) if is_reml(res) else res
    prof = VectorProfile(fit, pairs)
    kinds = _kinds(fit, pairs)
    lower, upper, n_fits = profile_ends(prof, kinds, stats.norm.isf(alpha / 2.0))
    if prof.dist.has_dispersion:
        lower[-1], upper[-1] = family_parameter(prof.dist, lower[-1]), family_parameter(prof.dist, upper[-1])
    out = _frame(res, lower, upper)
    note = "Gaussian REML fit profiled on its ML likelihood (as lme4)" if is_reml(res) else ""
    out.attrs.update(fits=dict(zip(out.index, n_fits)), method="profile", note=note)
    return out


def _transformed(value, kind):
    """Wald scale of a variance parameter: log SD, atanh(correlation), log phi as is."""
    with np.errstate(all="ignore"):
        return {"sd": np.log(value), "corr": np.arctanh(value)}.get(kind, value)


def _back(value, kind):
    return {"sd": np.exp(value), "corr": np.tanh(value)}.get(kind, value)


def wald_intervals(res, alpha=0.05):
    """Wald intervals: beta +- z SE, variance parameters by the delta method (see the module docstring)."""
    res = unwrap(res)
    _, pairs = covariance_rows(res)
    z = stats.norm.isf(alpha / 2.0)
    beta, se_beta = np.asarray(res.params, float), np.asarray(res.bse, float)
    kinds = _kinds(res, pairs)[len(beta):]
    psi = _psi_hat(res, pairs)
    omega = psi[len(beta):]
    q = len(res._fit.re_names)
    # at the boundary: SDs at 0, and correlations touching them or at +-1, are held fixed (NaN)
    sd = omega[:q]
    fixed = [k for k in range(q) if sd[k] < SINGULAR_TOL * max(1.0, np.max(sd))]
    fixed += [q + m for m, (a, b) in enumerate(pairs) if a in fixed or b in fixed or abs(omega[q + m]) > 1 - 1e-6]
    free = [k for k in range(len(omega)) if k not in fixed]
    design = res.model.design
    with np.errstate(all="ignore"):
        if is_reml(res):
            dev = GaussianDeviance(design, pairs)

            def fun(x):
                full = omega.copy()
                full[free] = x
                return dev.reml(full)

            cov_free = _inverse(fd_hessian_values(fun, omega[free]))
        else:
            deviance = (GaussianDeviance if design.gaussian_identity else LaplaceDeviance)(design, pairs)
            keep = list(range(len(beta))) + [len(beta) + k for k in free]

            def fun(x):
                full = psi.copy()
                full[keep] = x
                return deviance.ml(full)

            cov_free = _inverse(fd_hessian_values(fun, psi[keep]))[len(beta):, len(beta):]
    se = np.full(len(omega), np.nan)
    se[free] = np.sqrt(np.diag(cov_free))
    lower, upper = list(beta - z * se_beta), list(beta + z * se_beta)
    for k, kind in enumerate(kinds):
        value = omega[k]
        deriv = {"sd": 1.0 / value if value > 0 else np.nan, "corr": 1.0 / (1.0 - value**2)}.get(kind, 1.0)
        if kind == "phi" and res.model.dist.name == "gaussian":  # log sigma = log(phi) / 2
            value, deriv = value / 2.0, 0.5
        centre, half = _transformed(value, kind), z * se[k] * deriv
        lo, hi = _back(centre - half, kind), _back(centre + half, kind)
        if kind == "phi":
            lo, hi = np.exp(lo), np.exp(hi)
        lower.append(lo)
        upper.append(hi)
    out = _frame(res, lower, upper)
    out.attrs.update(method="wald")
    return out
