"""A plain formula (numeric columns and the intercept) is built from the columns without evaluating patsy on every
row (`formula._plain.plain_design`): its matrices, names and specification must be the ones statsmodels' formula
machinery gives, and every other formula must still go through that machinery."""
import pickle

import numpy as np
import pandas as pd
import pytest
from statsmodels.formula.formulatools import handle_formula_data

import glmm_ext
from glmm_ext.formula import _plain


@pytest.fixture
def frame():
    rng = np.random.default_rng(3)
    n = 240
    g = np.repeat(np.arange(24), 10)
    df = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(2.0, 3.0, size=n),
                       "k": rng.integers(0, 5, n), "flag": rng.random(n) < 0.4,
                       "word": rng.choice(["a", "b", "c"], n), "g": g.astype(str)})
    df["y"] = 1.0 + 0.5 * df["x1"] - 0.2 * df["x2"] + rng.normal(0, 0.7, 24)[g] + rng.normal(size=n)
    return df


PLAIN = ["y ~ x1 + x2", "y ~ 0 + x1 + x2", "y ~ x2 + x1 - 1", "y ~ x1 + x1", "y ~ 1", "y ~ x2 + k", "y~x1+x2"]


def _reference(formula, df, as_float=True):
    """statsmodels' own evaluation of the formula on the rows the model keeps (numeric columns as float, as the
    model reads them, unless ``as_float=False``)."""
    df = df.astype({"k": float, "flag": float}) if as_float else df
    (endog, exog), _, spec = handle_formula_data(df, None, formula, depth={"np": np}, missing="drop")
    return endog, exog, spec


@pytest.mark.parametrize("formula", PLAIN)
def test_plain_formula_design_equals_the_formula_engine(frame, formula):
    model = glmm_ext.GLMM.from_formula(formula, frame, groups="g")
    endog, exog, spec = _reference(formula, frame)
    assert model.exog_names == list(exog.columns)
    assert np.array_equal(model.exog, exog.to_numpy()) and np.array_equal(model.endog, endog.to_numpy()[:, 0])
    built = model.design_info
    assert list(built.column_names) == list(spec.column_names)
    assert [t.name() for t in built.terms] == [t.name() for t in spec.terms]
    res = model.fit()
    new = frame.head(7)
    assert np.allclose(res.predict(new), exog.to_numpy()[:7] @ res.fe_params.to_numpy())
    assert res.wald_test_terms(scalar=True).table.index.tolist() == [t.name() for t in spec.terms]
    again = pickle.loads(pickle.dumps(res))
    assert np.allclose(again.predict(new), res.predict(new))


@pytest.mark.parametrize("formula", PLAIN + ["y ~ x2 + k + flag"])  # an int and a bool column read as numbers
def test_plain_formulas_take_the_direct_path(frame, formula):
    frame = frame.astype({"k": float, "flag": float})
    built = _plain.plain_design(formula, frame, {"np": np}, "drop")
    assert built is not None
    (endog, exog), missing, spec = built
    ref_endog, ref_exog, _ = _reference(formula, frame)
    assert missing is None and exog.equals(ref_exog) and endog.equals(ref_endog)


@pytest.mark.parametrize("formula", ["y ~ np.log(x2 + 10)", "y ~ C(k)", "y ~ x1:x2", "y ~ x1 * x2", "y ~ I(2 * x1)",
                                     "y ~ x1 + word", "np.exp(y) ~ x1", "y ~ Q('x1')", "y ~ x1 + (x2)"])
def test_other_formulas_go_through_the_formula_engine(frame, formula):
    assert _plain.plain_design(formula, frame, {"np": np}, "drop") is None
    model = glmm_ext.GLMM.from_formula(formula, frame, groups="g")
    _, exog, _ = _reference(formula, frame, as_float="C(k)" not in formula)
    assert model.exog_names == list(exog.columns) and np.allclose(model.exog, exog.to_numpy())


def test_plain_formula_keeps_missing_value_handling(frame):
    holes = frame.copy()
    holes.loc[[3, 50, 51], "x1"] = np.nan
    holes.loc[7, "y"] = np.inf
    holes.loc[9, "g"] = None
    before = holes.copy()
    model = glmm_ext.GLMM.from_formula("y ~ x1 + x2", holes, groups="g")
    assert model.nobs == len(frame) - 5 and model.design.n_dropped == 5
    assert model.design.drop_reasons == {"y": 1, "x1": 3, "g": 1}
    keep = holes.index.difference([3, 50, 51, 7, 9])
    _, exog, _ = _reference("y ~ x1 + x2", frame.loc[keep])
    assert np.array_equal(model.exog, exog.to_numpy())
    pd.testing.assert_frame_equal(holes, before)  # the caller's data untouched
    with pytest.raises(ValueError, match="missing='raise'.*x1 \\(3\\)"):
        glmm_ext.GLMM.from_formula("y ~ x1 + x2", holes, groups="g", missing="raise")


def test_plain_formula_leaves_the_group_column_alone(frame):
    data = frame.rename(columns={"g": 7})
    model = glmm_ext.GLMM.from_formula("y ~ x1", data, groups=7)
    assert model.group_name == "7" and data[7].name == 7 and list(data.columns)[-2] == 7


SPECIFICATIONS = ["y ~ x1", "y ~ 0 + x1", "y ~ x1 - 1", "y ~ -1 + x1 + x2", "y ~ 1", "y ~ x2 + x1 + 1",
                  "y ~ x_1 + x2", "y ~ x2 + x2 + x1", "y ~ x1 + x2 + 0", "y~x1+x2-1"]


def _same_specification(built, ref):
    """Every part of two patsy DesignInfos that statsmodels or patsy reads (names, terms, factors with their
    origins and memorised states, codings)."""
    assert built.column_names == ref.column_names and built.term_names == ref.term_names
    assert built.terms == ref.terms and built.describe() == ref.describe()
    assert built.term_name_slices == ref.term_name_slices and built.term_slices == ref.term_slices
    assert set(built.factor_infos) == set(ref.factor_infos)
    for factor, info in ref.factor_infos.items():
        mine = built.factor_infos[factor]
        assert [f.origin for f in built.factor_infos if f == factor] == [factor.origin]
        assert (mine.type, mine.num_columns, mine.categories) == (info.type, info.num_columns, info.categories)
        assert set(mine.state) == set(info.state)
        for key, value in info.state.items():
            if key == "eval_env":
                assert [dict(d) for d in mine.state[key].namespace._dicts] == \
                    [dict(d) for d in value.namespace._dicts] and mine.state[key].flags == value.flags
            else:
                assert mine.state[key] == value
    for term, codings in ref.term_codings.items():
        assert [(c.factors, c.contrast_matrices, c.num_columns) for c in built.term_codings[term]] == \
            [(c.factors, c.contrast_matrices, c.num_columns) for c in codings]


@pytest.mark.parametrize("formula", SPECIFICATIONS)
def test_plain_specification_is_the_formula_engines(frame, formula):
    import patsy

    frame = frame.rename(columns={"x1": "x_1"}) if "x_1" in formula else frame
    env = {"np": np, "x2": "a caller's variable of the same name"}  # a name of both: the column wins, as patsy
    built = _plain.plain_design(formula, frame, env, "drop")
    assert built is not None
    (_, exog), _, spec = built
    (_, ref_exog), _, ref = handle_formula_data(frame, None, formula, depth=env, missing="drop")
    _same_specification(spec, ref)
    assert exog.equals(ref_exog)
    new = frame.sample(9, random_state=1).drop(columns=["y"])
    new.loc[new.index[2], new.columns[0]] = np.nan  # a missing value predicts as patsy builds it
    keep_nan = patsy.NAAction(NA_types=[])
    mine = patsy.build_design_matrices([spec], new, NA_action=keep_nan, return_type="dataframe")[0]
    theirs = patsy.build_design_matrices([ref], new, NA_action=keep_nan, return_type="dataframe")[0]
    pd.testing.assert_frame_equal(mine, theirs)
    if spec.terms[-1].factors:  # a column missing from new data: patsy's own error, pointing into the formula
        missing = spec.terms[-1].factors[0].code
        errors = []
        for info in (spec, ref):
            with pytest.raises(patsy.PatsyError) as caught:
                patsy.build_design_matrices([info], new.drop(columns=[missing]), NA_action=keep_nan)
            errors.append(str(caught.value))
        assert errors[0] == errors[1]


def test_plain_specification_through_the_model(frame):
    """The model's specification is the engine's too: statsmodels' summary names, term tests and prediction."""
    model = glmm_ext.GLMM.from_formula("y ~ x2 + x1 - 1", frame, groups="g")
    _, _, ref = _reference("y ~ x2 + x1 - 1", frame)
    _same_specification(model.design_info, ref)
    assert model.data.xnames == ["x2", "x1"] and model.k_constant == 0
    res = model.fit()
    assert list(res.params.index[:2]) == ["x2", "x1"]
    assert res.wald_test_terms(scalar=True).table.index.tolist() == ["x2", "x1"]
    again = pickle.loads(pickle.dumps(res))
    _same_specification(again.model.design_info, ref)


@pytest.mark.parametrize("formula", ["y ~ x1 +", "y ~ - x1", "y ~ x1 + Intercept", "y ~ x1 ~ x2", "y + x1 ~ x2"])
def test_plain_specification_leaves_odd_formulas_to_the_engine(frame, formula):
    frame = frame.assign(Intercept=frame["x2"])
    assert _plain.plain_design(formula, frame, {"np": np}, "drop") is None


@pytest.mark.parametrize("expr", ["1 + x1", "0 + x1", "x1", "x1 + k - 1", "k + x1 + 1", "-1 + x2 + x1"])
def test_plain_random_effects_specification_is_patsys(frame, expr):
    """A plain z expression's specification (made without reading the data) is the one patsy builds from them,
    for float and int columns, and rebuilds the same z columns on new data."""
    import patsy
    from glmm_ext.formula import _terms

    spec = _terms.TermSpec(expr, ("g",), True, f"({expr} | g)")
    built = _terms._z_info(spec, frame)
    ref = patsy.dmatrix(expr, frame, eval_env=patsy.EvalEnvironment([{"np": np}]), NA_action="drop").design_info
    _same_specification(built, ref)
    new = frame.sample(6, random_state=2)
    np.testing.assert_array_equal(patsy.build_design_matrices([built], new)[0],
                                  patsy.build_design_matrices([ref], new)[0])
    model = glmm_ext.GLMM.from_formula(f"y ~ x2 + ({expr} | g)", frame)
    assert model.random_design.names == list(ref.column_names)


@pytest.mark.parametrize("formula", ["y ~ 0", "y ~ -1", "y ~ 1 - 1"])
def test_plain_formula_without_columns_is_refused_as_before(frame, formula):
    with pytest.raises(ValueError):
        glmm_ext.GLMM.from_formula(formula, frame, groups="g")


@pytest.mark.parametrize("formula", ["y ~ x1 + x2", "y ~ x2 + (1 + x1 | g)"])
def test_model_data_do_not_follow_later_changes_to_the_callers_frame(frame, formula):
    """The model may share the data's values (copy-on-write) but a later write to the data never reaches it."""
    data = frame.copy()
    model = glmm_ext.GLMM.from_formula(formula, data, groups="g")
    kept = (model.data.frame.copy(), model.exog.copy(), model.endog.copy())
    z = model.random_design.Z.copy() if model.random_design is not None else None
    data.loc[:, ["y", "x1", "x2"]] = 99.0
    data["x1"] *= 2
    pd.testing.assert_frame_equal(model.data.frame, kept[0])
    assert np.array_equal(model.exog, kept[1]) and np.array_equal(model.endog, kept[2])
    if z is not None:
        assert np.array_equal(model.random_design.Z, z)
        assert not np.any(model.random_design.source.to_numpy() == 99.0)
    assert not np.any(model.design.X == 99.0)
    other = frame.copy()
    again = glmm_ext.GLMM.from_formula(formula, other, groups="g")
    again.data.frame.loc[again.data.frame.index[0], "x1"] = -5.0  # a write on the model's side never reaches the data
    pd.testing.assert_frame_equal(other, frame)
