"""Several random-effect terms through the public API: syntax, refusals, listwise deletion, results and tables.

The results tests fit with the dense reference fit of ``multiterm_dense`` put in place of the engine
(``dense_engine``), so the tables are checked against numbers computed independently of glmm_ext's
numerics; the engine itself is compared with lme4 and the dense likelihood in test_reference_multiterm.py.
"""
import time
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import glmm_ext
from glmm_ext.engine import _mixed
from glmm_ext.model import SingularFitWarning

import multiterm_dense as md


@pytest.fixture
def dense_engine(monkeypatch):
    """The dense reference fit as the general (multi-term) engine under the one driver."""
    monkeypatch.setattr(_mixed, "fit_general", md.dense_fit)


def crossed(n=120, seed=0, sd_a=1.0, sd_b=0.7, slope=False):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"a": rng.integers(0, 8, n), "b": rng.choice(list("pqrstu"), n), "x": rng.normal(size=n)})
    ua, ub = rng.normal(0, sd_a, 8), rng.normal(0, sd_b, 6)
    codes_b = pd.factorize(df["b"], sort=True)[0]
    eta = 0.5 + 0.8 * df["x"] + ua[df["a"]] + ub[codes_b]
    if slope:
        eta = eta + rng.normal(0, 0.5, 8)[df["a"]] * df["x"]
    df["y"] = eta + rng.normal(0, 1.0, n)
    df["count"] = rng.poisson(np.exp(0.3 * eta))
    return df


def terms_of(model):
    t = model.design.terms
    return None if t is None else [(x.group, x.n_levels, tuple(x.z_names), bool(x.correlated)) for x in t.terms]


# --------------------------------------------------------------------------------- syntax
NAB = (crossed()["a"].astype(str) + ":" + crossed()["b"]).nunique()  # a:b combinations observed
SYNTAX = [
    ("y ~ x + (1|a) + (1|b)", {}, [("a", 8, ("Intercept",), True), ("b", 6, ("Intercept",), True)]),
    ("y ~ x + (1 | a / b)", {}, [("a", 8, ("Intercept",), True), ("b:a", NAB, ("Intercept",), True)]),
    ("y ~ x + (1|a) + (1|a:b)", {}, [("a", 8, ("Intercept",), True), ("a:b", NAB, ("Intercept",), True)]),
    ("y ~ x + (x|a) + (1|b)", {}, [("a", 8, ("Intercept", "x"), True), ("b", 6, ("Intercept",), True)]),
    ("y ~ x + (x||a) + (1|b)", {}, [("a", 8, ("Intercept", "x"), False), ("b", 6, ("Intercept",), True)]),
    ("y ~ x + (0 + x|a) + (1|b)", {}, [("a", 8, ("x",), True), ("b", 6, ("Intercept",), True)]),
    ("y ~ x + (1|a) + (0 + x|a) + (1|b)", {},
     [("a", 8, ("Intercept",), True), ("a", 8, ("x",), True), ("b", 6, ("Intercept",), True)]),
    ("y ~ x + (1|b) + (x|a)", {}, [("b", 6, ("Intercept",), True), ("a", 8, ("Intercept", "x"), True)]),
    ("y ~ x", {"groups": "a", "vc_formula": {"b": "0 + C(b)"}},
     [("a", 8, ("Intercept",), True), ("a:b", NAB, ("Intercept",), True)]),
    ("y ~ x", {"groups": "a", "re_formula": "~x", "vc_formula": {"b": "0 + C(b)"}},
     [("a", 8, ("Intercept", "x"), True), ("a:b", NAB, ("Intercept",), True)]),
]


@pytest.mark.parametrize("formula,kwargs,expected", SYNTAX, ids=[s[0] + str(s[1]) for s in SYNTAX])
def test_syntax_parses_to_the_terms(formula, kwargs, expected):
    df = crossed()
    model = glmm_ext.GLMM.from_formula(formula, df, **kwargs)
    assert terms_of(model) == expected
    assert model.exog_names == ["Intercept", "x"]


def test_nested_levels_are_the_observed_combinations():
    df = crossed()
    model = glmm_ext.GLMM.from_formula("y ~ x + (1|a/b)", df)
    levels = model.design.terms.levels[1]
    assert set(levels) == set(df["b"] + ":" + df["a"].astype(str))  # lme4's b:a
    term = model.design.terms.terms[1]
    assert np.array_equal(levels[term.codes], (df["b"] + ":" + df["a"].astype(str)).to_numpy())


@pytest.mark.parametrize("formula,group,has_z", [("y ~ x + (1|a:b)", "a:b", False), ("y ~ x + (x|a:b)", "a:b", True)])
def test_one_interaction_term_keeps_the_one_factor_path(formula, group, has_z):
    df = crossed(n=400)
    model = glmm_ext.GLMM.from_formula(formula, df)
    assert model.design.terms is None and model.group_name == group
    assert (model.design.Z is not None) == has_z
    assert model.n_groups == (df["a"].astype(str) + ":" + df["b"]).nunique()


def test_mixedlm_vc_formula_and_bayes_crossed_call():
    df = crossed()
    model = glmm_ext.mixedlm("y ~ x", df, groups="a", vc_formula={"b": "0 + C(b)"})
    assert terms_of(model)[1][:2] == ("a:b", NAB)
    df["yes"] = (df["y"] > 0.5).astype(int)
    bayes = glmm_ext.BinomialMixedGLM.from_formula("yes ~ x", {"a": "0 + C(a)", "b": "0 + C(b)"}, df)
    assert isinstance(bayes, glmm_ext.BinomialMixedGLM)
    assert terms_of(bayes) == [("a", 8, ("Intercept",), True), ("b", 6, ("Intercept",), True)]
    assert bayes.dist.name == "binomial"


def test_safe_mode_accepts_nested_and_interaction_groups_and_refuses_code():
    df = crossed()
    for formula in ("y ~ x + (1|a/b)", "y ~ x + (1|a) + (1|a:b)", "y ~ x + (np.log(x + 10)|a) + (1|b)"):
        model = glmm_ext.GLMM.from_formula(formula, df, formula_mode="safe")
        assert len(model.design.terms.terms) == 2
    with pytest.raises(ValueError):
        glmm_ext.GLMM.from_formula("y ~ x + (__import__('os').getcwd()|a) + (1|b)", df, formula_mode="safe")


# --------------------------------------------------------------------------------- refusals
def _one_level(df):
    return df.assign(c="only")


def _few_levels(df):
    return df.assign(c=np.where(df.index % 2 == 0, "u", "v"))


REFUSALS = [
    ("y ~ x + (1|a) + (1|c)", _one_level, "1 level"),
    ("y ~ x + (1|a) + (x|c)", _few_levels, "2 levels of 'c' cannot identify a 2 x 2"),
    ("y ~ x + (1|a) + (1|row)", lambda d: d.assign(row=np.arange(len(d))), "Gaussian residual variance"),
    ("y ~ x + (1|a) + (x|row)", lambda d: d.assign(row=np.arange(len(d))), "random effects"),
    ("y ~ x + (1|a) + (1|zz)", lambda d: d, "'zz' of the random-effects terms is not in the data"),
    ("y ~ x + (1|a*b)", lambda d: d, "'/'"),
    ("y ~ x + (1|a) + (1|b) + (1|a)", lambda d: d, "repeat the term"),
    ("y ~ x + (1|a) + (1|3b)", lambda d: d, "column name"),
]


@pytest.mark.parametrize("formula,prepare,match", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_unidentifiable_designs_are_refused(formula, prepare, match):
    with pytest.raises(ValueError, match=match):
        glmm_ext.GLMM.from_formula(formula, prepare(crossed()))


def test_many_level_slope_refused_from_dimensions_before_building():
    rng = np.random.default_rng(1)
    n = 20000
    df = pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n), "g": rng.integers(0, 50, n),
                       "f": rng.integers(0, 8600, n), "h": rng.integers(0, 30, n)})
    for formula in ("y ~ x + (C(f)|g)", "y ~ x + (C(f)|g) + (1|h)"):
        t0 = time.perf_counter()
        with pytest.raises(ValueError, match="cannot identify"):
            glmm_ext.GLMM.from_formula(formula, df)
        assert time.perf_counter() - t0 < 10.0  # building the dense 20,000 x 8,600 design takes far longer


def test_groups_array_is_not_printed_in_the_error():
    df = crossed()
    for formula in ("y ~ x + (x|b)", "y ~ x + (1|a) + (1|b)"):
        with pytest.raises(ValueError) as info:
            glmm_ext.GLMM.from_formula(formula, df, groups=np.arange(len(df)))
        assert len(str(info.value)) < 300 and "120 values" in str(info.value)


def test_nagq_above_one_refused_with_several_terms():
    df = crossed()
    model = glmm_ext.GLMM.from_formula("count ~ x + (1|a) + (1|b)", df, family=sm.families.Poisson())
    with pytest.raises(ValueError, match="single scalar random-effect term"):
        model.fit(nagq=5)


def test_dask_refuses_several_terms():
    dd = pytest.importorskip("dask.dataframe")
    ddf = dd.from_pandas(crossed(), npartitions=2)
    with pytest.raises(NotImplementedError, match="several random-effect terms"):
        glmm_ext.GLMM.from_formula("y ~ x + (1|a) + (1|b)", ddf)


def test_listwise_deletion_across_grouping_columns():
    df = crossed()
    df["b"] = df["b"].astype(object)
    df.loc[[3, 7], "b"] = None
    df.loc[[10], "a"] = np.nan
    df.loc[[20], "x"] = np.nan
    model = glmm_ext.GLMM.from_formula("y ~ x + (1|a) + (1|b)", df)
    assert model.nobs == len(df) - 4
    reasons = model.design.drop_reasons
    assert reasons["b"] == 2 and reasons["a"] == 1 and reasons["x"] == 1
    assert sorted(model.design.dropped_index) == [3, 7, 10, 20]
    assert df["b"].isna().sum() == 2  # the caller's data are unchanged
    with pytest.raises(ValueError, match="missing='raise'"):
        glmm_ext.GLMM.from_formula("y ~ x + (1|a) + (1|b)", df, missing="raise")


# --------------------------------------------------------------------------------- results (dense engine)
@pytest.fixture
def crossed_fit(dense_engine):
    df = crossed()
    return df, glmm_ext.GLMM.from_formula("y ~ x + (1|a) + (1|b)", df).fit()


def test_vcomp_cov_re_and_random_effects_shapes(crossed_fit):
    df, res = crossed_fit
    vc = res.vcomp
    assert list(vc.columns) == ["Group", "Name", "Variance", "Std.Dev."]
    assert list(vc["Group"]) == ["a", "b", "Residual"] and list(vc["Name"]) == ["Intercept", "Intercept", ""]
    assert vc["Variance"].iloc[-1] == pytest.approx(res.scale)
    assert set(res.cov_re) == {"a", "b"} and res.cov_re["a"].shape == (1, 1)
    assert vc["Variance"].iloc[0] == pytest.approx(res.cov_re["a"].iloc[0, 0])
    assert np.allclose(vc["Std.Dev."] ** 2, vc["Variance"])
    re = res.random_effects
    assert re["a"].shape == (8, 1) and re["b"].shape == (6, 1)
    assert list(re["b"].index) == list("pqrstu")
    assert res.random_effects_se["a"].shape == (8, 1)
    assert res.k_params == 2 + 2 + 1
    assert np.allclose(res.params, res._fit.beta) and res.llf == pytest.approx(res._fit.llf)
    assert res.aic == pytest.approx(-2 * res.llf + 2 * 5) and res.bic == pytest.approx(-2 * res.llf + 5 * np.log(120))


def test_llf_equals_the_dense_marginal_at_the_estimates(crossed_fit):
    df, res = crossed_fit
    terms = res.model.design.terms.terms
    X = res.model.design.X
    covs = [res.cov_re[k].to_numpy() for k in ("a", "b")]
    value = md.gaussian_loglik(df["y"].to_numpy(), X, np.asarray(res.params), covs, res.scale, terms, reml=True)
    assert value == pytest.approx(res.llf, abs=1e-8)


def test_icc_per_term_and_adjusted(crossed_fit):
    _, res = crossed_fit
    va, vb, s2 = res.cov_re["a"].iloc[0, 0], res.cov_re["b"].iloc[0, 0], res.scale
    icc = res.icc_table()
    assert icc.loc["ICC (a)", "Value"] == pytest.approx(va / (va + vb + s2))
    assert icc.loc["ICC (b)", "Value"] == pytest.approx(vb / (va + vb + s2))
    assert icc.loc["Adjusted ICC", "Value"] == pytest.approx((va + vb) / (va + vb + s2))
    assert res.icc == pytest.approx((va + vb) / (va + vb + s2))


def test_blup_table_fitted_values_and_diagnostics(crossed_fit):
    df, res = crossed_fit
    table = res.blup_table()
    assert list(table.columns) == ["Term", "Group", "Intercept", "Std. Error (Intercept)"]
    assert len(table) == 14 and (table["Std. Error (Intercept)"] > 0).all()
    ua = res.random_effects["a"]["Intercept"].reindex(df["a"]).to_numpy()
    ub = res.random_effects["b"]["Intercept"].reindex(df["b"]).to_numpy()
    expected = res.params["Intercept"] + res.params["x"] * df["x"].to_numpy() + ua + ub
    assert np.allclose(res.fittedvalues, expected)
    assert np.allclose(res.resid, df["y"] - expected)
    assert np.allclose(res.diagnostics()["random_effects"], ua + ub)


def test_summary_fits_in_100_columns_and_renders_html(crossed_fit):
    _, res = crossed_fit
    text = str(res.summary())
    assert max(len(line) for line in text.splitlines()) <= 100
    for piece in ("Random Effects", "ICC (a)", "Adjusted ICC", "BLUP: a", "BLUP: b", "Residual"):
        assert piece in text
    assert "<table" in res._repr_html_()


def test_predict_is_conditional_on_every_term_and_unseen_levels_give_zero(crossed_fit):
    df, res = crossed_fit
    new = df.head(4).copy()
    assert np.allclose(res.predict(new), res.fittedvalues.head(4))
    fixed = res.params["Intercept"] + res.params["x"] * new["x"].to_numpy()
    assert np.allclose(res.predict(new, groups=False), fixed)
    only_a = res.predict(new, groups=["a"])
    assert np.allclose(only_a, fixed + res.random_effects["a"]["Intercept"].reindex(new["a"]).to_numpy())
    new.loc[new.index[0], "b"] = "never"
    with pytest.warns(UserWarning, match="never"):
        values = res.predict(new)
    ua0 = res.random_effects["a"]["Intercept"].loc[new["a"].iloc[0]]
    assert values.iloc[0] == pytest.approx(fixed[0] + ua0)
    with pytest.raises(ValueError, match="not in the fitted data"):
        res.predict(new, new_groups="error")
    with pytest.raises(ValueError, match="grouping column 'b'"):
        res.predict(new.drop(columns="b"))


def test_get_prediction_adds_each_terms_conditional_variance(dense_engine):
    # a Poisson fit: x' Cov(beta) x plus each term's conditional variance (the Gaussian identity model gets
    # Henderson's exact prediction error: tests/test_inference_terms.py)
    df = crossed(n=150, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = glmm_ext.GLMM.from_formula("count ~ x + (1|a) + (1|b)", df, family=sm.families.Poisson()).fit()
    new = df.head(3)
    pred = res.get_prediction(new)
    x = np.column_stack([np.ones(3), new["x"]])
    fixed_var = np.einsum("ij,jk,ik->i", x, res.cov_params_fe, x)
    sa = res.random_effects_se["a"]["Intercept"].reindex(new["a"]).to_numpy()
    sb = res.random_effects_se["b"]["Intercept"].reindex(new["b"]).to_numpy()
    assert np.allclose(pred.se_linpred, np.sqrt(fixed_var + sa ** 2 + sb ** 2))  # the link scale
    assert np.allclose(pred.predicted, res.predict(new))
    population = res.get_prediction(new, groups=False)
    assert np.allclose(population.se_linpred, np.sqrt(fixed_var))


def test_singular_term_warns_naming_it(dense_engine):
    df = crossed(sd_b=0.0, seed=4)
    rng = np.random.default_rng(5)
    df["y"] = 0.5 + 0.8 * df["x"] + rng.normal(0, 1.0, len(df)) + rng.normal(0, 1.5, 8)[df["a"]]
    with pytest.warns(SingularFitWarning, match="of b is at its boundary"):
        res = glmm_ext.GLMM.from_formula("y ~ x + (1|a) + (1|b)", df).fit()
    assert res.singular_terms == {"a": False, "b": True}


def test_anova_between_multiterm_fits_and_refit_false(dense_engine):
    df = crossed()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = glmm_ext.GLMM.from_formula("y ~ x + (1|a)", df).fit()
        two = glmm_ext.GLMM.from_formula("y ~ x + (1|a) + (1|b)", df).fit()
        table = glmm_ext.anova(one, two, refit=False)
        assert table["Chisq"].iloc[1] == pytest.approx(2 * (two.llf - one.llf))
        assert table["Df"].iloc[1] == 1
        ml = glmm_ext.anova(one, two)
    assert "ML" in ml.attrs["note"] and ml["logLik"].iloc[1] != pytest.approx(two.llf)
    with pytest.raises(ValueError, match="same fixed effects"):
        other = glmm_ext.GLMM.from_formula("y ~ 1 + (1|a) + (1|b)", df).fit()
        glmm_ext.anova(other, two, refit=False)


def test_simulate_with_and_without_the_random_effects(crossed_fit):
    df, res = crossed_fit
    cond = res.simulate(nsim=400, seed=1, use_re="conditional")
    assert cond.shape == (120, 400)
    assert np.allclose(cond.mean(axis=1), res.fittedvalues, atol=4 * np.sqrt(res.scale / 400) + 1e-9 + 0.2)
    new = res.simulate(nsim=2000, seed=2, use_re="new")
    total = res.cov_re["a"].iloc[0, 0] + res.cov_re["b"].iloc[0, 0] + res.scale
    assert np.var(new.to_numpy(), axis=1).mean() == pytest.approx(total, rel=0.15)


def test_r2_sums_the_components(crossed_fit):
    _, res = crossed_fit
    r2 = res.r2()
    va, vb = res.cov_re["a"].iloc[0, 0], res.cov_re["b"].iloc[0, 0]
    assert r2["var_random"] == pytest.approx(va + vb)
    assert r2["conditional"] > r2["marginal"] > 0


def test_params_vector_holds_each_terms_sd(crossed_fit):
    _, res = crossed_fit
    pv = res.params_vector
    assert list(pv.index) == ["Intercept", "x", "a SD Intercept", "b SD Intercept", "log scale"]
    assert pv["a SD Intercept"] == pytest.approx(np.sqrt(res.cov_re["a"].iloc[0, 0]), rel=1e-12)
    assert pv["log scale"] == pytest.approx(np.log(res.scale), rel=1e-12)
    assert res.cov_params_vector.shape == (3, 3) and res.conf_int().shape == (2, 2)


def test_poisson_crossed_tables_and_checks(dense_engine):
    df = crossed(n=150, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = glmm_ext.GLMM.from_formula("count ~ x + (1|a) + (1|b)", df, family=sm.families.Poisson()).fit()
    assert list(res.vcomp["Group"]) == ["a", "b"]  # no residual row for Poisson
    od = res.overdispersion()
    assert od["df"] == 150 - 4
    mu = res.fittedvalues.to_numpy()
    assert od["chisq"] == pytest.approx(np.sum((df["count"] - mu) ** 2 / mu))
    qr = res.quantile_residuals(nsim=50, seed=1, use_re="conditional")  # paired with the conditional mean
    assert np.allclose(qr.fitted, mu) and len(qr.residuals) == 150
    qr = res.quantile_residuals(nsim=50, seed=1)  # new effects of every term: the population-level mean
    X = np.column_stack([np.ones(len(df)), df["x"]])
    assert np.allclose(qr.fitted, np.exp(X @ res.fe_params.to_numpy())) and qr.level != "conditional"
    for approximation in ("lognormal", "trigamma", "delta"):  # lognormal / trigamma refit the null model
        assert 0 < res.r2(approximation=approximation)["conditional"] < 1
    assert "Adjusted ICC" not in str(res.summary())  # no latent residual variance for the Poisson ICC


def test_slope_term_vcomp_has_the_correlation(dense_engine):
    df = crossed(n=200, seed=6, slope=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = glmm_ext.GLMM.from_formula("y ~ x + (x|a) + (1|b)", df).fit()
    vc = res.vcomp
    assert list(vc.columns) == ["Group", "Name", "Variance", "Std.Dev.", "Corr"]
    assert list(vc["Name"]) == ["Intercept", "x", "Intercept", ""]
    c = res.cov_re["a"].to_numpy()
    assert vc["Corr"].iloc[1] == pytest.approx(c[0, 1] / np.sqrt(c[0, 0] * c[1, 1]))
    assert vc["Corr"].iloc[0] is None and vc["Corr"].iloc[2] is None
    assert res.random_effects["a"].shape == (8, 2)
    assert np.isfinite(res.get_prediction(df.head(2)).summary_frame()["mean_se"]).all()
    assert np.isfinite(res.get_prediction(df.head(2), groups=["b"]).summary_frame()["mean_se"]).all()


def test_cli_fits_several_terms(dense_engine, tmp_path):
    from glmm_ext.cli import run
    import io
    import json

    path = tmp_path / "d.csv"
    crossed().to_csv(path, index=False)
    out = io.StringIO()
    run([str(path), "--formula", "y ~ x + (1|a) + (1|b)", "--json", str(tmp_path / "r.json")], out=out)
    assert "BLUP: b" in out.getvalue()
    result = json.loads((tmp_path / "r.json").read_text())
    assert [row["Group"] for row in result["vcomp"]] == ["a", "b", "Residual"]
    assert set(result["blups"]) == {"a", "b"}


def test_random_effect_of_one_term_against_the_model_without_it(crossed_fit):
    df, res = crossed_fit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        without = glmm_ext.GLMM.from_formula("y ~ x + (1|a)", df).fit()
    test = res.test_random_effect("b")
    assert test.df == 1 and test.llf_glm == pytest.approx(without.llf, abs=1e-5)
    assert test.statistic == pytest.approx(2 * (res.llf - without.llf), abs=2e-5) and test.statistic > 1
    from scipy import stats
    assert test.pvalue == pytest.approx(0.5 * stats.chi2.sf(test.statistic, 1))
    with pytest.raises(ValueError, match="give one of the terms"):
        res.test_random_effect("zz")


def test_bootstrap_intervals_cover_the_estimates_and_repeat_with_the_seed(dense_engine):
    df = crossed(n=80, seed=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = glmm_ext.GLMM.from_formula("y ~ x + (1|a) + (1|b)", df).fit(reml=False)
        ci = res.conf_int(method="boot", nsim=12, seed=3)
        again = res.conf_int(method="boot", nsim=12, seed=3)
    assert list(ci.index) == ["Intercept", "x", "a SD Intercept", "b SD Intercept", "Residual SD"]
    assert ci.equals(again) and ci.attrs["n_failed"] <= 2
    estimate = [res.params["x"], np.sqrt(res.scale)]
    assert ci.loc["x", "lower"] < estimate[0] < ci.loc["x", "upper"]
    assert ci.loc["Residual SD", "lower"] < estimate[1] < ci.loc["Residual SD", "upper"]
