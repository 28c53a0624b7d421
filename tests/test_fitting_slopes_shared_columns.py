"""Random slopes whose z columns are also columns of the fixed design: Z is then read from X itself (a view, no
copy).  Whatever the fixed formula, the rows dropped, the weights or the family, the fit must be the one of the
same model whose z columns are copies the fixed design does not hold (built from the data instead), and the
design, its pickle and its predictions must not depend on which way Z was made.
"""
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import glmm_ext


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(21)
    n_groups, size = 30, 12
    g = np.repeat(np.arange(n_groups), size)
    n = len(g)
    df = pd.DataFrame({"x": rng.normal(1.0, 2.0, n), "x2": rng.normal(size=n), "x3": rng.normal(-1.0, 0.5, n),
                       "k": rng.integers(0, 6, n), "w": rng.uniform(0.5, 2.0, n), "off": rng.normal(0, 0.2, n),
                       "g": [f"s{j}" for j in g]})
    b = rng.normal(size=(n_groups, 3)) * [0.8, 0.4, 0.3]
    eta = 0.3 + 0.5 * df.x - 0.4 * df.x2 + 0.2 * df.k + b[g, 0] + b[g, 1] * df.x + b[g, 2] * df.k
    df["y"] = eta + rng.normal(0, 0.8, n)
    df["c"] = rng.poisson(np.exp(0.2 * eta.clip(-3, 3) + df.off))
    df.loc[[5, 77, 200], "x2"] = np.nan  # rows the fixed part drops (not the random part)
    for col in ("x", "x3", "k"):
        df[col + "_z"] = df[col].astype(float)  # the same values under a name the fixed part does not use
    return df


CASES = [  # (fixed part, random part with {x}, {x3}, {k} to be named)
    ("y ~ x + x2", "(1 + {x} | g)"),
    ("y ~ x + x2", "(0 + {x} | g)"),
    ("y ~ x + x2", "({x} || g)"),
    ("y ~ x2 + x", "(1 + {x} | g)"),  # the z columns not side by side in X
    ("y ~ x + x2 + x3", "(0 + {x} + {x3} | g)"),  # every second column of X
    ("y ~ x + x2 + x3", "(0 + {x3} + {x} | g)"),  # in the other order
    ("y ~ 0 + x + x2", "(1 + {x} | g)"),  # no intercept column in X
    ("y ~ x - 1", "(1 + {x} | g)"),
    ("y ~ k + x", "(1 + {k} | g)"),  # an integer column
    ("y ~ np.log(x3 + 5) + x", "(1 + {x} | g)"),  # a transformed column before it
]


def _pair(df, fixed, random, **kwargs):
    shared = glmm_ext.GLMM.from_formula(f"{fixed} + {random.format(x='x', x3='x3', k='k')}", df, **kwargs)
    copied = glmm_ext.GLMM.from_formula(f"{fixed} + {random.format(x='x_z', x3='x3_z', k='k_z')}", df, **kwargs)
    return shared, copied


def _same_fit(a, b):
    assert a.nobs == b.nobs and a.n_groups == b.n_groups
    np.testing.assert_allclose(np.asarray(a.params), np.asarray(b.params), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.asarray(a.cov_re, float), np.asarray(b.cov_re, float), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(a.llf, b.llf, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(a.fittedvalues), np.asarray(b.fittedvalues), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("fixed, random", CASES)
def test_z_read_from_the_fixed_design_fits_as_a_copy(frame, fixed, random):
    shared, copied = _pair(frame, fixed, random)
    np.testing.assert_array_equal(shared.design.Z, copied.design.Z)
    assert shared.design.Z.shape[0] == shared.design.X.shape[0] == len(frame) - (3 if "x2" in fixed else 0)
    _same_fit(shared.fit(), copied.fit())


def test_the_common_case_shares_memory_and_writes_nothing(frame):
    """`(1 + x | g)` in `y ~ x + x2`: Z is X's first two columns (the path the other tests compare), and a fit,
    its tables and predictions leave both as they were."""
    model = glmm_ext.GLMM.from_formula("y ~ x + x2 + (1 + x | g)", frame)
    design = model.design
    assert np.shares_memory(design.Z, design.X)
    X0, Z0 = design.X.copy(), np.array(design.Z)
    res = model.fit()
    res.summary()
    res.predict(frame.iloc[:20])
    res.get_prediction(frame.iloc[:20]).summary_frame()
    res.conf_int()
    np.testing.assert_array_equal(design.X, X0)
    np.testing.assert_array_equal(design.Z, Z0)


@pytest.mark.parametrize("kwargs", [dict(var_weights="w"), dict(freq_weights="k_w"), dict(offset="off")])
def test_weights_and_offset_with_shared_columns(frame, kwargs):
    df = frame.assign(k_w=frame.k + 1)
    _same_fit(*(m.fit() for m in _pair(df, "y ~ x + x2", "(1 + {x} | g)", **kwargs)))


def test_other_families_with_shared_columns(frame):
    shared, copied = _pair(frame, "c ~ x + x2", "(1 + {x} | g)", family=sm.families.Poisson(), offset="off")
    _same_fit(shared.fit(), copied.fit())


def test_a_column_named_intercept_is_not_the_ones(frame):
    """A fixed column called "Intercept" that is not patsy's column of ones (here the data's column of 2s, in a
    formula without patsy's intercept) is not the random intercept's z column."""
    df = frame.assign(Intercept=2.0, two=2.0)
    shared = glmm_ext.GLMM.from_formula("y ~ 0 + Intercept + x + (1 + x | g)", df)
    renamed = glmm_ext.GLMM.from_formula("y ~ 0 + two + x + (1 + x | g)", df)
    np.testing.assert_array_equal(shared.design.Z[:, 0], 1.0)
    _same_fit(shared.fit(), renamed.fit())


@pytest.mark.parametrize("fixed", ["y ~ x", "y ~ 0 + x"])
def test_a_data_column_named_intercept_in_a_random_term_is_that_column(frame, fixed):
    """``(0 + Intercept | g)`` with a data column called Intercept is a slope on that column (patsy evaluates the
    name), not the ones: neither the plain z columns nor the view of X may take it by its name."""
    rng = np.random.default_rng(9)
    df = frame.assign(Intercept=rng.normal(2.0, 1.0, len(frame)))
    named = glmm_ext.GLMM.from_formula(f"{fixed} + (0 + Intercept | g)", df)
    other = glmm_ext.GLMM.from_formula(f"{fixed} + (0 + w | g)", df.assign(w=df["Intercept"]))
    np.testing.assert_array_equal(named.design.Z[:, 0], df["Intercept"].to_numpy())
    _same_fit(named.fit(), other.fit())


def test_pickled_model_with_shared_columns_predicts_the_same(frame):
    model = glmm_ext.GLMM.from_formula("y ~ x + x2 + (1 + x | g)", frame)
    res = model.fit()
    back = pickle.loads(pickle.dumps(res))
    np.testing.assert_array_equal(back.model.design.Z, model.design.Z)
    np.testing.assert_array_equal(back.model.design.X, model.design.X)
    new = frame.iloc[10:40]
    np.testing.assert_allclose(back.predict(new), res.predict(new), rtol=1e-13)
    _same_fit(back.model.fit(), res)


@pytest.mark.parametrize("formula", ["y ~ x + (1 + x | g)", "y ~ 1 + (x || g)", "y ~ x + (1 + x | g) + (1 | h)"])
@pytest.mark.parametrize("dtype", ["Int64", "Float64"])
def test_a_nullable_column_with_a_missing_value_in_a_random_term_drops_its_row(formula, dtype):
    """pandas' nullable columns (pd.NA for a missing value) in a random-effects term: the row is dropped and
    reported, the fit equal to the float column with NaN (it was a TypeError from deep inside patsy), the
    caller's column untouched."""
    rng = np.random.default_rng(2)
    n = 240
    df = pd.DataFrame({"y": rng.normal(size=n), "x": pd.array(rng.integers(0, 5, n), dtype=dtype),
                       "g": rng.integers(0, 20, n), "h": rng.integers(0, 8, n)})
    df.loc[[3, 50], "x"] = pd.NA
    before = df.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = glmm_ext.GLMM.from_formula(formula, df).fit()
        ref = glmm_ext.GLMM.from_formula(formula, df.assign(x=df["x"].astype(float))).fit()
    assert res.nobs == n - 2 and res.model.design.n_dropped == 2
    assert res.llf == ref.llf
    np.testing.assert_array_equal(res.params, ref.params)
    pd.testing.assert_frame_equal(df, before)
