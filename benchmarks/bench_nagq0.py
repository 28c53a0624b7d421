"""nagq=0 (beta in PIRLS, only the variance searched) against Laplace on the same simulated data.

usage:  python benchmarks/bench_nagq0.py [--quick] [--repeats K] [--families binomial,poisson]

`section(quick)` returns a markdown section (benchmarks/run.py appends every bench_*.py section).
Sizes: 1e5 rows / 1e3 groups and 1e6 / 1e4 (quick: 1e4 / 1e2 and 1e5 / 1e3); Binomial (logit) and
Poisson (log), y ~ x1 + x2 + (1 | g).  Seconds are the fit call only (the model is built once).  The two
fits are timed interleaved (Laplace, nagq=0, Laplace, ...) and each timing is the best of `repeats`
runs, as the machine may be shared: the speed-up is the ratio of the two best times of one run.
"""
import argparse
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import glmm_ext  # noqa: E402


def _interleaved(model, repeats):
    """(best Laplace seconds, best nagq=0 seconds, Laplace results, nagq=0 results), runs alternating."""
    best = {1: float("inf"), 0: float("inf")}
    res = {}
    for _ in range(repeats):
        for nagq in (1, 0):
            t0 = time.perf_counter()
            res[nagq] = model.fit(nagq=nagq)
            best[nagq] = min(best[nagq], time.perf_counter() - t0)
    return best[1], best[0], res[1], res[0]


def section(quick: bool, repeats: int = 3, families=("binomial", "poisson")) -> str:
    sizes = [(10_000, 100), (100_000, 1_000)] if quick else [(100_000, 1_000), (1_000_000, 10_000)]
    lines = ["## nagq=0 against Laplace", "",
             "Same simulated data for both (y ~ x1 + x2 + (1 | g), beta = (0.5, 0.8, -0.4), sigma_u = 0.6); "
             f"seconds for `fit()` only, the two fits interleaved, best of {repeats} runs each. llf is the "
             "Laplace log-likelihood at each fit's estimates.", "",
             "| family | rows | groups | Laplace s | nagq=0 s | speed-up | llf Laplace | llf nagq=0 | "
             "sigma_u Laplace | sigma_u nagq=0 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for family in families:
        for n, groups in sizes:
            df = glmm_ext.simulate(family, n_groups=groups, group_size=n // groups, beta=(0.5, 0.8, -0.4),
                                   sigma_u=0.6, seed=1)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = glmm_ext.GLMM.from_formula("y ~ x1 + x2", df, groups="g",
                                                   family=glmm_ext.make_family(family))
                lap_s, pq_s, lap, pq = _interleaved(model, repeats)
            lines.append(f"| {family} | {n:,} | {groups:,} | {lap_s:.3f} | {pq_s:.3f} | {lap_s / pq_s:.1f}x | "
                         f"{lap.llf:.3f} | {pq.llf:.3f} | {lap.var_re ** 0.5:.4f} | {pq.var_re ** 0.5:.4f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--families", default="binomial,poisson")
    args = parser.parse_args()
    print(section(args.quick, args.repeats, tuple(args.families.split(","))))
