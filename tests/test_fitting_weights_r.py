"""Weighted fits beyond one random intercept against lme4 (tests/data/weights/reference.json, written by
tests/data/weights/reference.R with lme4 1.1-31; R is not needed here).

lme4's ``weights=`` are glmm_ext's ``var_weights`` for lmer (row i's residual variance sigma^2 / w_i) and the
Binomial trials (glmm_ext's ``weights=``) for glmer with a proportion response.  lmer fits are compared
directly (log-likelihood to 1e-6, estimates to 1e-4).  glmer's logLik is its PIRLS value at its own
estimates, so a glmer fit is compared through the dense Laplace log-likelihood of tests/dense_reference.py
(built from the data frame, not from glmm_ext's design): glmm_ext's llf is that value at glmm_ext's
estimates, and no smaller than it at lme4's.
"""
import json
import os
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import glmm_ext

import dense_reference as dr

DATA = os.path.join(os.path.dirname(__file__), "data")
with open(os.path.join(DATA, "weights", "reference.json")) as fh:
    REF = json.load(fh)


def fit(formula, d, family=None, reml=True, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return glmm_ext.GLMM.from_formula(formula, d, family=family, **kw).fit(reml=reml)


def sleepstudy():
    return pd.read_csv(os.path.join(DATA, "sleepstudy.csv")).assign(w=lambda d: 1.0 + d["Days"] % 3)


def penicillin():
    d = pd.read_csv(os.path.join(DATA, "multiterm", "penicillin.csv"))
    plate = pd.factorize(d["plate"], sort=True)[0] + 1  # R's factor codes (levels sorted)
    sample = pd.factorize(d["sample"], sort=True)[0] + 1
    return d.assign(w=1.0 + (plate + sample) % 3)


def cbpp():
    d = pd.read_csv(os.path.join(DATA, "multiterm", "cbpp.csv"))
    return d.assign(p=d["incidence"] / d["size"], fails=d["size"] - d["incidence"], t=d["period"] - 2.5)


def r_cov(term):
    """lme4's covariance of one VarCorr entry from its SDs and correlation matrix."""
    sd = np.atleast_1d(np.asarray(term["sd"], float))
    corr = np.asarray(term["corr"], float).reshape(len(sd), len(sd))
    return corr * np.outer(sd, sd)


def check_lmer(res, ref):
    assert res.llf == pytest.approx(ref["loglik"], abs=1e-6)
    np.testing.assert_allclose(np.atleast_1d(np.asarray(res.fe_params)), ref["fixef"], rtol=1e-6)
    np.testing.assert_allclose(np.atleast_1d(np.asarray(res.bse_fe)), ref["se"], rtol=1e-4)
    assert np.sqrt(res.scale) == pytest.approx(ref["sigma"], rel=1e-5)


@pytest.mark.parametrize("reml", [True, False], ids=["reml", "ml"])
@pytest.mark.parametrize("key,formula", [("sleep_slope", "Reaction ~ Days + (1 + Days | Subject)"),
                                         ("sleep_diag", "Reaction ~ Days + (Days || Subject)")])
def test_random_slopes_with_var_weights_match_lmer_weights(key, formula, reml):
    ref = REF[f"{key}_{'reml' if reml else 'ml'}"]
    res = fit(formula, sleepstudy(), reml=reml, var_weights="w")
    check_lmer(res, ref)
    expected = np.zeros((2, 2))
    if key == "sleep_slope":
        expected = r_cov(ref["varcorr"][0])
    else:  # (Days || Subject): two independent terms in lme4's VarCorr
        expected[0, 0], expected[1, 1] = (float(t["sd"]) ** 2 for t in ref["varcorr"])
    cov = np.asarray(res.cov_re, float)
    np.testing.assert_allclose(np.sqrt(np.diag(cov)), np.sqrt(np.diag(expected)), rtol=1e-4)
    if key == "sleep_slope":
        corr = cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1])
        assert corr == pytest.approx(expected[0, 1] / np.sqrt(expected[0, 0] * expected[1, 1]), abs=1e-4)


@pytest.mark.parametrize("reml", [True, False], ids=["reml", "ml"])
def test_random_slopes_with_var_weights_llf_is_the_dense_weighted_likelihood(reml):
    """Independently of R and of the engine: the n x n weighted normal (REML) log-likelihood at the estimates."""
    d = sleepstudy()
    res = fit("Reaction ~ Days + (1 + Days | Subject)", d, reml=reml, var_weights="w")
    X = np.column_stack([np.ones(len(d)), d["Days"]])
    value = dr.gaussian_loglik(d["Reaction"].to_numpy(), X, np.asarray(res.fe_params),
                               [dr.term_design(d, ["Subject"], ["1", "Days"])], [np.asarray(res.cov_re, float)],
                               res.scale, reml=reml, weights=d["w"].to_numpy())
    assert res.llf == pytest.approx(value, abs=1e-6)


@pytest.mark.parametrize("reml", [True, False], ids=["reml", "ml"])
def test_crossed_terms_with_var_weights_match_lmer_weights(reml):
    ref = REF[f"penicillin_{'reml' if reml else 'ml'}"]
    res = fit("diameter ~ 1 + (1 | plate) + (1 | sample)", penicillin(), reml=reml, var_weights="w", groups=None)
    check_lmer(res, ref)
    for term in ref["varcorr"]:
        assert np.sqrt(float(np.asarray(res.cov_re[term["group"]])[0, 0])) == pytest.approx(term["sd"], rel=1e-4)


@pytest.mark.parametrize("key,formula,columns", [
    ("cbpp_obs", "{y} ~ C(period) + (1 | herd) + (1 | obs)", None),
    ("cbpp_slope", "{y} ~ t + (1 + t | herd)", ["t"]),
], ids=["crossed-obs", "slopes"])
def test_binomial_trials_as_weights_match_glmer_weights(key, formula, columns):
    """glmer(p ~ ..., weights = size) on cbpp: the proportion with weights= (the trials) is the same model as
    successes + failures, and its Laplace maximum is glmer's."""
    d, ref = cbpp(), REF[key]
    fam = sm.families.Binomial()
    res = fit(formula.format(y="p"), d, fam, weights="size", groups=None)
    counts = fit(formula.format(y="incidence + fails"), d, fam, groups=None)
    if "loglik_cbind" in ref:  # lme4 too: weights = size with the proportion is cbind(incidence, size - incidence)
        assert ref["loglik"] == pytest.approx(ref["loglik_cbind"], abs=1e-9)
    assert res.llf == pytest.approx(counts.llf, abs=1e-8)
    np.testing.assert_allclose(np.asarray(res.fe_params), np.asarray(counts.fe_params), rtol=1e-7, atol=1e-9)

    y, trials = d["incidence"].to_numpy(float), d["size"].to_numpy(float)
    if columns is None:
        X = np.column_stack([np.ones(len(d))] + [(d["period"] == k).to_numpy(float) for k in (2, 3, 4)])
        groups = ["herd", "obs"]
        designs = [dr.term_design(d, [g], ["1"]) for g in groups]
        ours = [np.asarray(res.cov_re[g], float) for g in groups]
        theirs = [r_cov(next(t for t in ref["varcorr"] if t["group"] == g)) for g in groups]
    else:
        X = np.column_stack([np.ones(len(d)), d["t"]])
        designs = [dr.term_design(d, ["herd"], ["1", "t"])]
        ours, theirs = [np.asarray(res.cov_re, float)], [r_cov(ref["varcorr"][0])]

    def laplace(beta, covs):
        return dr.laplace_loglik(y, X, np.asarray(beta, float), designs, covs, "binomial", trials=trials)

    assert res.llf == pytest.approx(laplace(res.fe_params, ours), abs=1e-6)
    at_lme4 = laplace(ref["fixef"], theirs)
    assert at_lme4 <= res.llf + 1e-6
    assert res.llf - at_lme4 < 1e-4  # the same maximum
    np.testing.assert_allclose(np.asarray(res.fe_params), ref["fixef"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(res.bse_fe), ref["se"], rtol=1e-3)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(np.sqrt(np.diag(a)), np.sqrt(np.diag(b)), rtol=1e-3)
