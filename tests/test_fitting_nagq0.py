"""nagq=0 (lme4's nAGQ=0) against a brute-force PIRLS written here from its definition.

For a fixed sigma the dense joint Newton iteration maximises P(beta, b) = sum_i log f(y_i | x_i'beta + sigma
b_g(i)) - |b|^2 / 2 over all (beta, b) at once (p + G unknowns, the full (p + G) x (p + G) Hessian); the
nagq=0 criterion is L0(sigma) = P* - sum_j log(1 + sigma^2 sum_{i in j} w_i) / 2 (w the GLM weights) and a
tight bounded scalar search maximises it.  The fits here have enough groups for the joint steps on all rows
(engine/_nagq0.py); the small-data fits of the other pairs are in test_fitting_numerics.py.
"""
import numpy as np
import pytest
import statsmodels.api as sm
from scipy import optimize
from scipy.special import expit, gammaln

import glmm_ext

FAMILIES = {"binomial": glmm_ext.make_family("binomial"), "poisson": glmm_ext.make_family("poisson")}


def _row_terms(family, y, eta):
    """(log f, l1, w) per row: Bernoulli-logit or Poisson-log (canonical: w = -d2 log f / d eta2)."""
    if family == "binomial":
        mu = expit(eta)
        return y * eta - np.logaddexp(0.0, eta), y - mu, mu * (1.0 - mu)
    mu = np.exp(eta)
    return y * eta - mu - gammaln(y + 1.0), y - mu, mu


def brute_force_nagq0(family, y, X, codes, G, offset=0.0):
    """(beta, sigma, se_sigma, L0) of the nagq=0 criterion by dense joint Newton and a tight scalar search."""
    Z = np.zeros((len(y), G))
    Z[np.arange(len(y)), codes] = 1.0
    p = X.shape[1]
    state = {"u": np.zeros(p + G)}

    def joint(sigma):
        A = np.hstack([X, sigma * Z])
        u = state["u"].copy()
        for _ in range(100):
            ll, l1, w = _row_terms(family, y, A @ u + offset)
            grad = A.T @ l1 - np.r_[np.zeros(p), u[p:]]
            hess = (A * w[:, None]).T @ A + np.diag(np.r_[np.zeros(p), np.ones(G)])
            step = np.linalg.solve(hess, grad)
            u = u + step
            if grad @ step < 1e-24:
                break
        state["u"] = u
        ll, _, w = _row_terms(family, y, A @ u + offset)
        value = ll.sum() - 0.5 * u[p:] @ u[p:] - 0.5 * np.sum(np.log1p(sigma * sigma * (Z.T @ w)))
        return value, u

    res = optimize.minimize_scalar(lambda s: -joint(s)[0], bounds=(0.05, 3.0), method="bounded",
                                   options={"xatol": 1e-10})
    sigma = float(res.x)
    h = 1e-3 * sigma
    curvature = (joint(sigma + h)[0] - 2.0 * joint(sigma)[0] + joint(sigma - h)[0]) / (h * h)
    value, u = joint(sigma)
    return u[:p], sigma, 1.0 / np.sqrt(-curvature), value


@pytest.fixture(scope="module", params=["binomial", "poisson", "poisson with an offset"])
def case(request):
    family = request.param.split()[0]
    df = glmm_ext.simulate(family, n_groups=450, group_size=6, beta=(0.3, 0.7, -0.5), sigma_u=0.8, seed=11)
    offset = np.log(np.linspace(0.5, 2.0, len(df))) if "offset" in request.param else np.zeros(len(df))
    if "offset" in request.param:  # counts over exposures t: log t enters eta with coefficient 1
        df["y"] = np.random.default_rng(4).poisson(np.exp(offset) * (df["y"].to_numpy() + 0.5)).astype(float)
        df["log_t"] = offset
    model = glmm_ext.GLMM.from_formula("y ~ x1 + x2", df, groups="g", family=FAMILIES[family],
                                       offset="log_t" if "offset" in request.param else None)
    res = model.fit(nagq=0)
    codes = df["g"].astype("category").cat.codes.to_numpy()
    X = np.column_stack([np.ones(len(df)), df["x1"], df["x2"]])
    truth = brute_force_nagq0(family, df["y"].to_numpy(float), X, codes, codes.max() + 1, offset)
    return family, df, model, res, X, codes, offset, truth


def test_nagq0_estimates_equal_the_brute_force_maximum(case):
    family, df, model, res, X, codes, offset, (beta, sigma, se_sigma, value) = case
    assert "secant" in res.optsummary.method  # the joint steps on all rows, not the scalar search
    assert res.converged
    assert np.sqrt(res.var_re) == pytest.approx(sigma, abs=0.02 * se_sigma)
    assert np.all(np.abs(res.params.to_numpy() - beta) < 0.02 * res.bse.to_numpy())  # the stop: 1e-2 SEs


def test_nagq0_reports_the_laplace_value_modes_and_pirls_standard_errors(case):
    family, df, model, res, X, codes, offset, truth = case
    beta, var_re = res.params.to_numpy(), res.var_re
    sigma = np.sqrt(var_re)
    assert res.llf == pytest.approx(model.loglike(beta, var_re=var_re), abs=1e-6)
    assert res.llf <= model.fit(nagq=1).llf + 1e-8
    # the conditional modes at the estimates, one Newton problem per group
    y, eta_fixed, G = df["y"].to_numpy(float), X @ beta + offset, codes.max() + 1
    b = np.zeros(G)
    for _ in range(50):
        _, l1, w = _row_terms(family, y, eta_fixed + sigma * b[codes])
        b += (sigma * np.bincount(codes, l1, G) - b) / (1.0 + var_re * np.bincount(codes, w, G))
    assert np.allclose(res.blups, sigma * b, atol=1e-6)
    _, _, w = _row_terms(family, y, eta_fixed + sigma * b[codes])
    assert np.allclose(res.blup_se, sigma / np.sqrt(1.0 + var_re * np.bincount(codes, w, G)), rtol=1e-5)
    # PIRLS information for beta with the modes profiled out
    _, _, w = _row_terms(family, y, eta_fixed + sigma * b[codes])
    Xw = np.stack([np.bincount(codes, X[:, k] * w, G) for k in range(X.shape[1])], axis=1)
    info = (X * w[:, None]).T @ X - var_re * (Xw / (1.0 + var_re * np.bincount(codes, w, G))[:, None]).T @ Xw
    # the information of the last pass, whose u is within ~1e-2 standard errors of the PIRLS solution
    assert np.allclose(res.bse.to_numpy(), np.sqrt(np.diag(np.linalg.inv(info))), rtol=1e-4)


def test_nagq0_near_sigma_zero_is_left_to_the_scalar_search():
    """A pilot near the boundary sigma_u = 0 hands over to the bounded search, which checks sigma_u = 0 (the
    GLM): the fit never ends below the GLM's log-likelihood."""
    df = glmm_ext.simulate("poisson", n_groups=450, group_size=6, beta=(0.3, 0.7, -0.5), sigma_u=0.0, seed=3)
    res = glmm_ext.GLMM.from_formula("y ~ x1 + x2", df, groups="g", family=FAMILIES["poisson"]).fit(nagq=0)
    assert "Brent" in res.optsummary.method
    glm = sm.GLM.from_formula("y ~ x1 + x2", df, family=sm.families.Poisson()).fit()
    assert res.llf >= glm.llf - 1e-6
