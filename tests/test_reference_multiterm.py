"""Several random-effect terms against lme4 / glmmTMB (tests/data/multiterm, computed with R from public data)
and against the dense n x n Gaussian marginal likelihood evaluated here at the fit's estimates.

Penicillin (crossed), Oats (1|Block/Variety) and its (1|Block) + (1|Block:Variety) spelling, a singular slope
term on Oats, sleepstudy (1|Subject) + (0+Days|Subject), VerbAgg (crossed Binomial), cbpp (1|herd) + (1|obs)
(Binomial with an observation-level term) and grouseticks (1|BROOD) + (1|INDEX) + (1|LOCATION) (Poisson).
The log-likelihood must reach the best known optimum (lme4's, or glmmTMB's where it is higher) within 1e-4.
"""
import json
import os
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import glmm_ext

import multiterm_dense as md

DATA = os.path.join(os.path.dirname(__file__), "data", "multiterm")
with open(os.path.join(DATA, "reference.json")) as fh:
    MODELS = json.load(fh)["models"]
FAMILIES = {"gaussian": sm.families.Gaussian, "poisson": sm.families.Poisson, "binomial": sm.families.Binomial}

FAST = ["penicillin_reml", "penicillin_ml", "oats_nested_reml", "oats_nested_ml", "oats_crossed_reml",
        "oats_crossed_ml", "oats_slope_ml", "sleep_split_reml", "sleep_split_ml", "cbpp_obs"]
SLOW = ["verbagg", "verbagg_nagq0", "grouse_poisson", "grouse_poisson_nagq0"]  # 10 s to minutes on a busy machine
CASES = [c for c in FAST if c in MODELS] + [pytest.param(c, marks=pytest.mark.slow) for c in SLOW if c in MODELS]
_CACHE = {}


def fit(name):
    if name not in _CACHE:
        case = MODELS[name]
        data = pd.read_csv(os.path.join(DATA, case["data"]))
        formula = case["py_formula"].replace("yield ~", 'Q("yield") ~')  # 'yield' is a Python keyword
        model = glmm_ext.GLMM.from_formula(formula, data, family=FAMILIES[case["family"]]())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if case["family"] == "gaussian":
                res = model.fit(reml=bool(case["reml"]))
            else:
                res = model.fit(nagq=1 if case["nagq"] is None else int(case["nagq"]))
        _CACHE[name] = (case, data, res)
    return _CACHE[name]


def best_known(case):
    values = [case["lme4"]["loglik"]]
    tmb = case.get("glmmTMB") or {}
    if tmb.get("loglik_objective") is not None and case.get("nagq", 1) != 0:
        values.append(tmb["loglik_objective"])
    return max(values)


def reference_fit(case):
    """lme4's numbers, or glmmTMB's where glmmTMB reached a higher likelihood (lme4 stopped short)."""
    tmb = case.get("glmmTMB") or {}
    if tmb.get("loglik_objective") is not None and case.get("nagq", 1) != 0 \
            and tmb["loglik_objective"] > case["lme4"]["loglik"] + 1e-5:
        return tmb
    return case["lme4"]


@pytest.mark.parametrize("name", CASES)
def test_loglik_reaches_the_best_known_optimum(name):
    case, _, res = fit(name)
    assert res.llf >= best_known(case) - 1e-4
    assert res.llf <= best_known(case) + 0.05  # not a different (wrong) objective
    assert res.converged


@pytest.mark.parametrize("name", CASES)
def test_fixed_effects_and_standard_errors(name):
    case, _, res = fit(name)
    ref = reference_fit(case)
    for r_name, py_name in case["fixef_py_names"].items():
        se = case["lme4"]["se"][r_name]
        assert res.params[py_name] == pytest.approx(ref["fixef"][r_name], abs=0.02 * se)
        assert res.bse[py_name] == pytest.approx(se, rel=0.02)


@pytest.mark.parametrize("name", CASES)
def test_variance_components_and_vcomp_layout(name):
    case, _, res = fit(name)
    ref = reference_fit(case)
    vc = res.vcomp
    expected = {}
    for group in ref["varcorr"]:
        if group["group"] == "Residual":
            expected[("Residual", "")] = group["variance"][0]
            continue
        for col, var in zip(group["names"], group["variance"]):
            expected[(group["group"], "Intercept" if col == "(Intercept)" else col)] = var
    got = {(g if (g, n) in expected else g.split(".")[0], n): v
           for g, n, v in zip(vc["Group"], vc["Name"], vc["Variance"])}
    assert set(got) == set(expected)  # a row per term column and the Residual, as VarCorr
    scale = max(expected.values())
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=2e-3, abs=2e-3 * scale), key
    if case["family"] == "gaussian":
        assert vc["Group"].iloc[-1] == "Residual"
    assert list(vc.columns[:4]) == ["Group", "Name", "Variance", "Std.Dev."]


@pytest.mark.parametrize("name", [c for c in FAST if c in MODELS])
def test_conditional_modes_per_term(name):
    case, _, res = fit(name)
    if not res.is_multi:
        pytest.skip("one grouping factor: the one-term path's own reference tests cover its BLUPs")
    modes = res.random_effects
    for term in case["lme4"]["ranef"]["terms"]:
        key = term["group"]
        table = modes[key]
        names = ["Intercept" if c == "(Intercept)" else c for c in term["names"]]
        got = table.loc[[type(table.index[0])(v) for v in term["levels"]], names].to_numpy()
        sd = np.sqrt(np.max(np.diag(np.atleast_2d(res.cov_re[key].to_numpy()))))
        assert np.allclose(got, np.asarray(term["values"]), atol=5e-3 * sd + 1e-6), key
        if term.get("cond_sd") is not None:
            got_sd = res.random_effects_se[key].loc[[type(table.index[0])(v) for v in term["levels"]], names]
            assert np.allclose(got_sd.to_numpy(), np.asarray(term["cond_sd"]), rtol=2e-2, atol=1e-6), key


@pytest.mark.parametrize("name", [c for c in FAST if c in MODELS and MODELS[c]["family"] == "gaussian"])
def test_llf_equals_the_dense_gaussian_marginal(name):
    """log N(y; X beta, Z Sigma Z' + sigma^2 I) (+ the REML term) built densely at the fit's estimates."""
    case, data, res = fit(name)
    if not res.is_multi:
        pytest.skip("one grouping factor")
    design = res.model.design
    covs = [c.to_numpy() for c in res.cov_re.values()]
    value = md.gaussian_loglik(design.y - design.offset, design.X, np.asarray(res.params, float), covs, res.scale,
                               design.terms.terms, reml=bool(case["reml"]))
    assert value == pytest.approx(res.llf, abs=1e-8)


def test_nested_and_crossed_spellings_are_the_same_model():
    if "oats_nested_reml" not in MODELS:
        pytest.skip("no Oats reference")
    _, _, nested = fit("oats_nested_reml")
    _, _, spelled = fit("oats_crossed_reml")
    assert nested.llf == pytest.approx(spelled.llf, abs=1e-9)
    assert list(nested.vcomp["Group"]) == ["Block", "Variety:Block", "Residual"]  # lme4: a/b = a + b:a


def test_singular_slope_term_is_flagged():
    if "oats_slope_ml" not in MODELS:
        pytest.skip("no Oats slope reference")
    case, _, res = fit("oats_slope_ml")
    assert case["lme4"]["singular"]
    assert res.singular_terms["Block"] and not res.singular_terms["Block:Variety"]
    assert res.vcomp["Corr"].iloc[1] == pytest.approx(1.0, abs=1e-4)
