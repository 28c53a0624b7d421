"""statsmodels drop-in: the formula machinery, the results API and the output, against MixedLM/GLM; the entry
points with statsmodels' call signatures (mixedlm, the Bayes mixed GLM classes)."""
import json
import os
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
import statsmodels.regression.tests.results as sm_results
from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM, PoissonBayesMixedGLM

import glmm_ext

DIETOX = os.path.join(os.path.dirname(sm_results.__file__), "dietox.csv")


@pytest.fixture(scope="module")
def dietox():
    return pd.read_csv(DIETOX)


@pytest.fixture(scope="module")
def pair(dietox):
    """The statsmodels docs' MixedLM example, run unchanged through glmm_ext, and MixedLM's own fit."""
    md = glmm_ext.mixedlm("Weight ~ Time", dietox, groups=dietox["Pig"])
    mdf = md.fit(method=["lbfgs"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = smf.mixedlm("Weight ~ Time", dietox, groups=dietox["Pig"]).fit(method=["lbfgs"])
    return mdf, ref


def test_dietox_example_runs_unchanged_and_matches_mixedlm(pair):
    mdf, ref = pair
    text = mdf.summary().as_text()
    assert "Weight" in text and "Pig" in text
    assert max(map(len, text.splitlines())) <= 100
    assert mdf.llf == pytest.approx(ref.llf, abs=1e-5)
    assert np.allclose(mdf.fe_params, ref.fe_params, rtol=1e-6)
    assert np.allclose(mdf.bse_fe, ref.bse_fe, rtol=1e-4)
    assert mdf.scale == pytest.approx(ref.scale, rel=1e-5)
    assert any("method=['lbfgs'] ignored" in note for note in mdf.optsummary.notes)
    assert (mdf.k_fe, mdf.k_re, mdf.k_re2, mdf.k_vc) == (ref.k_fe, ref.k_re, ref.k_re2, ref.k_vc)
    assert float(mdf.cov_re_unscaled.iloc[0, 0]) == pytest.approx(float(ref.cov_re_unscaled.iloc[0, 0]), rel=1e-4)


def test_fittedvalues_and_resid_are_mixedlm_s(pair):
    mdf, ref = pair
    assert isinstance(mdf.fittedvalues, pd.Series)
    assert mdf.fittedvalues.index.equals(ref.fittedvalues.index)
    assert np.allclose(mdf.fittedvalues, ref.fittedvalues, atol=1e-4)  # MixedLM's optimiser tolerance
    assert np.allclose(mdf.resid, ref.resid, atol=1e-4)
    assert np.allclose(mdf.predict(), ref.predict(), atol=1e-4)  # MixedLM's predict(): the fixed part


def test_predict_on_new_data_with_a_missing_value_as_statsmodels(pair, dietox):
    mdf, ref = pair
    new = dietox.iloc[[3, 10, 40]].copy()
    new.loc[new.index[1], "Time"] = np.nan
    mine, theirs = mdf.predict(new), ref.predict(new)
    assert isinstance(mine, pd.Series) and mine.index.equals(new.index)
    assert np.isnan(mine.iloc[1]) and np.isnan(theirs.iloc[1])
    assert np.allclose(mine.dropna(), theirs.dropna(), rtol=1e-6)  # population level = MixedLM's predict
    with_groups = mdf.predict(new, groups="Pig")
    re = {k: v.iloc[0] for k, v in mdf.random_effects.items()}
    expected = mine + new["Pig"].map(re)
    assert np.allclose(with_groups.dropna(), expected.dropna())


def test_formula_fit_survives_save_load_predict(pair, dietox, tmp_path):
    mdf, _ = pair
    new = dietox.iloc[:6]
    before = mdf.predict(new, groups="Pig")
    path = str(tmp_path / "fit.pickle")
    mdf.save(path)
    back = sm.load_pickle(path)
    assert np.allclose(back.predict(new, groups="Pig"), before)
    assert back.llf == mdf.llf
    back.remove_data()
    back.save(path, remove_data=True)
    small = sm.load_pickle(path)
    assert np.allclose(small.predict(new, groups="Pig"), before)
    assert os.path.getsize(path) < 200_000


def test_wald_test_terms_tests_a_factor_as_one_term(tracks):
    res = glmm_ext.GLMM.from_formula("y ~ x + C(track)", tracks, groups="g").fit()
    table = res.wald_test_terms().table
    assert list(table.index) == ["Intercept", "C(track)", "x"]
    assert list(table["df_constraint"]) == [1, 2, 1]
    cols = [i for i, name in enumerate(res.model.exog_names) if name.startswith("C(track)")]
    b = res.params.to_numpy()[cols]
    V = np.asarray(res.cov_params())[np.ix_(cols, cols)]
    assert table.loc["C(track)", "statistic"] == pytest.approx(b @ np.linalg.solve(V, b), rel=1e-8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = smf.mixedlm("y ~ x + C(track)", tracks, groups="g").fit().wald_test_terms().table
    assert list(theirs.index) == list(table.index) and list(theirs["df_constraint"]) == [1, 2, 1]
    # MixedLM's SEs come from its joint Hessian, ours are sigma^2 (X'V^-1 X)^-1: close, not identical
    assert np.allclose(table["statistic"], theirs["statistic"], rtol=1e-2)


def test_eval_env_subset_missing_and_drop_cols(tracks):
    shift = 10.0  # a caller's local variable used in the formula
    res = glmm_ext.GLMM.from_formula("y ~ I(x + shift)", tracks, groups="g").fit()
    assert res.params.index[1] == "I(x + shift)"
    with pytest.raises(ValueError, match="shift"):
        glmm_ext.GLMM.from_formula("y ~ I(x + shift)", tracks, groups="g", eval_env=-1)
    sub = glmm_ext.GLMM.from_formula("y ~ x", tracks, groups="g", subset=tracks.index[:120]).fit()
    assert sub.nobs == 120
    holes = tracks.copy()
    holes.loc[[2, 7], "x"] = np.nan
    dropped = glmm_ext.GLMM.from_formula("y ~ x", holes, groups="g").fit()
    assert dropped.n_dropped == 2 and dropped.model.design.drop_reasons == {"x": 2}
    for option in ("raise", "none"):
        with pytest.raises(ValueError, match="x \\(2\\)"):
            glmm_ext.GLMM.from_formula("y ~ x", holes, groups="g", missing=option)
    fewer = glmm_ext.GLMM.from_formula("y ~ x + C(track)", tracks, groups="g", drop_cols=["x"]).fit()
    assert "x" not in fewer.params.index
    assert len(fewer.predict(tracks.head(4))) == 4


def test_groups_in_predict_and_unseen_groups(tracks):
    res = glmm_ext.GLMM.from_formula("y ~ x", tracks, groups="g").fit()
    new = pd.DataFrame({"x": [0.0, 1.0, 2.0], "g": [0, 1, 999]}, index=["a", "b", "c"])
    with pytest.warns(UserWarning, match="999"):
        pred = res.predict(new, groups="g")
    assert list(pred.index) == ["a", "b", "c"]
    fixed = res.params["Intercept"] + res.params["x"] * new["x"]
    assert pred["c"] == pytest.approx(fixed["c"])  # unseen: population level
    assert pred["a"] == pytest.approx(fixed["a"] + res.random_effects[0].iloc[0])
    with pytest.warns(UserWarning, match="population-level"):
        assert np.allclose(res.predict(new, groups=new["g"].to_numpy()), pred)
    with pytest.raises(ValueError, match="999"):
        res.predict(new, groups="g", new_groups="error")
    assert np.allclose(res.predict(new, which="linear"), fixed)


def test_get_prediction_is_the_delta_method():
    df = glmm_ext.simulate("poisson", n_groups=30, group_size=6, seed=4)
    res = glmm_ext.GLMM.from_formula("y ~ x1 + x2", df, groups="g", family=sm.families.Poisson()).fit()
    new = df.head(5)
    frame = res.get_prediction(new, groups="g").summary_frame(alpha=0.1)
    assert list(frame.columns) == ["mean", "mean_se", "mean_ci_lower", "mean_ci_upper"]
    X = np.column_stack([np.ones(5), new["x1"], new["x2"]])
    u = np.array([res.random_effects[g].iloc[0] for g in new["g"]])
    se_u = res.random_effects_se.loc[new["g"]].to_numpy()
    # Poisson-log: working weights are the conditional means; the mode's curvature is 1/s2u + sum mu
    mu_all = res.fittedvalues.to_numpy()
    X_all = np.column_stack([np.ones(len(df)), df["x1"], df["x2"]])
    s2u = res.var_re
    k, curvature = {}, {}
    for g in new["g"].unique():
        rows = (df["g"] == g).to_numpy()
        k[g] = s2u * (mu_all[rows] @ X_all[rows]) / (1 + s2u * mu_all[rows].sum())
        curvature[g] = 1 / s2u + mu_all[rows].sum()
    assert np.allclose(se_u**2, [1 / curvature[g] for g in new["g"]], rtol=1e-6)
    D = X - np.array([k[g] for g in new["g"]])
    eta = X @ res.params.to_numpy() + u
    se_eta = np.sqrt(np.einsum("ij,jk,ik->i", D, np.asarray(res.cov_params()), D) + se_u**2)
    assert np.allclose(frame["mean"], np.exp(eta))
    assert np.allclose(frame["mean_se"], np.exp(eta) * se_eta)
    assert np.allclose(frame["mean_ci_lower"], np.exp(eta - 1.6448536269514722 * se_eta))
    assert np.allclose(res.predict(new, groups="g"), frame["mean"])
    random = {g: cov.iloc[0, 0] for g, cov in res.random_effects_cov.items()}
    assert np.allclose([random[g] for g in new["g"]], se_u**2)
    population = res.get_prediction(new).summary_frame()  # no groups: x' Cov(beta) x only
    se_fixed = np.sqrt(np.einsum("ij,jk,ik->i", X, np.asarray(res.cov_params()), X))
    assert np.allclose(population["mean_se"], np.exp(X @ res.params.to_numpy()) * se_fixed)


def test_score_and_information_on_one_vector():
    df = glmm_ext.simulate("poisson", n_groups=30, group_size=6, seed=4)
    res = glmm_ext.GLMM.from_formula("y ~ x1 + x2", df, groups="g", family=sm.families.Poisson()).fit()
    model, theta = res.model, res.params_vector.to_numpy()
    assert model.param_names == ["Intercept", "x1", "x2", "g SD"]
    assert model.loglike(theta) == pytest.approx(res.llf, abs=1e-8)
    assert np.max(np.abs(model.score(theta))) < 1e-3
    cov = np.linalg.inv(model.information(theta))
    assert np.allclose(cov[:3, :3], np.asarray(res.cov_params()), rtol=2e-3)
    with pytest.raises(ValueError, match="4 entries"):
        model.loglike(theta[:3].tolist() + [1.0, 2.0])


def test_gaussian_ml_information_matches_mixedlm():
    df = glmm_ext.simulate("gaussian", n_groups=25, group_size=8, seed=2)
    res = glmm_ext.mixedlm("y ~ x1 + x2", df, groups="g").fit(reml=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = smf.mixedlm("y ~ x1 + x2", df, groups="g").fit(reml=False)
    theta = res.params_vector.to_numpy()
    assert res.model.loglike(theta) == pytest.approx(ref.llf, abs=1e-6)
    cov = np.linalg.inv(res.model.information(theta))
    assert np.allclose(np.sqrt(np.diag(cov)[:3]), ref.bse_fe, rtol=1e-3)
    own = glmm_ext.GLMM.from_formula("y ~ x1 + x2", df, groups="g").fit(reml=False)  # GLMM's bse_re: SE of var_re
    assert own.bse_re.iloc[0] == pytest.approx(2 * res.sigma_re * np.sqrt(cov[3, 3]), rel=1e-3)
    assert res.bse_re.iloc[0] == pytest.approx(ref.bse_re.iloc[0], rel=1e-3)  # the drop-in's is MixedLM's


def test_statsmodels_fit_options_and_bayes_fits():
    df = glmm_ext.simulate("binomial", n_groups=20, group_size=6, seed=7)
    model = glmm_ext.BinomialMixedGLM.from_formula("y ~ x1", {"g": "0 + C(g)"}, df)
    res = model.fit(method="bfgs", start_params=np.zeros(3), disp=False, full_output=True, niter_sa=2)
    assert len(res.optsummary.notes) == 4 and "Note" in str(res.optsummary)
    for method in ("fit_vb", "fit_map"):
        with pytest.warns(UserWarning, match="maximum likelihood"):
            other = getattr(model, method)()
        assert other.llf == pytest.approx(res.llf)
    with pytest.raises(ValueError, match="fe_pen"):
        model.fit(fe_pen=1.0)
    with pytest.raises(ValueError, match="from_formula"):
        glmm_ext.BinomialMixedGLM(df["y"], df[["x1"]], None, None)


def test_array_model_predicts_on_the_new_rows_index():
    df = glmm_ext.simulate("gaussian", n_groups=10, group_size=5, seed=1)
    X = np.column_stack([np.ones(50), df["x1"]])
    res = glmm_ext.GLMM(df["y"], X, df["g"]).fit()
    new = pd.DataFrame(X[:3], index=["a", "b", "c"])
    pred = res.predict(new)
    assert list(pred.index) == ["a", "b", "c"]
    assert np.allclose(pred, X[:3] @ res.params.to_numpy())
    with_groups = res.predict(X[:3], groups=df["g"].to_numpy()[:3])
    assert np.allclose(with_groups, res.fittedvalues.iloc[:3])
    assert list(res.wald_test_terms().table.index) == ["const", "x1"]


def test_exposure_column_is_taken_from_the_new_data():
    df = glmm_ext.simulate("poisson", n_groups=20, group_size=6, offset=True, seed=8)
    df["t"] = np.exp(df["logexp"])
    res = glmm_ext.GLMM.from_formula("y ~ x1", df, groups="g", family=sm.families.Poisson(), exposure="t").fit()
    by_offset = glmm_ext.GLMM.from_formula("y ~ x1", df, groups="g", family=sm.families.Poisson(),
                                           offset=df["logexp"]).fit()
    assert res.llf == pytest.approx(by_offset.llf, abs=1e-8)
    new = df.head(4)
    expected = np.exp(res.params["Intercept"] + res.params["x1"] * new["x1"]) * new["t"]
    assert np.allclose(res.predict(new), expected)
    assert np.allclose(res.predict(new, exposure=np.ones(4)), expected / new["t"])
    assert np.allclose(by_offset.predict(new, offset="logexp"), expected, rtol=1e-6)


with open(os.path.join(os.path.dirname(__file__), "data", "dropin_bse_re.json")) as _fh:
    BSE_RE = json.load(_fh)  # glmmTMB: SE(sigma_u^2) = 2 sigma_u^2 SE(log sigma_u); tests/data/dropin_bse_re.R


@pytest.mark.parametrize("name", ["cbpp_binomial", "grouseticks_poisson", "sleepstudy_ri", "sleepstudy_ri_ml"])
def test_bse_re_matches_glmmtmb(name):
    from conftest import fit_case, load_case

    if name.endswith("_ml"):
        case, data = load_case("sleepstudy_ri")
        res = glmm_ext.GLMM.from_formula(case["py"], data, groups=case["groups"]).fit(reml=False)
    else:
        res = fit_case(name)
    expected = BSE_RE[name]
    assert res.var_re == pytest.approx(expected["var_re"], rel=1e-4)
    assert res.bse_re.iloc[0] == pytest.approx(expected["bse_re"], rel=1e-4)


def test_summary_takes_mixedlm_s_labels(pair):
    mdf, ref = pair
    text = mdf.summary(title="Pigs", yname="weight (kg)", xname_fe=["const", "week"], xname_re="pig").as_text()
    assert text.splitlines()[0].strip() == "Pigs"
    assert "weight (kg)" in text and "    week" in text and "     pig" in text
    ref.summary(title="Pigs", yname="weight (kg)", xname_fe=["const", "week"], xname_re=["pig"])  # the same call
    with pytest.raises(ValueError, match="xname_fe"):
        mdf.summary(xname_fe=["one"])


def test_gaussian_prediction_variance_is_henderson_s():
    """mean_se with groups equals the prediction-error variance from the inverse of Henderson's mixed model
    equations, [x, e_g] C [x, e_g]', computed densely."""
    df = glmm_ext.simulate("gaussian", n_groups=6, group_size=5, seed=11)
    res = glmm_ext.GLMM.from_formula("y ~ x1 + x2", df, groups="g").fit()
    X = np.column_stack([np.ones(len(df)), df["x1"], df["x2"]])
    labels = list(res.model.group_labels)
    Z = (df["g"].to_numpy()[:, None] == np.array(labels)[None, :]).astype(float)
    s2e, s2u = res.scale, res.var_re
    W = np.column_stack([X, Z])
    M = W.T @ W / s2e
    M[3:, 3:] += np.eye(len(labels)) / s2u
    C = np.linalg.inv(M)
    rows = np.column_stack([X, Z])[:8]
    expected = np.sqrt(np.einsum("ij,jk,ik->i", rows, C, rows))
    frame = res.get_prediction(df.head(8), groups="g").summary_frame()
    assert np.allclose(frame["mean_se"], expected, rtol=1e-6)
    # blup_se is the conditional SD given beta (lme4's condVar); the full PEV adds beta-hat's share
    counts = Z.sum(axis=0)
    assert np.allclose(res.random_effects_se.loc[labels], np.sqrt(s2u * s2e / (s2e + counts * s2u)), rtol=1e-8)
    assert np.all(np.diag(C)[3:] > res.random_effects_se.loc[labels].to_numpy() ** 2)
    no_groups = res.get_prediction(df.head(8)).summary_frame()
    assert np.allclose(no_groups["mean_se"], np.sqrt(np.einsum("ij,jk,ik->i", X[:8], C[:3, :3], X[:8])))


def test_pickle_of_a_numpy_formula_loads_in_a_fresh_script(tmp_path):
    """statsmodels re-evaluates a formula on unpickling by guessing stack frames; a script at top level
    that never imported numpy as np must still load a 'np.log(...)' fit."""
    import subprocess
    import sys

    df = glmm_ext.simulate("poisson", n_groups=15, group_size=6, seed=2).assign(x3=lambda d: d.x1.abs() + 1)
    res = glmm_ext.GLMM.from_formula("y ~ np.log(x3) + center(x2)", df, groups="g", family=sm.families.Poisson(),
                                     formula_mode="safe").fit()
    path = tmp_path / "fit.pickle"
    res.save(str(path))
    df.head(3).to_csv(tmp_path / "new.csv", index=False)
    code = ("import pandas, statsmodels.api as sm; "
            f"r = sm.load_pickle({str(path)!r}); "
            f"print(list(r.predict(pandas.read_csv({str(tmp_path / 'new.csv')!r}))))")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert np.allclose(eval(out.stdout), res.predict(df.head(3)))  # noqa: S307 - a list of floats we printed


# ---------------------------------------------------------------- entry points with statsmodels' signatures
def test_mixedlm_call_matches_statsmodels():
    df = glmm_ext.simulate("gaussian", n_groups=25, group_size=8, seed=2)
    mine = glmm_ext.mixedlm("y ~ x1 + x2", df, groups=df["g"]).fit(reml=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = smf.mixedlm("y ~ x1 + x2", df, groups=df["g"]).fit(reml=True)
    assert mine.llf == pytest.approx(theirs.llf, abs=1e-5)
    assert np.allclose(mine.fe_params, theirs.fe_params, rtol=1e-5)
    assert float(mine.cov_re.iloc[0, 0]) == pytest.approx(float(theirs.cov_re.iloc[0, 0]), rel=1e-4)
    assert mine.scale == pytest.approx(theirs.scale, rel=1e-4)
    assert set(mine.random_effects) == set(theirs.random_effects)


def test_mixedlm_rejects_what_it_cannot_express():
    df = glmm_ext.simulate("gaussian", n_groups=5, group_size=4, seed=2)
    with pytest.raises(ValueError, match="groups has 3 values"):
        glmm_ext.mixedlm("y ~ x1", df, groups=df["g"].to_numpy()[:3], re_formula="~x1")
    with pytest.raises(ValueError, match="vc_formula 'a'"):  # variance components: '0 + C(col)' or numeric
        glmm_ext.mixedlm("y ~ x1", df, groups="g", vc_formula={"a": "x1 + C(x2)"})


@pytest.mark.parametrize("cls,bayes,family", [(glmm_ext.BinomialMixedGLM, BinomialBayesMixedGLM, "binomial"),
                                              (glmm_ext.PoissonMixedGLM, PoissonBayesMixedGLM, "poisson")])
def test_bayes_call_is_accepted_and_reaches_a_higher_likelihood(cls, bayes, family):
    df = glmm_ext.simulate(family, n_groups=40, group_size=15, sigma_u=0.8, seed=3)
    vc = {"g": "0 + C(g)"}
    res = cls.from_formula("y ~ x1 + x2", vc, df).fit()
    assert res.model.dist.name == family and res.model.group_name == "g"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vb = bayes.from_formula("y ~ x1 + x2", vc, df).fit_vb()
    # the variational fit lands near, but below, the maximum of the Laplace likelihood
    vb_sd = float(np.exp(vb.vcp_mean[0]))
    assert res.model.loglike(vb.fe_mean, vb_sd**2) <= res.llf + 1e-8
    assert np.allclose(res.fe_mean, vb.fe_mean, atol=0.1)


def test_bayes_call_rejects_other_variance_structures():
    df = glmm_ext.simulate("binomial", n_groups=5, group_size=4, seed=2)
    with pytest.raises(ValueError, match="random intercept"):
        glmm_ext.BinomialMixedGLM.from_formula("y ~ x1", {"g": "0 + x1"}, df)
    crossed = glmm_ext.BinomialMixedGLM.from_formula("y ~ x1", {"g": "0 + C(g)", "h": "0 + C(x2)"}, df)
    assert [t.group for t in crossed.design.terms.terms] == ["g", "x2"]  # BayesMixedGLM's crossed call
    with pytest.raises(ValueError, match="random intercept"):
        glmm_ext.BinomialMixedGLM.from_formula("y ~ x1", {"g": "0 + C(g)", "h": "0 + x1"}, df)


@pytest.mark.parametrize("formula,family,reml", [
    ("Reaction ~ Days + (Days | Subject)", None, False),
    ("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", None, False),
    ("y ~ x + (x | a) + (1 | b)", None, False),
    ("count ~ x + (1 | a) + (1 | b)", "poisson", None),
    ("count ~ x + (x || a)", "poisson", None)])
def test_loglike_score_hessian_for_every_structure(formula, family, reml):
    """model.loglike takes res.params_vector's layout for slopes and several terms too: its value at the
    estimates is the fit's llf (ML, Laplace), the score vanishes there and the information is positive definite;
    a different point gives a lower value."""
    from test_fitting_multiterm import crossed

    data = pd.read_csv(os.path.join(os.path.dirname(__file__), "data", "sleepstudy.csv")) \
        if formula.startswith("Reaction") else crossed(n=200, slope=True)
    model = glmm_ext.GLMM.from_formula(formula, data, **({"family": sm.families.Poisson()} if family else {}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit(**({} if reml is None else {"reml": reml}))
    v = res.params_vector
    assert model.param_names == list(v.index)
    assert model.loglike(v.to_numpy()) == pytest.approx(res.llf, abs=1e-8)
    assert model.loglike(v.to_numpy() * 1.05) < res.llf
    score = model.score(v.to_numpy())
    assert np.max(np.abs(score)) < 1e-3 * max(1.0, abs(res.llf))
    assert np.all(np.linalg.eigvalsh(model.information(v.to_numpy())) > 0)
    with pytest.raises(ValueError, match="entries"):
        model.loglike(v.to_numpy()[:-1])
    with pytest.raises(ValueError, match="one random intercept"):
        model.loglike(res.params, var_re=1.0, scale=1.0)


def _statsmodels_constant(endog, exog):
    """statsmodels' own constant search on the same matrices (its data layer, hasconst not given)."""
    from statsmodels.base.data import handle_data

    data = handle_data(endog, exog, "none", None)
    return data.k_constant, data.const_idx


@pytest.mark.parametrize("case", ["intercept", "no_intercept", "array_middle", "constant_tail", "tail_and_ones"])
def test_constant_column_is_statsmodels(case):
    rng = np.random.default_rng(11)
    n = 300
    df = pd.DataFrame({"x": rng.normal(size=n), "z": rng.normal(size=n), "g": np.repeat(np.arange(30), 10)})
    df["y"] = df["x"] + rng.normal(0, 0.5, 30)[df["g"]] + rng.normal(size=n)
    if case in ("intercept", "no_intercept"):
        model = glmm_ext.GLMM.from_formula("y ~ x + z" + (" - 1" if case == "no_intercept" else ""), df, groups="g")
    else:
        x = df["x"].to_numpy()
        tail = np.r_[np.full(n - 1, 2.0), 2.5]  # constant over far more rows than the first ones looked at
        extra = {"array_middle": np.ones(n), "constant_tail": tail, "tail_and_ones": tail}[case]
        exog = np.column_stack([x, extra, df["z"]] + ([np.full(n, 3.0)] if case == "tail_and_ones" else []))
        model = glmm_ext.GLMM(df["y"].to_numpy(), exog, groups=df["g"].to_numpy())
    k, idx = _statsmodels_constant(model.data.orig_endog, model.data.orig_exog)
    assert (model.k_constant, model.data.k_constant, model.data.const_idx) == (k, k, idx)
    assert "hasconst" not in model._init_keys
    assert {"intercept": (1, 0), "no_intercept": (0, None), "array_middle": (1, 1), "constant_tail": (0, None),
            "tail_and_ones": (1, 3)}[case] == (k, idx)
    given = glmm_ext.GLMM(model.data.orig_endog, model.data.orig_exog, groups=model.groups, hasconst=True)
    assert given.k_constant == 1 and "hasconst" in given._init_keys  # the caller's option, as statsmodels takes it
