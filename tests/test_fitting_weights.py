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
