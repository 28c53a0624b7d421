"""Fused kernels (_kernels.py) against statsmodels' families: the generic Distribution path, differences
of statsmodels' ``loglike_obs``, closed forms in the tails (|eta| = 40) and the edges of the support."""
import numpy as np
import pytest
from scipy import stats

from glmm_ext.engine._families import ALLOWED_LINKS, Distribution, make_family
from glmm_ext.engine._kernels import KERNELS
from glmm_ext.engine._laplace import GLMMData, MarginalLikelihood
from glmm_ext.engine._segments import group_starts

from conftest import kernel_rows

#: allowed pairs served by the generic path only (issue 15 added them without a fused kernel)
GENERIC_ONLY = [("binomial", "cloglog"), ("negativebinomial", "log")]
PAIRS = [(f, link) for f, links in ALLOWED_LINKS.items() for link in links if (f, link) not in GENERIC_ONLY]
PHI = {"gaussian": 0.7, "gamma": 0.4}


def test_every_allowed_pair_has_a_kernel():
    assert sorted(KERNELS) == sorted(PAIRS)
    for family, link in GENERIC_ONLY:  # allowed, and on the generic path
        assert link in ALLOWED_LINKS[family]
        assert Distribution(make_family(family, link))._kernel is None


def _statsmodels_loglik(dist, y, eta, m, phi):
    """Per-row log density from statsmodels' family (scipy's binomial pmf for proportions with trials)."""
    mu = dist.link.inverse(eta)
    if dist.name == "binomial":
        return stats.binom.logpmf(np.round(y * m), m, mu)
    return dist.family.loglike_obs(y, mu, scale=phi)


@pytest.mark.parametrize("family,link", PAIRS)
def test_kernel_matches_generic_path_and_statsmodels(family, link):
    rng = np.random.default_rng(11)
    y, eta, m = kernel_rows(family, link, 400, rng)
    kern, generic = Distribution(make_family(family, link)), Distribution(make_family(family, link), kernels=False)
    assert kern._kernel is not None and generic._kernel is None
    phi = PHI.get(family, 1.0)
    const = generic.log_constant(y, m)
    ll, l1, d, t = kern.evaluate(y, eta, m, phi, const, order=3)
    np.testing.assert_allclose(ll, generic.loglik(y, eta, m, phi, const), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ll, _statsmodels_loglik(generic, y, eta, m, phi), rtol=1e-10, atol=1e-10)
    # the generic probit path loses digits as mu -> 1 (it works with 1 - Phi; the kernel with log Phi on
    # both sides): compare where it is still accurate
    rows = np.abs(eta) < 3.0 if link == "probit" else slice(None)
    for got, want in zip((l1, d, t), generic.derivatives(y[rows], eta[rows], m[rows], phi, order=3)):
        np.testing.assert_allclose(got[rows], want, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(kern.working_weights(eta, m, phi), generic.working_weights(eta, m, phi),
                               rtol=1e-10, atol=1e-14)
    # the separate entry points agree with the fused one
    np.testing.assert_array_equal(kern.loglik(y, eta, m, phi, const), ll)
    np.testing.assert_array_equal(kern.derivatives(y, eta, m, phi, order=2)[1], d)

    # differences of statsmodels' log density in eta: l1 = ll', d = -ll'', t = -ll'''
    h = 1e-3 * np.maximum(1.0, np.abs(eta))
    if link in ("identity", "inverse") and family != "gaussian":
        h = np.minimum(h, 0.01 * eta)
    f = {k: _statsmodels_loglik(generic, y, eta + k * h, m, phi) for k in (-2, -1, 0, 1, 2)}
    fd1 = (f[1] - f[-1]) / (2 * h)
    fd2 = (f[1] - 2 * f[0] + f[-1]) / h**2
    fd3 = (f[2] - 2 * f[1] + 2 * f[-1] - f[-2]) / (2 * h**3)
    scale = 1.0 + np.abs(l1) + np.abs(d) + np.abs(t)
    np.testing.assert_allclose(l1 / scale, fd1 / scale, atol=1e-5)
    np.testing.assert_allclose(d / scale, -fd2 / scale, atol=1e-4)
    np.testing.assert_allclose(t / scale, -fd3 / scale, atol=2e-3)


def _inverse_mills(s):
    """phi(s) / Phi(-s) for large s: s + 1/s - 2/s^3 + 10/s^5 - 74/s^7 + 706/s^9 (relative error < 1e-15 at 40)."""
    return s + 1 / s - 2 / s**3 + 10 / s**5 - 74 / s**7 + 706 / s**9


def test_tails_at_eta_40():
    eta = np.array([-40.0, 40.0, -40.0, 40.0])
    y = np.array([0.0, 1.0, 1.0, 0.0])
    m, phi = np.ones(4), 1.0
    # logit: mu (1 - mu) = e^-40 / (1 + e^-40)^2 without rounding mu to 0 or 1
    ll, l1, d, t = Distribution(make_family("binomial", "logit")).evaluate(y, eta, m, phi, np.zeros(4), 3)
    e = np.exp(-40.0) / (1 + np.exp(-40.0))
    np.testing.assert_allclose(ll, [-np.log1p(np.exp(-40.0))] * 2 + [-40 - np.log1p(np.exp(-40.0))] * 2, rtol=1e-15)
    # l1 = y - mu is exact to absolute rounding (it is summed with O(1) terms); d and t to relative rounding
    np.testing.assert_allclose(l1, [-e, e, 1 - e, -(1 - e)], rtol=1e-14, atol=1e-16)
    np.testing.assert_allclose(d, [e * (1 - e)] * 4, rtol=1e-13)
    np.testing.assert_allclose(t, [e * (1 - e) * (1 - 2 * e)] + [-e * (1 - e) * (1 - 2 * e)] + [e * (1 - e)] +
                               [-e * (1 - e)], rtol=1e-12)
    # probit: the wrong-side rows (y = 1 at -40, y = 0 at 40) follow the inverse Mills ratio
    ll, l1, d, t = Distribution(make_family("binomial", "probit")).evaluate(y, eta, m, phi, np.zeros(4), 3)
    lam = _inverse_mills(40.0)
    np.testing.assert_allclose(ll[2:], stats.norm.logcdf(-40.0), rtol=1e-13)
    np.testing.assert_allclose(l1[2:], [lam, -lam], rtol=1e-13)
    np.testing.assert_allclose(d[2:], lam * (lam - 40.0), rtol=1e-9)
    assert np.all(np.isfinite(t)) and np.all(np.abs(t[2:]) < 1e-3)  # -> 2 / 40^3 = 3e-5
    np.testing.assert_allclose(np.abs(l1[:2]) + d[:2] + np.abs(t[:2]), 0.0, atol=1e-300)
    # log links, closed forms with mu = e^eta: Poisson l1 = y - mu, d = t = mu; Gamma (k = 1 / phi, z = y / mu)
    # l1 = k (z - 1), d = k z, t = -k z; Gaussian (w = 1 / phi) l1 = w (y - mu) mu, d = w mu (2 mu - y),
    # t = w mu (4 mu - y)
    mu = np.exp(eta)
    yy = np.array([0.5, 3.0, 2.0, 1.0])
    expected = {"poisson": (yy - mu, mu, mu), "gamma": (2 * (yy / mu - 1), 2 * yy / mu, -2 * yy / mu),
                "gaussian": (2 * (yy - mu) * mu, 2 * mu * (2 * mu - yy), 2 * mu * (4 * mu - yy))}
    for family, want in expected.items():
        dist = Distribution(make_family(family, "log"))
        phi = 1.0 if family == "poisson" else 0.5
        out = dist.evaluate(yy, eta, m, phi, dist.log_constant(yy, m), 3)
        assert np.all(np.isfinite(out[0]))
        for got, ref in zip(out[1:], want):
            np.testing.assert_allclose(got, ref, rtol=1e-13)


@pytest.mark.parametrize("family,link", [("poisson", "identity"), ("gamma", "inverse"), ("gamma", "identity")])
def test_support_edges(family, link):
    dist = Distribution(make_family(family, link))
    generic = Distribution(make_family(family, link), kernels=False)
    eta = np.array([-1.0, 0.0, 1e-300, 1e-8, 40.0])
    y = np.array([1.0, 2.0, 0.5, 3.0, 1.5]) if family == "gamma" else np.array([1.0, 2.0, 0.0, 3.0, 1.0])
    m = np.ones(5)
    const = dist.log_constant(y, m)
    phi = 0.5 if family == "gamma" else 1.0
    ll = dist.loglik(y, eta, m, phi, const)
    assert np.all(ll[:2] == -np.inf)
    mu = eta[2:] if link == "identity" else 1.0 / eta[2:]
    exact = (stats.poisson.logpmf(y[2:], mu) if family == "poisson" else
             stats.gamma.logpdf(y[2:], a=1.0 / phi, scale=mu * phi))  # scipy, independent of both paths
    np.testing.assert_allclose(ll[2:], exact, rtol=1e-12)
    for got, want in zip(dist.derivatives(y[3:], eta[3:], m[3:], phi, 3),
                         generic.derivatives(y[3:], eta[3:], m[3:], phi, 3)):
        np.testing.assert_allclose(got, want, rtol=1e-10)


def test_binomial_response_edges_and_proportions():
    """y = 0 and y = 1 with trials, and proportions (the probit kernel's two-sided path)."""
    for link in ("logit", "probit"):
        kern = Distribution(make_family("binomial", link))
        generic = Distribution(make_family("binomial", link), kernels=False)
        y = np.array([0.0, 1.0, 0.5, 0.2, 1.0, 0.0])
        m = np.array([3.0, 3.0, 2.0, 5.0, 1.0, 1.0])
        eta = np.array([-2.0, 2.0, 0.3, -0.7, 5.0, -5.0])
        const = generic.log_constant(y, m)
        got = kern.evaluate(y, eta, m, 1.0, const, 3)
        want = (generic.loglik(y, eta, m, 1.0, const),) + generic.derivatives(y, eta, m, 1.0, 3)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("family,link", PAIRS)
def test_marginal_likelihood_same_with_and_without_kernels(family, link):
    """The Laplace and AGQ value and gradient do not depend on which path computes the densities."""
    rng = np.random.default_rng(5)
    counts = np.full(12, 6)
    n = counts.sum()
    y, eta, m = kernel_rows(family, link, n, rng, spread=0.5)
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    gamma = np.array([np.median(eta), 0.05])
    values = []
    for kernels in (True, False):
        dist = Distribution(make_family(family, link), kernels=kernels)
        data = GLMMData(y=y, X=X, offset=np.zeros(n), m=m, const=dist.log_constant(y, m),
                        starts=group_starts(counts), counts=counts)
        theta = np.concatenate([gamma, [0.1], [np.log(PHI[family])] if dist.has_dispersion else []])
        values.append([MarginalLikelihood(dist, data, nagq=k)(theta) for k in (1, 5)])
    for (f_k, g_k), (f_g, g_g) in zip(*values):
        assert np.isfinite(f_k)
        np.testing.assert_allclose(f_k, f_g, rtol=1e-10)
        np.testing.assert_allclose(g_k, g_g, rtol=1e-7, atol=1e-8)


def test_threaded_blocks_give_the_same_numbers(monkeypatch):
    """Long inputs are split over threads; every output row depends on its own row only."""
    from glmm_ext.engine import _kernels

    rng = np.random.default_rng(2)
    n = 450_001
    y, eta = (rng.random(n) < 0.4).astype(float), rng.normal(0, 2, n)
    m, const = np.broadcast_to(1.0, (n,)), np.broadcast_to(0.0, (n,))
    monkeypatch.setattr(_kernels, "MIN_ROWS_PER_THREAD", 100_000)
    monkeypatch.setattr(_kernels, "THREADS", 3)
    split = _kernels.evaluate(_kernels.binomial_logit, y, eta, m, 1.0, const, order=3)
    whole = _kernels.binomial_logit(y, eta, m, 1.0, const, order=3)
    for a, b in zip(split, whole):
        np.testing.assert_array_equal(a, b)
    assert _kernels.evaluate(_kernels.poisson_log, y, eta, m, 1.0, const, order=1, loglik=False)[0] is None
