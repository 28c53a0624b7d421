"""The statsmodels results API (LikelihoodModelResults, GLMResults, MixedLMResults names) on three structures: one
random intercept (Binomial), two crossed terms (Gaussian REML and Poisson) and a zero-inflated Poisson.

Every name either returns statsmodels' number, recomputed here independently (Wald statistics from params and
a finite-difference or dense-matrix covariance, criteria with k counted by hand, contrasts and quadratic forms by
hand, residuals from the random effects and statsmodels' family formulas), or raises an error whose message says
why (`NotAvailableError`, an AttributeError so that ``hasattr`` is False)."""
import copy
import os
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats
from scipy.special import expit

import glmm_ext
from glmm_ext._results_api import NotAvailableError

N = 300
STRUCTURES = ["one", "gauss", "pois", "zi"]
#: parameters counted by hand: fixed effects + variance parameters (+ residual variance / zero part)
K_PARAMS = {"one": 2 + 1, "gauss": 2 + 2 + 1, "pois": 2 + 2, "zi": 2 + 1 + 1}


def _data(seed=1):
    rng = np.random.default_rng(seed)
    g, a, b = rng.integers(0, 15, N), rng.integers(0, 8, N), rng.integers(0, 6, N)
    x = rng.normal(size=N)
    yb = rng.binomial(1, expit(0.3 + 0.6 * x + rng.normal(0, 0.7, 15)[g]))
    eta = 0.5 + 0.4 * x + rng.normal(0, 0.5, 8)[a] + rng.normal(0, 0.4, 6)[b]
    yp = rng.poisson(np.exp(eta))
    return pd.DataFrame({"yb": yb, "yg": eta + rng.normal(0, 0.8, N), "yp": yp,
                         "z": np.where(rng.uniform(size=N) < 0.3, 0, yp), "x": x,
                         "g": [f"g{v}" for v in g], "a": [f"a{v}" for v in a], "b": [f"b{v}" for v in b]})


DF = _data()


def _fit(kind):
    specs = {"one": ("yb ~ x + (1|g)", {"family": sm.families.Binomial()}),
             "gauss": ("yg ~ x + (1|a) + (1|b)", {}),
             "pois": ("yp ~ x + (1|a) + (1|b)", {"family": sm.families.Poisson()}),
             "zi": ("z ~ x + (1|a)", {"family": sm.families.Poisson(), "zi_formula": "~1"})}
    formula, kwargs = specs[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return glmm_ext.GLMM.from_formula(formula, DF, **kwargs).fit()


@pytest.fixture(scope="module")
def fits():
    return {kind: _fit(kind) for kind in STRUCTURES}


def _fixed_k(res):
    """Positions of the conditional fixed effects (Intercept, x) in params."""
    return len(res.model.exog_names)


def _y(kind):
    return DF[{"one": "yb", "gauss": "yg", "pois": "yp", "zi": "z"}[kind]].to_numpy(float)


# ------------------------------------------------------------------------------------------ Wald statistics
@pytest.mark.parametrize("kind", STRUCTURES)
def test_bse_tvalues_pvalues_conf_int_from_params_and_cov(fits, kind):
    res = fits[kind]
    params, cov = np.asarray(res.params, float), np.asarray(res.cov_params(), float)
    assert list(res.cov_params().index) == list(res.params.index) == list(res.model.data.param_names)
    np.testing.assert_allclose(cov, np.asarray(res.normalized_cov_params) * res.scale, rtol=1e-12)
    np.testing.assert_allclose(res.bse, np.sqrt(np.diag(cov)), rtol=1e-12)
    assert res.use_t is False
    z = params / np.sqrt(np.diag(cov))
    np.testing.assert_allclose(res.tvalues, z, rtol=1e-12)
    np.testing.assert_allclose(res.pvalues, 2 * stats.norm.sf(np.abs(z)), rtol=1e-10)
    ci = res.conf_int(0.1)
    q = stats.norm.isf(0.05)
    np.testing.assert_allclose(ci[0], params - q * np.sqrt(np.diag(cov)), rtol=1e-12)
    np.testing.assert_allclose(ci[1], params + q * np.sqrt(np.diag(cov)), rtol=1e-12)
    assert list(ci.index) == list(res.params.index)
    sub = res.cov_params(column=[1])  # statsmodels' own wrapper fails here on pandas data
    assert list(sub.index) == ["x"] and sub.iloc[0, 0] == pytest.approx(cov[1, 1], rel=1e-12)
    assert res.cov_params(column=1) == pytest.approx(cov[1, 1], rel=1e-12)
    R = np.zeros((1, len(params)))
    R[0, :2] = [1.0, 2.0]
    np.testing.assert_allclose(res.cov_params(r_matrix=R), R @ cov @ R.T, rtol=1e-12)


def _hessian(f, x0, h):
    k = len(x0)
    H = np.zeros((k, k))
    for i in range(k):
        for j in range(k):
            ei, ej = np.eye(k)[i] * h[i], np.eye(k)[j] * h[j]
            H[i, j] = (f(x0 + ei + ej) - f(x0 + ei - ej) - f(x0 - ei + ej) + f(x0 - ei - ej)) / (4 * h[i] * h[j])
    return H


def test_one_term_bse_is_the_inverse_hessian_of_the_laplace_loglik(fits):
    res = fits["one"]
    x0 = res.params_vector.to_numpy()  # beta, sigma_u: what model.loglike takes
    assert res.model.loglike(x0) == pytest.approx(res.llf, rel=1e-9)
    cov = np.linalg.inv(-_hessian(res.model.loglike, x0, 1e-3 * np.maximum(np.abs(x0), 0.1)))
    np.testing.assert_allclose(res.bse, np.sqrt(np.diag(cov))[:2], rtol=2e-3)


def test_zero_inflated_bse_is_the_inverse_hessian_of_the_loglik(fits):
    res = fits["zi"]
    x0 = np.asarray(res.params, float)
    assert res.model.loglike(x0) == pytest.approx(res.llf, rel=1e-9)
    cov = np.linalg.inv(-_hessian(res.model.loglike, x0, 1e-3 * np.maximum(np.abs(x0), 0.1)))
    np.testing.assert_allclose(res.bse, np.sqrt(np.diag(cov)), rtol=5e-3)


def _dense_reml(res):
    """REML log-likelihood and (X'V^-1X)^-1 from V = sum_k sigma_k^2 Z_k Z_k' + sigma^2 I (dense)."""
    X = np.column_stack([np.ones(N), DF["x"]])
    V = res.scale * np.eye(N)
    for term, cov in res.cov_re.items():
        Z = pd.get_dummies(DF[term]).to_numpy(float)
        V += float(cov.iloc[0, 0]) * Z @ Z.T
    Vi = np.linalg.inv(V)
    XtViX = X.T @ Vi @ X
    beta = np.linalg.solve(XtViX, X.T @ Vi @ _y("gauss"))
    r = _y("gauss") - X @ beta
    llf = -0.5 * ((N - 2) * np.log(2 * np.pi) + np.linalg.slogdet(V)[1] + np.linalg.slogdet(XtViX)[1] + r @ Vi @ r)
    return llf, beta, np.linalg.inv(XtViX)


def test_crossed_gaussian_reml_numbers_match_the_dense_reml(fits):
    res = fits["gauss"]
    llf, beta, cov = _dense_reml(res)
    assert res.method == "REML" and res.llf == pytest.approx(llf, rel=1e-8)
    np.testing.assert_allclose(res.params, beta, rtol=1e-6)
    np.testing.assert_allclose(res.cov_params(), cov, rtol=1e-6)
    assert set(res.cov_re) == {"a", "b"} and res.scale > 0


# ------------------------------------------------------------------------------------------ criteria, sizes
@pytest.mark.parametrize("kind", STRUCTURES)
def test_information_criteria_count_every_estimated_parameter(fits, kind):
    res = fits[kind]
    k, llf = K_PARAMS[kind], res.llf
    assert res.k_params == k and res.nobs == N
    assert res.aic == pytest.approx(-2 * llf + 2 * k, rel=1e-12)
    assert res.bic == pytest.approx(-2 * llf + k * np.log(N), rel=1e-12)
    assert res.bic_llf == pytest.approx(res.bic, rel=1e-12)
    assert res.info_criteria("aic") == pytest.approx(res.aic, rel=1e-12)
    assert res.info_criteria("AIC", dk_params=1) == pytest.approx(-2 * llf + 2 * (k + 1), rel=1e-12)
    assert res.info_criteria("aicc") == pytest.approx(-2 * llf + 2 * k + 2 * k * (k + 1) / (N - k - 1), rel=1e-12)
    assert res.info_criteria("hqic") == pytest.approx(-2 * llf + 2 * k * np.log(np.log(N)), rel=1e-12)
    with pytest.raises(ValueError, match="quasi-likelihood"):
        res.info_criteria("qaic")
    with pytest.raises(ValueError, match="crit must be one of"):
        res.info_criteria("cp")
    # statsmodels' (GLM's, MixedLM's, ZeroInflatedPoisson's) df: the conditional regressors less one, n - rank(X)
    assert (res.df_model, res.df_resid) == (1, N - 2)
    if kind == "zi":
        assert res.k_extra == 2  # zi_Intercept and the SD of a


@pytest.mark.parametrize("kind", STRUCTURES)
def test_optimiser_record_and_fit_facts(fits, kind):
    res = fits[kind]
    ret = res.mle_retvals
    assert ret["converged"] is True and res.converged is True
    assert ret["fopt"] == pytest.approx(-res.llf / N, rel=1e-12)  # statsmodels minimises -llf / nobs
    assert int(ret["iterations"]) >= 1 and isinstance(ret["message"], str)
    assert res.mle_settings["optimizer"]
    assert isinstance(res.family, type(res.model.family))
    assert res.cov_type and res.k_constant == 1
    assert res.scale == (1.0 if kind != "gauss" else pytest.approx(float(res.vcomp["Variance"].iloc[-1])))
    assert res.k_fe == 2
    if kind == "one":  # MixedLM's sizes of one grouping factor with a random intercept
        assert (res.k_re, res.k_re2, res.k_vc) == (1, 1, 0)
    elif kind != "zi":  # MixedLM would encode crossed terms as variance components: no number claimed
        for name in ("k_re", "k_re2", "k_vc"):
            assert not hasattr(res, name)
            with pytest.raises(NotAvailableError, match="several random-effect terms"):
                getattr(res, name)


# ------------------------------------------------------------------------------------------ fitted values
def _conditional_eta(res, kind):
    """X beta + each row's random effects, read from res.random_effects."""
    eta = res.fe_params["Intercept"] + res.fe_params["x"] * DF["x"].to_numpy()
    if kind == "one":
        return eta + np.array([res.random_effects[g].iloc[0] for g in DF["g"]])
    if kind == "zi":
        return eta + res.random_effects[("cond", "a")]["Intercept"].reindex(DF["a"]).to_numpy()
    for term in ("a", "b"):
        eta = eta + res.random_effects[term]["Intercept"].reindex(DF[term]).to_numpy()
    return eta


@pytest.mark.parametrize("kind", ["one", "gauss", "pois"])
def test_glm_residuals_at_the_conditional_means(fits, kind):
    res = fits[kind]
    y, eta = _y(kind), _conditional_eta(res, kind)
    mu = {"one": expit, "gauss": lambda e: e, "pois": np.exp}[kind](eta)
    np.testing.assert_allclose(res.mu, mu, rtol=1e-8)
    np.testing.assert_allclose(res.fittedvalues, mu, rtol=1e-8)
    np.testing.assert_allclose(res.predict(), mu, rtol=1e-8)  # no data: the fitted rows, their random effects
    np.testing.assert_allclose(res.resid_response, y - mu, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(res.resid, y - mu, rtol=1e-7, atol=1e-10)
    var = {"one": mu * (1 - mu), "gauss": np.ones(N), "pois": mu}[kind]
    np.testing.assert_allclose(res.resid_pearson, (y - mu) / np.sqrt(var), rtol=1e-7, atol=1e-10)
    assert res.pearson_chi2 == pytest.approx(np.sum((y - mu) ** 2 / var), rel=1e-8)
    with np.errstate(divide="ignore", invalid="ignore"):
        unit = {"one": -2 * (y * np.log(mu) + (1 - y) * np.log(1 - mu)),
                "gauss": (y - mu) ** 2,
                "pois": 2 * (np.where(y > 0, y * np.log(y / mu), 0.0) - (y - mu))}[kind]
    np.testing.assert_allclose(res.resid_deviance, np.sign(y - mu) * np.sqrt(unit), rtol=1e-7, atol=1e-10)
    deriv = {"one": 1 / (mu * (1 - mu)), "gauss": np.ones(N), "pois": 1 / mu}[kind]
    np.testing.assert_allclose(res.resid_working, (y - mu) * deriv, rtol=1e-7, atol=1e-10)
    if kind != "gauss":
        assert res.overdispersion()["chisq"] == pytest.approx(res.pearson_chi2, rel=1e-12)


def test_binomial_trials_residuals_are_statsmodels_glm_formulas_at_the_conditional_means():
    """statsmodels' own GLMResults evaluated at the GLMM's conditional means (the random part as an offset)."""
    from statsmodels.genmod.generalized_linear_model import GLMResults

    cbpp = glmm_ext.datasets.load_cbpp()
    formula = "incidence + I(size - incidence) ~ C(period)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = glmm_ext.GLMM.from_formula(formula + " + (1|herd)", cbpp, family=sm.families.Binomial()).fit()
    b = np.array([res.random_effects[h].iloc[0] for h in cbpp["herd"]])
    glm = sm.GLM.from_formula(formula, cbpp, family=sm.families.Binomial(), offset=b)
    oracle = GLMResults(glm, res.params.to_numpy(), normalized_cov_params=np.eye(len(res.params)), scale=1.0)
    np.testing.assert_allclose(res.mu, oracle.mu, rtol=1e-10)
    for name in ("resid_response", "resid_pearson", "resid_deviance"):  # resid_response counts successes
        np.testing.assert_allclose(getattr(res, name), getattr(oracle, name), rtol=1e-8, atol=1e-12, err_msg=name)
    assert res.pearson_chi2 == pytest.approx(oracle.pearson_chi2, rel=1e-10)
    with pytest.raises(NotAvailableError, match="trials twice"):
        res.resid_working


def _brute_moments(pmf):
    """E[y] and Var[y] per row by summing a (rows x 0..K) probability table."""
    k = np.arange(pmf.shape[1])
    assert np.allclose(pmf.sum(axis=1), 1.0, atol=1e-10)
    mean = pmf @ k
    return mean, pmf @ (k * k) - mean * mean


def test_zero_inflated_mean_and_residuals(fits):
    res = fits["zi"]
    p, mu_c = expit(res.params["zi_Intercept"]), np.exp(_conditional_eta(res, "zi"))
    pmf = (1 - p) * stats.poisson.pmf(np.arange(80)[None, :], mu_c[:, None])
    pmf[:, 0] += p  # structural zeros
    mean, var = _brute_moments(pmf)
    np.testing.assert_allclose(res.mu, mean, rtol=1e-8)  # E[y] = (1 - p) mu
    np.testing.assert_allclose(res.predict(), mean, rtol=1e-8)
    np.testing.assert_allclose(res.resid_response, _y("zi") - mean, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(res.resid_pearson, (_y("zi") - mean) / np.sqrt(var), rtol=1e-7, atol=1e-10)
    assert res.pearson_chi2 == pytest.approx(np.sum((_y("zi") - mean) ** 2 / var), rel=1e-8)
    for name in ("resid_deviance", "resid_working", "resid_anscombe"):
        assert not hasattr(res, name)
        with pytest.raises(NotAvailableError, match=f"{name} is not available .*(zero-inflated|IRLS)"):
            getattr(res, name)


def test_hurdle_pearson_residuals_use_the_truncated_moments():
    from glmm_ext.families import TruncatedNegativeBinomial

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = glmm_ext.GLMM.from_formula("z ~ x + (1|a)", DF, family=TruncatedNegativeBinomial(),
                                         zi_formula="~1").fit()
    p = expit(res.params["zi_Intercept"])  # P(y = 0)
    mu = np.exp(_conditional_eta(res, "zi"))
    theta = np.exp(res.params["disp_Intercept"])  # NB2: Var = mu + mu^2 / theta
    counts = stats.nbinom.pmf(np.arange(150)[None, :], theta, theta / (theta + mu[:, None]))
    pmf = (1 - p) * counts / (1 - counts[:, :1])
    pmf[:, 0] = p
    mean, var = _brute_moments(pmf)
    np.testing.assert_allclose(res.mu, mean, rtol=1e-8)
    np.testing.assert_allclose(res.resid_pearson, (_y("zi") - mean) / np.sqrt(var), rtol=1e-6, atol=1e-10)


# ------------------------------------------------------------------------------------------ prediction
NEW = DF.head(6)


def test_one_term_predict_and_get_prediction(fits):
    res = fits["one"]
    eta = res.fe_params["Intercept"] + res.fe_params["x"] * NEW["x"].to_numpy()
    np.testing.assert_allclose(res.predict(NEW), expit(eta), rtol=1e-10)  # population level
    np.testing.assert_allclose(res.predict(NEW, groups="g"), res.fittedvalues.head(6), rtol=1e-10)
    frame = res.get_prediction(NEW).summary_frame(alpha=0.1)
    X = np.column_stack([np.ones(6), NEW["x"]])
    se_eta = np.sqrt(np.einsum("ij,jk,ik->i", X, np.asarray(res.cov_params()), X))
    mu = expit(eta)
    np.testing.assert_allclose(frame["mean"], mu, rtol=1e-10)
    np.testing.assert_allclose(frame["mean_se"], mu * (1 - mu) * se_eta, rtol=1e-8)
    q = stats.norm.isf(0.05)
    np.testing.assert_allclose(frame["mean_ci_lower"], expit(eta - q * se_eta), rtol=1e-8)
    np.testing.assert_allclose(frame["mean_ci_upper"], expit(eta + q * se_eta), rtol=1e-8)


@pytest.mark.parametrize("kind", ["gauss", "pois"])
def test_several_terms_predict_and_get_prediction(fits, kind):
    res = fits[kind]
    eta = _conditional_eta(res, kind)[:6]
    inv = (lambda e: e) if kind == "gauss" else np.exp
    np.testing.assert_allclose(res.predict(NEW), inv(eta), rtol=1e-10)  # every term's levels from the data
    frame = res.get_prediction(NEW).summary_frame()
    np.testing.assert_allclose(frame["mean"], inv(eta), rtol=1e-10)
    population = res.get_prediction(NEW, groups=False).summary_frame()
    X = np.column_stack([np.ones(6), NEW["x"]])
    se_eta = np.sqrt(np.einsum("ij,jk,ik->i", X, np.asarray(res.cov_params()), X))
    fixed = X @ res.fe_params.to_numpy()
    np.testing.assert_allclose(population["mean_se"], se_eta * (1 if kind == "gauss" else np.exp(fixed)), rtol=1e-8)
    if kind == "gauss":  # Henderson's prediction error: C = sigma^2 [[X'X, X'Z], [Z'X, Z'Z + sigma^2 G^-1]]^-1
        Xall = np.column_stack([np.ones(N), DF["x"]])
        Z = np.column_stack([pd.get_dummies(DF[t]).to_numpy(float) for t in ("a", "b")])
        ginv = np.concatenate([np.full(DF[t].nunique(), 1 / float(res.cov_re[t].iloc[0, 0])) for t in ("a", "b")])
        W = np.column_stack([Xall, Z])
        M = W.T @ W
        M[2:, 2:] += res.scale * np.diag(ginv)
        C = res.scale * np.linalg.inv(M)
        c = W[:6]
        np.testing.assert_allclose(frame["mean_se"], np.sqrt(np.einsum("ij,jk,ik->i", c, C, c)), rtol=1e-6)


def test_zero_inflated_predict_and_get_prediction_summary_frame(fits):
    res = fits["zi"]
    np.testing.assert_allclose(res.predict(NEW), res.fittedvalues.head(6), rtol=1e-10)
    pred = res.get_prediction(NEW, which="linear")
    X = np.column_stack([np.ones(6), NEW["x"]])
    se = np.sqrt(np.einsum("ij,jk,ik->i", X, np.asarray(res.cov_params())[:2, :2], X))
    eta = _conditional_eta(res, "zi")[:6]
    frame = pred.summary_frame(alpha=0.1)  # statsmodels' discrete count models' names
    assert list(frame.columns) == ["predicted", "se", "ci_lower", "ci_upper"]
    np.testing.assert_allclose(frame["predicted"], eta, rtol=1e-10)
    np.testing.assert_allclose(frame["se"], se, rtol=1e-8)
    np.testing.assert_allclose(frame["ci_lower"], eta - stats.norm.isf(0.05) * se, rtol=1e-8)
    np.testing.assert_allclose(pred.conf_int(0.1), frame[["ci_lower", "ci_upper"]].to_numpy())
    np.testing.assert_allclose(pred["ci_upper"], eta + stats.norm.isf(0.025) * se, rtol=1e-8)  # built at 0.05
    mean = res.get_prediction(NEW).summary_frame()
    np.testing.assert_allclose(mean["predicted"], res.predict(NEW), rtol=1e-10)
    as_dict = {c: NEW[c].tolist() for c in ("x", "a")}  # statsmodels' formula predict takes a dict too
    np.testing.assert_allclose(res.predict(as_dict), res.predict(NEW), rtol=1e-12)
    np.testing.assert_allclose(res.get_prediction(as_dict).summary_frame()["se"], mean["se"], rtol=1e-12)


# ------------------------------------------------------------------------------------------ hypothesis tests
def _contrast(res):
    R = np.zeros(len(res.params))
    R[:2] = [1.0, 2.0]  # Intercept + 2 x
    return R


@pytest.mark.parametrize("kind", STRUCTURES)
def test_t_test_f_test_wald_test_by_hand(fits, kind):
    res = fits[kind]
    params, cov = np.asarray(res.params, float), np.asarray(res.cov_params(), float)
    R = _contrast(res)
    effect, se = R @ params, np.sqrt(R @ cov @ R)
    tt = res.t_test(R)
    assert float(tt.effect[0]) == pytest.approx(effect, rel=1e-12)
    assert float(tt.sd[0, 0]) == pytest.approx(se, rel=1e-10)
    assert float(tt.pvalue) == pytest.approx(2 * stats.norm.sf(abs(effect / se)), rel=1e-8)
    named = res.t_test("Intercept + 2 * x = 0")
    assert float(named.effect[0]) == pytest.approx(effect, rel=1e-12)
    both = np.zeros((2, len(params)))
    both[0, 0] = both[1, 1] = 1.0
    beta, C = params[:2], cov[:2, :2]
    wald = float(beta @ np.linalg.solve(C, beta))
    wt = res.wald_test(both, scalar=True)
    assert wt.statistic == pytest.approx(wald, rel=1e-10)
    assert wt.pvalue == pytest.approx(stats.chi2.sf(wald, 2), rel=1e-8)
    ft = res.f_test("Intercept = 0, x = 0")
    assert float(ft.fvalue) == pytest.approx(wald / 2, rel=1e-10)
    assert (ft.df_num, ft.df_denom) == (2, N - 2)
    assert float(ft.pvalue) == pytest.approx(stats.f.sf(wald / 2, 2, N - 2), rel=1e-8)


@pytest.mark.parametrize("kind", STRUCTURES)
def test_wald_test_terms_by_hand(fits, kind):
    res = fits[kind]
    table = res.wald_test_terms(scalar=True).table
    z = res.params / res.bse
    expected = ["Intercept", "x"] + (["zi_Intercept"] if kind == "zi" else [])  # never a variance parameter
    assert list(table.index) == expected
    for name in expected:
        assert table.loc[name, "statistic"] == pytest.approx(z[name] ** 2, rel=1e-10)
        assert table.loc[name, "df_constraint"] == 1


def test_zero_inflated_wald_test_terms_joins_a_factors_columns():
    df = DF.assign(f=np.array(list("abc"))[np.arange(N) % 3])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = glmm_ext.GLMM.from_formula("z ~ x + f + (1|a)", df, family=sm.families.Poisson(),
                                         zi_formula="~ x").fit()
    table = res.wald_test_terms(scalar=True).table
    assert list(table.index) == ["Intercept", "f", "x", "zi_Intercept", "zi_x"]
    cols = ["f[T.b]", "f[T.c]"]
    beta, C = res.params[cols].to_numpy(), res.cov_params().loc[cols, cols].to_numpy()
    assert table.loc["f", "statistic"] == pytest.approx(beta @ np.linalg.solve(C, beta), rel=1e-10)
    assert table.loc["f", "df_constraint"] == 2
    assert table.loc["zi_x", "statistic"] == pytest.approx((res.params["zi_x"] / res.bse["zi_x"]) ** 2, rel=1e-10)
    pairs = res.t_test_pairwise("f", method="bonferroni").result_frame
    cov = res.cov_params().loc[cols, cols].to_numpy()
    diff = beta[1] - beta[0]  # c - b
    se = np.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    assert pairs.loc["c-b", "coef"] == pytest.approx(diff, rel=1e-10)
    assert pairs.loc["c-b", "std err"] == pytest.approx(se, rel=1e-10)
    assert pairs.loc["c-b", "pvalue-bonferroni"] == pytest.approx(min(1.0, 3 * 2 * stats.norm.sf(abs(diff / se))))
    with pytest.raises(ValueError, match="not a term of the conditional part"):
        res.t_test_pairwise("zi_x")


# ------------------------------------------------------------------------------------------ summaries
def _row(text, label):
    return next(line.split() for line in text.splitlines() if line.split()[:1] == [label])


@pytest.mark.parametrize("kind", ["one", "gauss", "pois"])
def test_summary2_float_format_is_applied_to_the_tables(fits, kind):
    res = fits[kind]
    assert str(res.summary2()) == str(res.summary())  # default: summary()'s format
    text = res.summary2(float_format="%.2f").as_text()
    row = _row(text, "x")
    assert row[1:3] == ["%.2f" % res.params["x"], "%.2f" % res.bse["x"]]
    assert row[3] == "%.2f" % res.tvalues["x"] and row[4] == "%.2f" % res.pvalues["x"]
    assert _row(text, "AIC")[1] == "%.2f" % res.aic
    relabelled = res.summary2(xname=["const", "slope"], yname="resp", title="Mine", alpha=0.1, float_format="%.3f")
    text = relabelled.as_text()
    assert "Mine" in text and "resp" in text and "Lower 90%" in text
    assert _row(text, "slope")[1] == "%.3f" % res.params["x"]
    assert "<table" in relabelled.as_html() and "tabular" in relabelled.as_latex()
    with pytest.raises(ValueError, match="float_format"):
        res.summary2(float_format="%d %d")
    with pytest.raises(ValueError, match="float_format"):
        res.summary2(float_format=4)


def test_zero_inflated_summary2(fits):
    res = fits["zi"]
    text = res.summary2(float_format="%.3f", alpha=0.1).as_text()
    row = _row(text, "x")
    q = stats.norm.isf(0.05)
    expected = [res.params["x"], res.bse["x"], res.tvalues["x"], res.pvalues["x"],
                res.params["x"] - q * res.bse["x"], res.params["x"] + q * res.bse["x"]]
    assert row[1:] == ["%.3f" % v for v in expected]
    assert _row(text, "Intercept")[1] == "%.3f" % res.params["Intercept"]  # the conditional part comes first
    assert "%.3f" % res.params["zi_Intercept"] in text and "[0.05" in text
    assert "%.3f" % float(res.cov_re[("cond", "a")].iloc[0, 0]) in text  # the random-effects table
    assert "%.3f" % res.llf in text and "%.3f" % res.aic in text
    default = res.summary2().as_text()
    assert "%.4f" % res.params["x"] in default  # statsmodels' default '%.4f'
    renamed = res.summary2(xname=["c0", "c1", "z0"], yname="count", title="ZI").as_text()
    assert _row(renamed, "c1")[1] == "%.4f" % res.params["x"] and _row(renamed, "z0")
    assert "tabular" in res.summary2().as_latex() and "<table" in res.summary2().as_html()
    with pytest.raises(ValueError, match="xname has 2 names; the coefficient tables have 3"):
        res.summary2(xname=["a", "b"])
    with pytest.raises(ValueError, match="float_format"):
        res.summary2(float_format="%s %s")


# ------------------------------------------------------------------------------------------ refusals
REFUSED = ["deviance", "null_deviance", "llnull", "bic_deviance", "pseudo_rsquared()", "llf_scaled()",
           "get_influence()", "get_hat_matrix_diag()", "resid_anscombe", "score_test()", "plot_added_variable()",
           "get_margeff()", "profile_re()", "bootstrap()"]


@pytest.mark.parametrize("kind", STRUCTURES)
def test_names_without_a_mixed_model_number_say_why(fits, kind):
    res = fits[kind]
    for label in REFUSED:
        name = label.rstrip("()")
        assert not hasattr(res, name), name
        with pytest.raises(NotAvailableError, match=rf"{name}(\(\))? is not available for \w+Results: \S+ \S+ \S+") \
                as info:
            getattr(res, name)
        assert isinstance(info.value, NotImplementedError)


# ------------------------------------------------------------------------------------------ save, remove_data
@pytest.mark.parametrize("kind", ["one", "gauss", "pois"])
def test_save_load_and_remove_data(kind, tmp_path):
    res = _fit(kind)
    path = os.path.join(tmp_path, "res.pkl")
    res.save(path)
    back = sm.load_pickle(path)
    np.testing.assert_array_equal(back.params, res.params)
    np.testing.assert_array_equal(back.bse, res.bse)
    assert back.llf == res.llf and back.aic == res.aic
    np.testing.assert_allclose(back.predict(NEW), res.predict(NEW), rtol=1e-12)
    expected = res.predict(NEW)
    res.remove_data()
    np.testing.assert_allclose(res.predict(NEW), expected, rtol=1e-12)  # new data still predicted
    assert "Fixed Effects" in str(res.summary())
    for name in ("mu", "resid_pearson", "resid_deviance"):
        with pytest.raises(ValueError, match="removed by remove_data"):
            getattr(res, name)


ZI_SPECS = {"zip one term": ("z ~ x + (1|a)", sm.families.Poisson, {"zi_formula": "~ x"}),
            "zinb several terms": ("z ~ x + C(b) + (1|a) + (0 + x|b)", sm.families.NegativeBinomial,
                                   {"zi_formula": "~ center(x) + (1|a)", "disp_formula": "~ x"}),
            "hurdle nb": ("z ~ x + (1|a)", glmm_ext.families.TruncatedNegativeBinomial, {"zi_formula": "~ x + (1|b)"}),
            "zip safe mode": ("z ~ np.log(x + 5) + (1|a)", sm.families.Poisson,
                              {"zi_formula": "~ C(b)", "formula_mode": "safe"})}
ZI_NEW = NEW.assign(a=["unseen"] + list(NEW["a"][1:]))  # a level not in the fit: its random effect is 0


def _zi_fit(spec):
    formula, family, kwargs = ZI_SPECS[spec]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return glmm_ext.GLMM.from_formula(formula, DF, family=family(), **kwargs).fit()


def _assert_same_zi(back, res):
    """Every number a loaded zero-inflated fit reports equals the original's, bit for bit."""
    pd.testing.assert_series_equal(back.params, res.params, check_exact=True)
    pd.testing.assert_series_equal(back.bse, res.bse, check_exact=True)
    assert back.llf == res.llf and str(back.summary()) == str(res.summary())
    for which in ("mean", "conditional", "zprob", "linear", "zlinear", "disp"):
        for re in (True, False):
            pd.testing.assert_series_equal(back.predict(ZI_NEW, which=which, re=re),
                                           res.predict(ZI_NEW, which=which, re=re), check_exact=True)
    pd.testing.assert_frame_equal(pd.DataFrame(back.get_prediction(ZI_NEW)), pd.DataFrame(res.get_prediction(ZI_NEW)),
                                  check_exact=True)
    assert list(back.random_effects) == list(res.random_effects)
    for key, table in res.random_effects.items():
        pd.testing.assert_frame_equal(back.random_effects[key], table, check_exact=True)


@pytest.mark.parametrize("spec", list(ZI_SPECS))
def test_zero_inflated_pickle_save_load_and_remove_data(spec, tmp_path):
    res = _zi_fit(spec)
    again = pickle.loads(pickle.dumps(res))
    assert again.model.zdesign.design_infos[1] is not res.model.zdesign.design_infos[1]  # rebuilt on loading
    _assert_same_zi(again, res)
    _assert_same_zi(copy.deepcopy(res), res)
    path = os.path.join(tmp_path, "zi.pkl")
    res.save(path)
    _assert_same_zi(sm.load_pickle(path), res)
    pickle.loads(pickle.dumps(again)).save(path, remove_data=True)
    _assert_same_zi(sm.load_pickle(path), again)
    res.remove_data()
    _assert_same_zi(res, again)
    _assert_same_zi(pickle.loads(pickle.dumps(res)), again)


def test_zero_inflated_pickle_keeps_the_fits_levels_and_transforms():
    res = pickle.loads(pickle.dumps(_zi_fit("zinb several terms")))
    new = ZI_NEW.assign(b="b3")  # one level of C(b) and six x values: their own mean is not the fit's
    b, g = res.fe_params, res.zi_params
    x = new["x"].to_numpy()
    np.testing.assert_allclose(res.predict(new, which="zlinear", re=False),
                               g["Intercept"] + g["center(x)"] * (x - DF["x"].mean()), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(res.predict(new, which="linear", re=False),
                               b["Intercept"] + b["C(b)[T.b3]"] + b["x"] * x, rtol=1e-12)
    np.testing.assert_allclose(res.predict(new, which="disp"),
                               np.exp(res.disp_params["Intercept"] + res.disp_params["x"] * x), rtol=1e-12)


def test_zero_inflated_safe_mode_pickle_checks_its_formulas_again_on_loading(tmp_path):
    res = _zi_fit("zip safe mode")
    sentinel = tmp_path / "pwned"
    design = res.model.zdesign
    design.texts = (design.texts[0], f"C(b) + np.savetxt('{sentinel}', x)", None)  # as if the file were edited
    blob = pickle.dumps(res)
    with pytest.raises(ValueError, match="does not accept the attribute 'np.savetxt'"):
        pickle.loads(blob)
    assert not sentinel.exists()
    design.formula_mode = "python"  # without the check, loading runs the payload (then patsy fails on its None)
    with pytest.raises(ValueError):
        pickle.loads(pickle.dumps(res))
    assert sentinel.exists()


def test_t_test_pairwise_of_a_factor_with_crossed_terms():
    df = DF.assign(f=np.array(list("abc"))[np.arange(N) % 3])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = glmm_ext.GLMM.from_formula("yp ~ x + f + (1|a) + (1|b)", df, family=sm.families.Poisson()).fit()
    pairs = res.t_test_pairwise("f").result_frame
    cov = res.cov_params().loc[["f[T.b]", "f[T.c]"], ["f[T.b]", "f[T.c]"]].to_numpy()
    assert pairs.loc["b-a", "coef"] == pytest.approx(res.params["f[T.b]"], rel=1e-12)
    assert pairs.loc["c-b", "coef"] == pytest.approx(res.params["f[T.c]"] - res.params["f[T.b]"], rel=1e-10)
    assert pairs.loc["c-b", "std err"] == pytest.approx(np.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]), rel=1e-10)
    table = res.wald_test_terms(scalar=True).table
    beta = res.params[["f[T.b]", "f[T.c]"]].to_numpy()
    assert table.loc["f", "statistic"] == pytest.approx(beta @ np.linalg.solve(cov, beta), rel=1e-10)
