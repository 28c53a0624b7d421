"""Results of zero-inflated / hurdle / dispersion fits: tables, prediction, simulation, residual checks,
model comparison, summary, CLI, and the refusals (bad input, the zero part's boundary)."""
import io
import json
import os
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats
from scipy.special import expit

import glmm_ext
from glmm_ext.cli import run
from glmm_ext.families import NegativeBinomial1, TruncatedNegativeBinomial, TruncatedPoisson

ZI = os.path.join(os.path.dirname(__file__), "data", "zi")
SAL = pd.read_csv(os.path.join(ZI, "salamanders.csv"))
FORMULA = "count ~ spp + mined + (1 | site)"


def quiet_fit(model, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(**kw)


@pytest.fixture(scope="module")
def zip_fit():
    return quiet_fit(glmm_ext.GLMM.from_formula(FORMULA, SAL, family=sm.families.Poisson(), zi_formula="~ mined"))


@pytest.fixture(scope="module")
def hurdle_fit():
    return quiet_fit(glmm_ext.GLMM.from_formula(FORMULA, SAL, family=TruncatedNegativeBinomial(),
                                                zi_formula="~ mined"))


def test_parameter_names_and_tables(zip_fit):
    res = zip_fit
    assert list(res.params.index[-3:]) == ["zi_Intercept", "zi_mined[T.yes]", "site SD"]
    assert list(res.fe_params.index) == list(res.model.exog_names)
    assert list(res.zi_params.index) == ["Intercept", "mined[T.yes]"]
    zt = res.zi_table()
    np.testing.assert_allclose(zt["OR"], np.exp(zt["estimate"]))
    np.testing.assert_allclose(zt["std_err"], res.bse[["zi_Intercept", "zi_mined[T.yes]"]])
    ci = res.conf_int().loc[["zi_Intercept", "zi_mined[T.yes]"]].to_numpy()
    np.testing.assert_allclose(zt[["ci_lower 95%", "ci_upper 95%"]].to_numpy(), ci)
    np.testing.assert_allclose(zt["pvalue"], 2 * stats.norm.sf(np.abs(zt["estimate"] / zt["std_err"])))
    ft = res.fixed_effects_table()
    np.testing.assert_allclose(ft["IRR"], np.exp(res.fe_params))
    assert res.aic == pytest.approx(-2 * res.llf + 2 * len(res.params))
    assert res.bic == pytest.approx(-2 * res.llf + np.log(644) * len(res.params))
    assert np.isnan(res.icc)
    assert res.model_fit_table()["ICC"].startswith("N/A")
    opt = res.optsummary
    assert res.converged and opt["decrement"] < 1e-7 and opt["max_abs_gradient"] < 1e-3
    re = res.random_effects_table()
    assert re.loc[0, "sd"] == pytest.approx(res.params["site SD"])


def test_predictions_on_each_scale(zip_fit, hurdle_fit):
    res = zip_fit
    mu, pz = res.predict(which="conditional"), res.predict(which="zprob")
    np.testing.assert_allclose(res.predict(which="mean"), (1 - pz) * mu)
    np.testing.assert_allclose(np.log(mu), res.predict(which="linear"))
    np.testing.assert_allclose(res.predict(SAL, which="mean"), res.predict(which="mean"))
    new = SAL.iloc[:3].assign(site="a site never seen")
    np.testing.assert_allclose(res.predict(new), res.predict(SAL.iloc[:3], re=False))
    # hurdle: E[y] = (1 - pz) mu / (1 - f(0)) with NB2's f(0) = (theta / (theta + mu))^theta
    h = hurdle_fit
    th = np.exp(h.disp_params.iloc[0])
    mu, pz = h.predict(which="conditional"), h.predict(which="zprob")
    np.testing.assert_allclose(h.predict(which="mean"), (1 - pz) * mu / (1 - (th / (th + mu)) ** th))
    assert abs(pz.mean() - np.mean(SAL["count"] == 0)) < 0.01  # the zero part fits the zeros


def test_get_prediction_intervals(zip_fit):
    res = zip_fit
    lin = res.get_prediction(which="linear")
    X = res.model.zdesign.X[0]
    C = res.cov_params().iloc[:X.shape[1], :X.shape[1]].to_numpy()
    np.testing.assert_allclose(lin["se"], np.sqrt(np.einsum("ij,jk,ik->i", X, C, X)))
    for which in ("mean", "conditional", "zprob", "linear"):
        p = res.get_prediction(which=which)
        np.testing.assert_allclose(p["predicted"], res.predict(which=which))
        assert (p["ci_lower"] <= p["predicted"] + 1e-12).all() and (p["predicted"] <= p["ci_upper"] + 1e-12).all()
        assert (p["se"] > 0).all()
    zp = res.get_prediction(which="zprob")
    assert (zp["ci_lower"] > 0).all() and (zp["ci_upper"] < 1).all()
    # the mean's delta-method SE against a difference quotient through the public predict
    mean = res.get_prediction(which="mean")["se"].to_numpy()
    assert np.all(np.isfinite(mean)) and mean.max() < 10


def test_simulate_and_quantile_residuals(zip_fit):
    res = zip_fit
    sims = res.simulate(400, seed=2)
    assert sims.shape == (644, 400)
    np.testing.assert_allclose(sims.mean(axis=1).mean(), res.predict(which="mean").mean(), rtol=0.03)
    zeros = np.mean(sims == 0)
    assert abs(zeros - np.mean(SAL["count"] == 0)) < 0.03
    # data simulated from the fitted ZIP, refitted by ZIP: the zero-inflation test passes
    fake = SAL.assign(count=res.simulate(1, seed=5)[:, 0])
    refit = quiet_fit(glmm_ext.GLMM.from_formula(FORMULA, fake, family=sm.families.Poisson(), zi_formula="~ mined"))
    qr = refit.quantile_residuals(nsim=250, seed=3)
    assert qr.tests.loc["zero-inflation (observed / simulated zeros)", "pvalue"] > 0.05
    assert qr.tests.loc["uniformity (KS)", "pvalue"] > 0.05
    assert ((qr.residuals >= 0) & (qr.residuals <= 1)).all()
    # the same data under a Poisson GLMM without the zero part: too many zeros
    plain = quiet_fit(glmm_ext.GLMM.from_formula(FORMULA, SAL, family=sm.families.Poisson()))
    assert plain.quantile_residuals(nsim=250, seed=3).tests.loc[
        "zero-inflation (observed / simulated zeros)", "pvalue"] < 0.05


def test_anova_between_count_models(zip_fit, hurdle_fit):
    pois = quiet_fit(glmm_ext.GLMM.from_formula(FORMULA, SAL, family=sm.families.Poisson()))
    nb = quiet_fit(glmm_ext.GLMM.from_formula(FORMULA, SAL, family=sm.families.NegativeBinomial(alpha=1.0)))
    zinb = quiet_fit(glmm_ext.GLMM.from_formula(FORMULA, SAL, family=sm.families.NegativeBinomial(alpha=1.0),
                                                zi_formula="~ mined"))
    table = glmm_ext.anova(pois, zip_fit, nb, zinb, hurdle_fit, names=["P", "ZIP", "NB", "ZINB", "hurdle"])
    assert list(table["npar"]) == sorted(table["npar"])
    for name, res in (("P", pois), ("ZIP", zip_fit), ("NB", nb), ("ZINB", zinb), ("hurdle", hurdle_fit)):
        assert table.loc[name, "logLik"] == pytest.approx(res.llf)
        assert table.loc[name, "AIC"] == pytest.approx(-2 * res.llf + 2 * table.loc[name, "npar"])
    assert table.loc["ZIP", "npar"] == pois.k_params + 2
    assert zinb.llf > zip_fit.llf and zip_fit.llf > pois.llf
    other = quiet_fit(glmm_ext.GLMM.from_formula(FORMULA, SAL.iloc[:600], family=sm.families.Poisson(),
                                                 zi_formula="~ 1"))
    with pytest.raises(ValueError, match="different rows"):
        glmm_ext.anova(zip_fit, other)


def test_summary_text_and_html(zip_fit, hurdle_fit):
    for res in (zip_fit, hurdle_fit):
        text = res.summary().as_text()
        assert max(len(line) for line in text.splitlines()) <= 100
        assert "Zero-inflation model" in text and "Random effects" in text
        assert "<table" in res._repr_html_()
    assert "Dispersion model (log theta)" in hurdle_fit.summary().as_text()
    assert "P(y = 0)" in hurdle_fit.summary().as_text()


def test_dispersion_formula_gaussian_and_gamma():
    rng = np.random.default_rng(4)
    n, g = 400, 20
    grp = rng.integers(0, g, n)
    x = rng.uniform(size=n)
    b = rng.normal(scale=0.3, size=g)
    mu = np.exp(1 + 0.5 * x + b[grp])
    phi = np.exp(-1.5 + 1.0 * x)
    df = pd.DataFrame({"y": rng.gamma(1 / phi, mu * phi), "x": x, "g": grp})
    res = quiet_fit(glmm_ext.GLMM.from_formula("y ~ x + (1|g)", df, family=sm.families.Gamma(sm.families.links.Log()),
                                               disp_formula="~ x"))
    assert res.converged
    est, se = res.disp_params.to_numpy(), res.bse[["disp_Intercept", "disp_x"]].to_numpy()
    assert np.all(np.abs(est - [-1.5, 1.0]) < 4 * se)
    df["z"] = 10 + 2 * x + b[grp] + rng.normal(size=n) * np.sqrt(np.exp(0.2 + 1.5 * x))
    gres = quiet_fit(glmm_ext.GLMM.from_formula("z ~ x + (1|g)", df, family=sm.families.Gaussian(),
                                                disp_formula="~ x"))
    est, se = gres.disp_params.to_numpy(), gres.bse[["disp_Intercept", "disp_x"]].to_numpy()
    assert np.all(np.abs(est - [0.2, 1.5]) < 4 * se)


def test_boundary_of_the_zero_part_is_flagged():
    """Fewer zeros than the Poisson gives: the zero-inflation probability's estimate is 0 (the boundary)."""
    rng = np.random.default_rng(1)
    n, g = 300, 15
    grp = rng.integers(0, g, n)
    y = rng.poisson(np.exp(0.7 + rng.normal(scale=0.3, size=g)[grp]))
    y[(y == 0) & (rng.uniform(size=n) < 0.6)] = 1
    df = pd.DataFrame({"y": y, "g": grp})
    with pytest.warns(glmm_ext.ZIBoundaryWarning, match="zero part"):
        res = glmm_ext.GLMM.from_formula("y ~ 1 + (1|g)", df, family=sm.families.Poisson(), zi_formula="~ 1").fit()
    assert res.zi_boundary and res.predict(which="zprob").max() < 1e-4
    assert "boundary fit of the zero part" in res.summary().as_text()


@pytest.mark.parametrize("kwargs,match", [
    (dict(family=sm.families.Poisson(), zi_formula="~ 1", data="nozeros"), "has none"),
    (dict(family=sm.families.Gaussian(), zi_formula="~ 1"), "count family"),
    (dict(family=sm.families.Poisson(), disp_formula="~ mined"), "Poisson has none"),
    (dict(family=TruncatedPoisson()), "zi_formula"),
    (dict(family=sm.families.NegativeBinomial(alpha=1.0), disp_formula="~ 1 + (1|site)"), "fixed effects only"),
    (dict(family=sm.families.Poisson(), zi_formula="~ nosuchcolumn"), "could not be evaluated"),
    (dict(family=sm.families.Poisson(), zi_formula="y ~ 1"), "one-sided"),
    (dict(family=sm.families.Binomial(), zi_formula="~ 1"), "not supported"),
    (dict(family=sm.families.Poisson(), zi_formula="~ 1", data="negative"), "non-negative integer"),
    (dict(family=NegativeBinomial1(), zi_formula="~ 1", groups=np.arange(644)), "column name"),
])
def test_bad_input_is_a_clear_value_error(kwargs, match):
    data = SAL.copy()
    kind = kwargs.pop("data", None)
    if kind == "nozeros":
        data["count"] = data["count"] + 1
    elif kind == "negative":
        data.loc[0, "count"] = -1
    before = data.copy()
    with pytest.raises(ValueError, match=match):
        glmm_ext.GLMM.from_formula(FORMULA, data, **kwargs)
    pd.testing.assert_frame_equal(data, before)


def test_singular_term_is_fixed_at_zero():
    """spp both fixed and random: its SD is 0 (a singular fit), without a standard error; the rest have one."""
    with pytest.warns(glmm_ext.SingularFitWarning):
        res = glmm_ext.GLMM.from_formula("count ~ spp + mined + (1 | site) + (1 | spp)", SAL,
                                         family=sm.families.Poisson(), zi_formula="~ mined").fit()
    assert res.params["spp SD"] == 0.0 and np.isnan(res.bse["spp SD"]) and res.singular
    assert res.bse.drop("spp SD").notna().all() and res.converged
    one = quiet_fit(glmm_ext.GLMM.from_formula("count ~ spp + mined + (1 | site)", SAL, family=sm.families.Poisson(),
                                               zi_formula="~ mined"))
    assert abs(res.llf - one.llf) < 1e-6


def test_groups_argument_is_the_random_intercept():
    a = glmm_ext.GLMM.from_formula("count ~ spp + mined", SAL, groups="site", family=sm.families.Poisson(),
                                   zi_formula="~ 1")
    b = glmm_ext.GLMM.from_formula(FORMULA, SAL, groups="site", family=sm.families.Poisson(), zi_formula="~ 1")
    assert a.param_names == b.param_names and a.param_names[-1] == "site SD"
    theta = b.start_params_default()
    assert a.loglike(theta) == b.loglike(theta)


def test_missing_values_are_dropped_and_counted():
    data = SAL.copy()
    data.loc[[3, 7], "mined"] = np.nan
    model = glmm_ext.GLMM.from_formula(FORMULA, data, family=sm.families.Poisson(), zi_formula="~ mined")
    assert model.nobs == 642 and model.zdesign.n_dropped == 2
    with pytest.raises(ValueError, match="missing"):
        glmm_ext.GLMM.from_formula(FORMULA, data, family=sm.families.Poisson(), zi_formula="~ 1", missing="raise")


def test_cli_zi_and_disp_formula(tmp_path):
    out = io.StringIO()
    path = os.path.join(ZI, "salamanders.csv")
    js = tmp_path / "fit.json"
    run([path, "--formula", FORMULA, "--family", "truncated_nbinom2", "--zi-formula", "~ mined",
         "--json", str(js)], out=out)
    text = out.getvalue()
    assert "hurdle" in text and "Zero-inflation model" in text
    saved = json.loads(js.read_text())
    assert saved["zero_part"] == "hurdle" and "zi_mined[T.yes]" in saved["params"]
    out = io.StringIO()
    run([path, "--formula", FORMULA, "--family", "negativebinomial", "--disp-formula", "~ mined"], out=out)
    assert "disp_mined[T.yes]" in out.getvalue() or "Dispersion model" in out.getvalue()
    with pytest.raises(SystemExit):
        run([path, "--formula", FORMULA, "--family", "poisson", "--zi-formula", "~ __import__('os').getcwd()"],
            out=io.StringIO())
