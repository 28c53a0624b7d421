"""Gaussian + identity against lme4 (REML and ML) and the best known optimum: the foundation's bar; and the same
profile against statsmodels' MixedLM on simulated data."""
import warnings

import numpy as np
import pytest
import statsmodels.formula.api as smf

import glmm_ext
from conftest import REFERENCE, as_dict, family_of, load_case, r_name

GAUSSIAN = ["dyestuff_reml", "dyestuff_ml", "dyestuff2_singular", "sleepstudy_ri"]
RTOL = 1e-4


@pytest.mark.parametrize("name", GAUSSIAN)
def test_llf_reaches_best(fits, name):
    assert abs(fits(name).llf - REFERENCE[name]["best"]["best_loglik"]) < 1e-4


@pytest.mark.parametrize("name", GAUSSIAN)
def test_estimates_match_lme4(fits, name):
    res, ref = fits(name), REFERENCE[name]["anchors"]
    for k in res.fe_params.index:
        assert res.fe_params[k] == pytest.approx(ref["fe"][r_name(k)], rel=RTOL)
        assert res.bse[k] == pytest.approx(ref["se"][r_name(k)], rel=RTOL)
    assert res.scale == pytest.approx(ref["sigma"] ** 2, rel=RTOL)
    assert float(res.cov_re.iloc[0, 0]) == pytest.approx(ref["var_re"], rel=RTOL, abs=1e-8 * ref["sigma"] ** 2)
    assert res.aic == pytest.approx(ref["aic"], rel=RTOL)
    assert res.bic == pytest.approx(ref["bic"], rel=RTOL)
    assert res.nobs == ref["nobs"] and res.n_groups == ref["ngroups"]


@pytest.mark.parametrize("name", GAUSSIAN)
def test_blups_and_their_sds_match_lme4(fits, name):
    res, ref = fits(name), REFERENCE[name]["anchors"]
    ranef, ranef_sd = as_dict(ref["ranef"]), as_dict(ref["ranef_sd"])
    table = res.blup_table().set_index("Group")
    scale = np.sqrt(ref["sigma"] ** 2)
    for group, value in ranef.items():
        key = type(table.index[0])(group)
        assert table.loc[key, "Random Intercept"] == pytest.approx(value, rel=RTOL, abs=1e-6 * scale)
        assert table.loc[key, "Std. Error"] == pytest.approx(ranef_sd[group], rel=RTOL, abs=1e-6 * scale)
    # random_effects follows MixedLM: group -> Series
    first = next(iter(res.random_effects))
    assert res.random_effects[first].iloc[0] == pytest.approx(table.loc[first, "Random Intercept"])


def test_singular_fit_is_reported():
    case, data = load_case("dyestuff2_singular")
    with pytest.warns(glmm_ext.SingularFitWarning, match="singular"):
        res = glmm_ext.GLMM.from_formula(case["py"], data, groups=case["groups"], family=family_of(case)).fit()
    assert res.singular and REFERENCE["dyestuff2_singular"]["anchors"]["singular"]
    assert float(res.cov_re.iloc[0, 0]) < 1e-8
    assert "Singular fit" in res.summary().as_text()


def test_non_singular_fits_are_not_flagged(fits):
    assert not fits("sleepstudy_ri").singular and fits("sleepstudy_ri").converged


def test_reml_and_ml_labels(fits):
    assert fits("dyestuff_reml").llf_label == "REML log-likelihood"
    assert fits("dyestuff_ml").llf_label == "Log-likelihood (ML)"
    assert fits("dyestuff_ml").k_params == 3


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
def test_same_fit_as_mixedlm(reml, seed):
    rng = np.random.default_rng(seed)
    df = glmm_ext.simulate("gaussian", n_groups=30, group_size=rng.integers(3, 15, size=30), sigma_u=0.8,
                           scale=1.5, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = smf.mixedlm("y ~ x1 + x2", df, groups="g").fit(reml=reml)
    res = glmm_ext.GLMM.from_formula("y ~ x1 + x2", df, groups="g").fit(reml=reml)
    assert res.llf == pytest.approx(ref.llf, abs=1e-5)
    assert np.allclose(res.fe_params, ref.fe_params, rtol=1e-5, atol=1e-7)
    assert float(res.cov_re.iloc[0, 0]) == pytest.approx(float(ref.cov_re.iloc[0, 0]), rel=1e-4)
    assert res.scale == pytest.approx(ref.scale, rel=1e-4)
    # MixedLM's bse_fe come from its joint Hessian over (beta, variances); ours are lme4's
    # sigma^2 (X'V^-1X)^-1 (checked against lme4 in test_reference_gaussian), so they differ slightly
    assert np.allclose(res.bse_fe, ref.bse_fe, rtol=5e-3)
    mine = np.array([res.random_effects[g].iloc[0] for g in sorted(res.random_effects)])
    theirs = np.array([ref.random_effects[g].iloc[0] for g in sorted(ref.random_effects)])
    assert np.allclose(mine, theirs, rtol=1e-4, atol=1e-6)
