"""Input hardening (issue 11, items 7-10): every bad input is a ValueError naming the thing; no formula runs code."""
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf

import glmm_ext

DF = glmm_ext.simulate("gaussian", n_groups=12, group_size=5, seed=1)
M = glmm_ext.GLMM.from_formula


def fit(formula="y ~ x1", data=DF, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return M(formula, data, groups=kw.pop("groups", "g"), **kw).fit()


def with_object_x1(values):
    df = DF.copy()
    df["x1"] = df["x1"].astype(object)
    for row, value in values.items():
        df.loc[row, "x1"] = value
    return df


BAD = [
    ("datetime response", lambda: M("y ~ x1", DF.assign(y=pd.date_range("2020", periods=60)), groups="g"),
     ["'y'", "dates"]),
    ("timedelta response", lambda: M("y ~ x1", DF.assign(y=pd.to_timedelta(np.arange(60), "D")), groups="g"),
     ["'y'", "timedelta"]),
    ("complex response", lambda: M("y ~ x1", DF.assign(y=DF.y + 1j), groups="g"), ["'y'", "complex"]),
    ("object response", lambda: M("y ~ x1", DF.assign(y=[object()] * 60), groups="g"), ["'y'", "no numbers"]),
    ("complex predictor", lambda: M("y ~ x1", DF.assign(x1=DF.x1 + 1j), groups="g"), ["'x1'", "complex"]),
    ("duplicated column", lambda: M("y ~ x1", pd.concat([DF, DF[["x1"]]], axis=1), groups="g"),
     ["more than one column", "'x1'"]),
    ("response among predictors", lambda: M("y ~ y", DF, groups="g"), ["'y'", "among the predictors"]),
    ("patsy IndexError", lambda: M("y ~ C(x1 > 0, 0)", DF, groups="g"), ["C(x1 > 0, 0)", "IndexError"]),
    ("3-D exog", lambda: glmm_ext.GLMM(DF.y.to_numpy(), np.ones((60, 2, 2)), DF.g.to_numpy()), ["exog", "3 dim"]),
    ("reml not a bool", lambda: M("y ~ x1", DF, groups="g").fit(reml="no"), ["reml", "'no'"]),
    ("groups Series from other rows", lambda: M("y ~ x1", DF, groups=pd.Series(DF.g.to_numpy(), index=DF.index + 100)),
     ["groups", "index"]),
    ("offset Series from other rows", lambda: M("y ~ x1", DF, groups="g", offset=pd.Series(0.0, index=range(5))),
     ["offset", "index"]),
    ("missing option", lambda: M("y ~ x1", DF, groups="g", missing="skip"), ["missing", "'skip'"]),
    ("formula mode", lambda: M("y ~ x1", DF, groups="g", formula_mode="unsafe"), ["formula_mode", "'unsafe'"]),
    ("groups column 7 absent", lambda: M("y ~ x1", DF, groups=7), ["groups column 7", "not in the data"]),
    ("groups a number", lambda: M("y ~ x1", DF, groups=1.5), ["groups column 1.5", "not in the data"]),
    ("no rows", lambda: M("y ~ x1", DF.iloc[:0], groups="g"), ["no rows"]),
    ("eval_env of the wrong kind", lambda: M("y ~ x1", DF, groups="g", eval_env="x"), ["eval_env", "'x'"]),
    ("unknown name in python mode", lambda: M("y ~ foo(x1)", DF, groups="g"), ["foo", "not defined"]),
    ("predict without a column", lambda: M("y ~ x1", DF, groups="g").fit().predict(DF[["g"]]),
     ["new data", "x1"]),
    ("predict groups of the wrong length", lambda: M("y ~ x1", DF, groups="g").fit().predict(DF.head(3), groups=[1]),
     ["groups has 1 values", "3 rows"]),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_input_names_the_problem(case):
    _, call, fragments = case
    with pytest.raises(ValueError) as info:
        call()
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


def test_series_are_aligned_on_the_data_index():
    shuffled = DF["g"].sample(frac=1.0, random_state=2)  # same labels, permuted index
    assert fit(groups=shuffled).llf == pytest.approx(fit().llf, abs=1e-10)
    offset = pd.Series(np.linspace(0, 1, 60), index=DF.index).sample(frac=1.0, random_state=3)
    a = fit(offset=offset)
    b = fit(offset=offset.sort_index().to_numpy())
    assert a.llf == pytest.approx(b.llf, abs=1e-10)


def test_integer_column_name_and_tidy_labels():
    df = DF.rename(columns={"g": 7})
    df[7] = df[7].astype(float)
    df.loc[4, 7] = np.nan  # an int column with a missing value becomes float in pandas
    res = fit(data=df, groups=7)
    assert res.n_dropped == 1 and res.model.group_name == "7"
    assert res.model.group_labels.dtype.kind == "i"


def test_mostly_numbers_is_numeric_with_rows_dropped():
    res = fit(data=with_object_x1({2: "n/a", 9: "?"}))
    assert res.nobs == 58 and res.model.design.drop_reasons == {"x1": 2}
    assert list(res.params.index) == ["Intercept", "x1"]


def test_infinite_group_label_is_missing():
    df = DF.assign(g=DF.g.astype(float))
    df.loc[[0, 1], "g"] = [np.inf, -np.inf]
    res = fit(data=df)
    assert res.n_dropped == 2 and res.model.design.drop_reasons == {"g": 2}


def test_unused_categorical_levels_are_dropped():
    df = DF.assign(t=pd.Categorical(np.where(DF.x1 > 0, "a", "b"), categories=["a", "b", "never"]))
    res = fit("y ~ C(t)", data=df)
    assert list(res.params.index) == ["Intercept", "C(t)[T.b]"]


def test_binomial_warnings():
    df = glmm_ext.simulate("binomial", n_groups=10, group_size=6, trials=5, seed=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        M("successes + failures ~ x1", df.assign(successes=df.successes + 0.5), groups="g",
          family=sm.families.Binomial())
    assert any("non-integer numbers of successes" in str(w.message) for w in caught)
    single = df.assign(g=np.arange(len(df)), y=(df.successes > 2).astype(int))
    with pytest.warns(UserWarning, match="weakly"):
        M("y ~ x1", single, groups="g", family=sm.families.Binomial())


def test_formula_is_evaluated_once_like_statsmodels():
    calls = {"glmm": 0, "sm": 0}

    def counted(x, key):
        calls[key] += 1
        return x

    M("y ~ I(counted(x1, 'glmm'))", DF, groups="g")
    smf.ols("y ~ I(counted(x1, 'sm'))", DF)
    assert calls["glmm"] == calls["sm"]


def test_values_the_formula_makes_non_finite_are_dropped_and_reported():
    df = DF.assign(x1=DF.x1.abs() + 0.1)
    df.loc[3, "x1"] = 1e200  # squares to inf
    res = fit("y ~ I(x1 ** 2)", data=df, formula_mode="safe")
    assert res.n_dropped == 1 and res.model.design.drop_reasons == {"I(x1 ** 2)": 1}
    with pytest.raises(ValueError, match="I\\(x1 \\*\\* 2\\)"):
        M("y ~ I(x1 ** 2)", df, groups="g", missing="raise")
    df.loc[[5, 6], "x1"] = -1.0  # log of a negative number: NaN, dropped by the formula engine
    res = fit("y ~ np.log(x1)", data=df)
    assert res.n_dropped == 2 and res.model.design.drop_reasons == {"NaN from evaluating the formula": 2}
