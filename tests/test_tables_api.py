"""The statsmodels-facing surface: names, wrappers, tables, summary (its layout for every family), listwise
deletion, scaling."""
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats
from statsmodels.base.model import LikelihoodModel, LikelihoodModelResults

import glmm_ext
from conftest import fit_case


@pytest.fixture(scope="module")
def schools():
    return glmm_ext.load_schools()


@pytest.fixture(scope="module")
def lmm(schools):
    return glmm_ext.GLMM.from_formula("score ~ hours + ses", schools, groups="school").fit()


def test_classes_are_statsmodels(lmm):
    assert isinstance(lmm.model, LikelihoodModel)
    assert isinstance(lmm._results, LikelihoodModelResults)


def test_names_follow_the_formula(lmm):
    names = ["Intercept", "hours", "ses"]
    for attr in ("params", "fe_params", "bse", "bse_fe", "tvalues", "pvalues"):
        assert list(getattr(lmm, attr).index) == names, attr
    assert list(lmm.conf_int().index) == names
    assert list(lmm.cov_params().index) == names
    assert lmm.cov_re.shape == (1, 1) and lmm.cov_re.index[0] == "school"


def test_defaults_and_truth(lmm, schools):
    truth = schools.attrs["truth"]
    assert lmm.method == "REML" and lmm.converged and not lmm.singular
    for k in ("Intercept", "hours", "ses"):
        assert abs(lmm.params[k] - truth[k]) < 4 * lmm.bse[k]
    # within two approximate SEs of sigma_u^2 (sqrt(2 / (G - 1)) (sigma_u^2 + sigma_e^2 / n_bar) ~ 5.5)
    n_bar = lmm.nobs / lmm.n_groups
    se_var = np.sqrt(2 / (lmm.n_groups - 1)) * (lmm.var_re + lmm.scale / n_bar)
    assert abs(lmm.var_re - truth["var_school"]) < 2 * se_var
    assert lmm.scale == pytest.approx(truth["var_residual"], rel=0.1)


def test_wald_inference_is_normal(lmm):
    z = lmm.params / lmm.bse
    assert np.allclose(lmm.tvalues, z)
    assert np.allclose(lmm.pvalues, 2 * stats.norm.sf(np.abs(z)))
    for alpha in (0.5, 0.1, 0.0001):
        ci = lmm.conf_int(alpha)
        crit = stats.norm.isf(alpha / 2)
        assert np.allclose(ci.iloc[:, 0], lmm.params - crit * lmm.bse)
        assert np.allclose(ci.iloc[:, 1], lmm.params + crit * lmm.bse)


@pytest.mark.parametrize("alpha", [0.6, 0.00001, -0.1, 1.2, "x"])
def test_confidence_level_outside_range_is_an_error(lmm, alpha):
    with pytest.raises(ValueError, match="confidence level|alpha"):
        lmm.conf_int(alpha)
    with pytest.raises(ValueError):
        lmm.summary(alpha=alpha)


def test_icc_and_design_effect(lmm):
    icc = lmm.var_re / (lmm.var_re + lmm.scale)
    assert lmm.icc == pytest.approx(icc)
    assert lmm.deff == pytest.approx(1 + (lmm.nobs / lmm.n_groups - 1) * icc)
    table = lmm.icc_table()
    assert table.loc["ICC", "Value"] == pytest.approx(icc)


def test_tables(lmm):
    re = lmm.random_effects_table()
    assert list(re.index) == ["school", "Residual"]
    assert re.loc["Residual", "Variance"] == pytest.approx(lmm.scale)
    assert re.loc["school", "Std.Dev."] == pytest.approx(np.sqrt(lmm.var_re))
    fe = lmm.fixed_effects_table(alpha=0.1)
    assert list(fe.columns) == ["Estimate", "Std. Error", "z", "P>|z|", "Lower 90%", "Upper 90%"]
    fit = lmm.model_fit_table()
    assert fit.loc["REML log-likelihood", "Value"] == pytest.approx(lmm.llf)
    assert fit.loc["Observations", "Value"] == lmm.nobs and fit.loc["Rows dropped", "Value"] == 0
    blups = lmm.blup_table()
    assert list(blups.columns) == ["Group", "Random Intercept", "Std. Error", "Rank"]
    assert blups.loc[blups["Random Intercept"].idxmax(), "Rank"] == 1
    assert sorted(blups["Rank"]) == list(range(1, lmm.n_groups + 1))


def test_gaussian_diagnostics(lmm, schools):
    diag = lmm.diagnostics()
    assert list(diag.columns) == ["fitted_values", "deviance_residuals", "pearson_residuals", "group_random_effect"]
    assert diag.index.equals(schools.index)
    raw = schools["score"] - diag["fitted_values"]
    assert np.allclose(diag["deviance_residuals"], raw) and np.allclose(diag["pearson_residuals"], raw)
    fixed = lmm.model.design.X @ lmm.params.to_numpy()
    assert np.allclose(diag["fitted_values"], fixed + diag["group_random_effect"])
    first = schools["school"].iloc[0]
    assert diag["group_random_effect"].iloc[0] == pytest.approx(lmm.random_effects[first].iloc[0])


def test_summary_text_and_html(lmm):
    text = lmm.summary(alpha=0.01).as_text()
    for piece in ("Random Effects", "ICC", "Design effect", "Fixed Effects", "Lower 99%", "Model Fit",
                  "REML log-likelihood", "AIC", "BIC", "Rows dropped", "BLUP", "... 50 more groups"):
        assert piece in text, piece
    html = lmm._repr_html_()
    assert "<table" in html and "Fixed Effects" in html and "Lower 95%" in html
    assert lmm.summary()._repr_html_() == lmm.summary().as_html()


@pytest.mark.parametrize("family,link,label,residual", [
    ("binomial", "logit", "OR", False), ("binomial", "probit", None, False), ("poisson", "log", "IRR", False),
    ("poisson", "identity", None, False), ("gamma", "log", "exp(Est.)", True), ("gaussian", "log", "exp(Est.)", True),
    ("gamma", "inverse", None, True)])
def test_family_specific_tables(family, link, label, residual):
    beta = (3.0, 0.3, -0.3) if link in ("identity", "inverse") else (0.3, 0.5, -0.3)
    df = glmm_ext.simulate(family, link, n_groups=40, group_size=10, beta=beta, sigma_u=0.3, scale=0.3, seed=4)
    res = glmm_ext.GLMM.from_formula("y ~ x1 + x2", df, groups="g",
                                     family=glmm_ext.make_family(family, link)).fit()
    fe = res.fixed_effects_table()
    if label:
        assert label in fe.columns
        assert np.allclose(fe[label], np.exp(fe["Estimate"]))
        assert np.allclose(fe["exp(Lower 95%)"], np.exp(fe["Lower 95%"]))
    else:
        assert not any(c.startswith("exp(") or c in ("OR", "IRR") for c in fe.columns)
    rows = list(res.random_effects_table().index)
    assert len(rows) == (2 if residual else 1)
    if (family, link) in (("binomial", "logit"), ("binomial", "probit")):
        resid = np.pi**2 / 3 if link == "logit" else 1.0
        assert res.icc == pytest.approx(res.var_re / (res.var_re + resid))
    else:
        assert res.icc is None and res.deff is None
        assert res.icc_table().loc["ICC", "Value"] == "N/A"
        assert "not defined" in res.icc_table().loc["ICC", "Note"]
    latent = res.latent_variance_table()
    if (family, link) in (("binomial", "logit"), ("binomial", "probit"), ("poisson", "log"), ("gamma", "log")):
        assert latent is not None and (latent["Latent residual variance"] > 0).all()
    else:
        assert latent is None
    diag = res.diagnostics()
    mu = diag["fitted_values"].to_numpy()
    fam = res.model.family
    assert np.allclose(diag["pearson_residuals"], (df["y"] - mu) / np.sqrt(fam.variance(mu)))
    assert np.allclose(diag["deviance_residuals"] ** 2, fam._resid_dev(df["y"].to_numpy(), mu))
    assert "conditional modes" in res.summary().as_text()


def test_latent_variances_follow_nakagawa():
    res = fit_case("grouseticks_poisson")
    lam = res.latent_lambda
    X = res.model.design.X
    assert lam == pytest.approx(np.mean(np.exp(X @ res.params.to_numpy() + res.var_re / 2)))
    table = res.latent_variance_table()
    assert table.loc["lognormal approximation", "Latent residual variance"] == pytest.approx(np.log1p(1 / lam))
    gamma = fit_case("sim_gamma_log")
    table = gamma.latent_variance_table()
    assert table.loc["lognormal approximation", "Latent residual variance"] == pytest.approx(np.log1p(gamma.scale))
    logit = fit_case("cbpp_binomial").latent_variance_table()
    assert logit.iloc[0]["Latent residual variance"] == pytest.approx(np.pi**2 / 3)


def test_listwise_deletion_is_reported_and_data_untouched(schools):
    df = schools.copy()
    df.loc[3, "hours"] = np.nan
    df.loc[7, "ses"] = np.inf
    df["hours"] = df["hours"].astype(object)
    df.loc[11, "hours"] = "n/a"
    df.loc[15, "school"] = None
    before = df.copy(deep=True)
    res = glmm_ext.GLMM.from_formula("score ~ hours + ses", df, groups="school").fit()
    assert df.equals(before)
    assert res.n_dropped == 4 and res.nobs == len(df) - 4
    assert list(res.diagnostics().index) == [i for i in df.index if i not in (3, 7, 11, 15)]
    assert "4 rows dropped" in res.summary().as_text()
    clean = glmm_ext.GLMM.from_formula("score ~ hours + ses", schools.drop(index=[3, 7, 11, 15]),
                                       groups="school").fit()
    assert np.allclose(res.params, clean.params, rtol=1e-10)


def test_predictor_scale_does_not_change_the_fit(schools):
    base = glmm_ext.GLMM.from_formula("passed ~ hours + ses", schools, groups="school",
                                      family=sm.families.Binomial()).fit()
    df = schools.assign(hours=schools["hours"] * 1e6 + 1e7)
    scaled = glmm_ext.GLMM.from_formula("passed ~ hours + ses", df, groups="school",
                                        family=sm.families.Binomial()).fit()
    assert scaled.llf == pytest.approx(base.llf, abs=1e-6)
    assert scaled.params["hours"] * 1e6 == pytest.approx(base.params["hours"], rel=1e-6)
    assert scaled.bse["hours"] * 1e6 == pytest.approx(base.bse["hours"], rel=1e-4)
    lmm = glmm_ext.GLMM.from_formula("score ~ hours + ses", df, groups="school").fit()
    lmm0 = glmm_ext.GLMM.from_formula("score ~ hours + ses", schools, groups="school").fit()
    assert lmm.params["hours"] * 1e6 == pytest.approx(lmm0.params["hours"], rel=1e-8)
    # REML depends on the parametrisation of X through log|X'V^-1X|: hours*1e6 adds -2 log(1e6) to -2 llf
    assert lmm.llf == pytest.approx(lmm0.llf - np.log(1e6), abs=1e-6)


def test_array_api_matches_formula_api(schools):
    X = np.column_stack([np.ones(len(schools)), schools["hours"], schools["ses"]])
    res = glmm_ext.GLMM(schools["score"].to_numpy(), X, schools["school"].to_numpy()).fit()
    ref = glmm_ext.GLMM.from_formula("score ~ hours + ses", schools, groups="school").fit()
    assert list(res.params.index) == ["const", "x1", "x2"]
    assert np.allclose(res.params.to_numpy(), ref.params.to_numpy())
    assert res.llf == pytest.approx(ref.llf)


def test_offset_and_exposure_are_the_same_model():
    df = glmm_ext.simulate("poisson", n_groups=30, group_size=10, offset=True, seed=5)
    a = glmm_ext.GLMM.from_formula("y ~ x1 + x2", df, groups="g", family=sm.families.Poisson(),
                                   offset=df["logexp"].to_numpy()).fit()
    b = glmm_ext.GLMM.from_formula("y ~ x1 + x2", df, groups="g", family=sm.families.Poisson(),
                                   exposure=np.exp(df["logexp"]).to_numpy()).fit()
    c = glmm_ext.GLMM.from_formula("y ~ x1 + x2", df, groups="g", family=sm.families.Poisson(), offset="logexp").fit()
    assert a.llf == pytest.approx(b.llf) and a.llf == pytest.approx(c.llf)
    assert np.allclose(a.params, b.params)


def test_binomial_trials_equal_expanded_bernoulli_rows():
    df = glmm_ext.simulate("binomial", n_groups=20, group_size=5, trials=6, seed=2)
    grouped = glmm_ext.GLMM.from_formula("successes + failures ~ x1 + x2", df, groups="g",
                                         family=sm.families.Binomial()).fit()
    long = df.loc[df.index.repeat(6)].copy()
    long["y"] = np.concatenate([[1] * s + [0] * f for s, f in zip(df["successes"], df["failures"])])
    bern = glmm_ext.GLMM.from_formula("y ~ x1 + x2", long, groups="g", family=sm.families.Binomial()).fit()
    assert np.allclose(grouped.params, bern.params, atol=1e-5)
    assert grouped.var_re == pytest.approx(bern.var_re, rel=1e-4)
    # the log-likelihoods differ by the binomial coefficients only
    from scipy.special import comb
    assert grouped.llf - np.sum(np.log(comb(6, df["successes"]))) == pytest.approx(bern.llf, abs=1e-5)


def test_predict(lmm, schools):
    new = schools.head(5)
    fixed = lmm.predict(new)
    assert np.allclose(fixed, lmm.params["Intercept"] + lmm.params["hours"] * new["hours"]
                       + lmm.params["ses"] * new["ses"])
    with_re = lmm.predict(new, groups=new["school"])
    assert np.allclose(with_re, lmm.diagnostics()["fitted_values"].head(5))
    assert np.allclose(lmm.predict(), lmm.diagnostics()["fitted_values"])


def test_optsummary_is_carried(lmm):
    text = str(lmm.optsummary)
    assert "REML" in text and "Converged" in text
    res = fit_case("cbpp_binomial")
    assert res.optsummary.converged and res.optsummary.newton_decrement < 1e-6
    assert res.optsummary.n_evaluations > 0 and res.optsummary.nagq == 1


def test_determinism_and_invariance():
    df = glmm_ext.simulate("binomial", n_groups=40, group_size=8, sigma_u=1.0, seed=9)
    fit = lambda d: glmm_ext.GLMM.from_formula("y ~ x1 + x2", d, groups="g",  # noqa: E731
                                               family=sm.families.Binomial()).fit()
    a, b = fit(df), fit(df)
    assert np.array_equal(a.params.to_numpy(), b.params.to_numpy()) and a.llf == b.llf
    shuffled = df.sample(frac=1.0, random_state=3)
    relabelled = df.assign(g=df["g"].map(lambda v: f"grp-{(v * 7919) % 1000:04d}"))
    for other in (fit(shuffled), fit(relabelled)):
        assert np.allclose(other.params.to_numpy(), a.params.to_numpy(), rtol=1e-6, atol=1e-8)
        assert other.llf == pytest.approx(a.llf, abs=1e-8)


PAIRS = [("gaussian", "identity"), ("gaussian", "log"), ("binomial", "logit"), ("binomial", "probit"),
         ("poisson", "log"), ("poisson", "identity"), ("gamma", "log"), ("gamma", "inverse"), ("gamma", "identity")]


@pytest.mark.parametrize("family,link", PAIRS)
def test_summary_reads_well_for_every_family(family, link):
    positive = link in ("identity", "inverse") and family != "gaussian"
    df = glmm_ext.simulate(family, link, n_groups=35, group_size=4, scale=0.2, seed=1,
                           beta=(3.0, 0.3, -0.2) if positive else (0.5, 0.8, -0.4), sigma_u=0.2 if positive else 0.6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = glmm_ext.GLMM.from_formula("y ~ x1 + x2", df, groups="g",
                                         family=glmm_ext.make_family(family, link)).fit()
    text = res.summary().as_text()
    lines = text.splitlines()
    assert max(map(len, lines)) <= 100
    assert len({len(line) for line in lines if re.fullmatch(r"[-=]+", line)}) == 1
    assert "e+00" not in text and "e-" not in text.split("Fixed Effects")[1].split("Model Fit")[0]
    assert "... 25 more groups (res.blup_table() has all 35)" in text
    assert "too narrow" not in text  # 35 groups
    assert all(len(line) <= 100 and not line.endswith(" ") for line in lines)


def test_few_groups_caveat_and_reml_note():
    df = glmm_ext.simulate("gaussian", n_groups=8, group_size=6, seed=3)
    res = glmm_ext.GLMM.from_formula("y ~ x1", df, groups="g").fit()
    text = res.summary(blup_rows=3).as_text()
    assert "with 8 groups they can be too narrow" in text
    assert "REML AIC and BIC compare only models with the same fixed effects" in text
    assert "... 5 more groups" in text
    with pytest.raises(ValueError, match="blup_rows"):
        res.summary(blup_rows=-1)


def test_wide_summary_splits_tables_and_header_within_100_columns():
    """Long fixed-effect names with IRR columns and long grouping names: the text form stays within 100 columns,
    the Fixed Effects table split by columns (its label column repeated, the IRR columns kept together), the
    header in one column with every term's level count printed in full."""
    rng = np.random.default_rng(7)
    n = 240
    df = pd.DataFrame({"a_rather_long_grouping_factor_name": rng.integers(0, 12, n),
                       "another_long_crossed_grouping_factor": rng.integers(0, 8, n),
                       "treatment_arm_with_a_long_name": rng.choice(["placebo_long_label", "active_long_label"], n),
                       "x": rng.normal(size=n)})
    df["y"] = rng.poisson(np.exp(0.3 + 0.2 * df["x"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = glmm_ext.GLMM.from_formula("y ~ C(treatment_arm_with_a_long_name) + x + (1|a_rather_long_grouping_factor_"
                                         "name) + (1|another_long_crossed_grouping_factor)", df,
                                         family=sm.families.Poisson()).fit()
    lines = res.summary().as_text().splitlines()
    assert max(map(len, lines)) <= 100
    heads = [line.split() for line in lines if line.strip().startswith("Fixed Effects")]
    assert len(heads) >= 2  # split; every column once, the exponentiated estimates together in the last part
    assert sum((h[2:] for h in heads), []) == ["Estimate", "Std.", "Error", "z", "P>|z|", "Lower", "95%", "Upper",
                                               "95%", "IRR", "IRR", "low", "IRR", "high"]
    assert heads[-1][-5:] == ["IRR", "IRR", "low", "IRR", "high"]
    label = "C(treatment_arm_with_a_long_name)[T.placebo_long_label]"
    assert sum(line.strip().startswith(label) for line in lines) == len(heads)
    text = "\n".join(lines)
    assert "a_rather_long_grouping_factor_name 12," in text and "another_long_crossed_grouping_factor 8" in \
        text.replace("\n", " ").replace("  ", " ")
