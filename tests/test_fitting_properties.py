"""Property-based tests: random valid data sets fit to a maximum, the marginal likelihood equals an
independent integral, and the fit respects the model's invariances; then every family/link pair x nagq in
{0, 1, 5} keeps its promises (only ValueError escapes a fit, the llf is not below the sigma_u = 0 point's,
rescaling the response shifts llf by -n log c, permuting rows and relabelling groups change nothing).

Derandomized (CI sees the same examples every run): 25 examples per family/link pair for the
per-pair properties.  ``python -m pytest -m slow`` runs the same properties with a few hundred.
"""
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy import integrate, optimize, special

import glmm_ext
from conftest import glm_point
from glmm_ext import GLMM, make_family

PAIRS = [("gaussian", "identity"), ("gaussian", "log"), ("binomial", "logit"), ("binomial", "probit"),
         ("poisson", "log"), ("poisson", "identity"), ("gamma", "inverse"), ("gamma", "log"), ("gamma", "identity")]
_COMMON = dict(deadline=None, derandomize=True, database=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
SETTINGS = settings(max_examples=25, **_COMMON)  # CI: per pair for the per-pair properties
SLOW = settings(max_examples=300, **_COMMON)  # python -m pytest -m slow
PAIR_IDS = ["-".join(p) for p in PAIRS]


@st.composite
def datasets(draw, pairs=PAIRS):
    family, link = draw(st.sampled_from(pairs))
    n_groups = draw(st.integers(5, 12))
    sizes = draw(st.lists(st.integers(1, 8), min_size=n_groups, max_size=n_groups))
    if family in ("gaussian", "gamma"):  # a residual variance needs repeated groups and spare rows
        sizes = [max(2, k) for k in sizes]
    sigma_u = draw(st.floats(0.0, 1.5))
    beta1 = draw(st.floats(-1.0, 1.0))
    seed = draw(st.integers(0, 2**31 - 1))
    beta = (3.0, 0.2 * beta1, 0.2) if link in ("identity", "inverse") else (0.3, beta1, -0.3)
    sigma_u = min(sigma_u, 0.3) if link in ("identity", "inverse") else sigma_u
    df = glmm_ext.simulate(family, link, n_groups=n_groups, group_size=sizes, beta=beta, sigma_u=sigma_u,
                           scale=0.3, seed=seed)
    assume(len(df) >= 12)
    # valid data: both predictors vary and the response is not degenerate (all 0s or all 1s has no MLE)
    assume(df["x2"].nunique() > 1 and df["y"].nunique() > 1)
    if family == "binomial":
        assume(not _separated(df))
    return family, link, df


def _separated(df):
    """True when a 0/1 response is perfectly split by x2 or by a threshold on x1 (no finite MLE)."""
    y = df["y"].to_numpy()
    for col in ("x1", "x2"):
        x = df[col].to_numpy()
        if x[y == 1].min() > x[y == 0].max() or x[y == 0].min() > x[y == 1].max():
            return True
    return False


def fit(df, family, link, formula="y ~ x1 + x2"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return glmm_ext.GLMM.from_formula(formula, df, groups="g",
                                          family=glmm_ext.make_family(family, link)).fit()


def check_fit_is_a_maximum(case):
    """Finite results, the reported llf is the likelihood at the estimates, and no nearby point is higher."""
    family, link, df = case
    res = fit(df, family, link)
    assume(res.converged)  # separated or edge-of-support data have no interior maximum to test
    assert np.isfinite(res.llf) and np.all(np.isfinite(res.params))
    assert np.all(np.isfinite(res.bse)) and np.all(np.asarray(res.bse) > 0)
    assert res.var_re >= 0 and res.scale > 0
    assert np.all(np.isfinite(res.blups)) and np.all(np.isfinite(res.diagnostics().to_numpy()))
    model = res.model
    beta, se = np.asarray(res.params, float), np.asarray(res.bse, float)
    reml = family == "gaussian" and link == "identity"

    def llf(b=beta, var_re=res.var_re, scale=res.scale):
        return model.loglike(b, var_re=var_re, scale=scale, reml=reml)

    assert llf() == pytest.approx(res.llf, abs=1e-7 * max(1.0, abs(res.llf)))
    tol = 1e-7 * max(1.0, abs(res.llf))
    # a step of 0.05 SE lowers a quadratic maximum by ~1e-3: far above the optimiser's 1e-6 tolerance
    if not reml:  # REML's beta is profiled
        for j in range(len(beta)):
            for sign in (-1.0, 1.0):
                moved = beta.copy()
                moved[j] += sign * 0.05 * se[j]
                assert llf(b=moved) <= res.llf + tol
    sigma = np.sqrt(res.var_re)
    for s in (sigma + 0.05, sigma * 0.9):
        if s != sigma:
            assert llf(var_re=s * s) <= res.llf + tol
    if model.dist.has_dispersion:
        for factor in (0.95, 1.05):
            assert llf(scale=res.scale * factor) <= res.llf + tol
    if not reml:  # the maximum is not below the GLM start (sigma_u = 0 lies inside the parameter space)
        start = glm_point(model)
        if start is not None:
            assert res.llf >= model.loglike(start[0], var_re=0.0, scale=start[1]) - 1e-6


@pytest.mark.parametrize("pair", PAIRS, ids=PAIR_IDS)
@SETTINGS
@given(data=st.data())
def test_fit_is_a_maximum(pair, data):
    check_fit_is_a_maximum(data.draw(datasets(pairs=[pair])))


@pytest.mark.slow
@pytest.mark.parametrize("pair", PAIRS, ids=PAIR_IDS)
@SLOW
@given(data=st.data())
def test_fit_is_a_maximum_many(pair, data):
    check_fit_is_a_maximum(data.draw(datasets(pairs=[pair])))


def _log_density(family, link, y, eta, phi):
    """log f(y | eta) written out (no package code): Bernoulli, Poisson, Gamma, normal."""
    mu = {"identity": lambda e: e, "log": np.exp, "logit": special.expit, "probit": special.ndtr,
          "inverse": lambda e: 1.0 / e}[link](eta)
    if family == "binomial":
        return np.log(np.where(y > 0.5, mu, 1.0 - mu))
    if family == "poisson":
        return y * np.log(mu) - mu - special.gammaln(y + 1.0)
    if family == "gamma":
        k = 1.0 / phi
        return k * np.log(k * y / mu) - k * y / mu - np.log(y) - special.gammaln(k)
    return -0.5 * (y - mu) ** 2 / phi - 0.5 * np.log(2.0 * np.pi * phi)


def check_agq_equals_quad(case, sigma, phi):
    """Against sum_j log int prod_i f(y_i | eta_i + u) N(u; 0, sigma^2) du by scipy's quad: the 50-node
    AGQ value equals it, and the Laplace value equals h_j(u_j) + log(2 pi / -h_j''(u_j)) / 2 summed over
    groups with each group's mode u_j from a scalar optimiser and h_j'' by finite differences."""
    family, link, df = case
    model = glmm_ext.GLMM.from_formula("y ~ x1 + x2", df, groups="g", family=glmm_ext.make_family(family, link))
    truth = df.attrs["truth"]
    beta = np.asarray(truth["beta"], float)
    if link in ("identity", "inverse"):
        sigma = min(sigma, 0.2)
    if (family, link) == ("gaussian", "log"):
        # a negative y makes the integrand a shoulder towards mu -> 0 that no rule centred on the mode
        # resolves (an approximation limit, not an error): the property is stated for positive responses
        assume(bool((df["y"] > 0).all()))
        sigma, phi = min(sigma, 0.5), min(phi, 0.5)
    y, g = df["y"].to_numpy(float), df["g"].to_numpy()
    eta = beta[0] + beta[1] * df["x1"].to_numpy() + beta[2] * df["x2"].to_numpy()
    exact = laplace_by_hand = 0.0
    # a group's mode can lie many sigma from 0 (its effect was drawn with another sigma_u): search widely
    grid = np.linspace(-8 * sigma - 6.0, 8 * sigma + 6.0, 1601)
    for label in np.unique(g):
        rows = g == label
        yj, ej = y[rows], eta[rows]

        def h(u):
            u = np.asarray(u, float)
            with np.errstate(all="ignore"):
                ll = _log_density(family, link, yj[:, None], ej[:, None] + u.reshape(1, -1), phi)
                value = np.sum(ll, axis=0) - 0.5 * u.reshape(-1) ** 2 / sigma**2 - 0.5 * np.log(2 * np.pi * sigma**2)
            value = np.where(np.isfinite(value), value, -np.inf)
            return value if u.ndim else float(value[0])

        k = int(np.clip(np.argmax(h(grid)), 1, grid.size - 2))
        mode = optimize.minimize_scalar(lambda u: -h(u), bounds=(grid[k - 1], grid[k + 1]), method="bounded",
                                        options={"xatol": 1e-12}).x
        top = h(mode)
        curvature = 1.0 / sigma**2
        for _ in range(2):  # a step of 1e-3 of the posterior SD, from the prior's SD at first
            step = 1e-3 / np.sqrt(curvature)
            curvature = -(h(mode + step) - 2 * top + h(mode - step)) / step**2
        width = 20.0 / np.sqrt(curvature)  # 20 posterior SDs: log-concave integrands vanish beyond
        value, _ = integrate.quad(lambda u: np.exp(h(u) - top), mode - width, mode + width, points=[mode],
                                  limit=200, epsabs=0, epsrel=1e-10)
        exact += top + np.log(value)
        laplace_by_hand += top + 0.5 * np.log(2 * np.pi / curvature)
    agq = model.loglike(beta, var_re=sigma**2, scale=phi, nagq=50)
    laplace = model.loglike(beta, var_re=sigma**2, scale=phi, nagq=1)
    assert agq == pytest.approx(exact, abs=1e-6 * max(1.0, abs(exact)))
    assert laplace == pytest.approx(laplace_by_hand, abs=1e-6 * max(1.0, abs(exact)))


@pytest.mark.parametrize("pair", [p for p in PAIRS if p != ("gaussian", "identity")], ids=PAIR_IDS[1:])
@SETTINGS
@given(data=st.data(), sigma=st.floats(0.05, 1.5), phi=st.floats(0.2, 1.5))
def test_agq_equals_an_independent_quad_integral(pair, data, sigma, phi):
    check_agq_equals_quad(data.draw(datasets(pairs=[pair])), sigma, phi)


@pytest.mark.slow
@pytest.mark.parametrize("pair", [p for p in PAIRS if p != ("gaussian", "identity")], ids=PAIR_IDS[1:])
@SLOW
@given(data=st.data(), sigma=st.floats(0.05, 1.5), phi=st.floats(0.2, 1.5))
def test_agq_equals_an_independent_quad_integral_many(pair, data, sigma, phi):
    check_agq_equals_quad(data.draw(datasets(pairs=[pair])), sigma, phi)


@SETTINGS
@given(datasets(), st.randoms(use_true_random=False))
def test_row_order_and_group_labels_do_not_matter(case, rnd):
    family, link, df = case
    base = fit(df, family, link)
    perm = list(range(len(df)))
    rnd.shuffle(perm)
    labels = {g: f"L{rnd.randint(0, 10**6)}-{g}" for g in df["g"].unique()}
    for other in (df.iloc[perm], df.assign(g=df["g"].map(labels))):
        res = fit(other, family, link)
        assert res.llf == pytest.approx(base.llf, abs=1e-6 * max(1.0, abs(base.llf)))
        assert np.allclose(res.params, base.params, rtol=1e-4, atol=1e-4 * np.asarray(base.bse))


@SETTINGS
@given(datasets(), st.floats(1e-3, 1e4), st.floats(-1e4, 1e4))
def test_affine_rescaling_of_a_predictor(case, a, b):
    family, link, df = case
    base = fit(df, family, link)
    res = fit(df.assign(x1=a * df["x1"] + b), family, link)
    if family == "gaussian" and link == "identity":  # REML's log|X'V^-1X| moves by -2 log a
        assert res.llf == pytest.approx(base.llf - np.log(a), abs=1e-5 * max(1.0, abs(base.llf)))
    else:
        assert res.llf == pytest.approx(base.llf, abs=1e-5 * max(1.0, abs(base.llf)))
    assert res.params["x1"] * a == pytest.approx(base.params["x1"], abs=1e-4 * base.bse["x1"] + 1e-8)
    assert res.params["x2"] == pytest.approx(base.params["x2"], abs=1e-4 * base.bse["x2"] + 1e-8)


@SETTINGS
@given(datasets(pairs=[("gaussian", "identity")]), st.floats(-1e6, 1e6))
def test_shifting_a_gaussian_response_moves_only_the_intercept(case, c):
    family, link, df = case
    base = fit(df, family, link)
    res = fit(df.assign(y=df["y"] + c), family, link)
    assert res.params["Intercept"] == pytest.approx(base.params["Intercept"] + c, abs=1e-6 * (1 + abs(c)))
    assert np.allclose(res.params[["x1", "x2"]], base.params[["x1", "x2"]], rtol=1e-6, atol=1e-6)
    assert res.var_re == pytest.approx(base.var_re, rel=1e-5, abs=1e-8)
    assert res.llf == pytest.approx(base.llf, abs=1e-6)


@pytest.mark.parametrize("link, nagq", [("identity", 1), ("inverse", 1), ("identity", 0)])
def test_gamma_response_in_other_units_maps_every_estimate(link, nagq):
    """A Gamma response is fitted as y / c (c a power of 2 near its size), so y * 2^10 is the same fit and its
    record maps back exactly: the identity link's beta, sigma_u, modes and their SDs times 2^10 (the inverse
    link's divided), the dispersion unchanged, llf - n log 2^10."""
    df = promise_data("gamma", link, seed=3, n_groups=12, size=6, sigma=0.4)
    a = 2.0**10
    base, res = (promise_fit(d, "gamma", link, nagq) for d in (df, df.assign(y=df.y * a)))
    k = a if link == "identity" else 1.0 / a
    assert base.converged and res.converged
    np.testing.assert_allclose(res.params, base.params * k, rtol=1e-13)
    np.testing.assert_allclose(res.bse, base.bse * k, rtol=1e-13)
    np.testing.assert_allclose([res.var_re, res.scale, res.llf], [base.var_re * k * k, base.scale,
                                                                  base.llf - len(df) * np.log(a)], rtol=1e-13)
    np.testing.assert_allclose(res.blups, base.blups * k, rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(res.blup_se, base.blup_se * k, rtol=1e-13)
    np.testing.assert_allclose(res._fit.cov_params, base._fit.cov_params * k, rtol=1e-13)
    np.testing.assert_allclose(res.fittedvalues, base.fittedvalues * a, rtol=1e-12)


# ------------------------------------------------------------------ promises of every fit (nagq 0, 1, 5)
RESCALABLE = {("gamma", "inverse"), ("gamma", "log"), ("gamma", "identity"), ("gaussian", "log"),
              ("gaussian", "identity")}


def promise_data(family, link, seed, n_groups, size, sigma):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), size)
    x = rng.normal(size=g.size)
    u = rng.normal(0, sigma, n_groups)[g]
    if link in ("identity", "inverse") and family != "gaussian":
        eta = np.clip((0.5 + 0.05 * x + 0.1 * u) if link == "inverse" else (2.0 + 0.5 * x + u), 0.05, None)
        mu = 1.0 / eta if link == "inverse" else eta
    elif link == "identity":
        mu = 1.0 + 0.5 * x + u
    elif link in ("logit", "probit"):
        mu = 1.0 / (1.0 + np.exp(-(0.3 + 0.8 * x + u)))
    else:
        mu = np.exp(0.5 + 0.4 * x + 0.5 * u)
    if family == "gaussian":
        y = rng.normal(mu, 0.5)
    elif family == "binomial":
        y = rng.binomial(1, mu).astype(float)
    elif family == "poisson":
        y = rng.poisson(mu).astype(float)
    else:
        y = rng.gamma(2.0, mu / 2.0)
    return pd.DataFrame({"y": y, "x": x, "g": g})


def promise_fit(df, family, link, nagq):
    """Fit; ValueError is an allowed answer (returned as None), anything else fails the test."""
    try:
        model = GLMM.from_formula("y ~ x", df, groups="g", family=make_family(family, link))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return model.fit(nagq=nagq, reml=False)
    except ValueError:
        return None


def glm_point_llf(df, family, link):
    """statsmodels GLM log-likelihood at its MLE (ML dispersion where there is one); None if it fails."""
    fam = make_family(family, link)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            glm = sm.GLM.from_formula("y ~ x", df, family=fam).fit()
        mu = np.asarray(glm.fittedvalues)
        if not (np.all(np.isfinite(glm.params)) and glm.converged):
            return None
        if family in ("poisson", "gamma") and np.any(mu <= 0):
            return None
        if family in ("gamma", "gaussian"):
            res = optimize.minimize_scalar(lambda ls: -fam.loglike(df.y.to_numpy(), mu, scale=np.exp(ls)),
                                           bounds=(-25, 15), method="bounded", options={"xatol": 1e-10})
            return -res.fun
        return float(glm.llf)
    except Exception:  # noqa: BLE001 - statsmodels' own failures only mean no reference here
        return None


def check_promises(pair, nagq, seed, n_groups, size, sigma, c):
    family, link = pair
    df = promise_data(family, link, seed, n_groups, size, sigma)
    res = promise_fit(df, family, link, nagq)
    if res is None:
        return
    n = len(df)
    tol = 1e-3 if nagq == 0 else 1e-5
    if res.converged:
        glm = glm_point_llf(df, family, link)
        if glm is not None:
            assert res.llf >= glm - 1e-6 * (1 + abs(glm)), (res.llf, glm)
    if pair in RESCALABLE:
        scaled = promise_fit(df.assign(y=df.y * c), family, link, nagq)
        assert scaled is not None
        if res.converged:
            assert scaled.converged, scaled.optsummary.message
            assert scaled.llf == pytest.approx(res.llf - n * np.log(c), abs=tol * (1 + abs(res.llf)))
    order = np.random.default_rng(seed + 1).permutation(n)
    relabelled = df.iloc[order].assign(g=lambda d: "G" + (97 - d.g).astype(str))
    other = promise_fit(relabelled, family, link, nagq)
    assert other is not None
    assert other.converged == res.converged
    if res.converged:  # (a search stopped against the edge of the support may stop at another point of it)
        assert other.llf == pytest.approx(res.llf, abs=tol * (1 + abs(res.llf)))
        assert np.allclose(other.params, res.params, rtol=1e-3, atol=1e-4)


PROMISE_CASE = dict(pair=st.sampled_from(PAIRS), nagq=st.sampled_from([0, 1, 5]), seed=st.integers(0, 10_000),
            n_groups=st.integers(4, 12), size=st.integers(2, 8), sigma=st.sampled_from([0.0, 0.3, 1.0]),
            c=st.sampled_from([1e-3, 10.0, 1e4]))


@settings(derandomize=True, max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(**PROMISE_CASE)
def test_fits_keep_their_promises(pair, nagq, seed, n_groups, size, sigma, c):
    check_promises(pair, nagq, seed, n_groups, size, sigma, c)


@pytest.mark.slow
@settings(derandomize=True, max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(**PROMISE_CASE)
def test_fits_keep_their_promises_many_cases(pair, nagq, seed, n_groups, size, sigma, c):
    check_promises(pair, nagq, seed, n_groups, size, sigma, c)


# ---------------------------------------------------------------- random slopes and NB2: the same promises
STRUCTURES = [("gaussian", "y ~ x + (x | g)"), ("gaussian", "y ~ x + (x || g)"), ("poisson", "y ~ x + (x | g)"),
              ("binomial", "y ~ x + (x || g)"), ("negativebinomial", "y ~ x + (1 | g)"),
              ("negativebinomial", "y ~ x + (x || g)")]


def structure_data(family, seed, n_groups, size, sd_intercept, sd_slope):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), size)
    x = rng.normal(size=g.size)
    eta = rng.normal(0, sd_intercept, n_groups)[g] + rng.normal(0, sd_slope, n_groups)[g] * x
    if family == "gaussian":
        y = rng.normal(1.0 + 0.5 * x + eta, 0.5)
    elif family == "binomial":
        y = rng.binomial(1, 1.0 / (1.0 + np.exp(-(0.3 + 0.8 * x + eta)))).astype(float)
    else:
        mu = np.exp(0.5 + 0.4 * x + eta)
        y = rng.poisson(mu * rng.gamma(2.0, 0.5, g.size) if family == "negativebinomial" else mu).astype(float)
    return pd.DataFrame({"y": y, "x": x, "g": g})


def structure_fit(df, family, formula):
    """ML fit; ValueError is an allowed answer (None), anything else fails the test."""
    try:
        model = GLMM.from_formula(formula, df, family=make_family(family))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return model.fit(reml=False)
    except ValueError:
        return None


def no_random_effects_llf(df, family):
    """The log-likelihood maximised without random effects (every variance at 0), from statsmodels."""
    X = sm.add_constant(df[["x"]].to_numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if family == "negativebinomial":  # NB2 with alpha estimated (statsmodels' discrete model)
            fit = sm.NegativeBinomial(df["y"].to_numpy(), X, loglike_method="nb2").fit(disp=0, maxiter=500)
            return float(fit.llf) if fit.mle_retvals["converged"] else None
        if family == "gaussian":
            return float(sm.OLS(df["y"].to_numpy(), X).fit().llf)
        fam = make_family(family)
        fit = sm.GLM(df["y"].to_numpy(), X, family=fam).fit()
        return float(fit.llf) if fit.converged else None


def check_structure_promises(case, seed, n_groups, size, sd_intercept, sd_slope):
    family, formula = case
    df = structure_data(family, seed, n_groups, size, sd_intercept, sd_slope)
    res = structure_fit(df, family, formula)
    if res is None:
        return
    if res.converged:  # a maximum over the variances is never below the point where they are all 0
        base = no_random_effects_llf(df, family)
        if base is not None:
            assert res.llf >= base - 1e-6 * (1 + abs(base)), (res.llf, base)
    order = np.random.default_rng(seed + 1).permutation(len(df))
    relabelled = df.iloc[order].assign(g=lambda d: "G" + (97 - d.g).astype(str))
    other = structure_fit(relabelled, family, formula)
    assert other is not None
    if res.converged and other.converged:
        assert other.llf == pytest.approx(res.llf, abs=1e-5 * (1 + abs(res.llf)))
        assert np.allclose(other.fe_params, res.fe_params, rtol=1e-3, atol=1e-3)


STRUCTURE_CASE = dict(case=st.sampled_from(STRUCTURES), seed=st.integers(0, 10_000), n_groups=st.integers(6, 14),
                      size=st.integers(3, 10), sd_intercept=st.sampled_from([0.0, 0.5, 1.0]),
                      sd_slope=st.sampled_from([0.0, 0.3, 0.8]))


@settings(derandomize=True, max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**STRUCTURE_CASE)
def test_slope_and_nb2_fits_keep_their_promises(case, seed, n_groups, size, sd_intercept, sd_slope):
    check_structure_promises(case, seed, n_groups, size, sd_intercept, sd_slope)


@pytest.mark.slow
@settings(derandomize=True, max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**STRUCTURE_CASE)
def test_slope_and_nb2_fits_keep_their_promises_many_cases(case, seed, n_groups, size, sd_intercept, sd_slope):
    check_structure_promises(case, seed, n_groups, size, sd_intercept, sd_slope)
