"""Conditional modes (private numerics): the scalar mode solver's iteration and step-halving limits, and the
flat modes outside the Laplace approximation, scalar and vector (random slopes)."""
import numpy as np
import pandas as pd
import pytest

import glmm_ext
from conftest import GAMMA_IDENTITY_FLAT
from glmm_ext import make_family
from glmm_ext.engine._families import Distribution
from glmm_ext.engine._laplace import GLMMData, conditional_modes


def _poisson_identity_group(y, eta_fixed):
    y = np.asarray(y, float)
    dist = Distribution(make_family("poisson", "identity"))
    m = np.ones_like(y)
    data = GLMMData(y=y, X=np.ones((y.size, 1)), offset=np.zeros_like(y), m=m, const=dist.log_constant(y, m),
                    starts=np.array([0]), counts=np.array([y.size]))
    return dist, data, np.full(y.size, float(eta_fixed))


def test_conditional_mode_iteration_limit():
    dist, data, eta = _poisson_identity_group([3.0, 5.0, 9.0, 4.0], 1.0)
    one = conditional_modes(dist, data, eta, 1.0, 1.0, np.zeros(1), maxiter=1)
    assert not one.converged and one.iterations == 1
    full = conditional_modes(dist, data, eta, 1.0, 1.0, np.zeros(1))
    assert full.converged and full.iterations > 1
    # the mode solves sum_i (y_i / mu_i - 1) sigma = b with mu = eta + sigma b
    mu = 1.0 + full.b[0]
    assert np.sum(data.y / mu - 1.0) == pytest.approx(full.b[0], abs=1e-8)


def test_conditional_mode_step_halving_stops_at_the_edge_of_the_support():
    """Zero counts pull an identity-link mean to 0; the unconstrained mode b = -n sigma lies outside."""
    dist, data, eta = _poisson_identity_group([0.0, 0.0, 0.0, 0.0], 0.5)
    md = conditional_modes(dist, data, eta, 1.0, 1.0, np.zeros(1))
    assert not md.converged
    assert np.all(md.eta > 0) and -0.5 < md.b[0] < -0.49


def test_conditional_modes_start_inside_the_support_when_b_0_is_outside():
    """eta_fixed = -1 puts b = 0 outside mu > 0, yet the mode exists (positive counts: h -> -inf at the edge);
    the search starts just inside instead of declaring the point infeasible (an edge that was not there)."""
    dist, data, eta = _poisson_identity_group([1.0, 2.0], -1.0)
    md = conditional_modes(dist, data, eta, 0.5, 1.0, np.zeros(1))
    assert md.converged
    mu = -1.0 + 0.5 * md.b[0]
    assert mu > 0 and 0.5 * np.sum(data.y / mu - 1.0) == pytest.approx(md.b[0], abs=1e-8)


def test_a_flat_conditional_mode_is_outside_the_laplace_approximation():
    """Where a group's mode curvature H falls below FLAT_MODE the Laplace value (once finite and up to ~10
    above the true likelihood) is no point (the fit that stops there: test_fitting_paths.py)."""
    from glmm_ext.engine._laplace import FLAT_MODE, MarginalLikelihood

    df = pd.DataFrame(GAMMA_IDENTITY_FLAT, columns=["y", "x", "g"])
    model = glmm_ext.GLMM.from_formula("y ~ x", df, groups="g", family=make_family("gamma", "identity"))
    laplace = MarginalLikelihood(model.dist, model.design.engine_data(scale_response=True))
    rejected = 0
    for s in np.linspace(0.40189, 0.401892, 9):  # across the fold where the last group's two modes meet
        f_value, _ = laplace(np.array([2.00005833, 0.77036853, s, -0.31066923]))  # near the old search's end
        rejected += f_value == np.inf
        assert f_value == np.inf or np.min(laplace.last_modes.H) > FLAT_MODE
    assert rejected
    f_value, grad = laplace(np.array([2.00005833, 0.77036853, 0.38, -0.31066923]))  # before the fold: a point
    assert np.isfinite(f_value) and np.all(np.isfinite(grad)) and np.min(laplace.last_modes.H) > 0.5



def _flat_mode_data():
    """(model y ~ x + (1 | g), its scaled engine data, n, X) on the Gamma-identity flat-mode data."""
    df = pd.DataFrame(GAMMA_IDENTITY_FLAT, columns=["y", "x", "g"])
    model = glmm_ext.GLMM.from_formula("y ~ x", df, groups="g", family=make_family("gamma", "identity"))
    data = model.design.engine_data(scale_response=True)
    return model, data, data.y.size, np.asarray(data.X)


def _scalar_and_slope_laplace(s):
    """(scalar Laplace value, the live random-slope Laplace value with Lambda = diag(s, 0)) on the Gamma-identity
    data whose scalar search met a flat mode: the general engine's objective (`engine._mixed_glmm.MixedGLMM`),
    which fits every non-Gaussian random-slope model, against the random-intercept one (`engine._laplace`)."""
    from glmm_ext.engine._laplace import MarginalLikelihood
    from glmm_ext.engine._mixed_glmm import MixedGLMM
    from glmm_ext.engine._structure import ReStructure, ReTerm

    model, data, n, X = _flat_mode_data()
    codes = np.repeat(np.arange(len(data.starts)), data.counts).astype(np.int64)
    structure = ReStructure((ReTerm("g", codes, len(data.starts), np.column_stack([np.ones(n), X[:, 1]]),
                                    ("Intercept", "x"), False),))
    live = MixedGLMM(structure, model.dist, data.y, X, np.zeros(n), np.ones(n),
                     np.broadcast_to(data.const, (n,)).copy(), model.dist.row_aux(data.y))
    scalar = MarginalLikelihood(model.dist, data)(np.array([2.00005833, 0.77036853, s, -0.31066923]))[0]
    return scalar, live(np.array([2.00005833, 0.77036853, s, 0.0, -0.31066923]))


def test_random_slope_laplace_with_a_zero_slope_is_the_random_intercept_one():
    """The live random-slope Laplace with Lambda = diag(s, 0) is the scalar one, to rounding, at every point
    the scalar one accepts (before and across the fold where the last group's two modes meet)."""
    accepted = 0
    for s in [0.38, 0.4018, *np.linspace(0.40189, 0.401892, 9)]:
        scalar, value = _scalar_and_slope_laplace(s)
        if np.isfinite(scalar):
            accepted += 1
            assert value == pytest.approx(scalar, rel=1e-11, abs=1e-9)
    assert accepted >= 5


def test_a_flat_mode_of_a_random_slope_model_is_no_point():
    """The general engine rejects a level whose H block is flat (smallest eigenvalue <= FLAT_MODE) exactly where
    the random-intercept engine does: its Laplace value there was up to 0.8 too low."""
    for s in np.linspace(0.40189, 0.401892, 9):  # across the fold: the scalar Laplace rejects some of these
        scalar, value = _scalar_and_slope_laplace(s)
        assert np.isfinite(value) == np.isfinite(scalar)


def _crossed_gamma_identity():
    """(MixedGLMM of y ~ x + (1 | g) + (1 | h), the scaled (y, X), codes g and h) on the Gamma-identity flat-mode data
    with a second factor h crossing g (alternate rows): two scalar terms, the general engine's several-term path."""
    from glmm_ext.engine._mixed_glmm import MixedGLMM
    from glmm_ext.engine._structure import ReStructure, ReTerm

    model, data, n, X = _flat_mode_data()
    g = np.repeat(np.arange(len(data.starts)), data.counts).astype(np.int64)
    h = (np.arange(n) % 2).astype(np.int64)
    one = np.ones((n, 1))
    structure = ReStructure((ReTerm("g", g, 4, one, ("Intercept",), False),
                             ReTerm("h", h, 2, one, ("Intercept",), False)))
    live = MixedGLMM(structure, model.dist, data.y, X, np.zeros(n), np.ones(n),
                     np.broadcast_to(data.const, (n,)).copy(), model.dist.row_aux(data.y))
    assert len(live.lay.q) == 2
    return live, np.asarray(data.y, float), X, g, h


def _dense_gamma_identity_laplace(y, X, g, h, x, u):
    """(Laplace log-likelihood, each level's curvature 1 / (H^-1)_jj, the modes u) of the Gamma-identity model with
    b = (s_g u_g, s_h u_h), by plain Newton from u on the dense 6 x 6 system (observed curvature); None where
    Newton leaves the branch of u (H not positive definite, mu <= 0, no stationary point)."""
    from scipy import special

    n = y.size
    beta, (s_g, s_h), k = x[:2], x[2:4], np.exp(-x[4])
    ZL = np.zeros((n, 6))
    ZL[np.arange(n), g] = s_g
    ZL[np.arange(n), 4 + h] = s_h

    def parts(u):
        mu = X @ beta + ZL @ u
        if np.any(mu <= 0):
            return None
        ll = np.sum(k * np.log(k * y / mu) - k * y / mu - np.log(y) - special.gammaln(k)) - 0.5 * u @ u
        H = (ZL * (k * (2 * y - mu) / mu ** 3)[:, None]).T @ ZL + np.eye(6)
        return ll, ZL.T @ (k * (y - mu) / mu ** 2) - u, H

    for _ in range(50):
        p = parts(u)
        if p is None or np.linalg.eigvalsh(p[2])[0] <= 0:
            return None
        step = np.linalg.solve(p[2], p[1])
        u = u + step
        if np.max(np.abs(step)) < 1e-13:
            break
    p = parts(u)
    if p is None or np.max(np.abs(p[1])) > 1e-9 or np.linalg.eigvalsh(p[2])[0] <= 0:
        return None
    ll, _, H = p
    return ll - 0.5 * np.linalg.slogdet(H)[1], 1.0 / np.diag(np.linalg.inv(H)), u


@pytest.mark.parametrize("s_h", [0.05, 0.2])
def test_a_flat_mode_of_a_several_term_model_is_no_point(s_h):
    """Two crossed scalar terms: walking s_g up to the fold where a level's two modes meet (found by bisection on
    the dense system), the general engine's Laplace value is the dense one while every level's curvature
    1 / (H^-1)_jj stays above FLAT_MODE, and no point (inf) once one falls below it, where the dense Laplace
    value keeps rising without bound."""
    from glmm_ext.engine._laplace import FLAT_MODE

    live, y, X, g, h = _crossed_gamma_identity()

    def at(s):
        return np.array([2.00005833, 0.77036853, s, s_h, -0.31066923])

    lo, hi = 0.3, 0.45  # the branch of the modes at s_g = 0.3 ends (folds) inside
    _, c_lo, u_lo = _dense_gamma_identity_laplace(y, X, g, h, at(lo), np.zeros(6))
    for _ in range(60):  # on the branch the smallest curvature falls towards the fold (past it: the other mode)
        mid = 0.5 * (lo + hi)
        r = _dense_gamma_identity_laplace(y, X, g, h, at(mid), u_lo)
        if r is not None and np.min(r[1]) <= np.min(c_lo):
            lo, c_lo, u_lo = mid, r[1], r[2]
        else:
            hi = mid
    assert hi - lo < 1e-12 and 0.3 < lo < 0.45
    outcomes, dense_values = [], []
    for delta in [0.3, 0.03, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8]:  # towards the fold, warm starts on the branch
        value, curv, _ = _dense_gamma_identity_laplace(y, X, g, h, at(lo - delta), u_lo)
        assert not 0.9 * FLAT_MODE < np.min(curv) < 1.1 * FLAT_MODE  # no point on the threshold itself
        flat = np.min(curv) <= FLAT_MODE
        got = live(at(lo - delta))
        outcomes.append(flat)
        dense_values.append(value)
        if flat:
            assert got == np.inf
        else:
            assert got == pytest.approx(-value, rel=1e-10, abs=1e-8)
    assert not outcomes[0] and outcomes[-1]
    assert np.all(np.diff(dense_values) > 0.3)  # the dense Laplace value rises towards the fold, without bound
