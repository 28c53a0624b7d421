"""Private numerics of the multi-term engine (glmm_ext.engine._mixed): any random-effects structure.

Independent checks: the Gaussian REML/ML log-likelihood against the dense n x n marginal density; the
Laplace log-likelihood of small crossed Poisson / Binomial models against a dense joint-mode Laplace
(Newton on all random effects at once, log det of the full Hessian); one-term structures against the
one-term engine's stored references; several terms against lme4 / glmmTMB fits stored by R
(tests/data/multiterm/reference.json), judged on our own objective at their estimates.
"""
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import patsy
import pytest
from scipy import linalg

from glmm_ext.engine._families import Distribution, make_family
from glmm_ext.engine._mixed import fit_mixed, loglik_function
from glmm_ext.engine._mixed_glmm import MixedGLMM
from glmm_ext.engine._mixed_lmm import GaussianProfile
from glmm_ext.engine._structure import ReStructure, ReTerm

DATA = Path(__file__).parent / "data"
MULTI = DATA / "multiterm"


# ----------------------------------------------------------------------------- helpers
LEVELS = {}  # (group, level label) -> code, for comparisons with R's per-level output


def _term(df, group, zform="1", correlated=True):
    """ReTerm for a grouping expression `group` ('g' or 'a:b') and z formula."""
    parts = group.split(":")
    labels = df[parts[0]].astype(str)
    for part in parts[1:]:
        labels = labels + ":" + df[part].astype(str)
    codes, levels = pd.factorize(labels, sort=True)
    LEVELS[group] = {str(lev): j for j, lev in enumerate(levels)}
    dm = patsy.dmatrix(zform, df)
    return ReTerm(group, codes.astype(np.int64), len(levels), np.asarray(dm, float),
                  tuple(dm.design_info.column_names), correlated)


def parse(formula, df, names=False):
    """(y, X, ReStructure[, X's column names]) from an lme4-style formula with bars (test-side parser:
    a/b, a:b, ||)."""
    lhs, rhs = formula.split("~", 1)
    bars = re.findall(r"\(([^()|]*?)(\|\|?)([^()]*?)\)", rhs)
    fixed = re.sub(r"\+\s*\([^()|]*?\|\|?[^()]*?\)", "", rhs).strip() or "1"
    terms = []
    for z, bar, group in bars:
        z = z.strip()
        groups = [g.strip() for g in group.split("/")]
        nested = [":".join(groups[:i + 1]) for i in range(len(groups))]
        for g in nested:
            if bar == "||":  # uncorrelated: lme4 splits into one term per column
                cols = patsy.dmatrix(z, df).design_info.column_names
                for c in cols:
                    zc = "1" if c == "Intercept" else f"0 + {c}"
                    terms.append(_term(df, g, zc))
            else:
                terms.append(_term(df, g, z))
    y, X = patsy.dmatrices(f"{lhs} ~ {fixed}", df, return_type="dataframe")
    out = (y, np.asarray(X, float), ReStructure(tuple(terms)))
    return out + (list(X.columns),) if names else out


def dist(family, link=None):
    return Distribution(make_family(family, link))


def dense_Z(structure):
    """The n x (random effects) Z in the user's term order, level-major within a term."""
    n = structure.n_rows
    blocks = []
    for t in structure.terms:
        Zk = np.zeros((n, t.n_levels * t.q))
        for r in range(t.q):
            Zk[np.arange(n), t.codes * t.q + r] = t.Z[:, r]
        blocks.append(Zk)
    return np.hstack(blocks)


def dense_Sigma(structure, params, scale):
    covs = structure.covariances(params, scale)
    return linalg.block_diag(*[np.kron(np.eye(t.n_levels), c) for t, c in zip(structure.terms, covs)])


def dense_gaussian_llf(y, X, structure, params, sigma2, beta=None, reml=False, w=None):
    """log N(y; X beta, Z Sigma Z' + sigma^2 W^-1) by dense linear algebra; REML: the restricted likelihood
    -1/2 [log|V| + log|X'V^-1X| + (y - X b)'V^-1(y - X b) + (n - p) log(2 pi)] with b the GLS estimate."""
    n, p = X.shape
    Z = dense_Z(structure)
    winv = np.ones(n) if w is None else 1.0 / w
    V = Z @ dense_Sigma(structure, params, sigma2) @ Z.T + sigma2 * np.diag(winv)
    c = linalg.cho_factor(V, lower=True)
    logdetV = 2.0 * np.sum(np.log(np.diag(c[0])))
    ViX = linalg.cho_solve(c, X)
    XtViX = X.T @ ViX
    if reml or beta is None:
        beta = linalg.solve(XtViX, ViX.T @ y)
    r = y - X @ beta
    quad = r @ linalg.cho_solve(c, r)
    if reml:
        return -0.5 * (logdetV + np.linalg.slogdet(XtViX)[1] + quad + (n - p) * np.log(2.0 * np.pi))
    return -0.5 * (logdetV + quad + n * np.log(2.0 * np.pi))


def dense_laplace(d, y, X, structure, beta, params, m, offset=None, phi=1.0):
    """Laplace log-likelihood by a dense joint Newton on all spherical random effects u (b = Lambda u):
    h(u) = sum log f(y | X beta + Z Lambda u) - |u|^2/2, value h(u_hat) - log det(-h''(u_hat)) / 2."""
    Z = dense_Z(structure)
    Lam = linalg.block_diag(*[np.kron(np.eye(t.n_levels), lam)
                              for t, lam in zip(structure.terms, structure.unpack(params))])
    ZL = Z @ Lam
    eta0 = X @ beta + (0.0 if offset is None else offset)
    const = d.log_constant(y, m)
    u = np.zeros(ZL.shape[1])
    for _ in range(100):
        eta = eta0 + ZL @ u
        ll, l1, dd, _ = d.evaluate(y, eta, m, phi, const, order=2)
        H = ZL.T @ (dd[:, None] * ZL) + np.eye(len(u))
        g = ZL.T @ l1 - u
        step = linalg.solve(H, g)
        u = u + step
        if g @ step < 1e-24:
            break
    eta = eta0 + ZL @ u
    ll, l1, dd, _ = d.evaluate(y, eta, m, phi, const, order=2)
    H = ZL.T @ (dd[:, None] * ZL) + np.eye(len(u))
    return float(np.sum(ll) - 0.5 * u @ u - 0.5 * np.linalg.slogdet(H)[1])


def _references():
    path = MULTI / "reference.json"
    return json.loads(path.read_text())["models"] if path.exists() else {}


# ----------------------------------------------------------------------------- Gaussian: dense marginal
def _penicillin():
    return pd.read_csv(MULTI / "penicillin.csv")


def _oats():
    return pd.read_csv(MULTI / "oats.csv")


def _sleep():
    return pd.read_csv(DATA / "sleepstudy.csv")


GAUSSIAN_CASES = [
    ("penicillin", "diameter ~ 1 + (1|plate) + (1|sample)"),
    ("oats", "Q('yield') ~ nitro + (1|Block/Variety)"),
    ("oats", "Q('yield') ~ nitro + (nitro|Block) + (1|Block:Variety)"),
    ("sleep", "Reaction ~ Days + (1|Subject) + (0 + Days|Subject)"),
    ("sleep", "Reaction ~ Days + (Days|Subject)"),
]


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("name,formula", GAUSSIAN_CASES)
def test_gaussian_llf_equals_dense_marginal(name, formula, reml):
    df = {"penicillin": _penicillin, "oats": _oats, "sleep": _sleep}[name]()
    y, X, S = parse(formula, df)
    y = np.asarray(y, float)[:, 0]
    fit = fit_mixed(y, X, S, dist("gaussian"), reml=reml)
    assert fit.converged, fit.message
    dense = dense_gaussian_llf(y, X, S, fit.cov_params, fit.scale, fit.beta, reml=reml)
    assert fit.llf == pytest.approx(dense, abs=1e-8)
    # at another point too: the profile's value is the dense likelihood maximised over beta and sigma^2
    prof = GaussianProfile(S, y, X, reml=reml)
    other = fit.cov_params * 0.7 + 0.1 * (S.lower_bounds() == 0)
    beta, _, sigma2, *_ = prof.solution(other)
    assert -0.5 * prof(other) == pytest.approx(dense_gaussian_llf(y, X, S, other, sigma2, beta, reml), abs=1e-8)
    # the optimum is a maximum: every small move in the covariance parameters lowers the profile
    base = -0.5 * prof(fit.cov_params)
    lb = S.lower_bounds()
    for j in range(S.n_cov_params):
        for h in (-1e-3, 1e-3):
            x = fit.cov_params.copy()
            x[j] += h
            if x[j] < lb[j]:
                continue
            assert -0.5 * prof(x) <= base + 1e-9


def test_gaussian_prior_weights_match_dense():
    df = _penicillin()
    y, X, S = parse("diameter ~ 1 + (1|plate) + (1|sample)", df)
    y = np.asarray(y, float)[:, 0]
    w = 0.5 + np.random.default_rng(3).random(len(y))
    fit = fit_mixed(y, X, S, dist("gaussian"), reml=False, prior_weights=w)
    dense = dense_gaussian_llf(y, X, S, fit.cov_params, fit.scale, fit.beta, reml=False, w=w)
    assert fit.llf == pytest.approx(dense, abs=1e-8)


def test_gaussian_se_is_gls_covariance():
    """Cov(beta) = sigma^2 (X'V^-1X)^-1 with V = Z Lambda Lambda' Z' + I: lme4's vcov."""
    df = _oats()
    y, X, S = parse("Q('yield') ~ nitro + (1|Block/Variety)", df)
    y = np.asarray(y, float)[:, 0]
    fit = fit_mixed(y, X, S, dist("gaussian"), reml=True)
    Z = dense_Z(S)
    V = Z @ dense_Sigma(S, fit.cov_params, fit.scale) @ Z.T + fit.scale * np.eye(len(y))
    cov = linalg.inv(X.T @ linalg.solve(V, X))
    np.testing.assert_allclose(fit.cov_beta, cov, rtol=1e-8)


# ----------------------------------------------------------------------------- GLMM: dense Laplace
def _crossed_counts(family, seed=5, n=240):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 12, n)
    b = rng.integers(0, 7, n)
    x = rng.normal(size=n)
    eta = -0.3 + 0.5 * x + rng.normal(0, 0.7, 12)[a] + rng.normal(0, 0.5, 7)[b]
    if family == "poisson":
        y = rng.poisson(np.exp(eta)).astype(float)
    else:
        y = (rng.random(n) < 1.0 / (1.0 + np.exp(-eta))).astype(float)
    df = pd.DataFrame({"y": y, "x": x, "a": a, "b": b})
    return df


@pytest.mark.parametrize("family", ["poisson", "binomial"])
def test_laplace_equals_dense_joint_mode(family):
    df = _crossed_counts(family)
    y, X, S = parse("y ~ x + (1|a) + (1|b)", df)
    y = np.asarray(y, float)[:, 0]
    d = dist(family)
    fit = fit_mixed(y, X, S, d, nagq=1)
    assert fit.converged, fit.message
    m = np.ones(len(y))
    assert fit.llf == pytest.approx(dense_laplace(d, y, X, S, fit.beta, fit.cov_params, m), abs=1e-6)
    # and at a point away from the optimum, through the engine's objective
    model = MixedGLMM(S, d, y, X, np.zeros(len(y)), m, d.log_constant(y, m))
    x = np.concatenate([fit.beta + 0.1, fit.cov_params * 1.3])
    assert -model(x) == pytest.approx(dense_laplace(d, y, X, S, x[:2], x[2:], m), abs=1e-6)
    # the optimum is a maximum: every small move of beta or the covariance parameters lowers the Laplace value
    opt = np.concatenate([fit.beta, fit.cov_params])
    assert -model(opt) == pytest.approx(fit.llf, abs=1e-9)
    for j in range(len(opt)):
        for h in (-1e-3, 1e-3):
            x = opt.copy()
            x[j] += h
            if x[j] >= model.lower[j]:
                assert -model(x) <= fit.llf + 1e-9


def test_laplace_with_slope_equals_dense_joint_mode():
    df = _crossed_counts("poisson", seed=11, n=300)
    y, X, S = parse("y ~ x + (x|a) + (1|b)", df)
    y = np.asarray(y, float)[:, 0]
    d = dist("poisson")
    m = np.ones(len(y))
    model = MixedGLMM(S, d, y, X, np.zeros(len(y)), m, d.log_constant(y, m))
    params = S.pack_covariances([np.array([[0.5, 0.1], [0.1, 0.2]]), np.array([[0.3]])])
    x = np.concatenate([[-0.2, 0.4], params])
    assert -model(x) == pytest.approx(dense_laplace(d, y, X, S, x[:2], params, m), abs=1e-6)


def test_nagq_above_one_needs_one_scalar_term():
    df = _crossed_counts("poisson")
    y, X, S = parse("y ~ x + (1|a) + (1|b)", df)
    with pytest.raises(ValueError, match="one scalar random-effects term"):
        fit_mixed(np.asarray(y, float)[:, 0], X, S, dist("poisson"), nagq=5)


# ----------------------------------------------------------------------------- one term: today's numbers
def _one_term_reference():
    return json.loads((DATA / "reference.json").read_text())


@pytest.mark.parametrize("reml,key", [(True, "dyestuff_reml"), (False, "dyestuff_ml")])
def test_one_term_dyestuff(reml, key):
    df = pd.read_csv(DATA / "dyestuff.csv")
    y, X, S = parse("Yield ~ 1 + (1|Batch)", df)
    fit = fit_mixed(np.asarray(y, float)[:, 0], X, S, dist("gaussian"), reml=reml)
    assert fit.llf == pytest.approx(_one_term_reference()[key]["best"]["best_loglik"], abs=1e-7)


@pytest.mark.parametrize("reml,key", [(True, "sleep_reml"), (False, "sleep_ml")])
def test_one_term_sleepstudy_slopes(reml, key):
    ref = json.loads((DATA / "slopes" / "reference.json").read_text())[key]
    y, X, S = parse("Reaction ~ Days + (Days|Subject)", _sleep())
    fit = fit_mixed(np.asarray(y, float)[:, 0], X, S, dist("gaussian"), reml=reml)
    best = max(ref["lme4"]["loglik"], ref["glmmTMB"]["loglik"])
    assert fit.llf >= best - 1e-7
    assert fit.llf == pytest.approx(best, abs=1e-5)
    np.testing.assert_allclose(fit.cov_re[0], ref["lme4"]["cov_re"], rtol=1e-3)


def test_one_term_cbpp_and_grouseticks_laplace():
    ref = _one_term_reference()
    cb = pd.read_csv(DATA / "cbpp.csv")
    y, X, S = parse("incidence ~ C(period) + (1|herd)", cb)
    prop = (cb["incidence"] / cb["size"]).to_numpy(float)
    fit = fit_mixed(prop, X, S, dist("binomial"), trials=cb["size"].to_numpy(float))
    assert fit.llf == pytest.approx(ref["cbpp_binomial"]["best"]["best_loglik"], abs=1e-6)
    fit25 = fit_mixed(prop, X, S, dist("binomial"), trials=cb["size"].to_numpy(float), nagq=25)
    assert fit25.llf == pytest.approx(ref["cbpp_binomial_agq25"]["best"]["best_loglik"], abs=1e-6)
    gt = pd.read_csv(DATA / "grouseticks.csv")
    y, X, S = parse("TICKS ~ C(YEAR) + cHEIGHT + (1|BROOD)", gt)
    fit = fit_mixed(np.asarray(y, float)[:, 0], X, S, dist("poisson"))
    assert fit.llf == pytest.approx(ref["grouseticks_poisson"]["best"]["best_loglik"], abs=1e-5)


def test_one_term_gamma_log_dispersion():
    ref = _one_term_reference()["sim_gamma_log"]["best"]["best_loglik"]
    df = pd.read_csv(DATA / "sim_gamma_log.csv")
    y, X, S = parse("y ~ x1 + x2 + (1|g)", df)
    fit = fit_mixed(np.asarray(y, float)[:, 0], X, S, dist("gamma", "log"))
    assert fit.llf == pytest.approx(ref, abs=1e-5)


# ----------------------------------------------------------------------------- several terms: lme4 / glmmTMB
REFS = _references()
FACTORS = ("plate", "sample", "Block", "Variety", "herd", "obs", "id", "item", "BROOD", "INDEX", "LOCATION",
           "YEAR", "period", "Subject", "btype", "situ", "mode", "Gender")


def _covs_from_varcorr(structure, varcorr):
    """Per-term covariances (user's order) from an R VarCorr listing: the entry of the same grouping factor
    holding the term's columns (lme4 lists (x||g) as one entry with a diagonal correlation)."""
    def group_key(group):
        return tuple(sorted(re.sub(r"\.\d+$", "", group).split(":")))

    covs = []
    for t in structure.terms:
        for v in varcorr:
            if v["group"] == "Residual" or group_key(v["group"]) != group_key(t.group):
                continue
            names = ["Intercept" if n == "(Intercept)" else n for n in v["names"]]
            if all(z in names for z in t.z_names):
                sd = np.asarray(v["sd"], float)
                corr = np.asarray(v["corr"], float) if len(sd) > 1 else np.ones((1, 1))
                idx = [names.index(z) for z in t.z_names]
                covs.append((sd[:, None] * corr * sd[None, :])[np.ix_(idx, idx)])
                break
        else:
            raise KeyError(f"no VarCorr entry for term {t.group} {t.z_names}")
    return covs


def _reference_problem(name):
    v = REFS[name]
    df = pd.read_csv(MULTI / v["data"], dtype={c: str for c in FACTORS})
    formula = v["py_formula"].replace("yield ~", "Q('yield') ~")
    family = {"nbinom2": "negativebinomial"}.get(v["family"], v["family"])
    d = dist(family, v["link"])
    lhs, rhs = formula.split("~", 1)
    trials = None
    if family == "binomial" and "+" in lhs:  # successes + I(failures)
        succ, fail = (part.strip() for part in lhs.split("+", 1))
        _, X, S, names = parse(f"{succ} ~ {rhs}", df, names=True)
        s = df[succ].to_numpy(float)
        f = np.asarray(patsy.dmatrix(f"0 + {fail}", df), float)[:, 0]
        trials = s + f
        y = s / trials
    else:
        y, X, S, names = parse(formula, df, names=True)
        y = np.asarray(y, float)[:, 0]
    return v, y, X, S, names, d, trials


def _own_value_at(v, anchor, y, X, S, names, d, trials):
    """Our log-likelihood at an R fit's estimates (Gaussian: the profile at its relative factors)."""
    est = v[anchor]
    py = v["fixef_py_names"]
    beta = np.array([est["fixef"][r] for p in names for r, q in py.items() if q == p])
    if d.name == "gaussian" and d.link_name == "identity":
        sigma2 = est["sigma"] ** 2
        params = S.pack_covariances(_covs_from_varcorr(S, est["varcorr"]), sigma2)
        return -0.5 * GaussianProfile(S, y, X, reml=bool(v["reml"]))(params)
    params = S.pack_covariances(_covs_from_varcorr(S, est["varcorr"]))
    m = np.ones(len(y)) if trials is None else trials
    model = MixedGLMM(S, d, y, X, np.zeros(len(y)), m, d.log_constant(y, m))
    tail = []
    if d.has_dispersion:  # NB2: alpha = 1 / size (glmmTMB's sigma, glmer.nb's theta)
        tail = [-np.log(est["nb_theta"] if anchor == "lme4" else est["sigma"])]
    return -model(np.concatenate([beta, params, tail]))


REF_NAMES = sorted(k for k, v in REFS.items() if not v["data"].startswith("benchmarks"))


@pytest.mark.parametrize("name", REF_NAMES)
def test_several_terms_against_r(name):
    v, y, X, S, names, d, trials = _reference_problem(name)
    nagq = 1 if v["nagq"] is None else v["nagq"]
    fit = fit_mixed(y, X, S, d, reml=bool(v["reml"]), nagq=nagq, trials=trials)
    assert fit.converged, fit.message
    anchors = [a for a in ("lme4", "glmmTMB") if isinstance(v.get(a), dict) and "varcorr" in v[a]]
    own = {a: _own_value_at(v, a, y, X, S, names, d, trials) for a in anchors}
    if d.name != "gaussian" or d.link_name != "identity":
        for a in anchors:  # our Laplace at their estimates is the R script's independent Laplace there
            if v[a].get("laplace_exact") is not None and nagq == 1:
                assert own[a] == pytest.approx(v[a]["laplace_exact"], abs=1e-6)
    best = max(own.values())
    if nagq == 0:  # nAGQ=0 optimises another criterion: the same estimates, the Laplace value reported there
        assert fit.llf == pytest.approx(own["lme4"], abs=1e-4)
        lme4_params = S.pack_covariances(_covs_from_varcorr(S, v["lme4"]["varcorr"]))
        np.testing.assert_allclose(fit.cov_params, lme4_params, rtol=2e-3)
        return
    assert fit.llf >= best - 1e-7
    assert fit.llf <= best + 1e-4
    # standard errors: lme4's (Gaussian) or glmmTMB's (GLMM, the Hessian of the Laplace likelihood)
    ref_se = v["lme4"]["se"] if d.name == "gaussian" and d.link_name == "identity" else v["glmmTMB"]["se"]
    py = v["fixef_py_names"]
    se = dict(zip(names, np.sqrt(np.diag(fit.cov_beta))))
    for r_name, value in ref_se.items():
        assert se[py[r_name]] == pytest.approx(value, rel=2e-2)


@pytest.mark.parametrize("reml", [True, False])
def test_gaussian_profile_gradient_matches_differences(reml):
    """The analytic gradient of the profiled deviance (scalar terms) against central differences, with
    prior weights and three crossed/nested terms."""
    df = pd.read_csv(MULTI / "grouseticks.csv", dtype={c: str for c in ("BROOD", "INDEX", "LOCATION", "YEAR")})
    y, X, S = parse("HEIGHTc ~ C(YEAR) + (1|BROOD) + (1|INDEX) + (1|LOCATION)", df)
    prof = GaussianProfile(S, np.asarray(y, float)[:, 0], X, reml=reml, weights=np.linspace(0.5, 2.0, len(df)))
    x = np.array([0.7, 0.3, 1.2])
    _, g = prof.value_and_grad(x)
    h = 1e-6
    fd = [(prof(x + h * e) - prof(x - h * e)) / (2 * h) for e in np.eye(3)]
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", ["cbpp_obs", "grouse_nbinom2", "grouse_poisson", "verbagg"])
def test_laplace_gradient_matches_differences(name):
    """value_and_grad: analytic in beta and theta (modes moving with them, row leverages) against differences."""
    v, y, X, S, names, d, trials = _reference_problem(name)
    m = np.ones(len(y)) if trials is None else trials
    model = MixedGLMM(S, d, y, X, np.zeros(len(y)), m, d.log_constant(y, m))
    theta = S.pack_covariances(_covs_from_varcorr(S, v["glmmTMB"]["varcorr"])) * 1.2
    x = np.concatenate([np.linspace(-1.0, 0.5, X.shape[1]), theta, [np.log(0.3)] if d.has_dispersion else []])
    _, g = model.value_and_grad(x)
    fd = [(model(x + 1e-4 * e) - model(x - 1e-4 * e)) / 2e-4 for e in np.eye(len(x))]
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- boundary and bad input
def test_singular_gaussian_reaches_zero():
    df = pd.read_csv(DATA / "dyestuff2.csv")
    y, X, S = parse("Yield ~ 1 + (1|Batch)", df)
    fit = fit_mixed(np.asarray(y, float)[:, 0], X, S, dist("gaussian"), reml=True)
    assert fit.cov_params[0] == 0.0 and fit.singular == [True]
    assert fit.llf == pytest.approx(_one_term_reference()["dyestuff2_singular"]["best"]["best_loglik"], abs=1e-8)


def test_glmm_term_at_zero_equals_model_without_it():
    """A term whose variance ends at exactly 0 contributes nothing: the fit equals the one without the term."""
    rng = np.random.default_rng(1)
    n = 300
    a, b, x = rng.integers(0, 10, n), rng.integers(0, 6, n), rng.normal(size=n)
    y = rng.poisson(np.exp(0.2 + 0.3 * x + rng.normal(0, 0.6, 10)[a])).astype(float)
    df = pd.DataFrame({"y": y, "x": x, "a": a, "b": b})
    _, X, S = parse("y ~ x + (1|a) + (1|b)", df)
    fit = fit_mixed(y, X, S, dist("poisson"))
    assert fit.converged and fit.cov_params[1] == 0.0 and fit.singular == [False, True]
    _, X1, S1 = parse("y ~ x + (1|a)", df)
    one = fit_mixed(y, X1, S1, dist("poisson"))
    assert fit.llf == pytest.approx(one.llf, abs=1e-7)
    np.testing.assert_allclose(fit.beta, one.beta, atol=1e-4)


def test_bad_input_is_a_clear_value_error():
    df = _penicillin()
    y, X, S = parse("diameter ~ 1 + (1|plate) + (1|sample)", df)
    y = np.asarray(y, float)[:, 0]
    d = dist("gaussian")
    with pytest.raises(ValueError, match="rank deficient"):
        fit_mixed(y, np.column_stack([X, X]), S, d)
    with pytest.raises(ValueError, match="rows"):
        fit_mixed(y[:-1], X[:-1], S, d)
    with pytest.raises(ValueError, match="finite"):
        fit_mixed(np.where(np.arange(len(y)) == 3, np.nan, y), X, S, d)
    with pytest.raises(ValueError, match="prior_weights"):
        fit_mixed(y, X, S, d, prior_weights=-np.ones(len(y)))
    with pytest.raises(ValueError, match="codes"):
        ReStructure((ReTerm("g", np.array([0, 1, 5]), 3, np.ones((3, 1)), ("Intercept",)),))
    with pytest.raises(ValueError, match="1 level"):
        one = ReStructure((ReTerm("g", np.zeros(len(y), np.int64), 1, np.ones((len(y), 1)), ("Intercept",)),))
        fit_mixed(y, X, one, d)
    with pytest.raises(ValueError, match="not identified"):
        obs = ReStructure((ReTerm("obs", np.arange(len(y)), len(y), np.ones((len(y), 1)), ("Intercept",)),))
        fit_mixed(y, X, obs, d)
    y_copy, X_copy = y.copy(), X.copy()
    fit_mixed(y, X, S, d)
    assert np.array_equal(y, y_copy) and np.array_equal(X, X_copy)  # the caller's data untouched


def test_packer_round_trip_and_bounds():
    df = _oats()
    _, _, S = parse("Q('yield') ~ nitro + (nitro|Block) + (1|Block:Variety) + (nitro||Variety)", df)
    covs = [np.array([[4.0, 1.0], [1.0, 2.0]]), np.array([[3.0]]), np.array([[1.5]]), np.array([[0.5]])]
    params = S.pack_covariances(covs, scale=2.0)
    assert S.n_cov_params == 3 + 1 + 1 + 1 == len(params)
    for got, want in zip(S.covariances(params, scale=2.0), covs):
        np.testing.assert_allclose(got, want)
    np.testing.assert_array_equal(S.lower_bounds(), [0.0, -np.inf, 0.0, 0.0, 0.0, 0.0])


@pytest.mark.parametrize("name", ["penicillin_reml", "oats_slope_ml", "sleep_split_reml", "oats_nested_ml"])
def test_gaussian_modes_and_conditional_sds_match_lme4(name):
    """BLUPs and lme4's condVar SDs (sigma^2 Lambda H^-1 Lambda', beta fixed) per term and level."""
    v, y, X, S, names, d, trials = _reference_problem(name)
    fit = fit_mixed(y, X, S, d, reml=bool(v["reml"]))
    for rterm in v["lme4"]["ranef"]["terms"]:
        rnames = ["Intercept" if n == "(Intercept)" else n for n in rterm["names"]]
        k = next(i for i, t in enumerate(S.terms) if list(t.z_names) == rnames
                 and sorted(t.group.split(":")) == sorted(rterm["group"].split(":")))
        group_parts = S.terms[k].group.split(":")
        r_parts = rterm["group"].split(":")
        for level, value, sd in zip(rterm["levels"], rterm["values"], rterm["cond_sd"]):
            by_part = dict(zip(r_parts, level.split(":")))
            j = LEVELS[S.terms[k].group][":".join(by_part[g] for g in group_parts)]
            np.testing.assert_allclose(fit.modes[k][j], value, rtol=2e-3, atol=1e-3 * np.max(np.abs(rterm["values"])))
            np.testing.assert_allclose(fit.mode_sd[k][j], sd, rtol=2e-3)


@pytest.mark.filterwarnings("ignore::statsmodels.tools.sm_exceptions.DomainWarning")
@pytest.mark.parametrize("file,family,link", [("sim_gaussian_log.csv", "gaussian", "log"),
                                              ("sim_gamma_identity.csv", "gamma", "identity"),
                                              ("sim_poisson_identity.csv", "poisson", "identity"),
                                              ("sim_bern_probit.csv", "binomial", "probit")])
def test_one_term_laplace_equals_todays_engine(file, family, link):
    """Observed-curvature Laplace with non-canonical links and dispersions: the one-term structure through
    the new core gives the one-term engine's fit (glmm_ext.GLMM)."""
    import statsmodels.api as sm

    import glmm_ext

    df = pd.read_csv(DATA / file)
    fam = {"gaussian": sm.families.Gaussian, "gamma": sm.families.Gamma, "poisson": sm.families.Poisson,
           "binomial": sm.families.Binomial}[family]
    lnk = {"log": sm.families.links.Log, "identity": sm.families.links.Identity,
           "probit": sm.families.links.Probit}[link]
    old = glmm_ext.GLMM.from_formula("y ~ x1 + x2", df, groups="g", family=fam(link=lnk())).fit()
    y, X, S = parse("y ~ x1 + x2 + (1|g)", df)
    new = fit_mixed(np.asarray(y, float)[:, 0], X, S, dist(family, link))
    assert new.converged
    assert new.llf == pytest.approx(old.llf, abs=1e-7)
    np.testing.assert_allclose(new.beta, np.asarray(old.fe_params), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.sqrt(np.diag(new.cov_beta)), np.asarray(old.bse_fe), rtol=2e-3)


def test_row_leverages_equal_dense_inverse():
    """Factor.row_leverages (selected entries of H^-1 from S^-1 and L_R1'S^-1) against the dense inverse."""
    v, y, X, S, names, d, trials = _reference_problem("grouse_poisson")
    model = MixedGLMM(S, d, y, X, np.zeros(len(y)), np.ones(len(y)), d.log_constant(y, np.ones(len(y))))
    x = np.concatenate([np.linspace(-1.0, 0.5, X.shape[1]), [0.5, 0.6, 0.7]])
    model(x)
    lams = model.lams(x[X.shape[1]:])
    fac, lay = model._last_state.factor, model.layout
    Hinv = fac.dense_inverse()
    zl = [lay.Z[p][:, 0] * lams[p][0, 0] for p in range(3)]
    idx = [lay.offsets[p] + lay.codes[p] for p in range(3)]
    dense = sum(zl[a] * zl[b] * Hinv[idx[a], idx[b]] for a in range(3) for b in range(3))
    lev, traces = fac.row_leverages(lams)
    np.testing.assert_allclose(lev, dense, rtol=1e-10, atol=1e-14)
    blocks = [slice(lay.offsets[p], lay.offsets[p + 1]) for p in range(3)]
    np.testing.assert_allclose(traces, [np.trace(Hinv[b, b]) for b in blocks], rtol=1e-10)
    # and the dense inverse is the inverse of the dense H = Lambda'Z'DZ Lambda + I
    Z = dense_Z(S)
    Lam = linalg.block_diag(*[np.kron(np.eye(t.n_levels), lam) for t, lam in zip(S.terms, S.unpack(x[X.shape[1]:]))])
    ll, l1, dd, _ = d.evaluate(y, model._last_state.eta, np.ones(len(y)), 1.0, d.log_constant(y, np.ones(len(y))))
    H = Lam.T @ Z.T @ (dd[:, None] * Z) @ Lam + np.eye(Z.shape[1])
    perm = np.concatenate([np.arange(lay.offsets[pos], lay.offsets[pos + 1]) for pos in
                           np.argsort(lay.order)])  # engine order -> user order
    np.testing.assert_allclose(Hinv[np.ix_(perm, perm)] @ H, np.eye(len(H)), atol=1e-8)


def test_loglik_function_reproduces_the_fits():
    df = _oats()
    y, X, S = parse("Q('yield') ~ nitro + (1|Block/Variety)", df)
    y = np.asarray(y, float)[:, 0]
    fit = fit_mixed(y, X, S, dist("gaussian"), reml=True)
    llf, beta, sigma2 = loglik_function(y, X, S, dist("gaussian"), reml=True)(fit.cov_params)
    assert llf == pytest.approx(fit.llf, abs=1e-10) and sigma2 == pytest.approx(fit.scale, rel=1e-10)
    np.testing.assert_allclose(beta, fit.beta, rtol=1e-10)
    g = pd.read_csv(DATA / "sim_gamma_log.csv")  # a dispersion family fitted on a rescaled response
    y, X, S = parse("y ~ x1 + x2 + (1|g)", g)
    y = np.asarray(y, float)[:, 0]
    fit = fit_mixed(y, X, S, dist("gamma", "log"))
    f = loglik_function(y, X, S, dist("gamma", "log"))
    assert f(np.concatenate([fit.beta, fit.cov_params, [np.log(fit.scale)]])) == pytest.approx(fit.llf, abs=1e-8)


def test_slope_in_other_units_fits_like_glmmtmb():
    """A random slope whose variable has a large spread (SD ~ 1e-3 per unit): z columns are scaled inside,
    so the search starts and steps on one scale; the fit reaches glmmTMB's one-term optimum."""
    ref = json.loads((DATA / "slopes" / "reference.json").read_text())["grouse_slope"]
    gt = pd.read_csv(DATA / "grouseticks.csv", dtype={"BROOD": str, "LOCATION": str, "YEAR": str})
    y, X, S = parse("TICKS ~ C(YEAR) + cHEIGHT + (cHEIGHT|LOCATION)", gt)
    fit = fit_mixed(np.asarray(y, float)[:, 0], X, S, dist("poisson"))
    assert fit.converged
    assert fit.llf >= max(ref["lme4"]["loglik"], ref["glmmTMB"]["loglik"]) - 1e-7
    np.testing.assert_allclose(fit.cov_re[0], ref["glmmTMB"]["cov_re"], rtol=2e-2)
    # with a crossed term the optimum has the slope fully correlated with the intercept: flagged singular
    y, X, S = parse("TICKS ~ C(YEAR) + cHEIGHT + (cHEIGHT|LOCATION) + (1|BROOD)", gt)
    fit = fit_mixed(np.asarray(y, float)[:, 0], X, S, dist("poisson"))
    assert fit.converged and fit.singular == [True, False]


def test_inverse_diag_blocks_of_scalar_terms_equal_dense_inverse():
    """The conditional-SD blocks of scalar terms (from L_RR^-1 alone) against the dense inverse of the factor."""
    v, y, X, S, names, d, trials = _reference_problem("grouse_poisson")
    model = MixedGLMM(S, d, y, X, np.zeros(len(y)), np.ones(len(y)), d.log_constant(y, np.ones(len(y))))
    x = np.concatenate([np.linspace(-1.0, 0.5, X.shape[1]), [0.5, 0.6, 0.7]])
    model(x)
    fac = model._last_state.factor
    blocks = fac.inverse_diag_blocks(chunk=7)  # several chunks
    np.testing.assert_allclose(np.concatenate([b.ravel() for b in blocks]), np.diag(fac.dense_inverse()),
                               rtol=1e-10, atol=1e-14)


def test_gaussian_moment_start_reaches_the_identity_start_optimum():
    """The moment start only shortens the search: the optimum equals the one from lme4's start (theta = 1)."""
    from glmm_ext.engine._mixed_lmm import minimize_bounded, moment_start

    rng = np.random.default_rng(7)
    n = 3000
    a, b = rng.integers(0, 120, n), rng.integers(0, 40, n)
    x = rng.normal(size=n)
    y = 1.0 + 0.5 * x + rng.normal(0, 0.8, 120)[a] + rng.normal(0, 0.3, 40)[b] + rng.normal(size=n)
    df = pd.DataFrame({"y": y, "x": x, "a": a, "b": b})
    yy, X, S = parse("y ~ x + (1|a) + (1|b)", df)
    yy = np.asarray(yy, float)[:, 0]
    start = moment_start(S, yy, X)
    assert np.all(np.isfinite(start)) and np.all(start > 0) and not np.allclose(start, 1.0)
    fit = fit_mixed(yy, X, S, dist("gaussian"), reml=False)
    prof = GaussianProfile(S, yy, X, reml=False)
    ref = minimize_bounded(prof, S.start_params(), S.lower_bounds(), tol=1e-9, fg=prof.value_and_grad)
    assert fit.llf == pytest.approx(-0.5 * ref.f, abs=1e-8)
    np.testing.assert_allclose(fit.cov_params, ref.x, rtol=1e-4)


@pytest.mark.parametrize("family,correlated", [("poisson", True), ("negativebinomial", True),
                                                ("binomial", False), ("negativebinomial", False)])
def test_one_vector_term_gradient_matches_differences(family, correlated):
    """value_and_grad of one (x | g) or (x || g) term: analytic in beta and Lambda (level blocks of H^-1),
    against central differences of the Laplace value."""
    rng = np.random.default_rng(7)
    G, k = 30, 8
    codes = np.repeat(np.arange(G), k)
    rng.shuffle(codes)  # rows in no particular order
    x = rng.normal(size=G * k)
    b = rng.normal(0.0, [0.6, 0.3], size=(G, 2))
    eta = 0.3 + 0.5 * x + b[codes, 0] + b[codes, 1] * x
    if family == "binomial":
        y = rng.binomial(1, 1.0 / (1.0 + np.exp(-eta))).astype(float)
    else:
        y = rng.poisson(np.exp(eta) * (rng.gamma(2.0, 0.5, len(x)) if family == "negativebinomial" else 1.0))
        y = y.astype(float)
    X = np.column_stack([np.ones(len(x)), x])
    S = ReStructure((ReTerm("g", codes.astype(np.int64), G, X.copy(), ("Intercept", "x"), correlated),))
    d = Distribution(make_family(family))
    m = np.ones(len(y))
    model = MixedGLMM(S, d, y, X, np.zeros(len(y)), m, d.log_constant(y, m))
    theta = np.array([0.7, 0.2, 0.4]) if correlated else np.array([0.7, 0.4])
    x0 = np.concatenate([[0.2, 0.4], theta, [np.log(0.5)] if d.has_dispersion else []])
    _, g = model.value_and_grad(x0)
    fd = [(model(x0 + 1e-5 * e) - model(x0 - 1e-5 * e)) / 2e-5 for e in np.eye(len(x0))]
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-5)
