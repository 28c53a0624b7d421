"""Negative binomial (NB2) results under statsmodels' names: ``scale`` is 1 as for statsmodels' NB GLM (its alpha
lives in the family), the estimated alpha is ``res.alpha`` (theta = 1/alpha ``res.theta``) on every structure,
and what reads the dispersion (loglike, residuals, simulation, tables, pickles) reads alpha."""
import os
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

import glmm_ext
from glmm_ext.inference._checks import null_lambda

from conftest import ANALYSIS_REF, DATA


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _nb(formula, df, **kwargs):
    fit = kwargs.pop("fit", {})
    model = _quiet(glmm_ext.GLMM.from_formula, formula, df, family=sm.families.NegativeBinomial(alpha=1.0), **kwargs)
    return _quiet(model.fit, **fit)


def _data(seed=4, sd_g=0.5, sd_slope=0.3, sd_h=0.3, n_g=30, m=12):
    """Counts NB2(alpha = 0.5) around exp(0.8 + 0.3 x + group intercept + group slope x + h effect)."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_g), m)
    h = np.tile(np.arange(m) % 4, n_g)
    x = rng.normal(size=n_g * m)
    eta = 0.8 + 0.3 * x + rng.normal(0, sd_g, n_g)[g] + rng.normal(0, sd_slope, n_g)[g] * x + rng.normal(0, sd_h, 4)[h]
    y = rng.poisson(rng.gamma(1 / 0.5, np.exp(eta) * 0.5))
    return pd.DataFrame({"y": y.astype(float), "x": x, "g": g, "h": h})


def _grouse():
    return pd.read_csv(os.path.join(DATA, "grouseticks.csv")).assign(
        HEIGHTs=lambda d: (d["HEIGHT"] - d["HEIGHT"].mean()) / d["HEIGHT"].std())


STRUCTURES = {
    "one intercept": lambda: _nb("TICKS ~ C(YEAR) + HEIGHTs", _grouse(), groups="BROOD"),
    "one intercept agq": lambda: _nb("y ~ x", _data(), groups="g", fit={"nagq": 7}),
    "slopes": lambda: _nb("y ~ x + (x | g)", _data()),
    "several terms": lambda: _nb("y ~ x + (1 | g) + (1 | h)", _data()),
}


@pytest.fixture(scope="module", params=list(STRUCTURES))
def structure(request):
    return request.param, STRUCTURES[request.param]()


def test_scale_is_statsmodels_nb_glm_scale_and_alpha_is_the_estimate(structure):
    name, res = structure
    df = _data()
    glm = sm.GLM(df.y, sm.add_constant(df[["x"]]), family=sm.families.NegativeBinomial(alpha=0.5)).fit()
    assert glm.scale == 1.0 and res.scale == 1.0  # statsmodels' NB GLM: alpha is in the family, not in scale
    assert 0.05 < res.alpha < 5 and res.theta == pytest.approx(1.0 / res.alpha, rel=1e-14)
    # cov_params keeps statsmodels' identity normalized_cov_params * scale, and the SEs are unchanged by it
    np.testing.assert_allclose(res.cov_params(), np.asarray(res.normalized_cov_params), rtol=1e-15)
    np.testing.assert_allclose(res.bse, np.sqrt(np.diag(res.cov_params())), rtol=1e-15)
    # alpha is the dispersion the likelihood is maximised in: the vector's last slot, llf there, lower either side
    pv = res.params_vector
    assert pv.index[-1] == "log alpha" and np.exp(pv.iloc[-1]) == pytest.approx(res.alpha, rel=1e-13)
    assert res.model.loglike(pv.to_numpy()) == pytest.approx(res.llf, abs=1e-8)
    for h in (-0.05, 0.05):
        assert res.model.loglike(pv.to_numpy() + np.r_[np.zeros(len(pv) - 1), h]) < res.llf - 1e-6
    table = res.dispersion_table()["Value"]
    assert table["alpha"] == res.alpha and table["theta"] == pytest.approx(res.theta, rel=1e-14)
    if name == "one intercept":  # glmmTMB's nbinom2 fit of the same model (tests/data/analysis_reference.R)
        assert res.theta == pytest.approx(ANALYSIS_REF["grouseticks"]["nb"]["theta"], rel=1e-3)


def test_loglike_with_alpha_equals_llf_and_refuses_alpha_as_scale(structure):
    name, res = structure
    model = res.model
    if not name.startswith("one intercept"):  # loglike(beta, var_re, ...) is for one random intercept
        with pytest.raises(ValueError, match="loglike\\(vector\\)"):
            model.loglike(res.params, alpha=res.alpha)
        return
    beta = np.asarray(res.params, float)
    assert model.loglike(beta, res.var_re, alpha=res.alpha) == pytest.approx(res.llf, rel=1e-12)
    assert model.loglike(beta, res.var_re, scale=1.0, alpha=res.alpha) == pytest.approx(res.llf, rel=1e-12)
    assert model.loglike(beta, res.var_re, alpha=2 * res.alpha) < res.llf - 1e-3
    with pytest.raises(ValueError, match="give its dispersion as alpha="):
        model.loglike(beta, res.var_re, scale=res.alpha)  # the old spelling is refused, not silently read
    for bad in (None, 0.0, -0.5, np.inf, np.nan, True, "0.5", [0.5, 0.6]):
        with pytest.raises(ValueError, match="alpha > 0"):
            model.loglike(beta, res.var_re, alpha=bad)
    with pytest.raises(ValueError, match="scale / alpha go with var_re"):
        model.loglike(res.params_vector.to_numpy(), alpha=res.alpha)


def test_loglike_alpha_is_refused_for_families_without_it():
    df = _data()
    model = _quiet(glmm_ext.GLMM.from_formula, "y ~ x", df, groups="g", family=sm.families.Poisson())
    with pytest.raises(ValueError, match="alpha is the negative binomial's dispersion"):
        model.loglike(np.array([0.8, 0.3]), 0.2, alpha=0.5)


def test_vanishing_group_variance_gives_statsmodels_nb_regression():
    """No group effect in the data: the fit is at sigma_u = 0, where the GLMM is statsmodels' NB2 regression
    (discrete NegativeBinomial, alpha by ML) and, at that alpha, its NB GLM: beta, alpha, SEs, llf, scale 1."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=400)
    y = rng.poisson(rng.gamma(2.0, np.exp(0.5 + 0.4 * x) * 0.5)).astype(float)
    df = pd.DataFrame({"y": y, "x": x, "g": np.repeat(np.arange(40), 10)})
    res = _nb("y ~ x", df, groups="g")
    X = sm.add_constant(df[["x"]])
    nb2 = sm.NegativeBinomial(df.y, X).fit(disp=0, method="newton", maxiter=100, tol=1e-12)
    glm = sm.GLM(df.y, X, family=sm.families.NegativeBinomial(alpha=nb2.params["alpha"])).fit()
    assert res.singular and res.var_re < 1e-10
    assert res.scale == glm.scale == 1.0
    assert res.alpha == pytest.approx(nb2.params["alpha"], rel=1e-6)
    np.testing.assert_allclose(res.params, glm.params, atol=1e-6)
    np.testing.assert_allclose(res.params, nb2.params[:2], atol=1e-6)
    np.testing.assert_allclose(res.bse, nb2.bse[:2], rtol=1e-6)  # (alpha estimated: the GLM's SEs take it fixed)
    assert res.llf == pytest.approx(nb2.llf, abs=1e-8) and res.llf == pytest.approx(glm.llf, abs=1e-8)
    np.testing.assert_allclose(res.resid_pearson, glm.resid_pearson, atol=1e-5)  # V = mu + alpha mu^2, not x scale
    np.testing.assert_allclose(res.resid_deviance, glm.resid_deviance, atol=1e-5)


def test_simulation_and_latent_variance_read_alpha():
    """Draws given the BLUPs have Var = mu + alpha mu^2 (alpha, not scale = 1: that would be Poisson's mu); the
    latent residual variance of r2 is ln(1 + 1/lambda + alpha)."""
    res = STRUCTURES["slopes"]()
    sims = res.simulate(nsim=4000, seed=1).to_numpy()
    mu = np.asarray(res.fittedvalues, float)
    ratio = sims.var(axis=1, ddof=1) / (mu + res.alpha * mu ** 2)
    assert ratio.mean() == pytest.approx(1.0, abs=0.02)
    lam = null_lambda(res)  # r2's lambda: the null model's mean count (performance's)
    assert res.r2()["var_residual"] == pytest.approx(np.log1p(1.0 / lam + res.alpha), rel=1e-12)
    mu_fixed = np.exp(res.model.predict(res.params, which="linear"))  # delta: mean of V(mu) / mu^2
    assert res.r2("delta")["var_residual"] == pytest.approx(np.mean(1.0 / mu_fixed + res.alpha), rel=1e-12)
    lam = res.latent_lambda
    lat = res.latent_variance_table()["Latent residual variance"]
    assert lat["lognormal approximation"] == pytest.approx(np.log1p(1.0 / lam + res.alpha), rel=1e-12)
    text = res.summary().as_text()
    assert f"{res.alpha:.4f}" in text and "NB2: Var = mu + alpha mu^2" in text


def test_overdispersion_pearson_uses_alpha():
    res = STRUCTURES["several terms"]()
    y, mu = res.model.endog, np.asarray(res.fittedvalues, float)
    chisq = float(np.sum((y - mu) ** 2 / (mu + res.alpha * mu ** 2)))
    out = res.overdispersion()
    assert out["chisq"] == pytest.approx(chisq, rel=1e-10)
    assert res.pearson_chi2 == pytest.approx(chisq, rel=1e-10)  # GLM's name, the same residuals
    assert out["pvalue"] == pytest.approx(stats.chi2.sf(chisq, out["df"]), rel=1e-10)


def test_pickles_written_when_scale_held_alpha_load_with_scale_one():
    res = STRUCTURES["one intercept agq"]()
    cov = np.asarray(res.cov_params())
    old = pickle.loads(pickle.dumps(res))
    old = old._results  # the results inside statsmodels' wrapper, as an earlier version stored them:
    old.scale, old.normalized_cov_params = res.alpha, np.asarray(res.normalized_cov_params) / res.alpha
    back = pickle.loads(pickle.dumps(old))  # as an earlier version wrote it
    assert back.scale == 1.0 and back.alpha == res.alpha
    np.testing.assert_allclose(back.cov_params(), cov, rtol=1e-14)
    fresh = pickle.loads(pickle.dumps(res))
    assert fresh.scale == 1.0 and np.array_equal(fresh.cov_params(), cov)


def test_zero_inflated_nb_scale_is_one():
    sal = pd.read_csv(os.path.join(DATA, "zi", "salamanders.csv"))
    res = _nb("count ~ mined + (1 | site)", sal, zi_formula="~ mined")
    assert res.scale == 1.0 and np.isfinite(res.llf)
