"""simulate, R² (performance::r2_nakagawa), overdispersion (performance::check_overdispersion) and
DHARMa-style quantile residuals (closed forms and simulation), for random-intercept fits and then for
random-slope fits.

Independent numbers for the slopes: closed forms over many simulated draws (the covariance of per-group OLS
coefficients, the lognormal Poisson mean), performance::r2_nakagawa and check_overdispersion on lme4 and
glmmTMB fits (tests/data/slopes/analysis_reference.json, made by analysis_reference.R), the Pearson statistic
recomputed here.
"""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

import glmm_ext

from conftest import ANALYSIS_REF as REF, SLOPE_REF, quiet_fit as fit, read_data as read, slope_fit


def grouse():
    d = read("grouseticks.csv")
    d["HEIGHTs"] = (d["HEIGHT"] - d["HEIGHT"].mean()) / d["HEIGHT"].std()
    return d


CASES = {
    "sleepstudy": lambda: fit("Reaction ~ Days", read("sleepstudy.csv"), "Subject"),
    "cbpp": lambda: fit("incidence + I(size - incidence) ~ C(period)", read("cbpp.csv"), "herd",
                        sm.families.Binomial()),
    "grouseticks": lambda: fit("TICKS ~ C(YEAR) + cHEIGHT", read("grouseticks.csv"), "BROOD", sm.families.Poisson()),
    "nb": lambda: fit("TICKS ~ C(YEAR) + HEIGHTs", grouse(), "BROOD", sm.families.NegativeBinomial(alpha=1.0)),
    "probit": lambda: fit("y ~ x1 + x2", read("sim_bern_probit.csv"), "g",
                          sm.families.Binomial(link=sm.families.links.Probit())),
    "gamma_log": lambda: fit("y ~ x1 + x2", read("sim_gamma_log.csv"), "g",
                             sm.families.Gamma(link=sm.families.links.Log())),
    "cloglog": lambda: fit("incidence + I(size - incidence) ~ C(period)", read("cbpp.csv"), "herd",
                           sm.families.Binomial(link=sm.families.links.CLogLog())),
}
R2_REF = {"sleepstudy": REF["sleepstudy"]["r2"], "cbpp": REF["cbpp"]["r2"], "grouseticks": REF["grouseticks"]["r2"],
          "nb": REF["grouseticks"]["nb"]["r2"], "probit": REF["probit"]["r2"], "gamma_log": REF["gamma_log"]["r2"],
          "cloglog": REF["cbpp"]["cloglog_tmb"]["r2"]}


@pytest.fixture(scope="module")
def fits():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = CASES[name]()
        return cache[name]

    return get


@pytest.mark.parametrize("name", list(CASES))
def test_r2_matches_performance(fits, name):
    """Differences left are the fits themselves: lme4 stops ~1e-4 short of the optimum (cbpp) and its
    intercept-only Poisson model sets lambda (grouseticks); glmmTMB fits agree to ~1e-5."""
    res = fits(name)
    ref = R2_REF[name]
    out = res.r2(approximation="delta" if name == "gamma_log" else "lognormal")  # performance's choice for Gamma
    assert set(out) >= {"marginal", "conditional", "approximation"}
    tol = 1e-3 if name in ("cbpp", "grouseticks") else 2e-5
    assert out["marginal"] == pytest.approx(ref["marginal"], abs=tol)
    assert out["conditional"] == pytest.approx(ref["conditional"], abs=tol)
    assert out["var_residual"] == pytest.approx(ref["var_residual"], rel=10 * tol)


def test_r2_approximations_are_the_closed_forms(fits):
    res = fits("grouseticks")
    logn, trig = res.r2("lognormal"), res.r2("trigamma")
    lam = 1.0 / np.expm1(logn["var_residual"])
    from scipy import special

    assert trig["var_residual"] == pytest.approx(special.polygamma(1, lam))
    assert "lognormal" in logn["approximation"] and "trigamma" in trig["approximation"]
    with pytest.raises(ValueError, match="approximation"):
        res.r2("exact")


@pytest.mark.parametrize("name", ["cbpp", "grouseticks"])
def test_overdispersion_matches_performance(fits, name):
    ref = REF[name]["overdispersion"]
    out = fits(name).overdispersion()
    assert out["df"] == ref["df"]
    assert out["chisq"] == pytest.approx(ref["chisq"], rel=1e-3)
    assert out["ratio"] == pytest.approx(ref["ratio"], rel=1e-3)
    assert out["pvalue"] == pytest.approx(ref["p"], rel=2e-2)


def test_overdispersion_rejects_families_with_a_dispersion(fits):
    with pytest.raises(ValueError, match="estimates its dispersion"):
        fits("sleepstudy").overdispersion()


def test_simulate_conditional_mean_and_nb_variance(fits):
    res = fits("nb")
    sims = res.simulate(nsim=400, seed=1, use_re="conditional")
    assert sims.shape == (res.nobs, 400) and list(sims.columns[:2]) == ["sim_1", "sim_2"]
    mu = res.diagnostics()["fitted_values"].to_numpy()
    total_mu, total_var = mu.sum(), (mu + res.alpha * mu**2).sum()
    # the sum over rows of the row means: its sampling SD is sqrt(total_var / 400)
    assert sims.mean(axis=1).sum() == pytest.approx(total_mu, abs=4 * np.sqrt(total_var / 400))
    assert sims.var(axis=1).sum() == pytest.approx(total_var, rel=0.1)
    again = res.simulate(nsim=400, seed=1, use_re="conditional")
    pd.testing.assert_frame_equal(sims, again)


def test_simulate_new_effects_add_the_group_variance(fits):
    res = fits("sleepstudy")
    cond = res.simulate(nsim=300, seed=2)
    new = res.simulate(nsim=300, seed=2, use_re="new")
    # Gaussian: Var(y) = sigma_e^2 (conditional) and sigma_u^2 + sigma_e^2 (new effects)
    assert cond.var(axis=1).mean() == pytest.approx(res.scale, rel=0.05)
    assert new.var(axis=1).mean() == pytest.approx(res.scale + res.var_re, rel=0.1)
    with pytest.raises(ValueError, match="use_re"):
        res.simulate(use_re="marginal")


def test_quantile_residuals_are_uniform_for_a_correct_model(fits):
    qr = fits("nb").quantile_residuals(nsim=100, seed=3)
    r = qr.residuals.to_numpy()
    assert r.min() >= 0 and r.max() <= 1
    assert set(qr.tests.index) == {"uniformity (KS)", "dispersion (simulated / observed variance)",
                                   "zero-inflation (observed / simulated zeros)"}
    assert (qr.tests["pvalue"] > 0.01).all()


def test_quantile_residuals_flag_overdispersion_and_zero_inflation():
    rng = np.random.default_rng(5)
    d = glmm_ext.simulate("poisson", n_groups=40, group_size=20, seed=5)
    mu = np.exp(0.5 + 0.8 * d["x1"] - 0.4 * d["x2"])
    over = d.assign(y=rng.negative_binomial(1.0, 1.0 / (1.0 + mu)))  # NB with alpha = 1
    res = fit("y ~ x1 + x2", over, "g", sm.families.Poisson())
    tests = res.quantile_residuals(nsim=100, seed=1).tests
    assert tests.loc["dispersion (simulated / observed variance)", "statistic"] > 1.5
    assert tests.loc["dispersion (simulated / observed variance)", "pvalue"] < 0.05
    assert res.overdispersion()["ratio"] > 1.5
    zeros = d.assign(y=np.where(rng.uniform(size=len(d)) < 0.3, 0, d["y"]))
    tests = fit("y ~ x1 + x2", zeros, "g", sm.families.Poisson()).quantile_residuals(nsim=100, seed=1).tests
    assert tests.loc["zero-inflation (observed / simulated zeros)", "statistic"] > 1.2
    assert tests.loc["zero-inflation (observed / simulated zeros)", "pvalue"] < 0.05


def test_plot_quantile_residuals(fits):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    fig = fits("cbpp").plot_quantile_residuals(nsim=50, seed=1)
    assert len(fig.axes) == 2


# =========================================================================================== random slopes
def row_effects(res, data, term="x", group="g"):
    """z_i' b_g(i) from the public random_effects mapping (Intercept and one slope)."""
    b = pd.DataFrame(res.random_effects).T
    labels = data[group].to_numpy()
    return b.loc[labels, "Intercept"].to_numpy() + b.loc[labels, term].to_numpy() * data[term].to_numpy()


# ------------------------------------------------------------------------------------------- simulate
def test_new_group_effects_have_the_fitted_covariance(slope_fits):
    """Per-subject OLS of simulated sleepstudy responses: Cov(b_hat) = Sigma + sigma^2 (Z'Z)^-1."""
    res, data = slope_fits["sleep_reml"]
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


def test_conditional_draws_centre_on_the_blup_predictions(slope_fits):
    res, data = slope_fits["sleep_reml"]
    nsim = 100
    sims = res.simulate(nsim=nsim, seed=3).to_numpy()  # use_re="conditional" is the default
    fitted = np.asarray(res.fe_params)[0] + np.asarray(res.fe_params)[1] * data["Days"].to_numpy() \
        + row_effects(res, data, "Days", "Subject")
    z = (sims.mean(axis=1) - fitted) / np.sqrt(res.scale / nsim)
    assert abs(z.mean()) < 4.0 / np.sqrt(len(z)) and 0.7 < z.var() < 1.35
    assert np.var(sims - sims.mean(axis=1, keepdims=True), ddof=1) == pytest.approx(res.scale, rel=0.05)
    again = res.simulate(nsim=2, seed=3)
    assert np.array_equal(again.to_numpy(), sims[:, :2]) and list(again.index) == list(data.index)


def test_new_poisson_draws_have_the_lognormal_mean(slope_fits):
    """E[y_i] = exp(x_i' beta + z_i' Sigma z_i / 2) with new effects, checked in bins of x."""
    res, data = slope_fits["sim_poisson"]
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
    res = slope_fit("y ~ x + (x | g)", d, sm.families.Gaussian())
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
                                            ("sim_gamma", "r2_tmb", 1e-4), ("cbpp_slope", "r2_tmb", 1e-4),
                                            ("sim_poisson_diag", "r2_tmb", 1e-4)])
def test_r2_of_slope_fits_matches_performance(slope_fits, name, ref, rel):
    """Poisson's lambda is exp(beta_0) of the intercept-only model with the same random terms: a diagonal
    (x || g) one for sim_poisson_diag, as performance's null model."""
    res, _ = slope_fits[name]
    expected = SLOPE_REF[name][ref]
    out = res.r2("delta" if name == "sim_gamma" else "lognormal")  # performance's choice for Gamma
    for key in ("marginal", "conditional", "var_fixed", "var_random", "var_residual"):
        assert out[key] == pytest.approx(expected[key], rel=rel), key


def test_r2_random_variance_is_the_row_mean_of_z_sigma_z(slope_fits):
    res, data = slope_fits["sleep_reml"]
    cov = np.asarray(res.cov_re)
    days = data["Days"].to_numpy()
    expected = cov[0, 0] + 2 * cov[0, 1] * days.mean() + cov[1, 1] * np.mean(days**2)
    out = res.r2()
    assert out["var_random"] == pytest.approx(expected, rel=1e-12)
    assert out["var_residual"] == pytest.approx(res.scale)


# ------------------------------------------------------------------------------------- overdispersion
@pytest.mark.parametrize("name", ["sim_binomial", "sim_poisson"])
def test_overdispersion_is_the_pearson_statistic(slope_fits, name):
    res, data = slope_fits[name]
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
    tmb = SLOPE_REF[name]["overdispersion_tmb"]  # performance::check_overdispersion on glmmTMB's fit
    assert out["chisq"] == pytest.approx(tmb["chisq"], rel=2e-5) and out["df"] == tmb["df"]


def test_overdispersion_with_binomial_trials_matches_performance(slope_fits):
    out, tmb = slope_fits["cbpp_slope"][0].overdispersion(), SLOPE_REF["cbpp_slope"]["overdispersion_tmb"]
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
    good = slope_fit("y ~ x + (x | g)", poisson_slope_data(7), sm.families.Poisson())
    qr = good.quantile_residuals(nsim=200, seed=1)
    r = qr.residuals.to_numpy()
    assert len(r) == 800 and np.all((r >= 0) & (r <= 1))
    assert stats.kstest(r, "uniform").pvalue > 0.01
    assert qr.tests.loc["uniformity (KS)", "pvalue"] > 0.01 and qr.tests["pvalue"].min() > 0.01
    bad = slope_fit("y ~ x + (x | g)", poisson_slope_data(7, overdispersed=True), sm.families.Poisson())
    tests = bad.quantile_residuals(nsim=200, seed=1).tests
    # with new group effects (DHARMa's default) the extra variance shows in the shape and the zeros
    assert tests.loc["uniformity (KS)", "pvalue"] < 0.01
    assert tests.loc["zero-inflation (observed / simulated zeros)", "pvalue"] < 0.01
    assert bad.overdispersion()["pvalue"] < 0.01 < good.overdispersion()["pvalue"]


def test_quantile_residual_plot_for_a_slope_fit(slope_fits):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    res, _ = slope_fits["sim_poisson"]
    fig = res.plot_quantile_residuals(nsim=50, seed=1)
    assert len(fig.axes) == 2 and len(fig.axes[0].collections[0].get_offsets()) == res.nobs
    matplotlib.pyplot.close(fig)
