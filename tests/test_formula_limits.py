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


# ----------------------------------------------------------------- safe-mode cost limits
import ast  # noqa: E402
import time  # noqa: E402

import patsy  # noqa: E402

from glmm_ext import cli  # noqa: E402
from glmm_ext.formula import _safe  # noqa: E402


def wide_data(k, n=40, seed=1):
    rng = np.random.default_rng(seed)
    data = pd.DataFrame(rng.normal(size=(n, k)), columns=[f"x{i}" for i in range(k)])
    return data.assign(y=rng.normal(size=n), g=np.arange(n) % 5)


def chain(k, op=" + ", start=0):
    return op.join(f"x{i}" for i in range(start, start + k))


TOO_COSTLY = [  # (formula, the limit its message names)
    ("y ~ (" + chain(16) + ")**16", "MAX_TERMS"),        # 65,535 terms, 130 characters
    ("y ~ " + chain(1200), "MAX_TERMS"),                 # raised a RecursionError in the checker
    ("y ~ " + chain(12, " * "), "MAX_TERMS"),            # 4,095 terms
    ("y ~ (" + chain(25) + ")**2", "MAX_TERMS"),         # 325 terms
    ("y ~ x0 + (" + chain(19, start=1) + "):(" + chain(19, start=20) + ")", "MAX_TERMS"),  # 1 + 361
    ("y ~ x0 + " + " + ".join(["1"] * 2000), "MAX_DEPTH"),  # no terms, a chain 2,000 deep
    ("y ~ x0 + " + "-" * 3000 + "x1", "nested too deeply"),  # deeper than Python's own parser goes
    ("y ~ x0 + " + " " * _safe.MAX_FORMULA_LENGTH, "MAX_FORMULA_LENGTH"),
    ("y ~ x0 + (" + chain(30) + ")**2 + (x1 | g)", "MAX_TERMS"),
    ("y ~ x0 + (" + chain(12, " * ") + " | g)", "MAX_TERMS"),  # inside a random-effects term
]


@pytest.mark.parametrize("formula,limit", TOO_COSTLY, ids=[f"{f[:30]}..{len(f)}" for f, _ in TOO_COSTLY])
def test_safe_mode_refuses_a_formula_beyond_its_limits_quickly(formula, limit):
    data = wide_data(1200)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=limit) as err:
        glmm_ext.GLMM.from_formula(formula, data, groups="g", formula_mode="safe")
    assert time.perf_counter() - start < 5.0
    assert len(str(err.value)) < 600  # the formula is cut in the message


@pytest.mark.parametrize("formula", [f for f, _ in TOO_COSTLY[:3]] + [TOO_COSTLY[6][0]],
                         ids=["pow16", "1200", "mult12", "unary"])
def test_the_cli_exits_2_naming_the_limit(tmp_path, capsys, formula):
    path = tmp_path / "wide.csv"
    wide_data(1200, n=30).to_csv(path, index=False)
    with pytest.raises(SystemExit) as stop:
        cli.main([str(path), "--formula", formula, "--groups", "g"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert ("MAX_TERMS" in err or "nested too deeply" in err) and "Traceback" not in err


@pytest.mark.parametrize("formula", [TOO_COSTLY[1][0], TOO_COSTLY[5][0], TOO_COSTLY[6][0]],
                         ids=["1200", "ones", "unary"])
def test_python_mode_gives_a_valueerror_not_a_recursionerror(formula):
    with pytest.raises(ValueError):
        glmm_ext.GLMM.from_formula(formula, wide_data(1200), groups="g")


def test_the_largest_accepted_formula_is_built():
    data = wide_data(_safe.MAX_TERMS, n=_safe.MAX_TERMS + 60)
    model = glmm_ext.GLMM.from_formula("y ~ " + chain(_safe.MAX_TERMS), data, groups="g", formula_mode="safe")
    assert model.exog.shape[1] == _safe.MAX_TERMS + 1
    model = glmm_ext.GLMM.from_formula("y ~ (" + chain(24) + ")**2", data, groups="g", formula_mode="safe")
    assert model.exog.shape[1] == 24 + 276 + 1


TERM_FORMULAS = ["a", "a + b", "a * b * c", "(a + b + c)**2", "(a + b + c + d)**3", "a / b", "a:b + c",
                 "(a + b) * (c + d)", "a - 1", "0 + a * b", "(a + b):(c + d + e)", "a * b - a:b",
                 "(a + b + c + d + e)**5", "a + b + c + I(a * b)"]


@pytest.mark.parametrize("rhs", TERM_FORMULAS)
def test_term_count_bounds_patsys_expansion(rhs):
    """The count from the syntax tree is at least patsy's term list (without the intercept), equal when
    no term repeats; patsy is the independent reference."""
    patsy_terms = [t for t in patsy.ModelDesc.from_formula("y ~ " + rhs).rhs_termlist if t.factors]
    ours = _safe.term_count(ast.parse(rhs.replace(":", "@"), mode="eval").body)
    assert ours >= len(patsy_terms)
    if rhs not in ("a * b - a:b",):
        assert ours == len(patsy_terms)


def test_tree_depth_is_iterative():
    deep = ast.parse(" + ".join(["x"] * 2000), mode="eval").body
    assert _safe.tree_depth(deep) == 2000  # a recursive walk would stop near 1,000
