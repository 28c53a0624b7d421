"""simulate, r2, overdispersion, quantile residuals and test_random_effect for random-slope fits.

Independent numbers: closed forms over many simulated draws (the covariance of per-group OLS
coefficients, the lognormal Poisson mean), performance::r2_nakagawa and check_overdispersion on lme4
and glmmTMB fits (tests/data/slopes/analysis_reference.json, made by analysis_reference.R), the
Pearson statistic and GLM log-likelihoods recomputed here (statsmodels' GLM and OLS).
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
with open(os.path.join(HERE, "slopes", "analysis_reference.json")) as fh:
    REF = json.load(fh)
CASES = {"sleep_reml": ("sleepstudy.csv", "Reaction ~ Days + (Days | Subject)", sm.families.Gaussian),
         "sim_binomial": ("slopes/sim_binomial.csv", "y ~ x + (x | g)", sm.families.Binomial),
         "sim_poisson": ("slopes/sim_poisson.csv", "y ~ x + (x | g)", sm.families.Poisson),
         "binomial_singular": ("slopes/sim_binomial_singular.csv", "y ~ x + (x | g)", sm.families.Binomial),
         "sim_poisson_q3": ("slopes/sim_poisson_q3.csv", "y ~ x1 + x2 + (1 + x1 + x2 | g)", sm.families.Poisson),
         "sim_gamma": ("slopes/sim_gamma.csv", "y ~ x + (x | g)",
                       lambda: sm.families.Gamma(sm.families.links.Log())),
         "cbpp_slope": ("cbpp.csv", "incidence + I(size - incidence) ~ pnum + (pnum | herd)", sm.families.Binomial)}


def fit(formula, data, family, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GLMM.from_formula(formula, data, family=family).fit(**options)


@pytest.fixture(scope="module")
def fits():
    out = {}
    for name, (path, formula, family) in CASES.items():
        data = pd.read_csv(os.path.join(HERE, path))
        if "period" in data:
            data["pnum"] = data["period"].astype(float)
        out[name] = (fit(formula, data, family()), data)
    return out


def row_effects(res, data, term="x", group="g"):
    """z_i' b_g(i) from the public random_effects mapping (Intercept and one slope)."""
    b = pd.DataFrame(res.random_effects).T
    labels = data[group].to_numpy()
    return b.loc[labels, "Intercept"].to_numpy() + b.loc[labels, term].to_numpy() * data[term].to_numpy()


# ------------------------------------------------------------------------------------------- simulate
def test_new_group_effects_have_the_fitted_covariance(fits):
    """Per-subject OLS of simulated sleepstudy responses: Cov(b_hat) = Sigma + sigma^2 (Z'Z)^-1."""
    res, data = fits["sleep_reml"]
    nsim = 1000
    sims = res.simulate(nsim=nsim, seed=11, use_re="new")
    Z = np.column_stack([np.ones(10), np.arange(10.0)])  # every subject: Days 0..9 in order
    coef = []
    for _, rows in data.groupby("Subject").groups.items():
        Y = sims.loc[rows].to_numpy()
        assert np.array_equal(data.loc[rows, "Days"].to_numpy(), np.arange(10.0))
        coef.append(np.linalg.lstsq(Z, Y, rcond=None)[0].T)
    coef = np.vstack(coef) - np.asarray(res.fe_params)
    expected = np.asarray(res.cov_re) + res.scale * np.linalg.inv(Z.T @ Z)
    empirical = np.cov(coef.T)
    n = len(coef)
    se = np.sqrt((expected**2 + np.outer(np.diag(expected), np.diag(expected))) / n)  # Wishart SEs
    assert np.all(np.abs(empirical - expected) < 4.0 * se)
    assert np.all(np.abs(coef.mean(axis=0)) < 4.0 * np.sqrt(np.diag(expected) / n))


def test_conditional_draws_centre_on_the_blup_predictions(fits):
    res, data = fits["sleep_reml"]
    nsim = 100
    sims = res.simulate(nsim=nsim, seed=3).to_numpy()  # use_re="conditional" is the default
    fitted = np.asarray(res.fe_params)[0] + np.asarray(res.fe_params)[1] * data["Days"].to_numpy() \
        + row_effects(res, data, "Days", "Subject")
    z = (sims.mean(axis=1) - fitted) / np.sqrt(res.scale / nsim)
    assert abs(z.mean()) < 4.0 / np.sqrt(len(z)) and 0.7 < z.var() < 1.35
    assert np.var(sims - sims.mean(axis=1, keepdims=True), ddof=1) == pytest.approx(res.scale, rel=0.05)
    again = res.simulate(nsim=2, seed=3)
    assert np.array_equal(again.to_numpy(), sims[:, :2]) and list(again.index) == list(data.index)


def test_new_poisson_draws_have_the_lognormal_mean(fits):
    """E[y_i] = exp(x_i' beta + z_i' Sigma z_i / 2) with new effects, checked in bins of x."""
    res, data = fits["sim_poisson"]
    nsim = 400
    sims = res.simulate(nsim=nsim, seed=5, use_re="new").to_numpy()
    x = data["x"].to_numpy()
    z = np.column_stack([np.ones_like(x), x])
    beta = np.asarray(res.fe_params)
    mean = np.exp(beta[0] + beta[1] * x + 0.5 * np.einsum("ni,ij,nj->n", z, np.asarray(res.cov_re), z))
    for rows in (x < -0.5, np.abs(x) <= 0.5, x > 0.5):
        per_draw = sims[rows].mean(axis=0)  # independent across draws
        assert abs(per_draw.mean() - mean[rows].mean()) < 4.0 * per_draw.std(ddof=1) / np.sqrt(nsim)


def test_singular_covariance_draws_have_the_closed_form_variance():
    rng = np.random.default_rng(2)
    g = np.repeat(np.arange(40), 10)
    x = rng.normal(size=g.size)
    b = rng.normal(size=40)[g]  # intercept and slope perfectly correlated: a singular Sigma
    d = pd.DataFrame({"y": 1.0 + x + b + b * x + rng.normal(0, 0.5, g.size), "x": x, "g": g})
    res = fit("y ~ x + (x | g)", d, sm.families.Gaussian())
    cov = np.asarray(res.cov_re)
    assert res.singular and np.linalg.eigvalsh(cov).min() < 1e-6 * np.trace(cov)  # Cholesky would fail
    sims = res.simulate(nsim=400, seed=1, use_re="new").to_numpy()
    z = np.column_stack([np.ones_like(x), x])
    expected = np.einsum("ni,ij,nj->n", z, cov, z) + res.scale  # Var(y_i) = z_i' Sigma z_i + sigma^2
    ratio = sims.var(axis=1, ddof=1) / expected
    for rows in (x < -0.5, x > 0.5):  # where the intercept-slope covariance 2 x sigma_01 matters
        assert np.mean(ratio[rows]) == pytest.approx(1.0, abs=0.08)


# ------------------------------------------------------------------------------------------------ r2
@pytest.mark.parametrize("name, ref, rel", [("sleep_reml", "r2", 1e-4), ("sim_binomial", "r2_tmb", 2e-4),
                                            ("sim_poisson", "r2_tmb", 2e-4), ("sim_poisson_q3", "r2_tmb", 1e-4),
                                            ("sim_gamma", "r2_tmb", 1e-4), ("cbpp_slope", "r2_tmb", 1e-4)])
def test_r2_matches_performance(fits, name, ref, rel):
    res, _ = fits[name]
    expected = REF[name][ref]
    out = res.r2("delta" if name == "sim_gamma" else "lognormal")  # performance's choice for Gamma
    for key in ("marginal", "conditional", "var_fixed", "var_random", "var_residual"):
        assert out[key] == pytest.approx(expected[key], rel=rel), key


def test_r2_random_variance_is_the_row_mean_of_z_sigma_z(fits):
    res, data = fits["sleep_reml"]
    cov = np.asarray(res.cov_re)
    days = data["Days"].to_numpy()
    expected = cov[0, 0] + 2 * cov[0, 1] * days.mean() + cov[1, 1] * np.mean(days**2)
    out = res.r2()
    assert out["var_random"] == pytest.approx(expected, rel=1e-12)
    assert out["var_residual"] == pytest.approx(res.scale)


# ------------------------------------------------------------------------------------- overdispersion
@pytest.mark.parametrize("name", ["sim_binomial", "sim_poisson"])
def test_overdispersion_is_the_pearson_statistic(fits, name):
    res, data = fits[name]
    beta = np.asarray(res.fe_params)
    eta = beta[0] + beta[1] * data["x"].to_numpy() + row_effects(res, data)
    y = data["y"].to_numpy()
    if name == "sim_binomial":
        mu = 1.0 / (1.0 + np.exp(-eta))
        chisq = np.sum((y - mu) ** 2 / (mu * (1 - mu)))
    else:
        mu = np.exp(eta)
        chisq = np.sum((y - mu) ** 2 / mu)
    out = res.overdispersion()
    df = len(y) - 5  # two fixed effects, three covariance parameters
    assert out["df"] == df and out["chisq"] == pytest.approx(chisq, rel=1e-10)
    assert out["pvalue"] == pytest.approx(stats.chi2.sf(chisq, df), rel=1e-10)
    tmb = REF[name]["overdispersion_tmb"]  # performance::check_overdispersion on glmmTMB's fit
    assert out["chisq"] == pytest.approx(tmb["chisq"], rel=2e-5) and out["df"] == tmb["df"]


def test_overdispersion_with_binomial_trials_matches_performance(fits):
    out, tmb = fits["cbpp_slope"][0].overdispersion(), REF["cbpp_slope"]["overdispersion_tmb"]
    assert out["chisq"] == pytest.approx(tmb["chisq"], rel=1e-5) and out["df"] == tmb["df"] == 51
    assert out["pvalue"] == pytest.approx(tmb["p"], rel=1e-4)


# ---------------------------------------------------------------------------------- quantile residuals
def poisson_slope_data(seed, overdispersed=False):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(50), 16)
    x = rng.normal(size=g.size)
    b = rng.multivariate_normal([0, 0], [[0.3, 0.05], [0.05, 0.2]], size=50)[g]
    mu = np.exp(0.5 + 0.4 * x + b[:, 0] + b[:, 1] * x)
    if overdispersed:
        mu = mu * rng.gamma(1.0, 1.0, size=g.size)  # NB with alpha = 1
    return pd.DataFrame({"y": rng.poisson(mu), "x": x, "g": g})


def test_quantile_residuals_are_uniform_for_a_correct_model_and_flag_an_overdispersed_one():
    good = fit("y ~ x + (x | g)", poisson_slope_data(7), sm.families.Poisson())
    qr = good.quantile_residuals(nsim=200, seed=1)
    r = qr.residuals.to_numpy()
    assert len(r) == 800 and np.all((r >= 0) & (r <= 1))
    assert stats.kstest(r, "uniform").pvalue > 0.01
    assert qr.tests.loc["uniformity (KS)", "pvalue"] > 0.01 and qr.tests["pvalue"].min() > 0.01
    bad = fit("y ~ x + (x | g)", poisson_slope_data(7, overdispersed=True), sm.families.Poisson())
    tests = bad.quantile_residuals(nsim=200, seed=1).tests
    # with new group effects (DHARMa's default) the extra variance shows in the shape and the zeros
    assert tests.loc["uniformity (KS)", "pvalue"] < 0.01
    assert tests.loc["zero-inflation (observed / simulated zeros)", "pvalue"] < 0.01
    assert bad.overdispersion()["pvalue"] < 0.01 < good.overdispersion()["pvalue"]


def test_quantile_residual_plot_for_a_slope_fit(fits):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    res, _ = fits["sim_poisson"]
    fig = res.plot_quantile_residuals(nsim=50, seed=1)
    assert len(fig.axes) == 2 and len(fig.axes[0].collections[0].get_offsets()) == res.nobs
    matplotlib.pyplot.close(fig)


# ---------------------------------------------------------------------------------- test_random_effect
@pytest.mark.parametrize("name", ["sim_binomial", "sim_poisson", "binomial_singular"])
def test_random_effect_lrt_against_the_statsmodels_glm(fits, name):
    res, data = fits[name]
    family = sm.families.Binomial() if "binomial" in name else sm.families.Poisson()
    glm = sm.GLM(data["y"], sm.add_constant(data["x"]), family=family).fit()
    if name in REF:
        assert glm.llf == pytest.approx(REF[name]["glm_loglik"], abs=1e-6)  # R's glm
    test = res.test_random_effect()
    statistic = 2 * (res.llf - glm.llf)
    assert test.llf_glm == pytest.approx(glm.llf, abs=1e-5)
    assert test.statistic == pytest.approx(statistic, abs=2e-5)
    assert test.df == 3
    assert test.pvalue == pytest.approx(stats.chi2.sf(statistic, 3), rel=1e-4)
    mixture = 0.5 * stats.chi2.sf(statistic, 2) + 0.5 * stats.chi2.sf(statistic, 3)
    assert test.pvalue_mixture == pytest.approx(mixture, rel=1e-4)
    assert "conservative" in test.method and dict(test)["pvalue_mixture"] == test.pvalue_mixture


def test_random_effect_lrt_for_gaussian_ml_and_uncorrelated_slopes(fits):
    _, data = fits["sleep_reml"]
    res = fit("Reaction ~ Days + (Days | Subject)", data, sm.families.Gaussian(), reml=False)
    ols = sm.OLS(data["Reaction"], sm.add_constant(data["Days"])).fit()
    test = res.test_random_effect()
    assert test.statistic == pytest.approx(2 * (res.llf - ols.llf), abs=1e-5) and test.df == 3
    diag = fit("y ~ x + (x || g)", fits["binomial_singular"][1], sm.families.Binomial())
    t2 = diag.test_random_effect()
    assert t2.df == 2
    q3, data = fits["sim_poisson_q3"]  # six covariance parameters
    glm = sm.GLM(data["y"], sm.add_constant(data[["x1", "x2"]]), family=sm.families.Poisson()).fit()
    t3 = q3.test_random_effect()
    assert t3.df == 6 and t3.statistic == pytest.approx(2 * (q3.llf - glm.llf), abs=2e-5)
    assert t2.pvalue_mixture == pytest.approx(0.5 * stats.chi2.sf(t2.statistic, 1)
                                              + 0.5 * stats.chi2.sf(t2.statistic, 2), rel=1e-6)
