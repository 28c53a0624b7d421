"""The engine's optimiser and its failure branches, the REML grid extension, and singular information (private
code paths that the public API shows only as "converged" / "did not converge" / NaN standard errors)."""
import numpy as np
import pytest

import glmm_ext
from conftest import dense_reml_deviance
from glmm_ext import make_family
from glmm_ext.engine import _glmm, _lmm, _optimize


def dense_reml(y, X, groups, var_re, scale):
    """REML log-likelihood with dense n x n matrices (beta at its GLS value)."""
    return -0.5 * dense_reml_deviance(y, X, groups, var_re, scale)[0]


def _engine(family, link, seed=5, **kw):
    df = glmm_ext.simulate(family, link, n_groups=12, group_size=6, seed=seed, **kw)
    model = glmm_ext.GLMM.from_formula("y ~ x1 + x2", df, groups="g", family=make_family(family, link))
    return model, model.design.engine_data()


def test_inverse_of_a_singular_information_is_nan():
    from glmm_ext.engine._pirls import inverse_or_nan

    assert np.all(np.isnan(inverse_or_nan(np.zeros((2, 2)))))
    assert np.allclose(inverse_or_nan(np.array([[2.0, 0.0], [0.0, 4.0]])), [[0.5, 0.0], [0.0, 0.25]])


def test_singular_information_gives_nan_standard_errors_and_a_warning(monkeypatch):
    model, _ = _engine("poisson", "log")
    monkeypatch.setattr(_glmm, "pirls_information", lambda X, *a, **k: np.zeros((X.shape[1], X.shape[1])))
    with pytest.warns(UserWarning, match="standard errors could not be computed"):
        res = model.fit(cov_type="pirls")
    assert np.all(np.isnan(res.bse)) and np.all(np.isfinite(res.params))
    table = res.fixed_effects_table()
    assert table[["Std. Error", "z", "P>|z|", "Lower 95%"]].isna().all().all()
    assert "nan" in res.summary().as_text()


def test_reml_grid_is_extended_when_the_optimum_lies_beyond_it():
    """Group means 1e4 apart, residual SD 1e-2: theta = sigma_u / sigma_e ~ 1e6 > e^8 (the grid's end)."""
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(8), 4)
    y = rng.normal(0, 1e4, size=8)[groups] + rng.normal(0, 1e-2, size=groups.size)
    X = np.ones((groups.size, 1))
    stats = _lmm.lmm_stats(X, y, np.arange(0, 32, 4), np.full(8, 4))
    theta, dev, converged, _, _ = _lmm.optimize_theta(stats)
    assert theta > np.exp(8.0) and converged
    # theta is the minimum of the exact criterion to its last digits ...
    for factor in (1.0 - 1e-4, 1.0 + 1e-4):
        assert _lmm.lmm_deviance(theta * factor, stats) > dev
    res = glmm_ext.GLMM(y, X, groups).fit()
    best = res.llf
    # ... and the fit a maximum of the dense REML likelihood.  The dense matrices are ill-conditioned here
    # (cond(V) ~ 1e12): their value errs by ~1e-3, more than a 1% change of either variance moves the REML
    # (~5e-4), so the neighbours are 10% away (0.015 to 0.06 lower)
    for var_re, scale in [(res.var_re * 1.1, res.scale), (res.var_re / 1.1, res.scale),
                          (res.var_re, res.scale * 1.1), (res.var_re, res.scale / 1.1)]:
        assert dense_reml(y, X, groups, var_re, scale) < best - 5e-3
    assert best == pytest.approx(dense_reml(y, X, groups, res.var_re, res.scale), abs=1e-3)


def test_minimize_rejects_a_non_finite_start():
    with pytest.raises(FloatingPointError, match="non-finite"):
        _optimize.minimize(lambda x: (np.inf, np.full(1, np.nan)), np.zeros(1), np.eye(1))


def test_newton_stage_reports_no_decrease():
    """A flat objective with a non-zero gradient: no step decreases f, and the result says so."""
    def flat(x):
        return 1.0, np.ones_like(x)

    m = _optimize.minimize(flat, np.array([1.0, -2.0]), np.eye(2), quasi_newton=False)
    assert m.message == "Newton step found no decrease" and not m.converged
    assert np.allclose(m.x, [1.0, -2.0]) and m.f == 1.0


def test_newton_stage_stops_at_maxiter():
    def quartic(x):
        return float(np.sum(x**4)), 4.0 * x**3

    m = _optimize.minimize(quartic, np.array([3.0]), np.eye(1), maxiter=2, quasi_newton=False)
    assert m.message == "maximum number of iterations reached" and m.decrement > 1e-6 and not m.converged
    assert m.iterations == 2 and abs(m.x[0]) < 3.0 and m.f < 81.0


def test_backtrack_finds_no_finite_point():
    assert _optimize._backtrack(lambda x: (np.inf, x), np.zeros(1), 0.0, np.ones(1), -np.ones(1)) is None


def test_bounded_search_polish_with_bfgs_updates_reaches_the_same_minimum(monkeypatch):
    """`minimize_bounded`'s polish with ``quasi_polish`` (later Hessians BFGS updates of the first) ends where the
    differenced polish ends, at the minimum of a smooth non-quadratic function with one variable held at its bound
    (the free gradient 0), with fewer Hessians by differences."""
    from glmm_ext.engine import _polish
    from glmm_ext.engine._mixed_lmm import minimize_bounded

    A = np.array([[3.0, 1.0, 0.5], [1.0, 2.0, 0.3], [0.5, 0.3, 1.5]])
    c = np.array([1.0, -2.0, 0.5])  # the unconstrained minimum has x[1] < 0

    def fg(x):
        d = x - c
        return 0.5 * d @ A @ d + np.sum(np.exp(d) - d), A @ d + np.exp(d) - 1.0

    hessians = []
    differenced = _polish._grad_hess
    monkeypatch.setattr(_polish, "_grad_hess", lambda *a: hessians.append(1) or differenced(*a))
    lb = np.array([-np.inf, 0.0, -np.inf])
    out = {}
    for quasi in (False, True):
        hessians.clear()
        res = minimize_bounded(lambda x: fg(x)[0], np.array([4.0, 3.0, 5.0]), lb, tol=1e-14, fg=fg, rough=True,
                               quasi_polish=quasi)
        assert res.converged and res.x[1] == 0.0
        g = fg(res.x)[1]
        assert abs(g[0]) < 1e-8 and abs(g[2]) < 1e-8 and g[1] > 0.0
        out[quasi] = (res.x, len(hessians))
    np.testing.assert_allclose(out[True][0], out[False][0], atol=1e-9)
    assert out[True][1] < out[False][1]
