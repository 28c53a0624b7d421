"""Known truth is recovered for every family/link pair (within sampling error, over seeds)."""
import warnings

import numpy as np
import pytest

import glmm_ext
from glmm_ext import make_family

SETTINGS = {
    ("gaussian", "identity"): dict(beta=(1.0, 0.8, -0.5), sigma_u=0.7, scale=1.0),
    ("gaussian", "log"): dict(beta=(1.0, 0.3, -0.2), sigma_u=0.4, scale=0.25),
    ("binomial", "logit"): dict(beta=(0.2, 0.8, -0.5), sigma_u=0.8),
    ("binomial", "probit"): dict(beta=(0.1, 0.5, -0.3), sigma_u=0.5),
    ("poisson", "log"): dict(beta=(0.5, 0.4, -0.3), sigma_u=0.5, offset=True),
    ("poisson", "identity"): dict(beta=(10.0, 1.0, -1.0), sigma_u=1.0),
    ("gamma", "inverse"): dict(beta=(1.0, 0.1, -0.1), sigma_u=0.1, scale=0.2),
    ("gamma", "log"): dict(beta=(0.5, 0.3, -0.2), sigma_u=0.4, scale=0.3),
    ("gamma", "identity"): dict(beta=(5.0, 0.8, -0.6), sigma_u=0.7, scale=0.1),
}


def realized_sd(df, seed, sigma_u, n_groups):
    """SD of the group effects simulate() drew (its generator replayed; x1 proves the replay is in step)."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=len(df))
    rng.binomial(1, 0.5, size=len(df))
    assert np.array_equal(x1, df["x1"].to_numpy()), "simulate() draws in another order: update realized_sd"
    return float(np.std(rng.normal(0.0, sigma_u, size=n_groups)))


# sigma_hat / SD of the drawn effects, averaged over 3 seeds: within 5% (Gamma-inverse, whose small
# sigma_u = 0.1 is weakly identified against the dispersion: 10%)
RATIO_TOL = {("gamma", "inverse"): 0.10}


@pytest.mark.parametrize("family,link", list(SETTINGS))
def test_recovers_truth(family, link):
    z_beta, sigma_hat, ratio = [], [], []
    settings = SETTINGS[(family, link)]
    for seed in range(3):
        df = glmm_ext.simulate(family, link, n_groups=150, group_size=30, seed=seed, **settings)
        kw = {"offset": "logexp"} if settings.get("offset") else {}
        with warnings.catch_warnings():
            warnings.simplefilter("error", glmm_ext.SingularFitWarning)
            res = glmm_ext.GLMM.from_formula("y ~ x1 + x2", df, groups="g", family=make_family(family, link),
                                             **kw).fit()
        assert res.converged
        z_beta.append((np.asarray(res.params) - settings["beta"]) / np.asarray(res.bse))
        sigma_hat.append(res.sigma_re)
        ratio.append(res.sigma_re / realized_sd(df, seed, settings["sigma_u"], 150))
        if "scale" in settings and not (family == "gaussian" and link == "identity"):
            assert res.scale == pytest.approx(settings["scale"], rel=0.2)
    z_beta = np.array(z_beta)
    assert np.all(np.abs(z_beta) < 4.0), z_beta
    assert np.mean(sigma_hat) == pytest.approx(settings["sigma_u"], rel=0.15)
    assert np.mean(ratio) == pytest.approx(1.0, abs=RATIO_TOL.get((family, link), 0.05))


@pytest.mark.parametrize("family", ["binomial", "poisson"])
def test_agq_recovers_truth_with_small_groups(family):
    settings = SETTINGS[(family, "logit" if family == "binomial" else "log")]
    df = glmm_ext.simulate(family, n_groups=300, group_size=3, seed=7, trials=4 if family == "binomial" else None,
                           **{k: v for k, v in settings.items() if k != "offset"})
    formula = ("successes + failures" if family == "binomial" else "y") + " ~ x1 + x2"
    res = glmm_ext.GLMM.from_formula(formula, df, groups="g", family=make_family(family)).fit(nagq=15)
    assert np.all(np.abs((np.asarray(res.params) - settings["beta"]) / np.asarray(res.bse)) < 4)
    assert res.sigma_re == pytest.approx(settings["sigma_u"], rel=0.3)
