"""Each bound of each interval, pinned on its own against an independent number.

A width check passes when one end moves and the other stays (a wrong percentile on one side is ~8% of a
bound); here every lower and every upper end is compared separately:

* Wald: beta +- z SE with z from scipy; the SDs exp(log s +- z SE(log s)) with SE(log s) from a dense
  n x n likelihood differentiated here (one term), or glmmTMB's standard errors (random slopes);
* profile (and Wald with glmmTMB's numbers): lme4's confint, per element, in test_inference_intervals.py and
  test_inference_intervals_slopes.py;
* bootstrap: the percentiles of replicate estimates this file computes itself, each replicate drawn by the
  public ``res.simulate`` from the bootstrap's documented seed (child k of ``SeedSequence(seed)``) and
  refitted through the public ``GLMM.from_formula(...).fit``.
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

from conftest import DATA, dense_reml_deviance, read_data

with open(os.path.join(DATA, "slopes", "intervals_glmmtmb.json")) as fh:
    TMB_SLOPES = json.load(fh)
SLEEP = read_data("sleepstudy.csv")
CBPP = read_data("cbpp.csv")
CBPP_FORMULA = "incidence + I(size - incidence) ~ C(period)"


def fit(formula, data, groups=None, family=None, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GLMM.from_formula(formula, data, groups=groups, family=family).fit(**kw)


def assert_bounds(ci, rows, lower, upper, rtol, atol=0.0):
    """Lower and upper ends separately, row by row (the message names the row and the end)."""
    for row, lo, hi in zip(rows, lower, upper):
        for end, expected in (("lower", lo), ("upper", hi)):
            actual = ci.loc[row, end]
            assert abs(actual - expected) <= atol + rtol * abs(expected), (row, end, actual, expected)


# ---------------------------------------------------------------- Wald

@pytest.mark.parametrize("alpha", [0.05, 0.10])
def test_wald_fixed_effects_are_beta_plus_minus_z_se(alpha):
    for res in (fit("Reaction ~ Days", SLEEP, "Subject"),
                fit(CBPP_FORMULA, CBPP, "herd", sm.families.Binomial()),
                fit("Reaction ~ Days + (Days | Subject)", SLEEP, reml=False)):
        z = stats.norm.ppf(1 - alpha / 2)
        beta, se = np.asarray(res.params, float), np.asarray(res.bse, float)
        names = list(res.model.exog_names)
        for ci in (res.conf_int(alpha, method="wald"), res.conf_int(alpha).set_axis(["lower", "upper"], axis=1)):
            assert_bounds(ci, names, beta - z * se, beta + z * se, rtol=1e-12)


def _log_sd_se(deviance, log_sds, h=1e-4):
    """SEs of the coordinates (log sigma_u, log sigma_e, ...) from a central-difference Hessian of deviance / 2."""
    k = len(log_sds)
    H = np.empty((k, k))
    for i in range(k):
        for j in range(k):
            ei, ej = np.eye(k)[i] * h, np.eye(k)[j] * h
            H[i, j] = (deviance(log_sds + ei + ej) - deviance(log_sds + ei - ej)
                       - deviance(log_sds - ei + ej) + deviance(log_sds - ei - ej)) / (4 * h * h) / 2
    return np.sqrt(np.diag(np.linalg.inv(H)))


def _dense_ml_deviance(y, X, groups, var_re, scale):
    """-2 ML log-likelihood, beta profiled out (GLS), with dense n x n matrices."""
    n = len(y)
    Z = (groups[:, None] == np.unique(groups)[None, :]).astype(float)
    V = scale * np.eye(n) + var_re * Z @ Z.T
    Vi = np.linalg.inv(V)
    beta = np.linalg.solve(X.T @ Vi @ X, X.T @ Vi @ y)
    r = y - X @ beta
    return np.linalg.slogdet(V)[1] + r @ Vi @ r + n * np.log(2 * np.pi)


@pytest.mark.parametrize("reml,alpha", [(True, 0.05), (False, 0.10)])
def test_wald_sd_rows_from_a_dense_likelihood(reml, alpha):
    """Gaussian one-term fit: the SD rows are exp(log s +- z SE) with the SEs of the REML / ML criterion,
    here from the dense marginal likelihood (not the package's profile) differentiated numerically."""
    res = fit("Reaction ~ Days", SLEEP, "Subject", reml=reml)
    y = SLEEP["Reaction"].to_numpy(float)
    X = np.column_stack([np.ones(len(y)), SLEEP["Days"].to_numpy(float)])
    g = SLEEP["Subject"].to_numpy()
    if reml:
        deviance = lambda t: dense_reml_deviance(y, X, g, np.exp(2 * t[0]), np.exp(2 * t[1]))[0]  # noqa: E731
    else:
        deviance = lambda t: _dense_ml_deviance(y, X, g, np.exp(2 * t[0]), np.exp(2 * t[1]))  # noqa: E731
    log_sds = np.log([np.sqrt(res.var_re), np.sqrt(res.scale)])
    se = _log_sd_se(deviance, log_sds)
    z = stats.norm.ppf(1 - alpha / 2)
    ci = res.conf_int(alpha, method="wald")
    assert_bounds(ci, ["Subject SD", "Residual SD"], np.exp(log_sds - z * se), np.exp(log_sds + z * se), rtol=2e-5)


def _dense_reml_slopes(y, X, Z, groups, sd, r, sigma):
    """-2 REML log-likelihood of y ~ N(X beta, sigma^2 I + Z_g Sigma Z_g') (blocks per group), dense."""
    cov = np.array([[sd[0] ** 2, r * sd[0] * sd[1]], [r * sd[0] * sd[1], sd[1] ** 2]])
    n, p = X.shape
    V = sigma**2 * np.eye(n)
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        V[np.ix_(rows, rows)] += Z[rows] @ cov @ Z[rows].T
    Vi = np.linalg.inv(V)
    XtViX = X.T @ Vi @ X
    beta = np.linalg.solve(XtViX, X.T @ Vi @ y)
    res = y - X @ beta
    return np.linalg.slogdet(V)[1] + np.linalg.slogdet(XtViX)[1] + res @ Vi @ res + (n - p) * np.log(2 * np.pi)


def test_wald_rows_of_a_reml_random_slope_fit_from_a_dense_likelihood():
    """REML fit: SDs exp(log s +- z SE), the correlation tanh(atanh r +- z SE), the residual SD likewise, the SEs
    from the dense REML criterion differentiated here in (log SDs, atanh r, log sigma)."""
    res = fit("Reaction ~ Days + (Days | Subject)", SLEEP)
    y = SLEEP["Reaction"].to_numpy(float)
    X = np.column_stack([np.ones(len(y)), SLEEP["Days"].to_numpy(float)])
    g = SLEEP["Subject"].to_numpy()
    cov = res.cov_re.to_numpy()
    sd = np.sqrt(np.diag(cov))
    point = np.array([np.log(sd[0]), np.log(sd[1]), np.arctanh(cov[0, 1] / (sd[0] * sd[1])), 0.5 * np.log(res.scale)])

    def deviance(t):
        return _dense_reml_slopes(y, X, X, g, np.exp(t[:2]), np.tanh(t[2]), np.exp(t[3]))

    se = _log_sd_se(deviance, point)
    z = stats.norm.ppf(0.975)
    back = [np.exp, np.exp, np.tanh, np.exp]
    lower = [f(v - z * e) for f, v, e in zip(back, point, se)]
    upper = [f(v + z * e) for f, v, e in zip(back, point, se)]
    rows = ["Subject SD Intercept", "Subject SD Days", "Subject Cor Intercept,Days", "Residual SD"]
    ci = res.conf_int(method="wald")
    keep = [0, 1, 3]
    assert_bounds(ci, [rows[k] for k in keep], [lower[k] for k in keep], [upper[k] for k in keep], rtol=2e-4)
    # the package differentiates the REML criterion numerically in r itself: its SE(atanh r) is 0.25% below the
    # dense one here (0.3256 vs 0.3264; the SDs agree to 1e-4), so the correlation's ends agree to ~1e-3
    assert_bounds(ci, rows[2:3], lower[2:3], upper[2:3], rtol=4e-3)


def test_wald_sd_rows_of_a_random_slope_fit_match_glmmtmb():
    """ML fit: each end of each SD row is exp(log sd_TMB +- z SE_TMB); glmmTMB's dispersion is log sigma^2."""
    res = fit("Reaction ~ Days + (Days | Subject)", SLEEP, reml=False)
    ci = res.conf_int(method="wald")
    est, se = dict(zip(TMB_SLOPES["rows"], TMB_SLOPES["est"])), dict(zip(TMB_SLOPES["rows"], TMB_SLOPES["se"]))
    z = stats.norm.ppf(0.975)
    log_sd = {"Subject SD Intercept": (est["theta_Days|Subject.1"], se["theta_Days|Subject.1"]),
              "Subject SD Days": (est["theta_Days|Subject.2"], se["theta_Days|Subject.2"]),
              "Residual SD": (est["d~(Intercept)"] / 2, se["d~(Intercept)"] / 2)}
    rows = list(log_sd)
    centre = np.array([log_sd[r][0] for r in rows])
    half = z * np.array([log_sd[r][1] for r in rows])
    assert_bounds(ci, rows, np.exp(centre - half), np.exp(centre + half), rtol=1e-3)
    # the correlation: glmmTMB's t (r = t / sqrt(1 + t^2)); our interval is tanh(atanh(r) +- z SE(atanh r))
    t, se_t = est["theta_Days|Subject.3"], se["theta_Days|Subject.3"]
    r = t / np.sqrt(1 + t * t)
    se_atanh = se_t * (1 + t * t) ** -1.5 / (1 - r * r)
    assert_bounds(ci, ["Subject Cor Intercept,Days"], [np.tanh(np.arctanh(r) - z * se_atanh)],
                  [np.tanh(np.arctanh(r) + z * se_atanh)], rtol=2e-3, atol=1e-3)


# ---------------------------------------------------------------- bootstrap percentiles

def _replicates(res, nsim, seed, refit):
    """Estimates of nsim replicates, replicate k drawn by res.simulate from child k of SeedSequence(seed)."""
    rows = []
    for child in np.random.SeedSequence(seed).spawn(nsim):
        y = res.simulate(1, seed=child, use_re="new").iloc[:, 0].to_numpy()
        rows.append(refit(y))
    return np.array(rows)


def _one_term(res, tail):
    est = list(np.asarray(res.params, float)) + [np.sqrt(res.var_re)]
    return est + ([tail(res)] if tail else [])


def _check_percentiles(ci, samples, alpha, rtol):
    lower = np.quantile(samples, alpha / 2, axis=0)
    upper = np.quantile(samples, 1 - alpha / 2, axis=0)
    assert_bounds(ci, list(ci.index), lower, upper, rtol=rtol, atol=1e-12)


@pytest.mark.parametrize("alpha", [0.05, 0.20])
def test_bootstrap_ends_are_the_percentiles_of_refits_gaussian(alpha):
    res = fit("Reaction ~ Days", SLEEP, "Subject")
    nsim, seed = 20, 11
    ci = res.conf_int(alpha, method="boot", nsim=nsim, seed=seed, progress=False)
    assert list(ci.index) == ["Intercept", "Days", "Subject SD", "Residual SD"]
    samples = _replicates(res, nsim, seed, lambda y: _one_term(
        fit("Reaction ~ Days", SLEEP.assign(Reaction=y), "Subject"), lambda r: np.sqrt(r.scale)))
    _check_percentiles(ci, samples, alpha, rtol=1e-8)


def test_bootstrap_ends_are_the_percentiles_of_refits_binomial():
    # the bootstrap refits by BFGS from the estimates, the public fit by its own path: agreement ~1e-5
    res = fit(CBPP_FORMULA, CBPP, "herd", sm.families.Binomial())
    nsim, seed = 20, 11
    ci = res.conf_int(0.1, method="boot", nsim=nsim, seed=seed, progress=False)
    assert list(ci.index) == ["Intercept", "C(period)[T.2]", "C(period)[T.3]", "C(period)[T.4]", "herd SD"]
    # simulate() of a successes + failures response gives counts; its first column is the successes
    refit = lambda k: _one_term(fit(CBPP_FORMULA, CBPP.assign(incidence=np.asarray(k).astype(int)),  # noqa
                                    "herd", sm.families.Binomial()), None)
    _check_percentiles(ci, _replicates(res, nsim, seed, refit), 0.1, rtol=2e-4)


def test_bootstrap_ends_are_the_percentiles_of_refits_gamma_dispersion():
    data = read_data("sim_gamma_log.csv")
    family = sm.families.Gamma(sm.families.links.Log())
    res = fit("y ~ x1 + x2", data, "g", family)
    nsim, seed = 16, 3
    ci = res.conf_int(method="boot", nsim=nsim, seed=seed, progress=False)
    assert list(ci.index)[-2:] == ["g SD", "Dispersion"]
    refit = lambda y: _one_term(fit("y ~ x1 + x2", data.assign(y=y), "g", family), lambda r: r.scale)  # noqa
    _check_percentiles(ci, _replicates(res, nsim, seed, refit), 0.05, rtol=2e-4)


def test_bootstrap_ends_are_the_percentiles_of_refits_random_slopes():
    res = fit("Reaction ~ Days + (Days | Subject)", SLEEP, reml=False)
    nsim, seed = 20, 11
    ci = res.conf_int(0.1, method="boot", nsim=nsim, seed=seed, progress=False)

    def refit(y):
        r = fit("Reaction ~ Days + (Days | Subject)", SLEEP.assign(Reaction=y), reml=False)
        cov = r.cov_re.to_numpy()
        sd = np.sqrt(np.diag(cov))
        return list(np.asarray(r.params, float)) + list(sd) + [cov[0, 1] / (sd[0] * sd[1]), np.sqrt(r.scale)]

    assert list(ci.index) == ["Intercept", "Days", "Subject SD Intercept", "Subject SD Days",
                              "Subject Cor Intercept,Days", "Residual SD"]
    _check_percentiles(ci, _replicates(res, nsim, seed, refit), 0.1, rtol=1e-8)

