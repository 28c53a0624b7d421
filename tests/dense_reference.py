"""Independent dense log-likelihoods for the reference tests (tests/test_reference_multiterm_more.py, _r2.py).

Everything is built from the data frame and a plain term specification (grouping columns, z columns), never
from glmm_ext's design objects, so a wrong design, a wrong constant or a wrong Laplace term inside glmm_ext
cannot cancel out:

* `gaussian_loglik`: log N(y; X beta, Z Sigma Z' + sigma^2 I) with the n x n covariance built densely; with
  ``reml=True`` lme4's restricted log-likelihood (the ML value at the GLS beta, - 1/2 log|X' V^-1 X|
  + p/2 log(2 pi)).
* `laplace_loglik`: the Laplace log-likelihood of a Poisson, Binomial (with trials), NB2 or Gamma (log link)
  GLMM, the joint mode found by damped Newton on the dense system in u (b = Lambda u, any square root of each
  term's covariance: the Laplace value does not depend on which) and the observed curvature, as glmmTMB
  computes it.

Small data only (n up to a few thousand, a few hundred random effects).
"""
import re

import numpy as np
import pandas as pd
from scipy import special


def term_design(data, group, zcols):
    """(codes, Zq) of one term: ``group`` a list of grouping columns (their interaction), ``zcols`` a list of
    z columns: "1" (intercept), a numeric column name, or ("level", column, value) for a factor indicator."""
    key = data[group[0]].astype(str)
    for g in group[1:]:
        key = key + ":" + data[g].astype(str)
    codes, _ = pd.factorize(key)
    cols = []
    for z in zcols:
        if z == "1":
            cols.append(np.ones(len(data)))
        elif isinstance(z, (list, tuple)):
            cols.append((data[z[1]].astype(str) == str(z[2])).to_numpy(float))
        else:
            cols.append(data[z].to_numpy(float))
    return codes, np.column_stack(cols)


def full_z(codes, Zq):
    n, q = Zq.shape
    m = codes.max() + 1
    Z = np.zeros((n, m * q))
    for r in range(q):
        Z[np.arange(n), codes * q + r] = Zq[:, r]
    return Z


def root(cov):
    """A square root L (cov = L L') valid for a singular covariance."""
    w, V = np.linalg.eigh(np.atleast_2d(np.asarray(cov, float)))
    return V * np.sqrt(np.clip(w, 0, None))


def z_lambda(designs, covs):
    """(Z Lambda) over all terms; covs the terms' covariance matrices (data scale for Gaussian)."""
    blocks = []
    for (codes, Zq), cov in zip(designs, covs):
        L = root(cov)
        m = codes.max() + 1
        blocks.append(full_z(codes, Zq) @ np.kron(np.eye(m), L))
    return np.hstack(blocks)


def gaussian_loglik(y, X, beta, designs, covs, sigma2, reml=False, weights=None):
    """``weights``: lme4's prior weights, row i's residual variance sigma^2 / w_i."""
    n, p = X.shape
    ZL = z_lambda(designs, covs)
    V = ZL @ ZL.T + sigma2 * np.diag(1.0 / (np.ones(n) if weights is None else weights))
    C = np.linalg.cholesky(V)
    Vi_X = np.linalg.solve(V, X)
    if reml:
        beta = np.linalg.solve(X.T @ Vi_X, Vi_X.T @ y)
    r = np.linalg.solve(C, y - X @ beta)
    llf = -0.5 * (n * np.log(2 * np.pi) + 2 * np.sum(np.log(np.diag(C))) + r @ r)
    if reml:
        llf += -0.5 * np.linalg.slogdet(X.T @ Vi_X)[1] + 0.5 * p * np.log(2 * np.pi)
    return float(llf)


def _binomial_link(link, eta):
    """(log p, log(1 - p), p'/p, p'/(1 - p), p''/p') for a probit or cloglog link, the ratios from logs (no 0 / 0
    where p or 1 - p underflows)."""
    if link == "probit":
        lp, lq = special.log_ndtr(eta), special.log_ndtr(-eta)
        ld = -0.5 * eta ** 2 - 0.5 * np.log(2 * np.pi)
        return lp, lq, np.exp(ld - lp), np.exp(ld - lq), -eta
    e = np.exp(eta)  # cloglog: p = 1 - exp(-e^eta)
    lp = np.log(-np.expm1(-e))
    return lp, -e, np.exp(eta - e - lp), e, 1 - e


def _family(family, y, eta, trials, nb_theta, link=None, observed=True):
    """(sum log f, d log f / d eta, -d2 log f / d eta2) per row, observed curvature (expected if not
    ``observed``: the Newton steps of a non-canonical link)."""
    if family == "binomial" and link in ("probit", "cloglog"):
        m = trials
        lp, lq, r1, r0, d21 = _binomial_link(link, eta)
        ll = np.sum(special.gammaln(m + 1) - special.gammaln(y + 1) - special.gammaln(m - y + 1)
                    + np.where(y > 0, y * lp, 0.0) + np.where(m > y, (m - y) * lq, 0.0))
        score = y * r1 - (m - y) * r0  # (y / p - (m - y) / q) p'
        if not observed:
            return ll, score, m * r1 * r0  # m p'^2 / (p q)
        return ll, score, y * r1 ** 2 + (m - y) * r0 ** 2 - score * d21
    if family == "poisson":
        mu = np.exp(eta)
        return np.sum(y * eta - mu - special.gammaln(y + 1)), y - mu, mu
    if family == "binomial":
        m = trials
        p = special.expit(eta)
        ll = np.sum(special.gammaln(m + 1) - special.gammaln(y + 1) - special.gammaln(m - y + 1)
                    + y * eta - m * np.logaddexp(0, eta))
        return ll, y - m * p, m * p * (1 - p)
    if family == "nbinom2":
        th = nb_theta
        mu = np.exp(eta)
        ll = np.sum(_lgamma_ratio(y, th) - special.gammaln(y + 1)
                    - th * np.log1p(mu / th) + y * (eta - np.logaddexp(np.log(th), eta)))
        return ll, th * (y - mu) / (mu + th), th * mu * (y + th) / (mu + th) ** 2
    if family == "gamma":  # log link; nb_theta holds the shape k = 1 / phi
        k, mu = nb_theta, np.exp(eta)
        ll = np.sum(k * np.log(k) - special.gammaln(k) + (k - 1) * np.log(y) - k * y / mu - k * eta)
        return ll, k * (y / mu - 1), (k * y / mu if observed else np.full_like(y, k))
    raise ValueError(family)


def _lgamma_ratio(y, th):
    """log Gamma(y + th) - log Gamma(th) for counts y: for th > 1e4 (the Poisson limit, where the two gammaln values
    cancel to ~1e-7 per row) as y log th + sum_{j<y} log1p(j / th), exact for integer y."""
    if th <= 1e4:
        return special.gammaln(y + th) - special.gammaln(th)
    j = np.arange(int(np.max(y)) if len(y) else 0)
    return y * np.log(th) + np.sum(np.where(j[None, :] < y[:, None], np.log1p(j[None, :] / th), 0.0), axis=1)


def gaussian_modes(y, X, beta, designs, covs, sigma2, weights=None):
    """(b, conditional SD) stacked over terms: E[b | y] and sqrt(diag Var[b | y]) at known beta and covariances."""
    n = len(y)
    ZL = z_lambda(designs, covs)
    V = ZL @ ZL.T + sigma2 * np.diag(1.0 / (np.ones(n) if weights is None else weights))
    A = np.linalg.solve(V, ZL).T  # L' Z' V^-1 with Sigma = L L'
    u = A @ (y - X @ beta)
    cov_u = np.eye(ZL.shape[1]) - A @ ZL
    return _to_b(designs, covs, u, cov_u)


def _to_b(designs, covs, u, cov_u):
    Lam = np.zeros((len(u), len(u)))
    o = 0
    for (codes, Zq), cov in zip(designs, covs):
        m, q = codes.max() + 1, Zq.shape[1]
        Lam[o:o + m * q, o:o + m * q] = np.kron(np.eye(m), root(cov))
        o += m * q
    return Lam @ u, np.sqrt(np.clip(np.diag(Lam @ cov_u @ Lam.T), 0, None))


def laplace_loglik(y, X, beta, designs, covs, family, offset=None, trials=None, nb_theta=None, link=None,
                   modes=False):
    """Laplace log-likelihood; ``y`` the successes for the Binomial (with ``trials``); ``nb_theta`` NB2's theta or
    the Gamma shape 1 / phi; with ``modes`` also
    (b, conditional SD from the inverse Hessian of the joint log density, b = Lambda u)."""
    n = len(y)
    eta0 = X @ beta + (np.zeros(n) if offset is None else offset)
    trials = np.ones(n) if trials is None else trials
    ZL = z_lambda(designs, covs)
    u = np.zeros(ZL.shape[1])

    def objective(u):
        return _family(family, y, eta0 + ZL @ u, trials, nb_theta, link)[0] - 0.5 * u @ u

    value = objective(u)
    for _ in range(200):
        _, g, w = _family(family, y, eta0 + ZL @ u, trials, nb_theta, link, observed=False)
        H = (ZL * w[:, None]).T @ ZL + np.eye(len(u))
        step = np.linalg.solve(H, ZL.T @ g - u)
        if np.max(np.abs(step)) < 1e-8:  # quadratic convergence: the objective is then exact to ~1e-16
            break
        t, slack = 1.0, 1e-12 * max(1.0, abs(value))  # rounding of a sum over n rows
        while t > 1e-6:
            new = objective(u + t * step)
            if new >= value - slack:
                break
            t /= 2
        u, value = u + t * step, objective(u + t * step)
    _, _, w = _family(family, y, eta0 + ZL @ u, trials, nb_theta, link)
    H = (ZL * w[:, None]).T @ ZL + np.eye(len(u))
    llf = float(value - 0.5 * np.linalg.slogdet(H)[1])
    return (llf, *_to_b(designs, covs, u, np.linalg.inv(H))) if modes else llf


def agq_loglik(y, X, beta, codes, var, family, nodes, offset=None, trials=None, link=None, observed=True):
    """Adaptive Gauss-Hermite log-likelihood of one random intercept (variance ``var``): per group the integral
    over u ~ N(0, 1) of prod f(y | x beta + sd u), on ``nodes`` points centred at the group's mode and scaled by
    its curvature (observed, or expected if not ``observed``), each group's mode by Newton in one dimension."""
    eta0 = X @ beta + (np.zeros(len(y)) if offset is None else offset)
    trials = np.ones(len(y)) if trials is None else trials
    sd = np.sqrt(var)
    z, w = np.polynomial.hermite.hermgauss(nodes)
    total = 0.0
    for j in range(codes.max() + 1):
        rows = codes == j
        yj, ej, mj = y[rows], eta0[rows], trials[rows]

        def h(u):
            return _family(family, yj, ej + sd * u, mj, None, link)[0] - 0.5 * u * u

        u, value = 0.0, h(0.0)
        for _ in range(200):
            _, g, c = _family(family, yj, ej + sd * u, mj, None, link, observed=False)
            step = (sd * g.sum() - u) / (sd * sd * c.sum() + 1.0)
            while h(u + step) < value - 1e-13 * max(1.0, abs(value)) and abs(step) > 1e-14:
                step /= 2  # damped: a full step can overshoot into the flat tail of a group of 0s
            u += step
            value = h(u)
            if abs(step) < 1e-12:
                break
        c = _family(family, yj, ej + sd * u, mj, None, link, observed=observed)[2]
        s = 1.0 / np.sqrt(sd * sd * c.sum() + 1.0)
        logs = np.array([h(u + np.sqrt(2.0) * s * zk) for zk in z]) + z * z + np.log(w)
        top = logs.max()
        total += np.log(s / np.sqrt(np.pi)) + top + np.log(np.exp(logs - top).sum())
    return float(total)


def r_name(py):
    """patsy's column name -> R's treatment-contrast name: C(x)[T.lev] -> xlev (a:b interactions alike),
    I(x ** 2) -> I(x^2), Intercept -> (Intercept)."""
    if py == "Intercept":
        return "(Intercept)"
    return re.sub(r"I\((\w+) \*\* (\d)\)", r"I(\1^\2)", re.sub(r"C\((\w+)\)\[T\.([^\]]+)\]", r"\1\2", py))
