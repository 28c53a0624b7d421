"""Speed and memory benchmark: glmm_ext against statsmodels and (when installed) lme4 / glmmTMB.

usage:  python benchmarks/run.py [--quick] [--families gaussian,binomial,poisson,gamma]
                                 [--sizes 10000:100,100000:1000,1000000:10000] [--r-max-rows 100000]
                                 [--sm-max-rows 100000] [--skip-many] [--many-responses 2000]
                                 [--skip-dask] [--dask-rows 10000000] [--out benchmarks/results.md]

Every row fits the same simulated random-intercept data (y ~ x1 + x2 + (1 | g)) with glmm_ext and
its peers in one run and reports seconds, the speed ratio and the log-likelihood agreement:
- statsmodels MixedLM (Gaussian REML) and BinomialBayesMixedGLM / PoissonBayesMixedGLM.fit_vb
  (no likelihood of their own: glmm_ext's Laplace log-likelihood is evaluated at their estimates);
- lme4 lmer / glmer (nAGQ = 1) and glmmTMB through Rscript, when R has those packages
  (``apt-get install -y r-cran-lme4 r-cran-glmmtmb``); skipped with a note otherwise;
- statsmodels' plain ``GLM`` (no random effects) from the same formula: the "GLMM / GLM" column is
  the price of the random effects (both timed as formula + fit).
Then ``fit_many`` against a Python loop of single fits, a Dask fit of data read from Parquet (when
dask is installed), and the markdown of ``section(quick)`` of every ``benchmarks/bench_*.py``.
glmm_ext's time includes building the model from the formula; R's is the fitting call only.
Peak memory is tracemalloc's peak over glmm_ext's model building and fit (a separate run).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import glmm_ext  # noqa: E402

FAMILIES = {"gaussian": ("gaussian", "identity"), "binomial": ("binomial", "logit"), "poisson": ("poisson", "log"),
            "gamma": ("gamma", "log")}
R_SCRIPT = r"""
args <- commandArgs(TRUE)
suppressMessages({library(lme4); library(glmmTMB)})
d <- read.csv(args[1]); fam <- args[2]; d$g <- factor(d$g)
f <- y ~ x1 + x2 + (1 | g)
fit_lme4 <- function() switch(fam,
  gaussian = lmer(f, d, REML = TRUE),
  binomial = glmer(f, d, family = binomial),
  poisson  = glmer(f, d, family = poisson),
  gamma    = glmer(f, d, family = Gamma(link = "log")))
fit_tmb <- function() switch(fam,
  gaussian = glmmTMB(f, d, REML = TRUE),
  binomial = glmmTMB(f, d, family = binomial),
  poisson  = glmmTMB(f, d, family = poisson),
  gamma    = glmmTMB(f, d, family = Gamma(link = "log")))
t1 <- system.time(m1 <- suppressWarnings(fit_lme4()))[["elapsed"]]
t2 <- system.time(m2 <- suppressWarnings(fit_tmb()))[["elapsed"]]
cat(sprintf('{"lme4_seconds": %.4f, "lme4_loglik": %.10f, "tmb_seconds": %.4f, "tmb_loglik": %.10f}\n',
            t1, as.numeric(logLik(m1)), t2, as.numeric(logLik(m2))))
"""


def r_available():
    """True when Rscript can load lme4 and glmmTMB."""
    if shutil.which("Rscript") is None:
        return False
    out = subprocess.run(["Rscript", "-e", "suppressMessages({library(lme4); library(glmmTMB)})"],
                         capture_output=True, text=True)
    return out.returncode == 0


def simulate(family, n, groups, seed=1):
    fam, link = FAMILIES[family]
    return glmm_ext.simulate(fam, link, n_groups=groups, group_size=n // groups, beta=(0.5, 0.8, -0.4),
                             sigma_u=0.6, scale=0.5, seed=seed)


def fit_glmm_ext(df, family, nagq=1):
    fam, link = FAMILIES[family]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = glmm_ext.GLMM.from_formula("y ~ x1 + x2", df, groups="g", family=glmm_ext.make_family(fam, link))
        return model.fit(nagq=nagq)


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def peak_memory(fn, *args, **kwargs):
    tracemalloc.start()
    fn(*args, **kwargs)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def glm_fit(df, family):
    """statsmodels' GLM(...).fit() from the same formula (no random effects)."""
    import statsmodels.formula.api as smf

    fam, link = FAMILIES[family]
    return smf.glm("y ~ x1 + x2", df, family=glmm_ext.make_family(fam, link)).fit()


def paired_seconds(df, family, repeats=3):
    """(glmm_ext seconds, GLM seconds, glmm_ext results): each the best of `repeats` runs, the two fits
    interleaved so that a change in the machine's load touches both."""
    best, best_glm, res = np.inf, np.inf, None
    for _ in range(repeats):
        sec, res = timed(fit_glmm_ext, df, family)
        best = min(best, sec)
        best_glm = min(best_glm, timed(glm_fit, df, family)[0])
    return best, best_glm, res


def statsmodels_peer(df, family, res):
    """(name, seconds, log-likelihood) of statsmodels' own fit; None where it has no such model."""
    import statsmodels.formula.api as smf
    from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM, PoissonBayesMixedGLM

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if family == "gaussian":
            sec, ref = timed(lambda: smf.mixedlm("y ~ x1 + x2", df, groups="g").fit(reml=True))
            return "MixedLM", sec, float(ref.llf)
        if family in ("binomial", "poisson"):
            cls = BinomialBayesMixedGLM if family == "binomial" else PoissonBayesMixedGLM
            sec, ref = timed(lambda: cls.from_formula("y ~ x1 + x2", {"g": "0 + C(g)"}, df).fit_vb())
            llf = res.model.loglike(ref.fe_mean, var_re=float(np.exp(ref.vcp_mean[0])) ** 2)
            return f"{cls.__name__}.fit_vb", sec, float(llf)
    return None


def r_peer(df, family):
    with tempfile.TemporaryDirectory() as tmp:
        data, script = os.path.join(tmp, "d.csv"), os.path.join(tmp, "fit.R")
        df[["y", "x1", "x2", "g"]].to_csv(data, index=False)
        with open(script, "w") as fh:
            fh.write(R_SCRIPT)
        out = subprocess.run(["Rscript", script, data, family], capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "Rscript failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def fmt_ratio(a, b):
    return f"{a / b:.1f}x" if a and b else "-"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--families", default="gaussian,binomial,poisson,gamma")
    p.add_argument("--sizes", default="10000:100,100000:1000,1000000:10000", help="rows:groups,...")
    p.add_argument("--r-max-rows", type=int, default=100_000, help="largest data given to lme4/glmmTMB")
    p.add_argument("--sm-max-rows", type=int, default=100_000, help="largest data given to statsmodels")
    p.add_argument("--agq-rows", type=int, default=100_000, help="size of the nagq=25 vs Laplace comparison")
    p.add_argument("--quick", action="store_true", help="1e4 and 1e5 rows only, smaller fit_many and Dask runs")
    p.add_argument("--skip-many", action="store_true", help="no fit_many benchmark")
    p.add_argument("--many-responses", type=int, default=2000, help="responses of the fit_many benchmark")
    p.add_argument("--skip-dask", action="store_true", help="no Dask benchmark")
    p.add_argument("--dask-rows", type=int, default=10_000_000, help="rows of the Dask benchmark")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results.md"))
    args = p.parse_args(argv)
    sizes = [tuple(int(float(v)) for v in s.split(":")) for s in args.sizes.split(",")]
    if args.quick:
        sizes = [s for s in sizes if s[0] <= 100_000]
    families = args.families.split(",")
    have_r = r_available()
    rows, notes = [], []
    if not have_r:
        notes.append("R with lme4 and glmmTMB is not installed: their columns are empty "
                     "(apt-get install -y r-cran-lme4 r-cran-glmmtmb).")
    fit_glmm_ext(simulate("binomial", 2000, 20), "binomial")  # warm-up: imports, caches
    for n, groups in sizes:
        for family in families:
            df = simulate(family, n, groups)
            sec, glm_s, res = paired_seconds(df, family)
            mem = peak_memory(fit_glmm_ext, df, family)
            design_bytes = res.model.design.X.nbytes
            row = {"family": family, "rows": n, "groups": groups, "glmm_ext_s": sec, "llf": res.llf,
                   "converged": res.converged, "peak_mb": mem / 2**20, "mem_ratio": mem / design_bytes,
                   "glm_s": glm_s}
            if n <= args.sm_max_rows:
                peer = statsmodels_peer(df, family, res)
                if peer:
                    row.update(sm_name=peer[0], sm_s=peer[1], sm_llf=peer[2])
            if have_r and n <= args.r_max_rows:
                row.update(r_peer(df, family))
            rows.append(row)
            print(json.dumps({k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    agq = None
    if "binomial" in families:
        groups = max(1, args.agq_rows // 100)
        df = simulate("binomial", args.agq_rows, groups)
        lap_s, lap = timed(fit_glmm_ext, df, "binomial", 1)
        agq_s, agq_res = timed(fit_glmm_ext, df, "binomial", 25)
        agq = (args.agq_rows, groups, lap_s, agq_s, lap.llf, agq_res.llf)
        print(json.dumps({"agq": agq}), flush=True)
    extra = []
    if not args.skip_many:
        extra.append(many_section(args.quick, args.many_responses))
        print(extra[-1], flush=True)
    if not args.skip_dask:
        extra.append(dask_section(args.quick, args.dask_rows))
        print(extra[-1], flush=True)
    extra += module_sections(args.quick)
    write_report(args.out, rows, agq, notes, have_r, extra)
    print(f"wrote {args.out}")


def many_section(quick, n_responses):
    """fit_many on n_responses Poisson counts x 1e4 rows against a loop of single fits (extrapolated)."""
    n_responses = min(n_responses, 200) if quick else n_responses
    n, groups = 10_000, 200
    rng = np.random.default_rng(7)
    g = np.repeat(np.arange(groups), n // groups)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    counts = rng.poisson(np.exp(0.3 + 0.2 * x1[:, None] + rng.normal(0, 0.5, (groups, n_responses))[g]))
    df = pd.DataFrame(counts.astype(float), columns=[f"r{j}" for j in range(n_responses)])
    df["x1"], df["x2"], df["g"] = x1, x2, g
    family = glmm_ext.make_family("poisson")
    loop_n = min(n_responses, 50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loop_s, _ = timed(lambda: [glmm_ext.GLMM.from_formula(f"r{j} ~ x1 + x2", df, groups="g", family=family).fit()
                                   for j in range(loop_n)])
    loop_s *= n_responses / loop_n
    cols = list(df.columns[:n_responses])
    one_s, table = timed(glmm_ext.fit_many, df, cols, "~ x1 + x2", groups="g", family=family, n_jobs=1)
    all_s, _ = timed(glmm_ext.fit_many, df, cols, "~ x1 + x2", groups="g", family=family, n_jobs=-1)
    return (f"## fit_many\n\n{n_responses:,} Poisson responses x {n:,} rows / {groups} groups, y ~ x1 + x2 + (1 | g): "
            f"a Python loop of single fits (formula + fit, {loop_n} timed and scaled) {loop_s:.1f} s; "
            f"fit_many n_jobs=1 {one_s:.1f} s ({loop_s / one_s:.1f}x faster), n_jobs=-1 ({os.cpu_count()} cores) "
            f"{all_s:.1f} s ({loop_s / all_s:.1f}x faster); {int(table['converged'].sum() // 3)} of {n_responses} "
            "converged.\n")


def dask_section(quick, n_rows):
    """GLMM.from_formula on a Dask DataFrame read from Parquet, against the in-memory fit where it fits."""
    try:
        import dask.dataframe as dd
        from distributed import Client, LocalCluster
    except ImportError:
        return "## Dask\n\nNot run: dask[dataframe] and distributed are not installed (pip install glmm_ext[dask]).\n"
    n_rows = min(n_rows, 1_000_000) if quick else n_rows
    groups = n_rows // 100
    df = simulate("binomial", n_rows, groups)[["y", "x1", "x2", "g"]]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "data")
        os.makedirs(path)
        for k, rows in enumerate(np.array_split(np.arange(n_rows), 16)):  # 16 files -> 16 partitions
            df.iloc[rows].to_parquet(os.path.join(path, f"part{k:02d}.parquet"))
        del df
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
                Client(cluster):
            def fit():
                ddf = dd.read_parquet(path)
                return glmm_ext.GLMM.from_formula("y ~ x1 + x2", ddf, groups="g",
                                                  family=glmm_ext.make_family("binomial")).fit()
            sec, res = timed(fit)
    return (f"## Dask\n\nBinomial y ~ x1 + x2 + (1 | g), {n_rows:,} rows / {groups:,} groups read from 16 Parquet "
            f"files, LocalCluster of 2 worker processes on this machine: {sec:.1f} s from read to estimates "
            f"(shuffle by group, arrays kept on the workers, {res.optsummary.n_evaluations} distributed evaluations); "
            f"log-likelihood {res.llf:.4f}, converged {res.converged}, estimates "
            f"{', '.join(f'{v:.4f}' for v in res.fe_params)}.\n")


def module_sections(quick):
    """The markdown of section(quick) from every benchmarks/bench_*.py (other benchmarks of the package)."""
    import glob
    import importlib.util

    out = []
    for path in sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_*.py"))):
        spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
            out.append(module.section(quick))
        except Exception as exc:  # noqa: BLE001 - one failing benchmark must not lose the others
            out.append(f"## {os.path.basename(path)}\n\nFailed: {type(exc).__name__}: {exc}\n")
        print(out[-1], flush=True)
    return out


def write_report(path, rows, agq, notes, have_r, extra=()):
    lines = ["# glmm_ext benchmark", "",
             f"Machine: {os.cpu_count()} cores; Python {sys.version.split()[0]}; glmm_ext {glmm_ext.__version__}; "
             f"run {time.strftime('%Y-%m-%d %H:%M')}. Model: y ~ x1 + x2 + (1 | g), simulated.", "",
             "Seconds are wall-clock for one fit (glmm_ext: formula + fit; R: the fitting call). "
             "Speed-ups are peer seconds / glmm_ext seconds. dLL = glmm_ext log-likelihood minus the peer's "
             "(Gaussian: REML; others: Laplace with every constant; for fit_vb glmm_ext's Laplace value at "
             "fit_vb's estimates). lme4's Gamma log-likelihood uses another dispersion estimate, so compare "
             "Gamma with glmmTMB.", "",
             "GLMM / GLM = glmm_ext seconds / statsmodels GLM(...).fit() seconds on the same rows (no random "
             "effects; both from the formula; each the best of three runs, the two interleaved).", "",
             "| family | rows | groups | glmm_ext s | GLM s | GLMM / GLM | peak MB (x design) | lme4 s | speed-up | "
             "dLL lme4 | glmmTMB s | speed-up | dLL TMB | statsmodels | s | speed-up | dLL |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        def g(key, spec="{:.2f}"):
            return spec.format(r[key]) if key in r and r[key] is not None else "-"
        dl4 = f"{r['llf'] - r['lme4_loglik']:+.2e}" if "lme4_loglik" in r else "-"
        dtmb = f"{r['llf'] - r['tmb_loglik']:+.2e}" if "tmb_loglik" in r else "-"
        dsm = f"{r['llf'] - r['sm_llf']:+.2e}" if "sm_llf" in r else "-"
        lines.append(f"| {r['family']} | {r['rows']:,} | {r['groups']:,} | {r['glmm_ext_s']:.3f} | "
                     f"{r['glm_s']:.3f} | {r['glmm_ext_s'] / r['glm_s']:.2f} | "
                     f"{r['peak_mb']:.0f} ({r['mem_ratio']:.1f}x) | {g('lme4_seconds')} | "
                     f"{fmt_ratio(r.get('lme4_seconds'), r['glmm_ext_s'])} | {dl4} | {g('tmb_seconds')} | "
                     f"{fmt_ratio(r.get('tmb_seconds'), r['glmm_ext_s'])} | {dtmb} | {r.get('sm_name', '-')} | "
                     f"{g('sm_s')} | {fmt_ratio(r.get('sm_s'), r['glmm_ext_s'])} | {dsm} |")
    if agq:
        n, groups, lap_s, agq_s, lap_llf, agq_llf = agq
        lines += ["", f"Adaptive quadrature, binomial {n:,} rows / {groups:,} groups: Laplace {lap_s:.3f} s, "
                      f"nagq=25 {agq_s:.3f} s ({agq_s / lap_s:.2f}x the Laplace fit); "
                      f"log-likelihoods {lap_llf:.4f} (Laplace) and {agq_llf:.4f} (AGQ)."]
    if notes:
        lines += [""] + [f"Note: {n}" for n in notes]
    if have_r:
        lines += ["", "Rows above the --r-max-rows / --sm-max-rows limits were not given to R or statsmodels "
                      "(their fits there take minutes)."]
    for block in extra:
        lines += ["", block.rstrip("\n")]
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
