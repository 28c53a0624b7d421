"""GLMM.from_formula on a Dask DataFrame: the same estimates, tables and row-level outputs as the in-memory fit,
on the session's one LocalCluster of two worker processes (conftest.dask_client; skipped when dask is not
installed)."""
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest

import glmm_ext

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client(dask_client):
    return dask_client  # the session's one LocalCluster (conftest.py)


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _both(df, formula, family=None, npartitions=3, fit=None, **model):
    """(in-memory fit, Dask fit) of the same model, both searched to tol = 1e-10: agreement then comes from the
    optimum, not from the two searches taking the same path (per-partition sums round differently).  `fit` is
    a dict of fit() options, or a list of them for several fits of the same two models."""
    fits = fit if isinstance(fit, list) else [fit or {}]
    memory = _quiet(glmm_ext.GLMM.from_formula, formula, df, groups="g", family=family, **model)
    ddf = dd.from_pandas(df, npartitions=npartitions)
    lazy = _quiet(glmm_ext.GLMM.from_formula, formula, ddf, groups="g", family=family, **model)
    out = [(_quiet(memory.fit, **dict(f, tol=1e-10)), _quiet(lazy.fit, **dict(f, tol=1e-10))) for f in fits]
    return out if isinstance(fit, list) else out[0]


def _tables(res):
    return {"random effects": res.random_effects_table(), "icc": res.icc_table(),
            "latent": res.latent_variance_table(), "fixed": res.fixed_effects_table(alpha=0.1),
            "fit": res.model_fit_table(), "blups": res.blup_table()}


def _assert_same_results(res, ref, rtol=1e-8, rtol_var=1e-8):
    """Estimates, BLUPs, every report table and the diagnostics row by row; `rtol_var` for what depends on the
    random-intercept variance (see test_gaussian_reml_and_ml)."""
    assert res.nobs == ref.nobs and res.n_groups == ref.n_groups and res.n_dropped == ref.n_dropped
    assert res.method == ref.method and res.converged == ref.converged and res.singular == ref.singular
    pd.testing.assert_series_equal(res.params, ref.params, check_exact=False, rtol=0, atol=1e-8)
    pd.testing.assert_series_equal(res.bse, ref.bse, check_exact=False, rtol=max(rtol_var, 1e-7))
    np.testing.assert_allclose([res.llf, res.scale, res.aic, res.bic], [ref.llf, ref.scale, ref.aic, ref.bic],
                               rtol=rtol)
    np.testing.assert_allclose(res.var_re, ref.var_re, rtol=rtol_var)
    pd.testing.assert_frame_equal(res.conf_int(0.1), ref.conf_int(0.1), check_exact=False, rtol=1e-7)
    pd.testing.assert_frame_equal(res.cov_params(), ref.cov_params(), check_exact=False, rtol=max(rtol_var, 1e-6))
    assert list(res.random_effects) == list(ref.random_effects)
    pd.testing.assert_series_equal(res.random_effects_se, ref.random_effects_se, check_exact=False, rtol=rtol_var)
    mine, theirs = _tables(res), _tables(ref)
    for name, table in theirs.items():
        if table is None:
            assert mine[name] is None, name
            continue
        if name == "fit":  # an object column (labels and numbers)
            assert list(mine[name].index) == list(table.index)
            np.testing.assert_allclose(mine[name]["Value"].to_numpy(float), table["Value"].to_numpy(float), rtol=rtol)
            continue
        pd.testing.assert_frame_equal(mine[name], table, check_exact=False, rtol=max(rtol_var, 1e-7), atol=1e-10,
                                      obj=name)
    assert str(res.summary(alpha=0.1)) == str(ref.summary(alpha=0.1))
    diag = res.diagnostics()
    assert isinstance(diag, dd.DataFrame)  # lazy: the rows are computed on the workers on request
    expected = ref.diagnostics()
    got = diag.compute()
    assert sorted(got.index) == sorted(expected.index)
    pd.testing.assert_frame_equal(got.loc[expected.index], expected, check_exact=False, rtol=1e-6,
                                  atol=max(rtol_var, 1e-8))


@pytest.fixture(scope="module")
def binary(client):
    """Binomial logit: missing values, text group labels, a categorical predictor with a rare level."""
    df = glmm_ext.simulate("binomial", "logit", n_groups=40, group_size=15, beta=(0.5, 0.8, -0.4), sigma_u=0.6,
                           seed=4)
    df.loc[[3, 50], "x1"] = np.nan  # listwise deletion as in memory
    df["g"] = "site" + df["g"].astype(str)
    df["c"] = np.where(df.index % 3 == 0, "b", "a")
    df.loc[df["g"] == "site7", "c"] = "z"  # a level in one group, so in one partition
    return df, _both(df, "y ~ x1 + x2 + C(c)", glmm_ext.make_family("binomial"))


def test_binomial_laplace(binary):
    _, (ref, res) = binary
    _assert_same_results(res, ref)
    assert "C(c)[T.z]" in res.params.index


@pytest.mark.parametrize("case", ["poisson exposure", "gamma agq", "successes + failures", "proportion weights",
                                  "negative binomial"])
def test_families_equal_the_in_memory_fit(client, case):
    if case == "poisson exposure":
        df = glmm_ext.simulate("poisson", "log", n_groups=30, group_size=12, sigma_u=0.5, offset=True, seed=5)
        df["t"] = np.exp(df["logexp"])
        df["g"] = df["g"].astype(float)  # whole numbers with missing labels: dropped, then read as integers
        df.loc[[5, 17], "g"] = np.nan
        df.loc[9, "x2"] = np.inf
        ref, res = _both(df, "y ~ x1 + x2", glmm_ext.make_family("poisson"), exposure="t")
        assert res.n_dropped == 3 and res.model.design.drop_reasons == ref.model.design.drop_reasons
    elif case == "negative binomial":  # scale 1 as statsmodels' NB GLM; alpha the estimate, as in memory
        df = glmm_ext.simulate("negativebinomial", n_groups=30, group_size=12, sigma_u=0.5, scale=0.5, seed=7)
        ref, res = _both(df, "y ~ x1 + x2", glmm_ext.make_family("negativebinomial"))
        assert res.scale == ref.scale == 1.0 and res.alpha == pytest.approx(ref.alpha, rel=1e-7)
        assert res.overdispersion()["chisq"] == pytest.approx(ref.overdispersion()["chisq"], rel=1e-7)
    elif case == "gamma agq":
        df = glmm_ext.simulate("gamma", "log", n_groups=30, group_size=12, sigma_u=0.6, scale=0.5, seed=4)
        ref, res = _both(df, "y ~ x1 + x2", glmm_ext.make_family("gamma", "log"), fit={"nagq": 3})
    else:
        df = glmm_ext.simulate("binomial", "logit", n_groups=30, group_size=10, sigma_u=0.6, trials=6, seed=6)
        if case == "successes + failures":
            ref, res = _both(df, "successes + failures ~ x1 + x2", glmm_ext.make_family("binomial"))
        else:
            df["n"] = df["successes"] + df["failures"]
            df["p"] = df["successes"] / df["n"]
            ref, res = _both(df, "p ~ x1 + x2", glmm_ext.make_family("binomial"), weights="n")
    _assert_same_results(res, ref)


def test_many_groups_start_from_a_pilot_on_one_partition(client):
    """Above PILOT_ABOVE_GROUPS groups the Dask fit starts from the engine's pilot fit run on one partition's
    worker (as in memory on a subset of the groups): the same optimum, the probes screened by that pilot, and
    the AGQ check estimated from groups of every partition."""
    from glmm_ext.engine import _glmm

    df = glmm_ext.simulate("poisson", "log", n_groups=_glmm.PILOT_ABOVE_GROUPS + 300, group_size=3, sigma_u=0.6,
                           seed=12)
    ref, res = _both(df, "y ~ x1 + x2", glmm_ext.make_family("poisson"), npartitions=4)
    np.testing.assert_allclose(res.fe_params, ref.fe_params, rtol=0, atol=1e-8)
    np.testing.assert_allclose([res.llf, res.var_re], [ref.llf, ref.var_re], rtol=1e-9)
    np.testing.assert_allclose(res.bse_fe, ref.bse_fe, rtol=1e-7)
    profile = res.optsummary.sigma_profile
    assert res.converged and any(profile["screened"])
    assert 0 < profile["agq9_gap_groups"] <= res.n_groups
    for screened, estimate in zip(profile["screened"], profile["profile_llf"]):
        assert (estimate < res.llf - 10.0) if screened else np.isnan(estimate)


def test_a_flat_conditional_mode_is_explained_as_in_memory(client):
    """The Gamma-identity data whose Laplace search stops at a flat mode (test_fitting_paths): the Dask fit says why."""
    from conftest import GAMMA_IDENTITY_FLAT

    df = pd.DataFrame(GAMMA_IDENTITY_FLAT, columns=["y", "x", "g"])
    family = glmm_ext.make_family("gamma", "identity")
    memory = _quiet(glmm_ext.GLMM.from_formula("y ~ x", df, groups="g", family=family).fit, reml=False)
    lazy = glmm_ext.GLMM.from_formula("y ~ x", dd.from_pandas(df, npartitions=2), groups="g", family=family)
    res = _quiet(lazy.fit, reml=False)
    assert not memory.converged and not res.converged
    for fit in (memory, res):
        assert fit.optsummary.message.startswith("the Laplace approximation breaks down: 1 group(s)")


def test_gaussian_reml_and_ml(client):
    """Exact REML (default) and ML, with and without var_weights: the profile's theta is pinned by the root of
    the criterion's analytic slope (not only by its value, flat to rounding over ~1e-7), so every number
    equals the in-memory fit's to 1e-8."""
    df = glmm_ext.simulate("gaussian", "identity", n_groups=40, group_size=15, sigma_u=0.6, scale=0.5, seed=4)
    df.loc[[3, 50], "x2"] = np.nan
    for reml, (ref, res) in zip((True, False), _both(df, "y ~ x1 + x2", fit=[{"reml": True}, {"reml": False}])):
        assert res.method == ("REML" if reml else "ML")
        _assert_same_results(res, ref)
    df["v"] = np.random.default_rng(0).uniform(0.5, 2.0, len(df))  # statsmodels GLM's var_weights
    ref, res = _both(df, "y ~ x1 + x2", var_weights="v", fit={"reml": False})
    np.testing.assert_allclose([res.llf, res.var_re, res.scale], [ref.llf, ref.var_re, ref.scale], rtol=1e-8)


def test_offset_and_prior_weights(client):
    """offset, var_weights and freq_weights as column names, with statsmodels GLM's meaning (as in memory)."""
    df = glmm_ext.simulate("poisson", "log", n_groups=30, group_size=10, sigma_u=0.5, offset=True, seed=7)
    rng = np.random.default_rng(0)
    df["v"], df["f"] = rng.uniform(0.5, 2.0, len(df)), rng.integers(1, 4, len(df)).astype(float)
    ref, res = _both(df, "y ~ x1 + x2", glmm_ext.make_family("poisson"), offset="logexp", var_weights="v",
                     freq_weights="f")
    assert res.nobs == ref.nobs == df["f"].sum()
    _assert_same_results(res, ref)
    for name, value in ref.overdispersion().items():  # row i counted f_i times in chi2, as in df
        assert res.overdispersion()[name] == pytest.approx(value, rel=1e-7), name


def test_results_api(binary):
    df, (ref, res) = binary
    for name in ("params", "fe_params", "bse", "bse_fe", "tvalues", "pvalues"):
        pd.testing.assert_series_equal(getattr(res, name), getattr(ref, name), check_exact=False, rtol=1e-6)
    for name in ("cov_re", "cov_re_unscaled"):
        pd.testing.assert_frame_equal(getattr(res, name), getattr(ref, name), check_exact=False, rtol=1e-7)
    assert res.icc == pytest.approx(ref.icc, rel=1e-8) and res.deff == pytest.approx(ref.deff, rel=1e-8)
    assert res.sigma_re == pytest.approx(ref.sigma_re, rel=1e-8) and res.k_params == ref.k_params
    assert res.llf_label == ref.llf_label and res.optsummary.converged
    assert res.t_test("x1 = 0").pvalue == pytest.approx(ref.t_test("x1 = 0").pvalue, rel=1e-6)
    for label, cov in ref.random_effects_cov.items():
        np.testing.assert_allclose(res.random_effects_cov[label], cov, rtol=1e-7)
    # row-level outputs: lazy Dask collections, equal to the in-memory ones row by row
    for name in ("fittedvalues", "resid"):
        lazy = getattr(res, name)
        assert isinstance(lazy, dd.Series)
        pd.testing.assert_series_equal(lazy.compute().loc[ref.model.design.index], getattr(ref, name),
                                       check_exact=False, rtol=1e-6, atol=1e-9)
    fitted = res.predict().compute()
    np.testing.assert_allclose(fitted.loc[ref.fittedvalues.index], ref.fittedvalues, rtol=1e-6)
    new = df.iloc[[0, 1, 3, 40, 200]].copy()
    new.loc[new.index[-1], "g"] = "unseen"
    for groups in (None, "g"):
        expected = _quiet(ref.predict, new, groups=groups)
        pd.testing.assert_series_equal(_quiet(res.predict, new, groups=groups), expected, check_exact=False,
                                       rtol=1e-6)
        lazy = res.predict(dd.from_pandas(new, npartitions=2), groups=groups, which="linear")
        pd.testing.assert_series_equal(lazy.compute(), _quiet(ref.predict, new, groups=groups, which="linear"),
                                       check_exact=False, rtol=1e-6, atol=1e-9)
    pd.testing.assert_frame_equal(res.get_prediction(new).summary_frame(0.1),
                                  ref.get_prediction(new).summary_frame(0.1), check_exact=False, rtol=1e-6)
    for name, value in ref.overdispersion().items():
        assert res.overdispersion()[name] == pytest.approx(value, rel=1e-7), name
    for name, value in ref.r2().items():
        assert res.r2()[name] == pytest.approx(value, rel=1e-7) if not isinstance(value, str) else \
            res.r2()[name] == value


def test_what_needs_the_rows_in_memory_is_a_clear_error(binary):
    _, (ref, res) = binary
    calls = {"conf_int(method='profile')": lambda: res.conf_int(method="profile"),
             "conf_int(method='boot')": lambda: res.conf_int(method="boot"),
             "conf_int(method='wald')": lambda: res.conf_int(method="wald"),
             "simulate()": res.simulate, "quantile_residuals()": res.quantile_residuals,
             "test_random_effect()": res.test_random_effect, "bse_re": lambda: res.bse_re,
             "plot_diagnostics()": res.plot_diagnostics, "wald_test_terms()": res.wald_test_terms,
             "get_prediction() for the fitted rows": res.get_prediction, "anova()": lambda: glmm_ext.anova(res, res),
             "loglike()": lambda: res.model.loglike(res.params_vector)}
    for name, call in calls.items():
        with pytest.raises(NotImplementedError, match="not available for a Dask") as info:
            call()
        assert str(info.value).startswith(name), (name, str(info.value))
    with pytest.raises(ValueError, match="method must be"):
        res.conf_int(method="nope")
    # every attribute of an in-memory fit exists on a Dask fit, or says why not (never an AttributeError)
    for name in (n for n in dir(ref) if not n.startswith("_")):
        try:
            getattr(res, name)
        except NotImplementedError as exc:
            assert "Dask" in str(exc), name


def test_pickle_and_remove_data(client):
    df = glmm_ext.simulate("poisson", "log", n_groups=20, group_size=8, sigma_u=0.5, seed=9)
    ddf = dd.from_pandas(df, npartitions=8)
    res = _quiet(glmm_ext.GLMM.from_formula("y ~ x1 + x2", ddf, groups="g", family=glmm_ext.make_family("poisson")).fit)
    assert len(res.model._prepared["arrays"]) < ddf.npartitions  # the shuffle left a partition without groups
    text = str(res.summary())
    back = pickle.loads(pickle.dumps(res))  # estimates and tables without the cluster
    assert str(back.summary()) == text
    pd.testing.assert_series_equal(back.params, res.params)
    res.remove_data()  # frees the rows on the cluster
    assert str(res.summary()) == text
    for released in (res, back):
        with pytest.raises(ValueError, match="released"):
            released.diagnostics()


def test_bad_input_is_a_clear_error(client):
    df = pd.DataFrame({"y": [0.0, 1.0, 2.0, 1.0] * 10, "x1": np.arange(40.0), "g": np.repeat(np.arange(8), 5)})
    ddf = dd.from_pandas(df, npartitions=2)
    poisson = glmm_ext.make_family("poisson")
    with pytest.raises(ValueError, match="must be 0 or 1"):
        glmm_ext.GLMM.from_formula("y ~ x1", ddf, groups="g", family=glmm_ext.make_family("binomial")).fit()
    with pytest.raises(ValueError, match="offset: on a Dask DataFrame give the name of one of its columns"):
        glmm_ext.GLMM.from_formula("y ~ x1", ddf, groups="g", family=poisson, offset=df["x1"])
    with pytest.raises(ValueError, match="exposure column 'nope' is not in the data"):
        glmm_ext.GLMM.from_formula("y ~ x1", ddf, groups="g", family=poisson, exposure="nope")
    with pytest.raises(ValueError, match="exposure needs a log link"):
        glmm_ext.GLMM.from_formula("y ~ x1", ddf, groups="g", family=glmm_ext.make_family("poisson", "identity"),
                                   exposure="x1")
    with pytest.raises(ValueError, match="weights are the Binomial number of trials"):
        glmm_ext.GLMM.from_formula("y ~ x1", ddf, groups="g", family=poisson, weights="x1")
    with pytest.raises(ValueError, match="groups must name"):
        glmm_ext.GLMM.from_formula("y ~ x1", ddf, groups="nope", family=poisson)
    with pytest.raises(ValueError, match="random slopes"):
        glmm_ext.GLMM.from_formula("y ~ x1 + (x1 | g)", ddf, groups="g", family=poisson)
    with pytest.raises(ValueError, match="subset"):
        glmm_ext.GLMM.from_formula("y ~ x1", ddf, groups="g", family=poisson, subset=[1, 2])
    with pytest.raises(ValueError, match="center"):
        glmm_ext.GLMM.from_formula("y ~ center(x1)", ddf, groups="g", family=poisson)
    with pytest.raises(ValueError, match="collinear"):
        glmm_ext.GLMM.from_formula("y ~ x1 + I(2 * x1)", ddf, groups="g", family=poisson).fit()
    with pytest.raises(ValueError, match="nagq=0"):
        glmm_ext.GLMM.from_formula("y ~ x1", ddf, groups="g", family=poisson).fit(nagq=0)


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
