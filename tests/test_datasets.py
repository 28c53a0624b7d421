"""The shipped example data sets: the loaders, the package data, and fits of them against lme4's stored output."""
import json
import os
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import glmm_ext

HERE = os.path.dirname(__file__)
ROOT = os.path.dirname(HERE)
with open(os.path.join(HERE, "data", "reference.json")) as fh:
    REFERENCE = json.load(fh)

# loader -> (the test copy of the same data, rows, factor columns)
LOADERS = {
    "load_sleepstudy": ("sleepstudy.csv", 180, ["Subject"]),
    "load_cbpp": ("cbpp.csv", 56, ["herd", "period"]),
    "load_dyestuff": ("dyestuff.csv", 30, ["Batch"]),
    "load_grouseticks": ("grouseticks.csv", 403, ["INDEX", "BROOD", "YEAR", "LOCATION"]),
}


@pytest.mark.parametrize("loader", list(LOADERS))
def test_loader_returns_the_data_with_factors_as_categoricals(loader):
    csv, rows, factors = LOADERS[loader]
    data = getattr(glmm_ext, loader)()
    assert loader in glmm_ext.__all__
    assert data.shape[0] == rows
    reference = pd.read_csv(os.path.join(HERE, "data", csv))
    assert list(data.columns) == list(reference.columns)
    for col in data.columns:
        if col in factors:
            assert isinstance(data[col].dtype, pd.CategoricalDtype), col
            assert all(isinstance(v, str) for v in data[col]), col
            assert list(data[col].astype(str)) == [str(v) for v in reference[col]], col
        else:
            assert np.allclose(data[col].to_numpy(float), reference[col].to_numpy(float)), col
    again = getattr(glmm_ext, loader)()
    again.iloc[0, 0] = again.iloc[1, 0]  # a fresh copy each call: the caller may change it
    assert getattr(glmm_ext, loader)().equals(data)


def test_data_files_are_package_data_with_their_origin():
    import tomllib

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        config = tomllib.load(fh)
    patterns = config["tool"]["setuptools"]["package-data"]["glmm_ext"]
    assert "data/*.csv" in patterns
    folder = os.path.join(ROOT, "glmm_ext", "data")
    readme = open(os.path.join(folder, "README.md"), encoding="utf-8").read()
    for csv, _, _ in LOADERS.values():
        assert os.path.exists(os.path.join(folder, csv)) and f"`{csv}`" in readme
    assert "random intercept" not in config["project"]["description"].lower()


# the reference fits of tests/data/reference.json (lme4), through the loaders
FITS = {
    "dyestuff_reml": ("load_dyestuff", "Yield ~ 1 + (1 | Batch)", None, {}),
    "sleepstudy_ri": ("load_sleepstudy", "Reaction ~ Days + (1 | Subject)", None, {}),
    "cbpp_binomial": ("load_cbpp", "incidence + I(size - incidence) ~ period + (1 | herd)", sm.families.Binomial, {}),
    "grouseticks_poisson": ("load_grouseticks", "TICKS ~ YEAR + cHEIGHT + (1 | BROOD)", sm.families.Poisson, {}),
}


@pytest.mark.parametrize("name", list(FITS))
def test_loaded_data_reproduce_lme4(name):
    loader, formula, family, fit_kw = FITS[name]
    ref = REFERENCE[name]["anchors"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = glmm_ext.GLMM.from_formula(formula, getattr(glmm_ext, loader)(),
                                         family=None if family is None else family()).fit(**fit_kw)
    assert res.llf == pytest.approx(ref["loglik"], abs=2e-3)
    assert np.allclose(res.fe_params.to_numpy(), list(ref["fe"].values()), rtol=1e-3, atol=1e-4)
    assert float(res.cov_re.iloc[0, 0]) == pytest.approx(ref["var_re"], rel=2e-3)
    assert res.n_groups == ref["ngroups"]


def test_docs_use_the_loaders_not_test_files():
    for page in sorted(os.listdir(os.path.join(ROOT, "docs"))):
        if not page.endswith(".md"):
            continue
        text = open(os.path.join(ROOT, "docs", page), encoding="utf-8").read()
        blocks = "\n".join(re.findall(r"```python\n(.*?)```", text, re.S))
        assert not re.search(r"[\"']tests[\"'/]", blocks), page  # a test file is not installed
        assert "os.path.exists" not in blocks, page  # an example that silently does nothing when installed
    slopes = open(os.path.join(ROOT, "docs", "random_slopes.md"), encoding="utf-8").read()
    assert "glmm_ext.load_sleepstudy()" in slopes


def test_pickle_is_documented_as_unsafe_for_untrusted_files():
    for page in ("quickstart.md", "api.md"):
        text = open(os.path.join(ROOT, "docs", page), encoding="utf-8").read().lower()
        assert "untrusted" in text and "pickle" in text, page
    doc = glmm_ext.GLMMResults.save.__doc__ or ""
    assert "untrusted" in doc.lower()


def test_stale_random_intercept_only_wording_is_gone():
    index = open(os.path.join(ROOT, "docs", "index.md"), encoding="utf-8").read()
    assert "one random intercept per group:" not in index
    df = glmm_ext.simulate("gaussian", n_groups=5, group_size=4, seed=2)
    with pytest.raises(ValueError) as err:  # variance components are fitted now; an unsupported one says how
        glmm_ext.mixedlm("y ~ x1", df, groups="g", vc_formula={"a": "x1 + C(x2)"})
    assert "single random intercept" not in str(err.value) and "0 + C(column)" in str(err.value)
    with pytest.raises(ValueError) as err:  # BayesMixedGLM's crossed call is fitted; a slope component is not
        glmm_ext.BinomialMixedGLM.from_formula("y ~ x1", {"g": "0 + C(g)", "h": "0 + x1"}, df)
    assert "single random intercept" not in str(err.value) and "0 + C(column)" in str(err.value)
