"""GLMM.from_formula on a Dask DataFrame: the same estimates as the in-memory fit, on a LocalCluster of two
worker processes (one cluster for the module; skipped when dask is not installed)."""
import warnings

import numpy as np
import pandas as pd
import pytest

import glmm_ext

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as c:
        yield c


def _in_memory(df, family, **fit):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return glmm_ext.GLMM.from_formula("y ~ x1 + x2", df, groups="g", family=family).fit(**fit)


@pytest.mark.parametrize("family,link,nagq", [("binomial", "logit", 1), ("gamma", "log", 3)])
def test_estimates_equal_the_in_memory_fit(client, family, link, nagq):
    df = glmm_ext.simulate(family, link, n_groups=40, group_size=15, beta=(0.5, 0.8, -0.4), sigma_u=0.6,
                           scale=0.5, seed=4)
    df.loc[[3, 50], "x1"] = np.nan  # listwise deletion as in memory
    df["g"] = "site" + df["g"].astype(str)
    fam = glmm_ext.make_family(family, link)
    # both searches run to tol = 1e-10, so agreement to 1e-8 comes from the optimum itself, not from the two
    # searches taking the same path (per-partition sums round differently from whole-data sums)
    ref = _in_memory(df, fam, nagq=nagq, tol=1e-10)
    model = glmm_ext.GLMM.from_formula("y ~ x1 + x2", dd.from_pandas(df, npartitions=3), groups="g", family=fam)
    res = model.fit(nagq=nagq, tol=1e-10)
    assert res.nobs == ref.nobs and res.n_groups == ref.n_groups
    np.testing.assert_allclose(res.fe_params, ref.fe_params, rtol=0, atol=1e-8)
    np.testing.assert_allclose(res.bse_fe, ref.bse_fe, rtol=1e-7)
    np.testing.assert_allclose([res.llf, res.var_re, res.scale], [ref.llf, ref.var_re, ref.scale], rtol=1e-9)
    np.testing.assert_allclose(res.pvalues, ref.pvalues[ref.fe_params.index], rtol=1e-6)
    assert res.converged and list(res.fe_params.index) == list(ref.fe_params.index)
    blups = res.random_effects
    assert sorted(blups) == sorted(ref.random_effects)
    for label, value in ref.random_effects.items():
        assert abs(blups[label].iloc[0] - value.iloc[0]) < 1e-7
    np.testing.assert_allclose(res.aic, ref.aic, rtol=1e-9)
    assert "rows" in res.summary()


def test_bad_input_is_a_clear_error(client):
    df = pd.DataFrame({"y": [0.0, 1.0, 2.0, 1.0] * 10, "x1": np.arange(40.0), "g": np.repeat(np.arange(8), 5)})
    ddf = dd.from_pandas(df, npartitions=2)
    with pytest.raises(ValueError, match="must be 0 or 1"):
        glmm_ext.GLMM.from_formula("y ~ x1", ddf, groups="g", family=glmm_ext.make_family("binomial")).fit()
    with pytest.raises(ValueError, match="offset: not supported with a Dask DataFrame"):
        glmm_ext.GLMM.from_formula("y ~ x1", ddf, groups="g", family=glmm_ext.make_family("poisson"), offset="x1")
    with pytest.raises(ValueError, match="groups must name"):
        glmm_ext.GLMM.from_formula("y ~ x1", ddf, groups="nope", family=glmm_ext.make_family("poisson"))


def test_fit_many_on_the_cluster(client):
    rng = np.random.default_rng(8)
    n, G = 400, 20
    g = np.repeat(np.arange(G), n // G)
    df = pd.DataFrame({"x1": rng.normal(size=n), "g": g})
    for j in range(3):
        df[f"r{j}"] = rng.poisson(np.exp(0.3 + 0.2 * df["x1"] + rng.normal(0, 0.5, G)[g])).astype(float)
    family = glmm_ext.make_family("poisson")
    local = glmm_ext.fit_many(df, ["r0", "r1", "r2"], "~ x1", groups="g", family=family)
    remote = glmm_ext.fit_many(df, ["r0", "r1", "r2"], "~ x1", groups="g", family=family, client=client)
    pd.testing.assert_frame_equal(local, remote)
