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



def _scalar_and_slope_laplace(s):
    """(scalar Laplace value, the live random-slope Laplace value with Lambda = diag(s, 0)) on the Gamma-identity
    data whose scalar search met a flat mode: the general engine's objective (`engine._mixed_glmm.MixedGLMM`),
    which fits every non-Gaussian random-slope model, against the random-intercept one (`engine._laplace`)."""
    from glmm_ext.engine._laplace import MarginalLikelihood
    from glmm_ext.engine._mixed_glmm import MixedGLMM
    from glmm_ext.engine._structure import ReStructure, ReTerm

    df = pd.DataFrame(GAMMA_IDENTITY_FLAT, columns=["y", "x", "g"])
    model = glmm_ext.GLMM.from_formula("y ~ x", df, groups="g", family=make_family("gamma", "identity"))
    data = model.design.engine_data(scale_response=True)
    n = data.y.size
    X = np.asarray(data.X)
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
