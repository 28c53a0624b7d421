"""Independent dense evaluations for models with several random-effect terms (test helper, small data only).

* `gaussian_loglik`: log N(y; X beta, Z Sigma Z' + sigma^2 I) with the n x n covariance built densely,
  and the REML log-likelihood (lme4's: the ML one at GLS beta plus -1/2 log|X'V^-1 X| + p/2 log(2 pi s2)).
* `laplace_loglik`: the Laplace log-likelihood of a Poisson / Binomial GLMM from the dense joint mode.
* `dense_fit`: a slow maximiser of either (scipy), a record with the fields of the engine's MixedFit.

Nothing here uses glmm_ext's numerics: only the structure's codes and z columns.
"""
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, special


def full_z(term):
    """The term's n x (levels * q) design, level-major (level j owns columns j*q .. j*q+q-1)."""
    n, q = term.Z.shape
    Zf = np.zeros((n, term.n_levels * q))
    for r in range(q):
        Zf[np.arange(n), term.codes * q + r] = term.Z[:, r]
    return Zf


def n_theta(term):
    q = term.Z.shape[1]
    return q * (q + 1) // 2 if term.correlated else q


def lam_of(term, theta):
    """Lower-triangular relative factor from theta (column-major lower triangle, lme4's order)."""
    q = term.Z.shape[1]
    L = np.zeros((q, q))
    if term.correlated:
        idx = [(i, j) for j in range(q) for i in range(j, q)]
        for v, (i, j) in zip(theta, idx):
            L[i, j] = v
    else:
        L[np.diag_indices(q)] = theta
    return L


def diag_positions(term):
    q = term.Z.shape[1]
    if not term.correlated:
        return list(range(q))
    idx = [(i, j) for j in range(q) for i in range(j, q)]
    return [k for k, (i, j) in enumerate(idx) if i == j]


def big_lambda(terms, theta):
    """(Z, Lambda) over all terms; Sigma_b = scale * Lambda Lambda'."""
    blocks, Zs, k = [], [], 0
    for t in terms:
        m = n_theta(t)
        L = lam_of(t, theta[k:k + m])
        k += m
        blocks.append(np.kron(np.eye(t.n_levels), L))
        Zs.append(full_z(t))
    size = sum(b.shape[0] for b in blocks)
    Lam = np.zeros((size, size))
    o = 0
    for b in blocks:
        Lam[o:o + b.shape[0], o:o + b.shape[0]] = b
        o += b.shape[0]
    return np.hstack(Zs), Lam


def gaussian_profile(y, X, terms, theta, reml):
    """(llf, beta, sigma2, V) profiled over beta and sigma^2, V the relative marginal covariance."""
    n, p = X.shape
    Z, Lam = big_lambda(terms, theta)
    ZL = Z @ Lam
    V = ZL @ ZL.T + np.eye(n)
    C = np.linalg.cholesky(V)
    Xw, yw = np.linalg.solve(C, X), np.linalg.solve(C, y)
    beta = np.linalg.lstsq(Xw, yw, rcond=None)[0]
    r = yw - Xw @ beta
    logdet = 2 * np.sum(np.log(np.diag(C)))
    if reml:
        s2 = r @ r / (n - p)
        _, logdet_x = np.linalg.slogdet(Xw.T @ Xw)
        llf = -0.5 * ((n - p) * np.log(2 * np.pi * s2) + logdet + logdet_x + (n - p))
    else:
        s2 = r @ r / n
        llf = -0.5 * (n * np.log(2 * np.pi * s2) + logdet + n)
    return llf, beta, s2, V


def gaussian_loglik(y, X, beta, covs, sigma2, terms, reml=False):
    """Dense log N(y; X beta, Z Sigma Z' + sigma^2 I); REML adds -1/2 log|X'V^-1X| + p/2 log(2 pi) at GLS beta."""
    n, p = X.shape
    Sig = []
    for t, c in zip(terms, covs):
        Sig.append(np.kron(np.eye(t.n_levels), np.asarray(c, float)))
    size = sum(s.shape[0] for s in Sig)
    S = np.zeros((size, size))
    o = 0
    for s in Sig:
        S[o:o + s.shape[0], o:o + s.shape[0]] = s
        o += s.shape[0]
    Z = np.hstack([full_z(t) for t in terms])
    V = Z @ S @ Z.T + sigma2 * np.eye(n)
    C = np.linalg.cholesky(V)
    Vi_X = np.linalg.solve(V, X)
    if reml:
        beta = np.linalg.solve(X.T @ Vi_X, Vi_X.T @ y)
    r = np.linalg.solve(C, y - X @ beta)
    logdet = 2 * np.sum(np.log(np.diag(C)))
    llf = -0.5 * (n * np.log(2 * np.pi) + logdet + r @ r)
    if reml:
        llf += -0.5 * np.linalg.slogdet(X.T @ Vi_X)[1] + 0.5 * p * np.log(2 * np.pi)
    return llf


def _family_terms(family, y, trials, eta):
    """(log f summed, d/d eta, -d2/d eta2) for Poisson log and Binomial logit."""
    if family == "poisson":
        mu = np.exp(eta)
        return np.sum(y * eta - mu - special.gammaln(y + 1)), y - mu, mu
    m = trials
    s = y * m
    p = special.expit(eta)
    ll = np.sum(special.gammaln(m + 1) - special.gammaln(s + 1) - special.gammaln(m - s + 1)
                + s * eta - m * np.logaddexp(0, eta))
    return ll, s - m * p, m * p * (1 - p)


def laplace_loglik(y, X, beta, theta, terms, family, trials=None, offset=None, u0=None):
    """(Laplace log-likelihood, u mode, ZL) with the joint mode found by damped Newton on the dense system."""
    n = len(y)
    trials = np.ones(n) if trials is None else trials
    off = np.zeros(n) if offset is None else offset
    Z, Lam = big_lambda(terms, theta)
    ZL = Z @ Lam
    u = np.zeros(ZL.shape[1]) if u0 is None else u0.copy()
    eta0 = X @ beta + off

    def objective(u):
        return _family_terms(family, y, trials, eta0 + ZL @ u)[0] - 0.5 * u @ u

    value = objective(u)
    for _ in range(200):
        ll, g, w = _family_terms(family, y, trials, eta0 + ZL @ u)
        H = (ZL * w[:, None]).T @ ZL + np.eye(len(u))
        step = np.linalg.solve(H, ZL.T @ g - u)
        t = 1.0
        while t > 1e-10:
            new = objective(u + t * step)
            if new >= value - 1e-12:
                break
            t /= 2
        u = u + t * step
        done = abs(new - value) < 1e-12
        value = new
        if done and np.max(np.abs(step)) < 1e-9:
            break
    _, g, w = _family_terms(family, y, trials, eta0 + ZL @ u)
    H = (ZL * w[:, None]).T @ ZL + np.eye(len(u))
    return value - 0.5 * np.linalg.slogdet(H)[1], u, ZL, H


@dataclass
class DenseFit:
    beta: np.ndarray
    cov_beta: np.ndarray
    cov_params: np.ndarray
    cov_re: list
    scale: float
    llf: float
    modes: list
    mode_sd: list
    eta: np.ndarray
    eta_fixed: np.ndarray
    converged: bool
    singular: list
    method: str
    message: str = "dense reference fit"
    n_iterations: int = 0
    n_evaluations: int = 0
    n_params: int = 0
    cov_all: np.ndarray = None
    extra: dict = field(default_factory=dict)


def _per_term(terms, vec):
    out, o = [], 0
    for t in terms:
        q = t.Z.shape[1]
        out.append(vec[o:o + t.n_levels * q].reshape(t.n_levels, q))
        o += t.n_levels * q
    return out


def dense_fit(y, X, structure, dist, *, offset=None, prior_weights=None, trials=None, reml=True, nagq=1,
              maxiter=100, tol=1e-6, freq_weights=None):
    """Slow dense maximum of the Gaussian REML/ML or Poisson/Binomial Laplace log-likelihood."""
    if freq_weights is not None:
        raise NotImplementedError("the dense stand-in takes no frequency weights")
    terms = list(structure.terms)
    n, p = X.shape
    off = np.zeros(n) if offset is None else np.asarray(offset, float)
    k = sum(n_theta(t) for t in terms)
    lower, o = [], 0
    for t in terms:
        diag = set(diag_positions(t))
        lower += [0.0 if j in diag else None for j in range(n_theta(t))]
    theta0 = np.array([1.0 if lb == 0.0 else 0.0 for lb in lower])
    bounds = [(lb, None) for lb in lower]
    gaussian = dist.name == "gaussian" and dist.link_name == "identity"
    if gaussian:
        yy = y - off
        res = optimize.minimize(lambda th: -gaussian_profile(yy, X, terms, th, reml)[0], theta0, method="L-BFGS-B",
                                bounds=bounds, options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 2000})
        theta = res.x
        llf, beta, s2, V = gaussian_profile(yy, X, terms, theta, reml)
        Vi_X = np.linalg.solve(V, X)
        cov_beta = s2 * np.linalg.inv(X.T @ Vi_X)
        Z, Lam = big_lambda(terms, theta)
        ZL = Z @ Lam
        r = yy - X @ beta
        b = Lam @ ZL.T @ np.linalg.solve(V, r)
        condvar = s2 * Lam @ np.linalg.inv(ZL.T @ ZL + np.eye(ZL.shape[1])) @ Lam.T
        scale, method = s2, ("REML" if reml else "ML")
    else:
        family = dist.name
        u_cache = {}

        def negll(par):
            val, u, _, _ = laplace_loglik(y, X, par[:p], par[p:], terms, family, trials, off, u_cache.get("u"))
            u_cache["u"] = u
            return -val

        glm_beta = np.zeros(p)
        x0 = np.concatenate([glm_beta, theta0])
        bnds = [(None, None)] * p + bounds
        res = optimize.minimize(negll, x0, method="L-BFGS-B", bounds=bnds,
                                options={"ftol": 1e-14, "gtol": 1e-8, "maxiter": 5000, "maxfun": 50000})
        res = optimize.minimize(negll, res.x, method="Nelder-Mead",
                                options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 20000, "maxfev": 40000})
        par = res.x
        par[p:] = np.where(np.array([lb == 0.0 for lb in lower]), np.abs(par[p:]), par[p:])
        beta, theta = par[:p], par[p:]
        llf, u, ZL, H = laplace_loglik(y, X, beta, theta, terms, family, trials, off)
        Z, Lam = big_lambda(terms, theta)
        b = Lam @ u
        condvar = Lam @ np.linalg.inv(H) @ Lam.T
        h = 1e-4 * np.maximum(1.0, np.abs(par))
        m = len(par)
        Hs = np.zeros((m, m))
        f0 = -negll(par)
        for i in range(m):
            for j in range(i, m):
                ei, ej = np.eye(m)[i] * h[i], np.eye(m)[j] * h[j]
                Hs[i, j] = Hs[j, i] = (-negll(par + ei + ej) + negll(par + ei - ej) + negll(par - ei + ej)
                                       - negll(par - ei - ej)) / (4 * h[i] * h[j])
        cov_beta = np.linalg.inv(-Hs)[:p, :p]
        del f0
        scale, method = 1.0, "Laplace"
    covs, o = [], 0
    for t in terms:
        m = n_theta(t)
        L = lam_of(t, theta[o:o + m])
        o += m
        covs.append(scale * L @ L.T)
    modes = _per_term(terms, b)
    sd = _per_term(terms, np.sqrt(np.clip(np.diag(condvar), 0, None)))
    eta_fixed = X @ beta + off
    eta = eta_fixed + Z @ b
    singular = [bool(np.any(np.diag(c) < 1e-8 * max(scale, 1e-300))) for c in covs]
    return DenseFit(beta=beta, cov_beta=cov_beta, cov_params=theta, cov_re=covs, scale=float(scale), llf=float(llf),
                    modes=modes, mode_sd=sd, eta=eta, eta_fixed=eta_fixed, converged=True, singular=singular,
                    method=method, n_params=p + k + int(gaussian))
