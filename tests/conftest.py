"""Shared fixtures: the reference cases copied from lme4/glmmTMB fits (tests/data); the command line in-process."""
import contextlib
import io
import json
import os
import re
import warnings

# One BLAS thread for the suite (set before numpy loads OpenBLAS): on a busy 2-core machine, threaded
# factorisations of small matrices spin and run up to 40x slower; the numbers do not depend on it.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pandas as pd
import pytest
import statsmodels.api as sm

import glmm_ext
from glmm_ext import make_family

DATA = os.path.join(os.path.dirname(__file__), "data")
FAMILIES = {"binomial": sm.families.Binomial, "poisson": sm.families.Poisson, "gamma": sm.families.Gamma,
            "gaussian": sm.families.Gaussian}
LINKS = {"logit": sm.families.links.Logit, "probit": sm.families.links.Probit, "log": sm.families.links.Log,
         "identity": sm.families.links.Identity, "inverse": sm.families.links.InversePower}

with open(os.path.join(DATA, "cases.json")) as fh:
    CASES = {c["name"]: c for c in json.load(fh)["public"]}
with open(os.path.join(DATA, "reference.json")) as fh:
    REFERENCE = json.load(fh)


def as_dict(value):
    """reference.json stores long dicts as Python-literal strings."""
    if isinstance(value, str):
        return json.loads(value.replace("'", '"'))
    return value


def short(name):
    """patsy name -> the form used in best.fe: C(period)[T.2] -> period2."""
    name = re.sub(r"C\((\w+)\)", r"\1", name)
    return name.replace("[T.", "").replace("]", "")


def r_name(name):
    """patsy name -> lme4's: Intercept -> (Intercept), C(period)[T.2] -> factor(period)2."""
    if name == "Intercept":
        return "(Intercept)"
    return re.sub(r"C\((\w+)\)\[T\.(.+)\]", r"factor(\1)\2", name)


def family_of(case):
    return FAMILIES[case["family"]](link=LINKS[case["link"]]())


def load_case(name):
    case = CASES[name]
    return case, pd.read_csv(os.path.join(DATA, case["data"]))


def fit_case(name, **fit_kwargs):
    """Fit a reference case exactly as ../shared/tools/check_public.py does."""
    case, data = load_case(name)
    kw = {"offset": data[case["offset"]].values} if case.get("offset") else {}
    model = glmm_ext.GLMM.from_formula(case["py"], data, groups=case["groups"], family=family_of(case), **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if case["family"] == "gaussian" and case["link"] == "identity":
            return model.fit(reml=bool(case.get("reml")), **fit_kwargs)
        return model.fit(nagq=case.get("nagq", 1), **fit_kwargs)


@pytest.fixture(scope="session")
def dask_client():
    """One LocalCluster of two worker processes for the whole session (starting one costs ~10 s); every Dask test
    takes this client (skipped when dask or distributed is not installed)."""
    pytest.importorskip("dask.dataframe")
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        yield client


@pytest.fixture(scope="session")
def fits():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = fit_case(name)
        return cache[name]

    return get


def rel_close(actual, expected, rtol):
    actual, expected = np.asarray(actual, float), np.asarray(expected, float)
    return np.all(np.abs(actual - expected) <= rtol * np.maximum(np.abs(expected), 1e-12))


with open(os.path.join(DATA, "analysis_reference.json")) as fh:
    ANALYSIS_REF = json.load(fh)  # lme4 / glmmTMB / performance numbers for the analysis tools


def read_data(name):
    """A data set of tests/data as a DataFrame."""
    return pd.read_csv(os.path.join(DATA, name))


def quiet_fit(formula, data, groups, family=None, **kw):
    """GLMM.from_formula(...).fit(**kw) with warnings silenced; ``model={...}`` goes to from_formula."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return glmm_ext.GLMM.from_formula(formula, data, groups=groups, family=family,
                                          **kw.pop("model", {})).fit(**kw)


def dense_reml_deviance(y, X, groups, var_re, scale):
    """(-2 REML log-likelihood, GLS beta) with dense n x n matrices, an evaluator independent of the profile:
    log|V| + log|X'V^-1X| + r'V^-1 r + (n-p) log 2 pi with V = scale I + var_re Z Z'."""
    n, p = X.shape
    Z = (groups[:, None] == np.unique(groups)[None, :]).astype(float)
    V = scale * np.eye(n) + var_re * Z @ Z.T
    Vi = np.linalg.inv(V)
    XtViX = X.T @ Vi @ X
    beta = np.linalg.solve(XtViX, X.T @ Vi @ y)
    r = y - X @ beta
    return (np.linalg.slogdet(V)[1] + np.linalg.slogdet(XtViX)[1] + r @ Vi @ r + (n - p) * np.log(2 * np.pi)), beta


def kernel_rows(family, link, n, rng, spread=1.5, trials=True, low=0.05):
    """(y, eta, m) inside the support for kernel tests: a log/logit/probit eta spread over +-3 spread, an
    identity/inverse one in (low, 3); Binomial trials 1..5 per row (or 0/1 rows with ``trials=False``)."""
    positive = link in ("identity", "inverse") and family != "gaussian"
    eta = rng.uniform(low, 3.0, n) if positive else rng.normal(0.0, spread, n)
    m = np.ones(n)
    if family == "binomial":
        m = rng.integers(1, 6, n).astype(float) if trials else m
        y = rng.binomial(m.astype(int), 0.4) / m
    elif family == "poisson":
        y = rng.poisson(2.0, n).astype(float)
    elif family == "gamma":
        y = rng.gamma(2.0, 1.0, n)
    else:
        y = rng.normal(1.0, 1.0, n)
    return y, eta, m


class CliRun:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run_cli(args, cwd):
    """The command line in-process (a subprocess costs an import of statsmodels per call)."""
    from glmm_ext.cli import main

    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                code = main(list(args))
            except SystemExit as exc:
                code = exc.code
    finally:
        os.chdir(here)
    return CliRun(code, out.getvalue(), err.getvalue())


with open(os.path.join(DATA, "slopes", "analysis_reference.json")) as fh:
    SLOPE_REF = json.load(fh)  # performance / R numbers for random-slope fits (slopes/analysis_reference.R)
SLOPE_CASES = {
    "sleep_reml": ("sleepstudy.csv", "Reaction ~ Days + (Days | Subject)", sm.families.Gaussian),
    "sim_binomial": ("slopes/sim_binomial.csv", "y ~ x + (x | g)", sm.families.Binomial),
    "sim_poisson": ("slopes/sim_poisson.csv", "y ~ x + (x | g)", sm.families.Poisson),
    "sim_poisson_diag": ("slopes/sim_poisson.csv", "y ~ x + (x || g)", sm.families.Poisson),
    "binomial_singular": ("slopes/sim_binomial_singular.csv", "y ~ x + (x | g)", sm.families.Binomial),
    "sim_poisson_q3": ("slopes/sim_poisson_q3.csv", "y ~ x1 + x2 + (1 + x1 + x2 | g)", sm.families.Poisson),
    "sim_gamma": ("slopes/sim_gamma.csv", "y ~ x + (x | g)", lambda: sm.families.Gamma(sm.families.links.Log())),
    "cbpp_slope": ("cbpp.csv", "incidence + I(size - incidence) ~ pnum + (pnum | herd)", sm.families.Binomial)}


def slope_fit(formula, data, family, **options):
    """GLMM.from_formula(formula, data, family=family).fit(**options), quietly (the formula names the groups)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return glmm_ext.GLMM.from_formula(formula, data, family=family).fit(**options)


@pytest.fixture(scope="session")
def slope_fits():
    """{name: (fit, data)} of SLOPE_CASES, fitted once per session."""
    out = {}
    for name, (path, formula, family) in SLOPE_CASES.items():
        data = pd.read_csv(os.path.join(DATA, path))
        if "period" in data:
            data["pnum"] = data["period"].astype(float)
        out[name] = (slope_fit(formula, data, family()), data)
    return out


def glm_point(model):
    """(beta, Pearson dispersion) of statsmodels' GLM on the model's rows: the sigma_u = 0 point a fit must not
    end below; None where statsmodels finds no GLM fit with a finite likelihood."""
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            glm = sm.GLM(model.endog, model.exog, family=model.family).fit()
            beta, scale = np.asarray(glm.params, float), float(glm.scale)
            ok = np.all(np.isfinite(beta)) and np.isfinite(model.loglike(beta, var_re=0.0, scale=scale))
    except Exception:  # noqa: BLE001 - statsmodels' own failures only mean no reference point here
        return None
    return (beta, scale) if ok else None


# Gamma-identity, 4 groups x 4 rows (the slow hardening property's seed 2136): the integrand of the last
# group flattens as the search goes on (its mode curvature H -> 0), where the Laplace value grows without bound
GAMMA_IDENTITY_FLAT = [
    (2.443469, 0.031089, 0), (0.140049, 0.396210, 0), (0.767373, 0.297188, 0), (0.286757, -0.346328, 0),
    (1.242020, 0.090490, 1), (1.946333, -1.002085, 1), (4.008522, 0.507082, 1), (0.352667, 0.490842, 1),
    (1.203101, -0.616467, 2), (2.334848, 0.425201, 2), (2.364040, 0.661515, 2), (6.530098, 1.552493, 2),
    (0.068864, -0.991498, 3), (0.847393, -0.464825, 3), (3.483745, 1.871829, 3), (2.049492, 1.701703, 3),
]


@pytest.fixture(scope="session")
def tracks():
    """Random-intercept data with a three-level factor (track): a factor tested as one term."""
    rng = np.random.default_rng(5)
    n_groups, size = 30, 8
    g = np.repeat(np.arange(n_groups), size)
    track = rng.choice(["academic", "general", "vocational"], size=g.size)
    x = rng.normal(size=g.size)
    y = 1 + 0.5 * x + np.select([track == "general", track == "vocational"], [0.4, -0.3], 0.0) \
        + rng.normal(0, 0.7, n_groups)[g] + rng.normal(size=g.size)
    return pd.DataFrame({"y": y, "x": x, "track": track, "g": g})


def small_problem(family, link, seed=0, n_groups=5, group_size=4):
    """A small random-intercept model of `family`/`link` with its truth: (model, beta, sigma_u, scale)."""
    kwargs = {"scale": 0.3} if family in ("gamma", "gaussian") else {}
    beta = (2.0, 0.3, -0.4) if link in ("identity", "inverse") else (0.3, 0.5, -0.4)
    sigma_u = 0.2 if link in ("identity", "inverse") else 0.7
    df = glmm_ext.simulate(family, link, n_groups=n_groups, group_size=group_size, beta=beta, sigma_u=sigma_u,
                           seed=seed, **kwargs)
    model = glmm_ext.GLMM.from_formula("y ~ x1 + x2", df, groups="g", family=make_family(family, link))
    return model, beta, sigma_u, kwargs.get("scale", 1.0)
