"""conf_int(method="wald" | "profile") for random-slope fits.

Independent numbers: lme4's confint(method="profile") and glmmTMB's standard errors of the log SDs,
stored by tests/data/slopes/intervals_reference.R (intervals_reference.json, intervals_glmmtmb.json).
"""
import json
import os
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from glmm_ext import GLMM

HERE = os.path.join(os.path.dirname(__file__), "data")
with open(os.path.join(HERE, "slopes", "intervals_reference.json")) as fh:
    LME4 = json.load(fh)
with open(os.path.join(HERE, "slopes", "intervals_glmmtmb.json")) as fh:
    TMB = json.load(fh)
Z95 = stats.norm.isf(0.025)
SLEEP = pd.read_csv(os.path.join(HERE, "sleepstudy.csv"))
CORRELATED = ["Subject SD Intercept", "Subject Cor Intercept,Days", "Subject SD Days", "Residual SD", "Intercept",
              "Days"]  # lme4's order: .sig01, .sig02, .sig03, .sigma, then the fixed effects


def sleep_fit(formula="Reaction ~ Days + (Days | Subject)", reml=True):
    return GLMM.from_formula(formula, SLEEP).fit(reml=reml)


def lme4_frame(key, names):
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
    ref = lme4_frame("reml", CORRELATED)
    ours = sleep_profile.loc[CORRELATED]
    np.testing.assert_allclose(ours["lower"], ref["lower"], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(ours["upper"], ref["upper"], rtol=1e-3, atol=1e-4)
    assert "ML" in sleep_profile.attrs["note"]


def test_profile_uncorrelated_terms_have_no_correlation_row():
    ci = sleep_fit("Reaction ~ Days + (Days || Subject)", reml=False).conf_int(method="profile")
    names = ["Subject SD Intercept", "Subject SD Days", "Residual SD", "Intercept", "Days"]
    assert sorted(ci.index) == sorted(names)
    ref = lme4_frame("ml_uncorr", names)
    np.testing.assert_allclose(ci.loc[names].to_numpy(), ref.to_numpy(), rtol=1e-3, atol=1e-4)


def test_profile_laplace_binomial_matches_lme4_with_edges():
    data = pd.read_csv(os.path.join(HERE, "cbpp.csv"))
    data["pnum"] = data["period"].astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = GLMM.from_formula("incidence + I(size - incidence) ~ pnum + (pnum | herd)", data,
                                family=sm.families.Binomial()).fit()
    ci = res.conf_int(method="profile")
    names = ["herd SD Intercept", "herd Cor Intercept,pnum", "herd SD pnum", "Intercept", "pnum"]
    ref = lme4_frame("cbpp_slope", names)
    np.testing.assert_allclose(ci.loc[names].to_numpy(), ref.to_numpy(), rtol=2e-3, atol=1e-4)
    # the SD of the slope reaches 0 and the correlation spans [-1, 1] (as lme4 reports)
    assert ci.loc["herd SD pnum", "lower"] == 0.0
    assert tuple(ci.loc["herd Cor Intercept,pnum"]) == (-1.0, 1.0)


def test_profile_level_changes_width():
    res = sleep_fit(reml=False)
    narrow = res.conf_int(alpha=0.5, method="profile")
    wide = res.conf_int(alpha=0.05, method="profile")
    assert np.all(narrow["lower"] > wide["lower"]) and np.all(narrow["upper"] < wide["upper"])


def test_wald_ml_matches_glmmtmb_log_sd_standard_errors():
    res = sleep_fit(reml=False)
    ci = res.conf_int(method="wald")
    se = dict(zip(TMB["rows"], TMB["se"]))
    positive = ci.drop(index="Subject Cor Intercept,Days")
    log_width = (np.log(positive["upper"]) - np.log(positive["lower"])) / (2 * Z95)
    np.testing.assert_allclose(log_width["Subject SD Intercept"], se["theta_Days|Subject.1"], rtol=2e-3)
    np.testing.assert_allclose(log_width["Subject SD Days"], se["theta_Days|Subject.2"], rtol=2e-3)
    # glmmTMB's dispersion parameter is log(sigma^2)
    np.testing.assert_allclose(log_width["Residual SD"], se["d~(Intercept)"] / 2, rtol=2e-3)
    # glmmTMB's correlation parameter t: r = t / sqrt(1 + t^2); ours is atanh(r)
    t, se_t = TMB["est"][-1], se["theta_Days|Subject.3"]
    r = t / np.sqrt(1 + t * t)
    se_atanh = se_t * (1 + t * t) ** -1.5 / (1 - r * r)
    cor = ci.loc["Subject Cor Intercept,Days"]
    np.testing.assert_allclose((np.arctanh(cor["upper"]) - np.arctanh(cor["lower"])) / (2 * Z95), se_atanh, rtol=2e-3)
    # the fixed effects: beta +- z SE, statsmodels' default conf_int
    np.testing.assert_allclose(ci.loc[["Intercept", "Days"]].to_numpy(), np.asarray(res.conf_int()), rtol=1e-12)


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
        res = GLMM.from_formula("y ~ x + (x | g)", pd.read_csv(os.path.join(HERE, "slopes", "sim_singular.csv"))).fit()
        ci = res.conf_int(method="profile")
        wald = res.conf_int(method="wald")
    names = ["g SD Intercept", "g Cor Intercept,x", "g SD x", "Residual SD", "Intercept", "x"]
    ref = lme4_frame("singular_reml", names)
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
    from glmm_ext.inference._simulate import simulator  # what the bootstrap draws from

    res = sleep_fit(reml=False)
    sim = simulator(res)
    rng = np.random.default_rng(3)
    draws = np.array([sim.draw(rng) for _ in range(4000)])
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
    profile = lme4_frame("ml", CORRELATED).drop(index="Subject Cor Intercept,Days")
    # 40 replicates: loosely around lme4's profile intervals
    np.testing.assert_allclose(boot.loc[profile.index].to_numpy(), profile.to_numpy(), rtol=0.3)
