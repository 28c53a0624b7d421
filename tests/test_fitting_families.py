"""Negative binomial (NB2) and the cloglog link: closed forms, finite differences and glmmTMB's fits."""
import os
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

import glmm_ext
from glmm_ext.engine._families import Distribution
from glmm_ext.engine._laplace import MarginalLikelihood

from conftest import ANALYSIS_REF as REF, DATA


def grouse():
    d = pd.read_csv(os.path.join(DATA, "grouseticks.csv"))
    d["HEIGHTs"] = (d["HEIGHT"] - d["HEIGHT"].mean()) / d["HEIGHT"].std()  # R's scale()
    return d


@pytest.fixture(scope="module")
def nb_fit():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = glmm_ext.GLMM.from_formula("TICKS ~ C(YEAR) + HEIGHTs", grouse(), groups="BROOD",
                                           family=sm.families.NegativeBinomial(alpha=1.0))
        return model.fit()


def nb_dist():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Distribution(sm.families.NegativeBinomial(alpha=1.0))


def test_nb_log_density_is_scipys_nbinom():
    dist = nb_dist()
    y = np.array([0.0, 1.0, 3.0, 10.0, 57.0])
    eta = np.array([-1.0, 0.2, 1.0, 2.5, 3.0])
    alpha = 0.7
    mu = np.exp(eta)
    n = 1.0 / alpha  # scipy: nbinom(n, p) with p = n / (n + mu)
    expected = stats.nbinom.logpmf(y, n, n / (n + mu))
    got = dist.loglik(y, eta, 1.0, alpha, dist.log_constant(y, np.ones_like(y)))
    np.testing.assert_allclose(got, expected, rtol=1e-12)


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


def test_nb_fit_matches_glmmtmb_nbinom2(nb_fit):
    ref = REF["grouseticks"]["nb"]
    assert nb_fit.llf == pytest.approx(ref["loglik"], abs=1e-4)
    np.testing.assert_allclose(np.asarray(nb_fit.params), ref["fixef"], atol=2e-4)
    assert nb_fit.sigma_re == pytest.approx(ref["sd"], rel=1e-3)
    assert nb_fit.theta == pytest.approx(ref["theta"], rel=1e-3)
    assert nb_fit.alpha == pytest.approx(1.0 / ref["theta"], rel=1e-3)
    assert nb_fit.aic == pytest.approx(ref["AIC"], abs=2e-4)


def test_nb_tables_show_irr_alpha_theta_and_latent_variance(nb_fit):
    fe = nb_fit.fixed_effects_table()
    assert "IRR" in fe.columns
    np.testing.assert_allclose(fe["IRR"], np.exp(np.asarray(nb_fit.params)))
    re = nb_fit.random_effects_table()
    assert re.loc["theta = 1/alpha", "Value"] == pytest.approx(nb_fit.theta)
    assert re.loc["alpha (NB2: Var = mu + alpha mu^2)", "Value"] == pytest.approx(nb_fit.alpha)
    lat = nb_fit.latent_variance_table()
    lam = nb_fit.latent_lambda
    assert lat.loc["lognormal approximation", "Latent residual variance"] == pytest.approx(
        np.log(1 + 1 / lam + nb_fit.alpha))
    assert "IRR" in str(nb_fit.summary())


def test_nb_pearson_residuals_use_the_fitted_alpha(nb_fit):
    diag = nb_fit.diagnostics()
    mu = diag["fitted_values"].to_numpy()
    y = nb_fit.model.design.y
    np.testing.assert_allclose(diag["pearson_residuals"], (y - mu) / np.sqrt(mu + nb_fit.alpha * mu**2))


def test_nb_rejects_negative_counts():
    d = grouse().assign(TICKS=lambda x: x["TICKS"] - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="Negative binomial response"):
            glmm_ext.GLMM.from_formula("TICKS ~ HEIGHTs", d, groups="BROOD",
                                       family=sm.families.NegativeBinomial(alpha=1.0))


def test_cloglog_binomial_matches_glmmtmb():
    ref = REF["cbpp"]["cloglog_tmb"]
    d = pd.read_csv(os.path.join(DATA, "cbpp.csv"))
    fam = sm.families.Binomial(link=sm.families.links.CLogLog())
    model = glmm_ext.GLMM.from_formula("incidence + I(size - incidence) ~ C(period)", d, groups="herd", family=fam)
    res = model.fit()
    assert res.llf == pytest.approx(ref["loglik"], abs=1e-5)
    np.testing.assert_allclose(np.asarray(res.params), ref["fixef"], atol=1e-4)
    assert res.sigma_re == pytest.approx(ref["sd"], rel=1e-3)
    # glmer's Laplace uses the expected curvature for this non-canonical link: a lower value at its own optimum
    assert res.llf > REF["cbpp"]["cloglog"]["loglik"]
    assert res.icc == pytest.approx(res.var_re / (res.var_re + np.pi**2 / 6))


def test_cloglog_bernoulli_kernel_is_exact_in_the_tails():
    dist = Distribution(sm.families.Binomial(link=sm.families.links.CLogLog()))
    eta = np.array([-40.0, -5.0, 0.0, 2.0, 4.0])
    mu = -np.expm1(-np.exp(eta))
    for y in (0.0, 1.0):
        got = dist.loglik(np.full(5, y), eta, 1.0, 1.0, 0.0)
        expected = np.log(mu) if y == 1.0 else -np.exp(eta)
        np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_nb_recovers_the_simulated_truth():
    d = glmm_ext.simulate("negativebinomial", n_groups=200, group_size=20, scale=0.5, sigma_u=0.5, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = glmm_ext.glmm("y ~ x1 + x2", d, groups="g", family=glmm_ext.make_family("negativebinomial")).fit()
    z = np.abs(np.asarray(res.params) - np.array(d.attrs["truth"]["beta"])) / np.asarray(res.bse)
    assert z.max() < 3.5
    ci = res.conf_int(method="wald")
    assert ci.loc["alpha", "lower"] < 0.5 < ci.loc["alpha", "upper"]
    assert ci.loc["g SD", "lower"] < 0.5 < ci.loc["g SD", "upper"]
