"""The files the command line writes (--blups, --diagnostics, --json): their checks before the fit, their
content, and spreadsheet-safe labels (every prefix OWASP lists; a line break inside a label).  In-process."""
import csv
import json
import re

import pandas as pd
import pytest

import glmm_ext
from glmm_ext.cli import spreadsheet_safe

from conftest import run_cli

CLI_DF = glmm_ext.simulate("gaussian", n_groups=12, group_size=5, seed=1)


@pytest.fixture(scope="module")
def csv_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    CLI_DF.assign(g=CLI_DF.g.map(lambda v: f"=HYPERLINK{v}" if v == 0 else f"s{v}")).to_csv(folder / "d.csv", index=False)
    CLI_DF.to_csv(folder / "semi.csv", index=False, sep=";")
    return folder


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
    result = json.loads((csv_file / "r.json").read_text())
    assert set(result["pvalues"]) == {"Intercept", "x1"} and len(result["blup_se"]) == 12
    assert result["alpha"] is None and result["theta"] is None  # the negative binomial's only
    assert "--blups" in out.stdout  # the footer points CLI users at the full BLUP table


def test_cli_reads_semicolon_csv_and_keeps_group_labels(csv_file):
    out = run_cli(["semi.csv", "--formula", "y ~ x1", "--groups", "g"], csv_file)
    assert out.returncode == 0, out.stderr
    assert re.search(r"No. Observations:\s+60", out.stdout)
    holes = CLI_DF.assign(g=(CLI_DF.g + 1).astype("Int64"))
    holes.loc[3, "g"] = pd.NA  # an integer column with an empty cell: pandas would read it as float
    holes.to_csv(csv_file / "holes.csv", index=False)
    out = run_cli(["holes.csv", "--formula", "y ~ x1", "--groups", "g", "--blups", "h.csv"], csv_file)
    assert out.returncode == 0, out.stderr
    labels = pd.read_csv(csv_file / "h.csv", dtype=str)["Group"]
    assert sorted(labels, key=int) == [str(i) for i in range(1, 13)]


# OWASP's list of the first characters a spreadsheet reads as a formula: the four the docs name, tab and CR
INJECTION_PREFIXES = ["=", "+", "-", "@", "\t", "\r"]


def injected_labels(n_groups):
    """Group labels, one for each dangerous prefix, then harmless ones ("s6" ...)."""
    bad = [f"{p}HYPERLINK(1)" if p in "=+-@" else f"{p}=cmd|' /C calc'!A0" for p in INJECTION_PREFIXES]
    bad += ["a\r=1+1", "b\n@SUM(1)"]  # a line break inside a label must not start a row with a formula
    return bad + [f"s{k}" for k in range(len(bad), n_groups)]


@pytest.mark.parametrize("formula", ["y ~ x1", "y ~ x1 + (x1 | g)"])
def test_every_csv_the_cli_writes_escapes_every_prefix(tmp_path, formula):
    labels = injected_labels(12)
    data = CLI_DF.assign(g=CLI_DF.g.map(dict(enumerate(labels))))
    data.to_csv(tmp_path / "d.csv", index=False, quoting=csv.QUOTE_NONNUMERIC)  # quoted: a label may hold a CR
    groups = [] if "|" in formula else ["--groups", "g"]
    out = run_cli(["d.csv", "--formula", formula, *groups, "--blups", "b.csv", "--diagnostics", "dg.csv",
                   "--json", "r.json"], tmp_path)
    assert out.returncode == 0, out.stderr
    escaped = {v: (f"'{v}" if v[:1] in INJECTION_PREFIXES else v) for v in labels}
    blups = pd.read_csv(tmp_path / "b.csv", dtype={"Group": str}, keep_default_na=False)
    assert sorted(blups["Group"]) == sorted(escaped.values())
    diag = pd.read_csv(tmp_path / "dg.csv", dtype={"g": str}, keep_default_na=False)
    assert list(diag["g"]) == [escaped[v] for v in data["g"]]
    for name in ("b.csv", "dg.csv"):  # no cell of either file, as a CSV reader splits it, starts dangerously
        with open(tmp_path / name, newline="") as fh:
            cells = [c for row in csv.reader(fh) for c in row]
        bad = [c for c in cells if c and c[0] in "=+@\t\r\n" or (c[:1] == "-" and not re.fullmatch(r"-[0-9.e+-]+", c))]
        assert not bad, (name, bad)
        assert sum(c.startswith("'") for c in cells) >= (len(INJECTION_PREFIXES) if name == "b.csv" else 1)
    # the JSON is for programs, not spreadsheets: the labels stay exactly as in the data
    result = json.loads((tmp_path / "r.json").read_text())
    assert sorted(result["blups"]) == sorted(labels)


def test_spreadsheet_safe_leaves_numbers_and_other_text_alone():
    assert spreadsheet_safe([-1.5, 3, "a=b", " x", "", None]) == [-1.5, 3, "a=b", " x", "", None]
    assert spreadsheet_safe(list(INJECTION_PREFIXES)) == [f"'{p}" for p in INJECTION_PREFIXES]


def test_json_of_a_negative_binomial_fit_keeps_scale_one_and_alpha_apart(tmp_path):
    """--json: "scale" is 1 as statsmodels' NB GLM (and as res.scale); alpha and theta = 1/alpha under their names,
    the values the API gives and the summary prints."""
    df = glmm_ext.simulate("negativebinomial", n_groups=20, group_size=10, scale=0.5, seed=3)
    df.to_csv(tmp_path / "nb.csv", index=False)
    out = run_cli(["nb.csv", "--formula", "y ~ x1", "--groups", "g", "--family", "negativebinomial",
                   "--json", "r.json"], tmp_path)
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "r.json").read_text())
    res = glmm_ext.GLMM.from_formula("y ~ x1", df, groups="g", family=glmm_ext.make_family("negativebinomial")).fit()
    assert result["scale"] == 1.0 and result["llf"] == pytest.approx(res.llf, rel=1e-10)
    assert result["alpha"] == pytest.approx(res.alpha, rel=1e-10) and result["theta"] == pytest.approx(res.theta)
    assert f"{res.alpha:.4f}" in out.stdout
