"""Simulated quantile residuals are paired with the predictor of the level that was simulated.

New group effects (DHARMa's default, ``use_re="new"``) pair with the population-level predictor
g^{-1}(X beta + offset); conditional simulation (``use_re="conditional"`` / True) with the
conditional mean (BLUPs included).  On data drawn from the fitted model's own structure the
residuals then show no trend against their predictor on either level; the other level's
predictor (the old pairing for new group effects) shows a strong one.
"""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import glmm_ext
from glmm_ext.datasets import simulate as simulate_data

TREND_FREE = 0.1  # |Spearman| bound for a correctly specified model (1,000 rows: sd of rho ~ 0.03)


def slope_data(family, seed):
    """50 groups x 20 rows, correlated random intercept (sd 1) and slope (sd 0.5)."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(50), 20)
    x = rng.normal(size=g.size)
    cov = np.array([[1.0, 0.2], [0.2, 0.25]])
    b = rng.multivariate_normal([0.0, 0.0], cov, size=50)
    eta = 0.3 + 0.6 * x + b[g, 0] + b[g, 1] * x
    y = rng.normal(eta, 1.0) if family == "gaussian" else rng.poisson(np.exp(eta)).astype(float)
    return pd.DataFrame({"y": y, "x": x, "g": g})


def fit(case):
    family, structure = case
    if structure == "intercept":
        data = simulate_data(family, n_groups=50, group_size=20, sigma_u=1.0, seed=11)
        return glmm_ext.GLMM.from_formula("y ~ x1 + x2", data, groups="g", family=family).fit()
    data = slope_data(family, seed=5)
    return glmm_ext.GLMM.from_formula("y ~ x + (x | g)", data, family=family).fit()


CASES = [("gaussian", "intercept"), ("poisson", "intercept"), ("gaussian", "slopes"), ("poisson", "slopes")]


@pytest.fixture(scope="module")
def fits():
    return {case: fit(case) for case in CASES}


def spearman(a, b):
    return float(stats.spearmanr(a, b)[0])


@pytest.mark.parametrize("case", CASES, ids=["-".join(c) for c in CASES])
@pytest.mark.parametrize("use_re", ["new", "conditional"])
def test_residuals_show_no_trend_against_the_matching_predictor(fits, case, use_re):
    res = fits[case]
    assert res.converged
    qr = res.quantile_residuals(nsim=250, seed=3, use_re=use_re)
    r = qr.residuals.to_numpy()
    assert qr.level == {"new": "population", "conditional": "conditional"}[use_re]
    fixed_part = res.model.predict(np.asarray(res.params, float), which="linear")
    conditional = res.diagnostics()["fitted_values"].to_numpy()
    # the predictor is the one of the simulated level, computed independently here
    expected = res.model.family.link.inverse(fixed_part) if use_re == "new" else conditional
    np.testing.assert_allclose(qr.predictor, expected, rtol=1e-10, atol=1e-12)
    assert abs(spearman(r, qr.predictor)) < TREND_FREE
    assert qr.tests.loc["uniformity (KS)", "pvalue"] > 0.01
    if use_re == "new":
        # the old pairing (new group effects against the conditional fitted values) is trended
        assert spearman(r, conditional) > 0.3


def test_boolean_use_re_is_lme4s_use_u(fits):
    res = fits[("poisson", "intercept")]
    kept = res.quantile_residuals(nsim=50, seed=1, use_re=True)
    new = res.quantile_residuals(nsim=50, seed=1, use_re=False)
    assert kept.use_re == "conditional" and new.use_re == "new"
    same = res.quantile_residuals(nsim=50, seed=1, use_re="conditional")
    pd.testing.assert_series_equal(kept.residuals, same.residuals)
    pd.testing.assert_frame_equal(res.simulate(nsim=2, seed=4, use_re=True), res.simulate(nsim=2, seed=4))
    pd.testing.assert_frame_equal(res.simulate(nsim=2, seed=4, use_re=False),
                                  res.simulate(nsim=2, seed=4, use_re="new"))


@pytest.mark.parametrize("bad", ["marginal", 1, None, "NEW"])
def test_unknown_use_re_is_refused(fits, bad):
    with pytest.raises(ValueError, match="use_re"):
        fits[("gaussian", "intercept")].quantile_residuals(nsim=5, use_re=bad)


@pytest.mark.parametrize("use_re", ["new", "conditional"])
def test_the_plot_uses_the_matching_predictor(fits, use_re):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    res = fits[("gaussian", "intercept")]
    fig = res.plot_quantile_residuals(nsim=50, seed=2, use_re=use_re)
    ax = fig.axes[1]
    qr = res.quantile_residuals(nsim=50, seed=2, use_re=use_re)
    xs = ax.collections[0].get_offsets()[:, 0]
    np.testing.assert_allclose(xs, stats.rankdata(qr.predictor) / len(qr.predictor))
    assert ("population" if use_re == "new" else "conditional") in ax.get_xlabel().lower()
