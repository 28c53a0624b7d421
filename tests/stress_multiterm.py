"""Stress designs for the several-term engine: simulated data sets of design classes that the stored public
references (tests/data/multiterm, tests/data/multiterm_more) do not cover, fitted by lme4 and glmmTMB (stored in
tests/data/stress/reference.json) and by glmm_ext, judged as the hidden cases are:

1. glmm_ext's llf equals the independent dense likelihood (tests/dense_reference.py) at its own estimates (1e-6);
2. it is at least the best known optimum - 1e-4: the dense value at lme4's and at glmmTMB's estimates (so glmer's
   PIRLS logLik and glmer.nb's / expected-curvature Laplace values do not enter);
3. the fixed-effect SEs within 2% of glmmTMB's (full Hessian) for GLMMs, of lme4's for LMMs.

Run from the repository root:

    python tests/stress_multiterm.py --data     # (re)write the CSVs of tests/data/stress (seeded simulations)
    Rscript tests/data/stress/reference.R       # lme4 / glmmTMB fits -> tests/data/stress/reference.json
    python tests/stress_multiterm.py            # the comparison table

tests/test_stress_multiterm.py runs the same checks as slow tests (python -m pytest -m slow ...).
"""
import json
import os
import sys
import time
import warnings

import numpy as np
import pandas as pd
import patsy
import statsmodels.api as sm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dense_reference as dr  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "stress")
ONE = "1"


def _lv(prefix, codes, width=3):
    """String labels that sort as their codes (R's and patsy's level orders agree)."""
    return np.array([f"{prefix}{c:0{width}d}" for c in codes])


def _unbalanced_crossed(rng):
    """600 rows over 30 x 12 levels drawn with uneven probabilities (empty cells, 1-row levels), a slope on a."""
    n, na, nb = 600, 30, 12
    a = rng.choice(na, n, p=rng.dirichlet(np.full(na, 0.7)))
    b = rng.choice(nb, n, p=rng.dirichlet(np.full(nb, 0.7)))
    x = rng.normal(size=n)
    ua = rng.multivariate_normal([0, 0], [[1.0, 0.3], [0.3, 0.25]], na)
    y = 2 + 0.5 * x + ua[a, 0] + ua[a, 1] * x + rng.normal(0, 0.6, nb)[b] + rng.normal(0, 0.8, n)
    return pd.DataFrame({"y": y, "x": x, "a": _lv("a", a), "b": _lv("b", b)})


def _nested3(rng, family="gaussian"):
    """a/b/c: 6 x 4 x 3 levels, 4 rows per cell with 30% of rows dropped (unbalanced, some cells of 1 row)."""
    rows = [(i, j, k) for i in range(6) for j in range(4) for k in range(3) for _ in range(4)]
    rows = [r for r in rows if rng.uniform() > 0.3]
    a, b, c = (np.array(v) for v in zip(*rows))
    n = len(a)
    x = rng.normal(size=n)
    ua, ub, uc = rng.normal(0, 0.7, 6), rng.normal(0, 0.5, (6, 4)), rng.normal(0, 0.4, (6, 4, 3))
    eta = 0.3 * x + ua[a] + ub[a, b] + uc[a, b, c]
    if family == "gaussian":
        y = 5 + eta + rng.normal(0, 0.5, n)
    else:
        y = rng.poisson(np.exp(0.5 + eta)).astype(float)
    # inner labels repeat across outer levels (b1 under every a): the nesting is what separates them
    return pd.DataFrame({"y": y, "x": x, "a": _lv("a", a, 1), "b": _lv("b", b, 1), "c": _lv("c", c, 1)})


def _partially_crossed(rng, family="gaussian"):
    """Pupils in 25 schools crossed with 15 areas, each school drawing its pupils from 3 neighbouring areas."""
    n_sch, n_area, per = 25, 15, 24
    sch = np.repeat(np.arange(n_sch), per)
    area = (sch * n_area // n_sch + rng.integers(0, 3, sch.size)) % n_area
    x = rng.normal(size=sch.size)
    eta = 0.4 * x + rng.normal(0, 0.6, n_sch)[sch] + rng.normal(0, 0.4, n_area)[area]
    if family == "gaussian":
        y = 1 + eta + rng.normal(0, 1.0, sch.size)
        trials = np.ones(sch.size)
    else:
        trials = rng.integers(1, 9, sch.size).astype(float)
        y = rng.binomial(trials.astype(int), 1 / (1 + np.exp(-(-0.3 + eta)))).astype(float)
    return pd.DataFrame({"y": y, "m": trials, "x": x, "school": _lv("s", sch), "area": _lv("r", area)})


def _tiny_levels(rng, family="poisson"):
    """180 levels of 1-2 rows crossed with 40 levels: most conditional modes carried by one or two rows."""
    na, nb = 180, 40
    a = np.concatenate([np.arange(na), rng.choice(na, 90, replace=False)])
    b = rng.integers(0, nb, a.size)
    x = rng.normal(size=a.size)
    eta = 0.3 * x + rng.normal(0, 0.8, na)[a] + rng.normal(0, 0.5, nb)[b]
    y = rng.poisson(np.exp(0.8 + eta)).astype(float) if family == "poisson" else 2 + eta + rng.normal(0, 0.7, a.size)
    return pd.DataFrame({"y": y, "x": x, "a": _lv("a", a), "b": _lv("b", b)})


def _zero_variance(rng, family="gaussian"):
    """(x|a) + (1|b) where b has no variance at all (its estimate ends on the boundary)."""
    na, nb, per = 20, 8, 20
    a = np.repeat(np.arange(na), per)
    b = rng.integers(0, nb, a.size)
    x = rng.normal(size=a.size)
    ua = rng.multivariate_normal([0, 0], [[0.5, 0.1], [0.1, 0.2]], na)
    eta = 0.4 * x + ua[a, 0] + ua[a, 1] * x
    if family == "gaussian":
        y = 3 + eta + rng.normal(0, 1.0, a.size)
    else:
        y = rng.poisson(np.exp(0.5 + eta)).astype(float)
    return pd.DataFrame({"y": y, "x": x, "a": _lv("a", a), "b": _lv("b", b)})


def _corr_near_one(rng, family="gaussian", rho=0.995):
    """(x|a) with correlation +-0.995 between intercept and slope, plus (1|b)."""
    na, nb, per = 25, 10, 12
    a = np.repeat(np.arange(na), per)
    b = rng.integers(0, nb, a.size)
    x = rng.uniform(-1, 1, a.size)
    s0, s1 = 0.8, 0.5
    ua = rng.multivariate_normal([0, 0], [[s0 ** 2, rho * s0 * s1], [rho * s0 * s1, s1 ** 2]], na)
    eta = 0.5 * x + ua[a, 0] + ua[a, 1] * x + rng.normal(0, 0.3, nb)[b]
    if family == "gaussian":
        y = 1 + eta + rng.normal(0, 0.5, a.size)
    else:
        y = rng.poisson(np.exp(1.0 + eta)).astype(float)
    return pd.DataFrame({"y": y, "x": x, "a": _lv("a", a), "b": _lv("b", b)})


def _nb2_crossed(rng):
    """NB2 (theta 1.5) with crossed a (40) x b (15) and a slope on b."""
    n, na, nb = 700, 40, 15
    a, b = rng.integers(0, na, n), rng.integers(0, nb, n)
    x = rng.normal(size=n)
    mu = np.exp(1.0 + 0.3 * x + rng.normal(0, 0.5, na)[a] + rng.normal(0, 0.4, nb)[b] + rng.normal(0, 0.2, nb)[b] * x)
    y = rng.negative_binomial(1.5, 1.5 / (1.5 + mu)).astype(float)
    return pd.DataFrame({"y": y, "x": x, "a": _lv("a", a), "b": _lv("b", b)})


def _poisson_offset(rng):
    """Counts over exposures spanning 3 decades, nested plots/subplots plus a crossed year term."""
    n_plot, n_sub, n_year = 15, 4, 6
    rows = [(p, s, t) for p in range(n_plot) for s in range(n_sub) for t in range(n_year) if rng.uniform() > 0.2]
    p, s, t = (np.array(v) for v in zip(*rows))
    expo = np.exp(rng.uniform(-3, 4, p.size))
    x = rng.normal(size=p.size)
    eta = -1.0 + 0.4 * x + np.log(expo) + rng.normal(0, 0.5, n_plot)[p] + rng.normal(0, 0.3, (n_plot, n_sub))[p, s] \
        + rng.normal(0, 0.3, n_year)[t]
    return pd.DataFrame({"y": rng.poisson(np.exp(eta)).astype(float), "x": x, "logE": np.log(expo),
                         "plot": _lv("p", p), "sub": _lv("q", s, 1), "year": _lv("t", t, 1)})


def _binomial_trials_slope(rng):
    """Successes of 1..12 trials, (x|a) + (1|b), a with 30 levels, b with 10."""
    n, na, nb = 500, 30, 10
    a, b = rng.integers(0, na, n), rng.integers(0, nb, n)
    m = rng.integers(1, 13, n).astype(float)
    x = rng.normal(size=n)
    ua = rng.multivariate_normal([0, 0], [[0.6, -0.15], [-0.15, 0.3]], na)
    eta = -0.5 + 0.6 * x + ua[a, 0] + ua[a, 1] * x + rng.normal(0, 0.5, nb)[b]
    y = rng.binomial(m.astype(int), 1 / (1 + np.exp(-eta))).astype(float)
    return pd.DataFrame({"y": y, "m": m, "x": x, "a": _lv("a", a), "b": _lv("b", b)})


def _bernoulli_nested(rng):
    """0/1 outcomes, 12 clinics / 5 doctors each / 6-10 patients per doctor: (1|clinic/doctor)."""
    rows = [(c, d) for c in range(12) for d in range(5) for _ in range(rng.integers(6, 11))]
    c, d = (np.array(v) for v in zip(*rows))
    x = rng.normal(size=c.size)
    eta = 0.2 + 0.7 * x + rng.normal(0, 0.8, 12)[c] + rng.normal(0, 0.6, (12, 5))[c, d]
    y = (rng.uniform(size=c.size) < 1 / (1 + np.exp(-eta))).astype(float)
    return pd.DataFrame({"y": y, "x": x, "clinic": _lv("c", c), "doctor": _lv("d", d, 1)})


def _two_slopes(rng):
    """Gaussian (x|a) + (z|b): two crossed terms each with a correlated slope."""
    n, na, nb = 800, 25, 20
    a, b = rng.integers(0, na, n), rng.integers(0, nb, n)
    x, z = rng.normal(size=n), rng.normal(size=n)
    ua = rng.multivariate_normal([0, 0], [[1.0, 0.4], [0.4, 0.5]], na)
    ub = rng.multivariate_normal([0, 0], [[0.5, -0.2], [-0.2, 0.3]], nb)
    y = 1 + 0.5 * x - 0.3 * z + ua[a, 0] + ua[a, 1] * x + ub[b, 0] + ub[b, 1] * z + rng.normal(0, 0.7, n)
    return pd.DataFrame({"y": y, "x": x, "z": z, "a": _lv("a", a), "b": _lv("b", b)})


def _poisson_q3_crossed(rng):
    """Poisson (x1 + x2 | a) + (1 | b): a 3 x 3 covariance beside a crossed intercept."""
    n, na, nb = 900, 30, 12
    a, b = rng.integers(0, na, n), rng.integers(0, nb, n)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    S = np.array([[0.4, 0.1, 0.0], [0.1, 0.2, 0.05], [0.0, 0.05, 0.15]])
    ua = rng.multivariate_normal(np.zeros(3), S, na)
    eta = 0.5 + 0.3 * x1 - 0.2 * x2 + ua[a, 0] + ua[a, 1] * x1 + ua[a, 2] * x2 + rng.normal(0, 0.4, nb)[b]
    return pd.DataFrame({"y": rng.poisson(np.exp(eta)).astype(float), "x1": x1, "x2": x2,
                         "a": _lv("a", a), "b": _lv("b", b)})


def _big_scale(rng):
    """y around 1e6 with SDs of 1e3, an uncentred x in 1000..1010 with a slope: scaling and conditioning."""
    n, na, nb = 400, 20, 8
    a, b = rng.integers(0, na, n), rng.integers(0, nb, n)
    x = 1000 + 10 * rng.uniform(size=n)
    ua = rng.multivariate_normal([0, 0], [[1.0, 0.2], [0.2, 0.3]], na)
    y = 1e6 + 1e3 * (0.5 * (x - 1005) + ua[a, 0] + ua[a, 1] * (x - 1005) + rng.normal(0, 0.5, nb)[b]
                     + rng.normal(0, 1.0, n))
    return pd.DataFrame({"y": y, "x": x, "a": _lv("a", a), "b": _lv("b", b)})


def _tiny_sigma(rng):
    """Residual SD 0.01 under crossed effects of SD 1 (every cell replicated twice)."""
    a, b = np.meshgrid(np.arange(12), np.arange(9), indexing="ij")
    a, b = np.repeat(a.ravel(), 2), np.repeat(b.ravel(), 2)
    y = 3 + rng.normal(0, 1.0, 12)[a] + rng.normal(0, 0.7, 9)[b] + rng.normal(0, 0.01, a.size)
    return pd.DataFrame({"y": y, "x": rng.normal(size=a.size), "a": _lv("a", a), "b": _lv("b", b)})


def _bern_large_var(rng):
    """0/1 rows with an a-SD of 3 (many all-0 / all-1 levels), 60 x 8 crossed, 5 rows per a level."""
    a = np.repeat(np.arange(60), 5)
    b = rng.integers(0, 8, a.size)
    x = rng.normal(size=a.size)
    eta = 0.5 * x + rng.normal(0, 3.0, 60)[a] + rng.normal(0, 0.7, 8)[b]
    y = (rng.uniform(size=a.size) < 1 / (1 + np.exp(-eta))).astype(float)
    return pd.DataFrame({"y": y, "x": x, "a": _lv("a", a), "b": _lv("b", b)})


def _factor_slope(rng):
    """Poisson with a 3-level factor f varying by a (a 3 x 3 covariance of level effects) and (1|b)."""
    n, na, nb = 600, 25, 10
    a, b = rng.integers(0, na, n), rng.integers(0, nb, n)
    f = rng.integers(0, 3, n)
    ua = rng.multivariate_normal(np.zeros(3), [[0.3, 0.15, 0.1], [0.15, 0.3, 0.15], [0.1, 0.15, 0.4]], na)
    eta = 0.8 + np.array([0, 0.3, -0.2])[f] + ua[a, f] + rng.normal(0, 0.3, nb)[b]
    return pd.DataFrame({"y": rng.poisson(np.exp(eta)).astype(float), "f": _lv("f", f, 1),
                         "a": _lv("a", a), "b": _lv("b", b)})


def _separated(rng):
    """Binomial trials where 8 of 30 a levels have no success at all, crossed with b (12 levels)."""
    n, na, nb = 360, 30, 12
    a, b = np.repeat(np.arange(na), n // na), rng.integers(0, nb, n)
    m = rng.integers(1, 6, n).astype(float)
    x = rng.normal(size=n)
    eta = -1.5 + 0.5 * x + rng.normal(0, 1.0, na)[a] + rng.normal(0, 0.5, nb)[b]
    y = rng.binomial(m.astype(int), 1 / (1 + np.exp(-eta))).astype(float)
    y[a < 8] = 0.0
    return pd.DataFrame({"y": y, "m": m, "x": x, "a": _lv("a", a), "b": _lv("b", b)})


def _no_effects(rng):
    """Gaussian rows with no group effect at all (both crossed terms' variances end at zero)."""
    n = 240
    a, b = rng.integers(0, 15, n), rng.integers(0, 10, n)
    x = rng.normal(size=n)
    return pd.DataFrame({"y": 1 + 0.3 * x + rng.normal(size=n), "x": x, "a": _lv("a", a), "b": _lv("b", b)})


def _many_fixed(rng):
    """Gaussian with 18 fixed-effect columns (two factors and their interaction) and crossed a, b."""
    n = 720
    a, b = rng.integers(0, 24, n), rng.integers(0, 12, n)
    f, g = rng.integers(0, 6, n), rng.integers(0, 3, n)
    x = rng.normal(size=n)
    y = (rng.normal(0, 0.5, (6, 3))[f, g] + 0.2 * x + rng.normal(0, 0.6, 24)[a] + rng.normal(0, 0.4, 12)[b]
         + rng.normal(0, 1.0, n))
    return pd.DataFrame({"y": y, "x": x, "f": _lv("f", f, 1), "g": _lv("g", g, 1), "a": _lv("a", a), "b": _lv("b", b)})


def _nb2_overdispersed_nested(rng):
    """NB2 with theta 0.4 (60% zeros) and (1|site/plot), a numeric covariate."""
    rows = [(s, p) for s in range(15) for p in range(4) for _ in range(rng.integers(3, 9))]
    s, p = (np.array(v) for v in zip(*rows))
    x = rng.normal(size=s.size)
    mu = np.exp(0.3 + 0.4 * x + rng.normal(0, 0.6, 15)[s] + rng.normal(0, 0.4, (15, 4))[s, p])
    y = rng.negative_binomial(0.4, 0.4 / (0.4 + mu)).astype(float)
    return pd.DataFrame({"y": y, "x": x, "site": _lv("s", s), "plot": _lv("p", p, 1)})


def _large_counts(rng):
    """Poisson means near 3000 with crossed a (20) and b (15) of SD 0.2 and 0.1."""
    n = 300
    a, b = rng.integers(0, 20, n), rng.integers(0, 15, n)
    x = rng.normal(size=n)
    eta = 8 + 0.1 * x + rng.normal(0, 0.2, 20)[a] + rng.normal(0, 0.1, 15)[b]
    return pd.DataFrame({"y": rng.poisson(np.exp(eta)).astype(float), "x": x, "a": _lv("a", a), "b": _lv("b", b)})


def _far_slope(rng, family="poisson"):
    """A "year" slope: x = 2000 + (0..10) in (x|a) + (1|b), far from zero (the search centres it, `_centring`)."""
    n, na, nb = 480, 24, 10
    a, b = rng.integers(0, na, n), rng.integers(0, nb, n)
    x = 2000 + rng.integers(0, 11, n).astype(float)
    ua = rng.multivariate_normal([0, 0], [[0.3, 0.02], [0.02, 0.01]], na)
    eta = 0.05 * (x - 2005) + ua[a, 0] + ua[a, 1] * (x - 2005) + rng.normal(0, 0.4, nb)[b]
    if family == "poisson":
        y = rng.poisson(np.exp(1.0 + eta)).astype(float)
    else:
        y = (rng.uniform(size=n) < 1 / (1 + np.exp(-eta))).astype(float)
    return pd.DataFrame({"y": y, "x": x, "a": _lv("a", a), "b": _lv("b", b)})


def _rank2_slopes(rng, family="gaussian"):
    """(x1 + x2 | a) whose 3 x 3 covariance has rank 2 (the x2 effect a multiple of the intercept), plus (1|b)."""
    n, na, nb = 720, 30, 12
    a, b = rng.integers(0, na, n), rng.integers(0, nb, n)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    u0, u1 = rng.normal(0, 0.8, na), rng.normal(0, 0.4, na)
    eta = 0.3 * x1 - 0.2 * x2 + u0[a] + u1[a] * x1 + 0.5 * u0[a] * x2 + rng.normal(0, 0.5, nb)[b]
    if family == "gaussian":
        y = 2 + eta + rng.normal(0, 0.6, n)
    else:
        y = rng.poisson(np.exp(0.5 + 0.6 * eta)).astype(float)
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "a": _lv("a", a), "b": _lv("b", b)})


def _inner_slope(rng, family="gaussian"):
    """Slopes at the inner level of a nesting: (1|a) + (x|a:b), 10 x 6 cells of 4-10 rows."""
    rows = [(i, j) for i in range(10) for j in range(6) for _ in range(rng.integers(4, 11))]
    a, b = (np.array(v) for v in zip(*rows))
    x = rng.normal(size=a.size)
    ub = rng.multivariate_normal([0, 0], [[0.4, 0.1], [0.1, 0.2]], (10, 6))
    eta = 0.4 * x + rng.normal(0, 0.7, 10)[a] + ub[a, b, 0] + ub[a, b, 1] * x
    if family == "gaussian":
        y = 1 + eta + rng.normal(0, 0.5, a.size)
        m = np.ones(a.size)
    else:
        m = rng.integers(2, 8, a.size).astype(float)
        y = rng.binomial(m.astype(int), 1 / (1 + np.exp(-eta))).astype(float)
    return pd.DataFrame({"y": y, "m": m, "x": x, "a": _lv("a", a), "b": _lv("b", b, 1)})


DATASETS = {
    "unbal_crossed": _unbalanced_crossed,
    "nested3_gauss": lambda rng: _nested3(rng, "gaussian"),
    "nested3_pois": lambda rng: _nested3(rng, "poisson"),
    "partial_gauss": lambda rng: _partially_crossed(rng, "gaussian"),
    "partial_binom": lambda rng: _partially_crossed(rng, "binomial"),
    "tiny_pois": lambda rng: _tiny_levels(rng, "poisson"),
    "tiny_gauss": lambda rng: _tiny_levels(rng, "gaussian"),
    "zero_gauss": lambda rng: _zero_variance(rng, "gaussian"),
    "zero_pois": lambda rng: _zero_variance(rng, "poisson"),
    "corr_pos_gauss": lambda rng: _corr_near_one(rng, "gaussian", 0.995),
    "corr_neg_pois": lambda rng: _corr_near_one(rng, "poisson", -0.995),
    "nb2_crossed": _nb2_crossed,
    "pois_offset": _poisson_offset,
    "binom_trials_slope": _binomial_trials_slope,
    "bern_nested": _bernoulli_nested,
    "two_slopes": _two_slopes,
    "pois_q3": _poisson_q3_crossed,
    "big_scale": _big_scale,
    "tiny_sigma": _tiny_sigma,
    "bern_large_var": _bern_large_var,
    "factor_slope": _factor_slope,
    "separated": _separated,
    "no_effects": _no_effects,
    "many_fixed": _many_fixed,
    "nb2_nested": _nb2_overdispersed_nested,
    "large_counts": _large_counts,
    "far_pois": lambda rng: _far_slope(rng, "poisson"),
    "far_bern": lambda rng: _far_slope(rng, "binomial"),
    "rank2_gauss": lambda rng: _rank2_slopes(rng, "gaussian"),
    "rank2_pois": lambda rng: _rank2_slopes(rng, "poisson"),
    "inner_gauss": lambda rng: _inner_slope(rng, "gaussian"),
    "inner_binom": lambda rng: _inner_slope(rng, "binomial"),
}
# public data sets written by reference.R (lme4's InstEval: its first 4,000 rows; VerbAgg)
PUBLIC = {"insteval_sub", "verbagg"}


def T(key, group, z=(ONE,), r=None):
    """A term: glmm_ext's key in cov_re, grouping columns, z columns, R's group name(s) in VarCorr."""
    return {"key": key, "group": list(group), "z": list(z), "r": r if r is not None else key}


AB = [T("a", ["a"], r="a"), T("b", ["b"], r="b")]
AB_SLOPE = [T("a", ["a"], [ONE, "x"], r="a"), T("b", ["b"], r="b")]
NEST3 = [T("a", ["a"], r="a"), T("b:a", ["a", "b"], r="b:a"), T("c:b:a", ["a", "b", "c"], r=["c:(b:a)", "c:b:a"])]

# name: dict(data, formula (glmm_ext), rformula (lme4 / glmmTMB), fixed (patsy), family, reml, terms, kw)
SPECS = {}


def _spec(name, data, formula, rformula, fixed, family, terms, reml=None, **kw):
    SPECS[name] = dict(data=data, formula=formula, rformula=rformula, fixed=fixed, family=family, terms=terms,
                       reml=reml, kw=kw)


_spec("unbal_crossed_slope_reml", "unbal_crossed", "y ~ x + (x|a) + (1|b)", "y ~ x + (x | a) + (1 | b)", "x",
      "gaussian", AB_SLOPE, reml=True)
_spec("unbal_crossed_slope_ml", "unbal_crossed", "y ~ x + (x|a) + (1|b)", "y ~ x + (x | a) + (1 | b)", "x",
      "gaussian", AB_SLOPE, reml=False)
_spec("nested3_reml", "nested3_gauss", "y ~ x + (1|a/b/c)", "y ~ x + (1 | a/b/c)", "x", "gaussian", NEST3, reml=True)
_spec("nested3_slope_ml", "nested3_gauss", "y ~ x + (x|a) + (1|a:b) + (1|a:b:c)",
      "y ~ x + (x | a) + (1 | a:b) + (1 | a:b:c)", "x", "gaussian",
      [T("a", ["a"], [ONE, "x"]), T("a:b", ["a", "b"]), T("a:b:c", ["a", "b", "c"])], reml=False)
_spec("nested3_poisson", "nested3_pois", "y ~ x + (1|a/b/c)", "y ~ x + (1 | a/b/c)", "x", "poisson", NEST3)
_spec("partial_crossed_reml", "partial_gauss", "y ~ x + (1|school) + (1|area)", "y ~ x + (1 | school) + (1 | area)",
      "x", "gaussian", [T("school", ["school"]), T("area", ["area"])], reml=True)
_spec("partial_crossed_binom_trials", "partial_binom", "y + I(m - y) ~ x + (1|school) + (1|area)",
      "cbind(y, m - y) ~ x + (1 | school) + (1 | area)", "x", "binomial",
      [T("school", ["school"]), T("area", ["area"])], trials="m")
_spec("tiny_levels_poisson", "tiny_pois", "y ~ x + (1|a) + (1|b)", "y ~ x + (1 | a) + (1 | b)", "x", "poisson", AB)
_spec("tiny_levels_reml", "tiny_gauss", "y ~ x + (1|a) + (1|b)", "y ~ x + (1 | a) + (1 | b)", "x", "gaussian", AB,
      reml=True)
_spec("tiny_levels_nb2", "tiny_pois", "y ~ x + (1|a) + (1|b)", "y ~ x + (1 | a) + (1 | b)", "x", "nbinom2", AB)
_spec("zero_var_slope_ml", "zero_gauss", "y ~ x + (x|a) + (1|b)", "y ~ x + (x | a) + (1 | b)", "x", "gaussian",
      AB_SLOPE, reml=False)
_spec("zero_var_slope_reml", "zero_gauss", "y ~ x + (x|a) + (1|b)", "y ~ x + (x | a) + (1 | b)", "x", "gaussian",
      AB_SLOPE, reml=True)
_spec("zero_var_poisson", "zero_pois", "y ~ x + (x|a) + (1|b)", "y ~ x + (x | a) + (1 | b)", "x", "poisson", AB_SLOPE)
_spec("corr_pos_ml", "corr_pos_gauss", "y ~ x + (x|a) + (1|b)", "y ~ x + (x | a) + (1 | b)", "x", "gaussian",
      AB_SLOPE, reml=False)
_spec("corr_pos_reml", "corr_pos_gauss", "y ~ x + (x|a) + (1|b)", "y ~ x + (x | a) + (1 | b)", "x", "gaussian",
      AB_SLOPE, reml=True)
_spec("corr_neg_poisson", "corr_neg_pois", "y ~ x + (x|a) + (1|b)", "y ~ x + (x | a) + (1 | b)", "x", "poisson",
      AB_SLOPE)
_spec("corr_neg_nb2", "corr_neg_pois", "y ~ x + (x|a) + (1|b)", "y ~ x + (x | a) + (1 | b)", "x", "nbinom2",
      AB_SLOPE)
_spec("nb2_crossed_slope", "nb2_crossed", "y ~ x + (1|a) + (x|b)", "y ~ x + (1 | a) + (x | b)", "x", "nbinom2",
      [T("a", ["a"]), T("b", ["b"], [ONE, "x"])])
_spec("nb2_crossed", "nb2_crossed", "y ~ x + (1|a) + (1|b)", "y ~ x + (1 | a) + (1 | b)", "x", "nbinom2", AB)
_spec("poisson_offset_nested_crossed", "pois_offset", "y ~ x + (1|plot/sub) + (1|year)",
      "y ~ x + offset(logE) + (1 | plot/sub) + (1 | year)", "x", "poisson",
      [T("plot", ["plot"]), T("sub:plot", ["plot", "sub"]), T("year", ["year"])], offset="logE")
_spec("nb2_offset_nested_crossed", "pois_offset", "y ~ x + (1|plot/sub) + (1|year)",
      "y ~ x + offset(logE) + (1 | plot/sub) + (1 | year)", "x", "nbinom2",
      [T("plot", ["plot"]), T("sub:plot", ["plot", "sub"]), T("year", ["year"])], offset="logE")
_spec("binom_trials_slope_crossed", "binom_trials_slope", "y + I(m - y) ~ x + (x|a) + (1|b)",
      "cbind(y, m - y) ~ x + (x | a) + (1 | b)", "x", "binomial", AB_SLOPE, trials="m")
_spec("bernoulli_nested", "bern_nested", "y ~ x + (1|clinic/doctor)", "y ~ x + (1 | clinic/doctor)", "x", "binomial",
      [T("clinic", ["clinic"]), T("doctor:clinic", ["clinic", "doctor"])])
_spec("two_slopes_reml", "two_slopes", "y ~ x + z + (x|a) + (z|b)", "y ~ x + z + (x | a) + (z | b)", "x + z",
      "gaussian", [T("a", ["a"], [ONE, "x"]), T("b", ["b"], [ONE, "z"])], reml=True)
_spec("two_slopes_diag_ml", "two_slopes", "y ~ x + z + (x||a) + (z||b)", "y ~ x + z + (x || a) + (z || b)", "x + z",
      "gaussian", [T("a", ["a"], [ONE, "x"]), T("b", ["b"], [ONE, "z"])], reml=False)
_spec("poisson_q3_crossed", "pois_q3", "y ~ x1 + x2 + (x1 + x2|a) + (1|b)", "y ~ x1 + x2 + (x1 + x2 | a) + (1 | b)",
      "x1 + x2", "poisson", [T("a", ["a"], [ONE, "x1", "x2"]), T("b", ["b"])])

_spec("big_scale_slope_ml", "big_scale", "y ~ x + (x|a) + (1|b)", "y ~ x + (x | a) + (1 | b)", "x", "gaussian",
      AB_SLOPE, reml=False, equiv="y ~ I(x - 1005) + (1 + I(x - 1005) | a) + (1 | b)", shift={"x": 1005})
_spec("tiny_sigma_crossed_reml", "tiny_sigma", "y ~ x + (1|a) + (1|b)", "y ~ x + (1 | a) + (1 | b)", "x", "gaussian",
      AB, reml=True)
_spec("bernoulli_large_var_crossed", "bern_large_var", "y ~ x + (1|a) + (1|b)", "y ~ x + (1 | a) + (1 | b)", "x",
      "binomial", AB)
_spec("poisson_factor_slope_crossed", "factor_slope", "y ~ C(f) + (C(f)|a) + (1|b)", "y ~ f + (f | a) + (1 | b)",
      "C(f)", "poisson", [T("a", ["a"], [ONE, ("level", "f", "f1"), ("level", "f", "f2")]), T("b", ["b"])])
_spec("binomial_separated_levels", "separated", "y + I(m - y) ~ x + (1|a) + (1|b)",
      "cbind(y, m - y) ~ x + (1 | a) + (1 | b)", "x", "binomial", AB, trials="m")
_spec("no_effects_ml", "no_effects", "y ~ x + (1|a) + (1|b)", "y ~ x + (1 | a) + (1 | b)", "x", "gaussian", AB,
      reml=False)
_spec("no_effects_slope_reml", "no_effects", "y ~ x + (x|a) + (1|b)", "y ~ x + (x | a) + (1 | b)", "x", "gaussian",
      AB_SLOPE, reml=True)
_spec("many_fixed_reml", "many_fixed", "y ~ C(f) * C(g) + x + (1|a) + (1|b)", "y ~ f * g + x + (1 | a) + (1 | b)",
      "C(f) * C(g) + x", "gaussian", AB, reml=True)
_spec("nb2_overdispersed_nested", "nb2_nested", "y ~ x + (1|site/plot)", "y ~ x + (1 | site/plot)", "x", "nbinom2",
      [T("site", ["site"]), T("plot:site", ["site", "plot"])])
_spec("poisson_large_counts", "large_counts", "y ~ x + (1|a) + (1|b)", "y ~ x + (1 | a) + (1 | b)", "x", "poisson", AB)
# equiv: the same model on centred x, lme4's / glmmTMB's fits of which are the reference (on raw x both end
# elsewhere, and glmmTMB's SEs there are 50% off); shift: its centring, to map its covariance back
_spec("far_slope_poisson", "far_pois", "y ~ x + (x|a) + (1|b)", "y ~ x + (x | a) + (1 | b)", "x", "poisson", AB_SLOPE,
      equiv="y ~ I(x - 2005) + (1 + I(x - 2005) | a) + (1 | b)", shift={"x": 2005})
_spec("far_slope_bernoulli", "far_bern", "y ~ x + (x|a) + (1|b)", "y ~ x + (x | a) + (1 | b)", "x", "binomial",
      AB_SLOPE, equiv="y ~ I(x - 2005) + (1 + I(x - 2005) | a) + (1 | b)", shift={"x": 2005})
_spec("far_slope_reml", "far_pois", "np.log1p(y) ~ x + (x|a) + (1|b)", "log1p(y) ~ x + (x | a) + (1 | b)", "x",
      "gaussian", AB_SLOPE, reml=True, equiv="log1p(y) ~ I(x - 2005) + (1 + I(x - 2005) | a) + (1 | b)",
      shift={"x": 2005}, response="log1p")
_spec("insteval_sub_reml", "insteval_sub", "y ~ C(service) + (1|s) + (1|d) + (1|dept)",
      "y ~ service + (1 | s) + (1 | d) + (1 | dept)", "C(service)", "gaussian",
      [T("s", ["s"]), T("d", ["d"]), T("dept", ["dept"])], reml=True)
_spec("insteval_sub_slope_ml", "insteval_sub", "y ~ C(service) + (1|s) + (1|d) + (C(service)|dept)",
      "y ~ service + (1 | s) + (1 | d) + (service | dept)", "C(service)", "gaussian",
      [T("s", ["s"]), T("d", ["d"]), T("dept", ["dept"], [ONE, ("level", "service", "v1")])], reml=False)
_spec("verbagg_slope_crossed", "verbagg", "r2 ~ Anger + C(Gender) + C(btype) + (1|id) + (Anger|item)",
      "r2 ~ Anger + Gender + btype + (1 | id) + (Anger | item)", "Anger + C(Gender) + C(btype)", "binomial",
      [T("id", ["id"]), T("item", ["item"], [ONE, "Anger"])], response="r2")

Q3 = [T("a", ["a"], [ONE, "x1", "x2"]), T("b", ["b"])]
INNER = [T("a", ["a"]), T("a:b", ["a", "b"], [ONE, "x"])]
_spec("rank2_slopes_ml", "rank2_gauss", "y ~ x1 + x2 + (x1 + x2|a) + (1|b)", "y ~ x1 + x2 + (x1 + x2 | a) + (1 | b)",
      "x1 + x2", "gaussian", Q3, reml=False)
_spec("rank2_slopes_reml", "rank2_gauss", "y ~ x1 + x2 + (x1 + x2|a) + (1|b)",
      "y ~ x1 + x2 + (x1 + x2 | a) + (1 | b)", "x1 + x2", "gaussian", Q3, reml=True)
_spec("rank2_slopes_poisson", "rank2_pois", "y ~ x1 + x2 + (x1 + x2|a) + (1|b)",
      "y ~ x1 + x2 + (x1 + x2 | a) + (1 | b)", "x1 + x2", "poisson", Q3)
_spec("inner_slope_reml", "inner_gauss", "y ~ x + (1|a) + (x|a:b)", "y ~ x + (1 | a) + (x | a:b)", "x", "gaussian",
      INNER, reml=True)
_spec("inner_slope_binom_trials", "inner_binom", "y + I(m - y) ~ x + (1|a) + (x|a:b)",
      "cbind(y, m - y) ~ x + (1 | a) + (x | a:b)", "x", "binomial", INNER, trials="m")
_spec("probit_trials_slope_crossed", "binom_trials_slope", "y + I(m - y) ~ x + (x|a) + (1|b)",
      "cbind(y, m - y) ~ x + (x | a) + (1 | b)", "x", "binomial", AB_SLOPE, trials="m", link="probit")
_spec("cloglog_inner_slope", "inner_binom", "y + I(m - y) ~ x + (1|a) + (x|a:b)",
      "cbind(y, m - y) ~ x + (1 | a) + (x | a:b)", "x", "binomial", INNER, trials="m", link="cloglog")
_spec("nb2_slope_nested", "inner_binom", "y ~ x + (1|a) + (x|a:b)", "y ~ x + (1 | a) + (x | a:b)", "x", "nbinom2",
      INNER)


def write_data():
    os.makedirs(DATA, exist_ok=True)
    for i, (name, make) in enumerate(DATASETS.items()):  # (the seed is the position: append new data sets)
        make(np.random.default_rng(1000 + i)).to_csv(os.path.join(DATA, name + ".csv"), index=False,
                                                     float_format="%.10g")
    specs = {k: {"data": v["data"] + ".csv", "formula": v["rformula"], "family": v["family"], "reml": v["reml"],
                 "equiv": v["kw"].get("equiv"), "link": v["kw"].get("link")} for k, v in SPECS.items()}
    # (insteval_sub.csv and verbagg.csv: reference.R writes them)
    with open(os.path.join(DATA, "specs.json"), "w") as fh:
        json.dump(specs, fh, indent=1)


def load(name):
    return pd.read_csv(os.path.join(DATA, SPECS[name]["data"] + ".csv"))


def reference():
    with open(os.path.join(DATA, "reference.json")) as fh:
        return json.load(fh)["models"]


def family_of(spec):
    link = spec["kw"].get("link")
    if link:
        return sm.families.Binomial({"probit": sm.families.links.Probit, "cloglog": sm.families.links.CLogLog}[link]())
    return {"gaussian": sm.families.Gaussian, "poisson": sm.families.Poisson, "binomial": sm.families.Binomial,
            "nbinom2": sm.families.NegativeBinomial}[spec["family"]]()


def fit(name):
    spec = SPECS[name]
    data = load(name)
    kw = {"offset": spec["kw"]["offset"]} if "offset" in spec["kw"] else {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import glmm_ext
        model = glmm_ext.GLMM.from_formula(spec["formula"], data, family=family_of(spec), **kw)
        res = model.fit(reml=bool(spec["reml"])) if spec["family"] == "gaussian" else model.fit()
    return res, [str(w.message) for w in caught]


def r_name(py):
    """patsy's column name -> R's treatment-contrast name: C(f)[T.f1] -> ff1, a:b interactions alike."""
    import re
    return "(Intercept)" if py == "Intercept" else re.sub(r"C\((\w+)\)\[T\.([^\]]+)\]", r"\1\2", py)


def dense(name, beta_by_name, covs, scale):
    """Dense log-likelihood at (beta by R name, a covariance per term, sigma^2 or 1/theta)."""
    spec = SPECS[name]
    data = load(name)
    X = patsy.dmatrix(spec["fixed"], data, return_type="dataframe")
    beta = np.array([beta_by_name[r_name(c)] for c in X.columns])
    designs = [dr.term_design(data, t["group"], t["z"]) for t in spec["terms"]]
    resp = spec["kw"].get("response", "y")
    y = np.log1p(data["y"].to_numpy(float)) if resp == "log1p" else data[resp].to_numpy(float)
    if spec["family"] == "gaussian":
        return dr.gaussian_loglik(y, X.to_numpy(), beta, designs, covs, scale, reml=bool(spec["reml"]))
    offset = data[spec["kw"]["offset"]].to_numpy(float) if "offset" in spec["kw"] else None
    trials = data[spec["kw"]["trials"]].to_numpy(float) if "trials" in spec["kw"] else None
    nb_theta = 1.0 / scale if spec["family"] == "nbinom2" else None
    return dr.laplace_loglik(y, X.to_numpy(), beta, designs, covs, spec["family"], offset, trials, nb_theta,
                             spec["kw"].get("link"))


def our_covs(name, res):
    cov_re = res.cov_re
    return [np.atleast_2d(np.asarray(cov_re if not isinstance(cov_re, dict) else cov_re[t["key"]], float))
            for t in SPECS[name]["terms"]]


def r_covs(name, ref, anchor):
    from scipy.linalg import block_diag
    out = []
    for t in SPECS[name]["terms"]:
        parts = [np.array(c["cov"], float).reshape(int(np.sqrt(np.size(c["cov"]))), -1)
                 for c in ref[anchor]["covs"] for r in np.atleast_1d(t["r"])
                 if c["group"] == r or c["group"].startswith(r + ".")]
        if not parts:
            raise KeyError((name, anchor, t["r"], [c["group"] for c in ref[anchor]["covs"]]))
        out.append(block_diag(*parts))
    return out


def r_scale(name, ref, anchor):
    fam = SPECS[name]["family"]
    if fam == "gaussian":
        return ref[anchor]["sigma"] ** 2
    if fam == "nbinom2":
        return 1.0 / (ref["lme4"]["nb_theta"] if anchor == "lme4" else ref["glmmTMB"]["sigma"])
    return 1.0


def _finite(value):
    return isinstance(value, (int, float)) and np.isfinite(value)


def anchors(name, ref):
    """{anchor: dense log-likelihood at its estimates} for the anchors that converged to a value."""
    out = {}
    for a in ("lme4", "glmmTMB"):
        if not _finite(ref[a].get("loglik")):
            continue
        out[a] = dense(name, ref[a]["fixef"], r_covs(name, ref, a), r_scale(name, ref, a))
    if _finite((ref.get("equiv") or {}).get("loglik")):  # lmer's exact / glmmTMB's Laplace value, centred columns
        out["equiv"] = ref["equiv"]["loglik"]
    return out


def equiv_se(name, equiv):
    """SEs of the raw-x coefficients from the centred fit's covariance: intercept = b0' - sum shift_j b_j."""
    names = list(equiv["vcov_names"])
    V = np.array(equiv["vcov"], float).reshape(len(names), len(names))
    A = np.eye(len(names))
    raw = list(names)
    for var, shift in SPECS[name]["kw"]["shift"].items():
        j = names.index(f"I({var} - {shift})")
        A[names.index("(Intercept)"), j] = -shift
        raw[j] = var
    return dict(zip(raw, np.sqrt(np.diag(A @ V @ A.T))))


def se_reference(name, ref, values):
    """glmmTMB's SEs (full Hessian) for a GLMM; for an LMM those of the better optimum (lme4's unless glmmTMB's
    likelihood is higher by more than 1e-4: the SEs of a worse point are no reference)."""
    fam = SPECS[name]["family"]
    if "equiv" in values and values["equiv"] >= max(values.values()) - 1e-4:
        return equiv_se(name, ref["equiv"])
    if not _finite(ref["glmmTMB"].get("loglik")):
        return ref["lme4"]["se"]
    if fam == "gaussian" and values["lme4"] >= values.get("glmmTMB", -np.inf) - 1e-4:
        return ref["lme4"]["se"]
    if fam == "gaussian":  # lme4's formula (X'V^-1X)^-1 at glmmTMB's better optimum (its own SEs: the full Hessian)
        return gls_se(name, r_covs(name, ref, "glmmTMB"), ref["glmmTMB"]["sigma"] ** 2)
    return ref["glmmTMB"]["se"]


def gls_se(name, covs, sigma2):
    """lme4's fixed-effect SEs sqrt(diag (X'V^-1X)^-1) with V = Z Sigma Z' + sigma^2 I built densely."""
    spec = SPECS[name]
    data = load(name)
    X = patsy.dmatrix(spec["fixed"], data, return_type="dataframe")
    ZL = dr.z_lambda([dr.term_design(data, t["group"], t["z"]) for t in spec["terms"]], covs)
    V = ZL @ ZL.T + sigma2 * np.eye(len(data))
    cov = np.linalg.inv(X.to_numpy().T @ np.linalg.solve(V, X.to_numpy()))
    return {r_name(c): float(np.sqrt(cov[i, i])) for i, c in enumerate(X.columns)}


def check(name, ref):
    """One row of the table: the numbers and the failures (empty list = pass)."""
    t0 = time.perf_counter()
    res, messages = fit(name)
    seconds = time.perf_counter() - t0
    ours = {r_name(k): v for k, v in res.params.items()}
    own = dense(name, ours, our_covs(name, res), res.alpha if res.alpha is not None else res.scale)  # NB2: alpha
    values = anchors(name, ref)
    best = max(values.values())
    se_ref = se_reference(name, ref, values)
    se_diff = max(abs(res.bse[k] / se_ref[r_name(k)] - 1) for k in res.params.index)
    fails = []
    if not res.converged:
        fails.append("not converged")
    if abs(own - res.llf) > 1e-6:
        fails.append(f"llf {res.llf:.6f} != dense {own:.6f}")
    if res.llf < best - 1e-4:
        fails.append(f"llf below best by {best - res.llf:.2e}")
    if se_diff > 0.02:
        fails.append(f"SE off by {se_diff:.3f}")
    return dict(name=name, lme4=ref["lme4"]["loglik"], tmb=ref["glmmTMB"].get("loglik"), dense_lme4=values.get("lme4"),
                dense_tmb=values.get("glmmTMB"), best=best, ours=res.llf, own_dense=own, se=se_diff, seconds=seconds,
                fails=fails, messages=messages)


def main(argv):
    if "--data" in argv:
        write_data()
        return 0
    refs = reference()
    names = [a for a in argv if a in SPECS] or [n for n in SPECS if n in refs]
    print(f"{'case':34s} {'lme4':>13s} {'glmmTMB':>13s} {'glmm_ext':>13s} {'d(best)':>9s} {'SE':>7s} {'s':>5s}  status")
    for name in names:
        try:
            row = check(name, refs[name])
        except Exception as exc:  # noqa: BLE001 - a crash is a row of the table
            print(f"{name:34s} ERROR {type(exc).__name__}: {exc}")
            continue
        best = row["best"]
        tmb = f"{row['tmb']:13.4f}" if _finite(row["tmb"]) else f"{'-':>13s}"
        print(f"{name:34s} {row['lme4']:13.4f} {tmb} {row['ours']:13.4f} {row['ours'] - best:9.2e} "
              f"{row['se']:7.4f} {row['seconds']:5.1f}  {'ok' if not row['fails'] else '; '.join(row['fails'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
