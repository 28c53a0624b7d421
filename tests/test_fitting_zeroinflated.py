"""Zero-inflated, hurdle and dispersion models through the public API against glmmTMB 1.1.5
(tests/data/zi/reference.json, see its README) and against likelihoods computed here independently:
a per-group Laplace from scipy.stats densities, and scipy.integrate.quad of the exact per-group integral."""
import json
import os
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import integrate, optimize, stats
from scipy.special import expit

import glmm_ext
from glmm_ext.engine._laplace_multi import agq_value
from glmm_ext.families import NegativeBinomial1, TruncatedNegativeBinomial, TruncatedPoisson

ZI = os.path.join(os.path.dirname(__file__), "data", "zi")
with open(os.path.join(ZI, "reference.json")) as fh:
    REF = json.load(fh)["models"]
FAMILY = {"poisson": lambda: sm.families.Poisson(), "nbinom2": lambda: sm.families.NegativeBinomial(alpha=1.0),
          "nbinom1": NegativeBinomial1, "truncated_poisson": TruncatedPoisson,
          "truncated_nbinom2": TruncatedNegativeBinomial, "gaussian": lambda: sm.families.Gaussian()}
SLOW = set()  # every reference fits in under ~20 s here
_FITS = {}


def data_of(name):
    return pd.read_csv(os.path.join(ZI, REF[name]["data"]))


def model_of(name, data=None):
    m = REF[name]
    zi = None if m["py_ziformula"] == "0" else "~ " + m["py_ziformula"]
    disp = None if m["py_dispformula"] == "1" else "~ " + m["py_dispformula"]
    return glmm_ext.GLMM.from_formula(m["py_formula"], data_of(name) if data is None else data,
                                      family=FAMILY[m["family"]](), zi_formula=zi, disp_formula=disp,
                                      offset=m["offset"])


def fit_of(name):
    if name not in _FITS:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = model_of(name).fit()
        _FITS[name] = (res, [w for w in caught])
    return _FITS[name]


def ref_theta(name, model):
    """glmmTMB's estimates in our parameter order (patsy names through fixef_py_names; SD of the term)."""
    m = REF[name]
    out = []
    for part, key in (("cond", "fixef"), ("zi", "fixef_zi"), ("disp", "fixef_disp")):
        names = (m["fixef_py_names"] or {}).get(part) or {}
        inverse = {v: k for k, v in names.items()}
        k = ("cond", "zi", "disp").index(part)
        for col in model.zdesign.names[k]:
            out.append(m[key][inverse[col]])
    out.append(m["varcorr"][0]["sd"][0])
    return np.array(out, float)


def ses(m, key):
    return np.array([np.nan if v is None else v for v in (m[key] or {}).values()], float)


CASES = [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in REF]


@pytest.mark.parametrize("name", CASES)
def test_best_optimum_and_standard_errors(name):
    m = REF[name]
    res, caught = fit_of(name)
    assert res.converged
    # the best known optimum: ours at least glmmTMB's (which may stop short when zi coefficients run off)
    assert res.llf >= m["loglik_objective"] - 1e-4
    assert abs(res.llf - m["loglik_objective"]) < 1e-4 or res.zi_boundary
    assert res.k_params == m["df"]
    if m["AIC"] is not None and not res.zi_boundary:
        assert abs(res.aic - m["AIC"]) < 2e-4 and abs(res.bic - m["BIC"]) < 2e-4
    if m["pdHess"] and not res.zi_boundary:
        p = res.model.prob.p
        bse = res.bse.to_numpy()
        parts = [(bse[:p[0]], ses(m, "se")), (bse[p[0]:p[0] + p[1]], ses(m, "se_zi")),
                 (bse[p[0] + p[1]:sum(p)], ses(m, "se_disp"))]
        for ours, theirs in parts:
            if theirs.size:
                np.testing.assert_allclose(ours, theirs, rtol=0.02)
        # glmmTMB's theta_1 is log SD: SE(log SD) = SE(SD) / SD
        se_log_sd = [v for k, v in m["se_full"].items() if k.startswith("theta_1")][0]
        assert abs(bse[-1] / res.params.iloc[-1] / se_log_sd - 1) < 0.02
        sd = m["varcorr"][0]["sd"][0]
        assert abs(res.params.iloc[-1] - sd) < 2e-3 * max(sd, 0.1)
    if res.zi_boundary:  # flagged like a singular fit
        assert any(issubclass(w.category, glmm_ext.ZIBoundaryWarning) for w in caught)


@pytest.mark.parametrize("name", list(REF))
def test_objective_at_glmmtmb_estimates_is_theirs(name):
    """Our Laplace at glmmTMB's estimates equals glmmTMB's objective and the R script's own Laplace."""
    m = REF[name]
    model = model_of(name)
    value = model.loglike(ref_theta(name, model))
    assert abs(value - m["loglik_objective"]) < 2e-5
    assert abs(value - m["check"]["laplace"]) < 2e-5


# ----------------------------------------------------------------------------- independent likelihoods
def _row_logf(name, y, eta_c, eta_z, eta_d):
    """log f per row from scipy.stats (written independently of glmm_ext's closed forms)."""
    fam = REF[name]["family"]
    mu = np.exp(eta_c)
    if fam in ("poisson", "truncated_poisson"):
        f = stats.poisson.pmf(y, mu)
        f0 = stats.poisson.pmf(0, mu)
    elif fam in ("nbinom2", "truncated_nbinom2"):
        th = np.exp(eta_d)
        f, f0 = stats.nbinom.pmf(y, th, th / (th + mu)), stats.nbinom.pmf(0, th, th / (th + mu))
    elif fam == "nbinom1":
        phi = np.exp(eta_d)
        f, f0 = stats.nbinom.pmf(y, mu / phi, 1 / (1 + phi)), None
    else:
        return stats.norm.logpdf(y, eta_c, np.sqrt(np.exp(eta_d)))
    pz = expit(eta_z)
    if fam.startswith("truncated"):
        return np.log(np.where(y == 0, pz, (1 - pz) * f / (1 - f0)))
    return np.log(pz * (y == 0) + (1 - pz) * f)


def _group_pieces(name, model, theta):
    d = model.zdesign
    beta, gamma, delta, lam_c, _ = model.prob.split(theta)
    eta_c = d.X[0] @ beta + d.offsets[0]
    eta_z = d.X[1] @ gamma if gamma.size else np.full(d.y.size, -np.inf)
    eta_d = d.X[2] @ delta if delta.size else np.zeros(d.y.size)
    codes = d.structures[0].terms[0].codes
    for j in range(d.structures[0].terms[0].n_levels):
        rows = codes == j
        yield (lambda u, r=rows: float(np.sum(_row_logf(name, d.y[r], eta_c[r] + lam_c[0] * u, eta_z[r],
                                                        eta_d[r])) - 0.5 * u * u - 0.5 * np.log(2 * np.pi)))


def _d1_d2(h, u, e=1e-3):
    """Five-point first and second derivatives (truncation O(e^4))."""
    f = [h(u + k * e) for k in (-2, -1, 0, 1, 2)]
    d1 = (f[0] - 8 * f[1] + 8 * f[3] - f[4]) / (12 * e)
    d2 = (-f[0] + 16 * f[1] - 30 * f[2] + 16 * f[3] - f[4]) / (12 * e * e)
    return d1, d2


def independent_laplace(name, model, theta):
    total = 0.0
    for h in _group_pieces(name, model, theta):
        u = optimize.minimize_scalar(lambda v: -h(v), bounds=(-8, 8), method="bounded",
                                     options={"xatol": 1e-10}).x
        for _ in range(3):  # Newton polish on differences
            d1, d2 = _d1_d2(h, u)
            u -= d1 / d2
        d2 = _d1_d2(h, u)[1]
        total += h(u) + 0.5 * np.log(2 * np.pi) - 0.5 * np.log(-d2)
    return total


def quad_loglik(name, model, theta):
    total = 0.0
    for h in _group_pieces(name, model, theta):
        top = -optimize.minimize_scalar(lambda v: -h(v), bounds=(-8, 8), method="bounded").fun
        val, _ = integrate.quad(lambda v: np.exp(h(v) - top), -12, 12, epsabs=1e-13, epsrel=1e-12, limit=200)
        total += top + np.log(val)
    return total


@pytest.mark.parametrize("name", ["sal_zip_zi1", "sal_hurdle_pois", "owls_zinb1", "owls_zinb2", "sal_nb2_disp",
                                  "sleep_gauss_disp", "sal_zinb1_zi1"])
def test_llf_equals_an_independent_laplace(name):
    model = model_of(name)
    theta = ref_theta(name, model)
    ours = model.loglike(theta)
    assert abs(ours - independent_laplace(name, model, theta)) < 1e-6


@pytest.mark.parametrize("name", ["sal_zip_zi1", "owls_zinb2", "sal_hurdle_nb2"])
def test_quadrature_reproduces_the_reference_agq(name):
    """The exact integral (quad) of this file's density equals R's 25-node AGQ: the density is glmmTMB's; the
    Laplace error it measures is of the size the references show (< 0.1 log-likelihood units)."""
    m = REF[name]
    model = model_of(name)
    theta = ref_theta(name, model)
    exact = quad_loglik(name, model, theta)
    assert abs(exact - m["check"]["agq25"]) < 1e-5
    assert abs(model.loglike(theta) - exact) < 0.1
    # our adaptive quadrature (one scalar term) against the exact integral; one node is Laplace
    assert abs(-agq_value(model.prob, theta, 25) - exact) < 1e-8
    assert abs(-agq_value(model.prob, theta, 1) - model.loglike(theta)) < 1e-9


def test_llf_agq_on_a_fit():
    res, _ = fit_of("owls_zinb2")
    assert res.llf_agq(1) == pytest.approx(res.llf, abs=1e-9)
    assert abs(res.llf_agq(25) - res.llf) < 0.1 and res.llf_agq(25) != res.llf
    model = glmm_ext.GLMM.from_formula("count ~ mined + (1 | site) + (1 | spp)", data_of("sal_zip_zi1"),
                                       family=sm.families.Poisson(), zi_formula="~ 1")
    with pytest.raises(ValueError, match="one scalar"):
        agq_value(model.prob, model.start_params_default(), 5)


def test_zero_inflation_with_random_effects_in_the_zero_part():
    """zi ~ 1 + (1 | site): our joint Laplace equals a per-site two-dimensional Laplace computed here."""
    d = data_of("sal_zip_zi1")
    model = glmm_ext.GLMM.from_formula("count ~ spp + mined + (1 | site)", d, family=sm.families.Poisson(),
                                       zi_formula="~ 1 + (1 | site)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit()
    assert res.converged
    theta = res.params.to_numpy()
    beta, gamma, _, lc, lz = model.prob.split(theta)
    zd = model.zdesign
    codes = zd.structures[0].terms[0].codes
    total = 0.0
    for j in range(zd.structures[0].terms[0].n_levels):
        r = codes == j
        y, ec, ez = zd.y[r], zd.X[0][r] @ beta, zd.X[1][r] @ gamma

        def h(u):
            pz = expit(ez + lz[0] * u[1])
            f = stats.poisson.pmf(y, np.exp(ec + lc[0] * u[0]))
            return np.sum(np.log(pz * (y == 0) + (1 - pz) * f)) - 0.5 * u @ u

        u = optimize.minimize(lambda v: -h(v), np.zeros(2), method="BFGS", options={"gtol": 1e-10}).x
        e = 1e-4
        H = np.array([[(h(u + e * (a + b)) - h(u + e * (a - b)) - h(u - e * (a - b)) + h(u - e * (a + b)))
                       / (4 * e * e) for b in np.eye(2)] for a in np.eye(2)])
        total += h(u) - 0.5 * np.linalg.slogdet(-H)[1]
    assert abs(res.llf - total) < 1e-5
    assert ("zi", "site") in res.random_effects and "zi_site SD" in res.params.index


def test_no_zero_part_equals_the_random_intercept_engine():
    """Two separate engines: ZeroInflatedGLMM without a zero part vs GLMM (Poisson and NB2), same rows."""
    d = data_of("sal_zip_zi1")
    formula = "count ~ spp + mined + (1 | site)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = glmm_ext.GLMM.from_formula(formula, d, family=sm.families.Poisson()).fit()
        ours = glmm_ext.ZeroInflatedGLMM.from_formula(formula, d, family=sm.families.Poisson()).fit()
        nb = glmm_ext.GLMM.from_formula(formula, d, family=sm.families.NegativeBinomial(alpha=1.0)).fit()
        nb_ours = glmm_ext.GLMM.from_formula(formula, d, family=sm.families.NegativeBinomial(alpha=1.0),
                                             disp_formula="~ 1").fit()
    assert abs(plain.llf - ours.llf) < 1e-5
    np.testing.assert_allclose(ours.fe_params, plain.fe_params, atol=2e-4)
    assert abs(nb.llf - nb_ours.llf) < 1e-4
    assert abs(np.exp(-nb_ours.disp_params.iloc[0]) - nb.alpha) < 1e-3 * nb.alpha  # alpha = 1 / theta


def test_nb1_with_dispersion_formula_and_exposure():
    d = data_of("owls_zinb1").assign(BroodSize=lambda f: np.exp(f["logBroodSize"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = glmm_ext.GLMM.from_formula("SiblingNegotiation ~ C(FoodTreatment) + (1|Nest)", d,
                                       family=NegativeBinomial1(), zi_formula="~ 1", exposure="BroodSize",
                                       disp_formula="~ C(FoodTreatment)").fit()
        b = glmm_ext.GLMM.from_formula("SiblingNegotiation ~ C(FoodTreatment) + (1|Nest)", d,
                                       family=NegativeBinomial1(), zi_formula="~ 1", offset="logBroodSize",
                                       disp_formula="~ C(FoodTreatment)").fit()
    assert abs(a.llf - b.llf) < 1e-8
    assert list(a.params.index[3:5]) == ["disp_Intercept", "disp_C(FoodTreatment)[T.Satiated]"]
    assert a.converged and a.bse.notna().all()


def test_crossed_terms_equal_a_dense_joint_laplace():
    """ZINB2 with (1 | site) + (1 | spp), crossed: llf equals a Laplace over all 30 effects at once (here)."""
    d = data_of("sal_zip_zi1")
    model = glmm_ext.GLMM.from_formula("count ~ mined + (1 | site) + (1 | spp)", d,
                                       family=sm.families.NegativeBinomial(alpha=1.0), zi_formula="~ mined")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit()
    assert res.converged and {"site SD", "spp SD"} <= set(res.params.index)
    theta = res.params.to_numpy()
    beta, gamma, delta, lc, _ = model.prob.split(theta)
    zd = model.zdesign
    t1, t2 = zd.structures[0].terms
    ec0, pz, th = zd.X[0] @ beta, expit(zd.X[1] @ gamma), np.exp(delta[0])
    y = zd.y

    def h(u):
        ec = ec0 + lc[0] * u[t1.codes] + lc[1] * u[t1.n_levels + t2.codes]
        f = stats.nbinom.pmf(y, th, th / (th + np.exp(ec)))
        return np.sum(np.log(pz * (y == 0) + (1 - pz) * f)) - 0.5 * u @ u

    q = t1.n_levels + t2.n_levels
    u = optimize.minimize(lambda v: -h(v), np.zeros(q), method="BFGS", options={"gtol": 1e-9}).x
    e, I = 1e-4, np.eye(q)
    H = np.array([[(h(u + e * (I[a] + I[b])) - h(u + e * (I[a] - I[b])) - h(u - e * (I[a] - I[b]))
                    + h(u - e * (I[a] + I[b]))) / (4 * e * e) for b in range(q)] for a in range(q)])
    assert abs(res.llf - (h(u) - 0.5 * np.linalg.slogdet(-H)[1])) < 1e-5
    # against the same model with only (1 | site): the crossed fit is at least as good
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = glmm_ext.GLMM.from_formula("count ~ mined + (1 | site)", d, family=sm.families.NegativeBinomial(
            alpha=1.0), zi_formula="~ mined").fit()
    assert res.llf >= one.llf - 1e-6
