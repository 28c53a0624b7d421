"""fit_many fits what its formula says or refuses it.

* random slopes ``"~ x + (x | g)"`` are fitted (as each response's single fit: same estimates,
  standard errors and log-likelihood as ``GLMM.from_formula(f"{response} ~ x + (x | g)")``), in
  this process and in worker processes;
* a left-hand side is refused (the responses are the ``responses`` columns);
* a response that is also a predictor is refused with a message naming the column;
* every family's placeholder response is accepted (the Binomial one is not constant).
"""
import warnings

import numpy as np
import pandas as pd
import pytest

import glmm_ext


def slope_data(family, n_resp=3, seed=0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(30), 15)
    x = rng.normal(size=g.size)
    data = pd.DataFrame({"x": x, "w": rng.normal(size=g.size), "g": g})
    for j in range(n_resp):
        b = rng.normal(size=(30, 2)) * [0.8, 0.6]
        eta = 0.4 + 0.3 * x + b[g, 0] + b[g, 1] * x
        if family == "gaussian":
            y = rng.normal(eta, 1.0)
        elif family == "poisson":
            y = rng.poisson(np.exp(eta)).astype(float)
        else:
            y = rng.binomial(1, 1 / (1 + np.exp(-eta))).astype(float)
        data[f"gene{j}"] = y
    data.loc[[3, 40], "gene1"] = np.nan  # a response with missing rows loses those rows only
    return data


def single(data, response, rhs, family, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return glmm_ext.GLMM.from_formula(f"{response} ~ {rhs}", data, family=family, **kw).fit()


SLOPES = [("gaussian", "x + (x | g)"), ("poisson", "x + (x | g)"), ("poisson", "x + w + (x || g)"),
          ("binomial", "x + (0 + x | g)"), ("gaussian", "x + (1 + x | g)")]


@pytest.mark.parametrize("family,rhs", SLOPES, ids=[f"{f}: {r}" for f, r in SLOPES])
def test_random_slopes_are_fitted_as_the_single_fits(family, rhs):
    data = slope_data(family)
    responses = ["gene0", "gene1", "gene2"]
    table = glmm_ext.fit_many(data, responses, "~ " + rhs, family=family, n_jobs=1)
    for name in responses:
        res = single(data, name, rhs, family)
        rows = table[table.response == name]
        assert list(rows.term) == list(res.model.exog_names)
        np.testing.assert_allclose(rows.estimate, res.fe_params, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(rows.std_err, res.bse_fe, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(rows.llf, res.llf, rtol=1e-10)
        np.testing.assert_allclose(rows.var_re, res.var_re, rtol=1e-8, atol=1e-12)
        assert rows.converged.all() == res.converged


def test_random_slopes_differ_from_the_random_intercept_fit():
    """The old behaviour (a random intercept for '(x | g)') is not what comes back."""
    data = slope_data("poisson")
    slopes = glmm_ext.fit_many(data, ["gene0"], "~ x + (x | g)", family="poisson", n_jobs=1)
    intercept = glmm_ext.fit_many(data, ["gene0"], "~ x", groups="g", family="poisson", n_jobs=1)
    assert slopes.llf.iloc[0] > intercept.llf.iloc[0] + 5.0
    assert intercept.llf.iloc[0] == pytest.approx(single(data, "gene0", "x", "poisson", groups="g").llf, rel=1e-10)


def test_random_slopes_in_worker_processes_match_this_process():
    data = slope_data("poisson", n_resp=8, seed=3)
    responses = [f"gene{j}" for j in range(8)]
    here = glmm_ext.fit_many(data, responses, "~ x + (x | g)", family="poisson", n_jobs=1)
    workers = glmm_ext.fit_many(data, responses, "~ x + (x | g)", family="poisson", n_jobs=2)
    pd.testing.assert_frame_equal(here, workers)


REFUSED = [
    ("gene1 ~ x", r"right-hand side only.*'gene1'"),
    ("gene0 + gene1 ~ x", r"right-hand side only"),
    ("~ x + gene2", r"'gene2' is also a predictor"),
    ("~ np.log(gene2 + 1) + x", r"'gene2' is also a predictor"),
    ("~ x + Q('gene0')", r"'gene0' is also a predictor"),
    ("~ gene0 * gene1", r"'gene0', 'gene1' are also a predictor"),
    ("~ x + (gene1 | g)", r"'gene1' is also a predictor"),
    ("~ ", r"no right-hand side"),
]


@pytest.mark.parametrize("formula,match", REFUSED, ids=[f for f, _ in REFUSED])
def test_formulas_fit_many_cannot_honour_are_refused(formula, match):
    data = slope_data("gaussian")
    with pytest.raises(ValueError, match=match) as err:
        glmm_ext.fit_many(data, ["gene0", "gene1", "gene2"], formula, groups="g", n_jobs=1)
    assert "_glmm_ext" not in str(err.value)


def test_a_response_whose_name_is_a_prefix_or_a_function_is_not_mistaken_for_a_predictor():
    data = slope_data("gaussian").rename(columns={"gene0": "x1", "gene2": "log"})
    data["x10"] = data["x"]
    table = glmm_ext.fit_many(data, ["x1", "log"], "~ x10 + np.log(np.abs(x) + 1)", groups="g", n_jobs=1)
    assert table.converged.all()


@pytest.mark.parametrize("family", ["gaussian", "poisson", "binomial", "negativebinomial", "gamma"])
def test_every_family_builds_its_shared_design(family):
    rng = np.random.default_rng(4)
    g = np.repeat(np.arange(20), 10)
    x = rng.normal(size=g.size)
    mu = np.exp(0.3 * x + rng.normal(0, 0.5, 20)[g])
    y = {"gaussian": rng.normal(mu, 1.0), "poisson": rng.poisson(mu), "negativebinomial": rng.poisson(mu),
         "binomial": rng.binomial(1, mu / (1 + mu)), "gamma": rng.gamma(2.0, mu / 2.0)}[family]
    data = pd.DataFrame({"y": y.astype(float), "x": x, "g": g})
    table = glmm_ext.fit_many(data, ["y"], "~ x", groups="g", family=family, n_jobs=1)
    res = single(data, "y", "x", family, groups="g")
    np.testing.assert_allclose(table.estimate, res.fe_params, rtol=1e-6, atol=1e-8)


def test_a_bar_random_intercept_is_the_groups_argument():
    data = slope_data("poisson")
    bar = glmm_ext.fit_many(data, ["gene0", "gene1"], "~ x + (1 | g)", family="poisson", n_jobs=1)
    given = glmm_ext.fit_many(data, ["gene0", "gene1"], "~ x", groups="g", family="poisson", n_jobs=1)
    pd.testing.assert_frame_equal(bar, given)
