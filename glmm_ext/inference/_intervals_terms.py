"""Wald and profile intervals for every random-effects structure but one scalar random intercept (whose
profile, adaptive quadrature included, is `_intervals`): random slopes, several terms, crossed and nested
factors -- all read through the per-term view (`_term_view`).

Parameters, in the rows of ``conf_int``, psi =

    (beta, per term: its SDs then its correlations (lme4's column-wise pairs), log phi),

beta on the data's scale, phi = sigma^2 (Gaussian) or the family's dispersion.  Rows: "<term> SD <column>"
and "<term> Cor <a>,<b>" (a one-factor model: "<group> SD <column>"), then "Residual SD", "Dispersion"
or "alpha".  Term k's covariance is Sigma_k = D_k C_k D_k, so the engine's relative factor is
Lambda_k = D_k chol(C_k) / sigma (Gaussian) or D_k chol(C_k) (every other family; `engine._structure`; a
one-factor model's independent blocks are the engine's terms).  An SD of 0 is allowed, a correlation
beyond +-1 counts as +-1 and a correlation matrix that is not positive semidefinite gives f = inf.

Objective f(psi) = -log-likelihood (ML):
  Gaussian, exact: 2 f = log|Lambda'Z'WZ Lambda + I| + n log(2 pi sigma^2) + a'Ma / sigma^2 - sum f log v,
  a = (-beta, 1), M = L_FF L_FF' the Schur complement of [X y] in the blocked factor of `engine._pls` (a'Ma is
  the penalised residual sum of squares at beta), W = diag(v f) and n = sum f with var_weights v and
  freq_weights f (`engine._weights.gaussian_weights`: the likelihood of each row repeated f times);
  other families: the Laplace approximation (`engine._mixed.loglik_function`, data units, its var_weights and
  freq_weights apart: `engine._weights.density_weights`).
At the estimates of an ML fit f is -llf, weights included.
The profile ends are `_intervals.profile_ends` (signed root zeta; SDs on the log scale, correlations
within (-1, 1)); a Gaussian REML fit is profiled on its ML likelihood, as lme4's ``confint`` does.

Wald intervals: beta +- z SE; the variance parameters by the delta method on the observed information of
the fit's own criterion (REML for a Gaussian REML fit, beta profiled out): exp(log SD +- z SE),
tanh(atanh r +- z SE), exp(log sigma +- z SE).  An SD at 0 (and a correlation tied to it or at +-1) gets
NaN; the others are conditional on it.
"""
import numpy as np
import pandas as pd
from scipy import linalg, optimize, stats

from ._comparison import is_reml, refit_ml, unwrap
from ._intervals import Profile, _inverse, _pd_inverse, family_parameter, profile_ends
from .._term_view import engine_structure, per_term
from ..engine._differences import central_gradient, second_differences
from ..engine._weights import gaussian_weights

LOG_2PI = float(np.log(2.0 * np.pi))
SINGULAR_TOL = 1e-4


def term_layout(res):
    """Per view term: (sd slice, corr slice, pairs) into omega = psi without beta and the family parameter."""
    out, start = [], 0
    for t in res._terms:
        pairs = t.pairs
        out.append((slice(start, start + t.q), slice(start + t.q, start + t.q + len(pairs)), pairs))
        start += t.q + len(pairs)
    return out, start


def row_names(res):
    """Fixed effects, then per term "<term> SD <column>" and "<term> Cor <a>,<b>", then the family parameter."""
    names = list(res.model.exog_names)
    for t in res._terms:
        key = t.key if per_term(res) else res.group_name
        z = list(t.z_names)
        names += [f"{key} SD {c}" for c in z] + [f"{key} Cor {z[a]},{z[b]}" for a, b in t.pairs]
    dist = res.model.dist
    if dist.name == "gaussian":
        names.append("Residual SD")
    elif dist.name == "negativebinomial":
        names.append("alpha")
    elif dist.has_dispersion:
        names.append("Dispersion")
    return names


def covariance_estimates(terms, covs):
    """Per term its SDs then its correlations (0 where an SD is 0), from the q x q covariances."""
    values = []
    for t, cov in zip(terms, covs):
        cov = np.atleast_2d(np.asarray(cov, float))
        sd = np.sqrt(np.maximum(np.diag(cov), 0.0))
        values += list(sd)
        values += [float(np.clip(cov[a, b] / (sd[a] * sd[b]), -1, 1)) if sd[a] > 0 and sd[b] > 0 else 0.0
                   for a, b in t.pairs]
    return values


def kinds(res):
    """Per psi coordinate: "beta", "sd", "corr", "phi" or "log_alpha" (NB2)."""
    out = ["beta"] * len(res.params)
    for sd, corr, pairs in term_layout(res)[0]:
        out += ["sd"] * (sd.stop - sd.start) + ["corr"] * len(pairs)
    dist = res.model.dist
    if dist.has_dispersion:
        out.append("log_alpha" if dist.name == "negativebinomial" else "phi")
    return out


def psi_hat(res):
    """psi at the fit: beta, per term SDs and correlations (0 where an SD is 0), log phi."""
    values = list(np.asarray(res.params, float)) + covariance_estimates(res._terms, [t.cov for t in res._terms])
    if res.model.dist.has_dispersion:
        values.append(np.log(res._phi))
    return np.array(values, float)


def corr_factor(q, pairs, corr):
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


def _steps(psi):
    return 1e-5 * np.maximum(np.abs(psi), 1e-2)


def fd_gradient(fun, x):
    """Central differences, relative steps."""
    return central_gradient(fun, x, _steps(x))


def fd_hessian_values(fun, x):
    """Central second differences of a scalar function, steps 1e-3 max(|x|, 0.1): the likelihood of uncentred
    data carries rounding noise of ~1e-12 relative, which smaller steps would amplify (the truncation error at
    this step is ~1e-6 relative)."""
    return second_differences(fun, x, 1e-3 * np.maximum(np.abs(x), 0.1))


class TermsDeviance:
    """-log-likelihood (ML) over psi and, for the Gaussian identity model, the -REML criterion over omega."""

    def __init__(self, res):
        from ..engine._mixed_lmm import GaussianProfile

        design = res.model.design
        self.structure, self.columns = engine_structure(res)
        self.terms = res._terms
        self.layout, self.n_omega = term_layout(res)
        var_weights, freq_weights = design.engine_weights()
        self.dist = design.dist
        self.p = design.X.shape[1]
        self.gaussian = bool(design.gaussian_identity)
        self.has_phi = design.dist.has_dispersion
        offset = np.asarray(design.offset, float)
        if self.gaussian:
            # rows weighted v f, sum(f) observations and the density's -1/2 sum f log v (`gaussian_weights`)
            w, self.n, self.log_weights = gaussian_weights(var_weights, freq_weights, design.X.shape[0])
            # the profile's cross-products of the conditioned response (y - X c) / s (`GaussianProfile`'s
            # ``condition``: a response far from 0, e.g. around 1e8, keeps its digits); beta = c + s beta_t
            self.prof = GaussianProfile(self.structure, design.y - offset, design.X, w, reml=False, condition=True)
            self.shift, self.yscale = self.prof.shift, self.prof.yscale
            return
        from ..engine._mixed import loglik_function

        self.laplace = loglik_function(design.y, design.X, self.structure, design.dist, offset=offset,
                                       prior_weights=var_weights, freq_weights=freq_weights,
                                       trials=design.trials if design.has_trials else None)

    def lambdas(self, omega, sigma=1.0):
        """Per engine term Lambda_k = D_k chol(C_k) / sigma; None where a correlation matrix is not semidefinite.
        (A one-factor model's blocks: the rows and columns of its factor, block diagonal as C is.)"""
        full = []
        for t, (sd, corr, pairs) in zip(self.terms, self.layout):
            F = corr_factor(t.q, pairs, omega[corr]) if pairs else np.eye(t.q)
            if F is None:
                return None
            full.append(np.abs(omega[sd])[:, None] * F / sigma)
        return [full[k][np.ix_(cols, cols)] for k, cols in self.columns]

    def _gaussian_parts(self, omega, log_phi):
        if not np.isfinite(log_phi):
            return None
        sigma = np.exp(0.5 * log_phi)
        lams = self.lambdas(omega, sigma)
        if lams is None:
            return None
        try:
            fac, _ = self.prof.factor(self.structure.pack(lams))
        except (np.linalg.LinAlgError, linalg.LinAlgError):
            return None
        if fac.LFF is None:
            return None
        return fac.logdet_Z, fac.LFF, sigma * sigma

    def ml(self, psi):
        p = self.p
        omega = psi[p:p + self.n_omega]
        if self.gaussian:
            parts = self._gaussian_parts(omega, psi[-1])
            if parts is None:
                return np.inf
            logdet, LFF, s2 = parts
            a = np.concatenate([self.shift - psi[:p], [self.yscale]])  # (c - beta, s): the factor's units
            prss = float(np.sum((LFF.T @ a) ** 2))
            return 0.5 * (logdet + self.n * (LOG_2PI + np.log(s2)) + prss / s2 - self.log_weights)
        lams = self.lambdas(omega)
        if lams is None:
            return np.inf
        tail = [psi[-1]] if self.has_phi else []
        f = -self.laplace(np.concatenate([psi[:p], self.structure.pack(lams), tail]))
        return float(f) if np.isfinite(f) else np.inf

    def ml_profiled(self, psi, fixed=None):
        """(-log-likelihood minimised over beta, that beta) at psi's variance parameters (Gaussian); with
        `fixed` = j, beta_j is held at psi[j] and the other coefficients minimise the penalised RSS a'Ma."""
        p = self.p
        parts = self._gaussian_parts(psi[p:p + self.n_omega], psi[-1])
        if parts is None:
            return np.inf, None
        logdet, LFF, s2 = parts
        c, ys = self.shift, self.yscale  # the factor's units: beta_t = (beta - c) / s, its residuals over s
        if fixed is None:
            beta = linalg.solve_triangular(LFF[:p, :p], LFF[p, :p], lower=True, trans="T")
            prss = LFF[p, p] ** 2
        else:
            M = LFF @ LFF.T  # a'Ma with a = (-beta, 1): minimise over beta_{-j} at beta_j = psi[j]
            held = (psi[fixed] - c[fixed]) / ys
            rest = [k for k in range(p) if k != fixed]
            beta = np.empty(p)
            beta[fixed] = held
            if rest:
                beta[rest] = linalg.solve(M[np.ix_(rest, rest)], M[rest, p] - M[rest, fixed] * held, assume_a="pos")
            a = np.concatenate([-beta, [1.0]])
            prss = float(a @ M @ a)
        prss *= ys * ys
        return 0.5 * (logdet + self.n * (LOG_2PI + np.log(s2)) + prss / s2 - self.log_weights), c + ys * beta

    def reml(self, omega_phi):
        """-REML log-likelihood at (omega, log phi), beta profiled out (Gaussian identity)."""
        parts = self._gaussian_parts(omega_phi[:-1], omega_phi[-1])
        if parts is None:
            return np.inf
        logdet, LFF, s2 = parts
        p, n = self.p, self.n
        r2 = (self.yscale * LFF[p, p]) ** 2
        return 0.5 * (logdet + 2.0 * np.sum(np.log(np.diag(LFF)[:p])) + (n - p) * (LOG_2PI + np.log(s2)) + r2 / s2
                      - self.log_weights)


class TermsProfile(Profile):
    """`_intervals.Profile` over psi (constrained refits, Wald covariance), objective ``deviance.ml`` with a
    difference gradient."""

    def __init__(self, res):
        design = res.model.design
        self.dist = design.dist
        self.deviance = TermsDeviance(res)
        self.p = design.X.shape[1]
        psi = psi_hat(res)
        self.n_fits = 0
        with np.errstate(all="ignore"):
            self.hessian = fd_hessian_values(self.deviance.ml, psi)
            self.psi_hat, self.f_hat = self._minimize(psi, np.arange(len(psi)))
        for sd, corr, _ in self.deviance.layout:  # the likelihood is even in an SD
            self.psi_hat[self.p + sd.start:self.p + sd.stop] = np.abs(self.psi_hat[self.p + sd.start:self.p + sd.stop])
            c = slice(self.p + corr.start, self.p + corr.stop)
            self.psi_hat[c] = np.clip(self.psi_hat[c], -1.0, 1.0)

    def __call__(self, psi):
        f = self.deviance.ml(psi)
        if not np.isfinite(f):
            return f, np.full(len(psi), np.nan)
        with np.errstate(all="ignore"):
            g = fd_gradient(self.deviance.ml, psi)
        return f, np.nan_to_num(g)

    def constrained(self, j, value, start):
        """min f with psi_j = value, from `start`: (f, psi).  Gaussian: beta (the other coefficients when j is
        one) profiled out exactly at the covariance parameters, the search over the variance parameters only."""
        dev = self.deviance
        if not dev.gaussian:
            return super().constrained(j, value, start)
        self.n_fits += 1
        p = self.p
        psi = start.copy()
        psi[j] = value
        free = np.array([k for k in range(p, len(psi)) if k != j])
        fixed = j if j < p else None

        def g(x):
            full = psi.copy()
            full[free] = x
            return dev.ml_profiled(full, fixed)[0]

        def fg(x):
            f = g(x)
            return f, (np.nan_to_num(fd_gradient(g, x)) if np.isfinite(f) else np.zeros(len(x)))

        with np.errstate(all="ignore"):
            out = optimize.minimize(fg, psi[free], jac=True, method="BFGS",
                                    options={"hess_inv0": _pd_inverse(self.hessian[np.ix_(free, free)]),
                                             "gtol": 1e-5, "maxiter": 200})
        psi[free] = out.x
        f, beta = dev.ml_profiled(psi, fixed)
        if beta is not None:
            psi[:p] = beta
        return float(f), psi



def _frame(res, lower, upper):
    return pd.DataFrame({"lower": np.asarray(lower, float), "upper": np.asarray(upper, float)},
                        index=pd.Index(row_names(res)))


def profile_intervals(res, alpha=0.05):
    """Likelihood-ratio intervals for every parameter (see the module docstring)."""
    res = unwrap(res)
    fit = refit_ml(res) if is_reml(res) else res
    prof = TermsProfile(fit)
    lower, upper, n_fits = profile_ends(prof, kinds(fit), stats.norm.isf(alpha / 2.0))
    if prof.dist.has_dispersion:
        lower[-1], upper[-1] = family_parameter(prof.dist, lower[-1]), family_parameter(prof.dist, upper[-1])
    out = _frame(res, lower, upper)
    note = "Gaussian REML fit profiled on its ML likelihood (as lme4)" if is_reml(res) else ""
    if res.method == "PIRLS (nagq=0)":
        note = "nagq=0 fit profiled on the Laplace likelihood"
    out.attrs.update(fits=dict(zip(out.index, n_fits)), method="profile", note=note)
    return out


def variance_covariance(res):
    """(omega_hat, kinds, cov, free): the observed-information covariance of the variance parameters
    omega = (per term SDs and correlations[, log phi]) on the fit's own criterion; NaN rows where fixed."""
    p = len(res.params)
    psi = psi_hat(res)
    kind = kinds(res)[p:]
    omega = psi[p:]
    dev = TermsDeviance(res)
    sds = [k for k in range(len(omega)) if kind[k] == "sd"]
    top = max([omega[k] for k in sds] + [1e-300])
    fixed = [k for k in sds if omega[k] < SINGULAR_TOL * max(1.0, top)]
    for sd, corr, pairs in dev.layout:
        for m, (a, b) in enumerate(pairs):
            k = corr.start + m
            if sd.start + a in fixed or sd.start + b in fixed or abs(omega[k]) > 1 - 1e-6:
                fixed.append(k)
    free = [k for k in range(len(omega)) if k not in fixed]
    with np.errstate(all="ignore"):
        if is_reml(res):
            def fun(x):
                full = omega.copy()
                full[free] = x
                return dev.reml(full)

            cov_free = _inverse(fd_hessian_values(fun, omega[free]))
        else:
            keep = list(range(p)) + [p + k for k in free]

            def fun(x):
                full = psi.copy()
                full[keep] = x
                return dev.ml(full)

            cov_free = _inverse(fd_hessian_values(fun, psi[keep]))[p:, p:]
    cov = np.full((len(omega), len(omega)), np.nan)
    cov[np.ix_(free, free)] = cov_free
    return omega, kind, cov, free


def wald_intervals(res, alpha=0.05):
    """Wald intervals: beta +- z SE, variance parameters by the delta method (see the module docstring)."""
    res = unwrap(res)
    z = stats.norm.isf(alpha / 2.0)
    beta, se_beta = np.asarray(res.params, float), np.asarray(res.bse, float)
    omega, kind, cov, _ = variance_covariance(res)
    se = np.sqrt(np.diag(cov))
    lower, upper = list(beta - z * se_beta), list(beta + z * se_beta)
    gaussian = res.model.dist.name == "gaussian"
    for k, value in enumerate(omega):
        with np.errstate(all="ignore"):
            if kind[k] == "sd":
                centre, half = np.log(value), z * se[k] / value
                lo, hi = np.exp(centre - half), np.exp(centre + half)
            elif kind[k] == "corr":
                centre, half = np.arctanh(value), z * se[k] / (1.0 - value ** 2)
                lo, hi = np.tanh(centre - half), np.tanh(centre + half)
            else:  # log phi: sigma = exp(log phi / 2) (Gaussian), phi or alpha
                f = 0.5 if gaussian else 1.0
                lo, hi = np.exp(f * (value - z * se[k])), np.exp(f * (value + z * se[k]))
        lower.append(lo)
        upper.append(hi)
    out = _frame(res, lower, upper)
    out.attrs.update(method="wald")
    return out


def bse_re(res):
    """Term key -> Series (z columns): SE of each variance sigma_kj^2 (delta method, 2 sigma SE(sigma)) on the
    fit's own criterion; NaN for a variance at 0."""
    omega, kind, cov, _ = variance_covariance(res)
    layout, _ = term_layout(res)
    out = {}
    for t, (sd, _, _) in zip(res._terms, layout):
        values = [2.0 * omega[k] * np.sqrt(cov[k, k]) for k in range(sd.start, sd.stop)]
        out[t.key] = pd.Series(values, index=[f"{c} Var" for c in t.z_names], name="bse_re")
    return out
