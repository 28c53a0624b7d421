"""Property-based tests: random valid data sets fit, and the fit respects the model's invariances."""
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import glmm_ext
from glmm_ext._glmm import glm_start

PAIRS = [("gaussian", "identity"), ("gaussian", "log"), ("binomial", "logit"), ("binomial", "probit"),
         ("poisson", "log"), ("poisson", "identity"), ("gamma", "inverse"), ("gamma", "log"), ("gamma", "identity")]
SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def datasets(draw, pairs=PAIRS):
    family, link = draw(st.sampled_from(pairs))
    n_groups = draw(st.integers(3, 25))
    sizes = draw(st.lists(st.integers(1, 12), min_size=n_groups, max_size=n_groups))
    if family in ("gaussian", "gamma"):  # a residual variance needs repeated groups and spare rows
        sizes = [max(2, k) for k in sizes]
    sigma_u = draw(st.floats(0.0, 1.5))
    beta1 = draw(st.floats(-1.0, 1.0))
    seed = draw(st.integers(0, 2**31 - 1))
    beta = (3.0, 0.2 * beta1, 0.2) if link in ("identity", "inverse") else (0.3, beta1, -0.3)
    sigma_u = min(sigma_u, 0.3) if link in ("identity", "inverse") else sigma_u
    df = glmm_ext.simulate(family, link, n_groups=n_groups, group_size=sizes, beta=beta, sigma_u=sigma_u,
                           scale=0.3, seed=seed)
    assume(len(df) >= 12)
    # valid data: both predictors vary and the response is not degenerate (all 0s or all 1s has no MLE)
    assume(df["x2"].nunique() > 1 and df["y"].nunique() > 1)
    if family == "binomial":
        assume(not _separated(df))
    return family, link, df


def _separated(df):
    """True when a 0/1 response is perfectly split by x2 or by a threshold on x1 (no finite MLE)."""
    y = df["y"].to_numpy()
    for col in ("x1", "x2"):
        x = df[col].to_numpy()
        if x[y == 1].min() > x[y == 0].max() or x[y == 0].min() > x[y == 1].max():
            return True
    return False


def fit(df, family, link, formula="y ~ x1 + x2"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return glmm_ext.GLMM.from_formula(formula, df, groups="g",
                                          family=glmm_ext.make_family(family, link)).fit()


@SETTINGS
@given(datasets())
def test_random_valid_data_give_finite_results(case):
    family, link, df = case
    res = fit(df, family, link)
    assert np.isfinite(res.llf) and np.all(np.isfinite(res.params))
    assert np.all(np.isfinite(res.bse)) and np.all(np.asarray(res.bse) > 0)
    assert res.var_re >= 0 and res.scale > 0
    assert np.all(np.isfinite(res.blups)) and np.all(np.isfinite(res.diagnostics().to_numpy()))
    if not (family == "gaussian" and link == "identity"):
        # the maximum is not below the GLM start (sigma_u = 0 lies inside the parameter space)
        model = res.model
        gamma0, scale0 = glm_start(model.dist, model.design.engine_data())
        beta0 = model.design.scaling.matrix @ gamma0
        assert res.llf >= model.loglike(beta0, var_re=0.0, scale=scale0) - 1e-6


@SETTINGS
@given(datasets(), st.randoms(use_true_random=False))
def test_row_order_and_group_labels_do_not_matter(case, rnd):
    family, link, df = case
    base = fit(df, family, link)
    perm = list(range(len(df)))
    rnd.shuffle(perm)
    labels = {g: f"L{rnd.randint(0, 10**6)}-{g}" for g in df["g"].unique()}
    for other in (df.iloc[perm], df.assign(g=df["g"].map(labels))):
        res = fit(other, family, link)
        assert res.llf == pytest.approx(base.llf, abs=1e-6 * max(1.0, abs(base.llf)))
        assert np.allclose(res.params, base.params, rtol=1e-4, atol=1e-4 * np.asarray(base.bse))


@SETTINGS
@given(datasets(), st.floats(1e-3, 1e4), st.floats(-1e4, 1e4))
def test_affine_rescaling_of_a_predictor(case, a, b):
    family, link, df = case
    base = fit(df, family, link)
    res = fit(df.assign(x1=a * df["x1"] + b), family, link)
    if family == "gaussian" and link == "identity":  # REML's log|X'V^-1X| moves by -2 log a
        assert res.llf == pytest.approx(base.llf - np.log(a), abs=1e-5 * max(1.0, abs(base.llf)))
    else:
        assert res.llf == pytest.approx(base.llf, abs=1e-5 * max(1.0, abs(base.llf)))
    assert res.params["x1"] * a == pytest.approx(base.params["x1"], abs=1e-4 * base.bse["x1"] + 1e-8)
    assert res.params["x2"] == pytest.approx(base.params["x2"], abs=1e-4 * base.bse["x2"] + 1e-8)


@SETTINGS
@given(datasets(pairs=[("gaussian", "identity")]), st.floats(-1e6, 1e6))
def test_shifting_a_gaussian_response_moves_only_the_intercept(case, c):
    family, link, df = case
    base = fit(df, family, link)
    res = fit(df.assign(y=df["y"] + c), family, link)
    assert res.params["Intercept"] == pytest.approx(base.params["Intercept"] + c, abs=1e-6 * (1 + abs(c)))
    assert np.allclose(res.params[["x1", "x2"]], base.params[["x1", "x2"]], rtol=1e-6, atol=1e-6)
    assert res.var_re == pytest.approx(base.var_re, rel=1e-5, abs=1e-8)
    assert res.llf == pytest.approx(base.llf, abs=1e-6)
