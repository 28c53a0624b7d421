"""The fit's numbers against independent computations: dense REML, the multivariate normal density, quad integrals
of statsmodels' family densities, a Laplace value by hand (the engine's derivatives: test_engine_derivatives.py)."""

import numpy as np
import pytest
from scipy import integrate, optimize, stats

import glmm_ext
from conftest import dense_reml_deviance as dense_reml
from conftest import small_problem
from glmm_ext import make_family

PAIRS = [("gaussian", "log"), ("binomial", "logit"), ("binomial", "probit"), ("poisson", "log"),
         ("poisson", "identity"), ("gamma", "inverse"), ("gamma", "log"), ("gamma", "identity")]


def test_reml_equals_dense_computation_and_is_its_optimum():
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(7), rng.integers(2, 7, size=7))
    n = len(groups)
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.uniform(size=n)])
    y = X @ [1.0, 2.0, -1.0] + rng.normal(0, 1.2, size=7)[groups] + rng.normal(size=n)
    res = glmm_ext.GLMM(y, X, groups).fit()
    dev, beta = dense_reml(y, X, groups, res.var_re, res.scale)
    assert res.llf == pytest.approx(-0.5 * dev, abs=1e-8)
    assert np.allclose(res.params, beta, atol=1e-8)
    # the dense criterion's own optimum over (log var_re, log scale)
    opt = optimize.minimize(lambda v: dense_reml(y, X, groups, np.exp(v[0]), np.exp(v[1]))[0],
                            [0.0, 0.0], method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12})
    assert -0.5 * opt.fun == pytest.approx(res.llf, abs=1e-6)
    assert np.exp(opt.x[0]) == pytest.approx(res.var_re, rel=1e-4)


def test_ml_loglike_equals_multivariate_normal_density():
    df = glmm_ext.simulate("gaussian", n_groups=6, group_size=4, sigma_u=1.5, seed=3)
    model = glmm_ext.GLMM.from_formula("y ~ x1 + x2", df, groups="g")
    res = model.fit(reml=False)
    X = model.design.X
    Z = (df["g"].to_numpy()[:, None] == np.arange(6)[None, :]).astype(float)
    V = res.scale * np.eye(len(df)) + res.var_re * Z @ Z.T
    dens = stats.multivariate_normal(X @ np.asarray(res.params), V).logpdf(df["y"].to_numpy())
    assert res.llf == pytest.approx(dens, abs=1e-8)
    assert model.loglike(res.params, res.var_re, res.scale) == pytest.approx(dens, abs=1e-8)


def _quad_loglik(model, beta, sigma, phi):
    """sum_j log int prod_i f(y_i | eta_i + u) N(u; 0, sigma^2) du by adaptive quadrature (scipy quad), with
    statsmodels' family log-density and the model's public rows (endog, exog, groups)."""
    y, X, groups = np.asarray(model.endog, float), np.asarray(model.exog, float), np.asarray(model.groups)
    fam = model.family
    eta = X @ np.asarray(beta)
    total = 0.0
    for label in np.unique(groups):
        rows = groups == label

        def log_integrand(u):
            with np.errstate(all="ignore"):
                value = np.sum(fam.loglike_obs(y[rows], fam.link.inverse(eta[rows] + u), scale=phi))
            # outside the support (an identity-link mean <= 0) the density is 0
            return value + stats.norm.logpdf(u, scale=sigma) if np.isfinite(value) else -np.inf

        grid = np.linspace(-8 * sigma, 8 * sigma, 801)
        vals = np.array([log_integrand(u) for u in grid])
        peak = grid[np.nanargmax(np.where(np.isfinite(vals), vals, -np.inf))]
        top = log_integrand(peak)
        value, _ = integrate.quad(lambda u: np.exp(log_integrand(u) - top), -8 * sigma, 8 * sigma,
                                  points=[peak], limit=200, epsabs=0, epsrel=1e-11)
        total += top + np.log(value)
    return total


@pytest.mark.parametrize("family,link", PAIRS)
def test_laplace_and_agq_against_quad(family, link):
    model, beta, sigma, phi = small_problem(family, link)
    exact = _quad_loglik(model, beta, sigma, phi)
    params = dict(var_re=sigma**2, scale=phi)
    laplace = model.loglike(beta, nagq=1, **params)
    agq = {k: model.loglike(beta, nagq=k, **params) for k in (5, 15, 41)}
    # AGQ converges to the integral; Laplace is an approximation of it
    assert abs(agq[41] - exact) < 1e-7 * max(1.0, abs(exact))
    assert abs(agq[15] - exact) < 1e-3
    assert abs(agq[15] - exact) <= abs(laplace - exact) + 1e-9
    assert abs(laplace - exact) < 0.5


def test_laplace_value_by_hand_for_one_group():
    """One Poisson group: the root of h'(b) found by bracketing, then h(b) - log(H)/2 by hand."""
    y = np.array([0.0, 3.0, 1.0, 4.0])
    X = np.ones((4, 1))
    model = glmm_ext.GLMM(np.r_[y, y], np.r_[X, X], np.repeat([0, 1], 4), family=make_family("poisson"))
    beta, sigma = 0.4, 0.8
    lf = lambda b: np.sum(stats.poisson.logpmf(y, np.exp(beta + sigma * b))) - 0.5 * b * b  # noqa: E731
    # the root of h'(b) = sigma sum(y - mu) - b (a minimiser of h locates b only to ~1e-8, which moves
    # log H by ~1e-9)
    b_hat = optimize.brentq(lambda b: sigma * np.sum(y - np.exp(beta + sigma * b)) - b, -3, 3, xtol=1e-15)
    H = 1 + sigma**2 * len(y) * np.exp(beta + sigma * b_hat)
    expected = 2 * (lf(b_hat) - 0.5 * np.log(H) - 0.5 * np.log(2 * np.pi) + 0.5 * np.log(2 * np.pi))
    assert model.loglike([beta], var_re=sigma**2, nagq=1) == pytest.approx(expected, abs=1e-9)


