"""Random slopes: lme4 bar terms, exact Gaussian REML/ML and Laplace for other families.

Independent numbers: lme4 and glmmTMB fits (tests/data/slopes/reference.json, made by reference.R),
the dense multivariate-normal likelihood, a brute-force Laplace value (scipy optimiser plus a
finite-difference Hessian per group) and statsmodels' MixedLM with re_formula.
"""
import json
import os
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import optimize, stats

import glmm_ext
from glmm_ext import GLMM

HERE = os.path.join(os.path.dirname(__file__), "data")
with open(os.path.join(HERE, "slopes", "reference.json")) as fh:
    REF = json.load(fh)
FAMILIES = {"gaussian": sm.families.Gaussian, "binomial": sm.families.Binomial, "poisson": sm.families.Poisson,
            "binomial_probit": lambda: sm.families.Binomial(sm.families.links.Probit()),
            "gamma_log": lambda: sm.families.Gamma(sm.families.links.Log())}
# R formulas written for patsy: cbind(s, f) -> s + f, factor(YEAR) -> C(YEAR)
PATSY = {"cbpp_slope": "incidence + I(size - incidence) ~ pnum + (pnum | herd)",
         "grouse_slope": "TICKS ~ C(YEAR) + cHEIGHT + (cHEIGHT | LOCATION)"}


def load(case):
    data = pd.read_csv(os.path.join(HERE, case["data"]))
    if "period" in data:
        data["pnum"] = data["period"].astype(float)
    return data


def fit_case(name):
    case = REF[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = GLMM.from_formula(PATSY.get(name, case["formula"]), load(case), family=FAMILIES[case["family"]]())
        return model.fit(reml=case["reml"])


def best_fit(case):
    """The R fit with the larger log-likelihood (the best known optimum).

    lme4's Gamma log-likelihood uses another dispersion estimate (not the ML one), so Gamma is glmmTMB's.
    """
    lme4, tmb = case["lme4"], case["glmmTMB"]
    return lme4 if lme4["loglik"] >= tmb["loglik"] and case["family"] != "gamma_log" else tmb


@pytest.mark.parametrize("name", sorted(REF))
def test_reaches_best_known_optimum(name):
    case, res = REF[name], fit_case(name)
    best = best_fit(case)
    assert res.llf == pytest.approx(best["loglik"], abs=1e-4)
    # never below glmmTMB's optimum (lme4's printed glmer value can sit ~4e-5 above its own Laplace value)
    assert res.llf >= case["glmmTMB"]["loglik"] - 1e-6
    cov = np.array(best["cov_re"], float).reshape(res.cov_re.shape)
    assert np.max(np.abs(res.cov_re.to_numpy() - cov)) <= 0.02 * np.max(np.abs(cov))
    fe = np.array(list(best["fe"].values()))
    assert np.allclose(res.fe_params.to_numpy(), fe, rtol=1e-3, atol=1e-3 * np.max(np.abs(fe)))
    assert res.singular == case["lme4"]["singular"]


@pytest.mark.parametrize("name", ["sleep_reml", "sleep_ml", "q3_reml", "sleep_diag_reml"])
def test_gaussian_matches_lme4_in_detail(name):
    """Exact Gaussian fits: SEs, BLUPs and conditional SDs as lme4's (its optimum is the best one here)."""
    case, res = REF[name], fit_case(name)
    lme4 = case["lme4"]
    assert list(res.cov_re.columns) == [t.strip("()") for t in np.atleast_1d(lme4["terms"])]
    assert np.allclose(res.bse.to_numpy(), list(lme4["se"].values()), rtol=1e-4)
    assert res.scale == pytest.approx(lme4["sigma"] ** 2, rel=1e-5)
    blups = np.array([res.random_effects[label].to_numpy() for label in res.model.group_labels])
    ranef = np.array(lme4["ranef"], float).reshape(blups.shape)
    assert np.allclose(blups, ranef, atol=1e-4 * np.max(np.abs(ranef)))
    cond_sd = np.array(lme4["cond_sd"], float).reshape(blups.shape)
    assert np.allclose(res.random_effects_se.to_numpy(), cond_sd, rtol=1e-3)


def test_sleepstudy_vignette_numbers():
    res = fit_case("sleep_reml")
    sd = np.sqrt(np.diag(res.cov_re))
    rho = res.cov_re.iloc[0, 1] / (sd[0] * sd[1])
    assert res.llf == pytest.approx(-871.8141, abs=1e-4)
    assert (round(sd[0], 2), round(sd[1], 2), round(rho, 2)) == (24.74, 5.92, 0.07)
    assert not res.singular and res.converged


def test_gaussian_slopes_converge_in_few_evaluations():
    """Newton steps with the exact Hessian of the profiled deviance from the moment estimates: a handful of
    deviance evaluations (three of them the starts c I), where a finite-difference Hessian took 12-14."""
    data = pd.read_csv(os.path.join(HERE, "sleepstudy.csv"))
    for formula in ("Reaction ~ Days + (Days | Subject)", "Reaction ~ Days + (Days || Subject)"):
        for reml in (True, False):
            res = GLMM.from_formula(formula, data).fit(reml=reml)
            assert res.converged and res.optsummary.n_evaluations <= 9, (formula, reml, res.optsummary.n_evaluations)


def dense_gaussian_loglik(res, reml):
    """The marginal log-likelihood from V_j = Z_j Sigma Z_j' + sigma^2 I, group by group (dense)."""
    model = res.model
    d = model.design
    beta, cov, s2 = res.params.to_numpy(), res.cov_re.to_numpy(), res.scale
    ll, info = 0.0, 0.0
    for j in range(d.n_groups):
        rows = d.codes == j
        Z, X, y = d.Z[rows], d.X[rows], d.y[rows]
        V = Z @ cov @ Z.T + s2 * np.eye(rows.sum())
        ll += stats.multivariate_normal(X @ beta, V).logpdf(y)
        info = info + X.T @ np.linalg.solve(V, X)
    if reml:
        p = d.X.shape[1]
        ll += 0.5 * p * np.log(2 * np.pi) - 0.5 * np.linalg.slogdet(info)[1]
    return ll, info


@pytest.mark.parametrize("name", ["sleep_reml", "sleep_ml", "singular_reml"])
def test_gaussian_llf_and_se_equal_dense_likelihood(name):
    res = fit_case(name)
    ll, info = dense_gaussian_loglik(res, REF[name]["reml"])
    assert res.llf == pytest.approx(ll, abs=1e-7)
    assert np.allclose(res.cov_params().to_numpy(), np.linalg.inv(info), rtol=1e-6)


def brute_laplace(res):
    """Sum over groups of h_j(u_j) - log|H_j|/2 with u_j from scipy and H_j from finite differences."""
    model = res.model
    d = model.design
    fam = model.family
    beta = res.params.to_numpy()
    lam = np.linalg.cholesky(res.cov_re.to_numpy())
    total = 0.0
    for j in range(d.n_groups):
        rows = d.codes == j
        Z, eta0, y, m = d.Z[rows], d.X[rows] @ beta + d.offset[rows], d.y[rows], d.trials[rows]

        def h(u):
            mu = fam.link.inverse(eta0 + Z @ (lam @ u))
            if isinstance(fam, sm.families.Binomial):
                ll = stats.binom.logpmf(np.round(y * m), m, mu)
            else:
                ll = stats.poisson.logpmf(y, mu)
            return ll.sum() - 0.5 * u @ u

        q = Z.shape[1]
        u = optimize.minimize(lambda v: -h(v), np.zeros(q), method="BFGS", options={"gtol": 1e-10}).x
        step = 1e-4
        H = np.empty((q, q))
        for a in range(q):
            for b in range(q):
                ea, eb = np.eye(q)[a] * step, np.eye(q)[b] * step
                H[a, b] = -(h(u + ea + eb) - h(u + ea - eb) - h(u - ea + eb) + h(u - ea - eb)) / (4 * step**2)
        total += h(u) - 0.5 * np.linalg.slogdet(H)[1]
    return total


@pytest.mark.parametrize("name", ["cbpp_slope", "grouse_slope"])
def test_laplace_value_equals_brute_force(name):
    res = fit_case(name)
    assert res.llf == pytest.approx(brute_laplace(res), abs=2e-5)


def test_mixedlm_re_formula_matches_statsmodels_on_dietox():
    """statsmodels' own dietox example with re_formula="~Time" (the copy statsmodels ships with its tests)."""
    import statsmodels.regression.tests.results as shipped

    data = pd.read_csv(os.path.join(os.path.dirname(shipped.__file__), "dietox.csv"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = sm.MixedLM.from_formula("Weight ~ Time", data, groups=data["Pig"], re_formula="~Time").fit(
            method=["lbfgs"])
    res = glmm_ext.mixedlm("Weight ~ Time", data, groups=data["Pig"], re_formula="~Time").fit()
    assert res.llf >= theirs.llf - 1e-6 and res.llf == pytest.approx(theirs.llf, abs=1e-4)
    assert np.allclose(res.fe_params.to_numpy(), theirs.fe_params.to_numpy(), rtol=1e-5)
    assert np.allclose(res.cov_re.to_numpy(), theirs.cov_re.to_numpy(), rtol=2e-3)
    assert list(res.cov_re.columns) == ["Intercept", "Time"] and res.group_name == "Pig"
    assert res.random_effects[4601].index.tolist() == ["Intercept", "Time"]
    same = glmm_ext.mixedlm("Weight ~ Time", data, groups=data["Pig"].to_numpy(), re_formula="~Time").fit()
    assert same.llf == res.llf


def test_intercept_bar_term_is_the_random_intercept_model():
    data = pd.read_csv(os.path.join(HERE, "sleepstudy.csv"))
    a = GLMM.from_formula("Reaction ~ Days + (1 | Subject)", data).fit()
    b = GLMM.from_formula("Reaction ~ Days", data, groups="Subject").fit()
    assert a.llf == b.llf and np.array_equal(a.params, b.params)
    assert [t.z_names for t in a._terms] == [("Intercept",)] and a.cov_re.shape == (1, 1)


def test_bar_syntax_variants_and_errors():
    data = pd.read_csv(os.path.join(HERE, "sleepstudy.csv"))
    model = GLMM.from_formula("Reaction ~ Days + (1 + Days | Subject) ", data)
    assert model.exog_names == ["Intercept", "Days"] and model.group_name == "Subject"
    assert model.fit().cov_re.iloc[0, 1] != 0.0  # correlated
    apart = GLMM.from_formula("Reaction ~ (Days || Subject) + Days", data)  # a bar term first, then the fixed part
    assert apart.exog_names == ["Intercept", "Days"]
    cov = apart.fit().cov_re
    assert list(cov.columns) == ["Intercept", "Days"] and cov.iloc[0, 1] == 0.0  # uncorrelated
    two = data.assign(a=data["Subject"], b=data["Days"] % 2)
    for several in ("Reaction ~ Days + (1 | a/b)", "Reaction ~ Days + (Days | a) + (1 | b)"):
        assert GLMM.from_formula(several, two).design.terms is not None  # several terms: the multi-term engine
    assert GLMM.from_formula("Reaction ~ Days + (1 | a:b)", two).n_groups == two[["a", "b"]].drop_duplicates().shape[0]
    for bad, words in [("Reaction ~ Days + (1 | a*b)", "'/'"), ("Reaction ~ Days + (| a)", "nothing left")]:
        with pytest.raises(ValueError, match=words):
            GLMM.from_formula(bad, two)


def test_user_errors_are_clear():
    data = pd.read_csv(os.path.join(HERE, "slopes", "sim_binomial.csv"))
    with pytest.raises(ValueError, match="differ"):
        GLMM.from_formula("y ~ x + (x | g)", data, groups="x")
    model = GLMM.from_formula("y ~ x + (x | g)", data, family=sm.families.Binomial())
    with pytest.raises(ValueError, match="nagq"):
        model.fit(nagq=3)
    few = data[data.g < 2]
    with pytest.raises(ValueError, match="2 groups cannot identify"):
        GLMM.from_formula("y ~ x + (x | g)", few).fit()
    # many rows (the groups are counted on the first rows first): two groups among 6,000 rows, a third only
    # at the end (3 groups identify 2 x 2), text labels
    rng = np.random.default_rng(5)
    g = np.array(["a", "b"] * 3000, dtype=object)
    big = pd.DataFrame({"y": rng.normal(size=6000), "x": rng.normal(size=6000), "g": g})
    with pytest.raises(ValueError, match="2 groups cannot identify"):
        GLMM.from_formula("y ~ x + (x | g)", big)
    big.loc[5999, "g"] = "c"
    assert GLMM.from_formula("y ~ x + (x | g)", big).n_groups == 3


def test_singular_fit_flagged_and_warned():
    case = REF["singular_reml"]
    with pytest.warns(glmm_ext.model.SingularFitWarning, match="correlation"):
        res = GLMM.from_formula(case["formula"], load(case)).fit()
    corr = res.cov_re.iloc[0, 1] / np.sqrt(res.cov_re.iloc[0, 0] * res.cov_re.iloc[1, 1])
    assert res.singular and abs(corr) > 1 - 1e-6
    assert "Singular fit: the random-effects covariance" in res.summary().as_text()


def test_icc_at_follows_the_course_formula():
    res = fit_case("sleep_reml")
    s = res.cov_re.to_numpy()
    for x in (0.0, 4.5, 9.0):
        vb = s[0, 0] + 2 * x * s[0, 1] + x * x * s[1, 1]
        assert res.icc_at(x) == pytest.approx(vb / (vb + res.scale), rel=1e-12)
    table = res.icc_table()
    assert table.loc["ICC(x = mean)", "Value"] == pytest.approx(res.icc_at(4.5))
    assert res.icc == pytest.approx(res.icc_at(0.0))
    binomial = fit_case("sim_binomial")
    vb = binomial.cov_re.iloc[1, 1]
    assert binomial.icc_at({"x": 1.0}) == pytest.approx(
        (binomial.cov_re.to_numpy().sum()) / (binomial.cov_re.to_numpy().sum() + np.pi**2 / 3)) and vb > 0
    with pytest.raises(ValueError, match="not a slope term"):
        binomial.icc_at({"z": 1.0})


def test_tables_predict_and_missing_rows():
    data = pd.read_csv(os.path.join(HERE, "sleepstudy.csv"))
    data.loc[3, "Days"] = np.nan
    res = GLMM.from_formula("Reaction ~ 1 + (Days | Subject)", data).fit()
    assert res.nobs == 179 and res.n_dropped == 1
    table = res.random_effects_table()
    assert table.loc[("Subject", "Days"), "Corr (Intercept)"] == pytest.approx(
        res.cov_re.iloc[0, 1] / np.sqrt(res.cov_re.iloc[0, 0] * res.cov_re.iloc[1, 1]))
    blups = res.blup_table()
    assert list(blups.columns) == ["Group", "Intercept", "Std. Error (Intercept)", "Days", "Std. Error (Days)"]
    new = pd.DataFrame({"Days": [0.0, 2.0], "Subject": [308, 99999]})
    with pytest.warns(UserWarning, match="not in the fitted data"):
        pred = res.predict(new, groups=new["Subject"]).to_numpy()
    b308 = res.random_effects[308]
    assert pred[0] == pytest.approx(res.params["Intercept"] + b308["Intercept"])
    assert pred[1] == pytest.approx(res.params["Intercept"])  # unseen group: population value
    fitted = res.diagnostics()["fitted_values"].to_numpy()
    assert np.allclose(fitted, res.predict())


def test_plots_and_cli_with_random_slopes(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from glmm_ext.cli import run

    res = fit_case("sleep_reml")
    fig = res.plot_blups()
    assert [a.get_title() for a in fig.axes] == ["Random effect: Intercept", "Random effect: Days"]
    assert len(res.plot_diagnostics().axes) == 3
    out = tmp_path / "fit.json"
    with open(tmp_path / "stdout.txt", "w") as fh:
        run([os.path.join(HERE, "sleepstudy.csv"), "--formula", "Reaction ~ Days + (Days | Subject)",
             "--json", str(out)], out=fh)
    saved = json.loads(out.read_text())
    assert saved["llf"] == pytest.approx(-871.8141, abs=1e-4)
    assert saved["cov_re"]["Days"]["Days"] == pytest.approx(res.cov_re.loc["Days", "Days"])
    assert "Corr (Intercept)" in (tmp_path / "stdout.txt").read_text()


def test_separate_terms_equal_double_bar():
    data = pd.read_csv(os.path.join(HERE, "slopes", "sim_binomial.csv"))
    fam = sm.families.Binomial()
    a = GLMM.from_formula("y ~ x + (x || g)", data, family=fam).fit()
    b = GLMM.from_formula("y ~ x + (1 | g) + (0 + x | g)", data, family=fam).fit()
    assert a.llf == pytest.approx(b.llf, abs=1e-8)
    assert a.cov_re.iloc[0, 1] == 0.0 and b.cov_re.iloc[0, 1] == 0.0
    assert a.llf == pytest.approx(REF["sim_binomial_diag"]["glmmTMB"]["loglik"], abs=1e-4)


def test_array_interface_with_exog_re():
    data = pd.read_csv(os.path.join(HERE, "sleepstudy.csv"))
    X = np.column_stack([np.ones(len(data)), data["Days"]])
    endog = data["Reaction"].copy()
    endog.iloc[5] = np.nan  # dropped row, as with exog
    res = GLMM(endog, X, data["Subject"], exog_re=pd.DataFrame({"Intercept": 1.0, "Days": data["Days"]})).fit()
    ref = GLMM.from_formula("Reaction ~ Days + (Days | Subject)", data.drop(index=5)).fit()
    assert res.llf == pytest.approx(ref.llf, abs=1e-8) and res.nobs == 179
    assert list(res.cov_re.columns) == ["Intercept", "Days"]
    with pytest.raises(ValueError, match="exog_re has 3 rows"):
        GLMM(data["Reaction"], X, data["Subject"], exog_re=X[:3])
    with pytest.raises(ValueError, match="one random intercept"):  # slopes: loglike(vector) only
        res.model.loglike(res.params, var_re=1.0, scale=1.0)


def test_from_formula_takes_re_formula_and_groups_with_a_bar_term():
    data = pd.read_csv(os.path.join(HERE, "sleepstudy.csv"))
    a = GLMM.from_formula("Reaction ~ Days", data, groups="Subject", re_formula="~Days").fit()
    b = GLMM.from_formula("Reaction ~ Days + (Days | Subject)", data, groups="Subject").fit()
    assert a.llf == pytest.approx(REF["sleep_reml"]["lme4"]["loglik"], abs=1e-6) and a.llf == b.llf


def test_laplace_modes_sds_and_ses_match_glmer_at_its_optimum():
    """cbpp: glmer reaches the best optimum, so its conditional modes, condVar SDs and SEs are the reference."""
    res, lme4 = fit_case("cbpp_slope"), REF["cbpp_slope"]["lme4"]
    labels = [int(g) for g in lme4["ranef_groups"]]
    modes = np.array([res.random_effects[g].to_numpy() for g in labels])
    assert np.allclose(modes, np.array(lme4["ranef"]), atol=1e-5)
    assert np.allclose(res.random_effects_se.loc[labels].to_numpy(), np.array(lme4["cond_sd"]), rtol=1e-4)
    assert np.allclose(res.bse.to_numpy(), list(lme4["se"].values()), rtol=1e-4)


def test_summary_fits_100_columns_and_statsmodels_names():
    for name in ("q3_reml", "sim_binomial", "sim_gamma"):
        res = fit_case(name)
        assert max(len(line) for line in res.summary().as_text().splitlines()) <= 100
    res = fit_case("sleep_reml")
    assert (res.k_re, res.k_re2) == (2, 3)
    assert res.random_effects_cov[308].shape == (2, 2)
    assert np.allclose(res.fittedvalues, res.predict())
    pv = res.params_vector  # beta, the SDs and the correlation, log scale (conf_int's rows)
    c = res.cov_re.to_numpy()
    assert list(pv.index[2:]) == ["Subject SD Intercept", "Subject SD Days", "Subject Cor Intercept,Days",
                                  "log scale"]
    assert np.allclose(pv.iloc[2:5], [np.sqrt(c[0, 0]), np.sqrt(c[1, 1]), c[0, 1] / np.sqrt(c[0, 0] * c[1, 1])])
    assert pv.iloc[5] == pytest.approx(np.log(res.scale))
    assert res.cov_params_vector.shape == (4, 4)
    assert res.model.param_names == list(pv.index)  # the model's loglike takes this vector: the ML value
    ml = GLMM.from_formula("Reaction ~ Days + (Days | Subject)", pd.read_csv(os.path.join(HERE, "sleepstudy.csv")))
    ml_res = ml.fit(reml=False)
    assert ml.loglike(ml_res.params_vector) == pytest.approx(ml_res.llf, abs=1e-8)
    assert res.model.loglike(pv) < ml_res.llf  # the REML estimates are not the ML optimum


def test_pickle_round_trip_keeps_new_data_predictions():
    import pickle

    data = pd.read_csv(os.path.join(HERE, "sleepstudy.csv"))
    res = GLMM.from_formula("Reaction ~ Days + (Days | Subject)", data).fit()
    again = pickle.loads(pickle.dumps(res))
    new = data.iloc[[0, 15]]
    assert again.llf == res.llf
    assert np.allclose(again.predict(new, groups="Subject"), res.predict(new, groups="Subject"))


def test_missing_raise_and_safe_mode_cover_the_random_terms():
    data = pd.read_csv(os.path.join(HERE, "sleepstudy.csv"))
    data.loc[2, "Days"] = np.nan
    with pytest.raises(ValueError, match="random-effects term"):
        GLMM.from_formula("Reaction ~ 1 + (Days | Subject)", data, missing="raise")
    with pytest.raises(ValueError, match="safe"):
        GLMM.from_formula('Reaction ~ 1 + (__import__("os").getcwd() | Subject)', data, formula_mode="safe")
    assert GLMM.from_formula("Reaction ~ 1 + (Days | Subject)", data, formula_mode="safe").nobs == 179
