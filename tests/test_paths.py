"""Code paths the reference cases never reach, each with the behaviour it must have.

No-intercept models (RMS scaling), loglike(reml=True) at any point, predict on arrays and its errors,
the GLM-start fallback, singular information (NaN SEs and their warning), the conditional-mode
iteration and step-halving limits, the REML grid extension and its "not finite" failure, the
optimiser's failure branches, constant responses and zero trials.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import optimize
from statsmodels.tools.sm_exceptions import ConvergenceWarning

import glmm_ext
from conftest import dense_reml_deviance
from glmm_ext.engine import _glm, _glmm, _lmm, _optimize
from glmm_ext.formula._design import make_scaling
from glmm_ext.engine._families import Distribution, make_family
from glmm_ext.engine._laplace import GLMMData, conditional_modes


def dense_reml(y, X, groups, var_re, scale):
    """REML log-likelihood with dense n x n matrices (beta at its GLS value)."""
    return -0.5 * dense_reml_deviance(y, X, groups, var_re, scale)[0]


def gaussian_data(seed=1, n_groups=7, sigma_u=1.2):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_groups), rng.integers(2, 7, size=n_groups))
    n = len(groups)
    X = np.column_stack([rng.normal(2.0, 1.0, size=n), rng.uniform(size=n)])
    y = X @ [2.0, -1.0] + 1.5 + rng.normal(0, sigma_u, size=n_groups)[groups] + rng.normal(size=n)
    return y, X, groups


# ------------------------------------------------------------------ no intercept: the RMS scaling branch
def test_no_intercept_scaling_is_rms():
    X = np.array([[1.0, 3.0], [2.0, -4.0], [2.0, 0.0]])
    scaling = make_scaling(X)
    assert scaling.intercept == -1
    assert np.allclose(scaling.center, 0.0)
    assert np.allclose(scaling.scale, [np.sqrt(3.0), np.sqrt(25.0 / 3.0)])
    assert np.allclose(scaling.matrix, np.diag(1.0 / scaling.scale))


def test_no_intercept_gaussian_equals_dense_reml_optimum():
    y, X, groups = gaussian_data()
    df = pd.DataFrame({"y": y, "x1": X[:, 0], "x2": X[:, 1], "g": groups})
    res = glmm_ext.GLMM.from_formula("y ~ 0 + x1 + x2", df, groups="g").fit()
    assert list(res.params.index) == ["x1", "x2"]
    assert res.llf == pytest.approx(dense_reml(y, X, groups, res.var_re, res.scale), abs=1e-8)
    opt = optimize.minimize(lambda v: -dense_reml(y, X, groups, np.exp(v[0]), np.exp(v[1])), [0.0, 0.0],
                            method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12})
    assert -opt.fun == pytest.approx(res.llf, abs=1e-6)
    assert np.exp(opt.x) == pytest.approx([res.var_re, res.scale], rel=1e-4)
    # a predictor 1e4 times larger: the same fit (REML's log|X'V^-1X| moves by -2 log 1e4)
    big = glmm_ext.GLMM.from_formula("y ~ 0 + x1 + x2", df.assign(x1=df.x1 * 1e4), groups="g").fit()
    assert big.params["x1"] * 1e4 == pytest.approx(res.params["x1"], rel=1e-8)
    assert big.llf == pytest.approx(res.llf - np.log(1e4), abs=1e-7)


def test_no_intercept_poisson_is_stationary_and_scale_free():
    df = glmm_ext.simulate("poisson", n_groups=12, group_size=6, beta=(0.0, 0.5, 0.8), sigma_u=0.5, seed=4)
    fam = make_family("poisson")
    res = glmm_ext.GLMM.from_formula("y ~ 0 + x1 + x2", df, groups="g", family=fam).fit()
    assert res.converged and list(res.params.index) == ["x1", "x2"]
    model = res.model
    for j in range(2):  # the Laplace log-likelihood is at its maximum in each coefficient
        for step in (-1e-3, 1e-3):
            moved = np.asarray(res.params, float).copy()
            moved[j] += step
            assert model.loglike(moved, var_re=res.var_re) < res.llf
    scaled = glmm_ext.GLMM.from_formula("y ~ 0 + x1 + x2", df.assign(x1=df.x1 * 1e3), groups="g",
                                        family=fam).fit()
    assert scaled.llf == pytest.approx(res.llf, abs=1e-7)
    assert scaled.params["x1"] * 1e3 == pytest.approx(res.params["x1"], rel=1e-5)


# ------------------------------------------------------------------ loglike(reml=True)
def test_loglike_reml_at_any_point_equals_dense_reml():
    y, X, groups = gaussian_data(seed=2)
    Xc = np.column_stack([np.ones(len(y)), X])
    model = glmm_ext.GLMM(y, Xc, groups)
    res = model.fit()
    assert model.loglike(res.params, res.var_re, res.scale, reml=True) == pytest.approx(res.llf, abs=1e-9)
    for var_re, scale in [(1.0, 2.0), (0.0, 0.7), (5.0, 0.1)]:
        assert model.loglike(res.params, var_re, scale, reml=True) == pytest.approx(
            dense_reml(y, Xc, groups, var_re, scale), abs=1e-9)
    with pytest.raises(ValueError, match="parameter vector has 5 entries"):
        model.loglike(res.params)  # beta alone is neither (beta, var_re, scale) nor the parameter vector


# ------------------------------------------------------------------ predict on arrays
@pytest.fixture(scope="module")
def poisson_fit():
    df = glmm_ext.simulate("poisson", n_groups=10, group_size=6, seed=3)
    X = np.column_stack([np.ones(len(df)), df["x1"], df["x2"]])
    return glmm_ext.GLMM(df["y"].to_numpy(), X, df["g"].to_numpy(), family=make_family("poisson")).fit(), X, df


def test_predict_on_arrays(poisson_fit):
    res, X, df = poisson_fit
    beta = np.asarray(res.params, float)
    new = np.array([[1.0, 0.5, 0.0], [1.0, -1.0, 1.0]])
    assert np.allclose(res.predict(new, which="linear"), new @ beta)
    assert np.allclose(res.predict(new), np.exp(new @ beta))
    assert np.allclose(res.predict(new, offset=[1.0, 2.0], which="linear"), new @ beta + [1.0, 2.0])
    u = dict(zip(res.model.group_labels, res.blups))
    groups = np.array([3, 99])  # 99 was never seen: no group effect (and a warning naming it)
    with pytest.warns(UserWarning, match="99"):
        assert np.allclose(res.predict(new, groups=groups, which="linear"), new @ beta + [u[3], 0.0])
    assert np.allclose(res.predict(X, groups=df["g"].to_numpy()), res.diagnostics()["fitted_values"])
    one_col = glmm_ext.GLMM(df["y"].to_numpy(), np.ones(len(df)), df["g"].to_numpy(),
                            family=make_family("poisson")).fit()
    assert np.allclose(one_col.predict(np.ones(3), which="linear"), one_col.params.iloc[0])


@pytest.mark.parametrize("kwargs,message", [
    (dict(exog=np.ones((2, 2))), "exog has 2 columns; the model has 3"),
    (dict(exog=np.ones((2, 3)), groups=[1, 2, 3]), "groups has 3 values.* 2 rows"),
    (dict(exog=np.ones((2, 3)), offset=[1.0]), "offset has 1 values.* 2 rows"),
    (dict(exog=np.ones((2, 3)), which="response"), "which must be 'mean' or 'linear'"),
    (dict(exog=np.ones((2, 3)), groups=[3, 99], new_groups="error"), "99"),
])
def test_predict_errors(poisson_fit, kwargs, message):
    res = poisson_fit[0]
    with pytest.raises(ValueError, match=message):
        res.predict(**kwargs)


# ------------------------------------------------------------------ the GLM-start fallback
def _engine(family, link, seed=5, **kw):
    df = glmm_ext.simulate(family, link, n_groups=12, group_size=6, seed=seed, **kw)
    model = glmm_ext.GLMM.from_formula("y ~ x1 + x2", df, groups="g", family=make_family(family, link))
    return model, model.design.engine_data()


def test_glm_start_falls_back_to_least_squares_of_the_link_of_the_mean(monkeypatch):
    model, data = _engine("gamma", "log", scale=0.3)
    normal = model.fit()
    monkeypatch.setattr(_glm, "fisher_scoring", lambda *args, **kwargs: None)  # the scoring fails
    gamma, scale = _glmm.glm_start(model.dist, data)
    # centred predictors: the intercept alone carries log(mean y), the slopes start at 0
    assert np.allclose(gamma, [np.log(np.mean(data.y)), 0.0, 0.0], atol=1e-12)
    mu = np.mean(data.y)
    assert scale == pytest.approx(np.mean((data.y - mu) ** 2 / mu**2), rel=1e-12)
    fallback = model.fit()  # a worse start, the same maximum
    assert fallback.converged
    assert fallback.llf == pytest.approx(normal.llf, abs=1e-6)
    assert np.allclose(fallback.params, normal.params, atol=1e-4 * np.asarray(normal.bse))


def test_glm_start_is_the_glm_fit():
    """The Fisher scoring of the start reaches statsmodels' GLM (estimates, Pearson dispersion), to the
    precision a start needs (it stops at a predicted gain of 1e-12 |log-likelihood|)."""
    import statsmodels.api as sm

    for family, link, kw in [("gamma", "log", {"scale": 0.3}), ("binomial", "probit", {}), ("poisson", "log", {})]:
        model, data = _engine(family, link, **kw)
        gamma, scale = _glmm.glm_start(model.dist, data)
        ref = sm.GLM(data.y, data.X, family=make_family(family, link), offset=data.offset).fit(tol=1e-12)
        np.testing.assert_allclose(gamma, ref.params, rtol=1e-5, atol=1e-6)
        assert scale == pytest.approx(ref.scale, rel=1e-5)


def test_glm_start_outside_the_support_is_replaced(monkeypatch):
    """A GLM start whose identity-link mean is negative somewhere is not used."""
    model, data = _engine("poisson", "identity", beta=(3.0, 0.3, -0.3), sigma_u=0.3)
    monkeypatch.setattr(_glm, "fisher_scoring", lambda sums_at, gamma, **kw: (np.array([-1.0, 0.0, 0.0]), None))
    gamma, scale = _glmm.glm_start(model.dist, data)
    assert np.allclose(gamma, [np.mean(data.y), 0.0, 0.0], atol=1e-12) and scale == 1.0


# ------------------------------------------------------------------ singular information: NaN SEs + warning
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


# ------------------------------------------------------------------ conditional modes: iteration and halving limits
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


# ------------------------------------------------------------------ REML grid extension and failure
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


def test_an_exact_fit_is_an_error_not_a_zero_variance():
    """y = 2 + 3x exactly: the criterion has no finite value (r^2 = 0 up to rounding) at any theta."""
    groups = np.repeat(np.arange(4), 3)
    x = np.arange(12.0)
    for reml in (True, False):
        with pytest.raises(ValueError, match="not finite anywhere"):
            glmm_ext.GLMM(2.0 + 3.0 * x, np.column_stack([np.ones(12), x]), groups).fit(reml=reml)


# ------------------------------------------------------------------ optimiser failure branches
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


def test_fit_with_maxiter_1_warns_and_reports():
    df = glmm_ext.simulate("binomial", n_groups=15, group_size=8, sigma_u=1.0, seed=2)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        res = glmm_ext.GLMM.from_formula("y ~ x1 + x2", df, groups="g", family=make_family("binomial")).fit(maxiter=1)
    assert not res.converged and not res.optsummary.converged
    assert "did not converge" in res.summary().as_text()


# ------------------------------------------------------------------ constant responses and zero trials
def _constant(value, n_groups=6, size=4):
    rng = np.random.default_rng(0)
    return pd.DataFrame({"y": np.full(n_groups * size, float(value)), "x": rng.normal(size=n_groups * size),
                         "g": np.repeat(np.arange(n_groups), size)})


def test_constant_gaussian_response_is_an_error():
    with pytest.raises(ValueError, match="'y' does not vary"):
        glmm_ext.GLMM.from_formula("y ~ x", _constant(3.0), groups="g").fit()


@pytest.mark.parametrize("family", ["poisson", "binomial"])
def test_all_zero_response_is_an_error(family):
    with pytest.raises(ValueError, match="0 in every row.*no finite maximum"):
        glmm_ext.GLMM.from_formula("y ~ x", _constant(0.0), groups="g", family=make_family(family)).fit()


def test_constant_positive_poisson_response_is_the_glm_answer():
    """Every count 3: mu = 3 everywhere, no group variation (a singular fit), the slope 0."""
    with pytest.warns(glmm_ext.SingularFitWarning):
        res = glmm_ext.GLMM.from_formula("y ~ x", _constant(3.0), groups="g", family=make_family("poisson")).fit()
    assert res.params["Intercept"] == pytest.approx(np.log(3.0), abs=1e-5)
    assert res.params["x"] == pytest.approx(0.0, abs=1e-5) and res.var_re < 1e-6


@pytest.mark.parametrize("family,link", [("gamma", "log"), ("gamma", "identity"), ("gaussian", "log")])
def test_constant_response_of_a_dispersion_family_is_an_error(family, link):
    with pytest.raises(ValueError, match="'y' does not vary.*dispersion would be 0"):
        glmm_ext.GLMM.from_formula("y ~ x", _constant(2.0), groups="g", family=make_family(family, link)).fit()


def test_constant_response_with_an_offset_is_a_model():
    df = _constant(2.0).assign(off=np.linspace(-0.5, 0.5, 24))
    res = glmm_ext.GLMM.from_formula("y ~ 1", df, groups="g", family=make_family("gamma", "log"), offset="off").fit()
    assert np.isfinite(res.llf) and res.scale > 1e-3


def test_zero_trials_are_an_error_naming_the_rows():
    df = glmm_ext.simulate("binomial", n_groups=6, group_size=4, trials=5, seed=1)
    df.loc[[2, 7], ["successes", "failures"]] = 0
    with pytest.raises(ValueError, match="zero trials.*rows 2, 7"):
        glmm_ext.GLMM.from_formula("successes + failures ~ x1", df, groups="g", family=make_family("binomial"))
    with pytest.raises(ValueError, match="weights must be > 0"):
        glmm_ext.GLMM.from_formula("y ~ x1", df.assign(y=0.5), groups="g", family=make_family("binomial"),
                                   weights=np.r_[0.0, np.ones(len(df) - 1)])


def test_array_api_counts_rows_dropped_not_reasons():
    df = glmm_ext.simulate("gaussian", n_groups=6, group_size=5, seed=2)
    y = df["y"].to_numpy().copy()
    X = np.column_stack([np.ones(len(df)), df["x1"], df["x2"]])
    y[3], X[3, 1] = np.nan, np.inf  # one row, two bad columns
    X[8, 2] = np.nan
    res = glmm_ext.GLMM(y, X, df["g"].to_numpy()).fit()
    assert res.n_dropped == 2 and res.nobs == len(df) - 2
    assert res.model_fit_table().loc["Rows dropped", "Value"] == 2
    assert res.model.design.drop_reasons == {"y": 1, "x1": 1, "x2": 1}

# ------------------------------------------------------------------ found by the slow property tests (open)
# Poisson-identity data sets (y, x1, x2, g) drawn by `python -m pytest -m slow`; the open one is a strict
# xfail: a fix of the engine turns it into XPASS, a failure, so the marker is removed then.
POISSON_IDENTITY_LOCAL = [
    (1, 2.040919, 1, 0), (7, -2.555665, 1, 0), (5, 0.418099, 0, 1), (3, -0.56777, 1, 1), (4, -0.452649, 1, 1),
    (4, -0.215597, 1, 2), (5, -2.019986, 1, 2), (9, -0.231932, 0, 2), (4, -0.865213, 1, 2), (2, 3.323, 1, 2),
    (3, 0.225787, 0, 2), (3, -0.352631, 1, 2), (3, -0.281287, 0, 2), (1, -0.668046, 0, 3), (2, -1.055151, 0, 3),
    (2, -0.390801, 1, 3), (4, 0.481945, 0, 3), (1, -0.238554, 1, 3), (4, 0.957759, 0, 4), (0, -0.199802, 1, 4),
    (1, 0.02426, 0, 4), (3, 1.545821, 1, 5), (2, 0.545106, 0, 5), (4, -0.505229, 0, 5), (3, -0.182839, 1, 5),
    (1, 0.540525, 1, 5), (4, 1.935088, 1, 5), (5, -0.26962, 1, 5), (4, -0.243559, 0, 5), (5, 1.002314, 1, 6),
    (5, -0.88646, 0, 6), (3, -0.29172, 1, 6), (3, 0.882539, 1, 6), (2, 0.58035, 1, 6), (4, 0.091517, 1, 6),
    (3, 0.670104, 1, 6),
]
POISSON_IDENTITY_NO_START = [
    (7, 0.189053, 1, 0), (6, -0.522748, 0, 1), (2, -0.413064, 1, 2), (0, -2.441467, 1, 3), (8, 1.799707, 1, 3),
    (1, 1.144166, 0, 4), (2, -0.325423, 0, 4), (0, 0.773807, 0, 4), (2, 0.281211, 1, 4), (6, -0.553823, 1, 4),
    (5, 0.977567, 1, 4), (3, -0.310557, 0, 4), (1, -0.328824, 1, 4),
]


def test_poisson_identity_fit_is_not_below_the_boundary():
    """Found by the slow property run: the fit stopped 4.4e-4 below the sigma_u = 0 likelihood (fixed)."""
    from glmm_ext.engine._glmm import glm_start

    df = pd.DataFrame(POISSON_IDENTITY_LOCAL, columns=["y", "x1", "x2", "g"])
    res = glmm_ext.GLMM.from_formula("y ~ x1 + x2", df, groups="g", family=make_family("poisson", "identity")).fit()
    gamma0, _ = glm_start(res.model.dist, res.model.design.engine_data())
    assert res.llf >= res.model.loglike(res.model.design.scaling.matrix @ gamma0, var_re=0.0) - 1e-6


def test_poisson_identity_with_zero_counts_near_the_edge_fits():
    """The GLM start puts a row at mu = 7.5e-4: only a small start SD keeps every group's mode inside."""
    from glmm_ext.engine._glmm import glm_start

    df = pd.DataFrame(POISSON_IDENTITY_NO_START, columns=["y", "x1", "x2", "g"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = glmm_ext.GLMM.from_formula("y ~ x1 + x2", df, groups="g",
                                         family=make_family("poisson", "identity")).fit()
    gamma0, _ = glm_start(res.model.dist, res.model.design.engine_data())
    glm_llf = res.model.loglike(res.model.design.scaling.matrix @ gamma0, var_re=0.0)
    assert np.isfinite(res.llf) and res.llf >= glm_llf - 1e-6


# Gamma-identity, 4 groups x 4 rows (the slow hardening property's seed 2136): the integrand of the last
# group flattens as the search goes on (its mode curvature H -> 0), where the Laplace value grows without bound
GAMMA_IDENTITY_FLAT = [
    (2.443469, 0.031089, 0), (0.140049, 0.396210, 0), (0.767373, 0.297188, 0), (0.286757, -0.346328, 0),
    (1.242020, 0.090490, 1), (1.946333, -1.002085, 1), (4.008522, 0.507082, 1), (0.352667, 0.490842, 1),
    (1.203101, -0.616467, 2), (2.334848, 0.425201, 2), (2.364040, 0.661515, 2), (6.530098, 1.552493, 2),
    (0.068864, -0.991498, 3), (0.847393, -0.464825, 3), (3.483745, 1.871829, 3), (2.049492, 1.701703, 3),
]


def test_a_flat_conditional_mode_is_outside_the_laplace_approximation():
    """Where a group's mode curvature H falls below FLAT_MODE the Laplace value (once finite and up to ~10
    above the true likelihood) is no point; the fit says why it stopped, and AGQ still gives an answer."""
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit(reml=False)
        scaled = glmm_ext.GLMM.from_formula("y ~ x", df.assign(y=df.y * 1e-3), groups="g",
                                            family=make_family("gamma", "identity")).fit(nagq=5, reml=False)
    assert not res.converged and "Laplace approximation breaks down" in res.optsummary.message
    assert np.isfinite(res.llf) and np.all(np.isfinite(res.params))
    assert np.isfinite(scaled.llf) and not scaled.converged  # a node left the support: BFGS from the start


def test_a_flat_mode_of_a_random_slope_model_is_no_point():
    """The vector Laplace with Lambda = diag(s, 0) is the scalar one (to rounding), and the same flat modes
    are outside it; its mode solver takes the observed curvature where it is positive definite (with
    the working weights throughout it stopped after 60 steps, unconverged)."""
    from glmm_ext.engine._laplace import FLAT_MODE, MarginalLikelihood
    from glmm_ext.engine._laplace_vector import VectorData, VectorLaplace
    from glmm_ext.engine._lmm_vector import LambdaPattern

    df = pd.DataFrame(GAMMA_IDENTITY_FLAT, columns=["y", "x", "g"])
    model = glmm_ext.GLMM.from_formula("y ~ x", df, groups="g", family=make_family("gamma", "identity"))
    data = model.design.engine_data(scale_response=True)
    n = data.y.size
    X = np.asarray(data.X)
    vector = VectorData(y=data.y, X=X, Z=np.column_stack([np.ones(n), X[:, 1]]), offset=np.zeros(n), m=np.ones(n),
                        const=np.broadcast_to(data.const, (n,)).copy(), starts=data.starts, counts=data.counts)
    rejected = 0
    for s in [0.38, 0.4018, *np.linspace(0.40189, 0.401892, 9)]:
        scalar = MarginalLikelihood(model.dist, data)(np.array([2.00005833, 0.77036853, s, -0.31066923]))[0]
        objective = VectorLaplace(model.dist, vector, LambdaPattern(2, [[0], [1]]))
        value, _ = objective(np.array([2.00005833, 0.77036853, s, 0.0, -0.31066923]))
        assert value == pytest.approx(scalar, abs=1e-9) or (value == np.inf and scalar == np.inf)
        rejected += value == np.inf
        assert value == np.inf or np.linalg.eigvalsh(objective.last_modes.H)[:, 0].min() > FLAT_MODE
    assert rejected
