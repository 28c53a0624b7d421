"""Several random-effect terms (issue 21 item 5): glmm_ext against `glmm`, `mixedlm` and lme4, one run.

usage:  python benchmarks/bench_multiterm.py [--quick] [--repeats K] [--rows a,b,...] [--timeout S]
                                            [--peer-python /work/benchenv/bin/python]
                                            [--packages glmm,...] [--baseline DIR]
                                            [--out benchmarks/results_multiterm.md]

Rows (the same data for every package of a row, written once to a temporary CSV):
- InstEval (lme4's, 73,421 rows; benchmarks/data/insteval.csv.gz) y ~ service + (1|s) + (1|d) + (1|dept), ML;
  and with a correlated (service|dept) in place of (1|dept), ML;
- VerbAgg (tests/data/multiterm/verbagg.csv, 7,584 rows, 316 x 24 levels), crossed Binomial, Laplace;
- one-term Gaussian REML y ~ x1 + x2 + (1|g), 1e6 rows / 1e4 groups (simulated);
- Gaussian REML y ~ x + x2 + (1 + x|g), 1e5 rows / 1e3 groups (simulated);
- MovieLens-1M-shaped crossed Gaussian y ~ 1 + (1|user) + (1|movie), 1e6 rows, 6,040 x 3,706 levels with
  skewed counts per user and per movie, ML: seconds and the process's peak RSS;
- nagq=0 against Laplace, one-term Binomial y ~ x1 + x2 + (1|g), 1e6 rows / 1e4 groups (glmm_ext only).
``--quick`` shrinks the simulated rows tenfold and runs one repetition.

Protocol: every timed fit runs in a FRESH process (``python bench_multiterm.py --worker SPEC``: read the CSV,
one tiny warm-up fit of the same family with two crossed terms to load code, then time the fit of the row's
model: formula + fit for the Python packages, the lmer/glmer call for lme4 through Rscript). Fresh processes
because `glmm` was seen to run repeat calls in one process much faster than the first. The packages of a row
run interleaved (glmm_ext, glmm, mixedlm, lme4, glmm_ext, glmm, ...) and each reports its best of K, so a
change in the load of this shared machine touches all of them; the ratio is glmm_ext seconds / peer seconds
(< 1: glmm_ext faster). `glmm` and `mixedlm` run with the interpreter given by --peer-python (never
dependencies of glmm_ext); a missing peer or R is skipped with a note. `glmm` runs with
``satterthwaite=False`` (its default also computes Satterthwaite df, which the others do not).
``--packages`` keeps only the named peers (glmm_ext always runs); ``--baseline DIR`` runs another glmm_ext tree
(e.g. ``git archive <commit> | tar -x -C DIR``) interleaved with this one as "glmm_ext_base" and reports the
before/after seconds and ratios of the row from that one run.
`section(quick)` returns the markdown (benchmarks/run.py appends every bench_*.py section).
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEER_PYTHON = os.environ.get("GLMM_EXT_PEER_PYTHON", "/work/benchenv/bin/python")
PACKAGES = ("glmm_ext", "glmm", "mixedlm", "lme4")
BLAS_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
#: --baseline DIR: another glmm_ext tree (e.g. `git archive <commit>` unpacked) run as "glmm_ext_base", interleaved
BASELINE = {"root": None}

R_SCRIPT = r"""
args <- commandArgs(TRUE)
suppressMessages(library(lme4))
spec <- args[2]; fam <- args[3]; reml <- args[4] == "TRUE"; cats <- strsplit(args[5], ",")[[1]]
d <- read.csv(args[1]); for (v in cats) d[[v]] <- factor(d[[v]])
f <- as.formula(spec)
w <- data.frame(y = rep(c(0, 1), 50), x = seq(-1, 1, length.out = 100), g = factor(rep(1:10, 10)),
                h = factor(rep(1:5, each = 20)))
if (fam == "gaussian") {
  invisible(suppressWarnings(lmer(y ~ x + (1 | g) + (1 | h), w)))
  t <- system.time(m <- suppressWarnings(lmer(f, d, REML = reml)))[["elapsed"]]
} else {
  invisible(suppressWarnings(glmer(y ~ x + (1 | g) + (1 | h), w, family = binomial)))
  t <- system.time(m <- suppressWarnings(glmer(f, d, family = binomial)))[["elapsed"]]
}
cat(sprintf('{"seconds": %.4f, "loglik": %.10f}\n', t, as.numeric(logLik(m))))
"""


# --------------------------------------------------------------------------------------------- worker side
def _warm_data(family):
    rng = np.random.default_rng(0)
    n = 400
    g, h = np.tile(np.arange(20), n // 20), np.repeat(np.arange(10), n // 10)
    x = rng.normal(size=n)
    eta = 0.2 + 0.5 * x + rng.normal(0, 0.5, 20)[g] + rng.normal(0, 0.5, 10)[h]
    y = eta + rng.normal(size=n) if family == "gaussian" else rng.binomial(1, 1 / (1 + np.exp(-eta)))
    return pd.DataFrame({"y": y.astype(float), "x": x, "g": g.astype(str), "h": h.astype(str)})


def _fit_one(pkg, df, formula, family, reml, nagq):
    """{'loglik', 'converged'} of one fit of `pkg` (glmm_ext: also 'fit_seconds', the fit() call alone)."""
    if pkg == "glmm_ext":
        import warnings

        import glmm_ext
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = glmm_ext.GLMM.from_formula(formula, df, family=glmm_ext.make_family(family))
            t0 = time.perf_counter()
            res = model.fit(reml=reml, nagq=nagq) if family == "gaussian" else model.fit(nagq=nagq)
            fit_seconds = time.perf_counter() - t0
        return {"loglik": float(res.llf), "converged": bool(res.converged), "fit_seconds": fit_seconds}
    if pkg == "glmm":
        import warnings

        import glmm
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = glmm.fit(df, formula, family=family, reml=reml if family == "gaussian" else None,
                           nagq=max(nagq, 1), satterthwaite=False)
        return {"loglik": float(res.loglik), "converged": bool(res.converged)}
    if pkg == "mixedlm":
        import warnings

        import mixedlm
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if family == "gaussian":
                res = mixedlm.lmer(formula, df, REML=reml)
            else:
                from mixedlm.families import Binomial
                res = mixedlm.glmer(formula, df, family=Binomial(), nAGQ=nagq)
        return {"loglik": float(res.logLik()), "converged": bool(getattr(res, "converged", True))}
    raise ValueError(f"unknown package {pkg!r}")


def worker(spec):
    """Run in a fresh process: read the data, warm up, time one fit; print a JSON line."""
    if spec["pkg"] == "glmm_ext":
        sys.path.insert(0, spec.get("root") or ROOT)
    df = pd.read_csv(spec["data"], dtype={c: str for c in spec["cats"]})
    warm = "y ~ x + (1|g) + (1|h)"
    _fit_one(spec["pkg"], _warm_data(spec["family"]), warm, spec["family"], True, 1)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    t0 = time.perf_counter()
    out = _fit_one(spec["pkg"], df, spec["formula"], spec["family"], spec["reml"], spec["nagq"])
    out["seconds"] = time.perf_counter() - t0
    out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["rss_before_mb"] = rss_before
    print(json.dumps(out))


# --------------------------------------------------------------------------------------------- driver side
def peer_available(pkg, peer_python):
    if pkg == "glmm_ext":
        return True
    if pkg == "lme4":
        return shutil.which("Rscript") is not None and subprocess.run(
            ["Rscript", "-e", "suppressMessages(library(lme4))"], capture_output=True).returncode == 0
    if not (peer_python and os.path.exists(peer_python)):
        return False
    return subprocess.run([peer_python, "-c", f"import {pkg}"], capture_output=True).returncode == 0


def run_one(pkg, case, path, peer_python, timeout, tmp, blas_threads=1):
    """One fresh-process fit: dict with seconds/loglik/..., or {'error': ...}."""
    if pkg == "lme4":
        script = os.path.join(tmp, "fit.R")
        with open(script, "w") as fh:
            fh.write(R_SCRIPT)
        cmd = ["Rscript", script, path, case["r_formula"], case["family"], str(case["reml"]).upper(),
               ",".join(case["cats"])]
    else:
        spec = {"pkg": pkg, "data": path, "cats": case["cats"], "family": case["family"], "reml": case["reml"],
                "nagq": case.get("nagq", 1),
                "formula": case["py_formula"] if pkg.startswith("glmm_ext") else case["r_formula"]}
        if "nagq_by_pkg" in case:
            spec["nagq"] = case["nagq_by_pkg"][pkg]
        python = sys.executable if pkg.startswith("glmm_ext") else peer_python
        spec["pkg"] = "glmm_ext" if pkg.startswith("glmm_ext") else pkg
        spec["root"] = BASELINE["root"] if pkg == "glmm_ext_base" else ROOT
        cmd = [python, os.path.abspath(__file__), "--worker", json.dumps(spec)]
    env = dict(os.environ, PYTHONPATH=spec.get("root", ROOT) if pkg.startswith("glmm_ext") else "")
    if blas_threads and pkg != "glmm_ext_mt":
        env.update({v: str(blas_threads) for v in BLAS_VARS})
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout {timeout:.0f} s"}
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        err = out.stderr.strip().splitlines()
        return {"error": (err[-1] if err else "failed")[:120]}
    return json.loads(lines[-1])


def bench_case(case, pkgs, repeats, peer_python, timeout, blas_threads=1):
    """Interleaved best-of-`repeats` of every package on the case's data. Returns {pkg: best result}."""
    best = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "data.csv")
        case["make"]().to_csv(path, index=False)
        for rep in range(repeats):
            for pkg in pkgs:
                if pkg in best and ("error" in best[pkg] or pkg in case.get("once", ())):
                    continue  # a timeout or failure is not retried (it would cost the same again)
                out = run_one(pkg, case, path, peer_python, timeout, tmp, blas_threads)
                print(json.dumps({"case": case["name"], "rep": rep, "pkg": pkg, **out}), flush=True)
                if "error" in out:
                    best.setdefault(pkg, out)  # a success of an earlier repetition stands
                elif pkg not in best or "error" in best[pkg] or out["seconds"] < best[pkg]["seconds"]:
                    best[pkg] = out
    return best


def load_insteval():
    return pd.read_csv(os.path.join(HERE, "data", "insteval.csv.gz"))


def load_verbagg():
    return pd.read_csv(os.path.join(ROOT, "tests", "data", "multiterm", "verbagg.csv"))


def sim_intercept(n, groups, family="gaussian", seed=1):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), n // groups)
    x1, x2 = rng.normal(size=g.size), rng.normal(size=g.size)
    eta = 0.5 + 0.8 * x1 - 0.4 * x2 + rng.normal(0, 0.6, groups)[g]
    y = eta + rng.normal(0, 0.7, g.size) if family == "gaussian" else rng.binomial(1, 1 / (1 + np.exp(-eta)))
    return pd.DataFrame({"y": y.astype(float), "x1": x1, "x2": x2, "g": g})


def sim_slope(n, groups, seed=7):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, n)
    x, x2 = rng.normal(size=n), rng.normal(size=n)
    b = rng.multivariate_normal([0.0, 0.0], [[0.5, 0.1], [0.1, 0.25]], size=groups)
    y = 0.3 + 0.6 * x - 0.4 * x2 + b[g, 0] + b[g, 1] * x + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "x2": x2, "g": g})


def sim_movielens(n=1_000_000, users=6040, movies=3706, seed=11):
    """Ratings-shaped crossed data: every user >= 20 rows (as in MovieLens-1M), a heavy right tail of
    prolific users (log-normal activity), movie popularity Zipf-like; every level occurs at least once."""
    rng = np.random.default_rng(seed)
    extra = rng.lognormal(0.0, 1.2, users)
    counts = 20 + np.floor(extra / extra.sum() * (n - 20 * users)).astype(int)
    counts[: n - counts.sum()] += 1
    user = np.repeat(rng.permutation(users), counts)
    pop = 1.0 / (np.arange(movies) + 20.0) ** 1.1
    movie = rng.choice(movies, size=n, p=pop / pop.sum())
    movie[rng.choice(n, movies, replace=False)] = np.arange(movies)  # every movie rated at least once
    y = 3.6 + rng.normal(0, 0.45, users)[user] + rng.normal(0, 0.5, movies)[movie] + rng.normal(0, 0.9, n)
    return pd.DataFrame({"y": np.round(y, 3), "user": user, "movie": movie})


def cases(quick):
    s = 10 if quick else 1
    verbagg_py = ("r2 ~ C(btype) + C(situ) + C(mode, levels=['want', 'do']) + C(Gender) + Anger"
                  " + (1|id) + (1|item)")
    return [
        {"name": "insteval_ml", "label": "InstEval ML, y ~ service + (1|s) + (1|d) + (1|dept)",
         "make": load_insteval, "cats": ["service", "s", "d", "dept"], "family": "gaussian", "reml": False,
         "py_formula": "y ~ C(service) + (1|s) + (1|d) + (1|dept)",
         "r_formula": "y ~ service + (1|s) + (1|d) + (1|dept)", "pkgs": PACKAGES + ("glmm_ext_mt",),
         "once": ("glmm_ext_mt",)},
        {"name": "insteval_slope_ml", "label": "InstEval ML, y ~ service + (1|s) + (1|d) + (service|dept)",
         "make": load_insteval, "cats": ["service", "s", "d", "dept"], "family": "gaussian", "reml": False,
         "py_formula": "y ~ C(service) + (1|s) + (1|d) + (C(service)|dept)",
         "r_formula": "y ~ service + (1|s) + (1|d) + (service|dept)", "pkgs": PACKAGES, "repeats": 2,
         "once": ("lme4", "mixedlm")},  # lme4: ~85 s a fit here (262 deviance evaluations)
        {"name": "verbagg", "label": "VerbAgg Binomial, r2 ~ btype + situ + mode + Gender + Anger + (1|id) + "
         "(1|item)", "make": load_verbagg, "cats": ["btype", "situ", "mode", "Gender", "id", "item"],
         "family": "binomial", "reml": False, "py_formula": verbagg_py,
         "r_formula": "r2 ~ btype + situ + mode + Gender + Anger + (1|id) + (1|item)",
         "pkgs": PACKAGES + ("glmm_ext_mt",), "once": ("glmm_ext_mt",)},
        {"name": "gauss_1e6", "label": f"Gaussian REML y ~ x1 + x2 + (1|g), {1_000_000 // s:,} rows / "
         f"{10_000 // s:,} groups", "make": lambda: sim_intercept(1_000_000 // s, 10_000 // s),
         "cats": ["g"], "family": "gaussian", "reml": True, "py_formula": "y ~ x1 + x2 + (1|g)",
         "r_formula": "y ~ x1 + x2 + (1|g)", "pkgs": ("glmm_ext", "glmm", "mixedlm"), "repeats": 5},
        {"name": "slope_1e5", "label": f"Gaussian REML y ~ x + x2 + (1 + x|g), {100_000 // s:,} rows / "
         f"{1_000 // s:,} groups", "make": lambda: sim_slope(100_000 // s, 1_000 // s), "cats": ["g"],
         "family": "gaussian", "reml": True, "py_formula": "y ~ x + x2 + (1 + x|g)",
         "r_formula": "y ~ x + x2 + (1 + x|g)", "pkgs": ("glmm_ext", "glmm", "mixedlm")},
        {"name": "movielens", "label": f"MovieLens-1M-shaped ML, y ~ 1 + (1|user) + (1|movie), "
         f"{1_000_000 // s:,} rows, {6040 // s:,} x {3706 // s:,} levels",
         "make": lambda: sim_movielens(1_000_000 // s, 6040 // s, 3706 // s), "cats": ["user", "movie"],
         "family": "gaussian", "reml": False, "py_formula": "y ~ 1 + (1|user) + (1|movie)",
         "r_formula": "y ~ 1 + (1|user) + (1|movie)", "pkgs": ("glmm_ext", "glmm", "mixedlm"), "memory": True,
         "repeats": 2, "once": ("mixedlm",)},  # mixedlm: > 3 min a fit here
        {"name": "nagq0", "label": f"Binomial y ~ x1 + x2 + (1|g), {1_000_000 // s:,} rows / {10_000 // s:,} "
         "groups: Laplace (glmm_ext) against nagq=0 (glmm_ext_nagq0)",
         "make": lambda: sim_intercept(1_000_000 // s, 10_000 // s, "binomial"), "cats": ["g"],
         "family": "binomial", "reml": False, "py_formula": "y ~ x1 + x2 + (1|g)", "r_formula": "",
         "pkgs": ("glmm_ext", "glmm_ext_nagq0"), "nagq_by_pkg": {"glmm_ext": 1, "glmm_ext_nagq0": 0}, "repeats": 2},
    ]


def _s(seconds):
    """Seconds with two decimals, or three significant digits below a second (a 20 ms fit is not "0.02")."""
    return f"{seconds:.2f}" if not seconds < 1 else f"{seconds:.3g}"


def _before_after(base, own, glmm):
    """'before X s, after Y s, after/before r; ratio to glmm a -> b' for a --baseline row."""
    if "error" in base or "error" in own:
        return f"before {base.get('error', '')} / after {own.get('error', '')}"
    text = (f"before (glmm_ext at {BASELINE['root']}) {_s(base['seconds'])} s ({_s(base.get('fit_seconds', np.nan))}),"
            f" after {_s(own['seconds'])} s ({_s(own.get('fit_seconds', np.nan))}), after / before "
            f"{own['seconds'] / base['seconds']:.2f}; dLL after - before {own['loglik'] - base['loglik']:+.1e}")
    if glmm and "error" not in glmm:
        text += (f"; ratio to glmm {base['seconds'] / glmm['seconds']:.2f} (before) -> "
                 f"{own['seconds'] / glmm['seconds']:.2f} (after)")
    return text + "."


def render(results, notes, repeats):
    lines = ["## Several random-effect terms: glmm_ext against glmm, mixedlm and lme4", "",
             f"Each cell: wall-clock seconds of the best of {repeats} fits, every fit in a fresh process (data "
             "read and a small warm-up fit first, not timed), the packages interleaved within a row (glmm_ext, "
             "glmm, mixedlm, lme4, glmm_ext, ...). Python packages: formula + fit (glmm_ext: in "
             "parentheses the fit() call alone, the model built from the formula); lme4: the lmer/glmer call. "
             "ratio = glmm_ext s / peer s (<= 1: glmm_ext no slower); dLL = glmm_ext log-likelihood minus the "
             "peer's (REML rows: REML log-likelihood; should be >= -1e-4). `glmm` runs with "
             "satterthwaite=False.", "",
             "| model | glmm_ext s | glmm s | ratio | dLL glmm | mixedlm s | ratio | dLL mixedlm | lme4 s | ratio |"
             " dLL lme4 |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    extra = []
    for case, best in results:
        if case["name"] == "nagq0":
            lap, pq = best.get("glmm_ext"), best.get("glmm_ext_nagq0")
            if lap and pq and "error" not in lap and "error" not in pq:
                fit_only = ""
                if "fit_seconds" in lap and "fit_seconds" in pq:
                    fit_only = (f"the fit() call alone: Laplace {lap['fit_seconds']:.2f} s, nagq=0 "
                                f"{pq['fit_seconds']:.2f} s, nagq=0 {lap['fit_seconds'] / pq['fit_seconds']:.2f}x "
                                "as fast; ")
                extra.append(f"nagq=0 against Laplace, {case['label'].split(':')[0]}: {fit_only}formula + fit: "
                             f"Laplace {lap['seconds']:.2f} s, nagq=0 {pq['seconds']:.2f} s, nagq=0 "
                             f"{lap['seconds'] / pq['seconds']:.2f}x as fast (goal >= 3x); "
                             f"log-likelihoods {lap['loglik']:.3f} (Laplace) and {pq['loglik']:.3f} "
                             "(Laplace value at the nagq=0 estimates).")
            else:
                extra.append(f"nagq=0 row failed: {lap} / {pq}")
            continue
        own = best.get("glmm_ext") or {}
        cells = [case["label"], own.get("error") or (_s(own["seconds"]) + (
            f" ({_s(own['fit_seconds'])})" if "fit_seconds" in own else ""))]
        for pkg in ("glmm", "mixedlm", "lme4"):
            r = best.get(pkg)
            if r is None:
                cells += ["-", "-", "-"]
            elif "error" in r:
                cells += [r["error"], "-", "-"]
            elif "error" in own:
                cells += [_s(r["seconds"]), "-", "-"]
            else:
                d = own["loglik"] - r["loglik"]
                flag = " (!)" if d < -1e-4 else ""
                cells += [_s(r["seconds"]), f"{own['seconds'] / r['seconds']:.2f}", f"{d:+.1e}{flag}"]
        lines.append("| " + " | ".join(cells) + " |")
        base = best.get("glmm_ext_base")
        if base:
            extra.append(f"{case['label']}: before/after in this run (interleaved): " + _before_after(
                base, own, best.get("glmm")))
        mt = best.get("glmm_ext_mt")
        if mt:
            extra.append(f"{case['label']}: glmm_ext with OpenBLAS's default threads (one run): "
                         + (mt["error"] if "error" in mt else f"{mt['seconds']:.2f} s") + ".")
        if case.get("memory"):
            mem = [f"{pkg} {r['seconds']:.1f} s, peak RSS {r['rss_mb']:.0f} MB ({r['rss_before_mb']:.0f} MB "
                   "before the fit)" for pkg, r in best.items() if r and "error" not in r]
            extra.append(f"{case['label']}: " + "; ".join(mem) + ". Goal for glmm_ext: < 60 s and < 2 GB. "
                         "Peak RSS = the fitting process's ru_maxrss (data, imports and the fit).")
    lines += [""] + [f"- {e}" for e in extra]
    lines += [""] + [f"Note: {n}" for n in notes]
    return "\n".join(lines) + "\n"


def run(quick=False, repeats=None, only=None, peer_python=PEER_PYTHON, timeout=600.0, blas_threads=1,
        packages=None):
    repeats = repeats or (1 if quick else 3)
    have = {pkg: peer_available(pkg, peer_python) for pkg in PACKAGES}
    notes = [f"{pkg} is not available (peer python {peer_python}; R's lme4 via Rscript): its columns are "
             "empty." for pkg, ok in have.items() if not ok]
    results = []
    for case in cases(quick):
        if only and case["name"] not in only:
            continue
        pkgs = [p for p in case["pkgs"] if have.get(p, True)]
        if packages:  # glmm_ext always; the others as asked
            pkgs = [p for p in pkgs if p == "glmm_ext" or p in packages]
        if BASELINE["root"]:
            pkgs.insert(0, "glmm_ext_base")
        k = min(repeats, case.get("repeats", repeats))
        results.append((case, bench_case(case, pkgs, k, peer_python, timeout, blas_threads)))
    notes.append(f"Machine: {os.cpu_count()} cores, shared (load average {os.getloadavg()[0]:.1f} at the end); "
                 f"run {time.strftime('%Y-%m-%d %H:%M')}; quick={quick}.")
    if blas_threads:
        notes.append(f"Every process ran with {'/'.join(BLAS_VARS)}={blas_threads} (OpenBLAS's default threads "
                     "busy-wait on a shared, oversubscribed machine: see the lines 'with OpenBLAS's default "
                     "threads'); rows at 1e6 rows: best of 2.")
    return render(results, notes, repeats)


def section(quick: bool) -> str:
    """Markdown section: seconds, ratios and log-likelihood differences of the multi-term rows."""
    return run(quick)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--rows", default="", help="comma-separated case names (default: all)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds before one fit is abandoned")
    p.add_argument("--peer-python", default=PEER_PYTHON)
    p.add_argument("--blas-threads", type=int, default=1,
                   help="OPENBLAS/OMP/MKL_NUM_THREADS of every fitting process (0: leave the environment)")
    p.add_argument("--packages", default="",
                   help="comma-separated peers to run besides glmm_ext (default: all; e.g. glmm)")
    p.add_argument("--baseline", default=None, metavar="DIR",
                   help="another glmm_ext tree run interleaved as 'glmm_ext_base' (before/after ratios in one run)")
    p.add_argument("--out", default=None)
    p.add_argument("--append", default=None, metavar="TITLE",
                   help="append to --out under this heading (a re-run of some rows) instead of overwriting")
    args = p.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return
    BASELINE["root"] = os.path.abspath(args.baseline) if args.baseline else None
    md = run(args.quick, args.repeats, [r for r in args.rows.split(",") if r], args.peer_python, args.timeout,
             args.blas_threads, [p for p in args.packages.split(",") if p])
    print(md)
    if args.out and args.append:
        with open(args.out, "a") as fh:
            fh.write(f"\n# {args.append}\n\n" + md.split("\n", 1)[1])
    elif args.out:
        with open(args.out, "w") as fh:
            fh.write("# glmm_ext multi-term benchmark\n\n" + md)


if __name__ == "__main__":
    main()
