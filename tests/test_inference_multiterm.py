"""Intervals, variance SEs and R² of fits with several random-effect terms, against independent numbers:
lme4's profile intervals and performance's r2_nakagawa (tests/data/multiterm/analysis_reference.json,
written by analysis_reference.R), and Wald intervals from a dense n x n Gaussian likelihood's Hessian
computed here (tests/multiterm_dense.py)."""
import json
import os
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import special, stats

import glmm_ext

import multiterm_dense as md

DATA = os.path.join(os.path.dirname(__file__), "data", "multiterm")
with open(os.path.join(DATA, "analysis_reference.json")) as fh:
    REF = json.load(fh)
_CACHE = {}


def fit(name, section="profile", family=None, **kwargs):
    key = (name, section, tuple(sorted(kwargs.items())))
    if key not in _CACHE:
        case = REF[section][name]
        data = pd.read_csv(os.path.join(DATA, case["data"]))
        formula = case["py_formula"].replace("yield ~", 'Q("yield") ~')
        model = glmm_ext.GLMM.from_formula(formula, data, family=family or sm.families.Gaussian())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if "reml" in case:
                kwargs.setdefault("reml", bool(case["reml"]))
            _CACHE[key] = model.fit(**kwargs)
    return _CACHE[key]


def lme4_rows(res, case):
    """lme4's confint rows renamed to ours: sd_(Intercept)|g -> 'g SD Intercept', sigma, fixed effects."""
    out = {}
    for name, (lo, hi) in case["fine"].items():
        if name.startswith("sd_("):
            col, group = name[4:].split(")|")
            out[f"{group} SD {col}"] = (lo, hi)
        elif name == "sigma":
            out["Residual SD"] = (lo, hi)
        elif name.startswith("period"):  # cbpp's factor: patsy's C(period)[T.k]
            out[f"C(period)[T.{name[6:]}]"] = (lo, hi)
        else:
            out[name.replace("(Intercept)", "Intercept")] = (lo, hi)
    return out


@pytest.mark.parametrize("name", ["penicillin_reml", "oats_nested_ml"])
def test_profile_intervals_match_lme4(name):
    res = fit(name)
    ci = res.conf_int(method="profile")
    ref = lme4_rows(res, REF["profile"][name])
    assert sorted(ci.index) == sorted(ref)
    for row, (lo, hi) in ref.items():
        np.testing.assert_allclose(ci.loc[row, ["lower", "upper"]].to_numpy(float), [lo, hi], rtol=1e-3,
                                   err_msg=row)
    assert ci.attrs["method"] == "profile"
    if name.endswith("reml"):
        assert "ML" in ci.attrs["note"]


@pytest.mark.slow
def test_profile_intervals_of_a_binomial_fit_match_lme4():
    """cbpp (1|herd) + (1|obs), Laplace: lme4's glmer profile (a minute here; the herd SD's lower end is 0)."""
    res = fit("cbpp_obs", section="r2", family=sm.families.Binomial())
    ci = res.conf_int(method="profile")
    ref = lme4_rows(res, REF["profile"]["cbpp_obs"])
    assert sorted(ci.index) == sorted(ref)
    for row, (lo, hi) in ref.items():
        got = ci.loc[row, ["lower", "upper"]].to_numpy(float)
        np.testing.assert_allclose(got, [lo, hi], rtol=2e-3, atol=1e-6 if row.startswith("herd") else 0,
                                   err_msg=row)


def test_profile_of_reml_fit_equals_profile_of_ml_fit():
    """lme4 profiles a REML fit on its ML likelihood: the same intervals as the ML fit's."""
    ref_reml, ref_ml = REF["profile"]["penicillin_reml"]["default"], REF["profile"]["penicillin_ml"]["default"]
    for k in ref_reml:
        np.testing.assert_allclose(ref_reml[k], ref_ml[k], rtol=1e-6)


def _dense_wald(res, reml):
    """SE of (log SD per term, log sigma) from the dense likelihood's numerical Hessian (REML: the REML
    criterion; ML: beta included, the variance block of the inverse)."""
    design = res.model.design
    terms = design.terms.structure.terms
    y, X = design.y, design.X
    sds = [np.sqrt(float(np.atleast_2d(c)[0, 0])) for c in res._fit.cov_re]
    omega = np.log(np.array(sds + [np.sqrt(res.scale)]))
    beta = np.asarray(res.params, float)
    p = len(beta)

    def negll(v):
        if reml:
            om = v
            b = beta
        else:
            b, om = v[:p], v[p:]
        covs = [np.array([[np.exp(2 * s)]]) for s in om[:-1]]
        return -md.gaussian_loglik(y, X, b, covs, np.exp(2 * om[-1]), terms, reml=reml)

    x0 = omega if reml else np.concatenate([beta, omega])
    k = len(x0)
    h = 1e-4 * np.maximum(1.0, np.abs(x0))
    H = np.empty((k, k))
    for i in range(k):
        for j in range(k):
            ei, ej = np.eye(k)[i] * h[i], np.eye(k)[j] * h[j]
            H[i, j] = (negll(x0 + ei + ej) - negll(x0 + ei - ej) - negll(x0 - ei + ej) + negll(x0 - ei - ej)) / (
                4 * h[i] * h[j])
    cov = np.linalg.inv(H)
    se = np.sqrt(np.diag(cov))[-len(omega):]
    return omega, se


@pytest.mark.parametrize("name", ["penicillin_reml", "oats_nested_ml"])
def test_wald_intervals_of_sds_match_dense_hessian(name):
    res = fit(name)
    ci = res.conf_int(method="wald", alpha=0.1)
    omega, se = _dense_wald(res, reml=res.method == "REML")
    z = stats.norm.isf(0.05)
    keys = list(res.cov_re)
    rows = [f"{k} SD Intercept" for k in keys] + ["Residual SD"]
    for row, o, s in zip(rows, omega, se):
        np.testing.assert_allclose(ci.loc[row, ["lower", "upper"]].to_numpy(float),
                                   [np.exp(o - z * s), np.exp(o + z * s)], rtol=2e-3, err_msg=row)
    # the fixed effects: beta +- z SE, the statsmodels default interval
    np.testing.assert_allclose(ci.iloc[:len(res.params)].to_numpy(float), np.asarray(res.conf_int(alpha=0.1)),
                               rtol=1e-10)


def test_bse_re_by_term_is_the_delta_method_of_the_wald_se():
    res = fit("penicillin_reml")
    omega, se = _dense_wald(res, reml=True)
    bse = res.bse_re
    assert list(bse) == ["plate", "sample"]
    for k, (key, series) in enumerate(bse.items()):
        assert list(series.index) == ["Intercept Var"]
        # Var = exp(2 log sd): SE = 2 Var SE(log sd)
        np.testing.assert_allclose(series.iloc[0], 2 * np.exp(2 * omega[k]) * se[k], rtol=2e-3)


def _slope_and_crossed_data(seed, n, n_g, n_h):
    """y = 1 + 0.5 x + b_g0 + b_g1 x + u_h + e: a correlated slope term on g (n_g levels) crossed with h."""
    rng = np.random.default_rng(seed)
    g, h = rng.integers(0, n_g, n), rng.integers(0, n_h, n)
    x = rng.normal(size=n)
    b = rng.multivariate_normal([0, 0], [[1.0, 0.3], [0.3, 0.5]], size=n_g)
    y = 1 + 0.5 * x + b[g, 0] + b[g, 1] * x + rng.normal(0, 0.6, n_h)[h] + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "g": g.astype(str), "h": h.astype(str)})


def test_correlated_slope_term_rows_wald_and_profile():
    """y ~ x + (x|g) + (1|h): SD rows per column and a Cor row; every interval holds its estimate, the Cor
    interval inside [-1, 1]; Wald and profile close for a well-determined SD."""
    df = _slope_and_crossed_data(seed=3, n=400, n_g=25, n_h=15)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = glmm_ext.GLMM.from_formula("y ~ x + (x|g) + (1|h)", df).fit(reml=False)
        wald, prof = res.conf_int(method="wald"), res.conf_int(method="profile")
    rows = ["Intercept", "x", "g SD Intercept", "g SD x", "g Cor Intercept,x", "h SD Intercept", "Residual SD"]
    assert list(wald.index) == rows and list(prof.index) == rows
    cov = res.cov_re["g"].to_numpy()
    est = {"g SD Intercept": np.sqrt(cov[0, 0]), "g SD x": np.sqrt(cov[1, 1]),
           "g Cor Intercept,x": cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1]),
           "h SD Intercept": np.sqrt(res.cov_re["h"].iloc[0, 0]), "Residual SD": np.sqrt(res.scale)}
    for row, v in est.items():
        for ci in (wald, prof):
            assert ci.loc[row, "lower"] < v < ci.loc[row, "upper"], row
    assert -1 <= prof.loc["g Cor Intercept,x", "lower"] and prof.loc["g Cor Intercept,x", "upper"] <= 1
    np.testing.assert_allclose(wald.loc["Residual SD"], prof.loc["Residual SD"], rtol=0.02)


def test_bad_method_is_a_value_error():
    res = fit("penicillin_reml")
    with pytest.raises(ValueError, match="method must be"):
        res.conf_int(method="bayes")


# ------------------------------------------------------------------------------------------- R²
def test_r2_gaussian_matches_performance():
    for name in ("penicillin_reml", "oats_nested_reml"):
        ref = REF["r2"][name]["gaussian"]
        res = fit(name, section="r2")
        r2 = res.r2()
        np.testing.assert_allclose([r2["marginal"], r2["conditional"]], [ref["R2_marginal"], ref["R2_conditional"]],
                                   rtol=1e-4, atol=1e-8)
        np.testing.assert_allclose(r2["var_random"], ref["var_random"], rtol=1e-4)
        np.testing.assert_allclose(r2["var_residual"], ref["var_distribution"], rtol=1e-4)


def test_r2_binomial_observation_level_term_goes_to_the_residual():
    """cbpp (1|herd) + (1|obs): performance puts the observation-level variance into the residual."""
    ref = REF["r2"]["cbpp_obs"]["theoretical"]
    res = fit("cbpp_obs", section="r2", family=sm.families.Binomial())
    r2 = res.r2()
    np.testing.assert_allclose([r2["marginal"], r2["conditional"]], [ref["R2_marginal"], ref["R2_conditional"]],
                               rtol=2e-4)
    np.testing.assert_allclose(r2["var_random"], ref["var_random"], rtol=2e-3)
    np.testing.assert_allclose(r2["var_residual"], ref["var_distribution"] + ref["var_intercept"]["obs"], rtol=2e-4)


def test_r2_poisson_lognormal_and_trigamma():
    """grouseticks: lambda from the intercept-only model with the three terms.  Our null fit reaches a higher
    likelihood than lme4's (which warns that it did not converge), so lambda differs by ~1%; R² by < 2e-3."""
    case = REF["r2"]["grouse_poisson"]
    ref = case["lognormal"]
    res = fit("grouse_poisson", section="r2", family=sm.families.Poisson())
    assert res.llf > case["loglik"] - 1e-3
    lo, tri = res.r2("lognormal"), res.r2("trigamma")
    np.testing.assert_allclose([lo["marginal"], lo["conditional"]], [ref["R2_marginal"], ref["R2_conditional"]],
                               atol=2e-3)
    np.testing.assert_allclose(lo["var_random"], ref["var_random"], rtol=2e-3)  # BROOD + LOCATION
    # the closed forms at our lambda (from the description) and the observation-level variance (INDEX)
    lam = float(lo["approximation"].split("lambda = ")[1].split()[0])
    olre_ours = lo["var_residual"] - np.log1p(1 / lam)
    np.testing.assert_allclose(olre_ours, ref["var_intercept"]["INDEX"], rtol=2e-3)
    np.testing.assert_allclose(olre_ours, float(res.cov_re["INDEX"].iloc[0, 0]), rtol=1e-3)
    np.testing.assert_allclose(tri["var_residual"], special.polygamma(1, lam) + olre_ours, rtol=1e-4)
    assert tri["var_random"] == lo["var_random"]
    np.testing.assert_allclose(np.log(lam), case["null_fixef"], atol=0.02)


def test_random_effects_cov_by_term_and_level_equals_dense_conditional_covariance():
    """Gaussian: Var(b | y) = (Z'Z / sigma^2 + Sigma_b^-1)^-1 (beta at its estimate, as lme4's condVar), its
    diagonal blocks per level; a slope term's blocks are 2 x 2."""
    df = _slope_and_crossed_data(seed=4, n=200, n_g=12, n_h=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = glmm_ext.GLMM.from_formula("y ~ x + (x|g) + (1|h)", df).fit()
    terms = res.model.design.terms.structure.terms
    Z = np.hstack([md.full_z(t) for t in terms])
    covs = [np.atleast_2d(c) for c in res._fit.cov_re]
    S = np.zeros((Z.shape[1], Z.shape[1]))
    o = 0
    for t, c in zip(terms, covs):
        S[o:o + t.n_levels * t.q, o:o + t.n_levels * t.q] = np.kron(np.eye(t.n_levels), c)
        o += t.n_levels * t.q
    C = np.linalg.inv(Z.T @ Z / res.scale + np.linalg.inv(S))
    rc = res.random_effects_cov
    assert list(rc) == ["g", "h"]
    o = 0
    for key, t in zip(rc, terms):
        levels = res.model.design.terms.levels[list(rc).index(key)]
        for j, label in enumerate(levels):
            block = C[o + j * t.q:o + (j + 1) * t.q, o + j * t.q:o + (j + 1) * t.q]
            np.testing.assert_allclose(rc[key][label].to_numpy(), block, rtol=1e-5, atol=1e-10)
        o += t.n_levels * t.q
    assert rc["g"][res.model.design.terms.levels[0][0]].shape == (2, 2)


def test_icc_at_sums_every_terms_variance_at_x():
    df = _slope_and_crossed_data(seed=5, n=300, n_g=15, n_h=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = glmm_ext.GLMM.from_formula("y ~ x + (x|g) + (1|h)", df).fit()
    vc = res.vcomp  # from VarCorr's SDs and correlation: Var(b0 + b1 x) = s0^2 + 2 r s0 s1 x + s1^2 x^2
    s0, s1, sh, se = vc["Std.Dev."].to_numpy()
    r = float(vc["Corr"].iloc[1])
    for value in (0.0, 1.5, -2.0):
        between = s0 ** 2 + 2 * r * s0 * s1 * value + s1 ** 2 * value ** 2 + sh ** 2
        assert res.icc_at(value) == pytest.approx(between / (between + se ** 2), rel=1e-10)
        assert res.icc_at({"x": value}) == pytest.approx(res.icc_at(value), rel=1e-12)
    assert res.icc_at(0.0) == pytest.approx(res.icc, rel=1e-10)  # the adjusted ICC: intercept variances
    with pytest.raises(ValueError, match="no value for the slope column"):
        res.icc_at({"z": 1.0})
    pen = fit("penicillin_reml")
    assert pen.icc_at(3.0) == pytest.approx(pen.icc, rel=1e-12)  # intercepts only: no dependence on x


def test_plot_blups_one_panel_per_term_and_column():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = fit("penicillin_reml")
    fig = res.plot_blups(alpha=0.1)
    assert [a.get_title() for a in fig.axes] == ["plate: Intercept", "sample: Intercept"]
    ax = fig.axes[1]  # samples sorted by their mode, with +- z SE bars
    modes = res.random_effects["sample"]["Intercept"].sort_values()
    assert [t.get_text() for t in ax.get_yticklabels()] == list(modes.index.astype(str))
    plt.close(fig)
    fig, axes = plt.subplots(1, 3)
    with pytest.raises(ValueError, match="needs 2 axes"):
        res.plot_blups(ax=axes)
    plt.close(fig)


def test_wald_intervals_of_a_binomial_fit_match_the_dense_laplace_hessian():
    """cbpp (1|herd) + (1|obs): the SD rows against the Hessian of a dense Laplace log-likelihood over
    (beta, log SD_herd, log SD_obs) computed here."""
    res = fit("cbpp_obs", section="r2", family=sm.families.Binomial())
    design = res.model.design
    terms = design.terms.structure.terms
    beta = np.asarray(res.params, float)
    sds = np.array([np.sqrt(float(np.atleast_2d(c)[0, 0])) for c in res._fit.cov_re])
    p = len(beta)

    def negll(v):
        return -md.laplace_loglik(design.y, design.X, v[:p], np.exp(v[p:]), terms, "binomial",
                                  trials=design.trials)[0]

    x0 = np.concatenate([beta, np.log(sds)])
    k = len(x0)
    h = 1e-4
    H = np.empty((k, k))
    for i in range(k):
        for j in range(i, k):
            ei, ej = np.eye(k)[i] * h, np.eye(k)[j] * h
            H[i, j] = H[j, i] = (negll(x0 + ei + ej) - negll(x0 + ei - ej) - negll(x0 - ei + ej)
                                 + negll(x0 - ei - ej)) / (4 * h * h)
    se = np.sqrt(np.diag(np.linalg.inv(H)))[p:]
    ci = res.conf_int(method="wald")
    z = stats.norm.isf(0.025)
    for row, o, s in zip(["herd SD Intercept", "obs SD Intercept"], np.log(sds), se):
        lo, hi = np.log(ci.loc[row, ["lower", "upper"]].to_numpy(float))
        assert 0.5 * (lo + hi) == pytest.approx(o, abs=1e-6)  # centred on log SD
        # SE(log SD): herd's is large (its SD is 0.18 +- a flat likelihood), both to 3e-3 relative
        assert (hi - lo) / (2 * z) == pytest.approx(s, rel=3e-3), row
