"""Benchmark of the analysis tools: profile-interval cost (in refits) and the parametric bootstrap.

usage:  python benchmarks/bench_analysis.py [--quick]

``section(quick)`` returns a Markdown section (benchmarks/run.py can append it to its report).
Targets (issue 15): a profile interval costs at most ~20 fits; a parametric bootstrap of
nsim = 200 on 1e4 rows runs in under 30 s on two cores.
"""
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import glmm_ext  # noqa: E402


def _fit(family, n_groups, group_size, seed=1):
    data = glmm_ext.simulate(family, n_groups=n_groups, group_size=group_size, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        res = glmm_ext.glmm("y ~ x1 + x2", data, groups="g", family=glmm_ext.make_family(family)).fit()
        return res, time.perf_counter() - t0


def section(quick: bool) -> str:
    """Markdown table rows for profile intervals and the bootstrap (quick: fewer replicates)."""
    lines = ["## Analysis tools (issue 15)", "",
             "| task | rows | family | seconds | one fit (s) | ratio | notes |", "|---|---|---|---|---|---|---|"]
    for family in ("binomial", "poisson", "gaussian"):
        res, t_fit = _fit(family, 100, 100)
        t0 = time.perf_counter()
        ci = res.conf_int(method="profile")
        secs = time.perf_counter() - t0
        fits = ci.attrs["fits"]
        lines.append(f"| profile intervals (all {len(fits)} parameters) | 10000 | {family} | {secs:.2f} | "
                     f"{t_fit:.3f} | {secs / t_fit:.1f} | refits per interval: max {max(fits.values())}, "
                     f"mean {sum(fits.values()) / len(fits):.1f} (target <= 20) |")
    nsim = 40 if quick else 200
    for family in ("binomial", "poisson"):
        res, t_fit = _fit(family, 100, 100)
        for n_jobs in (1, 2):
            t0 = time.perf_counter()
            ci = res.conf_int(method="boot", nsim=nsim, seed=1, n_jobs=n_jobs, progress=False)
            secs = time.perf_counter() - t0
            lines.append(f"| parametric bootstrap nsim={nsim}, n_jobs={n_jobs} | 10000 | {family} | {secs:.2f} | "
                         f"{t_fit:.3f} | {secs / t_fit:.1f} | failed refits: {ci.attrs['n_failed']}"
                         f"{' (target < 30 s for nsim=200 on two cores)' if n_jobs == 2 else ''} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(section("--quick" in sys.argv[1:]))
