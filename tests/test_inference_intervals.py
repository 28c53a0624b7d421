"""conf_int(method="wald" | "profile" | "boot"): lme4's profile intervals, the likelihood-ratio
definition checked by independent constrained refits, and the bootstrap's reproducibility."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

import glmm_ext

from conftest import ANALYSIS_REF as REF, quiet_fit as fit, read_data as read
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
