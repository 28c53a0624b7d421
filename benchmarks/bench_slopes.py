"""Random-slope benchmark: glmm_ext against lme4 (lmer / glmer) on the same simulated data.

    python benchmarks/bench_slopes.py [--quick]

Model y ~ x + x2 + (x | g): a correlated random intercept and slope per group.  Gaussian (REML),
Binomial and Poisson (Laplace) at 1e4 rows / 100 groups and 1e5 rows / 1000 groups (``--quick``: 1e4 only).
Seconds are wall-clock for one fit (glmm_ext: formula + fit; R: the fitting call, via Rscript when R
has lme4).  `section(quick)` returns the markdown section that benchmarks/run.py appends.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import glmm_ext  # noqa: E402

R_SCRIPT = r"""
args <- commandArgs(TRUE)
suppressMessages(library(lme4))
d <- read.csv(args[1]); d$g <- factor(d$g)
if (args[2] == "gaussian") {
  t <- system.time(m <- suppressWarnings(lmer(y ~ x + x2 + (x | g), d, REML = TRUE)))[["elapsed"]]
} else if (args[2] == "poisson") {
  t <- system.time(m <- suppressWarnings(glmer(y ~ x + x2 + (x | g), d, family = poisson)))[["elapsed"]]
} else {
  t <- system.time(m <- suppressWarnings(glmer(y ~ x + x2 + (x | g), d, family = binomial)))[["elapsed"]]
}
cat(sprintf('{"seconds": %.4f, "loglik": %.10f}\n', t, as.numeric(logLik(m))))
"""


def simulate(family, n, groups, seed=7):
    """x, x2 ~ N(0, 1); (b0, b1) ~ N(0, [[0.5, 0.1], [0.1, 0.25]]); Gaussian sigma = 1, Binomial logit, Poisson log."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, n)
    x, x2 = rng.normal(size=n), rng.normal(size=n)
    b = rng.multivariate_normal([0.0, 0.0], [[0.5, 0.1], [0.1, 0.25]], size=groups)
    eta = 0.3 + 0.6 * x - 0.4 * x2 + b[g, 0] + b[g, 1] * x
    if family == "gaussian":
        y = eta + rng.normal(size=n)
    elif family == "poisson":
        y = rng.poisson(np.exp(eta)).astype(float)
    else:
        y = rng.binomial(1, 1.0 / (1.0 + np.exp(-eta)))
    return pd.DataFrame({"y": y, "x": x, "x2": x2, "g": g})


def fit(df, family):
    fam = glmm_ext.make_family(family)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        res = glmm_ext.GLMM.from_formula("y ~ x + x2 + (x | g)", df, family=fam).fit()
    return time.perf_counter() - t0, res


def lme4_available():
    if shutil.which("Rscript") is None:
        return False
    return subprocess.run(["Rscript", "-e", "suppressMessages(library(lme4))"], capture_output=True).returncode == 0


def lme4_fit(df, family):
    with tempfile.TemporaryDirectory() as tmp:
        data, script = os.path.join(tmp, "d.csv"), os.path.join(tmp, "fit.R")
        df.to_csv(data, index=False)
        with open(script, "w") as fh:
            fh.write(R_SCRIPT)
        out = subprocess.run(["Rscript", script, data, family], capture_output=True, text=True)
    if out.returncode != 0:
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def section(quick: bool) -> str:
    """Markdown section: glmm_ext vs lme4 for a correlated random slope (seconds, speed-up, dLL)."""
    sizes = [(10_000, 100)] if quick else [(10_000, 100), (100_000, 1_000)]
    have_r = lme4_available()
    fit(simulate("binomial", 2_000, 20), "binomial")  # warm-up: imports and caches
    lines = ["## Random slopes: y ~ x + x2 + (x | g)", "",
             "Wall-clock seconds for one fit (glmm_ext: formula + fit; lme4: the lmer/glmer call). Gaussian: "
             "REML; Binomial and Poisson: Laplace. dLL = glmm_ext log-likelihood minus lme4's.", "",
             "| family | rows | groups | glmm_ext s | lme4 s | speed-up | dLL |", "|---|---|---|---|---|---|---|"]
    for n, groups in sizes:
        for family in ("gaussian", "binomial", "poisson"):
            df = simulate(family, n, groups)
            sec, res = fit(df, family)
            ref = lme4_fit(df, family) if have_r else None
            r_sec = f"{ref['seconds']:.2f}" if ref else "-"
            ratio = f"{ref['seconds'] / sec:.1f}x" if ref else "-"
            dll = f"{res.llf - ref['loglik']:+.2e}" if ref else "-"
            lines.append(f"| {family} | {n:,} | {groups:,} | {sec:.3f} | {r_sec} | {ratio} | {dll} |")
    if not have_r:
        lines += ["", "R with lme4 is not installed: the lme4 columns are empty."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(section("--quick" in sys.argv[1:]))
