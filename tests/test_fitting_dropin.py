"""The drop-in claims of docs/migration.md, name by name against statsmodels' own classes, and the lme4 /
statsmodels idioms a migrating user types (predict with a dict, drop_cols, weights, offset(), cbind(), Dask)."""
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
from glmm_ext import GLMM

HERE = os.path.dirname(__file__)
MIGRATION = open(os.path.join(HERE, "..", "docs", "migration.md"), encoding="utf-8").read()
DIETOX = pd.read_csv(os.path.join(os.path.dirname(sm_results.__file__), "dietox.csv"))


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


@pytest.fixture(scope="module", params=[("ri", True), ("ri", False), ("slopes", False)],
            ids=["intercept-REML", "intercept-ML", "slopes-ML"])
def pair(request):
    kind, reml = request.param
    kw = {"re_formula": "~Time"} if kind == "slopes" else {}
    ref = _quiet(smf.mixedlm("Weight ~ Time", DIETOX, groups=DIETOX["Pig"], **kw).fit, reml=reml, method=["lbfgs"])
    mine = _quiet(glmm_ext.mixedlm("Weight ~ Time", DIETOX, groups=DIETOX["Pig"], **kw).fit, reml=reml)
    return mine, ref


def _values(x):
    return np.asarray(x, float).ravel()


# name -> (how to read it, relative tolerance): MixedLM's optimiser stops ~1e-5 from the optimum, so the
# variance parameters agree to ~1e-4 and their standard errors (curvatures) to ~1e-3
SAME = {
    "fe_params": (lambda r: r.fe_params, 1e-6),
    "bse_fe": (lambda r: r.bse_fe, 1e-3),
    "params": (lambda r: r.params, 2e-4),
    "bse": (lambda r: r.bse, 2e-3),
    "tvalues": (lambda r: r.tvalues, 2e-3),
    "bse_re": (lambda r: r.bse_re, 2e-3),
    "cov_re": (lambda r: r.cov_re, 2e-4),
    "cov_re_unscaled": (lambda r: r.cov_re_unscaled, 2e-4),
    "scale": (lambda r: r.scale, 1e-5),
    "llf": (lambda r: r.llf, 1e-8),
    "fittedvalues": (lambda r: r.fittedvalues, 1e-5),
    "resid": (lambda r: r.resid, 1e-3),
    "predict()": (lambda r: r.predict(), 1e-6),
    "predict(new)": (lambda r: r.predict(DIETOX.iloc[[0, 50, 700]]), 1e-6),
    "conf_int()": (lambda r: r.conf_int(), 2e-3),
    "df_resid": (lambda r: r.df_resid, 0),
    "nobs": (lambda r: r.nobs, 0),
    "k_fe, k_re, k_re2, k_vc": (lambda r: [r.k_fe, r.k_re, r.k_re2, r.k_vc], 0),
    "aic": (lambda r: r.aic, 1e-8),
    "bic": (lambda r: r.bic, 1e-8),
    "f_test": (lambda r: [r.f_test("Time = 7").fvalue, r.f_test("Time = 7").df_denom], 2e-3),
    "t_test": (lambda r: r.t_test(np.array([[0.0, 1.0]])).tvalue, 2e-3),
    "random_effects": (lambda r: np.concatenate([v.to_numpy() for v in r.random_effects.values()]), 1e-3),
}


@pytest.mark.parametrize("name", list(SAME))
def test_the_mixedlm_drop_in_gives_mixedlm_s_numbers(pair, name):
    mine, ref = pair
    read, rtol = SAME[name]
    a, b = _values(read(mine)), _values(read(ref))
    assert a.shape == b.shape
    if ref.reml and name in ("aic", "bic"):  # MixedLM: no AIC for REML fits
        assert np.isnan(a).all() and np.isnan(b).all()
        return
    scale = np.maximum(np.abs(b), 1e-2 * np.max(np.abs(b)))
    assert np.all(np.abs(a - b) <= rtol * scale + 1e-12), (name, a, b)
    assert name.split("(")[0].split(",")[0] in MIGRATION


def test_mixedlm_names_and_the_variance_parameters(pair):
    mine, ref = pair
    assert list(mine.params.index) == list(ref.params.index)
    assert list(mine.bse_re.index) == list(ref.bse_re.index) if hasattr(ref.bse_re, "index") else True
    # Group Var is cov_re / scale, independently of MixedLM
    assert mine.params["Group Var"] == pytest.approx(mine.cov_re.iloc[0, 0] / mine.scale, rel=1e-12)
    # predict() is the fixed part, fittedvalues the conditional means
    X = mine.model.exog
    assert np.allclose(mine.predict(), X @ mine.fe_params.to_numpy())
    assert not np.allclose(mine.predict(), mine.fittedvalues)


def test_mixedlm_names_survive_save_remove_data_and_load(tmp_path):
    res = _quiet(glmm_ext.mixedlm("Weight ~ Time", DIETOX, groups=DIETOX["Pig"]).fit)
    params, bse = res.params.copy(), res.bse.copy()
    path = str(tmp_path / "fit.pickle")
    res.save(path, remove_data=True)
    back = sm.load_pickle(path)
    assert back.params.equals(params) and back.bse.equals(bse)
    assert np.allclose(back.predict(DIETOX.head(3)), res.predict(DIETOX.head(3)))
    ml = _quiet(glmm_ext.BinomialMixedGLM.from_formula("y ~ x1", {"g": "0 + C(g)"},
                                                       glmm_ext.simulate("binomial", n_groups=20, seed=1)).fit)
    vcp_sd = ml.vcp_sd.copy()
    ml.save(path, remove_data=True)
    assert np.array_equal(sm.load_pickle(path).vcp_sd, vcp_sd)


def test_group_var_standard_error_is_the_inverse_curvature_of_the_criterion():
    """SE(cov_re/scale) by brute force: second differences of the ML log-likelihood over (beta, gamma, log s2)."""
    df = glmm_ext.simulate("gaussian", n_groups=30, group_size=6, sigma_u=0.8, seed=11)
    res = _quiet(glmm_ext.mixedlm("y ~ x1", df, groups="g").fit, reml=False)
    model = res.model
    beta, gamma, log_s2 = res.fe_params.to_numpy(), res.params["Group Var"], np.log(res.scale)

    def f(v):  # the model's vector is (beta, sigma_u, log scale)
        s2 = np.exp(v[3])
        return model.loglike(np.concatenate([v[:2], [np.sqrt(v[2] * s2)], [v[3]]]))

    x0 = np.concatenate([beta, [gamma, log_s2]])
    h = 1e-3 * np.maximum(np.abs(x0), 0.1)
    H = np.zeros((4, 4))
    for i in range(4):
        for j in range(4):
            ei, ej = np.eye(4)[i] * h[i], np.eye(4)[j] * h[j]
            H[i, j] = (f(x0 + ei + ej) - f(x0 + ei - ej) - f(x0 - ei + ej) + f(x0 - ei - ej)) / (4 * h[i] * h[j])
    se = np.sqrt(np.diag(np.linalg.inv(-H)))
    assert res.bse["Group Var"] == pytest.approx(se[2], rel=1e-3)
    assert res.bse_re["Group Var"] == pytest.approx(se[2] * np.sqrt(res.scale), rel=1e-3)


# names whose MixedLM value glmm_ext does not reproduce: each is named in the migration table
DIFFERENT = ["cov_params()", "normalized_cov_params", "summary()", "profile_re()", "hist", "params_object",
             "use_sqrt", "hessv", "bsejac"]


@pytest.mark.parametrize("name", DIFFERENT)
def test_every_difference_is_in_the_migration_table(name):
    rows = [line for line in MIGRATION.splitlines() if line.startswith("|") and f"`{name}`" in line]
    assert rows, f"{name} is not in a table of docs/migration.md"


def test_unavailable_mixedlm_names_raise_attribute_error(pair):
    mine, _ = pair
    for name in ("profile_re", "hist", "params_object", "use_sqrt", "hessv", "bsejac"):
        assert not hasattr(mine, name)
    assert mine.cov_params().shape == (mine.k_fe, mine.k_fe)  # the documented difference
    for hypothesis in (np.eye(len(mine.params)), "Group Var = 0"):  # restrictions on the variance parameters
        with pytest.raises(ValueError, match="fixed effects.*anova"):
            mine.f_test(hypothesis)
    with pytest.raises(ValueError, match="fixed effects"):
        mine.t_test("Group Var = 1")


def test_glmm_itself_keeps_its_documented_conventions():
    res = _quiet(GLMM.from_formula("Weight ~ Time", DIETOX, groups="Pig").fit)
    assert list(res.params.index) == ["Intercept", "Time"]
    assert np.allclose(res.predict(), res.fittedvalues)  # conditional, as lme4's predict(m)
    assert res.df_resid == res.nobs - 2
    assert "`predict()` without data returns the **conditional** means" in MIGRATION


# ------------------------------------------------------------------------------------ BayesMixedGLM
@pytest.fixture(scope="module", params=["binomial", "poisson"])
def bayes_pair(request):
    family = request.param
    cls, bayes = {"binomial": (glmm_ext.BinomialMixedGLM, BinomialBayesMixedGLM),
                  "poisson": (glmm_ext.PoissonMixedGLM, PoissonBayesMixedGLM)}[family]
    df = glmm_ext.simulate(family, n_groups=30, group_size=12, sigma_u=0.7, seed=4)
    df["g"] = "G" + df["g"].astype(str)
    vc = {"grp": "0 + C(g)"}
    vb = _quiet(bayes.from_formula("y ~ x1 + x2", vc, df).fit_vb)
    ml = _quiet(cls.from_formula("y ~ x1 + x2", vc, df).fit)
    return ml, vb, df


def test_bayes_names_have_bayes_shapes(bayes_pair):
    ml, vb, _ = bayes_pair
    for name in ("fe_mean", "fe_sd", "vcp_mean", "vcp_sd", "vc_mean", "vc_sd", "params"):
        mine, theirs = getattr(ml, name), getattr(vb, name)
        assert isinstance(mine, np.ndarray) and mine.shape == theirs.shape, name
        assert f"`{name}`" in MIGRATION
    table, ref = ml.random_effects(), vb.random_effects()
    assert list(table.columns) == ["Mean", "SD"] and list(table.index) == list(ref.index)
    assert list(ml.random_effects("grp").index) == list(vb.random_effects("grp").index)
    assert ml.random_effects(0).equals(table)
    with pytest.raises(ValueError, match="not a variance component"):
        ml.random_effects("nope")
    assert list(ml.cov_params().index) == list(vb.cov_params().index)


def test_bayes_names_carry_the_ml_fit_s_numbers(bayes_pair):
    ml, vb, _ = bayes_pair
    assert np.allclose(ml.fe_mean, ml.fe_params) and np.allclose(ml.fe_sd, ml.bse_fe)
    assert ml.vcp_mean[0] == pytest.approx(np.log(np.sqrt(ml.cov_re.iloc[0, 0])), rel=1e-12)
    assert np.allclose(ml.vc_mean, ml.blups) and np.allclose(ml.vc_sd, ml.random_effects_se)
    assert np.allclose(ml.params, np.concatenate([ml.fe_mean, ml.vcp_mean, ml.vc_mean]))
    # the ML point estimates are close to the variational posterior means (same model, weak priors)
    assert np.allclose(ml.fe_mean, vb.fe_mean, atol=0.15)
    assert np.allclose(ml.vc_mean, vb.vc_mean, atol=0.25)


def test_bayes_vcp_sd_is_the_standard_error_of_log_sd():
    """vcp_sd by brute force: the curvature of the Laplace log-likelihood in log sigma_u (beta profiled)."""
    df = glmm_ext.simulate("binomial", n_groups=40, group_size=10, sigma_u=0.9, seed=8)
    ml = _quiet(glmm_ext.BinomialMixedGLM.from_formula("y ~ x1", {"g": "0 + C(g)"}, df).fit)
    model, beta0 = ml.model, ml.fe_params.to_numpy()
    from scipy import optimize

    def profile(log_sd):
        out = optimize.minimize(lambda b: -model.loglike(np.concatenate([b, [np.exp(log_sd)]])), beta0,
                                method="BFGS", options={"gtol": 1e-9})
        return -out.fun

    t, h = ml.vcp_mean[0], 0.02
    curv = (profile(t + h) - 2 * profile(t) + profile(t - h)) / h**2
    assert ml.vcp_sd[0] == pytest.approx(1.0 / np.sqrt(-curv), rel=2e-3)


def test_bayes_predict_is_bayes_mean_structure(bayes_pair):
    ml, vb, df = bayes_pair
    # BayesMixedGLM's own model.predict applied to our estimates gives our numbers
    for linear in (False, True):
        assert np.allclose(ml.predict(linear=linear), vb.model.predict(ml.fe_mean, None, linear))
        X = vb.model.exog[:5]
        assert np.allclose(ml.predict(X, linear=linear), vb.model.predict(ml.fe_mean, X, linear))
    assert np.allclose(ml.predict(df.head(5)), ml.predict(vb.model.exog[:5]))
    assert isinstance(ml.predict(), np.ndarray)


# ------------------------------------------------------------------------------------ idioms (item 11)
@pytest.fixture(scope="module")
def poisson_fit():
    df = glmm_ext.simulate("poisson", n_groups=20, group_size=10, seed=1)
    df["f"] = np.where(df["x1"] > 0.5, "hi", np.where(df["x1"] < -0.5, "lo", "mid"))
    res = _quiet(GLMM.from_formula("y ~ x1 + x2", df, groups="g", family=sm.families.Poisson()).fit)
    return res, df


@pytest.mark.parametrize("new, groups", [
    ({"x1": [1.0, 2.0], "x2": [0.0, 1.0]}, None),
    ({"x1": [1.0, 2.0], "x2": [0.0, 1.0], "g": [0, 3]}, "g"),
    ({"x1": [1.0, 2.0], "x2": [0.0, 1.0]}, [0, 3]),
    ({"x1": 1.5, "x2": 1.0}, None),
])
def test_predict_takes_a_dict_like_statsmodels_formula_predict(poisson_fit, new, groups):
    res, _ = poisson_fit
    frame = pd.DataFrame(new) if np.ndim(new["x1"]) else pd.DataFrame(new, index=[0])
    expected = np.exp(res.params["Intercept"] + res.params["x1"] * frame["x1"] + res.params["x2"] * frame["x2"])
    if groups is not None:
        labels = frame["g"] if isinstance(groups, str) else pd.Series(groups)
        expected = expected * np.exp(labels.map(res._results._blup_map).to_numpy())
    assert np.allclose(res.predict(new, groups=groups), expected)


def test_drop_cols_then_predict_on_new_data(poisson_fit):
    _, df = poisson_fit
    model = GLMM.from_formula("y ~ x1 + C(f)", df, groups="g", family=sm.families.Poisson(), drop_cols=["C(f)[T.mid]"])
    res = _quiet(model.fit)
    assert list(res.params.index) == ["Intercept", "C(f)[T.lo]", "x1"]
    new = df.head(6)
    expected = np.exp(res.params["Intercept"] + res.params["x1"] * new["x1"] + res.params["C(f)[T.lo]"] * (new["f"] == "lo"))
    assert np.allclose(res.predict(new), expected)
    assert np.allclose(res.get_prediction(new).summary_frame()["mean"], expected)


@pytest.mark.parametrize("formula, kwargs, family, pattern", [
    ("y ~ x1 + offset(np.log(t))", {}, "poisson", r"exposure='t'"),
    ("y ~ x1 + offset(log(t)) + (1 | g)", {}, "poisson", r"offset\(log\(t\)\) in a formula is lme4's"),
    ("y ~ x1 + offset(z)", {"groups": "g"}, "poisson", r"offset= with the values of 'z'"),
    ("cbind(s, f) ~ x1", {"groups": "g"}, "binomial", r"'s \+ f ~ \.\.\.'"),
    ("cbind(s, f) ~ x1 + (1 | g)", {}, "binomial", r"'s \+ f ~ \.\.\.'"),
    ("y ~ x1", {"groups": "g", "weights": "t"}, "gaussian", r"use var_weights="),
    ("p ~ x1", {"groups": "g", "var_weights": "n"}, "binomial", r"give the numbers of trials as weights="),
])
def test_lme4_idioms_name_the_glmm_ext_way(formula, kwargs, family, pattern):
    df = glmm_ext.simulate("binomial", n_groups=10, group_size=5, trials=4, seed=3)
    df = df.rename(columns={"successes": "s", "failures": "f"})
    df["n"], df["p"] = df["s"] + df["f"], df["s"] / (df["s"] + df["f"])
    df["y"], df["t"], df["z"] = df["s"], 1.0 + df["x2"], 0.1 * df["x1"]
    fam = {"poisson": sm.families.Poisson(), "binomial": sm.families.Binomial(), "gaussian": None}[family]
    with pytest.raises(ValueError, match=pattern):
        GLMM.from_formula(formula, df, family=fam, **kwargs)


def test_binomial_proportion_with_weights_is_glm_s_fit():
    """The route the var_weights error points to gives statsmodels GLM's proportion fit when sigma_u -> 0."""
    df = glmm_ext.simulate("binomial", n_groups=30, group_size=6, trials=8, sigma_u=0.5, seed=5)
    df["n"] = df["successes"] + df["failures"]
    df["p"] = df["successes"] / df["n"]
    a = _quiet(GLMM.from_formula("p ~ x1", df, groups="g", family=sm.families.Binomial(), weights="n").fit)
    b = _quiet(GLMM.from_formula("successes + failures ~ x1", df, groups="g", family=sm.families.Binomial()).fit)
    assert np.allclose(a.params, b.params, rtol=1e-6) and a.llf == pytest.approx(b.llf, abs=1e-6)


def test_dask_frame_takes_its_group_from_a_bar_term():
    dd = pytest.importorskip("dask.dataframe")
    distributed = pytest.importorskip("distributed")
    df = glmm_ext.simulate("poisson", n_groups=15, group_size=8, seed=2)
    ref = _quiet(GLMM.from_formula("y ~ x1 + (1 | g)", df, family=sm.families.Poisson()).fit)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster):
        ddf = dd.from_pandas(df, npartitions=2)
        res = _quiet(GLMM.from_formula("y ~ x1 + (1 | g)", ddf, family=sm.families.Poisson()).fit)
        assert res.llf == pytest.approx(ref.llf, abs=1e-6)
        assert np.allclose(res.params, ref.params, rtol=1e-6)
        with pytest.raises(ValueError, match="random slopes .* not supported on a Dask"):
            GLMM.from_formula("y ~ x1 + (x1 | g)", ddf, family=sm.families.Poisson())
        with pytest.raises(ValueError, match="differ"):
            GLMM.from_formula("y ~ x1 + (1 | g)", ddf, groups="x2", family=sm.families.Poisson())


@pytest.mark.parametrize("formula", ["y ~ x1 + x2", "y ~ 0 + x1 + x2"])
def test_degrees_of_freedom_are_statsmodels_glm_s(formula):
    d = glmm_ext.simulate("poisson", n_groups=12, group_size=9, seed=1)
    res = _quiet(GLMM.from_formula(formula, d, groups="g", family=sm.families.Poisson()).fit)
    glm = smf.glm(formula, d, family=sm.families.Poisson()).fit()
    assert (res.df_model, res.df_resid) == (glm.df_model, glm.df_resid)
