"""Negative binomial (NB2) and the cloglog link: closed forms, finite differences and glmmTMB's fits."""
import os
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

import glmm_ext

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


def test_nb_log_density_is_scipys_nbinom():
    """At sigma_u = 0 the model's log-likelihood is the sum of scipy's nbinom log-pmf (NB2: n = 1/alpha)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = glmm_ext.GLMM.from_formula("TICKS ~ cHEIGHT", grouse(), groups="BROOD",
                                           family=sm.families.NegativeBinomial(alpha=1.0))
    y = np.asarray(model.endog, float)
    assert y.max() >= 50  # the tail, not only small counts
    for beta, alpha in (([0.5, -0.03], 0.7), ([1.2, 0.01], 2.5), ([-0.3, 0.0], 0.05)):
        mu = np.exp(np.asarray(model.exog) @ beta)
        n = 1.0 / alpha  # scipy: nbinom(n, p) with p = n / (n + mu)
        expected = stats.nbinom.logpmf(y, n, n / (n + mu)).sum()
        assert model.loglike(np.array(beta), var_re=0.0, alpha=alpha) == pytest.approx(expected, rel=1e-12)


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
    assert list(re.columns) == ["Variance", "Std.Dev."] and not re.isna().any().any()
    shape = nb_fit.dispersion_table()
    assert shape.loc["theta", "Value"] == pytest.approx(nb_fit.theta)
    assert shape.loc["alpha", "Value"] == pytest.approx(nb_fit.alpha)
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


def test_simulate_takes_the_negative_binomial_alpha_by_its_name():
    """simulate(alpha=) is NB2's alpha (what res.alpha reports); scale= stays its older spelling."""
    named = glmm_ext.simulate("negativebinomial", n_groups=30, group_size=10, alpha=0.7, seed=4)
    old = glmm_ext.simulate("negativebinomial", n_groups=30, group_size=10, scale=0.7, seed=4)
    pd.testing.assert_frame_equal(named, old)
    assert named.attrs["truth"]["alpha"] == 0.7
    assert named["y"].var() > named["y"].mean()  # overdispersed
    with pytest.raises(ValueError, match="negative binomial"):
        glmm_ext.simulate("poisson", alpha=0.7)
    for bad in (0.0, -1.0, np.inf, np.nan, True, "0.5"):
        with pytest.raises(ValueError, match="alpha must be a finite positive number"):
            glmm_ext.simulate("negativebinomial", alpha=bad)


def test_nb_recovers_the_simulated_truth():
    d = glmm_ext.simulate("negativebinomial", n_groups=200, group_size=20, alpha=0.5, sigma_u=0.5, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = glmm_ext.glmm("y ~ x1 + x2", d, groups="g", family=glmm_ext.make_family("negativebinomial")).fit()
    z = np.abs(np.asarray(res.params) - np.array(d.attrs["truth"]["beta"])) / np.asarray(res.bse)
    assert z.max() < 3.5
    ci = res.conf_int(method="wald")
    assert ci.loc["alpha", "lower"] < 0.5 < ci.loc["alpha", "upper"]
    assert ci.loc["g SD", "lower"] < 0.5 < ci.loc["g SD", "upper"]
