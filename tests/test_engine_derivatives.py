"""Derivatives the engine computes in closed form (private numerics with no public face beyond the fit reaching
its maximum): the family derivatives in eta and log phi, the gradient of the scalar marginal likelihood (NB,
Laplace and AGQ), of the vector Laplace (random slopes) and of the profiled LMM deviance, each against central
finite differences; the log-densities against scipy's and the cloglog Bernoulli kernel in its tails against
closed forms."""
import os
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

import glmm_ext
from glmm_ext import make_family
from conftest import DATA, small_problem
from glmm_ext.engine._families import Distribution, _inverse_link_deriv3
from glmm_ext.engine._laplace import MarginalLikelihood

PAIRS = [("gaussian", "log"), ("binomial", "logit"), ("binomial", "probit"), ("poisson", "log"),
         ("poisson", "identity"), ("gamma", "inverse"), ("gamma", "log"), ("gamma", "identity")]


@pytest.fixture(scope="module")
def nb_fit():
    d = pd.read_csv(os.path.join(DATA, "grouseticks.csv"))
    d["HEIGHTs"] = (d["HEIGHT"] - d["HEIGHT"].mean()) / d["HEIGHT"].std()  # R's scale()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = glmm_ext.GLMM.from_formula("TICKS ~ C(YEAR) + HEIGHTs", d, groups="BROOD",
                                           family=sm.families.NegativeBinomial(alpha=1.0))
        return model.fit()


@pytest.mark.parametrize("name,link", [("negativebinomial", None), ("binomial", "cloglog")])
def test_eta_and_dispersion_derivatives_match_finite_differences(name, link):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dist = Distribution(glmm_ext.make_family(name, link))
    rng = np.random.default_rng(0)
    eta = rng.uniform(-2.0, 1.5, size=40)
    y = rng.poisson(3.0, size=40).astype(float) if name != "binomial" else rng.binomial(1, 0.4, size=40) * 1.0
    m = np.ones_like(y)
    phi = 0.6 if name != "binomial" else 1.0
    const = dist.log_constant(y, m)
    h = 1e-5

    def ll(e, p=phi):
        return dist.loglik(y, e, m, p, const)

    l1, d, t = dist.derivatives(y, eta, m, phi, order=3)
    np.testing.assert_allclose(l1, (ll(eta + h) - ll(eta - h)) / (2 * h), rtol=1e-6, atol=1e-8)
    l1p, dp, _ = dist.derivatives(y, eta + h, m, phi)
    l1m, dm, _ = dist.derivatives(y, eta - h, m, phi)
    np.testing.assert_allclose(d, -(l1p - l1m) / (2 * h), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(t, -(-dp + dm) / (2 * h), rtol=1e-5, atol=1e-8)
    if name == "negativebinomial":
        lp = np.log(phi)
        num = (ll(eta, np.exp(lp + h)) - ll(eta, np.exp(lp - h))) / (2 * h)
        np.testing.assert_allclose(dist.dloglik_dlogphi(y, eta, m, phi, const), num, rtol=1e-6, atol=1e-8)
        dl1, dd = dist.dscore_dlogphi(y, eta, m, phi)
        up = dist.derivatives(y, eta, m, np.exp(lp + h), order=2)
        dn = dist.derivatives(y, eta, m, np.exp(lp - h), order=2)
        np.testing.assert_allclose(dl1, (up[0] - dn[0]) / (2 * h), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(dd, (up[1] - dn[1]) / (2 * h), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("nagq", [1, 5])
def test_nb_marginal_gradient_matches_finite_differences(nb_fit, nagq):
    design = nb_fit.model.design
    objective = MarginalLikelihood(design.dist, design.engine_data(), nagq=nagq)
    p = design.X.shape[1]
    theta = np.concatenate([np.zeros(p), [0.7], [np.log(0.5)]])
    theta[0] = 0.5
    _, grad = objective(theta)
    h = 1e-6
    for j in range(len(theta)):
        e = np.zeros_like(theta)
        e[j] = h
        num = (objective(theta + e, need_grad=False)[0] - objective(theta - e, need_grad=False)[0]) / (2 * h)
        assert grad[j] == pytest.approx(num, rel=1e-5, abs=1e-5), j


def test_cloglog_bernoulli_kernel_is_exact_in_the_tails():
    dist = Distribution(sm.families.Binomial(link=sm.families.links.CLogLog()))
    eta = np.array([-40.0, -5.0, 0.0, 2.0, 4.0])
    mu = -np.expm1(-np.exp(eta))
    for y in (0.0, 1.0):
        got = dist.loglik(np.full(5, y), eta, 1.0, 1.0, 0.0)
        expected = np.log(mu) if y == 1.0 else -np.exp(eta)
        np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_laplace_gradient_matches_finite_differences():
    """The live Laplace gradient (`engine._mixed_glmm.MixedGLMM.value_and_grad`) of one factor with a
    correlated block (1 + x) and an independent slope, Gamma log, against central differences."""
    from glmm_ext.engine._mixed_glmm import MixedGLMM
    from glmm_ext.engine._structure import ReStructure, ReTerm

    rng = np.random.default_rng(3)
    n, G = 240, 20
    x = rng.normal(size=n)
    Z = np.column_stack([np.ones(n), x, rng.uniform(size=n)])
    y = rng.gamma(2.0, np.exp(0.3 + 0.2 * x + rng.normal(scale=0.5, size=G).repeat(n // G)) / 2.0)
    dist = Distribution(sm.families.Gamma(sm.families.links.Log()))
    codes = np.repeat(np.arange(G), n // G).astype(np.int64)
    structure = ReStructure((ReTerm("g", codes, G, Z[:, :2].copy(), ("Intercept", "x"), True),
                             ReTerm("g", codes, G, Z[:, 2:].copy(), ("u",), False)))
    m = np.ones(n)
    objective = MixedGLMM(structure, dist, y, np.column_stack([np.ones(n), x]), np.zeros(n), m,
                          dist.log_constant(y, m))
    theta = np.array([0.2, 0.1, 0.6, 0.2, 0.3, 0.25, np.log(0.5)])  # beta, the (1 + x) block's Cholesky, u, log phi
    value, grad = objective.value_and_grad(theta)
    assert np.isfinite(value)
    numeric = [(objective(theta + e) - objective(theta - e)) / 2e-6 for e in np.eye(len(theta)) * 1e-6]
    assert np.allclose(grad, numeric, atol=1e-4)


def test_profiled_deviance_gradient_matches_finite_differences():
    from glmm_ext.engine._lmm_block_stats import vector_stats
    from glmm_ext.engine._lmm_blocks import LambdaPattern, vector_deviance

    data = pd.read_csv(os.path.join(DATA, "slopes", "sim_q3.csv"))
    X = np.column_stack([np.ones(len(data)), data["x1"], data["x2"]])
    starts = np.flatnonzero(np.diff(data["g"], prepend=-1))
    # q = 3 (general code) and q = 2 (the random-slope case, computed in closed form): correlated and diagonal blocks
    cases = [(X, (LambdaPattern(3, [[0, 1, 2]]), LambdaPattern(3, [[0], [1, 2]])), (0.2, 0.9)),
             (X[:, :2], (LambdaPattern(2, [[0, 1]]), LambdaPattern(2, [[0], [1]])), (0.3, 0.8))]
    for Z, patterns, (lo, hi) in cases:
        stats = vector_stats(X, data["y"].to_numpy() / 3.0, Z, starts)
        for pattern in patterns:
            theta = np.linspace(lo, hi, pattern.size) * np.where(pattern.is_diag, 1.0, -1.0)
            for reml in (True, False):
                _, grad = vector_deviance(theta, pattern, stats, reml, need_grad=True)
                numeric = [(vector_deviance(theta + e, pattern, stats, reml)
                            - vector_deviance(theta - e, pattern, stats, reml)) / 2e-6
                           for e in np.eye(len(theta)) * 1e-6]
                assert np.allclose(grad, numeric, rtol=1e-6, atol=1e-4)


def test_profiled_deviance_hessian_matches_second_differences():
    """The closed-form Hessian of the profiled REML/ML deviance in Lambda's free entries against central second
    differences of the deviance itself, for q = 3 (general code) and q = 2 (closed forms), correlated and diagonal
    blocks, inside and on the boundary (a zero and a negative diagonal entry: the deviance depends on Lambda
    Lambda' only, so it is smooth there)."""
    from glmm_ext.engine._lmm_block_stats import vector_stats
    from glmm_ext.engine._lmm_blocks import LambdaPattern, identity_deviances, vector_deviance

    data = pd.read_csv(os.path.join(DATA, "slopes", "sim_q3.csv"))
    X = np.column_stack([np.ones(len(data)), data["x1"], data["x2"]])
    starts = np.flatnonzero(np.diff(data["g"], prepend=-1))
    cases = [(X, (LambdaPattern(3, [[0, 1, 2]]), LambdaPattern(3, [[0], [1, 2]])), (0.2, 0.9)),
             (X[:, :2], (LambdaPattern(2, [[0, 1]]), LambdaPattern(2, [[0], [1]])), (0.3, 0.8))]
    h = 1e-4
    for Z, patterns, (lo, hi) in cases:
        stats = vector_stats(X, data["y"].to_numpy() / 3.0, Z, starts)
        for pattern in patterns:
            for reml in (True, False):  # the search's starts c I, in one batch
                np.testing.assert_allclose(identity_deviances([0.3, 1.0, 3.0], stats, reml),
                                           [vector_deviance(pattern.start(c), pattern, stats, reml)
                                            for c in (0.3, 1.0, 3.0)], rtol=1e-13)
            inside = np.linspace(lo, hi, pattern.size) * np.where(pattern.is_diag, 1.0, -1.0)
            edge = inside.copy()
            edge[np.flatnonzero(pattern.is_diag)[-1]] = 0.0  # a zero variance
            flipped = inside * np.where(pattern.is_diag & (np.arange(pattern.size) == 0), -1.0, 1.0)
            for theta in (inside, edge, flipped):
                for reml in (True, False):
                    f = lambda t: vector_deviance(t, pattern, stats, reml)  # noqa: E731
                    value, grad, hess = vector_deviance(theta, pattern, stats, reml, need_hess=True)
                    assert value == f(theta) and np.array_equal(grad, vector_deviance(theta, pattern, stats, reml,
                                                                                     need_grad=True)[1])
                    E = np.eye(len(theta)) * h
                    numeric = np.array([[(f(theta + a + b) - f(theta + a - b) - f(theta - a + b) + f(theta - a - b))
                                         / (4 * h * h) for b in E] for a in E])
                    assert np.allclose(hess, hess.T, rtol=1e-12, atol=1e-9)
                    assert np.allclose(hess, numeric, rtol=1e-5, atol=1e-5 * np.abs(hess).max())


def test_one_pass_scaled_stats_equal_the_sorted_standardised_sums():
    """`scaled_stats` (rows in their own order, base columns, weighted bincounts) against `vector_stats` of the
    standardised rows sorted by group: uncentred columns (mean 50 SD 2, a response of mean 100), centred ones, an
    intercept or none, z columns that are columns of X, 1, or neither."""
    from glmm_ext.engine._lmm_block_stats import scaled_stats, vector_stats

    rng = np.random.default_rng(5)
    n, G = 600, 30
    codes = rng.permutation(np.arange(n) % G)
    x_big, x2, w = 50.0 + 2.0 * rng.normal(size=n), rng.normal(size=n), rng.uniform(size=n)
    for y in (100.0 + 3.0 * rng.normal(size=n), rng.normal(size=n)):
        for X, intercept in ((np.column_stack([np.ones(n), x_big, x2]), 0), (np.column_stack([x_big, x2]), -1)):
            for Z in (np.column_stack([np.ones(n), x_big]), np.column_stack([np.ones(n), x2]), x2[:, None],
                      np.column_stack([np.ones(n), w, x2])):
                p = X.shape[1]
                if intercept >= 0:
                    center, scale = np.r_[0.0, X[:, 1:].mean(0)], np.r_[1.0, X[:, 1:].std(0)]
                    y_c, y_s = y.mean(), y.std()
                else:
                    center, scale = np.zeros(p), np.sqrt(np.mean(X * X, axis=0))
                    y_c, y_s = 0.0, np.sqrt(np.mean(y * y))
                zs = np.sqrt(np.mean(Z * Z, axis=0))
                stats, yc, ys = scaled_stats(np.asfortranarray(X), center, scale, y, Z, zs, codes,
                                             np.bincount(codes).astype(float), intercept)
                assert yc == pytest.approx(y_c, rel=1e-14, abs=1e-14) and ys == pytest.approx(y_s, rel=1e-12)
                o = np.argsort(codes, kind="stable")
                ref = vector_stats(((X - center) / scale)[o], ((y - y_c) / y_s)[o], (Z / zs)[o],
                                   np.flatnonzero(np.diff(codes[o], prepend=-1)))
                for got, want in ((stats.ZtZ, ref.ZtZ), (stats.ZtA, ref.ZtA), (stats.AtA, ref.AtA)):
                    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-9)
                assert stats.precise == ref.precise and (stats.n, stats.p) == (n, p)
    X = np.column_stack([np.ones(n), x2])
    with pytest.raises(ValueError, match="'yield' does not vary"):
        scaled_stats(X, np.zeros(2), np.ones(2), np.full(n, 2.0), X, np.ones(2), codes,
                     np.bincount(codes).astype(float), 0, "yield")


def test_stack_factors_equal_lapack():
    from glmm_ext.engine._stacks import batched_cholesky, batched_forward, lower_inverse_t, mul2

    rng = np.random.default_rng(3)
    A = rng.normal(size=(50, 2, 2))
    T = A @ np.swapaxes(A, 1, 2) + 0.1 * np.eye(2)
    L = batched_cholesky(T)
    np.testing.assert_allclose(L, np.linalg.cholesky(T), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(lower_inverse_t(L), np.swapaxes(np.linalg.inv(L), 1, 2), rtol=1e-10, atol=1e-12)
    C = rng.normal(size=(50, 2, 4))
    np.testing.assert_allclose(batched_forward(L, np.swapaxes(C, 1, 2)),
                               np.swapaxes(np.linalg.solve(L, C), 1, 2), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(mul2(A, T), A @ T, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(mul2(A[0], T), A[0] @ T, rtol=1e-12, atol=1e-14)
    for bad in (np.diag([-1.0, 1.0]), np.array([[1.0, 2.0], [2.0, 1.0]])):  # each pivot's failure
        with pytest.raises(np.linalg.LinAlgError):
            batched_cholesky(np.concatenate([T, bad[None]]))
    # q = 4: the column loop (the dense-block factor's first term)
    A = rng.normal(size=(20, 4, 4))
    M = A @ np.swapaxes(A, 1, 2) + 0.1 * np.eye(4)
    L = batched_cholesky(M)
    np.testing.assert_allclose(L, np.linalg.cholesky(M), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.swapaxes(lower_inverse_t(L), 1, 2), np.linalg.inv(L), rtol=1e-10, atol=1e-12)
    M[7] = -M[7]
    with pytest.raises(np.linalg.LinAlgError):
        batched_cholesky(M)


@pytest.mark.parametrize("family,link", PAIRS)
@pytest.mark.parametrize("nagq", [1, 7])
def test_analytic_gradient_matches_finite_differences(family, link, nagq):
    model, beta, sigma, phi = small_problem(family, link, seed=2, n_groups=6, group_size=5)
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
