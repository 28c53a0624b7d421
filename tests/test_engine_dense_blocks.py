"""The dense-cross-block factor and row products of the GLMM engine (glmm_ext.engine._dense_blocks).

Independent checks: every quantity against the dense matrices it stands for (Z as an n x (random effects)
array, H = Lambda'Z'WZ Lambda + I, its inverse and log-determinant from numpy), and against the sparse
blocked factor of `_pls` on the same system; the GLMM objective is unchanged by the order of the rows, by
which of the two factors it uses and by its warm start (the predicted modes, checked to be second-order).
"""
import numpy as np
import pytest
from scipy import linalg

from glmm_ext.engine import _dense_blocks as db
from glmm_ext.engine._dense_blocks import DenseFactor, DensePlan, RowOps
from glmm_ext.engine._families import Distribution, make_family
from glmm_ext.engine._mixed_glmm import MixedGLMM
from glmm_ext.engine._pls import Factor, Layout, crossprods
from glmm_ext.engine._structure import ReStructure, ReTerm


def _structure(rng, n, spec, sort_first=False):
    """ReStructure from spec = [(n_levels, q, correlated), ...]: random codes (every level used), z columns an
    intercept and normal slopes."""
    terms = []
    for k, (nl, q, corr) in enumerate(spec):
        codes = np.concatenate([np.arange(nl), rng.integers(0, nl, n - nl)])
        rng.shuffle(codes)
        if sort_first and k == 0:
            codes = np.sort(codes)
        Z = np.column_stack([np.ones(n)] + [rng.normal(size=n) for _ in range(q - 1)])
        terms.append(ReTerm(f"g{k}", codes.astype(np.int64), nl, Z, tuple(f"z{a}" for a in range(q)), corr))
    return ReStructure(tuple(terms))


def _lams(rng, S):
    out = []
    for t in S.terms:
        lam = np.tril(rng.normal(0.0, 0.4, (t.q, t.q))) if t.correlated else np.zeros((t.q, t.q))
        lam[np.diag_indices(t.q)] = rng.uniform(0.3, 1.2, t.q)
        out.append(lam)
    return out


def _dense(layout, lams):
    """Dense Z (n x random effects, engine order) and block-diagonal Lambda."""
    cols, blocks = [], []
    for pos, t in enumerate(layout.terms):
        Zk = np.zeros((layout.n, t.n_levels * t.q))
        for a in range(t.q):
            Zk[np.arange(layout.n), layout.codes[pos] * t.q + a] = layout.Z[pos][:, a]
        cols.append(Zk)
        blocks.append(np.kron(np.eye(t.n_levels), lams[pos]))
    return np.hstack(cols), linalg.block_diag(*blocks)


SPECS = {
    "three scalar crossed": [(40, 1, True), (12, 1, True), (5, 1, True)],
    "two crossed intercepts": [(40, 1, True), (12, 1, True)],
    "slope and scalar": [(30, 2, True), (9, 1, True)],
    "two vector terms": [(25, 2, True), (7, 2, False)],
    "one vector term": [(50, 3, True)],
    "one scalar term": [(60, 1, True)],
}


@pytest.mark.parametrize("name", list(SPECS))
def test_dense_factor_equals_dense_matrices_and_sparse_factor(name):
    rng = np.random.default_rng(11)
    n = 600
    S = _structure(rng, n, SPECS[name])
    lay = Layout(S)
    lams = lay.lambdas(_lams(rng, S))
    w = rng.uniform(0.05, 2.0, n)
    F = np.column_stack([np.ones(n), rng.normal(size=n)])
    plan = DensePlan(lay)
    fac = DenseFactor(lay, plan.crossprods(w, F), lams)
    ref = Factor(lay, crossprods(lay, w, F), lams)
    Z, Lam = _dense(lay, lams)
    ZL = Z @ Lam
    H = ZL.T @ (w[:, None] * ZL) + np.eye(Z.shape[1])
    assert fac.logdet_Z == pytest.approx(np.linalg.slogdet(H)[1], rel=1e-12)
    assert fac.logdet_Z == pytest.approx(ref.logdet_Z, rel=1e-12)
    # the whole system [[H, L'Z'WF], [., F'WF]]
    full = np.block([[H, ZL.T @ (w[:, None] * F)], [F.T @ (w[:, None] * ZL), F.T @ (w[:, None] * F)]])
    g = rng.normal(size=full.shape[0])
    np.testing.assert_allclose(fac.solve(g), np.linalg.solve(full, g), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(fac.solve(g), ref.solve(g), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fac.LFF @ fac.LFF.T, ref.LFF @ ref.LFF.T, rtol=1e-10)
    Hinv = np.linalg.inv(H)
    np.testing.assert_allclose(fac.dense_inverse(), Hinv, rtol=1e-9, atol=1e-12)
    blocks = fac.inverse_diag_blocks()
    for pos, t in enumerate(lay.terms):
        idx = lay.offsets[pos] + np.arange(t.n_levels)[:, None] * t.q + np.arange(t.q)[None, :]
        np.testing.assert_allclose(blocks[pos], Hinv[idx[:, :, None], idx[:, None, :]], rtol=1e-9, atol=1e-13)
    if all(q == 1 for q in lay.q):
        lev, traces = fac.row_leverages(lams)
        np.testing.assert_allclose(lev, np.einsum("ij,jk,ik->i", ZL, Hinv, ZL), rtol=1e-9, atol=1e-13)
        np.testing.assert_allclose(traces, [np.trace(Hinv[lay.offsets[p]:lay.offsets[p + 1],
                                                          lay.offsets[p]:lay.offsets[p + 1]])
                                            for p in range(len(lay.terms))], rtol=1e-10)


@pytest.mark.parametrize("sort_first", [False, True])
@pytest.mark.parametrize("name", ["slope and scalar", "one vector term", "one scalar term", "two crossed intercepts"])
def test_row_products_equal_dense_z(name, sort_first):
    """RowOps (scatter/gather, or segment sums on rows sorted by level) against the dense Z."""
    rng = np.random.default_rng(5)
    S = _structure(rng, 400, SPECS[name], sort_first=sort_first)
    lay = Layout(S)
    ops = RowOps(lay)
    assert (ops.segments is not None) == (sort_first and len(lay.terms) == 1)
    assert (ops.pair is not None) == (name == "two crossed intercepts")
    Z, _ = _dense(lay, [np.eye(q) for q in lay.q])
    b, r = rng.normal(size=Z.shape[1]), rng.normal(size=lay.n)
    np.testing.assert_allclose(ops.times_Z(b), Z @ b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ops.Zt_times(r), Z.T @ r, rtol=1e-12, atol=1e-12)
    q, nl = lay.q[0], lay.n_levels[0]
    M = rng.normal(size=(nl, q, q))
    M = M + np.swapaxes(M, 1, 2)
    Z1 = Z[:, :nl * q].reshape(lay.n, nl, q)
    np.testing.assert_allclose(ops.quadratic_rows(M), np.einsum("ija,jab,ijb->i", Z1, M, Z1), rtol=1e-10, atol=1e-12)


def _poisson_problem(rng, n, spec, shuffle=True):
    S = _structure(rng, n, spec)
    x = rng.normal(size=n)
    eta = 0.2 + 0.4 * x
    for t in S.terms:
        eta = eta + np.einsum("iq,iq->i", t.Z, rng.normal(0.0, 0.4, (t.n_levels, t.q))[t.codes])
    y = rng.poisson(np.exp(eta)).astype(float)
    return y, np.column_stack([np.ones(n), x]), S


def _model(S, y, X):
    d = Distribution(make_family("poisson"))
    m = np.ones(len(y))
    return MixedGLMM(S, d, y, X, np.zeros(len(y)), m, d.log_constant(y, m), d.row_aux(y))


def test_one_term_objective_does_not_depend_on_the_row_order():
    """One term: the engine sorts the rows by level inside; the value, the gradient and the modes are those of
    the same data given sorted, and results (eta) come back in the user's order."""
    rng = np.random.default_rng(9)
    y, X, S = _poisson_problem(rng, 500, [(40, 2, True)])
    model = _model(S, y, X)
    assert model.rows is not None and model.ops.segments is not None
    order = np.argsort(S.terms[0].codes, kind="stable")
    t = S.terms[0]
    S2 = ReStructure((ReTerm(t.group, t.codes[order], t.n_levels, t.Z[order], t.z_names, t.correlated),))
    model2 = _model(S2, y[order], X[order])
    assert model2.rows is None
    x0 = np.array([0.1, 0.3, 0.5, 0.1, 0.3])
    f, g = model.value_and_grad(x0)
    f2, g2 = model2.value_and_grad(x0)
    assert f == pytest.approx(f2, rel=1e-13)
    np.testing.assert_allclose(g, g2, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(model._last_state.u, model2._last_state.u, rtol=1e-10, atol=1e-12)
    # eta in the user's order from the user-order layout
    b = model.layout.lambda_times(model.lams(x0[2:]), model._last_state.u)
    np.testing.assert_allclose(model.layout.times_Z(b), _dense(model.layout, [np.eye(2)])[0] @ b, rtol=1e-12)
    np.testing.assert_allclose((X @ x0[:2] + model.layout.times_Z(b))[order], model._last_state.eta, rtol=1e-12)


def test_dense_and_sparse_cross_blocks_give_the_same_laplace(monkeypatch):
    """Crossed terms: the dense cross block (few levels after the first term) and `_pls`'s sparse one (forced by
    zero thresholds) give the same Laplace value and gradient."""
    rng = np.random.default_rng(21)
    y, X, S = _poisson_problem(rng, 800, [(60, 1, True), (15, 1, True), (6, 2, True)])
    x0 = np.array([0.1, 0.3, 0.6, 0.5, 0.4, 0.1, 0.3])
    dense = _model(S, y, X)
    assert dense.plan is not None
    f, g = dense.value_and_grad(x0)
    monkeypatch.setattr(db, "DENSE_FLOPS", 0.0)
    sparse = _model(S, y, X)
    assert sparse.plan is None
    fs, gs = sparse.value_and_grad(x0)
    assert f == pytest.approx(fs, rel=1e-12)
    np.testing.assert_allclose(g, gs, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("spec", [[(40, 2, True)], [(50, 1, True), (8, 1, True)]])
def test_predicted_modes_are_first_order_and_leave_the_value_unchanged(spec):
    """The warm start at a new point from the last converged modes (implicit function theorem) errs by O(step^2),
    where the old modes err by O(step); the Laplace value does not depend on the start."""
    rng = np.random.default_rng(4)
    y, X, S = _poisson_problem(rng, 700, spec)
    x0 = np.concatenate([[0.1, 0.3], S.start_params() * 0.6])
    direction = rng.normal(size=len(x0))
    errors = []
    for h in (1e-2, 1e-3):
        model = _model(S, y, X)
        model(x0)
        prev = model._last_state
        x1 = x0 + h * direction
        pred = model._predicted_modes(prev, x1)
        f_pred = model(x1)
        exact = model._last_state.u
        errors.append((np.linalg.norm(pred - exact), np.linalg.norm(prev.u - exact)))
        fresh = _model(S, y, X)
        assert f_pred == pytest.approx(fresh(x1), rel=1e-12)
    (p2, o2), (p3, o3) = errors
    assert o2 / o3 == pytest.approx(10.0, rel=0.2)  # the old modes: first-order error
    assert p2 / p3 > 60.0  # the prediction: second order (100 in the limit)
    assert p3 < 1e-2 * o3
