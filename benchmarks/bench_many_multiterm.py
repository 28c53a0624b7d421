"""fit_many with several random-effect terms against a loop of single fits, in one process.

    python benchmarks/bench_many_multiterm.py [--quick]

Design: 2,000 rows, y ~ x + (1|a) + (1|b) with crossed factors a (levels La) and b (levels Lb), each
row a random (a, b) pair; 200 Gaussian responses (``--quick``: 40), each with its own draws of the
effects.  Timed: ``glmm_ext.fit_many(df, responses, "~ x + (1|a) + (1|b)", n_jobs=1)`` against
``[GLMM.from_formula(f"{r} ~ x + (1|a) + (1|b)", df).fit() for r in responses]``; the estimates must
agree (max |difference| reported).  Two sizes of factors: 60 x 40 levels (the engine's iterations
dominate) and 20 x 10 (the formula and design work dominate).  `section(quick)` returns the markdown
section that benchmarks/run.py appends.
"""
import os
import sys
import time
import warnings

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import glmm_ext  # noqa: E402

RHS = "~ x + (1|a) + (1|b)"


def simulate(n_rows, n_responses, levels_a, levels_b, seed=11):
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, levels_a, n_rows), rng.integers(0, levels_b, n_rows)
    df = pd.DataFrame({"a": [f"a{i}" for i in a], "b": [f"b{i}" for i in b], "x": rng.normal(size=n_rows)})
    cols = {}
    for j in range(n_responses):
        ua, ub = rng.normal(0, 0.7, levels_a), rng.normal(0, 0.5, levels_b)
        cols[f"y{j}"] = 1.0 + 0.5 * df["x"].to_numpy() + ua[a] + ub[b] + rng.normal(size=n_rows)
    return pd.concat([df, pd.DataFrame(cols)], axis=1), list(cols)


def measure(n_rows, n_responses, levels_a, levels_b):
    df, names = simulate(n_rows, n_responses, levels_a, levels_b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        glmm_ext.fit_many(df, names[:2], RHS, n_jobs=1)  # warm-up: imports, caches
        t0 = time.perf_counter()
        table = glmm_ext.fit_many(df, names, RHS, n_jobs=1)
        t_many = time.perf_counter() - t0
        t0 = time.perf_counter()
        singles = [glmm_ext.GLMM.from_formula(f"{r} {RHS}", df).fit() for r in names]
        t_single = time.perf_counter() - t0
    est = table["estimate"].to_numpy().reshape(len(names), -1)
    ref = np.array([np.asarray(r.params, float) for r in singles])
    var = table["var_re[a]"].to_numpy()[::est.shape[1]]
    var_ref = np.array([float(r.cov_re["a"].iloc[0, 0]) for r in singles])
    return {"rows": n_rows, "responses": n_responses, "levels": f"{levels_a} x {levels_b}", "fit_many_s": t_many,
            "single_loop_s": t_single, "ratio": t_single / t_many,
            "max_diff": float(max(np.max(np.abs(est - ref)), np.max(np.abs(var - var_ref))))}


def section(quick: bool) -> str:
    """Markdown section: fit_many (several terms, n_jobs=1) against a loop of single fits."""
    n_resp = 40 if quick else 200
    rows = [measure(2_000, n_resp, 60, 40), measure(2_000, n_resp, 20, 10)]
    lines = ["## fit_many with crossed random effects (one process)", "",
             f"y ~ x + (1|a) + (1|b), 2,000 rows, {n_resp} Gaussian responses (REML), n_jobs=1.", "",
             "| levels a x b | fit_many (s) | loop of single fits (s) | speed-up | max abs difference |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['levels']} | {r['fit_many_s']:.2f} | {r['single_loop_s']:.2f} | {r['ratio']:.2f}x | "
                     f"{r['max_diff']:.1e} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(section("--quick" in sys.argv))
