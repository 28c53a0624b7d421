"""Parametric-bootstrap refits: a replicate the package's own fit would not accept is a failed
replicate (counted in ``attrs["n_failed"]``, left out of the percentiles), as lme4's bootMer reports.

The refit's verdict is compared, response by response, with what ``GLMM(...).fit()`` itself says
of the same data: a ValueError or ``converged=False`` there is a NaN row here; otherwise the same
estimates.
"""
import warnings

import numpy as np
import pandas as pd
import pytest

import glmm_ext
from glmm_ext.inference import _bootstrap


def rare_events():
    """3 events in 200 rows, 20 groups of 10."""
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(20), 10)
    x = rng.normal(size=200)
    y = np.zeros(200)
    y[[3, 50, 120]] = 1.0
    return pd.DataFrame({"y": y, "x": x, "g": g})


def counts(seed=2):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(25), 12)
    x = rng.normal(size=g.size)
    u = rng.normal(0, 0.5, 25)[g]
    return pd.DataFrame({"y": rng.poisson(np.exp(0.5 + 0.4 * x + u)).astype(float), "x": x, "g": g})


def fit(data, formula, family, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return glmm_ext.GLMM.from_formula(formula, data, family=family, **kw).fit()


def replicate(res, y):
    options = {"reml": True, "maxiter": 100, "tol": 1e-6, "nagq": 1}
    options.update(_bootstrap.fit_options(res))
    return _bootstrap.refit(res.model.design, options, np.asarray(y, float), _bootstrap.warm_start(res), res._terms)


def own_verdict(data, formula, family, y, **kw):
    """The package's fit of the same response: None when refused or not converged, else the estimates row."""
    try:
        res = fit(data.assign(y=y), formula, family, **kw)
    except ValueError:
        return None
    if not res.converged:
        return None
    return np.asarray(res.params, float)


CASES = [
    # (name, data, formula, family, kwargs, response, expected to fail)
    ("binomial all 0", rare_events, "y ~ x", "binomial", {"groups": "g"}, lambda d: np.zeros(len(d)), True),
    ("binomial all 1", rare_events, "y ~ x", "binomial", {"groups": "g"}, lambda d: np.ones(len(d)), True),
    ("binomial separated by x", rare_events, "y ~ x", "binomial", {"groups": "g"},
     lambda d: (d["x"] > d["x"].quantile(0.9)).astype(float), True),
    ("binomial quasi-separated", rare_events, "y ~ x", "binomial", {"groups": "g"},
     lambda d: (d["x"] >= d["x"].max()).astype(float), True),
    ("binomial with events", rare_events, "y ~ x", "binomial", {"groups": "g"},
     lambda d: (np.arange(len(d)) % 7 == 0).astype(float), False),
    ("poisson all 0", counts, "y ~ x", "poisson", {"groups": "g"}, lambda d: np.zeros(len(d)), True),
    ("poisson counts", counts, "y ~ x", "poisson", {"groups": "g"}, lambda d: d["y"].to_numpy()[::-1], False),
    ("nb2 all 0", counts, "y ~ x", "negativebinomial", {"groups": "g"}, lambda d: np.zeros(len(d)), True),
    ("poisson slopes all 0", counts, "y ~ x + (x | g)", "poisson", {}, lambda d: np.zeros(len(d)), True),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_a_replicate_fails_exactly_when_the_package_fit_would(case):
    _, make, formula, family, kw, response, should_fail = case
    data = make()
    res = fit(data, formula, family, **kw)
    y = np.asarray(response(data), float)
    row = replicate(res, y)
    verdict = own_verdict(data, formula, family, y, **kw)
    assert (verdict is None) == should_fail
    if should_fail:
        assert np.isnan(row).all()
    else:
        assert np.isfinite(row).all()
        np.testing.assert_allclose(row[:len(verdict)], verdict, atol=2e-3, rtol=1e-3)


def test_rare_event_bootstrap_leaves_out_replicates_without_an_estimate():
    res = fit(rare_events(), "y ~ x", "binomial", groups="g")
    assert res.params["Intercept"] == pytest.approx(-4.2, abs=0.05)
    with pytest.warns(UserWarning, match=r"bootstrap refits failed"):
        ci = res.conf_int(method="boot", nsim=120, seed=1)
    # draws with no event (about (1 - 3/200)^200 = 5% of them) and divergent refits are failures
    assert ci.attrs["n_failed"] >= 3
    lower, upper = ci.loc["Intercept"]
    # before: replicates without an event (intercept -17 to -340) stretched the lower end to about -20
    assert -12.0 < lower < res.params["Intercept"] < upper < -3.0
    samples = _bootstrap.bootstrap_samples(res, nsim=120, seed=1)
    assert samples.isna().any(axis=1).sum() == ci.attrs["n_failed"]
    assert np.nanmin(samples["Intercept"]) > -150  # no refit that drifted along the flat ridge


def test_no_failure_no_warning():
    res = fit(counts(), "y ~ x", "poisson", groups="g")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        ci = res.conf_int(method="boot", nsim=20, seed=3)
    assert ci.attrs["n_failed"] == 0
    assert (ci["lower"] < ci["upper"]).all()
