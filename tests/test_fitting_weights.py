"""var_weights and freq_weights with statsmodels GLM's meaning: lme4's weighted lmer, statsmodels'
GLM log-likelihood, and frequency weights equal to duplicated rows."""
import json
import os
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import glmm_ext

DATA = os.path.join(os.path.dirname(__file__), "data")
with open(os.path.join(DATA, "analysis_reference.json")) as fh:
    REF = json.load(fh)["sleepstudy_weights"]


def fit(formula, data, family=None, groups="g", fit_kw=None, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return glmm_ext.GLMM.from_formula(formula, data, groups=groups, family=family, **kw).fit(**(fit_kw or {}))


@pytest.mark.parametrize("reml", [True, False])
def test_gaussian_var_weights_match_lmer_weights(reml):
    d = pd.read_csv(os.path.join(DATA, "sleepstudy.csv")).assign(w=lambda x: 1 + x["Days"] % 3)
    res = fit("Reaction ~ Days", d, groups="Subject", var_weights="w", fit_kw={"reml": reml})
    ref = REF["reml" if reml else "ml"]
    assert res.llf == pytest.approx(ref["loglik"], abs=1e-6)
    np.testing.assert_allclose(np.asarray(res.params), ref["fixef"], rtol=1e-8)
    assert res.sigma_re == pytest.approx(ref["sd"], rel=1e-6)
    assert np.sqrt(res.scale) == pytest.approx(ref["sigma"], rel=1e-6)


FAMILIES = [("gaussian", "identity"), ("gaussian", "log"), ("binomial", "logit"), ("poisson", "log"),
            ("gamma", "log"), ("negativebinomial", "log")]


def sim(family, link, seed=1):
    if family == "negativebinomial":
        d = glmm_ext.simulate("poisson", n_groups=20, group_size=8, seed=seed)
        rng = np.random.default_rng(seed)
        return d.assign(y=rng.poisson(d["y"] * rng.gamma(2.0, 0.5, len(d)) + 0.5))
    beta = (1.5, 0.3, -0.2) if (family, link) == ("gaussian", "log") else (0.5, 0.8, -0.4)
    return glmm_ext.simulate(family, link, n_groups=20, group_size=8, beta=beta, seed=seed)


@pytest.mark.parametrize("family,link", FAMILIES)
def test_freq_weights_equal_duplicated_rows(family, link):
    d = sim(family, link)
    f = np.random.default_rng(2).integers(1, 4, size=len(d))
    fam = glmm_ext.make_family(family, link)
    weighted = fit("y ~ x1 + x2", d, fam, freq_weights=f)
    duplicated = fit("y ~ x1 + x2", d.loc[d.index.repeat(f)].reset_index(drop=True), fam)
    assert weighted.nobs == duplicated.nobs == f.sum()
    assert weighted.llf == pytest.approx(duplicated.llf, abs=1e-6)
    np.testing.assert_allclose(np.asarray(weighted.params), np.asarray(duplicated.params), atol=1e-5)
    assert weighted.var_re == pytest.approx(duplicated.var_re, rel=1e-4, abs=1e-8)
    assert weighted.scale == pytest.approx(duplicated.scale, rel=1e-4)
    assert weighted.bic == pytest.approx(duplicated.bic, abs=1e-5)


@pytest.mark.parametrize("family,link", [("gaussian", "identity"), ("binomial", "logit"), ("poisson", "log")])
def test_glm_loglik_with_weights_is_statsmodels_glm_llf(family, link):
    d = sim(family, link)
    rng = np.random.default_rng(3)
    v, f = rng.uniform(0.5, 2.0, len(d)), rng.integers(1, 4, len(d)).astype(float)
    fam = glmm_ext.make_family(family, link)
    res = fit("y ~ x1 + x2", d, fam, var_weights=v, freq_weights=f, fit_kw={"reml": False})
    glm = sm.GLM.from_formula("y ~ x1 + x2", d, family=fam, var_weights=v, freq_weights=f).fit()
    assert res.test_random_effect().llf_glm == pytest.approx(glm.llf, abs=1e-6)  # the sigma_u = 0 fit


@pytest.mark.parametrize("family,link", [("gaussian", "log"), ("gamma", "log"), ("poisson", "log")])
def test_weighted_log_density_is_statsmodels_family_loglike(family, link):
    """At sigma_u = 0 the model's log-likelihood is statsmodels' weighted family log-likelihood."""
    d = sim(family, link)
    rng = np.random.default_rng(4)
    v, f = rng.uniform(0.5, 2.0, len(d)), rng.integers(1, 4, len(d)).astype(float)
    fam = glmm_ext.make_family(family, link)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = glmm_ext.GLMM.from_formula("y ~ x1 + x2", d, groups="g", family=fam, var_weights=v, freq_weights=f)
    params, scale = np.array([1.2, 0.25, -0.1]), (1.0 if family == "poisson" else 0.7)
    mu = np.exp(model.exog @ params)
    expected = fam.loglike(d["y"].to_numpy(), mu, var_weights=v, freq_weights=f, scale=scale)
    assert model.loglike(params, var_re=0.0, scale=scale) == pytest.approx(expected, rel=1e-10)


def test_weights_are_validated_and_compared():
    d = sim("poisson", "log")
    fam = sm.families.Poisson()
    with pytest.raises(ValueError, match="var_weights must be > 0"):
        fit("y ~ x1", d, fam, var_weights=np.zeros(len(d)))
    with pytest.raises(ValueError, match="freq_weights has 3 values"):
        fit("y ~ x1", d, fam, freq_weights=np.ones(3))
    with pytest.raises(ValueError, match="not in the data"):
        fit("y ~ x1", d, fam, var_weights="nope")
    a = fit("y ~ x1", d, fam)
    b = fit("y ~ x1 + x2", d, fam, var_weights=np.full(len(d), 2.0))
    with pytest.raises(ValueError, match="weights"):
        glmm_ext.anova(a, b)
    assert d.shape[1] == 4  # the caller's data keep their columns


def test_reml_bse_re_with_frequency_weights_equals_duplicated_rows():
    """bse_re of a weighted Gaussian REML fit comes from the weighted REML criterion: frequency weights
    give the same SE as the data with each row repeated that many times."""
    data = glmm_ext.load_schools()
    counts = np.random.default_rng(3).integers(1, 4, size=len(data))
    repeated = data.loc[data.index.repeat(counts)].reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        weighted = glmm_ext.GLMM.from_formula("score ~ hours + ses", data, groups="school",
                                              freq_weights=counts).fit()
        duplicated = glmm_ext.GLMM.from_formula("score ~ hours + ses", repeated, groups="school").fit()
    assert abs(weighted.llf - duplicated.llf) < 1e-6
    np.testing.assert_allclose(np.asarray(weighted.bse_re), np.asarray(duplicated.bse_re), rtol=1e-5)


def crossed(family, seed=4):
    """Crossed data: 20 x 6 levels, two rows per cell, a random intercept per factor."""
    rng = np.random.default_rng(seed)
    a, b = np.repeat(np.arange(20), 12), np.tile(np.repeat(np.arange(6), 2), 20)
    x = rng.normal(size=a.size)
    eta = 0.4 + 0.5 * x + rng.normal(0, 0.6, 20)[a] + rng.normal(0, 0.4, 6)[b]
    y = rng.poisson(np.exp(eta)) if family == "poisson" else eta + rng.normal(0, 0.8, a.size)
    return pd.DataFrame({"y": y.astype(float), "x": x, "a": a, "b": b})


def test_several_terms_poisson_var_and_freq_weights_equal_duplicated_rows():
    """Poisson var_weights multiply each row's log density, so integer weights f, as var_weights or as
    freq_weights, give the fit of the data with each row repeated f times (crossed terms)."""
    d = crossed("poisson")
    f = np.random.default_rng(5).integers(1, 4, size=len(d))
    form, fam = "y ~ x + (1|a) + (1|b)", sm.families.Poisson()
    duplicated = fit(form, d.loc[d.index.repeat(f)].reset_index(drop=True), fam, groups=None)
    for kw in ({"var_weights": f}, {"freq_weights": f}):
        weighted = fit(form, d, fam, groups=None, **kw)
        assert weighted.llf == pytest.approx(duplicated.llf, abs=1e-6)
        np.testing.assert_allclose(np.asarray(weighted.fe_params), np.asarray(duplicated.fe_params), atol=1e-5)
        np.testing.assert_allclose(np.asarray(weighted.bse_fe), np.asarray(duplicated.bse_fe), rtol=1e-3)
        for key in ("a", "b"):
            assert float(np.asarray(weighted.cov_re[key])[0, 0]) == pytest.approx(
                float(np.asarray(duplicated.cov_re[key])[0, 0]), rel=1e-4, abs=1e-8)
    assert weighted.nobs == duplicated.nobs == f.sum()  # frequency weights count rows (statsmodels' nobs)
    assert weighted.bic == pytest.approx(duplicated.bic, abs=1e-5)


@pytest.mark.parametrize("reml", [True, False])
def test_several_terms_gaussian_var_weights_against_the_dense_likelihood(reml):
    """lme4's weights= (residual variance sigma^2 / w) with crossed terms: the llf is the dense n x n weighted
    likelihood at the estimates, and no parameter step improves it."""
    import dense_reference as dr

    d = crossed("gaussian")
    w = np.random.default_rng(6).uniform(0.5, 2.0, size=len(d))
    res = fit("y ~ x + (1|a) + (1|b)", d, groups=None, var_weights=w, fit_kw={"reml": reml})
    designs = [dr.term_design(d, [g], ["1"]) for g in ("a", "b")]
    X = np.column_stack([np.ones(len(d)), d["x"]])

    def dense(va, vb, s2):
        return dr.gaussian_loglik(d["y"].to_numpy(), X, np.asarray(res.fe_params), designs,
                                  [np.array([[va]]), np.array([[vb]])], s2, reml=reml, weights=w)

    va, vb = (float(np.asarray(res.cov_re[k])[0, 0]) for k in ("a", "b"))
    assert res.llf == pytest.approx(dense(va, vb, res.scale), abs=1e-6)
    for step in ((1.05, 1, 1), (0.95, 1, 1), (1, 1.05, 1), (1, 0.95, 1), (1, 1, 1.05), (1, 1, 0.95)):
        assert dense(va * step[0], vb * step[1], res.scale * step[2]) <= res.llf + 1e-8
