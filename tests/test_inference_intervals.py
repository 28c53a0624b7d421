"""conf_int(method="wald" | "profile" | "boot"): lme4's profile intervals, the likelihood-ratio
definition checked by independent constrained refits, and the bootstrap's reproducibility; random-intercept
fits first, then random slopes (lme4's confint stored by tests/data/slopes/intervals_reference.R).
Each bound of each method against an independent number: test_inference_bounds.py."""
import json
import os
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

import glmm_ext
from glmm_ext import GLMM

from conftest import ANALYSIS_REF as REF, DATA, quiet_fit as fit, read_data as read

R_ROWS = {"(Intercept)": "Intercept", "sigma": "Residual SD"}


@pytest.fixture(scope="module")
def sleep():
    return fit("Reaction ~ Days", read("sleepstudy.csv"), "Subject")


@pytest.fixture(scope="module")
def cbpp():
    return fit("incidence + I(size - incidence) ~ C(period)", read("cbpp.csv"), "herd", sm.families.Binomial())


def lme4_frame(ref, group):
    rows = [R_ROWS.get(r, f"{group} SD" if r.startswith("sd_") else r) for r in ref["rows"]]
    rows = [f"C(period)[T.{r[-1]}]" if r.startswith("period") else r for r in rows]
    return pd.DataFrame({"lower": ref["lower"], "upper": ref["upper"]}, index=rows)


@pytest.mark.parametrize("key,alpha", [("profile_reml", 0.05), ("profile_ml_90", 0.10)])
def test_profile_matches_lme4_gaussian(sleep, key, alpha):
    ci = sleep.conf_int(alpha, method="profile")
    assert list(ci.columns) == ["lower", "upper"]
    assert list(ci.index) == ["Intercept", "Days", "Subject SD", "Residual SD"]
    expected = lme4_frame(REF["sleepstudy"][key], "Subject").loc[ci.index]
    np.testing.assert_allclose(ci.to_numpy(), expected.to_numpy(), rtol=1e-4, atol=5e-5)
    assert max(ci.attrs["fits"].values()) <= 20


def test_profile_matches_lme4_binomial(cbpp):
    ci = cbpp.conf_int(method="profile")
    expected = lme4_frame(REF["cbpp"]["profile"], "herd").loc[ci.index]
    np.testing.assert_allclose(ci.to_numpy(), expected.to_numpy(), rtol=1e-4, atol=5e-5)
    assert max(ci.attrs["fits"].values()) <= 20


def test_profile_ends_are_likelihood_ratio_ends_by_independent_refits():
    """At each end of the cHEIGHT interval, a fit with cHEIGHT's effect fixed through the offset
    lies exactly chi2_1(0.95)/2 below the maximum."""
    d = read("grouseticks.csv")
    fam = sm.families.Poisson()
    res = fit("TICKS ~ C(YEAR) + cHEIGHT", d, "BROOD", fam)
    ci = res.conf_int(method="profile")
    for end in ci.loc["cHEIGHT"]:
        constrained = fit("TICKS ~ C(YEAR)", d, "BROOD", fam, model={"offset": end * d["cHEIGHT"].to_numpy()})
        assert 2 * (res.llf - constrained.llf) == pytest.approx(stats.chi2.ppf(0.95, 1), abs=2e-3)


def test_profile_sd_interval_reaches_zero_for_a_singular_fit():
    res = fit("Yield ~ 1", read("dyestuff2.csv"), "Batch", reml=False)
    ci = res.conf_int(method="profile")
    assert ci.loc["Batch SD", "lower"] == 0.0
    assert ci.loc["Batch SD", "upper"] > 0.0


def test_wald_keeps_statsmodels_shape_by_default_and_adds_rows_on_request(sleep):
    default = sleep.conf_int()
    assert list(default.columns) == [0, 1]
    wald = sleep.conf_int(method="wald")
    np.testing.assert_allclose(wald.iloc[:2].to_numpy(), default.to_numpy())
    prof = sleep.conf_int(method="profile")
    # large-sample agreement of the log-scale Wald interval with the profile one for the SDs
    np.testing.assert_allclose(wald.iloc[2:].to_numpy(), prof.iloc[2:].to_numpy(), rtol=0.03)
    assert (wald["lower"] < wald["upper"]).all()


def test_bootstrap_is_reproducible_whatever_n_jobs(cbpp):
    one = cbpp.conf_int(method="boot", nsim=12, seed=7, n_jobs=1, progress=False)
    two = cbpp.conf_int(method="boot", nsim=12, seed=7, n_jobs=2, progress=False)
    pd.testing.assert_frame_equal(one, two)
    assert list(one.index) == list(cbpp.conf_int(method="wald").index)
    other = cbpp.conf_int(method="boot", nsim=12, seed=8, progress=False)
    assert not np.allclose(one.to_numpy(), other.to_numpy())


def test_bootstrap_spread_matches_the_standard_errors():
    """Percentile bootstrap of a Gaussian REML fit: the 2.5-97.5% width of a fixed effect is close
    to 2 z SE (sampling error of 80 replicates ~ 15%)."""
    res = fit("score ~ hours + ses", glmm_ext.load_schools(), "school")
    ci = res.conf_int(method="boot", nsim=80, seed=1, progress=False)
    width = (ci["upper"] - ci["lower"]).iloc[:3].to_numpy()
    np.testing.assert_allclose(width, 2 * 1.959964 * np.asarray(res.bse), rtol=0.25)
    for name, value in (("school SD", np.sqrt(res.var_re)), ("Residual SD", np.sqrt(res.scale))):
        assert ci.loc[name, "lower"] < value < ci.loc[name, "upper"]


def test_conf_int_rejects_bad_arguments(sleep):
    with pytest.raises(ValueError, match="method"):
        sleep.conf_int(method="exact")
    with pytest.raises(ValueError, match="nsim"):
        sleep.conf_int(method="boot", nsim=0)
    with pytest.raises(ValueError, match="outside"):
        sleep.conf_int(0.9, method="profile")


def test_profile_alpha_reaches_zero_when_the_counts_are_poisson():
    d = glmm_ext.simulate("poisson", n_groups=30, group_size=10, seed=4)
    res = fit("y ~ x1 + x2", d, "g", glmm_ext.make_family("negativebinomial"))
    ci = res.conf_int(method="profile")
    assert ci.loc["alpha", "lower"] == 0.0 and ci.loc["alpha", "upper"] > res.alpha
    assert np.isfinite(ci.to_numpy()).all()


@pytest.mark.parametrize("case", ["cbpp", "nb"])
def test_wald_with_sd_rows_matches_glmmtmb(cbpp, case):
    """glmmTMB's confint(method="wald") puts the SD interval on the log scale too."""
    ref = REF["wald_tmb"][case]
    if case == "cbpp":
        res = cbpp
    else:
        d = read("grouseticks.csv")
        d["HEIGHTs"] = (d["HEIGHT"] - d["HEIGHT"].mean()) / d["HEIGHT"].std()
        res = fit("TICKS ~ C(YEAR) + HEIGHTs", d, "BROOD", sm.families.NegativeBinomial(alpha=1.0))
    ci = res.conf_int(method="wald").iloc[:len(ref["rows"])]
    expected = np.column_stack([ref["lower"], ref["upper"]])
    np.testing.assert_allclose(ci.to_numpy(), expected, atol=2e-4 if case == "nb" else 1e-5)


@pytest.mark.parametrize("reml", [True, False])
def test_wald_residual_sd_at_the_boundary_is_the_closed_form(reml):
    """sigma_u = 0: the information for log sigma_e is 2 (n - p) (REML) or 2 n (ML)."""
    d = read("dyestuff2.csv")
    res = fit("Yield ~ 1", d, "Batch", reml=reml)
    ci = res.conf_int(method="wald")
    n = len(d) - (1 if reml else 0)
    sd = np.sqrt(res.scale)
    expected = sd * np.exp(np.array([-1, 1]) * 1.959963984540054 / np.sqrt(2 * n))
    np.testing.assert_allclose(ci.loc["Residual SD"].to_numpy(), expected, rtol=1e-5)
    assert ci.loc["Batch SD"].isna().all()


# =========================================================================================== random slopes
with open(os.path.join(DATA, "slopes", "intervals_reference.json")) as fh:
    LME4 = json.load(fh)
SLEEP = read("sleepstudy.csv")
CORRELATED = ["Subject SD Intercept", "Subject Cor Intercept,Days", "Subject SD Days", "Residual SD", "Intercept",
              "Days"]  # lme4's order: .sig01, .sig02, .sig03, .sigma, then the fixed effects


def sleep_fit(formula="Reaction ~ Days + (Days | Subject)", reml=True):
    return GLMM.from_formula(formula, SLEEP).fit(reml=reml)


def slopes_frame(key, names):
    ref = LME4[key]
    return pd.DataFrame({"lower": ref["lower"], "upper": ref["upper"]}, index=names)


@pytest.fixture(scope="module")
def sleep_profile():
    return sleep_fit().conf_int(method="profile")


def test_rows_follow_lme4_names_adapted(sleep_profile):
    assert list(sleep_profile.index) == ["Intercept", "Days", "Subject SD Intercept", "Subject SD Days",
                                         "Subject Cor Intercept,Days", "Residual SD"]
    assert list(sleep_profile.columns) == ["lower", "upper"]


def test_profile_reml_fit_matches_lme4(sleep_profile):
    # lme4 profiles a REML fit on the ML deviance (its REML and ML profiles agree to 1e-6)
    ref = slopes_frame("reml", CORRELATED)
    ours = sleep_profile.loc[CORRELATED]
    np.testing.assert_allclose(ours["lower"], ref["lower"], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(ours["upper"], ref["upper"], rtol=1e-3, atol=1e-4)
    assert "ML" in sleep_profile.attrs["note"]


def test_profile_uncorrelated_terms_have_no_correlation_row():
    ci = sleep_fit("Reaction ~ Days + (Days || Subject)", reml=False).conf_int(method="profile")
    names = ["Subject SD Intercept", "Subject SD Days", "Residual SD", "Intercept", "Days"]
    assert sorted(ci.index) == sorted(names)
    ref = slopes_frame("ml_uncorr", names)
    np.testing.assert_allclose(ci.loc[names].to_numpy(), ref.to_numpy(), rtol=1e-3, atol=1e-4)


def test_profile_laplace_binomial_matches_lme4_with_edges():
    data = read("cbpp.csv")
    data["pnum"] = data["period"].astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = GLMM.from_formula("incidence + I(size - incidence) ~ pnum + (pnum | herd)", data,
                                family=sm.families.Binomial()).fit()
    ci = res.conf_int(method="profile")
    names = ["herd SD Intercept", "herd Cor Intercept,pnum", "herd SD pnum", "Intercept", "pnum"]
    ref = slopes_frame("cbpp_slope", names)
    np.testing.assert_allclose(ci.loc[names].to_numpy(), ref.to_numpy(), rtol=2e-3, atol=1e-4)
    # the SD of the slope reaches 0 and the correlation spans [-1, 1] (as lme4 reports)
    assert ci.loc["herd SD pnum", "lower"] == 0.0
    assert tuple(ci.loc["herd Cor Intercept,pnum"]) == (-1.0, 1.0)


def test_profile_level_changes_width(sleep_profile):
    # the fixture's 95% profile is the REML fit's, profiled by ML as lme4 does
    narrow = sleep_fit().conf_int(alpha=0.5, method="profile")
    wide = sleep_profile
    assert np.all(narrow["lower"] > wide["lower"]) and np.all(narrow["upper"] < wide["upper"])


def test_wald_reml_centres_on_the_estimates():
    res = sleep_fit()
    ci = res.conf_int(method="wald")
    sd = np.sqrt(np.diag(res.cov_re.to_numpy()))
    # log-scale intervals: the geometric mean of the ends is the estimate
    np.testing.assert_allclose(np.sqrt(ci.loc[["Subject SD Intercept", "Subject SD Days"]].prod(axis=1)), sd,
                               rtol=1e-10)
    np.testing.assert_allclose(np.sqrt(ci.loc["Residual SD"].prod()), np.sqrt(res.scale), rtol=1e-10)
    # REML information: wider than ML's for the SDs (REML accounts for the estimated beta), but close
    ml = sleep_fit(reml=False).conf_int(method="wald")
    sd_rows = ["Subject SD Intercept", "Subject SD Days"]
    ratio = np.log(ci.loc[sd_rows, "upper"] / ci.loc[sd_rows, "lower"]) / np.log(ml.loc[sd_rows, "upper"]
                                                                                  / ml.loc[sd_rows, "lower"])
    assert np.all((ratio > 1.0) & (ratio < 1.2))


def test_singular_fit_profile_against_lme4_and_the_boundary():
    # lme4's profile of this boundary fit (rho = -1) warns: its lower ends stop short (our constrained ML
    # refits at them are within chi2_1(0.95) / 2 of the optimum), and its upper end for SD x (0.483) is
    # beyond the LR limit (a multi-start Nelder-Mead there gives 2 * (f - f_hat) = 5.39 > 3.84)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = GLMM.from_formula("y ~ x + (x | g)", read("slopes/sim_singular.csv")).fit()
        ci = res.conf_int(method="profile")
        wald = res.conf_int(method="wald")
    names = ["g SD Intercept", "g Cor Intercept,x", "g SD x", "Residual SD", "Intercept", "x"]
    ref = slopes_frame("singular_reml", names)
    ours = ci.loc[names]
    assert np.all(ours["lower"] <= ref["lower"] + 1e-4)
    assert 0.40 < ci.loc["g SD x", "upper"] < ref.loc["g SD x", "upper"] - 0.05
    others = ["g SD Intercept", "Residual SD"]
    np.testing.assert_allclose(ours.loc[others, "upper"], ref.loc[others, "upper"], rtol=2e-3)
    np.testing.assert_allclose(ours.loc[["Intercept", "x"]].to_numpy(), ref.loc[["Intercept", "x"]].to_numpy(),
                               rtol=1e-3)
    assert ci.loc["g SD x", "lower"] == 0.0 and tuple(ci.loc["g Cor Intercept,x"]) == (-1.0, 1.0)
    # Wald: no interval for the correlation at -1; the others conditional on it
    assert wald.loc["g Cor Intercept,x"].isna().all() and wald.drop(index="g Cor Intercept,x").notna().all().all()


def test_bootstrap_draws_have_the_fitted_marginal_covariance():
    # y_j ~ N(X_j beta, Z_j Sigma Z_j' + sigma^2 I): the empirical covariance of 4000 draws of one subject
    res = sleep_fit(reml=False)
    draws = res.simulate(4000, seed=3, use_re="new").to_numpy().T  # what the bootstrap draws from
    rows = np.flatnonzero(SLEEP["Subject"].to_numpy() == SLEEP["Subject"].iloc[0])
    Z = np.column_stack([np.ones(len(rows)), SLEEP["Days"].to_numpy()[rows]])
    expected = Z @ res.cov_re.to_numpy() @ Z.T + res.scale * np.eye(len(rows))
    np.testing.assert_allclose(np.cov(draws[:, rows].T), expected, atol=0.08 * expected.max())
    fixed_part = np.asarray(res.model.predict(np.asarray(res.params), which="linear"))[rows]
    np.testing.assert_allclose(draws[:, rows].mean(axis=0), fixed_part, atol=4 * np.sqrt(expected.max() / 4000))


def test_boot_intervals_for_slopes():
    res = sleep_fit(reml=False)
    boot = res.conf_int(method="boot", nsim=40, seed=5)
    again = res.conf_int(method="boot", nsim=40, seed=5, n_jobs=2)
    pd.testing.assert_frame_equal(boot, again)
    assert list(boot.index) == list(res.conf_int(method="wald").index) and boot.attrs["n_failed"] == 0
    profile = slopes_frame("ml", CORRELATED).drop(index="Subject Cor Intercept,Days")
    # 40 replicates: loosely around lme4's profile intervals
    np.testing.assert_allclose(boot.loc[profile.index].to_numpy(), profile.to_numpy(), rtol=0.3)
