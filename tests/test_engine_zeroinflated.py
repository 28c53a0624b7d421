"""Private numerics of the zero-inflated / hurdle / dispersion engine: closed-form derivatives against
finite differences, densities that sum to one, the Laplace gradient against differences of the Laplace
value, the sparse factorisation against the dense one, and a dense joint-mode Laplace written here."""
import numpy as np
import pytest
from scipy import optimize, stats
from scipy.special import expit, polygamma

from glmm_ext.engine import _laplace_multi
from glmm_ext.engine._laplace_multi import ZIProblem, find_mode, laplace_gradient, laplace_value
from glmm_ext.engine._structure import ReStructure, ReTerm
from glmm_ext.engine._zi_density import (response_cdf, response_mean, row_loglik, row_terms, simulate_rows,
                                         trigamma)

CASES = [(f, z) for f in ("poisson", "nb2", "nb1") for z in ("none", "zi", "hurdle")] + \
        [("gaussian", "none"), ("gamma", "none")]


def _response(family, rng, n):
    if family == "gaussian":
        return rng.normal(size=n)
    if family == "gamma":
        return rng.gamma(2.0, size=n)
    y = rng.poisson(2.0, size=n).astype(float)
    y[:5] = 0.0
    y[5:8] = [1.0, 7.0, 30.0]
    return y


@pytest.mark.parametrize("family,zero_part", CASES)
def test_row_derivatives_match_differences(family, zero_part):
    rng = np.random.default_rng(3)
    n = 50
    y = _response(family, rng, n)
    E = rng.normal(scale=0.7, size=(n, 3))
    ll, g, H = row_terms(family, zero_part, y, *E.T)
    assert np.allclose(ll, row_loglik(family, zero_part, y, *E.T))
    h = 1e-6
    for k in range(3):
        Ep, Em = E.copy(), E.copy()
        Ep[:, k] += h
        Em[:, k] -= h
        num_g = (row_loglik(family, zero_part, y, *Ep.T) - row_loglik(family, zero_part, y, *Em.T)) / (2 * h)
        num_H = (row_terms(family, zero_part, y, *Ep.T)[1] - row_terms(family, zero_part, y, *Em.T)[1]) / (2 * h)
        np.testing.assert_allclose(g[:, k], num_g, atol=2e-7, rtol=1e-6)
        np.testing.assert_allclose(H[:, :, k], num_H, atol=2e-7, rtol=1e-6)
    np.testing.assert_allclose(H, np.swapaxes(H, 1, 2))


@pytest.mark.parametrize("family", ["poisson", "nb2", "nb1"])
@pytest.mark.parametrize("zero_part", ["none", "zi", "hurdle"])
def test_count_densities_sum_to_one_and_mean(family, zero_part):
    ys = np.arange(0, 600.0)
    one = np.ones_like(ys)
    eta = (1.3 * one, -0.4 * one, 0.3 * one)
    p = np.exp(row_loglik(family, zero_part, ys, *eta))
    assert abs(p.sum() - 1.0) < 1e-10
    mean = response_mean(family, zero_part, *(e[:1] for e in eta))[0]
    assert abs(np.sum(ys * p) - mean) < 1e-9
    cdf = response_cdf(family, zero_part, ys[:40], *(e[:40] for e in eta))
    np.testing.assert_allclose(cdf, np.cumsum(p)[:40], atol=1e-10)


def test_glmmtmb_parametrisations_against_scipy():
    """NB2: theta = size; NB1: size mu / phi, variance mu (1 + phi); Gaussian: eta_d = log variance."""
    y = np.array([0.0, 1.0, 4.0, 9.0])
    mu, th, phi = 2.5, 1.7, 0.8
    e = np.ones(4)
    nb2 = row_loglik("nb2", "none", y, np.log(mu) * e, 0 * e, np.log(th) * e)
    np.testing.assert_allclose(nb2, stats.nbinom.logpmf(y, th, th / (th + mu)), rtol=1e-12)
    nb1 = row_loglik("nb1", "none", y, np.log(mu) * e, 0 * e, np.log(phi) * e)
    np.testing.assert_allclose(nb1, stats.nbinom.logpmf(y, mu / phi, 1 / (1 + phi)), rtol=1e-12)
    g = row_loglik("gaussian", "none", y, 1.5 * e, 0 * e, np.log(2.0) * e)
    np.testing.assert_allclose(g, stats.norm.logpdf(y, 1.5, np.sqrt(2.0)), rtol=1e-12)
    ga = row_loglik("gamma", "none", y + 0.5, np.log(mu) * e, 0 * e, np.log(phi) * e)
    np.testing.assert_allclose(ga, stats.gamma.logpdf(y + 0.5, 1 / phi, scale=mu * phi), rtol=1e-12)
    pz = expit(-0.3)
    zi = row_loglik("poisson", "zi", y, np.log(mu) * e, -0.3 * e, 0 * e)
    np.testing.assert_allclose(zi, np.log(pz * (y == 0) + (1 - pz) * stats.poisson.pmf(y, mu)), rtol=1e-12)
    hu = row_loglik("poisson", "hurdle", y, np.log(mu) * e, -0.3 * e, 0 * e)
    ref = np.where(y == 0, np.log(pz), np.log(1 - pz) + stats.poisson.logpmf(y, mu) - np.log1p(-np.exp(-mu)))
    np.testing.assert_allclose(hu, ref, rtol=1e-12)


def test_trigamma_against_scipy():
    x = np.concatenate([np.logspace(-8, 9, 3000), np.linspace(0.01, 40, 3000)])
    np.testing.assert_allclose(trigamma(x), polygamma(1, x), rtol=1e-12)


def test_simulation_matches_the_density():
    rng = np.random.default_rng(0)
    n = 200_000
    e = np.ones(n)
    for zero_part in ("zi", "hurdle"):
        draws = simulate_rows("nb2", zero_part, 0.8 * e, -0.5 * e, 0.2 * e, rng)
        p = np.exp(row_loglik("nb2", zero_part, np.arange(4.0), 0.8 * e[:4], -0.5 * e[:4], 0.2 * e[:4]))
        freq = np.array([np.mean(draws == k) for k in range(4)])
        np.testing.assert_allclose(freq, p, atol=4e-3)


def _problem(family="nb1", zero_part="zi", zi_re=True, slope=True, seed=0, n=240):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 12, n)
    codes2 = rng.integers(0, 5, n)
    x = rng.normal(size=n)
    y = rng.poisson(np.exp(0.4 + 0.3 * x + rng.normal(scale=0.5, size=12)[codes])).astype(float)
    y[rng.uniform(size=n) < 0.25] = 0.0
    X = np.column_stack([np.ones(n), x])
    terms = [ReTerm("g", codes, 12, np.column_stack([np.ones(n), x]) if slope else np.ones((n, 1)),
                    ("Intercept", "x") if slope else ("Intercept",)),
             ReTerm("h", codes2, 5, np.ones((n, 1)), ("Intercept",))]
    sz = ReStructure((ReTerm("g", codes, 12, np.ones((n, 1)), ("Intercept",)),)) if zi_re else None
    Xd = X if family != "poisson" else X[:, :0]
    prob = ZIProblem(family, zero_part, y, (X, X, Xd), (np.zeros(n),) * 3, (ReStructure(tuple(terms)), sz))
    cov = [0.5, 0.1, 0.3, 0.4] if slope else [0.5, 0.4]
    theta = np.concatenate([[0.4, 0.2], [-1.0, 0.1], 0.1 * np.ones(Xd.shape[1]), cov, [0.6] if zi_re else []])
    return prob, theta


@pytest.mark.parametrize("family,zero_part,zi_re", [("nb1", "zi", True), ("nb2", "hurdle", False),
                                                    ("poisson", "zi", True), ("nb2", "zi", False)])
def test_laplace_gradient_matches_differences(family, zero_part, zi_re):
    prob, theta = _problem(family, zero_part, zi_re)
    state = find_mode(prob, theta)
    grad = laplace_gradient(prob, theta, state)
    num = np.empty_like(theta)
    for j in range(theta.size):
        h = 1e-5
        tp, tm = theta.copy(), theta.copy()
        tp[j] += h
        tm[j] -= h
        num[j] = (laplace_value(prob, tp, state.u) - laplace_value(prob, tm, state.u)) / (2 * h)
    np.testing.assert_allclose(grad, num, atol=1e-6, rtol=1e-6)


def test_laplace_equals_a_dense_joint_laplace():
    """The mode and log det from a generic optimiser over all effects at once (written here)."""
    prob, theta = _problem("nb2", "zi", True, slope=False, n=150)
    state = find_mode(prob, theta)
    beta, gamma, delta, lc, lz = prob.split(theta)
    base = prob.fixed_etas(beta, gamma, delta)
    codes_c = [t.codes for t in prob.structures[0].terms]
    codes_z = prob.structures[1].terms[0].codes
    nc = [t.n_levels for t in prob.structures[0].terms]

    def h(u):
        b1, b2, bz = u[:nc[0]] * lc[0], u[nc[0]:nc[0] + nc[1]] * lc[1], u[nc[0] + nc[1]:] * lz[0]
        ec = base[:, 0] + b1[codes_c[0]] + b2[codes_c[1]]
        ez = base[:, 1] + bz[codes_z]
        p = expit(ez)
        th = np.exp(base[:, 2])
        f = stats.nbinom.pmf(prob.y, th, th / (th + np.exp(ec)))
        return -(np.sum(np.log(p * (prob.y == 0) + (1 - p) * f)) - 0.5 * u @ u)

    q = prob.Q
    opt = optimize.minimize(h, np.zeros(q), method="BFGS", options={"gtol": 1e-10})
    u = opt.x
    H = np.empty((q, q))
    step = 1e-4
    for i in range(q):
        for j in range(q):
            ei, ej = np.eye(q)[i] * step, np.eye(q)[j] * step
            H[i, j] = (h(u + ei + ej) - h(u + ei - ej) - h(u - ei + ej) + h(u - ei - ej)) / (4 * step * step)
    value = h(u) + 0.5 * np.linalg.slogdet(H)[1]
    assert abs(value - state.value) < 1e-5
    np.testing.assert_allclose(state.u, u, atol=1e-4)


def test_sparse_factorisation_equals_dense(monkeypatch):
    prob, theta = _problem("nb1", "zi", True)
    dense = find_mode(prob, theta)
    g_dense = laplace_gradient(prob, theta, dense)
    monkeypatch.setattr(_laplace_multi, "DENSE_MAX", 5)
    sparse = find_mode(prob, theta)
    assert sparse.factor.sparse
    assert abs(sparse.value - dense.value) < 1e-9
    np.testing.assert_allclose(laplace_gradient(prob, theta, sparse), g_dense, atol=1e-8)
    L = prob.local_cols  # blockwise selected inverse entries (several blocks) equal the dense inverse's
    full = sparse.factor.inverse()[L[:, :, None], L[:, None, :]]
    np.testing.assert_array_equal(_laplace_multi._local_inverse(sparse.factor, L, prob.Q, block=7), full)
