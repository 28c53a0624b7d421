"""The printed tables across families (negative binomial included), overdispersion's names, simulate() of a
two-column Binomial response and anova's row labels."""
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

import glmm_ext
from glmm_ext import GLMM

FAMILIES = {
    "gaussian": ("gaussian", None, "y ~ x1 + x2", sm.families.Gaussian, {}),
    "binomial": ("binomial", None, "y ~ x1 + x2", sm.families.Binomial, {}),
    "binomial-trials": ("binomial", None, "successes + failures ~ x1", sm.families.Binomial, {"trials": 6}),
    "poisson": ("poisson", None, "y ~ x1 + x2", sm.families.Poisson, {}),
    "gamma-log": ("gamma", "log", "y ~ x1 + x2", sm.families.Gamma, {"scale": 0.3}),
    "negbin": ("negativebinomial", None, "y ~ x1 + x2", sm.families.NegativeBinomial, {"scale": 0.5}),
    "negbin-slopes": ("negativebinomial", None, "y ~ x1 + (1 + x1 | g)", sm.families.NegativeBinomial,
                      {"scale": 0.5}),
}


def _fit(name):
    family, link, formula, cls, sim = FAMILIES[name]
    df = glmm_ext.simulate(family, link, n_groups=30, group_size=10, seed=7, **sim)
    kwargs = {} if "|" in formula else {"groups": "g"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels: "alpha not set" (glmm_ext estimates it)
        fam = cls(sm.families.links.Log()) if link == "log" else cls()
        return GLMM.from_formula(formula, df, family=fam, **kwargs).fit(), df


@pytest.fixture(scope="module", params=list(FAMILIES))
def case(request):
    res, df = _fit(request.param)
    return request.param, res, df


def _tables_part(text):
    """The summary's tables (the notes after the closing rule are prose)."""
    return text[: text.rindex("=" * 20)]


def test_summary_fits_in_100_columns_without_nan_or_cut_labels(case):
    name, res, _ = case
    text = res.summary().as_text()
    assert max(len(line) for line in text.splitlines()) <= 100
    tables = _tables_part(text)
    assert not re.search(r"\bnan\b", tables, flags=re.IGNORECASE), name
    assert "..." not in tables, name  # no label cut short


def test_family_line_is_statsmodels_class_name(case):
    _, res, _ = case
    line = next(line for line in res.summary().as_text().splitlines() if line.startswith("Family:"))
    assert line.split()[1] == type(res.model.family).__name__


def test_one_standard_error_header_everywhere(case):
    _, res, _ = case
    text = res.summary().as_text()
    assert "Std.Err." not in text
    fixed = [line for line in text.splitlines() if line.lstrip().startswith("Fixed Effects")]
    assert fixed and "Std. Error" in fixed[0]
    assert "Std. Error" in res.fixed_effects_table().columns
    blups = res.blup_table()
    assert any(str(c).startswith("Std. Error") for c in blups.columns)


def test_random_effects_table_has_no_missing_cells(case):
    name, res, _ = case
    table = res.random_effects_table()
    numeric = table[["Variance", "Std.Dev."]].to_numpy(dtype=float)
    assert np.isfinite(numeric).all(), name


def test_negative_binomial_shape_table():
    res, _ = _fit("negbin")
    shape = res.dispersion_table()
    assert list(shape.index) == ["alpha", "theta"]
    assert shape.loc["alpha", "Value"] == pytest.approx(res.alpha) and shape.loc["theta", "Value"] == pytest.approx(
        1.0 / res.alpha)
    text = res.summary().as_text()
    assert "NB2 shape" in text and "NB2: Var = mu + alpha mu^2" in text
    assert re.search(r"^Family:\s+NegativeBinomial\s", text, flags=re.MULTILINE)
    poisson, _ = _fit("poisson")
    assert poisson.dispersion_table() is None and "NB2 shape" not in poisson.summary().as_text()


@pytest.mark.parametrize("name", ["binomial", "poisson", "negbin"])
def test_overdispersion_has_one_documented_name_per_value(name):
    res, df = _fit(name)
    out = res.overdispersion()
    assert set(out) == {"chisq", "df", "ratio", "pvalue"}
    # independent: Pearson residuals from the conditional means and statsmodels' family variance
    y = df["y"].to_numpy()
    mu = res.fittedvalues.to_numpy()
    family = res.model.family
    if name == "negbin":
        var = mu + res.alpha * mu**2
    else:
        var = family.variance(mu)
    chisq = float(np.sum((y - mu) ** 2 / var))
    df_resid = len(y) - res.k_params
    assert out["chisq"] == pytest.approx(chisq, rel=1e-8) and out["df"] == df_resid
    assert out["ratio"] == pytest.approx(chisq / df_resid) and out["pvalue"] == pytest.approx(
        stats.chi2.sf(chisq, df_resid))


def test_simulate_returns_counts_for_a_successes_failures_response():
    res, df = _fit("binomial-trials")
    sims = res.simulate(nsim=300, seed=3)
    assert list(sims.columns[:2]) == [("sim_1", "successes"), ("sim_1", "failures")]
    assert sims.shape == (len(df), 600)
    successes = sims.xs("successes", axis=1, level=1).to_numpy()
    failures = sims.xs("failures", axis=1, level=1).to_numpy()
    assert np.issubdtype(successes.dtype, np.integer) and (successes >= 0).all() and (failures >= 0).all()
    trials = (df["successes"] + df["failures"]).to_numpy()
    assert np.array_equal(successes + failures, np.repeat(trials[:, None], 300, axis=1))
    # conditional draws: mean successes = trials x fitted probability (within 4 standard errors per row)
    p = res.fittedvalues.to_numpy()
    se = np.sqrt(trials * p * (1 - p) / 300)
    assert np.all(np.abs(successes.mean(axis=1) - trials * p) < 4 * se + 1e-9)


def test_simulate_returns_proportions_for_a_weighted_proportion_response():
    df = glmm_ext.simulate("binomial", n_groups=20, group_size=6, trials=5, seed=2)
    df["n"] = df["successes"] + df["failures"]
    df["p"] = df["successes"] / df["n"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = GLMM.from_formula("p ~ x1", df, groups="g", family=sm.families.Binomial(), weights="n").fit()
    sims = res.simulate(nsim=3, seed=1)
    assert list(sims.columns) == ["sim_1", "sim_2", "sim_3"]
    assert ((sims >= 0) & (sims <= 1)).all().all()
    assert np.allclose((sims.to_numpy() * df["n"].to_numpy()[:, None]) % 1, 0)


def test_anova_rows_name_the_random_parts():
    d = glmm_ext.simulate("poisson", n_groups=30, group_size=10, seed=1)
    fam = sm.families.Poisson()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = [GLMM.from_formula("y ~ x1", d, groups="g", family=fam).fit(),
                GLMM.from_formula("y ~ x1 + (x1 || g)", d, family=fam).fit(),
                GLMM.from_formula("y ~ x1 + (1 + x1 | g)", d, family=fam).fit()]
    table = glmm_ext.anova(*fits)
    assert list(table.index) == ["y ~ x1 + (1 | g)", "y ~ x1 + (1 | g) + (0 + x1 | g)", "y ~ x1 + (1 + x1 | g)"]
    same = glmm_ext.anova(fits[0], fits[0])
    assert list(same.index) == ["model 1: y ~ x1 + (1 | g)", "model 2: y ~ x1 + (1 | g)"]
    named = glmm_ext.anova(*fits[:2], names=["a", "b"])
    assert list(named.index) == ["a", "b"]
