"""The blocked Cholesky core of several scalar terms (glmm_ext.engine._pls, _schur) and the Gaussian profile's search
(glmm_ext.engine._mixed_lmm): the Schur products from AR1's entry pairs, the factor built with and without
them, the conditional variances, and the quasi-Newton search in log theta.

Independent checks: dense matrices (AR1 diag(t) AR1' and a'Ma by numpy on the densified AR1; the n x n marginal
likelihood of tests/multiterm_dense.py), the sparse-product path of the same factor, central differences and the
L-BFGS-B search from lme4's start (theta = 1).
"""
import numpy as np
import pytest

import multiterm_dense as md
from glmm_ext.engine import _schur
from glmm_ext.engine._mixed_lmm import GaussianProfile, minimize_bounded, newton_search, search_profile
from glmm_ext.engine._structure import ReStructure, ReTerm


def crossed(seed=3, n=900, levels=(60, 25, 6), sds=(0.8, 0.5, 0.3), slope_z=False):
    """(y, X, ReStructure) of a crossed design with one scalar term per entry of `levels` (sd 0 gives a term with
    no variance); slope_z: the second term's z column is a covariate (a scalar slope term)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    X = np.column_stack([np.ones(n), x])
    y = 1.0 + 0.4 * x + rng.normal(size=n)
    terms = []
    for k, (L, sd) in enumerate(zip(levels, sds)):
        codes = rng.integers(0, L, n)
        codes[:L] = np.arange(L)  # every level present
        z = np.ones((n, 1)) if not (slope_z and k == 1) else rng.uniform(0.5, 2.0, (n, 1))
        y = y + z[:, 0] * rng.normal(0, sd, L)[codes]
        terms.append(ReTerm(f"g{k}", codes.astype(np.int64), L, z, ("(Intercept)",), True))
    return y, X, ReStructure(tuple(terms))


def without_pairs(prof):
    """The same profile on the sparse-product path (a copy of its cross-products without the pair plan)."""
    from dataclasses import replace

    other = GaussianProfile.__new__(GaussianProfile)
    other.__dict__.update({k: v for k, v in prof.__dict__.items() if k != "_last"})
    other.cp = replace(prof.cp)
    assert "_pairs" not in other.cp.__dict__
    return other


@pytest.mark.parametrize("slope_z", [False, True])
def test_schur_pairs_product_and_quadratic_forms_equal_dense(slope_z):
    y, X, S = crossed(slope_z=slope_z)
    prof = GaussianProfile(S, y, X, reml=False)
    pairs = prof.cp.__dict__["_pairs"]
    A = prof.cp.AR1.toarray()  # (nR, n1)
    nR, n1 = A.shape
    assert pairs.count(prof.cp.AR1) == sum(c * (c + 1) // 2 for c in np.count_nonzero(A, axis=0))
    t = np.random.default_rng(1).uniform(0.1, 2.0, n1)
    K = pairs.product(t)
    assert K.flags.f_contiguous
    np.testing.assert_allclose(K, np.tril((A * t) @ A.T), rtol=1e-12, atol=1e-12)
    M = np.random.default_rng(2).normal(size=(nR, nR))
    M = M + M.T
    Ml = np.asfortranarray(np.tril(M) + np.triu(np.full((nR, nR), 1e6), 1))  # the upper triangle is never read
    np.testing.assert_allclose(pairs.quad(Ml), np.einsum("rj,rj->j", A, M @ A), rtol=1e-10)


def test_pairs_are_not_built_beyond_their_limit(monkeypatch):
    y, X, S = crossed()
    monkeypatch.setattr(_schur, "MAX_SCHUR_PAIRS", 10)
    prof = GaussianProfile(S, y, X, reml=False)
    assert "_pairs" not in prof.cp.__dict__


@pytest.mark.parametrize("reml", [True, False])
def test_factor_and_gradient_with_pairs_equal_sparse_path_and_dense_likelihood(reml):
    """Deviance, gradient and conditional variances on the pair path equal the sparse-product path's, the dense
    n x n marginal likelihood and central differences."""
    y, X, S = crossed(slope_z=True)
    prof = GaussianProfile(S, y, X, reml=reml)
    assert "_pairs" in prof.cp.__dict__
    other = without_pairs(prof)
    x = np.array([0.7, 0.4, 0.25])
    f, g = prof.value_and_grad(x)
    f2, g2 = other.value_and_grad(x)
    assert f == pytest.approx(f2, rel=1e-12)
    np.testing.assert_allclose(g, g2, rtol=1e-9, atol=1e-9)
    llf = md.gaussian_profile(y, X, list(S.terms), x, reml)[0]
    assert -0.5 * f == pytest.approx(llf, abs=1e-8)
    h = 1e-6
    fd = [(prof(x + h * e) - prof(x - h * e)) / (2 * h) for e in np.eye(3)]
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-5)
    # conditional variances: from the gradient's S^-1 pieces (kept on the factor), afresh, and the dense inverse
    prof.value_and_grad(x)  # the differences moved the kept factor
    fac = prof.factor(x)[0]
    assert getattr(fac, "sinv_parts", None) is not None
    kept = fac.inverse_diag_blocks()
    fresh = other.factor(x)[0]
    dense = np.diag(fresh.dense_inverse())
    np.testing.assert_allclose(np.concatenate([b.ravel() for b in kept]), dense, rtol=1e-10)
    np.testing.assert_allclose(np.concatenate([b.ravel() for b in fresh.inverse_diag_blocks()]), dense, rtol=1e-10)


def test_profile_keeps_only_its_last_factor():
    y, X, S = crossed()
    prof = GaussianProfile(S, y, X, reml=False)
    a = prof.factor(np.array([0.5, 0.5, 0.5]))[0]
    assert prof.factor(np.array([0.5, 0.5, 0.5]))[0] is a
    b = prof.factor(np.array([0.5, 0.5, 0.6]))[0]
    assert b is not a and prof.factor(np.array([0.5, 0.5, 0.5]))[0] is not a


@pytest.mark.parametrize("reml", [True, False])
def test_newton_search_reaches_the_lbfgs_optimum_in_fewer_evaluations(reml):
    y, X, S = crossed(seed=5, n=1500)
    prof = GaussianProfile(S, y, X, reml=reml)
    res = search_profile(prof, S, y, X)
    ref = minimize_bounded(prof, S.start_params(), S.lower_bounds(), tol=1e-9, fg=prof.value_and_grad)
    assert res.converged and ref.converged
    assert res.f == pytest.approx(ref.f, abs=1e-8)
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-4)
    assert res.n_evaluations <= 12 < ref.n_evaluations  # the Newton path itself, not its L-BFGS-B fallback
    assert res.decrement < 1e-9


@pytest.mark.parametrize("seed", [12, 17])
def test_a_vanishing_term_ends_at_zero(seed):
    """A term with no variance (seed 12: its moment estimate is 0, the bounded search from the start; seed 17: the
    log-theta search heads for 0 and hands over): the fit ends at exactly 0, with the likelihood of the model
    without that term (dense)."""
    y, X, S = crossed(seed=seed, n=800, levels=(50, 12, 5), sds=(0.8, 0.5, 0.0))
    prof = GaussianProfile(S, y, X, reml=False)
    res = search_profile(prof, S, y, X)
    assert res.converged and res.x[2] == 0.0 and np.all(res.x[:2] > 0)
    two = ReStructure(S.terms[:2])
    prof2 = GaussianProfile(two, y, X, reml=False)
    res2 = search_profile(prof2, two, y, X)
    assert res.f == pytest.approx(res2.f, abs=1e-8)
    llf = md.gaussian_profile(y, X, list(two.terms), res2.x, False)[0]
    assert -0.5 * res2.f == pytest.approx(llf, abs=1e-8)


def test_newton_search_reports_a_non_convex_start():
    """An indefinite start Hessian is not followed: converged=False, for the caller's bounded search."""
    def fg(x):
        return float(x[0] ** 2 - x[1] ** 2), np.array([2 * x[0], -2 * x[1]])

    res = newton_search(fg, np.array([1.0, 1.0]), np.full(2, -np.inf), 1e-9)
    assert not res.converged and "positive definite" in res.message and res.n_evaluations == 3
    quad = newton_search(lambda x: (float(x @ x), 2 * x), np.array([1.0, -2.0]), np.full(2, -np.inf), 1e-12)
    assert quad.converged and np.allclose(quad.x, 0.0, atol=1e-8) and quad.n_evaluations <= 5
