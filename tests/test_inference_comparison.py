"""anova and the likelihood-ratio test of the random effects (intercept; slopes), against lme4 and R's
glm/lm logLik and statsmodels' GLM / OLS log-likelihoods recomputed here."""
import warnings

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats

import glmm_ext

from conftest import ANALYSIS_REF as REF, SLOPE_REF, quiet_fit as fit, read_data as read, slope_fit


def r_column(values):
    return np.array([np.nan if v == "NA" else v for v in values], float)


def compare_with_lme4(table, ref):
    np.testing.assert_array_equal(table["npar"], ref["npar"])
    for col in ("AIC", "BIC", "logLik", "deviance"):
        np.testing.assert_allclose(table[col], ref[col], atol=2e-3, err_msg=col)
    np.testing.assert_allclose(table["Chisq"], r_column(ref["Chisq"]), atol=4e-3)
    np.testing.assert_array_equal(table["Df"], r_column(ref["Df"]))
    np.testing.assert_allclose(table["Pr(>Chisq)"], r_column(ref["p"]), rtol=2e-3)


def test_anova_refits_reml_by_ml_and_matches_lme4():
    d = read("sleepstudy.csv")
    big, small = fit("Reaction ~ Days", d, "Subject"), fit("Reaction ~ 1", d, "Subject")
    with pytest.warns(UserWarning, match="refitting model"):
        table = glmm_ext.anova(big, small)  # any order: rows sorted by npar
    assert list(table.columns) == ["npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)"]
    assert list(table.index) == ["Reaction ~ 1 + (1 | Subject)", "Reaction ~ Days + (1 | Subject)"]
    assert "ML" in table.attrs["note"]
    compare_with_lme4(table, REF["sleepstudy"]["anova"])
    assert big.method == "REML"  # the caller's fit is untouched


def test_anova_binomial_matches_lme4_and_closed_form():
    d = read("cbpp.csv")
    fam = sm.families.Binomial()
    big = fit("incidence + I(size - incidence) ~ C(period)", d, "herd", fam)
    small = fit("incidence + I(size - incidence) ~ 1", d, "herd", fam)
    table = glmm_ext.anova(small, big, names=["null", "period"])
    compare_with_lme4(table, REF["cbpp"]["anova"])
    chisq = 2 * (big.llf - small.llf)
    assert table.loc["period", "Chisq"] == pytest.approx(chisq)
    assert table.loc["period", "Pr(>Chisq)"] == pytest.approx(stats.chi2.sf(chisq, 3))


def test_anova_rejects_fits_of_different_data_or_response():
    ss = read("sleepstudy.csv")
    a = fit("Reaction ~ Days", ss, "Subject", reml=False)
    b = fit("Reaction ~ Days", ss.iloc[:-10], "Subject", reml=False)
    with pytest.raises(ValueError, match="different rows"):
        glmm_ext.anova(a, b)
    c = fit("Days ~ 1", ss.assign(Days=ss["Days"] + 0.5), "Subject", reml=False)
    with pytest.raises(ValueError, match="different response"):
        glmm_ext.anova(a, c)
    with pytest.raises(ValueError, match="at least two"):
        glmm_ext.anova(a)


def test_a_zero_statistic_has_p_value_one():
    """The chi2 mixture's point mass at 0: P(T >= 0) = 1 (dyestuff2's ML fit has sigma_u = 0); the positive
    statistics get 0.5 P(chi2_1 >= T) in the test below."""
    res = fit("Yield ~ 1", read("dyestuff2.csv"), "Batch", reml=False)
    test = res.test_random_effect()
    assert test.statistic == 0.0 and test.pvalue == 1.0 and test.pvalue_mixture == 1.0


@pytest.mark.parametrize("case", ["cbpp", "grouseticks", "grouseticks_nb", "sleepstudy_reml", "sleepstudy_ml"])
def test_random_effect_lrt_uses_the_glm_loglik_with_every_constant(case):
    if case == "cbpp":
        res = fit("incidence + I(size - incidence) ~ C(period)", read("cbpp.csv"), "herd", sm.families.Binomial())
        ref = REF["cbpp"]["glm_loglik"]
    elif case == "grouseticks":
        res = fit("TICKS ~ C(YEAR) + cHEIGHT", read("grouseticks.csv"), "BROOD", sm.families.Poisson())
        ref = REF["grouseticks"]["glm_loglik"]
        d = read("grouseticks.csv")  # statsmodels' GLM llf as a second, independent value
        glm = sm.GLM.from_formula("TICKS ~ C(YEAR) + cHEIGHT", d, family=sm.families.Poisson()).fit()
        assert glm.llf == pytest.approx(ref, abs=1e-6)
    elif case == "grouseticks_nb":
        d = read("grouseticks.csv")
        d["HEIGHTs"] = (d["HEIGHT"] - d["HEIGHT"].mean()) / d["HEIGHT"].std()
        res = fit("TICKS ~ C(YEAR) + HEIGHTs", d, "BROOD", sm.families.NegativeBinomial(alpha=1.0))
        ref = REF["grouseticks"]["nb"]["glm_loglik"]  # glmmTMB nbinom2 without the random intercept
    else:
        reml = case.endswith("reml")
        res = fit("Reaction ~ Days", read("sleepstudy.csv"), "Subject", reml=reml)
        ref = REF["sleepstudy"]["lm_loglik_reml" if reml else "lm_loglik_ml"]
    test = res.test_random_effect()
    assert test.llf_glm == pytest.approx(ref, abs=1e-5)
    assert test.statistic == pytest.approx(2 * (res.llf - ref), abs=2e-5)
    assert test.pvalue == pytest.approx(0.5 * stats.chi2.sf(test.statistic, 1))


def test_random_effect_lrt_is_not_significant_without_group_variation():
    d = glmm_ext.simulate("poisson", n_groups=30, group_size=15, sigma_u=0.0, seed=3)
    res = fit("y ~ x1 + x2", d, "g", sm.families.Poisson())
    test = res.test_random_effect()
    assert test.statistic < 2.0 and test.pvalue > 0.05


def test_random_effect_test_reads_as_a_mapping_too():
    res = fit("Reaction ~ Days", read("sleepstudy.csv"), "Subject", reml=False)
    test = res.test_random_effect()
    assert dict(test)["pvalue"] == test.pvalue and test["statistic"] == test.statistic


def test_random_slope_fits_compare_by_anova_and_refuse_profile_intervals():
    d = glmm_ext.simulate("poisson", n_groups=30, group_size=10, seed=1)
    fam = sm.families.Poisson()
    intercept = fit("y ~ x1", d, "g", fam)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        slopes = glmm_ext.GLMM.from_formula("y ~ x1 + (1 + x1 | g)", d, family=fam).fit()
    table = glmm_ext.anova(intercept, slopes)
    assert table["npar"].tolist() == [3, 5]
    assert table["Chisq"].iloc[1] == pytest.approx(2 * (slopes.llf - intercept.llf))
    # r2, simulate: test_inference_checks.py; conf_int: test_inference_intervals.py
    assert "g Cor Intercept,x1" in slopes.conf_int(method="wald").index


# ---------------------------------------------------------------------------------- test_random_effect
@pytest.mark.parametrize("name", ["sim_binomial", "sim_poisson", "binomial_singular"])
def test_random_effect_lrt_against_the_statsmodels_glm(slope_fits, name):
    res, data = slope_fits[name]
    family = sm.families.Binomial() if "binomial" in name else sm.families.Poisson()
    glm = sm.GLM(data["y"], sm.add_constant(data["x"]), family=family).fit()
    if name in SLOPE_REF:
        assert glm.llf == pytest.approx(SLOPE_REF[name]["glm_loglik"], abs=1e-6)  # R's glm
    test = res.test_random_effect()
    statistic = 2 * (res.llf - glm.llf)
    assert test.llf_glm == pytest.approx(glm.llf, abs=1e-5)
    assert test.statistic == pytest.approx(statistic, abs=2e-5)
    assert test.df == 3
    assert test.pvalue == pytest.approx(stats.chi2.sf(statistic, 3), rel=1e-4)
    mixture = 0.5 * stats.chi2.sf(statistic, 2) + 0.5 * stats.chi2.sf(statistic, 3)
    assert test.pvalue_mixture == pytest.approx(mixture, rel=1e-4)
    assert "conservative" in test.method and dict(test)["pvalue_mixture"] == test.pvalue_mixture


def test_random_effect_lrt_for_gaussian_ml_and_uncorrelated_slopes(slope_fits):
    _, data = slope_fits["sleep_reml"]
    res = slope_fit("Reaction ~ Days + (Days | Subject)", data, sm.families.Gaussian(), reml=False)
    ols = sm.OLS(data["Reaction"], sm.add_constant(data["Days"])).fit()
    test = res.test_random_effect()
    assert test.statistic == pytest.approx(2 * (res.llf - ols.llf), abs=1e-5) and test.df == 3
    diag = slope_fit("y ~ x + (x || g)", slope_fits["binomial_singular"][1], sm.families.Binomial())
    t2 = diag.test_random_effect()
    assert t2.df == 2
    q3, data = slope_fits["sim_poisson_q3"]  # six covariance parameters
    glm = sm.GLM(data["y"], sm.add_constant(data[["x1", "x2"]]), family=sm.families.Poisson()).fit()
    t3 = q3.test_random_effect()
    assert t3.df == 6 and t3.statistic == pytest.approx(2 * (q3.llf - glm.llf), abs=2e-5)
    assert t2.pvalue_mixture == pytest.approx(0.5 * stats.chi2.sf(t2.statistic, 1)
                                              + 0.5 * stats.chi2.sf(t2.statistic, 2), rel=1e-6)
