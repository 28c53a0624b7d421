"""The engine's start (private: no public face beyond "the fit converges to the same maximum"): the predictor
scaling of a model without an intercept, and the GLM start with its fallbacks, against statsmodels' GLM and
closed forms."""
import numpy as np
import pytest

import glmm_ext
from glmm_ext import make_family
from glmm_ext.engine import _glm, _glmm
from glmm_ext.formula._design import make_scaling


def test_no_intercept_scaling_is_rms():
    X = np.array([[1.0, 3.0], [2.0, -4.0], [2.0, 0.0]])
    scaling = make_scaling(X)
    assert scaling.intercept == -1
    assert np.allclose(scaling.center, 0.0)
    assert np.allclose(scaling.scale, [np.sqrt(3.0), np.sqrt(25.0 / 3.0)])
    assert np.allclose(scaling.matrix, np.diag(1.0 / scaling.scale))


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


@pytest.mark.parametrize("correlated", [True, False])
def test_gaussian_moment_start_of_a_vector_term_is_near_the_relative_sds(correlated):
    """Several terms with a (1 + x | g) or (1 + x || g) term: the start puts each column's moment estimate on
    Lambda_k's diagonal (the true relative SDs here, within sampling error), 0 off it; the search from there reaches
    the optimum of the search from lme4's identity start."""
    from glmm_ext.engine._mixed_lmm import GaussianProfile, minimize_bounded, moment_start, search_profile
    from glmm_ext.engine._structure import ReStructure, ReTerm

    rng = np.random.default_rng(3)
    n, ng, nh = 20000, 300, 40
    g, h = rng.integers(0, ng, n), rng.integers(0, nh, n)
    x = rng.normal(size=n)
    X = np.column_stack([np.ones(n), x])
    y = 1.0 + 0.5 * x + rng.normal(0, 0.8, ng)[g] + x * rng.normal(0, 0.4, ng)[g] + rng.normal(0, 0.5, nh)[h] \
        + rng.normal(size=n)
    S = ReStructure((ReTerm("g", g, ng, X.copy(), ("1", "x"), correlated), ReTerm("h", h, nh, X[:, :1], ("1",))))
    start = moment_start(S, y, X)
    lam = S.unpack(start)
    np.testing.assert_allclose(np.diag(lam[0]), [0.8, 0.4], rtol=0.2)
    assert lam[0][1, 0] == 0.0
    assert lam[1][0, 0] == pytest.approx(0.5, rel=0.3)
    prof = GaussianProfile(S, y, X, reml=False, condition=True)
    res = search_profile(prof, S, y, X)
    ref = minimize_bounded(prof, S.start_params(), S.lower_bounds(), tol=1e-9, fg=prof.value_and_grad)
    assert res.converged and res.f <= ref.f + 1e-8
