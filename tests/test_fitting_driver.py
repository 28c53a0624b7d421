"""The one fit driver (`engine._mixed.fit_mixed`) and its record (`engine._record.MixedFit`).

The one-factor specialisations the driver picks (the Woodbury profile, the scalar Laplace engine with its exact
Hessian, the block profile) are checked against the general PLS / Laplace engine on the same structure: two
independent numerical routes to one maximum.  The record's per-term parts are checked against its one-factor
views and the public results.
"""
import warnings

import numpy as np
import pandas as pd
import pytest

import glmm_ext
from glmm_ext import make_family
from glmm_ext._multiterm import engine_arguments
from glmm_ext.engine._mixed import fit_mixed


def grouped(n_groups=30, size=8, seed=3, family="gaussian"):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), size)
    x = rng.normal(size=g.size)
    u, s = rng.normal(0, 0.7, n_groups), rng.normal(0, 0.3, n_groups)
    eta = 0.4 + 0.5 * x + u[g] + s[g] * x
    y = eta + rng.normal(0, 1.0, g.size) if family == "gaussian" else rng.poisson(np.exp(0.3 * eta))
    order = rng.permutation(g.size)  # rows not sorted by group: the specialisations sort them
    return pd.DataFrame({"y": y, "x": x, "g": g})[["y", "x", "g"]].iloc[order].reset_index(drop=True)


def both_routes(formula, df, family=None, **options):
    """(the driver's fit with the one-factor precomputations, the general engine's fit) of one design."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = glmm_ext.GLMM.from_formula(formula, df, groups="g", family=family)
        args = engine_arguments(model.design)
        special = fit_mixed(**args, **options)
        args["prepared"] = None
        general = fit_mixed(**args, **options)
    return special, general


@pytest.mark.parametrize("formula,family,options", [
    ("y ~ x", None, {"reml": True}),
    ("y ~ x", None, {"reml": False}),
    ("y ~ x + (1 + x | g)", None, {"reml": True}),
    ("y ~ x + (x || g)", None, {"reml": False}),
    ("y ~ x", "poisson", {}),
], ids=["ri-reml", "ri-ml", "slope-reml", "diag-ml", "ri-poisson"])
def test_specialisations_reach_the_general_engines_maximum(formula, family, options):
    df = grouped(family="gaussian" if family is None else family)
    special, general = both_routes(formula, df, make_family(family) if family else None, **options)
    assert special.one_factor and not general.one_factor
    assert special.opt.method != general.opt.method  # two routes, not one
    assert special.llf == pytest.approx(general.llf, abs=1e-5)
    np.testing.assert_allclose(special.beta, general.beta, rtol=1e-3, atol=1e-4)
    for a, b in zip(special.cov_re, general.cov_re):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=1e-5)
    for a, b in zip(special.modes, general.modes):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=1e-4)
    assert special.scale == pytest.approx(general.scale, rel=1e-3)


def test_record_has_per_term_parts():
    df = grouped()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = glmm_ext.GLMM.from_formula("y ~ x + (1 + x | g)", df).fit()
    record = res._fit
    G = df.g.nunique()
    assert [m.shape for m in record.modes] == [(G, 2)]
    assert record.mode_cov[0].shape == (G, 2, 2)
    np.testing.assert_allclose(record.modes[0], res.blups)
    np.testing.assert_allclose(record.cov_re[0], res.cov_re.to_numpy())
    np.testing.assert_allclose(np.sqrt(np.diagonal(record.mode_cov[0], axis1=1, axis2=2)), record.mode_sd[0])
    for view in ("var_re", "blups", "blup_sd", "blup_cov", "q_total"):  # no single-factor views: lists only
        assert not hasattr(record, view)
    # the fitted linear predictor is X beta plus each row's z'b of its group (the results make it: a Gaussian
    # record keeps no n-sized eta)
    design = res.model.design
    eta = design.X @ record.beta + np.einsum("nq,nq->n", design.Z, record.modes[0][design.codes])
    assert record.eta is None and record.eta_fixed is None
    np.testing.assert_allclose(res.fittedvalues.to_numpy(), eta, atol=1e-10)
    assert record.groups == ["g"] and record.z_names == [list(design.re_names)]


def test_several_factors_run_on_the_general_engine_with_per_term_parts():
    df = grouped()
    df["h"] = (df.g * 7 + np.arange(len(df))) % 5  # a second factor crossed with g
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = glmm_ext.GLMM.from_formula("y ~ x + (1 | g) + (1 | h)", df).fit()
    record = res._fit
    assert res.is_multi and not record.one_factor
    assert record.groups == ["g", "h"] and [m.shape for m in record.modes] == [(30, 1), (5, 1)]
    assert record.opt.objective == pytest.approx(-res.llf)
