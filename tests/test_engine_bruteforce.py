"""The engine's numbers against independent computations: dense REML, quad integrals, finite differences."""

import numpy as np
import pytest
from scipy import integrate, optimize, stats

import glmm_ext
from conftest import dense_reml_deviance as dense_reml
from glmm_ext.engine._families import Distribution, _inverse_link_deriv3, make_family
from glmm_ext.engine._laplace import MarginalLikelihood

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


def _small_problem(family, link, seed=0, n_groups=5, group_size=4):
    kwargs = {"scale": 0.3} if family in ("gamma", "gaussian") else {}
    beta = (2.0, 0.3, -0.4) if link in ("identity", "inverse") else (0.3, 0.5, -0.4)
    sigma_u = 0.2 if link in ("identity", "inverse") else 0.7
    df = glmm_ext.simulate(family, link, n_groups=n_groups, group_size=group_size, beta=beta, sigma_u=sigma_u,
                           seed=seed, **kwargs)
    model = glmm_ext.GLMM.from_formula("y ~ x1 + x2", df, groups="g", family=make_family(family, link))
    return model, beta, sigma_u, kwargs.get("scale", 1.0)


def _quad_loglik(model, beta, sigma, phi):
    """sum_j log int prod_i f(y_i | eta_i + u) N(u; 0, sigma^2) du by adaptive quadrature (scipy quad)."""
    d = model.design
    dist = Distribution(model.family)
    const = dist.log_constant(d.y, d.trials)
    eta = d.X @ np.asarray(beta) + d.offset
    total = 0.0
    for j in range(d.n_groups):
        rows = d.codes == j

        def log_integrand(u):
            return np.sum(dist.loglik(d.y[rows], eta[rows] + u, d.trials[rows], phi, const[rows])) \
                + stats.norm.logpdf(u, scale=sigma)

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
    model, beta, sigma, phi = _small_problem(family, link)
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


@pytest.mark.parametrize("family,link", PAIRS)
@pytest.mark.parametrize("nagq", [1, 7])
def test_analytic_gradient_matches_finite_differences(family, link, nagq):
    model, beta, sigma, phi = _small_problem(family, link, seed=2, n_groups=6, group_size=5)
    data = model.design.engine_data()
    obj = MarginalLikelihood(model.dist, data, nagq=nagq)
    gamma = np.linalg.solve(model.design.scaling.matrix, beta)
    theta = np.concatenate([gamma, [sigma], [np.log(phi)] if model.dist.has_dispersion else []])
    theta = theta + 0.05  # away from any stationary point
    _, grad = obj(theta)
    fd = np.empty_like(theta)
    for j in range(len(theta)):
        e = np.zeros_like(theta)
        e[j] = 1e-6
        fd[j] = (obj(theta + e, False)[0] - obj(theta - e, False)[0]) / 2e-6
    assert np.allclose(grad, fd, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family,link", PAIRS)
def test_loglik_and_eta_derivatives(family, link):
    fam = make_family(family, link)
    dist = Distribution(fam)
    rng = np.random.default_rng(0)
    eta = rng.uniform(0.5, 2.0, size=20) if link in ("identity", "inverse") else rng.normal(size=20)
    mu = dist.mean(eta)
    phi = 0.7 if dist.has_dispersion else 1.0
    if family == "binomial":
        m = rng.integers(1, 10, size=20).astype(float)
        y = rng.binomial(m.astype(int), mu) / m
        ref = stats.binom.logpmf(y * m, m, mu)
    elif family == "poisson":
        m, y = np.ones(20), rng.poisson(mu).astype(float)
        ref = stats.poisson.logpmf(y, mu)
    elif family == "gamma":
        m, y = np.ones(20), rng.gamma(1 / phi, mu * phi)
        ref = stats.gamma.logpdf(y, a=1 / phi, scale=mu * phi)
    else:
        m, y = np.ones(20), rng.normal(mu, np.sqrt(phi))
        ref = stats.norm.logpdf(y, mu, np.sqrt(phi))
    const = dist.log_constant(y, m)
    assert np.allclose(dist.loglik(y, eta, m, phi, const), ref, atol=1e-10)
    l1, d, t = dist.derivatives(y, eta, m, phi)
    h = 1e-5
    ll = lambda e: dist.loglik(y, e, m, phi, const)  # noqa: E731
    assert np.allclose(l1, (ll(eta + h) - ll(eta - h)) / (2 * h), rtol=1e-6, atol=1e-7)
    assert np.allclose(-d, (ll(eta + h) - 2 * ll(eta) + ll(eta - h)) / h**2, rtol=1e-4, atol=1e-4)
    d_plus, d_minus = dist.derivatives(y, eta + h, m, phi, 2)[1], dist.derivatives(y, eta - h, m, phi, 2)[1]
    assert np.allclose(t, (d_plus - d_minus) / (2 * h), rtol=1e-5, atol=1e-6)
    if dist.has_dispersion:
        lp = lambda lphi: dist.loglik(y, eta, m, np.exp(lphi), const)  # noqa: E731
        fd = (lp(np.log(phi) + h) - lp(np.log(phi) - h)) / (2 * h)
        assert np.allclose(dist.dloglik_dlogphi(y, eta, m, phi, const), fd, rtol=1e-6, atol=1e-7)
    # the third derivative of the inverse link against statsmodels' second derivative
    mu3 = _inverse_link_deriv3(dist.link_name, eta, mu)
    fd3 = (fam.link.inverse_deriv2(eta + h) - fam.link.inverse_deriv2(eta - h)) / (2 * h)
    assert np.allclose(mu3, fd3, rtol=1e-5, atol=1e-8)
