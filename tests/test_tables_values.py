"""Every number of every report table, recomputed in the test from the fit's estimates and the formulas.

Nothing here calls the package's own formulas: densities come from scipy.stats, the inverse links,
variance functions and residuals are written out below, the normal quantiles come from the standard
library, and each group's conditional mode and its standard error are found by brute force (a scalar
optimiser and finite differences of the group's log integrand).  Formulas: the seeds'
Random Effects / ICC / Fixed Effects / Model Fit / BLUP / diagnostics tables, and Nakagawa, Johnson &
Schielzeth (2017) for the latent-scale variances.
"""
import math
import warnings
from statistics import NormalDist

import numpy as np
import pytest
from scipy import optimize, stats

import glmm_ext

PAIRS = [("gaussian", "identity"), ("gaussian", "log"), ("binomial", "logit"), ("binomial", "probit"),
         ("poisson", "log"), ("poisson", "identity"), ("gamma", "inverse"), ("gamma", "log"), ("gamma", "identity")]
DISPERSION = ("gaussian", "gamma")


def inverse_link(link, eta):
    return {"identity": lambda e: e, "log": np.exp, "logit": lambda e: 1.0 / (1.0 + np.exp(-e)),
            "probit": lambda e: np.array([NormalDist().cdf(v) for v in np.ravel(e)]).reshape(np.shape(e)),
            "inverse": lambda e: 1.0 / e}[link](eta)


def variance_function(family, mu):
    return {"gaussian": np.ones_like(mu), "binomial": mu * (1 - mu), "poisson": mu, "gamma": mu * mu}[family]


def deviance_residuals(family, y, mu, m):
    """sign(y - mu) sqrt(unit deviance), the unit deviances written out (m = binomial trials)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if family == "gaussian":
            dev = (y - mu) ** 2
        elif family == "binomial":
            a = np.where(y > 0, y * np.log(y / mu), 0.0)
            b = np.where(y < 1, (1 - y) * np.log((1 - y) / (1 - mu)), 0.0)
            dev = 2 * m * (a + b)
        elif family == "poisson":
            dev = 2 * (np.where(y > 0, y * np.log(y / mu), 0.0) - (y - mu))
        else:
            dev = 2 * (-np.log(y / mu) + (y - mu) / mu)
    return np.sign(y - mu) * np.sqrt(dev)


def log_density(family, y, mu, m, phi):
    """Per-row log density from scipy.stats (m = binomial trials, phi = dispersion)."""
    if family == "binomial":
        return stats.binom.logpmf(np.round(y * m), m, mu)
    if family == "poisson":
        return stats.poisson.logpmf(y, mu)
    if family == "gamma":
        return stats.gamma.logpdf(y, a=1 / phi, scale=mu * phi)
    return stats.norm.logpdf(y, mu, np.sqrt(phi))


def trigamma(x, terms=200_000):
    """psi'(x) = sum_k 1/(x + k)^2, summed to `terms` and the tail integrated (Euler-Maclaurin)."""
    k = np.arange(terms)
    tail = x + terms
    return float(np.sum(1.0 / (x + k) ** 2) + 1.0 / tail + 0.5 / tail**2)


def make_data(family, link, seed=3):
    """15 groups of 3-10 rows; two rows made missing (one of them in two columns)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(3, 11, size=15)
    beta = (3.0, 0.3, -0.3) if link in ("identity", "inverse") else (0.4, 0.5, -0.4)
    if (family, link) == ("gamma", "inverse"):
        beta = (1.0, 0.1, -0.1)
    sigma_u = 0.3 if link in ("identity", "inverse") else 0.7
    if (family, link) == ("gamma", "inverse"):
        sigma_u = 0.1
    kw = {}
    if (family, link) == ("binomial", "logit"):
        kw["trials"] = rng.integers(1, 9, size=int(sizes.sum()))
    if (family, link) == ("poisson", "log"):
        kw["offset"] = True
    df = glmm_ext.simulate(family, link, n_groups=15, group_size=sizes, beta=beta, sigma_u=sigma_u, scale=0.3,
                           seed=seed, **kw)
    df["g"] = "grp" + df["g"].astype(str)
    response = "successes" if "successes" in df else "y"
    df[response] = df[response].astype(float)
    df.loc[4, [response, "x1"]] = np.nan  # one row bad in two columns: one row dropped
    df.loc[9, "x2"] = np.nan
    return df


def fit_pair(family, link, nagq=1):
    df = make_data(family, link)
    lhs = "successes + failures" if "successes" in df else "y"
    kw = {"offset": "logexp"} if "logexp" in df else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = glmm_ext.GLMM.from_formula(f"{lhs} ~ x1 + x2", df, groups="g",
                                           family=glmm_ext.make_family(family, link), **kw)
        res = model.fit() if (family, link) == ("gaussian", "identity") else model.fit(nagq=nagq)
    used = df.drop(index=[4, 9])
    return res, used


@pytest.fixture(scope="module", params=PAIRS, ids=["-".join(p) for p in PAIRS])
def case(request):
    return make_case(*request.param)


def make_case(family, link, nagq=1):
    res, used = fit_pair(family, link, nagq)
    y = (used["successes"] / (used["successes"] + used["failures"])).to_numpy() if "successes" in used \
        else used["y"].to_numpy()
    m = (used["successes"] + used["failures"]).to_numpy(float) if "successes" in used else np.ones(len(used))
    X = np.column_stack([np.ones(len(used)), used["x1"], used["x2"]])
    offset = used["logexp"].to_numpy() if "logexp" in used else np.zeros(len(used))
    eta_fixed = X @ np.asarray(res.params, float) + offset
    return dict(family=family, link=link, res=res, used=used, y=y, m=m, eta_fixed=eta_fixed)


def latent_residual(family, link, res):
    """sigma_e^2 of the ICC by (family, link) from the seeds' table; None where undefined."""
    if family == "gaussian" and link == "identity":
        return res.scale
    return {("binomial", "logit"): math.pi**2 / 3, ("binomial", "probit"): 1.0}.get((family, link))


def test_random_effects_table(case):
    res, family = case["res"], case["family"]
    table = res.random_effects_table()
    expected = [("g", res.var_re)]
    if family == "gaussian":
        expected.append(("Residual", res.scale))
    elif family == "gamma":
        expected.append(("Residual (dispersion; Var = phi mu^2)", res.scale))
    assert list(table.index) == [k for k, _ in expected]
    assert np.allclose(table["Variance"], [v for _, v in expected], rtol=1e-14)
    assert np.allclose(table["Std.Dev."], [math.sqrt(v) for _, v in expected], rtol=1e-14)
    assert res.sigma_re == pytest.approx(math.sqrt(res.var_re), rel=1e-14)
    assert float(res.cov_re.iloc[0, 0]) == res.var_re
    if family not in DISPERSION:
        assert res.scale == 1.0


def test_icc_and_design_effect(case):
    res, used = case["res"], case["used"]
    resid = latent_residual(case["family"], case["link"], res)
    table = res.icc_table()
    assert list(table.index) == ["ICC", "Design effect"]
    n_bar = len(used) / used["g"].nunique()
    if resid is None:
        assert res.icc is None and res.deff is None
        assert list(table["Value"]) == ["N/A", "N/A"]
        assert "not defined" in table.loc["ICC", "Note"]
        return
    icc = res.var_re / (res.var_re + resid)
    deff = 1 + (n_bar - 1) * icc
    assert res.icc == pytest.approx(icc, rel=1e-12) and table.loc["ICC", "Value"] == pytest.approx(icc, rel=1e-12)
    assert res.deff == pytest.approx(deff, rel=1e-12)
    assert table.loc["Design effect", "Value"] == pytest.approx(deff, rel=1e-12)
    assert f"n_bar = {n_bar:.4g}" in table.loc["Design effect", "Note"]


def test_latent_scale_variances(case):
    res, family, link = case["res"], case["family"], case["link"]
    table = res.latent_variance_table()
    if (family, link) in (("binomial", "logit"), ("binomial", "probit")):
        expected = {"distribution-specific": math.pi**2 / 3 if link == "logit" else 1.0}
    elif (family, link) == ("poisson", "log"):
        # lambda = mean over the rows of exp(x'beta + offset + sigma_u^2 / 2) (the expected count)
        lam = float(np.mean(np.exp(case["eta_fixed"] + res.var_re / 2)))
        assert res.latent_lambda == pytest.approx(lam, rel=1e-12)
        expected = {"lognormal approximation": math.log(1 + 1 / lam), "trigamma": trigamma(lam)}
    elif (family, link) == ("gamma", "log"):
        nu = 1 / res.scale
        expected = {"lognormal approximation": math.log(1 + 1 / nu), "trigamma": trigamma(nu)}
    else:
        assert table is None
        return
    assert list(table.index) == list(expected)
    assert np.allclose(table["Latent residual variance"], list(expected.values()), rtol=1e-9)
    assert np.allclose(table["Random-intercept variance"], res.var_re, rtol=1e-14)


@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_fixed_effects_table(case, alpha):
    res, family, link = case["res"], case["family"], case["link"]
    table = res.fixed_effects_table(alpha)
    est = np.asarray(res.params, float)
    se = np.sqrt(np.diag(np.asarray(res.cov_params(), float)))
    z = est / se
    p = np.array([math.erfc(abs(v) / math.sqrt(2)) for v in z])
    crit = NormalDist().inv_cdf(1 - alpha / 2)
    level = f"{100 * (1 - alpha):g}%"
    lower, upper = est - crit * se, est + crit * se
    assert list(table.index) == ["Intercept", "x1", "x2"]
    for col, values in [("Estimate", est), ("Std. Error", se), ("z", z), ("P>|z|", p),
                        (f"Lower {level}", lower), (f"Upper {level}", upper)]:
        assert np.allclose(table[col], values, rtol=1e-10, atol=1e-300), col
    label = {"logit": "OR", "log": "IRR" if family == "poisson" else "exp(Est.)"}.get(link)
    expected_cols = ["Estimate", "Std. Error", "z", "P>|z|", f"Lower {level}", f"Upper {level}"]
    if label is not None:
        expected_cols += [label, f"exp(Lower {level})", f"exp(Upper {level})"]
        assert np.allclose(table[label], np.exp(est), rtol=1e-12)
        assert np.allclose(table[f"exp(Lower {level})"], np.exp(lower), rtol=1e-10)
        assert np.allclose(table[f"exp(Upper {level})"], np.exp(upper), rtol=1e-10)
    assert list(table.columns) == expected_cols
    # the same numbers through the statsmodels attributes
    ci = np.asarray(res.conf_int(alpha), float)
    assert np.allclose(ci, np.column_stack([lower, upper]), rtol=1e-10)
    assert np.allclose(res.pvalues, p, rtol=1e-10) and np.allclose(res.bse, se, rtol=1e-12)


def test_model_fit_table(case):
    res, used, family, link = case["res"], case["used"], case["family"], case["link"]
    table = res.model_fit_table()
    n, groups = len(used), used["g"].nunique()
    k = 3 + 1 + (1 if family in DISPERSION else 0)
    gaussian_identity = (family, link) == ("gaussian", "identity")
    # the log-likelihood itself, evaluated again at the estimates (REML for Gaussian identity)
    llf = res.model.loglike(np.asarray(res.params), var_re=res.var_re, scale=res.scale, reml=gaussian_identity)
    assert res.llf == pytest.approx(llf, abs=1e-8)
    label = "REML log-likelihood" if gaussian_identity else "Log-likelihood (Laplace)"
    expected = {label: llf, "AIC": -2 * llf + 2 * k, "BIC": -2 * llf + k * math.log(n), "Observations": n,
                "Rows dropped": 2, "Groups": groups, "Parameters (k)": k}
    assert list(table.index) == list(expected)
    for key, value in expected.items():
        assert table.loc[key, "Value"] == pytest.approx(value, rel=1e-10, abs=1e-8), key
    assert res.aic == pytest.approx(expected["AIC"], rel=1e-10) and res.bic == pytest.approx(expected["BIC"], rel=1e-10)
    assert res.nobs == n and res.n_dropped == 2 and res.n_groups == groups and res.k_params == k
    assert sorted(res.model.design.dropped_index) == [4, 9]


def _group_integrand(case, rows, res):
    """log f(y | eta + u) summed over the group's rows + log N(u; 0, sigma_u^2), from scipy densities."""
    family, link = case["family"], case["link"]
    y, m, eta = case["y"][rows], case["m"][rows], case["eta_fixed"][rows]
    phi = res.scale

    def h(u):
        mu = inverse_link(link, eta + u)
        if link in ("identity", "inverse") and family != "gaussian" and np.any(mu <= 0):
            return -np.inf
        return float(np.sum(log_density(family, y, mu, m, phi)) + stats.norm.logpdf(u, scale=res.sigma_re))

    return h


def test_blup_table_against_brute_force_modes_and_curvature(case):
    """Values: the maximiser of each group's integrand; SE: 1/sqrt(-h''(u)) of it (the OBSERVED curvature)."""
    check_blups(case)


@pytest.mark.parametrize("family,link", [("binomial", "probit"), ("gamma", "log"), ("gamma", "identity"),
                                         ("poisson", "identity")])
def test_nagq0_blups_against_brute_force(family, link):
    """nagq=0 estimates beta inside PIRLS, but its modes and SEs are the same functions of the estimates."""
    case = make_case(family, link, nagq=0)
    assert case["res"].method == "PIRLS (nagq=0)"
    check_blups(case)


def check_blups(case):
    res, used = case["res"], case["used"]
    table = res.blup_table()
    assert list(table.columns) == ["Group", "Random Intercept", "Std. Error", "Rank"]
    assert list(table["Group"]) == sorted(used["g"].unique())
    if res.var_re == 0.0:  # a boundary fit: every group effect and its SE are exactly 0
        assert np.all(table["Random Intercept"] == 0.0) and np.all(table["Std. Error"] == 0.0)
        return
    groups = used["g"].to_numpy()
    modes, ses = [], []
    for label, u_pkg in zip(table["Group"], table["Random Intercept"]):
        h = _group_integrand(case, groups == label, res)
        scale = res.sigma_re
        opt = optimize.minimize_scalar(lambda u: -h(u), bracket=(u_pkg - 0.1 * scale, u_pkg + 0.1 * scale),
                                       tol=1e-12)
        u = opt.x
        step = 1e-3 * scale
        curvature = -(h(u + step) - 2 * h(u) + h(u - step)) / step**2
        modes.append(u)
        ses.append(1 / math.sqrt(curvature))
    modes, ses = np.array(modes), np.array(ses)
    assert np.allclose(table["Random Intercept"], modes, rtol=0, atol=2e-6 * res.sigma_re)
    assert np.allclose(table["Std. Error"], ses, rtol=2e-5)
    assert np.allclose(res.random_effects_se, ses, rtol=2e-5)
    order = np.argsort(-modes, kind="stable")
    rank = np.empty(len(modes), int)
    rank[order] = np.arange(1, len(modes) + 1)
    assert list(table["Rank"]) == list(rank)
    assert {k: float(v.iloc[0]) for k, v in res.random_effects.items()} == dict(zip(table["Group"],
                                                                                   table["Random Intercept"]))


def test_diagnostics(case):
    res, used, family, link = case["res"], case["used"], case["family"], case["link"]
    diag = res.diagnostics()
    assert list(diag.columns) == ["fitted_values", "deviance_residuals", "pearson_residuals", "group_random_effect"]
    assert list(diag.index) == list(used.index)
    u = used["g"].map({k: float(v.iloc[0]) for k, v in res.random_effects.items()}).to_numpy()
    mu = inverse_link(link, case["eta_fixed"] + u)
    y, m = case["y"], case["m"]
    assert np.allclose(diag["group_random_effect"], u, rtol=1e-14)
    assert np.allclose(diag["fitted_values"], mu, rtol=1e-10)
    assert np.allclose(diag["pearson_residuals"], (y - mu) * np.sqrt(m) / np.sqrt(variance_function(family, mu)),
                       rtol=1e-9, atol=1e-12)
    assert np.allclose(diag["deviance_residuals"], deviance_residuals(family, y, mu, m), rtol=1e-8, atol=1e-10)
    assert np.allclose(res.predict(), mu, rtol=1e-10)
    assert np.allclose(res.predict(which="linear"), case["eta_fixed"] + u, rtol=1e-10, atol=1e-12)


def shown(value):
    """How the summary prints a number: 4 decimals for 1e-3 <= |v| < 1e6 (and 0), else 4-digit scientific."""
    value = float(value)
    return f"{value:.4f}" if value == 0 or 1e-3 <= abs(value) < 1e6 else f"{value:.4e}"


def _rows(text, label):
    """Tokens after `label` on every summary line that starts with it and continues with a value."""
    found = []
    for line in text.splitlines():
        body = line.strip()
        if body.startswith(label + " "):
            tokens = body[len(label):].split()
            if tokens and (tokens[0] == "N/A" or tokens[0].lstrip("-").replace(".", "", 1).replace("e", "", 1)
                           .replace("-", "").replace("+", "").isdigit()):
                found.append(tokens)
    assert found, label
    return found


def test_summary_text_shows_the_numbers(case):
    res, used = case["res"], case["used"]
    text = res.summary(blup_rows=50).as_text()
    assert _rows(text, "g")[0][:2] == [shown(res.var_re), shown(res.sigma_re)]
    assert _rows(text, "AIC")[0] == [shown(res.aic)] and _rows(text, "BIC")[0] == [shown(res.bic)]
    assert _rows(text, "Parameters (k)")[0] == [str(res.k_params)]
    assert _rows(text, "Groups")[0] == [str(used["g"].nunique())]
    assert _rows(text, "Observations")[0] == [str(len(used))]
    assert _rows(text, "Rows dropped")[0][0] == "2"
    flat = " ".join(text.split())
    assert f"No. Observations: {len(used)} " in flat and f"No. Groups: {used['g'].nunique()} " in flat
    assert "Rows dropped: 2 " in flat
    fe = res.fixed_effects_table()
    for name in ("Intercept", "x1", "x2"):
        cells = _rows(text, name)[0]
        assert cells[:2] == [shown(fe.loc[name, "Estimate"]), shown(fe.loc[name, "Std. Error"])]
        assert cells[2] == shown(fe.loc[name, "Estimate"] / fe.loc[name, "Std. Error"])
        assert cells[4:6] == [shown(fe.loc[name, "Lower 95%"]), shown(fe.loc[name, "Upper 95%"])]
        assert cells[6:] == [shown(v) for v in fe.loc[name].iloc[6:]]
    if res.icc is not None:
        assert _rows(text, "ICC")[0][0] == shown(res.icc)
        assert _rows(text, "Design effect")[0][0] == shown(res.deff)
    else:  # no value is printed for an undefined ICC, only the reason
        assert "ICC is not defined" in flat and "Design effect" not in flat
    for _, row in res.blup_table().iterrows():
        assert _rows(text, str(row["Group"]))[0] == [shown(row['Random Intercept']), shown(row['Std. Error']),
                                                     str(row["Rank"])]
    assert "2 rows dropped" in flat and "x1 (1)" in flat and "x2 (1)" in flat
