"""The model's likelihood API (``model.loglike``, ``cov_params_vector``, ``bse_re``) at a Gaussian fit's estimates
gives the fit's own llf and curvature: with prior weights, and for a response far from 0 (around 1e8), where
cross-products of the raw [X y] lose every digit of the residual sum of squares."""
import numpy as np
import pandas as pd
import pytest

import glmm_ext


def data(shift, seed=1):
    rng = np.random.default_rng(seed)
    n = 300
    g, h = np.repeat(np.arange(30), 10), np.tile(np.arange(12), 25)
    x = rng.normal(size=n)
    y = shift + 0.5 * x + rng.normal(0, 0.7, 30)[g] + rng.normal(0, 0.4, 12)[h] + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "g": g, "h": h, "v": rng.uniform(0.5, 2.0, n),
                         "f": 1.0 + np.arange(n) % 3})


WEIGHTS = [{}, {"var_weights": "v"}, {"freq_weights": "f"}]


@pytest.mark.parametrize("shift", [0.0, 1e8])
@pytest.mark.parametrize("weights", WEIGHTS, ids=["none", "var", "freq"])
def test_random_intercept_loglike_is_the_fits_llf(shift, weights):
    model = glmm_ext.GLMM.from_formula("y ~ x + (1|g)", data(shift), **weights)
    ml, reml = model.fit(reml=False), model.fit(reml=True)
    assert model.loglike(ml.params_vector.to_numpy()) == pytest.approx(ml.llf, abs=1e-6)
    beta = np.asarray(reml.params, float)[:2]
    assert model.loglike(beta, reml.var_re, reml.scale, reml=True) == pytest.approx(reml.llf, abs=1e-6)


@pytest.mark.parametrize("weights", WEIGHTS, ids=["none", "var", "freq"])
def test_variance_curvature_does_not_depend_on_the_response_location(weights):
    """cov_params_vector / bse_re of REML and ML fits: the same for y and y + 1e8 (before, REML's came from the raw
    cross-products and were ~1e-9 noise at 1e8; weighted ML raised)."""
    for reml in (True, False):
        near, far = (glmm_ext.GLMM.from_formula("y ~ x + (1|g)", data(s), **weights).fit(reml=reml) for s in (0, 1e8))
        np.testing.assert_allclose(far.cov_params_vector, near.cov_params_vector, rtol=2e-3)
        assert far.bse_re.iloc[0] == pytest.approx(near.bse_re.iloc[0], rel=2e-3)
        assert near.bse_re.iloc[0] > 0


@pytest.mark.parametrize("weights", WEIGHTS, ids=["none", "var", "freq"])
def test_crossed_loglike_far_from_zero_is_the_fits_llf(weights):
    model = glmm_ext.GLMM.from_formula("y ~ x + (1|g) + (1|h)", data(1e8), **weights)
    res = model.fit(reml=False)
    assert model.loglike(res.params_vector.to_numpy()) == pytest.approx(res.llf, abs=1e-6)
