"""R², ICC, overdispersion and quantile residuals of fits with prior weights, Binomial trials and several
random-effect terms.

Independent numbers: performance::r2_nakagawa, performance::icc, insight::get_variance and
performance::check_overdispersion on glmmTMB / lme4 fits (tests/data/r2_weights/reference.json, made by
reference.R there); the fit of the data with duplicated rows for freq_weights; closed-form randomised PITs
(scipy's cdfs, Gauss-Hermite over the random part for new group effects) for the quantile residuals.
"""

import json
import os
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

import glmm_ext

HERE = os.path.join(os.path.dirname(__file__), "data", "r2_weights")
with open(os.path.join(HERE, "reference.json")) as fh:
    REF = json.load(fh)


def read(name):
    return pd.read_csv(os.path.join(HERE, name))


def fit(formula, data, groups=None, family=None, reml=True, **model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return glmm_ext.GLMM.from_formula(formula, data, groups=groups, family=family, **model).fit(reml=reml)


GROUSE = "TICKS ~ C(YEAR) + cHEIGHT"
CROSSED = GROUSE + " + (1|BROOD) + (1|LOCATION)"
SALAMANDERS = "count ~ C(mined) + (1|site) + (1|spp)"
CASES = {  # name -> (reference entry, fit)
    "poisson_w": ("poisson_w_tmb", lambda: fit(GROUSE, read("grouseticks_w.csv"), "BROOD", sm.families.Poisson(),
                                                var_weights="w")),
    "binomial_trials": ("binomial_trials_tmb", lambda: fit("prop ~ C(period)", read("cbpp.csv"), "herd",
                                                            sm.families.Binomial(), weights="size")),
    "poisson_crossed": ("poisson_crossed", lambda: fit(CROSSED, read("grouseticks_w.csv"),
                                                       family=sm.families.Poisson())),
    "poisson_crossed_w": ("poisson_crossed_w_tmb", lambda: fit(CROSSED, read("grouseticks_w.csv"),
                                                               family=sm.families.Poisson(), var_weights="w")),
    "gaussian_w": ("gaussian_w", lambda: fit("Reaction ~ Days", read("sleepstudy_w.csv"), "Subject",
                                             var_weights="w")),
    "gaussian_w_ml": ("gaussian_w_ml", lambda: fit("Reaction ~ Days", read("sleepstudy_w.csv"), "Subject",
                                                   reml=False, var_weights="w")),
    "nb2_crossed": ("nb2_crossed", lambda: fit(SALAMANDERS, read("salamanders_w.csv"),
                                               family=sm.families.NegativeBinomial(alpha=1.0))),
    "nb2_crossed_w": ("nb2_crossed_w", lambda: fit(SALAMANDERS, read("salamanders_w.csv"),
                                                   family=sm.families.NegativeBinomial(alpha=1.0), var_weights="w")),
}
COUNTS = [n for n in CASES if not n.startswith("gaussian")]


@pytest.fixture(scope="module")
def fits():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = CASES[name][1]()
        return cache[name]

    return get


def tolerance(name):
    """glmmTMB fits agree with ours to ~1e-6 in the R²; lme4's crossed Poisson fit stops short (its
    log-likelihood is 0.02 below ours), which moves its R² by ~3e-4."""
    return 1e-3 if name == "poisson_crossed" else 2e-5


# ------------------------------------------------------------------------------------------------ R², ICC
@pytest.mark.parametrize("name", list(CASES))
def test_r2_matches_performance(fits, name):
    res, ref = fits(name), REF[CASES[name][0]]
    out = res.r2()
    tol = tolerance(name)
    assert out["marginal"] == pytest.approx(ref["r2_marginal"], abs=tol)
    assert out["conditional"] == pytest.approx(ref["r2_conditional"], abs=tol)
    for key in ("var_fixed", "var_random", "var_residual"):
        assert out[key] == pytest.approx(ref[key], rel=20 * tol), key


@pytest.mark.parametrize("name", ["poisson_w", "poisson_crossed_w", "nb2_crossed_w"])
def test_lambda_comes_from_the_weighted_null_model(fits, name):
    """performance's null model keeps the weights; the unweighted one has another intercept, so a null model
    without the weights would miss the residual variance by far more than the tolerance."""
    ref = REF[CASES[name][0]]
    res = fits(name)
    var_e = res.r2()["var_residual"]
    lam = np.exp(ref["null_intercept"])
    extra = res.alpha if name.startswith("nb2") else 0.0
    assert var_e == pytest.approx(np.log1p(1 / lam + extra), rel=1e-4)
    unweighted = REF[name]["null_intercept_unweighted"]
    assert abs(np.log1p(1 / np.exp(unweighted) + extra) - var_e) > 50 * 1e-4 * var_e


@pytest.mark.parametrize("name", list(CASES))
def test_adjusted_icc_matches_performance(fits, name):
    """performance::icc's adjusted ICC is var_random / (var_random + var_residual), the r2() variances; the
    `icc` attribute gives it where the latent residual variance needs no model (Gaussian, logit), and None for
    Poisson and NB2 (docs/checking.md)."""
    res, ref = fits(name), REF[CASES[name][0]]
    out = res.r2()
    adjusted = out["var_random"] / (out["var_random"] + out["var_residual"])
    assert adjusted == pytest.approx(ref["icc_adjusted"], abs=tolerance(name))
    if name.startswith(("gaussian", "binomial")):
        assert res.icc == pytest.approx(ref["icc_adjusted"], abs=tolerance(name))
    else:
        assert res.icc is None


# ------------------------------------------------------------------------------------------ overdispersion
@pytest.mark.parametrize("name", COUNTS)
def test_overdispersion_matches_check_overdispersion(fits, name):
    res, ref = fits(name), REF[CASES[name][0]]
    out, want = res.overdispersion(), ref["overdispersion"]
    rel = 5 * tolerance(name)
    assert out["df"] == want["df"]
    assert out["chisq"] == pytest.approx(want["chisq"], rel=rel)
    assert out["ratio"] == pytest.approx(want["ratio"], rel=rel)
    assert out["pvalue"] == pytest.approx(want["pvalue"], rel=200 * rel)
    # the weighted Pearson residuals, row by row (residuals(type = "pearson") of the R fit)
    pearson = res.diagnostics()["pearson_residuals"].to_numpy()
    assert np.max(np.abs(pearson - np.array(ref["pearson"]))) < 2000 * tolerance(name)


FREQ = {"poisson": ("grouseticks_w.csv", GROUSE, "BROOD", sm.families.Poisson),
        "poisson_crossed": ("grouseticks_w.csv", CROSSED, None, sm.families.Poisson),
        "gaussian": ("sleepstudy_w.csv", "Reaction ~ Days", "Subject", None),
        "gaussian_log": ("../sim_gaussian_log.csv", "y ~ x1 + x2", "g",  # var_residual by the delta method
                         lambda: sm.families.Gaussian(sm.families.links.Log()))}


@pytest.mark.parametrize("name", list(FREQ))
def test_freq_weights_checks_equal_the_duplicated_rows(name):
    """Row i with freq_weights f_i is f_i rows: Var(X beta), the delta-method residual variance, the Pearson
    chi2 and its df are those of the data with duplicated rows (before, chi2 summed each row once against
    n = sum f)."""
    file, formula, groups, family = FREQ[name]
    data = read(file)
    data["f"] = 1 + np.arange(len(data)) % 3
    weighted = fit(formula, data, groups, family and family(), freq_weights="f")
    duplicated = fit(formula, data.loc[data.index.repeat(data["f"])].reset_index(drop=True), groups,
                     family and family())
    assert weighted.llf == pytest.approx(duplicated.llf, abs=1e-5)
    a, b = weighted.r2(), duplicated.r2()
    for key in ("marginal", "conditional", "var_fixed", "var_random", "var_residual"):
        assert a[key] == pytest.approx(b[key], rel=5e-5), key
    if family is not None and name != "gaussian_log":
        oa, ob = weighted.overdispersion(), duplicated.overdispersion()
        assert oa["df"] == ob["df"] == len(data.index.repeat(data["f"])) - weighted.k_params
        assert oa["chisq"] == pytest.approx(ob["chisq"], rel=1e-5)
    if name == "poisson":  # the latent-scale table's mean expected count
        assert weighted.latent_lambda == pytest.approx(duplicated.latent_lambda, rel=1e-5)


# ------------------------------------------------------------------------------------- quantile residuals
def pit_bounds(cdf, y):
    """(P(Y < y), P(Y <= y)) for integer responses."""
    return cdf(y - 1), cdf(y)


def check_pit(r, lower, upper, nsim):
    """Each simulated residual lies in its randomised-PIT interval up to the Monte Carlo error of the two
    empirical proportions, and E[r_i] = (lower_i + upper_i) / 2 (U has mean 1/2).  The second is tested on
    the residuals' drift towards the tails: z = sum sign(mid_i - 1/2) (r_i - mid_i) / v_i / sqrt(sum 1 / v_i),
    v_i = (upper - lower)^2 / 12 (the uniform) + p(1 - p) / nsim (the simulation), about N(0, 1) under the
    model; a simulated spread too small (one of two random terms left out: z ~ 24 on grouseticks) or too
    large drives it far from 0."""
    mc = np.maximum(lower * (1 - lower), upper * (1 - upper)) / nsim + 1.0 / nsim**2
    se = np.sqrt(mc) + 1.0 / nsim
    assert np.all(r >= lower - 5 * se) and np.all(r <= upper + 5 * se)
    mid = (lower + upper) / 2
    v = (upper - lower) ** 2 / 12 + mc
    z = np.sum(np.sign(mid - 0.5) * (r - mid) / v) / np.sqrt(np.sum(1 / v))
    assert abs(z) < 4, z


NSIM = 1000


def test_conditional_quantile_residuals_of_weighted_poisson(fits):
    """Conditional draws are Poisson(mu_i) whatever the prior weights (lme4's simulate ignores them too):
    the PIT of y_i under Poisson(mu_i) with glmmTMB's conditional means."""
    res = fits("poisson_w")
    ref = REF["poisson_w_tmb"]
    data = read("grouseticks_w.csv")
    y, mu = data["TICKS"].to_numpy(), np.array(ref["fitted"])
    qr = res.quantile_residuals(nsim=NSIM, seed=4, use_re="conditional")
    check_pit(qr.residuals.to_numpy(), *pit_bounds(lambda k: stats.poisson.cdf(k, mu), y), NSIM)
    disp = qr.tests.loc["dispersion (simulated / observed variance)", "statistic"]
    assert disp == pytest.approx(np.sum((y - mu) ** 2) / np.sum(mu), rel=0.05)


def test_new_effect_quantile_residuals_of_weighted_crossed_poisson(fits):
    """New effects on both terms: y_i is Poisson-lognormal with eta_i ~ N(x_i' beta, s_BROOD^2 + s_LOCATION^2),
    its cdf by Gauss-Hermite with R's (glmmTMB) estimates."""
    res = fits("poisson_crossed_w")
    ref = REF["poisson_crossed_w_tmb"]
    data = read("grouseticks_w.csv")
    fe = ref["fixef"]
    eta = fe["(Intercept)"] + fe["YEAR96"] * (data["YEAR"] == 96) + fe["YEAR97"] * (data["YEAR"] == 97) \
        + fe["cHEIGHT"] * data["cHEIGHT"]
    s = np.sqrt(sum(ref["re_var"].values()))
    nodes, weights = np.polynomial.hermite_e.hermegauss(60)
    weights = weights / weights.sum()
    mu = np.exp(eta.to_numpy()[:, None] + s * nodes[None, :])
    y = data["TICKS"].to_numpy()

    def cdf(k):
        return stats.poisson.cdf(k[:, None], mu) @ weights

    qr = res.quantile_residuals(nsim=NSIM, seed=5, use_re="new")
    check_pit(qr.residuals.to_numpy(), *pit_bounds(cdf, y), NSIM)
    assert np.allclose(qr.predictor, np.exp(eta), rtol=1e-3)


def test_new_effect_quantile_residuals_of_crossed_nb2(fits):
    """NB2 with new site and species effects: the NB-lognormal cdf by Gauss-Hermite with glmmTMB's estimates."""
    res = fits("nb2_crossed_w")
    ref = REF["nb2_crossed_w"]
    data = read("salamanders_w.csv")
    fe = ref["fixef"]
    eta = (fe["(Intercept)"] + fe["minedyes"] * (data["mined"] == "yes")).to_numpy()
    s = np.sqrt(sum(ref["re_var"].values()))
    theta = ref["theta"]
    nodes, weights = np.polynomial.hermite_e.hermegauss(60)
    weights = weights / weights.sum()
    mu = np.exp(eta[:, None] + s * nodes[None, :])
    y = data["count"].to_numpy()

    def cdf(k):
        return stats.nbinom.cdf(k[:, None], theta, theta / (theta + mu)) @ weights

    qr = res.quantile_residuals(nsim=NSIM, seed=6, use_re="new")
    check_pit(qr.residuals.to_numpy(), *pit_bounds(cdf, y), NSIM)


def test_conditional_quantile_residuals_of_binomial_trials_and_weighted_gaussian(fits):
    """Binomial: successes ~ Bin(size_i, p_i); Gaussian with var_weights: y_i ~ N(mu_i, sigma^2 / w_i), the
    conditional means of the R fits."""
    res = fits("binomial_trials")
    ref = REF["binomial_trials_tmb"]
    data = read("cbpp.csv")
    n, p = data["size"].to_numpy(), np.array(ref["fitted"])
    k = data["incidence"].to_numpy()
    qr = res.quantile_residuals(nsim=NSIM, seed=7, use_re="conditional")
    check_pit(qr.residuals.to_numpy(), *pit_bounds(lambda j: stats.binom.cdf(j, n, p), k), NSIM)

    res = fits("gaussian_w")
    ref = REF["gaussian_w"]
    data = read("sleepstudy_w.csv")
    w, y = data["w"].to_numpy(), data["Reaction"].to_numpy()
    sigma, mu = np.sqrt(ref["sigma2"]), np.array(ref["fitted"])
    pit = stats.norm.cdf((y - mu) * np.sqrt(w) / sigma)
    qr = res.quantile_residuals(nsim=NSIM, seed=8, use_re="conditional")
    check_pit(qr.residuals.to_numpy(), pit, pit, NSIM)
