"""Input hardening (issue 11, items 7-10): every bad input is a ValueError naming the thing; no formula runs code."""
import os
import re
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


INJECTIONS = ["y ~ x1 + I(__import__('os').system('touch {f}'))",
              "y ~ x1 + I(open('{f}', 'w').write('x'))",
              "y ~ x1 + C(x1, __import__('pathlib').Path('{f}').touch())",
              "y ~ x1 + np.log(__builtins__.open('{f}', 'w'))",
              "y ~ x1 + I((lambda: open('{f}', 'w'))())",
              "y ~ x1 + Q('x1'.join([open('{f}', 'w').name]))"]


@pytest.mark.parametrize("template", INJECTIONS)
def test_safe_mode_runs_no_code(template, tmp_path):
    target = tmp_path / "pwned"
    formula = template.format(f=target)
    with pytest.raises(ValueError, match="formula"):
        M(formula, DF, groups="g", formula_mode="safe")
    assert not target.exists()


class CliRun:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run_cli(args, cwd):
    """The command line in-process (a subprocess costs an import of statsmodels per call)."""
    import contextlib
    import io

    from glmm_ext.cli import main

    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                code = main(list(args))
            except SystemExit as exc:
                code = exc.code
    finally:
        os.chdir(here)
    return CliRun(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def csv_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    DF.assign(g=DF.g.map(lambda v: f"=HYPERLINK{v}" if v == 0 else f"s{v}")).to_csv(folder / "d.csv", index=False)
    DF.to_csv(folder / "semi.csv", index=False, sep=";")
    return folder


def test_cli_is_always_safe(csv_file):
    target = csv_file / "pwned"
    for formula in ("y ~ x1 + I(__import__('os').system('touch pwned'))", "y ~ x1 + I(exit(7))"):
        out = run_cli(["d.csv", "--formula", formula, "--groups", "g"], csv_file)
        assert out.returncode == 2 and "safe" in out.stderr, out.stderr
    assert not target.exists()


def test_cli_output_checks_and_spreadsheet_labels(csv_file):
    out = run_cli(["d.csv", "--formula", "y ~ x1", "--groups", "g", "--json", "nope/r.json"], csv_file)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "--json" in out.stderr
    assert out.stdout == ""  # refused before the fit
    for args, message in ((["--blup-rows", "-1"], "--blup-rows"), (["--conf-level", "0.95"], "e.g. 95")):
        out = run_cli(["d.csv", "--formula", "y ~ x1", "--groups", "g", *args], csv_file)
        assert out.returncode == 2 and message in out.stderr
    out = run_cli(["d.csv", "--formula", "y ~ x1", "--groups", "g", "--blups", "b.csv", "--diagnostics", "dg.csv",
                   "--json", "r.json"], csv_file)
    assert out.returncode == 0, out.stderr
    assert "'=HYPERLINK0" in (csv_file / "b.csv").read_text()
    diag = pd.read_csv(csv_file / "dg.csv")
    assert {"g", "y", "fitted_values"} <= set(diag.columns) and diag["g"].iloc[0] == "'=HYPERLINK0"
    import json
    result = json.loads((csv_file / "r.json").read_text())
    assert set(result["pvalues"]) == {"Intercept", "x1"} and len(result["blup_se"]) == 12
    assert "--blups" in out.stdout  # the footer points CLI users at the full BLUP table


def test_cli_reads_semicolon_csv_and_keeps_group_labels(csv_file):
    out = run_cli(["semi.csv", "--formula", "y ~ x1", "--groups", "g"], csv_file)
    assert out.returncode == 0, out.stderr
    assert re.search(r"No. Observations:\s+60", out.stdout)
    holes = DF.assign(g=(DF.g + 1).astype("Int64"))
    holes.loc[3, "g"] = pd.NA  # an integer column with an empty cell: pandas would read it as float
    holes.to_csv(csv_file / "holes.csv", index=False)
    out = run_cli(["holes.csv", "--formula", "y ~ x1", "--groups", "g", "--blups", "h.csv"], csv_file)
    assert out.returncode == 0, out.stderr
    labels = pd.read_csv(csv_file / "h.csv", dtype=str)["Group"]
    assert sorted(labels, key=int) == [str(i) for i in range(1, 13)]


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


ACCEPTED = ["y ~ x1 + x2", "y ~ x1 * x2 - 1", "y ~ x1:x2 + x1", "y ~ (x1 + x2) ** 2", "y ~ x1 / x2",
            "y ~ Q('x 1') + x2", "y ~ C(k) + x1", "y ~ C(k, Treatment(reference='c')) + x1",
            "y ~ C(k, Treatment('b'))", "y ~ I(x1 ** 2) + I(-x2 / 3 + 1)", "y ~ np.log(x3) + np.sqrt(x3)",
            "y ~ np.exp(x1 / 10) + np.abs(x1 - 1) + np.log1p(x3)", "y ~ center(x1) + standardize(x2) + scale(x3)",
            "y ~ 0 + x1", "y ~ -1 + x1 + 1"]


@pytest.mark.parametrize("formula", ACCEPTED)
def test_safe_mode_accepts_the_documented_grammar(formula):
    x3 = np.random.default_rng(4).gamma(2.0, 1.0, 60)
    df = DF.assign(**{"x 1": DF.x1, "x3": x3, "k": np.array(["a", "b", "c"])[np.arange(60) % 3]})
    safe, python = fit(formula, data=df, formula_mode="safe"), fit(formula, data=df)
    assert safe.llf == pytest.approx(python.llf, abs=1e-10)
    assert list(safe.params.index) == list(python.params.index)
