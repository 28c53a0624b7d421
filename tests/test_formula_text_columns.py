"""Columns of words reach the formula engine as pandas Categoricals (a faster evaluation): the design, the
names, predictions, pickles and errors are those of the words themselves; bool predictors predict."""
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest

import glmm_ext
import glmm_ext.model as glmm_model
from glmm_ext.formula._levels import categorical_frame


def _frame(seed=0, n=300):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "y": rng.normal(size=n),
        "colour": pd.Series(rng.choice(["red", "Blue", "green", "ämber"], n), dtype=object),
        "size": rng.choice(["S", "M", "L"], n),  # the pandas default string dtype
        "flag": rng.random(n) > 0.4,
        "x": rng.normal(size=n),
        "g": rng.integers(0, 15, n),
    })
    df.loc[[3, 17], "colour"] = np.nan  # dropped rows (a missing word)
    df.loc[[5], "x"] = np.nan
    df["y"] += (df["colour"] == "red") * 0.8 + df["flag"] * 0.5 + rng.normal(0, 0.6, 15)[df["g"]]
    return df


FORMULAS = ["y ~ colour + size + flag + x", "y ~ C(colour) * x + C(size, levels=['S', 'M', 'L']) + flag",
            "y ~ C(size, Treatment('M')) + colour:x + flag"]


def _plain_model(formula, df, **kw):
    """The model as statsmodels' formula engine builds it from the words (no conversion)."""
    original = glmm_model.categorical_frame
    glmm_model.categorical_frame = lambda frame, formula: frame
    try:
        return glmm_ext.GLMM.from_formula(formula, df, **kw)
    finally:
        glmm_model.categorical_frame = original


@pytest.mark.parametrize("formula", FORMULAS)
def test_design_and_names_equal_those_of_the_words(formula):
    df = _frame()
    before = df.copy()
    fast = glmm_ext.GLMM.from_formula(formula, df, groups="g")
    plain = _plain_model(formula, df, groups="g")
    pd.testing.assert_frame_equal(df, before)  # the caller's data untouched
    assert fast.exog_names == plain.exog_names
    np.testing.assert_array_equal(fast.exog, plain.exog)
    np.testing.assert_array_equal(fast.endog, plain.endog)
    assert fast.design.drop_reasons == plain.design.drop_reasons == {"colour": 2, "x": 1}
    assert fast.data.frame["colour"].dtype == object  # the model keeps the words
    assert fast.design_info.column_names == plain.design_info.column_names


def test_conversion_is_the_sorted_words_and_only_for_plain_factors():
    df = _frame().dropna()
    out = categorical_frame(df, "y ~ colour + C(size, levels=['S', 'M', 'L']) + x")
    assert list(out["colour"].cat.categories) == sorted(df["colour"].unique())
    assert list(out["size"].cat.categories) == ["S", "M", "L"]
    assert df["colour"].dtype == object and out is not df
    # used inside other code, or levels that miss a value: left as words (patsy's own behaviour and errors)
    for formula in ("y ~ I(colour == 'red') + x", "y ~ colour.str.len() + x", "y ~ C(size, levels=['S', 'M'])"):
        kept = categorical_frame(df, formula)
        assert not any(isinstance(kept[c].dtype, pd.CategoricalDtype) for c in kept.columns), formula


def test_predict_with_words_in_another_order_unseen_level_and_pickle():
    df = _frame()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = glmm_ext.GLMM.from_formula(FORMULAS[0], df, groups="g").fit()
        plain = _plain_model(FORMULAS[0], df, groups="g").fit()
    assert np.isclose(fast.llf, plain.llf, rtol=0, atol=1e-10)
    new = pd.DataFrame({"colour": ["green", "red", "ämber", "Blue"], "size": ["L", "S", "M", "S"],
                        "flag": [True, False, True, False], "x": [0.1, -1.0, 2.0, 0.0]})
    p = fast.predict(new)
    np.testing.assert_allclose(p, plain.predict(new), rtol=1e-12)
    beta = fast.params
    by_hand = (beta["Intercept"] + beta["colour[T.green]"] + beta["flag"] + 0.1 * beta["x"])
    assert np.isclose(np.asarray(p)[0], by_hand)  # "L" sorts first: the reference level
    assert "size[T.L]" not in beta.index and "colour[T.Blue]" not in beta.index
    again = pickle.loads(pickle.dumps(fast))
    np.testing.assert_allclose(again.predict(new), p, rtol=1e-12)
    _assert_same_unseen_level_error(fast, plain, new)


def _assert_same_unseen_level_error(fast, plain, new):
    """An unseen colour level: the fast path's error names it and is word for word the plain path's."""
    unseen = new.assign(colour=["green", "purple", "red", "Blue"])
    with pytest.raises(ValueError, match="purple") as fast_error:
        fast.predict(unseen)
    with pytest.raises(ValueError) as plain_error:
        plain.predict(unseen)
    assert str(fast_error.value) == str(plain_error.value)


def test_bool_predictor_predicts_as_fitted():
    df = _frame().dropna()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = glmm_ext.GLMM.from_formula("y ~ flag + x", df, groups="g").fit()
    new = pd.DataFrame({"flag": [True, False], "x": [0.5, 0.5]})
    before = new.copy()
    p = np.asarray(res.predict(new))
    pd.testing.assert_frame_equal(new, before)
    assert np.isclose(p[0] - p[1], res.params["flag"])
    np.testing.assert_allclose(p, np.asarray(res.predict(new.astype({"flag": float}))), rtol=1e-12)


def test_engine_data_built_once_and_read_only():
    df = _frame().dropna()
    model = glmm_ext.GLMM.from_formula("y ~ flag + x", df, groups="g")
    design = model.design
    flags = [getattr(design, name).flags.writeable for name in ("y", "X", "offset")]
    data = design.engine_data()
    assert design.engine_data() is data
    with pytest.raises(ValueError):
        data.X[0, 0] = 1.0
    with pytest.raises(ValueError):
        data.y[0] = 1.0
    assert [getattr(design, name).flags.writeable for name in ("y", "X", "offset")] == flags


C_FORMULA = "y ~ C(colour) + C(size, levels=['S', 'M', 'L']) + C(colour):x + flag"


def test_c_of_a_converted_column_is_coded_in_one_step(monkeypatch):
    # patsy's value-by-value route tests each value for missingness; the C(col) terms must not take it
    import patsy.missing

    calls = []
    original = patsy.missing.NAAction.is_categorical_NA
    monkeypatch.setattr(patsy.missing.NAAction, "is_categorical_NA",
                        lambda self, value: calls.append(value) or original(self, value))
    df = _frame()
    fast = glmm_ext.GLMM.from_formula(C_FORMULA, df, groups="g")
    assert calls == []
    plain = _plain_model(C_FORMULA, df, groups="g")
    assert len(calls) > 0  # the words themselves do take it (the test can see the slow route)
    assert fast.exog_names == plain.exog_names
    np.testing.assert_array_equal(fast.exog, plain.exog)
    assert fast.design_info.term_names == plain.design_info.term_names


def test_c_terms_predict_wald_and_pickle_as_the_words():
    df = _frame()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = glmm_ext.GLMM.from_formula(C_FORMULA, df, groups="g").fit()
        plain = _plain_model(C_FORMULA, df, groups="g").fit()
    assert np.isclose(fast.llf, plain.llf, rtol=0, atol=1e-10)
    new = pd.DataFrame({"colour": ["green", "red", "ämber", "Blue"], "size": ["L", "S", "M", "S"],
                        "flag": [True, False, True, False], "x": [0.1, -1.0, 2.0, 0.0]})
    p = np.asarray(fast.predict(new))
    np.testing.assert_allclose(p, np.asarray(plain.predict(new)), rtol=1e-12)
    # the caller's own Categoricals, categories in another order: read by value, as patsy does
    reordered = new.assign(colour=pd.Categorical(new["colour"], categories=["red", "ämber", "green", "Blue"]),
                           size=pd.Categorical(new["size"], categories=["M", "L", "S"]))
    np.testing.assert_allclose(np.asarray(fast.predict(reordered)), p, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(pickle.loads(pickle.dumps(fast)).predict(new)), p, rtol=1e-12)
    wald_fast, wald_plain = fast.wald_test_terms(), plain.wald_test_terms()
    assert list(wald_fast.table.index) == list(wald_plain.table.index)
    np.testing.assert_allclose(wald_fast.table["statistic"], wald_plain.table["statistic"], rtol=1e-8)
    _assert_same_unseen_level_error(fast, plain, new)


def test_a_callers_own_c_is_kept():
    df = _frame().dropna()
    seen = []

    def C(values):  # noqa: N802 - the caller's own C, found in this namespace
        seen.append(type(values))
        return np.asarray(values == "red", dtype=float)

    model = glmm_ext.GLMM.from_formula("y ~ C(colour) + x", df, groups="g")
    assert seen and "C(colour)" in model.exog_names
    np.testing.assert_array_equal(model.exog[:, model.exog_names.index("C(colour)")],
                                  (df["colour"] == "red").to_numpy(float))
