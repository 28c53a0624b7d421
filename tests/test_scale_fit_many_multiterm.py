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
