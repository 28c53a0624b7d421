"""Likelihood inference with var_weights / freq_weights beyond one random intercept (random slopes, several
terms): ``model.loglike`` / ``score`` over ``res.params_vector``, ``bse_re``, Wald and profile intervals.

Independent checks: the weighted model's log-likelihood at any vector equals the one of the data with each
row repeated f times (integer freq_weights), which is fitted and evaluated without weights; at the estimate
it is the fit's llf; Gaussian var_weights against the dense n x n likelihood and lme4's lmer(weights=) logLik
(tests/data/weights/reference.json).  Intervals and standard errors with freq_weights equal those of the
repeated rows.
"""
import json
import os
import warnings

import numpy as np
import pandas as pd
import pytest

import glmm_ext
from glmm_ext import make_family

import dense_reference as dr
import test_fitting_weights_terms as base

DATA = os.path.join(os.path.dirname(__file__), "data")
FORMULAS = {"slopes": "{y} ~ x + (1 + x | g)", "crossed": "{y} ~ x + (1 | g) + (1 | a)"}
FAMILIES = [("gaussian", None), ("gaussian", "log"), ("binomial", None), ("poisson", None), ("gamma", "log"),
            ("negativebinomial", None)]
IDS = ["gaussian", "gaussian-log", "binomial-trials", "poisson", "gamma", "nb2"]


def model(formula, d, family, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return glmm_ext.GLMM.from_formula(formula, d, family=family, **kw)


def weights(d):
    rng = np.random.default_rng(5)
    return rng.uniform(0.5, 2.0, size=len(d)), rng.integers(1, 4, size=len(d)).astype(float)


def case(family, link, structure, **data_kw):
    d = base.data(family, link, **data_kw)
    y = "y + fails" if family == "binomial" else "y"  # several trials per row: the Binomial constant matters
    return d, FORMULAS[structure].format(y=y), make_family(family, link)


@pytest.mark.parametrize("kind", ["var_weights", "freq_weights"])
@pytest.mark.parametrize("structure", list(FORMULAS))
@pytest.mark.parametrize("family,link", FAMILIES, ids=IDS)
def test_loglike_at_the_estimate_is_the_llf(family, link, structure, kind):
    """model.loglike(res.params_vector) is res.llf (an ML or Laplace fit) for every family and weights."""
    d, form, fam = case(family, link, structure)
    v, f = weights(d)
    res = base.fit(form, d, fam, fit_kw={"reml": False}, **{kind: v if kind == "var_weights" else f})
    assert res.model.loglike(res.params_vector) == pytest.approx(res.llf, abs=1e-8)


@pytest.mark.parametrize("structure", list(FORMULAS))
@pytest.mark.parametrize("family,link", FAMILIES, ids=IDS)
def test_loglike_and_score_equal_the_repeated_rows_anywhere(family, link, structure):
    """With var_weights v and integer freq_weights f, loglike and score at a vector away from any estimate equal
    those of the data with each row repeated f times (var_weights v repeated with it, no freq_weights)."""
    d, form, fam = case(family, link, structure, n_groups=10, size=6)
    v, f = weights(d)
    weighted = model(form, d, fam, var_weights=v, freq_weights=f)
    rows = d.index.repeat(f.astype(int))
    repeated = model(form, d.loc[rows].reset_index(drop=True), fam, var_weights=v[rows])
    names = weighted.param_names
    assert names == repeated.param_names
    x = np.array([0.1 if n in ("Intercept", "x") else 0.2 if " Cor " in n else -0.3 if n.startswith("log") else 0.6
                  for n in names])
    assert weighted.loglike(x) == pytest.approx(repeated.loglike(x), abs=1e-8)
    assert np.isfinite(weighted.loglike(x))
    np.testing.assert_allclose(weighted.score(x), repeated.score(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("structure", list(FORMULAS))
def test_gaussian_var_weights_loglike_is_the_dense_likelihood(structure):
    """A REML fit: loglike (ML) at its estimates is the dense weighted ML likelihood there, and the REML criterion
    is its llf; lme4's weights: residual variance sigma^2 / v."""
    d, form, _ = case("gaussian", None, structure)
    v, _ = weights(d)
    res = base.fit(form, d, None, var_weights=v)
    X = np.column_stack([np.ones(len(d)), d["x"]])
    designs = [dr.term_design(d, ["g"], ["1", "x"])] if structure == "slopes" else \
        [dr.term_design(d, ["g"], ["1"]), dr.term_design(d, ["a"], ["1"])]
    cov = res.cov_re
    covs = [np.asarray(cov, float)] if structure == "slopes" else [np.asarray(cov[k], float) for k in ("g", "a")]
    y, beta = d["y"].to_numpy(), np.asarray(res.fe_params)
    ml = dr.gaussian_loglik(y, X, beta, designs, covs, res.scale, reml=False, weights=v)
    assert res.model.loglike(res.params_vector) == pytest.approx(ml, abs=1e-8)
    assert res.llf == pytest.approx(dr.gaussian_loglik(y, X, beta, designs, covs, res.scale, reml=True, weights=v),
                                    abs=1e-6)
    # a constant factor on the weights is a change of the dispersion's units: the REML curvature behind bse_re
    # (beta profiled out) is the same
    scaled = base.fit(form, d, None, var_weights=4.0 * v)
    np.testing.assert_allclose(_flat(scaled.bse_re), _flat(res.bse_re), rtol=1e-4)
    assert np.all(np.isfinite(_flat(res.bse_re)))


@pytest.mark.parametrize("key,formula", [("sleep_slope_ml", "Reaction ~ Days + (Days | Subject)"),
                                         ("penicillin_ml", "diameter ~ 1 + (1 | plate) + (1 | sample)")])
def test_loglike_is_lmers_weighted_loglik(key, formula):
    """lmer(weights=w, REML=FALSE)'s logLik is model.loglike at the fit's params_vector (lme4 1.1-31)."""
    with open(os.path.join(DATA, "weights", "reference.json")) as fh:
        ref = json.load(fh)[key]
    if key.startswith("sleep"):
        d = pd.read_csv(os.path.join(DATA, "sleepstudy.csv")).assign(w=lambda t: 1.0 + t["Days"] % 3)
    else:
        d = pd.read_csv(os.path.join(DATA, "multiterm", "penicillin.csv"))
        plate, sample = pd.factorize(d["plate"], sort=True)[0] + 1, pd.factorize(d["sample"], sort=True)[0] + 1
        d = d.assign(w=1.0 + (plate + sample) % 3)
    res = model(formula, d, None, var_weights="w").fit(reml=False)
    assert res.model.loglike(res.params_vector) == pytest.approx(ref["loglik"], abs=1e-6)


def _intervals_pair(family, link, structure, reml=True, **data_kw):
    d, form, fam = case(family, link, structure, **data_kw)
    _, f = weights(d)
    weighted = base.fit(form, d, fam, freq_weights=f, fit_kw={"reml": reml})
    repeated = base.fit(form, d.loc[d.index.repeat(f.astype(int))].reset_index(drop=True), fam, fit_kw={"reml": reml})
    return weighted, repeated


def _flat(bse):
    return np.concatenate([np.atleast_1d(np.asarray(s, float)) for s in bse.values()]) if isinstance(bse, dict) \
        else np.asarray(bse, float)


@pytest.mark.parametrize("family,link,structure,atol", [("gaussian", None, "slopes", 1e-6),
                                                        ("gamma", "log", "crossed", 2e-4)])
def test_profile_intervals_with_freq_weights_equal_the_repeated_rows(family, link, structure, atol):
    """Gaussian: beta profiled exactly, the ends agree to 1e-6.  Laplace: the profiled likelihoods agree to
    1e-12, but the end search stops within ~1e-3 of zeta's target (`_intervals.profile_ends`), from starts ~1e-6
    apart: the ends agree to ~1e-4."""
    weighted, repeated = _intervals_pair(family, link, structure, n_groups=8, size=6)
    a, b = weighted.conf_int(method="profile"), repeated.conf_int(method="profile")
    assert list(a.index) == list(b.index)
    assert np.all(np.isfinite(a.to_numpy()[:, 0]))
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), atol=atol)


@pytest.mark.parametrize("family,link,structure", [("gaussian", None, "crossed"), ("gamma", "log", "slopes"),
                                                   ("negativebinomial", None, "crossed")])
def test_bse_re_and_wald_intervals_with_freq_weights_equal_the_repeated_rows(family, link, structure):
    """Equal to the estimates' agreement (the two searches stop ~1e-6 apart) over difference curvatures."""
    weighted, repeated = _intervals_pair(family, link, structure)
    se = _flat(weighted.bse_re)
    assert np.all(np.isfinite(se) & (se > 0))
    np.testing.assert_allclose(se, _flat(repeated.bse_re), rtol=1e-4)
    np.testing.assert_allclose(weighted.conf_int(method="wald").to_numpy(),
                               repeated.conf_int(method="wald").to_numpy(), rtol=1e-4, atol=1e-6)
