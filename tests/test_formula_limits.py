"""Limits of what the model accepts before anything is fitted.

* A response with no finite maximum-likelihood estimate (every count 0; every Binomial row without a
  success, or without a failure) is refused when the model is built, for every family and every
  random-effects structure, through the formula and the array interfaces.
* Safe-mode formulas are bounded: the number of terms they expand to and their nesting depth are
  checked from the formula's syntax tree before patsy runs (see the second half of the file).
"""
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import glmm_ext


def base_data(n_groups=20, size=10, seed=0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), size)
    return pd.DataFrame({"x": rng.normal(size=g.size), "g": g})


# ----------------------------------------------------------------- responses with no finite MLE
FAMILIES = [  # (family, response value, what the message says)
    ("poisson", 0.0, "is 0 in every row"),
    ("negativebinomial", 0.0, "is 0 in every row"),
    ("binomial", 0.0, "is 0 in every row"),
    ("binomial", 1.0, "is 1 in every row"),
]
STRUCTURES = [  # (formula, from_formula keywords)
    ("y ~ x", {"groups": "g"}),
    ("y ~ x + (1 | g)", {}),
    ("y ~ x + (x | g)", {}),
    ("y ~ x + (x || g)", {}),
    ("y ~ x + (0 + x | g)", {}),
]


@pytest.mark.parametrize("family,value,says", FAMILIES, ids=[f"{f}-{v:g}" for f, v, _ in FAMILIES])
@pytest.mark.parametrize("formula,kw", STRUCTURES, ids=[s[0] for s in STRUCTURES])
def test_constant_response_without_an_mle_is_refused_by_the_formula_interface(family, value, says, formula, kw):
    data = base_data().assign(y=value)
    with pytest.raises(ValueError, match=says) as err:
        glmm_ext.GLMM.from_formula(formula, data, family=family, **kw)  # refused before .fit()
    assert "'y'" in str(err.value) and "no finite maximum" in str(err.value)


@pytest.mark.parametrize("family,value,says", FAMILIES, ids=[f"{f}-{v:g}" for f, v, _ in FAMILIES])
@pytest.mark.parametrize("slopes", [False, True], ids=["intercept", "exog_re"])
def test_constant_response_without_an_mle_is_refused_by_the_array_interface(family, value, says, slopes):
    data = base_data()
    exog = sm.add_constant(data["x"].to_numpy())
    kw = {"exog_re": exog} if slopes else {}
    with pytest.raises(ValueError, match=says):
        glmm_ext.GLMM(np.full(len(data), value), exog, data["g"].to_numpy(), family=family, **kw)


@pytest.mark.parametrize("successes_of,says", [(lambda t: np.zeros_like(t), "0 successes"),
                                               (lambda t: t, "no failures")], ids=["none", "all"])
def test_binomial_trials_with_no_success_or_no_failure_is_refused(successes_of, says):
    data = base_data()
    trials = np.arange(len(data)) % 4 + 1
    s = successes_of(trials)
    data = data.assign(s=s, f=trials - s)
    for formula, kw in STRUCTURES[::2]:
        with pytest.raises(ValueError, match=says):
            glmm_ext.GLMM.from_formula(formula.replace("y ~", "s + f ~"), data, family="binomial", **kw)


@pytest.mark.parametrize("family", ["poisson", "negativebinomial", "binomial"])
@pytest.mark.parametrize("formula,kw", STRUCTURES[:3], ids=[s[0] for s in STRUCTURES[:3]])
def test_a_single_event_is_enough_to_be_accepted(family, formula, kw):
    y = np.zeros(200)
    y[7] = 1.0
    glmm_ext.GLMM.from_formula(formula, base_data().assign(y=y), family=family, **kw)  # no error


def test_gaussian_and_gamma_constant_responses_keep_their_own_message():
    data = base_data()
    with pytest.raises(ValueError, match="does not vary"):
        glmm_ext.GLMM.from_formula("y ~ x", data.assign(y=0.0), groups="g").fit()
    with pytest.raises(ValueError, match="does not vary"):
        glmm_ext.GLMM.from_formula("y ~ x", data.assign(y=2.0), groups="g", family="gamma").fit()
