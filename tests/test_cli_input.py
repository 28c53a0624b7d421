"""CLI input that would mislead: numbers with a decimal comma, fits that did not converge.

* A ';'-separated file with decimal commas read with the default --decimal '.' turns numeric columns
  into text (a predictor would become a factor with a level per value: ~440 levels, NaN standard
  errors, exit 0).  Any column the model uses whose values are all numbers, some with ',', is refused
  (exit 2) with a hint to give --decimal ','; with it, the numbers equal those of the '.' file.
* A fit that did not converge (or has non-finite standard errors) prints its tables and exits 3.
"""
import json

import numpy as np
import pandas as pd
import pytest

import glmm_ext
from glmm_ext import cli


def make_data(seed=0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(30), 15)
    x = np.round(rng.normal(size=g.size), 3)
    t = np.round(rng.uniform(0.5, 2.0, size=g.size), 3)
    count = rng.poisson(np.exp(0.3 + 0.5 * x + rng.normal(0, 0.4, 30)[g]) * t)
    y = np.round(1 + 0.5 * x + rng.normal(size=30)[g] + rng.normal(size=g.size), 3)
    site = np.array([f"{a},{b}" for a, b in zip(g, g % 3)])  # group labels that hold a comma
    return pd.DataFrame({"y": y, "count": count, "x": x, "t": t, "g": g, "site": site,
                         "note": np.where(g % 2 == 0, "north,east", "south,west")})


def write(tmp_path, data, name="data.csv", **kw):
    path = tmp_path / name
    data.to_csv(path, index=False, **kw)
    return str(path)


def run(argv, capsys):
    """(exit status, stdout, stderr) of cli.main(argv)."""
    try:
        status = cli.main(argv)
    except SystemExit as stop:
        status = stop.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


COMMA_CASES = [  # (arguments after the file, the columns the message names)
    (["--formula", "y ~ x", "--groups", "g"], ["'y'", "'x'"]),
    (["--formula", "count ~ x", "--groups", "g", "--family", "poisson"], ["'x'"]),  # the 440-level factor
    (["--formula", "count ~ C(x)", "--groups", "g", "--family", "poisson"], ["'x'"]),
    (["--formula", "count ~ 1", "--groups", "g", "--family", "poisson", "--exposure", "t"], ["'t'"]),
    (["--formula", "y ~ x + (x | g)"], ["'y'", "'x'"]),
]


@pytest.mark.parametrize("args,named", COMMA_CASES, ids=[" ".join(a[:2]) + (" " + a[-1] if "--exposure" in a else "")
                                                         for a, _ in COMMA_CASES])
def test_decimal_commas_are_refused_with_a_hint(tmp_path, capsys, args, named):
    path = write(tmp_path, make_data(), sep=";", decimal=",")
    status, out, err = run([path, *args], capsys)
    assert status == 2
    assert "--decimal ','" in err and "decimal comma" in err
    for col in named:
        assert col in err
    assert "Traceback" not in err and out == ""


def test_with_decimal_comma_the_numbers_are_those_of_the_dot_file(tmp_path, capsys):
    data = make_data()
    comma = write(tmp_path, data, "comma.csv", sep=";", decimal=",")
    js = str(tmp_path / "fit.json")
    status, out, err = run([comma, "--formula", "count ~ x", "--groups", "g", "--family", "poisson",
                            "--decimal", ",", "--json", js], capsys)
    assert status == 0, err
    direct = glmm_ext.GLMM.from_formula("count ~ x", data, groups="g", family="poisson").fit()
    with open(js) as fh:
        fitted = json.load(fh)
    assert fitted["fe_params"]["x"] == pytest.approx(direct.params["x"], rel=1e-8)
    assert np.isfinite(list(fitted["bse"].values())).all()


@pytest.mark.parametrize("args", [
    ["--formula", "count ~ x", "--groups", "site", "--family", "poisson"],  # labels with commas are labels
    ["--formula", "count ~ x", "--groups", "g", "--family", "poisson"],     # 'note' (text with commas) unused
    ["--formula", "count ~ x + C(note)", "--groups", "g", "--family", "poisson"],  # text, not numbers
])
def test_text_with_commas_is_not_mistaken_for_numbers(tmp_path, capsys, args):
    path = write(tmp_path, make_data(), sep=";")  # decimal '.', text columns with commas
    status, out, err = run([path, *args], capsys)
    assert status == 0, err
    assert "decimal comma" not in err


def test_a_fit_that_did_not_converge_exits_3_after_its_tables(tmp_path, capsys):
    path = write(tmp_path, make_data())
    status, out, err = run([path, "--formula", "count ~ x", "--groups", "g", "--family", "poisson",
                            "--maxiter", "1"], capsys)
    assert status == cli.EXIT_NOT_CONVERGED == 3
    assert "did not converge" in err and "count ~ x" in err
    assert "Intercept" in out  # the tables are still printed
    status, out, err = run([path, "--formula", "count ~ x", "--groups", "g", "--family", "poisson"], capsys)
    assert status == 0 and err == ""


def test_the_exit_statuses_are_in_the_help(capsys):
    status, out, _ = run(["--help"], capsys)
    assert status == 0
    text = " ".join(out.split())
    assert "exit status" in text and "3 = the fit ran but did not converge" in text and "2 = bad input" in text


def test_the_detector_itself():
    frame = pd.DataFrame({"a": ["1,5", "2", "-0,25", None], "b": ["1.5", "2", "3", "4"], "c": ["x,y", "1,2", "3", "4"],
                          "d": [1.5, 2.0, 3.0, 4.0], "e": ["1,5", "2,5", "n/a", "3"]})
    assert cli.decimal_comma_columns(frame, list(frame.columns)) == ["a"]
