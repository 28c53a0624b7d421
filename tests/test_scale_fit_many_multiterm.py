"""fit_many with several random-effect terms (crossed / nested factors): every response's numbers equal its
single fit GLMM.from_formula(f"{response} ~ {rhs}", data).fit() (the speed is measured in
benchmarks/bench_many_multiterm.py, not asserted here)."""
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import glmm_ext


def crossed(n=240, n_resp=3, seed=5, poisson=False):
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 12, n), rng.integers(0, 8, n)
    df = pd.DataFrame({"a": [f"a{i}" for i in a], "b": [f"b{i}" for i in b], "x": rng.normal(size=n)})
    for j in range(n_resp):
        eta = 0.3 + 0.4 * df["x"].to_numpy() + rng.normal(0, 0.7, 12)[a] + rng.normal(0, 0.5, 8)[b]
        df[f"y{j}"] = rng.poisson(np.exp(eta)) if poisson else eta + rng.normal(size=n)
    return df


def single(df, name, rhs, **kwargs):
    family = kwargs.pop("family", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return glmm_ext.GLMM.from_formula(f"{name} {rhs}", df, family=family).fit(**kwargs)


def check_equal(table, df, names, rhs, rtol=1e-6, **kwargs):
    for name in names:
        rows = table[table["response"] == name]
        res = single(df, name, rhs, **kwargs)
        assert list(rows["term"]) == list(res.model.exog_names)
        np.testing.assert_allclose(rows["estimate"], res.params, rtol=rtol, atol=1e-8)
        np.testing.assert_allclose(rows["std_err"], res.bse, rtol=1e-5)
        np.testing.assert_allclose(rows["llf"], res.llf, rtol=1e-9)
        for key, cov in res.cov_re.items():
            np.testing.assert_allclose(rows[f"var_re[{key}]"], cov.iloc[0, 0], rtol=rtol, atol=1e-8)
        assert rows["converged"].all()


@pytest.mark.parametrize("reml", [True, False])
def test_gaussian_crossed_equals_single_fits(reml):
    df = crossed()
    names = ["y0", "y1", "y2"]
    table = glmm_ext.fit_many(df, names, "~ x + (1|a) + (1|b)", n_jobs=1, reml=reml)
    assert [c for c in table.columns if c.startswith("var_re")] == ["var_re[a]", "var_re[b]"]
    assert len(table) == 6
    check_equal(table, df, names, "~ x + (1|a) + (1|b)", reml=reml)


def test_nested_terms_are_named_as_lme4():
    df = crossed(n_resp=2)
    table = glmm_ext.fit_many(df, ["y0", "y1"], "~ x + (1|a/b)", n_jobs=1)
    assert [c for c in table.columns if c.startswith("var_re")] == ["var_re[a]", "var_re[b:a]"]
    check_equal(table, df, ["y0", "y1"], "~ x + (1|a/b)")


def test_slope_term_has_a_column_per_z_column():
    df = crossed(n_resp=1)
    table = glmm_ext.fit_many(df, ["y0"], "~ x + (x|a) + (1|b)", n_jobs=1)
    res = single(df, "y0", "~ x + (x|a) + (1|b)")
    cov = res.cov_re["a"].to_numpy()
    # a correlated term's parameters are searched with difference gradients: the two searches (shared
    # cross-products vs the single fit's own) may stop ~1e-6 apart on a likelihood flat to 1e-11 there
    assert table["llf"].iloc[0] == pytest.approx(res.llf, abs=1e-8)
    np.testing.assert_allclose(table["var_re[a:Intercept]"].iloc[0], cov[0, 0], rtol=1e-5)
    np.testing.assert_allclose(table["var_re[a:x]"].iloc[0], cov[1, 1], rtol=1e-5)
    np.testing.assert_allclose(table["estimate"], res.params, rtol=1e-6)


def test_poisson_crossed_equals_single_fits():
    df = crossed(n=200, n_resp=2, poisson=True)
    table = glmm_ext.fit_many(df, ["y0", "y1"], "~ x + (1|a) + (1|b)", family=sm.families.Poisson(), n_jobs=1)
    check_equal(table, df, ["y0", "y1"], "~ x + (1|a) + (1|b)", rtol=1e-5, family=sm.families.Poisson())


def test_missing_response_values_get_their_own_rows_and_a_failure_is_a_row():
    df = crossed()
    df.loc[df.index[:30], "y1"] = np.nan
    df["bad"] = "text"
    table = glmm_ext.fit_many(df, ["y0", "y1", "bad"], "~ x + (1|a) + (1|b)", n_jobs=1)
    check_equal(table, df, ["y0"], "~ x + (1|a) + (1|b)")
    res = single(df.dropna(subset=["y1"]), "y1", "~ x + (1|a) + (1|b)")
    rows = table[table["response"] == "y1"]
    np.testing.assert_allclose(rows["estimate"], res.params, rtol=1e-6)
    np.testing.assert_allclose(rows["var_re[a]"], res.cov_re["a"].iloc[0, 0], rtol=1e-6)
    bad = table[table["response"] == "bad"]
    assert not bad["converged"].any() and bad["estimate"].isna().all() and bad["message"].iloc[0]


def test_worker_processes_give_the_same_table():
    df = crossed(n_resp=8, n=150)
    names = [f"y{j}" for j in range(8)]
    one = glmm_ext.fit_many(df, names, "~ x + (1|a) + (1|b)", n_jobs=1)
    two = glmm_ext.fit_many(df, names, "~ x + (1|a) + (1|b)", n_jobs=2)
    pd.testing.assert_frame_equal(one, two)


def test_refusals_before_fitting():
    df = crossed(n_resp=2)
    with pytest.raises(ValueError, match="single scalar random-effect term"):
        glmm_ext.fit_many(df, ["y0", "y1"], "~ x + (1|a) + (1|b)", nagq=5, n_jobs=1)
    with pytest.raises(ValueError, match="right-hand side only"):
        glmm_ext.fit_many(df, ["y0"], "y0 ~ x + (1|a) + (1|b)", n_jobs=1)


def _weighted_single(df, name, rhs, family=None, reml=True, **weights):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return glmm_ext.GLMM.from_formula(f"{name} {rhs}", df, family=family, **weights).fit(reml=reml)


@pytest.mark.parametrize("family,reml", [(None, True), (None, False), ("poisson", False)],
                         ids=["gaussian-reml", "gaussian-ml", "poisson"])
@pytest.mark.parametrize("rhs", ["~ x + (1|a) + (1|b)", "~ x + (1|a)", "~ x + (x|a)"])
def test_shared_weights_equal_a_loop_of_weighted_single_fits(family, reml, rhs):
    """var_weights (a column name) and freq_weights (an array) shared by every response: each response's row is
    its single weighted fit to 1e-8 (a response with a missing value too, on its own rows)."""
    df = crossed(n=200, n_resp=2, poisson=family == "poisson")
    rng = np.random.default_rng(1)
    df["v"] = rng.uniform(0.5, 2.0, len(df))
    f = rng.integers(1, 4, len(df)).astype(float)
    df.loc[df.index[3], "y1"] = np.nan
    fam = sm.families.Poisson() if family == "poisson" else None
    table = glmm_ext.fit_many(df, ["y0", "y1"], rhs, family=fam, n_jobs=1, reml=reml, var_weights="v",
                              freq_weights=f)
    unweighted = glmm_ext.fit_many(df, ["y0"], rhs, family=fam, n_jobs=1, reml=reml)
    assert not np.allclose(table["estimate"].iloc[:2], unweighted["estimate"], rtol=1e-3)  # the weights are used
    for name in ("y0", "y1"):
        rows = table[table["response"] == name]
        res = _weighted_single(df, name, rhs, fam, reml, var_weights="v", freq_weights=f)
        assert rows["converged"].all()
        np.testing.assert_allclose(rows["estimate"], res.params, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(rows["std_err"], res.bse, rtol=1e-8)
        assert rows["llf"].iloc[0] == pytest.approx(res.llf, abs=1e-8)
        if "+ (1|b)" in rhs:
            for key, cov in res.cov_re.items():
                np.testing.assert_allclose(rows[f"var_re[{key}]"], cov.iloc[0, 0], rtol=1e-8, atol=1e-12)


def test_integer_freq_weights_equal_the_repeated_rows():
    """Independent of the single fit: fit_many with integer freq_weights is fit_many on the repeated rows."""
    df = crossed(n=160, n_resp=2)
    f = np.random.default_rng(2).integers(1, 4, len(df))
    rhs = "~ x + (1|a) + (1|b)"
    weighted = glmm_ext.fit_many(df, ["y0", "y1"], rhs, n_jobs=1, freq_weights=f)
    repeated = glmm_ext.fit_many(df.loc[df.index.repeat(f)].reset_index(drop=True), ["y0", "y1"], rhs, n_jobs=1)
    # two searches of one likelihood (the repeated rows' on other cross-products) stop ~1e-7 apart
    np.testing.assert_allclose(weighted["llf"], repeated["llf"], rtol=1e-10)
    for col in ("estimate", "std_err", "var_re[a]", "var_re[b]"):
        np.testing.assert_allclose(weighted[col], repeated[col], rtol=1e-5, err_msg=col)


@pytest.mark.parametrize("reml", [True, False])
def test_responses_far_from_zero_equal_single_fits(reml):
    """Responses around 1e7 (the single fit conditions its response on the OLS residual: so does each
    response of the shared cross-products)."""
    df = crossed()
    names = ["y0", "y1"]
    for name in names:
        df[name] = df[name] + 1e7
    table = glmm_ext.fit_many(df, names, "~ x + (1|a) + (1|b)", n_jobs=1, reml=reml)
    check_equal(table, df, names, "~ x + (1|a) + (1|b)", reml=reml)
