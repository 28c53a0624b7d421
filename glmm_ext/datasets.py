"""Bundled example data: a schools data set with known truth, a simulator, and four classic data sets.

`load_sleepstudy`, `load_cbpp`, `load_dyestuff` and `load_grouseticks` read the CSV files shipped in
``glmm_ext/data/`` (the data of lme4's examples; sources in ``glmm_ext/data/README.md``).  Factors
(subject, herd, period, batch, brood, year, ...) are pandas Categoricals of strings, so a formula treats
them as categorical (as lme4's factors; a column of numbers written as text would be read as numbers).
"""
from importlib import resources

import numpy as np
import pandas as pd

from ._validation import is_positive_number
from .engine._families import ALLOWED_LINKS, make_family

#: the true parameters of ``load_schools()``
SCHOOLS_TRUTH = {"Intercept": 50.0, "hours": 2.5, "ses": 4.0, "var_school": 25.0, "var_residual": 64.0}


def load_schools(seed=20240601):
    """Test scores of students in 60 schools (10 to 40 students each), simulated with known truth.

    score = 50 + 2.5 hours + 4 ses + u_school + e,  u ~ N(0, 5^2),  e ~ N(0, 8^2);
    ``passed`` = 1 when score > 60.  The truth is in ``SCHOOLS_TRUTH`` and ``df.attrs["truth"]``.
    """
    rng = np.random.default_rng(seed)
    sizes = rng.integers(10, 41, size=60)
    school = np.repeat([f"S{j + 1:02d}" for j in range(60)], sizes)
    u = np.repeat(rng.normal(0.0, 5.0, size=60), sizes)
    n = int(sizes.sum())
    hours = np.round(rng.gamma(4.0, 1.5, size=n), 1)
    ses = np.round(rng.normal(0.0, 1.0, size=n) + 0.3 * u / 5.0, 2)
    t = SCHOOLS_TRUTH
    score = t["Intercept"] + t["hours"] * hours + t["ses"] * ses + u + rng.normal(0.0, 8.0, size=n)
    df = pd.DataFrame({"school": school, "hours": hours, "ses": ses, "score": np.round(score, 1)})
    df["passed"] = (df["score"] > 60).astype(int)
    df.attrs["truth"] = dict(SCHOOLS_TRUTH)
    return df


def simulate(family="gaussian", link=None, n_groups=50, group_size=20, beta=(0.5, 0.8, -0.4), sigma_u=0.6,
             scale=1.0, trials=None, offset=False, seed=0, alpha=None):
    """Random-intercept data g(mu) = beta0 + beta1 x1 + beta2 x2 (+ log exposure) + u_g for any family/link.

    Parameters
    ----------
    family, link : str
        e.g. ``("binomial", "probit")``; ``scale`` is the residual variance (Gaussian) or the Gamma
        dispersion.  ``group_size`` is an int or an array of sizes; ``trials`` gives Binomial
        successes/failures columns; ``offset=True`` adds a ``logexp`` column used as offset.
    alpha : float, optional
        The negative binomial's alpha (Var = mu + alpha mu^2), what a fit reports as ``res.alpha``; without it
        ``scale`` is read as alpha, as in earlier versions.
    Returns
    -------
    DataFrame with y (or successes, failures), x1, x2, g[, logexp]; ``attrs["truth"]`` holds the truth
    (``"alpha"`` too for the negative binomial).
    """
    if alpha is not None:
        if str(family).lower() != "negativebinomial":
            raise ValueError(f"alpha is the negative binomial's dispersion; the {family} family takes scale=")
        if not is_positive_number(alpha):
            raise ValueError(f"alpha must be a finite positive number (got {alpha!r})")
        scale = float(alpha)
    fam = make_family(family, link)
    rng = np.random.default_rng(seed)
    sizes = np.full(n_groups, group_size) if np.ndim(group_size) == 0 else np.asarray(group_size)
    g = np.repeat(np.arange(len(sizes)), sizes)
    n = int(sizes.sum())
    x1 = rng.normal(size=n)
    x2 = rng.binomial(1, 0.5, size=n).astype(float)
    u = rng.normal(0.0, sigma_u, size=len(sizes))[g]
    eta = beta[0] + beta[1] * x1 + beta[2] * x2 + u
    df = pd.DataFrame({"x1": x1, "x2": x2, "g": g})
    if offset:
        df["logexp"] = np.log(rng.uniform(0.5, 2.0, size=n))
        eta = eta + df["logexp"].to_numpy()
    mu = fam.link.inverse(eta)
    name = family.lower()
    if name == "gaussian":
        y = rng.normal(mu, np.sqrt(scale))
    elif name == "binomial":
        if trials is None:
            y = rng.binomial(1, mu).astype(float)
        else:
            k = rng.binomial(trials, mu)
            df["successes"], df["failures"] = k, trials - k
            y = None
    elif name == "poisson":
        y = rng.poisson(mu).astype(float)
    elif name == "negativebinomial":  # NB2 with alpha = scale: Poisson(lambda), lambda ~ Gamma(1/alpha, mean mu)
        y = rng.poisson(rng.gamma(1.0 / scale, mu * scale)).astype(float)
    else:
        shape = 1.0 / scale
        y = rng.gamma(shape, mu / shape)
    if y is not None:
        df.insert(0, "y", y)
    df.attrs["truth"] = {"beta": tuple(beta), "var_re": sigma_u**2, "scale": scale,
                         "family": name, "link": link or ALLOWED_LINKS[name][0]}
    if name == "negativebinomial":
        df.attrs["truth"]["alpha"] = scale
    return df


def _load(name, factors):
    """A shipped CSV with the `factors` columns as pandas Categoricals of strings (lme4's factors), levels in
    numeric order where the labels are numbers ("2" before "10"), else sorted."""
    with resources.files("glmm_ext").joinpath("data", f"{name}.csv").open("r", encoding="utf-8") as fh:
        data = pd.read_csv(fh, dtype={c: str for c in factors})
    for col in factors:
        labels = sorted(data[col].dropna().unique())
        if all(label.lstrip("-").isdigit() for label in labels):
            labels = sorted(labels, key=int)
        data[col] = pd.Categorical(data[col].astype(object), categories=labels)
    return data


def load_sleepstudy():
    """Reaction times under sleep deprivation (lme4's ``sleepstudy``; Belenky et al. 2003): 180 rows.

    ``Reaction`` (average reaction time, ms), ``Days`` (0-9 days of sleep deprivation), ``Subject``
    (18 subjects).  The classic random-slope example: ``"Reaction ~ Days + (Days | Subject)"``.
    """
    return _load("sleepstudy", ["Subject"])


def load_cbpp():
    """Contagious bovine pleuropneumonia (lme4's ``cbpp``; Lesnoff et al. 2004): 56 rows.

    ``herd`` (15 herds), ``incidence`` (new serological cases), ``size`` (herd size at the start
    of the period), ``period`` (1-4).  A Binomial example with trials:
    ``"incidence + I(size - incidence) ~ period"`` with ``groups="herd"``.
    """
    return _load("cbpp", ["herd", "period"])


def load_dyestuff():
    """Yield of dyestuff by batch (lme4's ``Dyestuff``; Davies and Goldsmith 1972): 30 rows.

    ``Batch`` (A-F, 6 batches of intermediate product), ``Yield`` (grams of standard colour, 5
    preparations per batch).  The simplest random-intercept model: ``"Yield ~ 1"``, ``groups="Batch"``.
    """
    return _load("dyestuff", ["Batch"])


def load_grouseticks():
    """Ticks on red grouse chicks (lme4's ``grouseticks``; Elston et al. 2001): 403 rows.

    ``INDEX`` (chick), ``TICKS`` (count), ``BROOD`` (118 broods), ``HEIGHT`` (altitude, m), ``YEAR``
    (95-97), ``LOCATION`` (63 locations), ``cHEIGHT`` (centred altitude).  A Poisson / negative
    binomial example: ``"TICKS ~ YEAR + cHEIGHT"`` with ``groups="BROOD"``.
    """
    return _load("grouseticks", ["INDEX", "BROOD", "YEAR", "LOCATION"])
