"""The Newton engine of the Laplace fit: fourth eta-derivatives, the exact Hessian, modes from group sums
(log links), the pilot fit on many groups and the subset estimate of the AGQ check, each against an
independent computation (finite differences, the row-level mode solver, the fit without the shortcut)."""
import warnings

import numpy as np
import pandas as pd
import pytest

import glmm_ext
from glmm_ext.engine import _glmm, _laplace
from glmm_ext.engine._families import Distribution, make_family
from glmm_ext.engine._kernels import FOURTH
from glmm_ext.engine._laplace import GLMMData, MarginalLikelihood
from glmm_ext.engine._optimize import fd_hessian
from glmm_ext.engine._segments import group_starts

from conftest import kernel_rows

PAIRS = sorted(FOURTH)
PHI = {"gaussian": 0.7, "gamma": 0.4}


def test_every_kernel_has_a_fourth_derivative():
    from glmm_ext.engine._kernels import KERNELS

    assert PAIRS == sorted(KERNELS)


@pytest.mark.parametrize("family,link", PAIRS)
def test_fourth_derivative_is_the_derivative_of_t(family, link):
    rng = np.random.default_rng(1)
    for trials in ((False, True) if family == "binomial" else (False,)):
        y, eta, m = kernel_rows(family, link, 300, rng, trials=trials, low=0.5)
        dist = Distribution(make_family(family, link))
        phi = PHI.get(family, 1.0)
        const = dist.log_constant(y, m)
        _, _, d, t = dist.evaluate(y, eta, m, phi, const, order=3)
        q = dist.fourth(y, eta, m, phi, d, t)
        h = 1e-5 * np.maximum(1.0, np.abs(eta))
        t_plus = dist.evaluate(y, eta + h, m, phi, const, order=3)[3]
        t_minus = dist.evaluate(y, eta - h, m, phi, const, order=3)[3]
        np.testing.assert_allclose(q, (t_plus - t_minus) / (2 * h), rtol=1e-6, atol=1e-8)


def test_fourth_derivative_in_the_tails():
    """|eta| = 40: the logit's q = d (s^2 - 2 d) (d = e / (1 + e)^2, s = (1 - e) / (1 + e), e = exp(-40)) without
    rounding mu to 0 or 1; the probit's finite and tiny on the right side, as the Mills ratio says."""
    eta = np.array([-40.0, 40.0, -40.0, 40.0])
    y, m = np.array([0.0, 1.0, 1.0, 0.0]), np.ones(4)
    dist = Distribution(make_family("binomial", "logit"))
    _, _, d, t = dist.evaluate(y, eta, m, 1.0, np.zeros(4), order=3)
    e = np.exp(-40.0)
    d0, s0 = e / (1 + e) ** 2, (1 - e) / (1 + e)
    np.testing.assert_allclose(dist.fourth(y, eta, m, 1.0, d, t), d0 * (s0 * s0 - 2 * d0), rtol=1e-12)
    probit = Distribution(make_family("binomial", "probit"))
    _, _, d, t = probit.evaluate(y, eta, m, 1.0, np.zeros(4), order=3)
    q = probit.fourth(y, eta, m, 1.0, d, t)
    assert np.all(np.isfinite(q)) and np.all(np.abs(q[:2]) < 1e-300) and np.all(np.abs(q[2:]) < 1e-3)


def _objective(family, link, rng, trials=False, offset=False, freq=False, nagq=1):
    """A MarginalLikelihood on 20 groups of 3-9 rows with two predictors, built through the model's design
    (so frequency weights add their dispersion term); theta near the data's optimum."""
    G = 20
    counts = rng.integers(3, 10, G)
    n = counts.sum()
    g = np.repeat(np.arange(G), counts)
    x1, x2 = rng.normal(size=n), rng.uniform(-1, 1, n)
    positive = link in ("identity", "inverse") and family != "gaussian"
    u = rng.normal(0, 0.1 if positive else 0.6, G)[g]
    eta = (2.0 + 0.2 * x1 - 0.1 * x2 + u) if positive else (0.3 + 0.5 * x1 - 0.4 * x2 + u)
    dist = Distribution(make_family(family, link))
    mu = dist.mean(eta)
    df = pd.DataFrame({"x1": x1, "x2": x2, "g": g, "off": rng.normal(0, 0.2, n) if offset else 0.0})
    if family == "binomial":
        m = rng.integers(1, 6, n) if trials else np.ones(n, int)
        df["s"] = rng.binomial(m, mu)
        df["f"] = m - df["s"]
        formula = "s + f ~ x1 + x2" if trials else "s ~ x1 + x2"
    else:
        df["y"] = {"poisson": lambda: rng.poisson(mu), "gamma": lambda: rng.gamma(2.0, mu / 2.0),
                   "gaussian": lambda: mu + rng.normal(0, 0.5, n)}[family]().astype(float)
        formula = "y ~ x1 + x2"
    kw = {"offset": df["off"]} if offset else {}
    if freq:
        kw["freq_weights"] = rng.integers(1, 4, n).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = glmm_ext.GLMM.from_formula(formula, df, groups="g", family=make_family(family, link), **kw)
        res = model.fit(nagq=nagq)
    data = model.design.engine_data(scale_response=True)
    objective = MarginalLikelihood(model.design.dist, data, nagq=nagq)
    if res.method in ("REML", "ML"):  # Gaussian + identity is fitted by its exact profile: a point by hand
        return objective, np.array([0.3, 0.5, -0.4, 0.6, np.log(0.25)])
    return objective, np.asarray(res.optsummary.final, float)


@pytest.mark.parametrize("family,link", PAIRS)
def test_exact_hessian_equals_differences_of_the_gradient(family, link):
    rng = np.random.default_rng(7)
    variants = [{}, {"offset": True}]
    if family == "binomial":
        variants.append({"trials": True})
    if (family, link) == ("gaussian", "log"):  # frequency weights add an eta-free dispersion term (Gamma's
        variants.append({"freq": True})       # weighted fits run on the generic path, finite differences)
    for kw in variants:
        objective, theta = _objective(family, link, rng, **kw)
        assert objective.has_exact_hessian
        p = objective.p
        for shift in (0.0, 0.05):  # at the optimum and away from it, and with the signed SD negative
            for sign in (1.0, -1.0):
                x = theta + shift * rng.normal(size=theta.size)
                x[p] = sign * max(abs(x[p]), 0.05)
                exact = objective.hessian(x)
                numeric = fd_hessian(objective, x, rel_step=1e-5)
                np.testing.assert_allclose(exact, numeric, rtol=1e-5, atol=1e-5 * np.abs(numeric).max(),
                                           err_msg=f"{family}-{link} {kw} shift={shift} sign={sign}")


def test_no_exact_hessian_for_agq_and_generic_pairs():
    rng = np.random.default_rng(3)
    objective, theta = _objective("binomial", "logit", rng, nagq=5)
    assert objective.hessian(theta) is None
    assert not Distribution(make_family("binomial", "cloglog")).has_exact_hessian
    assert not Distribution(make_family("negativebinomial", "log")).has_exact_hessian


@pytest.mark.parametrize("family", ["poisson", "gamma"])
def test_log_link_modes_equal_the_row_level_solver(family, monkeypatch):
    """Counts of 1e9 and 0, big offsets, large and tiny sigma: the O(G) solution is the mode."""
    rng = np.random.default_rng(11)
    counts = np.array([1, 2, 5, 40, 3, 7])
    n = counts.sum()
    eta_fixed = rng.normal(0, 1, n) + np.repeat([0.0, 20.0, -3.0, 1.0, 5.0, 0.0], counts)
    mu = np.exp(eta_fixed)
    y = rng.poisson(mu).astype(float) if family == "poisson" else rng.gamma(3.0, mu / 3.0)
    if family == "poisson":
        y[-7:] = 0.0
    dist = Distribution(make_family(family, "log"))
    m = np.ones(n)
    data = GLMMData(y=y, X=np.ones((n, 1)), offset=np.zeros(n), m=m, const=dist.log_constant(y, m),
                    starts=group_starts(counts), counts=counts, aux=dist.row_aux(y))
    phi = 1.0 if family == "poisson" else 0.3
    for sigma in (1e-3, 0.5, 3.0):
        b = _laplace.log_link_modes(dist, y, eta_fixed, sigma, phi, data.starts, counts, None)
        rows = _laplace.conditional_modes(dist, data, eta_fixed, sigma, phi, np.zeros(len(counts)), tol=1e-12)
        assert rows.converged
        np.testing.assert_allclose(b, rows.b, rtol=1e-10, atol=1e-12)
        # and the solver accepts b as the mode at once (one pass over the rows)
        again = _laplace.conditional_modes(dist, data, eta_fixed, sigma, phi, b, tol=1e-10)
        assert again.converged and again.iterations == 1


def _many_groups(family, G=4500, size=4, seed=5):
    return glmm_ext.simulate(family, None, n_groups=G, group_size=size, beta=(0.5, 0.8, -0.4), sigma_u=0.6,
                             seed=seed)


@pytest.mark.parametrize("family", ["binomial", "poisson"])
def test_pilot_fit_reaches_the_fit_without_it(family, monkeypatch):
    """Above PILOT_ABOVE_GROUPS groups the search starts from a pilot fit on PILOT_GROUPS of them and its
    sigma probes are screened by the pilot's profile: the same optimum as the search without the pilot."""
    df = _many_groups(family)
    assert df["g"].nunique() > _glmm.PILOT_ABOVE_GROUPS

    def fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return glmm_ext.GLMM.from_formula("y ~ x1 + x2", df, groups="g", family=make_family(family)).fit()

    piloted = fit()
    profile = piloted.optsummary.sigma_profile
    assert len(profile["screened"]) == len(profile["sigma"]) == 6
    monkeypatch.setattr(_glmm, "PILOT_ABOVE_GROUPS", 10**9)
    direct = fit()
    assert not any(direct.optsummary.sigma_profile["screened"])
    assert piloted.converged and direct.converged
    assert piloted.llf == pytest.approx(direct.llf, abs=1e-6)
    np.testing.assert_allclose(piloted.fe_params, direct.fe_params, rtol=1e-5, atol=1e-6)
    assert piloted.var_re == pytest.approx(direct.var_re, rel=1e-4)
    np.testing.assert_allclose(piloted.bse_fe, direct.bse_fe, rtol=1e-4)
    # a screened probe's estimate is below the optimum, as the probe evaluated on all rows is
    for screened, estimate, full in zip(profile["screened"], profile["profile_llf"],
                                        direct.optsummary.sigma_profile["profile_llf"]):
        assert estimate < piloted.llf and full < direct.llf
        if screened:
            assert estimate < piloted.llf - 10.0


def test_agq_check_from_a_subset_of_groups_agrees_with_all_groups(monkeypatch):
    df = _many_groups("binomial", G=2600, size=3, seed=9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = glmm_ext.GLMM.from_formula("y ~ x1 + x2", df, groups="g", family=make_family("binomial"))
        res = model.fit()
    data = model.design.engine_data(scale_response=True)
    laplace = MarginalLikelihood(model.design.dist, data, nagq=1)
    theta = np.asarray(res.optsummary.final, float)
    everything, n_all = _glmm.laplace_agq_gap(laplace, theta, max_groups=10**9)
    estimate, n_used = _glmm.laplace_agq_gap(laplace, theta, max_groups=1000)
    assert n_all == data.n_groups
    # the whole sum by hand: AGQ(9) minus Laplace log-likelihood of the model at theta
    agq = MarginalLikelihood(model.design.dist, data, nagq=9)
    agq.u_warm = laplace.u_warm.copy()
    assert everything == pytest.approx(-agq(theta, need_grad=False)[0] + laplace(theta, need_grad=False)[0],
                                       abs=1e-8)
    if n_used < n_all:  # decided from the subset: within a few of its standard errors of the whole sum
        assert abs(estimate - everything) < 0.25 * max(1.0, abs(everything))
    else:
        assert estimate == pytest.approx(everything, abs=1e-10)


def test_boundary_fit_reports_exactly_zero():
    """A search that ends within rounding of sigma_u = 0 reports the boundary itself."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=8)
    y = rng.poisson(np.exp(0.5 + 0.3 * x))
    G = 30  # every group the same 8 rows: no variation between groups at all
    df = pd.DataFrame({"x": np.tile(x, G), "y": np.tile(y, G), "g": np.repeat(np.arange(G), 8)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = glmm_ext.GLMM.from_formula("y ~ x", df, groups="g", family=make_family("poisson")).fit()
    assert res.singular and res.converged
    assert res.var_re == 0.0
    assert np.all(res.random_effects_se == 0.0)


def test_allocator_settings_are_set_once_and_the_memory_released(monkeypatch):
    """glibc only: the thresholds are set on the first fit; every outermost fit on many rows ends with malloc_trim."""
    from glmm_ext.engine import _memory

    if _memory._glibc() is None:
        pytest.skip("not glibc")
    calls = []
    real = _memory._glibc()

    class Spy:
        def mallopt(self, param, value):
            calls.append(("mallopt", param, value))
            return real.mallopt(param, value)

        def malloc_trim(self, pad):
            calls.append(("trim", pad))
            return real.malloc_trim(pad)

    monkeypatch.setitem(_memory._STATE, "libc", Spy())
    monkeypatch.setitem(_memory._STATE, "set", False)
    with _memory.fast_allocation():
        with _memory.fast_allocation():  # nested: one trim, at the end of the outer one
            pass
        assert ("trim", 0) not in calls
    assert calls == [("mallopt", _memory.M_MMAP_THRESHOLD, _memory.MMAP_THRESHOLD),
                     ("mallopt", _memory.M_TRIM_THRESHOLD, _memory.TRIM_THRESHOLD), ("trim", 0)]
    calls.clear()
    monkeypatch.setattr(_memory, "ENABLED", True)
    with _memory.fast_allocation():  # already set: only the trim
        pass
    assert calls == [("trim", 0)]
    calls.clear()
    with _memory.fast_allocation(rows=_memory.TRIM_ROWS - 1):  # a small fit keeps its freed memory for the next
        pass
    assert calls == []
    with _memory.fast_allocation(rows=_memory.TRIM_ROWS):
        pass
    assert calls == [("trim", 0)]
    calls.clear()
    monkeypatch.setattr(_memory, "ENABLED", False)
    with _memory.fast_allocation():
        pass
    assert calls == []


@pytest.mark.parametrize("reml", [True, False])
def test_gaussian_profile_is_pinned_by_its_slope(reml):
    """The REML/ML theta is the root of the criterion's analytic slope (checked against a difference of the
    criterion), so rows in another order give the same estimates to rounding, not to Brent's ~1e-7."""
    from glmm_ext.engine import _lmm
    from glmm_ext.engine._one_factor import standardize_gaussian

    df = glmm_ext.simulate("gaussian", n_groups=40, group_size=15, seed=4)
    model = glmm_ext.GLMM.from_formula("y ~ x1 + x2", df, groups="g")
    std = standardize_gaussian(model.design)
    stats = _lmm.lmm_stats(std.X_s, std.y_s, model.design.starts, model.design.counts)
    for theta in (0.3, 1.2):
        h = 1e-6
        difference = (_lmm.lmm_deviance(theta + h, stats, reml) - _lmm.lmm_deviance(theta - h, stats, reml)) / (2 * h)
        assert _lmm.lmm_deviance_slope(theta, stats, reml) == pytest.approx(difference, rel=1e-6)
    theta = _lmm.optimize_theta(stats, reml)[0]
    assert abs(_lmm.lmm_deviance_slope(theta, stats, reml)) < 1e-8 * abs(_lmm.lmm_deviance_slope(1.5 * theta, stats,
                                                                                                   reml))
    a = model.fit(reml=reml)
    b = glmm_ext.GLMM.from_formula("y ~ x1 + x2", df.sample(frac=1.0, random_state=3), groups="g").fit(reml=reml)
    assert a.var_re == pytest.approx(b.var_re, rel=1e-12) and a.scale == pytest.approx(b.scale, rel=1e-12)
    np.testing.assert_allclose(a.fe_params, b.fe_params, rtol=1e-12)


def test_pilot_near_zero_sigma_is_no_start(monkeypatch):
    """sigma_u = 0 is a stationary point of the even objective: a pilot ending near it (small groups, small
    sigma_u; seed 0 gives |s| ~ 1e-4) must not start Newton steps, which would not leave it."""
    df = glmm_ext.simulate("binomial", None, n_groups=4500, group_size=4, sigma_u=0.2, seed=0)

    def fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return glmm_ext.GLMM.from_formula("y ~ x1 + x2", df, groups="g", family=make_family("binomial")).fit()

    piloted = fit()
    monkeypatch.setattr(_glmm, "PILOT_ABOVE_GROUPS", 10**9)
    direct = fit()
    assert piloted.var_re > 1e-3 and not piloted.optsummary.sigma_profile["restarted"]
    assert piloted.llf == pytest.approx(direct.llf, abs=1e-6)
    assert piloted.var_re == pytest.approx(direct.var_re, rel=1e-4)


def test_pilot_keeps_the_frequency_weight_term(monkeypatch):
    """Gaussian-log with frequency weights (a dispersion term free of eta): the pilot's subset carries its
    share of the term, so the pilot's dispersion is the fit's (it was ~4x off without it)."""
    rng = np.random.default_rng(3)
    df = glmm_ext.simulate("gaussian", "log", n_groups=4300, group_size=3, sigma_u=0.4, scale=0.05, seed=5)
    f = rng.integers(1, 6, len(df)).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = glmm_ext.GLMM.from_formula("y ~ x1 + x2", df, groups="g", family=make_family("gaussian", "log"),
                                           freq_weights=f)
        piloted = model.fit()
        data = model.design.engine_data(scale_response=True)
        assert data.dispersion_term is not None
        pilot = _glmm._pilot_fit(model.design.dist, data, *_glmm.glm_start(model.design.dist, data), 100, 1e-6)
        monkeypatch.setattr(_glmm, "PILOT_ABOVE_GROUPS", 10**9)
        direct = model.fit()
    p = model.k_fe
    final = np.asarray(piloted.optsummary.final)
    assert abs(pilot.theta[p + 1] - final[p + 1]) < 0.2  # log phi: the same likelihood on a subset
    assert piloted.llf == pytest.approx(direct.llf, abs=1e-6)
    np.testing.assert_allclose(piloted.fe_params, direct.fe_params, rtol=1e-5, atol=1e-6)
