"""Main job and command line as a user starts it (a subprocess): the tables, the options, one-line refusals.
The files it writes and its safe labels: test_cli_output.py (in-process, fast)."""
import json
import os
import subprocess
import sys

import pandas as pd
import pytest

import glmm_ext
from glmm_ext.cli import main

from conftest import run_cli


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(args, tmp_path=None):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "glmm_ext", *args], capture_output=True, text=True,
                          cwd=tmp_path, env=env)


def test_main_job_prints_every_table():
    out = run([])
    assert out.returncode == 0, out.stderr
    for piece in ("Random Effects", "ICC", "Design effect", "Fixed Effects", "Lower 95%", "Model Fit",
                  "REML log-likelihood", "BLUP", "... 50 more groups (--blups FILE writes all 60)", "Observations", "Rows dropped",
                  "Latent scale", "OR", "OR low", "Log-likelihood (Laplace)"):
        assert piece in out.stdout, piece
    assert out.stdout.count("Generalized Linear Mixed Model Results") == 2


def test_cli_with_files(tmp_path):
    df = glmm_ext.simulate("binomial", "probit", n_groups=25, group_size=12, seed=1)
    data = tmp_path / "data.csv"
    df.to_csv(data, index=False)
    out = run([str(data), "--formula", "y ~ x1 + x2", "--groups", "g", "--family", "binomial", "--link", "probit",
               "--conf-level", "90", "--nagq", "5", "--maxiter", "200", "--tol", "1e-7",
               "--blups", "blups.csv", "--diagnostics", "diag.csv", "--json", "res.json"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "Lower 90%" in out.stdout and "AGQ (5 nodes)" in out.stdout
    blups = pd.read_csv(tmp_path / "blups.csv")
    assert len(blups) == 25 and list(blups.columns) == ["Group", "Random Intercept", "Std. Error", "Rank"]
    assert len(pd.read_csv(tmp_path / "diag.csv")) == len(df)
    res = json.loads((tmp_path / "res.json").read_text())
    direct = glmm_ext.GLMM.from_formula("y ~ x1 + x2", df, groups="g",
                                        family=glmm_ext.make_family("binomial", "probit")).fit(nagq=5)
    assert res["llf"] == pytest.approx(direct.llf) and res["link"] == "probit" and res["conf_level"] == 90


def test_cli_ml_option(tmp_path, capsys):
    assert main(["--ml"]) == 0
    assert "Log-likelihood (ML)" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["--family", "tweedie"], "unknown family"),
    (["--link", "cloglog", "--family", "poisson"], "allowed links"),
    (["--conf-level", "99.999"], "outside"),
    (["--groups", "nope"], "not in the data"),
    (["--formula", "score ~ nope"], "nope"),
    (["--nagq", "500", "--family", "poisson", "--formula", "passed ~ hours"], "nagq"),
    (["--maxiter", "0"], "maxiter"),
    (["missing.csv", "--formula", "y ~ x", "--groups", "g"], "cannot read"),
])
def test_bad_arguments_exit_2_with_one_line(args, message, tmp_path):
    # in-process (an uncaught exception, a traceback, would fail the test itself); one case as a subprocess below
    out = run_cli(args, tmp_path)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and message in out.stderr and "Traceback" not in out.stderr


def test_a_bad_argument_in_a_subprocess_is_one_line_without_traceback():
    out = run(["--nagq", "500", "--family", "poisson", "--formula", "passed ~ hours"])
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "nagq" in out.stderr and "Traceback" not in out.stderr


def test_progress_and_callback(capsys):
    df = glmm_ext.load_schools()
    calls = []
    res = glmm_ext.GLMM.from_formula("passed ~ hours + ses", df, groups="school",
                                     family=glmm_ext.make_family("binomial")).fit(
        progress=True, callback=lambda stage, it, obj: calls.append((stage, it, obj)))
    err = capsys.readouterr().err
    assert "start values" in err and "optimize" in err and "done" in err and "#" in err
    stages = [c[0] for c in calls]
    assert stages[0] == "start values" and "optimize" in stages and "standard errors" in stages
    assert stages[-1] == "done" and calls[-1][2] == pytest.approx(-res.llf)
    # quiet by default
    glmm_ext.GLMM.from_formula("score ~ hours", df, groups="school").fit()
    assert capsys.readouterr().err == ""


def test_console_script_when_installed():
    import shutil

    exe = shutil.which("glmm-ext")
    if exe is None:
        pytest.skip("glmm-ext is not on PATH (package not installed in this environment)")
    out = subprocess.run([exe, "--conf-level", "80"], capture_output=True, text=True)
    assert out.returncode == 0 and "Lower 80%" in out.stdout
