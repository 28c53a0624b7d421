"""The analytic theta gradient of the profiled Gaussian REML/ML deviance for every random-effects structure
(glmm_ext.engine._profile_gradient, used by `_mixed_lmm.GaussianProfile.value_and_grad`): vector terms, correlated
or diagonal (||), nested, crossed, the same factor in two terms, prior weights, singular Lambda.

Independent checks: central differences (Richardson-extrapolated) of an n x n dense weighted deviance built here
from the structure's codes and z columns alone (V = W^-1 + Z Lambda Lambda'Z'), which also pins the engine's
deviance; and the bounded search with the gradient against the same search on finite differences.
"""
import numpy as np
import pytest

import multiterm_dense as md
from glmm_ext.engine import _schur
from glmm_ext.engine._mixed_lmm import GaussianProfile, fit_gaussian, minimize_bounded, search_profile
from glmm_ext.engine._structure import ReStructure, ReTerm


def design(spec, n=360, seed=4, nested=False):
    """(y, X, ReStructure): one term per (levels, z columns, correlated, factor) entry of `spec`; a term's factor
    is its own ("own"), the previous term's ("same") or the previous one's levels split in 3 ("nested")."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    X = np.column_stack([np.ones(n), x])
    y = 1.0 + 0.5 * x + rng.normal(size=n)
    terms, prev = [], None
    for k, (L, q, corr, factor) in enumerate(spec):
        if factor == "same":
            codes, L = prev
        elif factor == "nested":
            codes = prev[0] * 3 + rng.integers(0, 3, n)
            codes = np.unique(codes, return_inverse=True)[1]
            L = int(codes.max()) + 1
        else:
            codes = rng.integers(0, L, n)
            codes[:L] = np.arange(L)
        Z = np.column_stack([np.ones(n)] + [x if c == 1 else rng.uniform(-1, 2, n) for c in range(1, q)])
        y = y + np.sum(Z * rng.normal(0.0, 0.6, (L, q))[codes], axis=1)
        terms.append(ReTerm(f"g{k}", codes.astype(np.int64), L, Z, tuple(f"z{c}" for c in range(q)), corr))
        prev = (codes, L)
    return y, X, ReStructure(tuple(terms))


def dense_deviance(y, X, S, theta, w, reml):
    """-2 log L (REML or ML), profiled over beta and sigma^2, from the n x n V = W^-1 + Z Lambda Lambda'Z'."""
    n, p = X.shape
    Z, Lam = md.big_lambda(list(S.terms), theta)
    ZL = Z @ Lam
    V = ZL @ ZL.T + np.diag(1.0 / w)
    C = np.linalg.cholesky(V)
    Xw, yw = np.linalg.solve(C, X), np.linalg.solve(C, y)
    beta = np.linalg.lstsq(Xw, yw, rcond=None)[0]
    r2 = float(np.sum((yw - Xw @ beta) ** 2))
    dof = n - p if reml else n
    dev = 2.0 * np.sum(np.log(np.diag(C))) + dof * (1.0 + np.log(2.0 * np.pi * r2 / dof))
    if reml:
        dev += np.linalg.slogdet(Xw.T @ Xw)[1]
    return dev


def richardson(f, x, h=1e-4):
    """Central differences at h and h/2 combined: error O(h^4)."""
    out = []
    for e in np.eye(len(x)):
        d1 = (f(x + h * e) - f(x - h * e)) / (2.0 * h)
        d2 = (f(x + 0.5 * h * e) - f(x - 0.5 * h * e)) / h
        out.append((4.0 * d2 - d1) / 3.0)
    return np.array(out)


STRUCTURES = {
    "crossed q=2 first + scalar": [(30, 2, True, "own"), (12, 1, True, "own")],
    "scalar first + crossed q=2": [(40, 1, True, "own"), (10, 2, True, "own")],
    "q=3 + q=2": [(30, 3, True, "own"), (8, 2, True, "own")],
    "diagonal (x||g) + scalar": [(30, 2, False, "own"), (12, 1, True, "own")],
    "nested (1+x|g) + (1+x||g:h)": [(15, 2, True, "own"), (0, 2, False, "nested")],
    "same factor twice (1+x|g) + (1|g)": [(25, 2, True, "own"), (0, 1, True, "same")],
    "three terms": [(30, 1, True, "own"), (12, 2, True, "own"), (5, 2, False, "own")],
    "one q=2 term": [(30, 2, True, "own")],
}


def _point(S, seed=0):
    rng = np.random.default_rng(seed)
    lb = S.lower_bounds()
    x = rng.uniform(-0.4, 0.4, S.n_cov_params)
    return np.where(lb == 0.0, rng.uniform(0.3, 1.2, S.n_cov_params), x)


@pytest.mark.parametrize("name", list(STRUCTURES))
@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
def test_gradient_equals_differences_of_the_dense_deviance(name, reml, weighted):
    y, X, S = design(STRUCTURES[name])
    w = np.linspace(0.4, 2.5, len(y)) if weighted else np.ones(len(y))
    prof = GaussianProfile(S, y, X, w if weighted else None, reml, log_weights=float(np.sum(np.log(w))),
                           condition=True)
    assert prof.has_gradient
    x = _point(S)
    f, g = prof.value_and_grad(x)
    assert f == pytest.approx(dense_deviance(y, X, S, x, w, reml), abs=1e-8)
    fd = richardson(lambda t: dense_deviance(y, X, S, t, w, reml), x)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-6 * np.max(np.abs(fd)))
    assert np.max(np.abs(fd)) > 1.0  # a point away from the optimum: the check has something to compare


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("point", ["zero pivot", "zero term", "zero pivot, diagonal term"])
def test_gradient_at_a_singular_lambda(reml, point):
    """Lambda_k with a zero diagonal (a correlation of +-1, a zero variance) or all zero: the formulas divide by
    nothing; the deviance is smooth there (even in the zero pivot), so central differences across it still apply."""
    spec = [(30, 2, True, "own"), (12, 2, point.endswith("diagonal term") is False, "own"), (6, 1, True, "own")]
    y, X, S = design(spec, seed=7)
    w = np.linspace(0.5, 2.0, len(y))
    prof = GaussianProfile(S, y, X, w, reml, log_weights=float(np.sum(np.log(w))), condition=True)
    x = _point(S, seed=3)
    sl = S._slices()
    if point == "zero pivot":
        x[sl[0].start + 2] = 0.0  # Lambda_1[1, 1]: the first term's two effects perfectly correlated
        x[sl[1].start + 2] = 0.0
    elif point == "zero term":
        x[sl[1]] = 0.0
    else:
        x[sl[1].start + 1] = 0.0  # (z0 || g1): the second variance 0
    f, g = prof.value_and_grad(x)
    fd = richardson(lambda t: dense_deviance(y, X, S, t, w, reml), x)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-6 * np.max(np.abs(fd)))
    zero_diag = (x == 0.0) & (S.lower_bounds() == 0.0)
    tiny = 1e-10 * np.max(np.abs(fd))
    assert np.all(np.abs(g[zero_diag]) <= tiny)  # the slope of an even function at 0: no rounding of a division
    if point == "zero term":  # Lambda_k = 0: its off-diagonal entry enters only through products with zeros
        assert np.all(np.abs(g[sl[1]]) <= tiny)


@pytest.mark.parametrize("reml", [True, False])
def test_search_with_the_gradient_reaches_the_differences_optimum(reml):
    """The optimiser takes the analytic gradient for vector terms (one evaluation per gradient, not 2k), and its
    optimum is the finite-difference L-BFGS-B's to the tolerance, or better."""
    y, X, S = design([(40, 2, True, "own"), (15, 1, True, "own"), (6, 2, False, "own")], n=600, seed=11)
    prof = GaussianProfile(S, y, X, None, reml, condition=True)
    calls = []
    vg = prof.value_and_grad
    prof.value_and_grad = lambda x: calls.append(1) or vg(x)
    res = search_profile(prof, S, y, X)
    assert res.converged and len(calls) >= 0.8 * res.n_evaluations > 0  # (a probe or two: the deviance alone)
    ref = minimize_bounded(GaussianProfile(S, y, X, None, reml, condition=True), S.start_params(),
                           S.lower_bounds(), tol=1e-10)
    assert res.f <= ref.f + 1e-7
    assert res.n_evaluations < ref.n_evaluations
    g = vg(res.x)[1]
    free = res.x > S.lower_bounds()
    assert np.max(np.abs(g[free])) < 1e-3


def test_fit_gaussian_with_centred_slopes_is_stationary_in_the_original_parameters():
    """fit_gaussian searches on centred z columns (a slope far from 0) and maps back: the analytic gradient of
    the original profile vanishes there."""
    y, X, S = design([(30, 2, True, "own"), (10, 1, True, "own")], n=500, seed=2)
    terms = list(S.terms)
    Z = terms[0].Z.copy()
    Z[:, 1] += 5.0
    terms[0] = ReTerm(terms[0].group, terms[0].codes, terms[0].n_levels, Z, terms[0].z_names, True)
    S = ReStructure(tuple(terms))
    prof, res = fit_gaussian(S, y, X, reml=True)
    assert res.converged
    f, g = prof.value_and_grad(res.x)
    assert f == pytest.approx(res.f, abs=1e-9)
    assert np.max(np.abs(g[res.x > S.lower_bounds()])) < 1e-3


@pytest.mark.parametrize("name", ["scalar first + crossed q=2", "three terms"])
@pytest.mark.parametrize("reml", [True, False])
def test_scalar_first_term_pair_path_equals_the_general_blocks(monkeypatch, name, reml):
    """A scalar first term with the cross block's pair plan (`_schur.SchurPairs`): the same gradient as the general
    blocks of H^-1 Lambda'A (the plan refused), at a regular and at a singular point."""
    y, X, S = design(STRUCTURES[name])
    w = np.linspace(0.4, 2.5, len(y))
    prof = GaussianProfile(S, y, X, w, reml, condition=True)
    assert "_pairs" in prof.cp.__dict__
    monkeypatch.setattr(_schur, "MAX_SCHUR_PAIRS", 0)
    general = GaussianProfile(S, y, X, w, reml, condition=True)
    assert "_pairs" not in general.cp.__dict__
    x = _point(S, seed=5)
    singular = x.copy()
    singular[S._slices()[1].stop - 1] = 0.0  # the second term's last variance
    for point in (x, singular):
        f, g = prof.value_and_grad(point)
        f2, g2 = general.value_and_grad(point)
        assert f == pytest.approx(f2, rel=1e-12)
        np.testing.assert_allclose(g, g2, rtol=1e-9, atol=1e-9 * np.max(np.abs(g2)))
