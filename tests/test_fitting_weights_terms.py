"""var_weights and freq_weights beyond one random intercept: one-term random slopes and several terms, every
family.  Independent checks: integer freq_weights f give the fit of the data with each row repeated f times
(llf, estimates, standard errors); a constant var_weights c is a change of dispersion units; Binomial
var_weights are trials; the Gaussian likelihood of non-integer frequency weights against a dense n x n one.
The lme4 references (lmer/glmer with weights=) are in test_fitting_weights_r.py."""
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import special

import glmm_ext
from glmm_ext import make_family

import dense_reference as dr


def data(family, link=None, seed=23, n_groups=20, size=8):
    """Grouped data with a random intercept and slope per g and a crossed factor a of 6 levels."""
    rng = np.random.default_rng(seed)
    n = n_groups * size
    g, a, x = np.repeat(np.arange(n_groups), size), rng.integers(0, 6, n), rng.normal(size=n)
    eta = 0.3 + 0.5 * x + rng.normal(0, 0.7, n_groups)[g] + rng.normal(0, 0.4, n_groups)[g] * x \
        + rng.normal(0, 0.5, 6)[a]
    trials = rng.integers(1, 6, n).astype(float)
    if family == "gaussian":
        y = (eta if link != "log" else np.exp(0.2 * eta + 1.0)) + rng.normal(0, 0.8 if link != "log" else 0.3, n)
    elif family == "binomial":
        y = rng.binomial(trials.astype(int), special.expit(eta)).astype(float)
    elif family == "poisson":
        y = rng.poisson(np.exp(0.5 * eta)).astype(float)
    elif family == "negativebinomial":
        y = rng.poisson(np.exp(0.5 * eta) * rng.gamma(2.0, 0.5, n)).astype(float)
    else:
        y = rng.gamma(2.0, np.exp(0.3 * eta) / 2.0)
    return pd.DataFrame({"y": y, "fails": trials - y if family == "binomial" else 0.0, "x": x, "g": g, "a": a})


def fit(formula, d, family=None, fit_kw=None, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return glmm_ext.GLMM.from_formula(formula, d, family=family, **kw).fit(**(fit_kw or {}))


def conditional_values(res):
    """Every level's conditional covariance of its modes (`random_effects_cov`), in a fixed order."""
    covs = res.random_effects_cov
    if all(isinstance(v, dict) for v in covs.values()):  # several terms: term -> level -> DataFrame
        return np.concatenate([np.asarray(c, float).ravel() for term in covs.values() for c in term.values()])
    return np.concatenate([np.asarray(c, float).ravel() for c in covs.values()])


def cov_values(res):
    """Every random-effects covariance entry, in the terms' order."""
    cov = res.cov_re
    parts = cov.values() if isinstance(cov, dict) else [cov]
    return np.concatenate([np.asarray(c, float).ravel() for c in parts])


FORMULAS = {"slopes": "{y} ~ x + (1 + x | g)", "crossed": "{y} ~ x + (1 | g) + (1 | a)",
            "slopes-crossed": "{y} ~ x + (1 + x | g) + (1 | a)"}
CASES = [("gaussian", None, True), ("gaussian", None, False), ("gaussian", "log", False),
         ("binomial", None, False), ("poisson", None, False), ("gamma", "log", False),
         ("negativebinomial", None, False)]


@pytest.mark.parametrize("structure", list(FORMULAS))
@pytest.mark.parametrize("family,link,reml", CASES,
                         ids=["gaussian-reml", "gaussian-ml", "gaussian-log", "binomial-trials", "poisson", "gamma",
                              "nb2"])
def test_freq_weights_equal_repeated_rows(structure, family, link, reml):
    d = data(family, link)
    f = np.random.default_rng(5).integers(1, 4, size=len(d))
    y = "y + fails" if family == "binomial" else "y"  # Binomial rows with several trials: the constant matters
    form, fam = FORMULAS[structure].format(y=y), make_family(family, link)
    weighted = fit(form, d, fam, freq_weights=f, fit_kw={"reml": reml})
    repeated = fit(form, d.loc[d.index.repeat(f)].reset_index(drop=True), fam, fit_kw={"reml": reml})
    assert weighted.nobs == repeated.nobs == f.sum()
    assert weighted.llf == pytest.approx(repeated.llf, abs=1e-6)
    np.testing.assert_allclose(np.asarray(weighted.fe_params), np.asarray(repeated.fe_params), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(weighted.bse_fe), np.asarray(repeated.bse_fe), rtol=1e-4)
    np.testing.assert_allclose(cov_values(weighted), cov_values(repeated), rtol=1e-4, atol=1e-7)
    assert weighted.scale == pytest.approx(repeated.scale, rel=1e-5)
    assert weighted.bic == pytest.approx(repeated.bic, abs=1e-5)
    np.testing.assert_allclose(conditional_values(weighted), conditional_values(repeated), rtol=2e-3, atol=1e-6)


@pytest.mark.parametrize("structure", list(FORMULAS))
def test_binomial_freq_and_var_weights_differ_by_the_documented_constant(structure):
    """freq_weights f count a row with t trials f times (f log C(t, k)); var_weights f multiply its trials
    (log C(f t, f k)): the same estimates, log-likelihoods apart by exactly the sum of the constants."""
    d = data("binomial")
    f = np.random.default_rng(7).integers(1, 4, size=len(d)).astype(float)
    form, fam = FORMULAS[structure].format(y="y + fails"), make_family("binomial")
    freq, var = fit(form, d, fam, freq_weights=f), fit(form, d, fam, var_weights=f)
    t, k = (d["y"] + d["fails"]).to_numpy(), d["y"].to_numpy()

    def log_choose(m, j):
        return special.gammaln(m + 1) - special.gammaln(j + 1) - special.gammaln(m - j + 1)

    gap = float(np.sum(f * log_choose(t, k) - log_choose(f * t, f * k)))
    assert abs(gap) > 1.0  # the two meanings differ on these data
    assert freq.llf - var.llf == pytest.approx(gap, abs=1e-6)
    np.testing.assert_allclose(np.asarray(freq.fe_params), np.asarray(var.fe_params), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cov_values(freq), cov_values(var), rtol=1e-4, atol=1e-7)
    assert freq.nobs == f.sum() and var.nobs == len(d)


@pytest.mark.parametrize("structure", list(FORMULAS))
def test_binomial_var_weights_of_a_binary_response_are_trials(structure):
    """A 0/1 row with var_weights v is v trials with v y successes (statsmodels GLM's meaning)."""
    d = data("binomial")
    d = d.assign(y=(d["y"] > 0).astype(float))
    v = np.random.default_rng(8).integers(1, 5, size=len(d)).astype(float)
    form, fam = FORMULAS[structure], make_family("binomial")
    weighted = fit(form.format(y="y"), d, fam, var_weights=v)
    trials = fit(form.format(y="s + f"), d.assign(s=d["y"] * v, f=(1 - d["y"]) * v), fam)
    assert weighted.llf == pytest.approx(trials.llf, abs=1e-6)
    np.testing.assert_allclose(np.asarray(weighted.fe_params), np.asarray(trials.fe_params), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.asarray(weighted.bse_fe), np.asarray(trials.bse_fe), rtol=1e-5)


@pytest.mark.parametrize("structure", list(FORMULAS))
@pytest.mark.parametrize("family,link,reml", [("gaussian", None, True), ("gaussian", None, False),
                                              ("gaussian", "log", False), ("gamma", "log", False)])
def test_constant_var_weights_are_a_change_of_dispersion_units(structure, family, link, reml):
    """var_weights c on every row only change the dispersion's units (phi / c): the same maximum, the same
    estimates, the scale times c (the Gaussian's log sqrt(c) per row is cancelled by the new sigma)."""
    d = data(family, link)
    form, fam = FORMULAS[structure].format(y="y"), make_family(family, link)
    c = 2.5
    plain = fit(form, d, fam, fit_kw={"reml": reml})
    weighted = fit(form, d, fam, var_weights=np.full(len(d), c), fit_kw={"reml": reml})
    assert weighted.scale == pytest.approx(c * plain.scale, rel=1e-5)
    assert weighted.llf == pytest.approx(plain.llf, abs=1e-6)
    np.testing.assert_allclose(np.asarray(weighted.fe_params), np.asarray(plain.fe_params), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(weighted.bse_fe), np.asarray(plain.bse_fe), rtol=1e-4)
    np.testing.assert_allclose(cov_values(weighted), cov_values(plain), rtol=1e-4, atol=1e-7)  # Sigma: y / eta units


def test_non_integer_freq_weights_multiply_the_log_density():
    """statsmodels' semantics for any f > 0: the integral of prod_i f(y_i | b)^f_i.  For a Gaussian that is
    the weighted normal density with weights f v times prod_i (2 pi sigma^2 / v_i)^((1 - f_i) / 2) f_i^(-1/2),
    checked on the dense n x n covariance at the estimates, with no parameter step improving it."""
    d = data("gaussian")
    rng = np.random.default_rng(9)
    f, v = rng.uniform(0.3, 2.5, size=len(d)), rng.uniform(0.5, 2.0, size=len(d))
    res = fit("y ~ x + (1 + x | g)", d, var_weights=v, freq_weights=f, fit_kw={"reml": False})
    assert res.nobs == pytest.approx(f.sum())
    X = np.column_stack([np.ones(len(d)), d["x"]])
    design = [dr.term_design(d, ["g"], ["1", "x"])]
    y = d["y"].to_numpy()

    def dense(cov, s2):
        base = dr.gaussian_loglik(y, X, np.asarray(res.fe_params), design, [cov], s2, weights=f * v)
        return base + float(np.sum(0.5 * (1 - f) * np.log(2 * np.pi * s2 / v) - 0.5 * np.log(f)))

    cov = np.asarray(res.cov_re, float)
    assert res.llf == pytest.approx(dense(cov, res.scale), abs=1e-6)
    for a, b, c in ((1.05, 1, 1), (0.95, 1, 1), (1, 1.05, 1), (1, 0.95, 1), (1, 1, 1.05), (1, 1, 0.95)):
        scaled = cov * np.sqrt(np.outer([a, b], [a, b]))
        assert dense(scaled, res.scale * c) <= res.llf + 1e-8


def test_weighted_gaussian_slopes_modes_are_the_dense_conditional_means():
    """The weighted slope model (fitted on the general engine) keeps the one-factor record: its BLUPs and their
    conditional SDs are E[b | y] and sqrt(diag Var[b | y]) of the dense weighted model at the estimates."""
    d = data("gaussian")
    v = np.random.default_rng(10).uniform(0.5, 2.0, size=len(d))
    res = fit("y ~ x + (1 + x | g)", d, var_weights=v)
    X = np.column_stack([np.ones(len(d)), d["x"]])
    b, sd = dr.gaussian_modes(d["y"].to_numpy(), X, np.asarray(res.fe_params), [dr.term_design(d, ["g"], ["1", "x"])],
                              [np.asarray(res.cov_re, float)], res.scale, weights=v)
    np.testing.assert_allclose(np.asarray(res.blups).ravel(), b, atol=1e-6)
    np.testing.assert_allclose(np.asarray(res.blup_se).ravel(), sd, rtol=1e-6)
    record = res._fit
    assert record.one_factor and record.vector and record.mode_cov[0].shape == (d["g"].nunique(), 2, 2)


@pytest.mark.parametrize("formula", ["y ~ x + (1 + x | g)", "y ~ x + (1 | g) + (1 | a)"])
@pytest.mark.parametrize("name,value", [("var_weights", 0.0), ("freq_weights", 0.0), ("var_weights", -1.0),
                                        ("freq_weights", -2.0)])
def test_zero_and_negative_weights_are_refused_when_the_model_is_made(formula, name, value):
    """A weight <= 0 is a ValueError naming the weights when the model is made (before any structure or fit);
    a row meant to carry nothing is dropped by the caller."""
    d = data("gaussian")
    w = np.ones(len(d))
    w[[3, 17]] = value
    with pytest.raises(ValueError, match=f"{name} must be > 0"):
        glmm_ext.GLMM.from_formula(formula, d, **{name: w})
    assert len(d) == 160 and "w" not in d  # the caller's data untouched
