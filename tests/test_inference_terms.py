"""Prediction standard errors and the variance-parameter covariance for every random-effects structure, against
dense-matrix computations that use none of glmm_ext's numerics (Henderson's mixed-model equations built
densely; the n x n REML likelihood of tests/multiterm_dense.py)."""
import os
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import glmm_ext
import multiterm_dense as md
from test_fitting_multiterm import crossed

DATA = os.path.join(os.path.dirname(__file__), "data")


def fit(formula, df, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return glmm_ext.GLMM.from_formula(formula, df, **kwargs).fit()


def full_z_of(res):
    """Dense Z (n x total random effects, each term level-major) and the block-diagonal G of the fit."""
    Zs, Gs = [], []
    for t in res._terms:
        k = len(Zs)
        Z, codes = glmm_ext._term_view.term_rows(res, k)
        term = type("T", (), {"Z": np.asarray(Z, float), "codes": np.asarray(codes), "n_levels": t.n_levels})
        Zs.append(md.full_z(term))
        Gs.append(np.kron(np.eye(t.n_levels), t.cov))
    G = np.zeros((sum(g.shape[0] for g in Gs),) * 2)
    o = 0
    for g in Gs:
        G[o:o + len(g), o:o + len(g)] = g
        o += len(g)
    return np.hstack(Zs), G


def henderson_pev(res, rows):
    """[x; z]' C^-1 [x; z] with C = [[X'X, X'Z], [Z'X, Z'Z + s2 G^-1]] / s2: Henderson's prediction-error
    variance of x'beta-hat + z'b-hat (Gaussian identity, variances at their estimates)."""
    X = res.model.design.X
    Z, G = full_z_of(res)
    s2 = res.scale
    C = np.block([[X.T @ X, X.T @ Z], [Z.T @ X, Z.T @ Z + s2 * np.linalg.inv(G)]]) / s2
    W = np.hstack([X, Z])[rows]
    return np.einsum("ij,jk,ik->i", W, np.linalg.inv(C), W), np.hstack([X, Z])


def test_prediction_se_of_several_terms_with_a_slope_is_hendersons():
    df = crossed(n=200, seed=6, slope=True)
    res = fit("y ~ x + (x|a) + (1|b)", df)
    rows = np.arange(12)
    pred = res.get_prediction(df.iloc[rows]).summary_frame()
    pev, W = henderson_pev(res, rows)
    assert np.allclose(pred["mean_se"] ** 2, pev, rtol=1e-6)
    b = np.concatenate([res.random_effects["a"].to_numpy().ravel(), res.random_effects["b"].to_numpy().ravel()])
    assert np.allclose(pred["mean"], W[rows] @ np.concatenate([res.params, b]), rtol=1e-10)
    fitted = res.get_prediction().summary_frame()  # the fitted rows: the same numbers
    assert np.allclose(fitted["mean_se"].iloc[rows], pred["mean_se"], rtol=1e-10)
    population = res.get_prediction(df.iloc[rows], groups=False).summary_frame()
    x = np.column_stack([np.ones(len(rows)), df["x"].iloc[rows]])
    assert np.allclose(population["mean_se"] ** 2, np.einsum("ij,jk,ik->i", x, res.cov_params_fe, x), rtol=1e-10)
    only_b = res.get_prediction(df.iloc[rows], groups=["b"]).summary_frame()  # b's levels, a at 0
    Xz = W[rows].copy()
    Xz[:, 2:2 + 16] = 0.0  # the columns of (x | a): 8 levels x 2
    C_inv = np.linalg.inv(np.block([[W[:, :2].T @ W[:, :2], W[:, :2].T @ W[:, 2:]],
                                    [W[:, 2:].T @ W[:, :2], W[:, 2:].T @ W[:, 2:]
                                     + res.scale * np.linalg.inv(full_z_of(res)[1])]]) / res.scale)
    assert np.allclose(only_b["mean_se"] ** 2, np.einsum("ij,jk,ik->i", Xz, C_inv, Xz), rtol=1e-6)


def test_prediction_se_of_random_slopes_with_groups_is_hendersons():
    sleep = pd.read_csv(os.path.join(DATA, "sleepstudy.csv"))
    res = fit("Reaction ~ Days + (Days | Subject)", sleep)
    rows = np.array([0, 5, 17, 40, 99, 179])
    new = sleep.iloc[rows]
    pred = res.get_prediction(new, groups="Subject").summary_frame()
    pev, W = henderson_pev(res, rows)
    assert np.allclose(pred["mean_se"] ** 2, pev, rtol=1e-5)
    assert np.allclose(pred["mean"], res.predict(new, groups="Subject"), rtol=1e-12)
    unseen = new.assign(Subject=999)
    with pytest.warns(UserWarning):
        population = res.get_prediction(unseen, groups="Subject").summary_frame()
    assert np.allclose(population["mean_se"], res.get_prediction(new).summary_frame()["mean_se"], rtol=1e-12)


def test_prediction_se_of_one_random_intercept_is_hendersons():
    df = crossed(n=150, seed=2)
    res = fit("y ~ x", df, groups="a")
    rows = np.arange(10)
    pred = res.get_prediction(df.iloc[rows], groups="a").summary_frame()
    pev, _ = henderson_pev(res, rows)
    assert np.allclose(pred["mean_se"] ** 2, pev, rtol=1e-6)


def test_cov_params_vector_of_several_terms_is_the_dense_reml_curvature():
    df = crossed(n=120, seed=0)
    res = fit("y ~ x + (1|a) + (1|b)", df)
    structure = res.model.design.terms.structure
    y, X = res.model.design.y, res.model.design.X

    def reml(v):  # (SD a, SD b, log sigma^2) -> REML log-likelihood, densely
        return md.gaussian_loglik(y, X, None, [[[v[0] ** 2]], [[v[1] ** 2]]], np.exp(v[2]), structure.terms,
                                  reml=True)

    v0 = res.params_vector.to_numpy()[2:]
    assert reml(v0) == pytest.approx(res.llf, rel=1e-8)
    h = 1e-4 * np.maximum(1.0, np.abs(v0))
    H = np.zeros((3, 3))
    for i in range(3):
        for j in range(3):
            e_i, e_j = np.eye(3)[i] * h[i], np.eye(3)[j] * h[j]
            H[i, j] = (reml(v0 + e_i + e_j) - reml(v0 + e_i - e_j) - reml(v0 - e_i + e_j)
                       + reml(v0 - e_i - e_j)) / (4 * h[i] * h[j])
    assert np.allclose(res.cov_params_vector, np.linalg.inv(-H), rtol=2e-3, atol=1e-8)
    se = res.bse_re
    assert se["a"].iloc[0] == pytest.approx(2 * v0[0] * np.sqrt(np.linalg.inv(-H)[0, 0]), rel=2e-3)


def test_term_view_is_one_term_for_a_one_factor_fit():
    sleep = pd.read_csv(os.path.join(DATA, "sleepstudy.csv"))
    slopes = fit("Reaction ~ Days + (Days || Subject)", sleep)
    (term,) = slopes._terms
    assert term.z_names == ("Intercept", "Days") and term.blocks == ((0,), (1,)) and term.pairs == []
    assert np.allclose(term.cov, slopes.cov_re.to_numpy())
    intercept = fit("Reaction ~ Days", sleep, groups="Subject")
    (term,) = intercept._terms
    assert term.z_names == ("Intercept",) and term.modes.shape == (18, 1)
    assert np.array_equal(term.modes[:, 0], intercept.blups)


def test_prediction_se_of_a_poisson_slope_term_uses_the_laplace_conditional_covariances():
    df = crossed(n=200, seed=6, slope=True)
    res = fit("count ~ x + (x|a) + (1|b)", df, family=sm.families.Poisson())
    rows = np.arange(8)
    pred = res.get_prediction(df.iloc[rows])
    Z, G = full_z_of(res)
    mu = res.fittedvalues.to_numpy()
    Hinv = np.linalg.inv(Z.T @ (mu[:, None] * Z) + np.linalg.inv(G))  # the Laplace curvature at the modes
    X = res.model.design.X
    expected = np.einsum("ij,jk,ik->i", X[rows], res.cov_params_fe, X[rows])
    za, zb = Z[rows, :16], Z[rows, 16:]  # (x | a): 8 levels x 2; (1 | b)
    expected += np.einsum("ij,jk,ik->i", za, Hinv[:16, :16], za) + np.einsum("ij,jk,ik->i", zb, Hinv[16:, 16:], zb)
    assert np.allclose(pred.se_linpred ** 2, expected, rtol=1e-4)


@pytest.mark.parametrize("formula", ["Reaction ~ Days + (Days | Subject)", "Reaction ~ Days + (Days || Subject)"])
def test_term_view_reads_the_engines_per_term_lists_for_one_factor(formula):
    # the engine's one record (per-term lists, a one-factor model's blocks as its terms) gives the same view,
    # and its conditional covariances from the blocked factor equal the one-factor engine's (its one term's)
    from types import SimpleNamespace

    from glmm_ext import _term_view

    res = fit(formula, pd.read_csv(os.path.join(DATA, "sleepstudy.csv")))._results
    view = res._terms[0]
    structure, columns = _term_view.engine_structure(res)
    lams = [np.linalg.cholesky(view.cov[np.ix_(c, c)] / res.scale + 1e-300 * np.eye(len(c))) for _, c in columns]
    record = SimpleNamespace(modes=[view.modes[:, c] for _, c in columns],
                             mode_sd=[view.mode_sd[:, c] for _, c in columns],
                             cov_re=[view.cov[np.ix_(c, c)] for _, c in columns], singular=[False] * len(columns),
                             beta=np.asarray(res.params), cov_params=structure.pack(lams), scale=res.scale)
    other = SimpleNamespace(_fit=record, model=res.model, method=res.method)
    other._terms = _term_view.term_views(other)
    (term,) = other._terms
    assert term.z_names == view.z_names and term.blocks == view.blocks and term.pairs == view.pairs
    assert np.array_equal(term.cov, view.cov) and np.array_equal(term.modes, view.modes)
    (covs,) = _term_view.conditional_covariances(other)
    (expected,) = res._fit.mode_cov
    assert np.allclose(covs, expected, rtol=1e-5, atol=1e-10)
