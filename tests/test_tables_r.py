"""Report-table numbers against the same numbers printed by lme4, glmmTMB and performance.

tests/data/r_tables.json is written by tests/data/r_tables.R (kept next to it for provenance).
glmmTMB's conditional SDs are the observed curvature of its joint likelihood in the random effects
(TMB's automatic differentiation), so they check the BLUP standard errors for non-canonical links too.
"""
import json
import os
import re
import warnings

import numpy as np
import pandas as pd
import pytest

import glmm_ext
from conftest import DATA, fit_case

with open(os.path.join(DATA, "r_tables.json")) as fh:
    R = json.load(fh)

EXTRA = {"sim_poisson_identity": ("poisson", "identity"), "sim_gamma_identity": ("gamma", "identity"),
         "sim_gaussian_log": ("gaussian", "log")}
TMB_CASES = ["cbpp_binomial", "grouseticks_poisson", "sim_bern_probit", "sim_poisson_offset", "sim_gamma_log",
             *EXTRA]


def r_name(name):
    """patsy name -> R's: Intercept -> (Intercept), C(YEAR)[T.96] -> YEAR96."""
    return "(Intercept)" if name == "Intercept" else re.sub(r"C\((\w+)\)\[T\.(.+)\]", r"\1\2", name)


_cache = {}


def fitted(name):
    if name not in _cache:
        if name in EXTRA:
            df = pd.read_csv(os.path.join(DATA, f"{name}.csv"))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _cache[name] = glmm_ext.GLMM.from_formula("y ~ x1 + x2", df, groups="g",
                                                          family=glmm_ext.make_family(*EXTRA[name])).fit()
        else:
            _cache[name] = fit_case(name)
    return _cache[name]


def by_group(res, mapping):
    return np.array([mapping[str(g)] for g in res.model.group_labels])


@pytest.mark.parametrize("name", ["sleepstudy_ri", *TMB_CASES])
def test_model_fit_table_matches_r(name):
    res, ref = fitted(name), R[name]
    table = res.model_fit_table()["Value"]
    assert table.iloc[0] == pytest.approx(ref["loglik"], abs=2e-5)
    assert table["AIC"] == pytest.approx(ref["aic"], abs=5e-5) and table["BIC"] == pytest.approx(ref["bic"], abs=5e-5)
    assert table["Parameters (k)"] == ref["df"] and table["Observations"] == ref["nobs"]
    if "ngroups" in ref:
        assert table["Groups"] == ref["ngroups"]


@pytest.mark.parametrize("name", ["sleepstudy_ri", *TMB_CASES])
def test_fixed_effects_table_matches_r(name):
    res, ref = fitted(name), R[name]
    level = ref.get("level", 0.95)
    table = res.fixed_effects_table(alpha=1 - level)
    label = f"{100 * level:g}%"
    for var in table.index:
        key, se = r_name(var), ref["se"][r_name(var)]
        row = table.loc[var]
        assert row["Estimate"] == pytest.approx(ref["estimate"][key], abs=2e-4 * se)
        assert row["Std. Error"] == pytest.approx(se, rel=5e-4)
        assert row["z"] == pytest.approx(ref["z"][key], rel=5e-4, abs=1e-4)
        assert row["P>|z|"] == pytest.approx(ref["p"][key], rel=5e-3, abs=1e-12)
        assert row[f"Lower {label}"] == pytest.approx(ref["lower"][key], abs=1e-3 * se)
        assert row[f"Upper {label}"] == pytest.approx(ref["upper"][key], abs=1e-3 * se)
        if f"exp(Upper {label})" in table.columns:
            assert row[f"exp(Lower {label})"] == pytest.approx(np.exp(ref["lower"][key]), rel=1e-3 * se)
            assert row[f"exp(Upper {label})"] == pytest.approx(np.exp(ref["upper"][key]), rel=1e-3 * se)


@pytest.mark.parametrize("name", TMB_CASES)
def test_variances_and_blups_match_glmmtmb(name):
    res, ref = fitted(name), R[name]
    re_table = res.random_effects_table()
    assert re_table["Variance"].iloc[0] == pytest.approx(ref["var_re"], rel=2e-4)
    if res.model.dist.has_dispersion:  # glmmTMB's sigma: the SD (Gaussian), 1/sqrt(shape) (Gamma)
        assert re_table["Variance"].iloc[1] == pytest.approx(ref["sigma"] ** 2, rel=2e-4)
    blups = res.blup_table()
    scale = np.sqrt(ref["var_re"])
    assert np.allclose(blups["Random Intercept"], by_group(res, ref["ranef"]), rtol=0, atol=2e-4 * scale)
    # the OBSERVED conditional SD: for probit, Gamma-log/identity, Poisson-identity and Gaussian-log it
    # differs from the working-weight (expected) one that lme4's condVar reports
    assert np.allclose(blups["Std. Error"], by_group(res, ref["ranef_cond_sd"]), rtol=2e-4)
    diag = res.diagnostics()
    assert np.allclose(diag["fitted_values"], ref["fitted"], rtol=5e-4)
    assert np.allclose(diag["pearson_residuals"], ref["pearson"], rtol=2e-3, atol=2e-4)


@pytest.mark.parametrize("name", ["sleepstudy_ri", "cbpp_binomial", "sim_bern_probit"])
def test_icc_matches_performance(name):
    res, ref = fitted(name), R[name]
    assert res.icc == pytest.approx(ref["icc"], rel=2e-4)
    assert res.icc_table().loc["ICC", "Value"] == pytest.approx(ref["icc"], rel=2e-4)


def test_gaussian_diagnostics_match_lme4():
    res, ref = fitted("sleepstudy_ri"), R["sleepstudy_ri"]
    diag = res.diagnostics()
    assert np.allclose(diag["fitted_values"], ref["fitted"], rtol=1e-6)
    assert np.allclose(diag["deviance_residuals"], ref["deviance"], atol=1e-4)
    assert np.allclose(diag["pearson_residuals"], ref["pearson"], atol=1e-4)  # lme4: unscaled, like ours


def test_binomial_residuals_with_trials_match_glmer():
    """cbind(successes, failures): glmer's residuals carry the trials as prior weights."""
    res, ref = fitted("cbpp_binomial"), R["cbpp_binomial"]
    diag = res.diagnostics()
    assert np.allclose(diag["fitted_values"], ref["lme4_fitted"], rtol=2e-3)
    assert np.allclose(diag["deviance_residuals"], ref["lme4_deviance"], atol=2e-3)
    assert np.allclose(diag["pearson_residuals"], ref["lme4_pearson"], atol=2e-3)
