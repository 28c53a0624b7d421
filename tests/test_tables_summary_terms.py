"""summary() of a fit with several random-effect terms, checked against the fitted results: every number of the
VarCorr rows (variances, SDs, correlations, Residual), the ICC per term and the adjusted ICC, the NB2 shape and
the singular flags, recomputed here from ``res.cov_re`` and ``res.scale``; the statsmodels summary API (text,
HTML, LaTeX, summary2, alpha) for one term and for several."""
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import glmm_ext

PRINTED = 6e-5  # the tables print 4 decimals


def _data(seed=3, n=240, sd_batch=0.4, family="gaussian"):
    rng = np.random.default_rng(seed)
    site, batch, x = rng.integers(0, 10, n), rng.integers(0, 7, n), rng.normal(size=n)
    eta = 0.4 + 0.5 * x + rng.normal(0, 0.6, 10)[site] + rng.normal(0, sd_batch, 7)[batch] \
        + rng.normal(0, 0.3, 10)[site] * x
    if family == "gaussian":
        y = eta + rng.normal(0, 0.8, n)
    elif family == "binomial":
        y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    else:  # NB2 with theta = 2
        y = rng.negative_binomial(2, 2 / (2 + np.exp(eta)))
    return pd.DataFrame({"y": y, "x": x, "site": [f"s{v}" for v in site], "batch": [f"b{v}" for v in batch]})


def _fit(formula, df, family=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels: "alpha not set" (glmm_ext estimates the NB2 shape)
        kwargs = {} if family is None else {"family": family()}
        return glmm_ext.GLMM.from_formula(formula, df, **kwargs).fit()


@pytest.fixture(scope="module")
def slopes_fit():
    return _fit("y ~ x + (1 + x | site) + (1 | batch)", _data())


def _rows(text, title):
    """The rows (split on spaces) of the table headed `title` in a summary's text."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(title))
    rows = []
    for line in lines[start + 2:]:  # the header, then its rule
        if re.fullmatch(r"[-=]+", line):
            return rows
        rows.append(line.split())
    return rows


def test_varcorr_rows_are_the_fitted_covariances_and_scale(slopes_fit):
    res = slopes_fit
    rows = _rows(res.summary().as_text(), "Random Effects")
    expected = []
    for key, cov in res.cov_re.items():
        c = cov.to_numpy()
        sd = np.sqrt(np.diag(c))
        for j, name in enumerate(cov.index):
            expected.append([key, name, c[j, j], sd[j]] + [c[j, i] / (sd[j] * sd[i]) for i in range(j)])
    expected.append(["Residual", res.scale, np.sqrt(res.scale)])
    assert [r[:2] for r in rows[:-1]] == [e[:2] for e in expected[:-1]] and rows[-1][0] == "Residual"
    for row, exp in zip(rows, expected):
        numbers = [float(v) for v in row[2:]] if row[0] != "Residual" else [float(v) for v in row[1:]]
        assert numbers == pytest.approx([float(v) for v in exp[2 if row[0] != "Residual" else 1:]], abs=PRINTED)
    corr = [r for r in rows if len(r) == 5]
    assert len(corr) == 1 and corr[0][:2] == ["site", "x"]  # one correlation: site's slope with its intercept
    assert abs(float(corr[0][4])) < 1


def test_icc_per_term_and_adjusted_from_the_intercept_variances(slopes_fit):
    res = slopes_fit
    text = res.summary().as_text()
    rows = {" ".join(r[:-1]): float(r[-1]) for r in _rows(text, "ICC")}
    var = {k: c.loc["Intercept", "Intercept"] for k, c in res.cov_re.items()}  # the slope variance does not count
    total = sum(var.values()) + res.scale
    assert rows == pytest.approx({"ICC (site)": var["site"] / total, "ICC (batch)": var["batch"] / total,
                                  "Adjusted ICC": (var["site"] + var["batch"]) / total}, abs=PRINTED)
    assert res.icc == pytest.approx((var["site"] + var["batch"]) / total, rel=1e-12)
    # the ICC's basis, too long beside the table in text, follows it as a note; in HTML it is the Note column
    flat = " ".join(text.split())
    assert f"ICC (site), ICC (batch): sigma2_k / (sum of intercept variances + sigma_e^2), sigma_e^2 = " \
           f"{res.scale:.6g} (estimated residual variance)" in flat
    assert "sigma2_k / (sum of intercept variances" in res._repr_html_()


def test_binomial_icc_uses_the_logistic_residual_and_prints_no_residual_row():
    res = _fit("y ~ x + (1 | site) + (1 | batch)", _data(seed=5, family="binomial"), sm.families.Binomial)
    text = res.summary().as_text()
    assert [r[0] for r in _rows(text, "Random Effects")] == ["site", "batch"]
    var = {k: float(c.iloc[0, 0]) for k, c in res.cov_re.items()}
    total = sum(var.values()) + np.pi ** 2 / 3
    rows = {" ".join(r[:-1]): float(r[-1]) for r in _rows(text, "ICC")}
    assert rows == pytest.approx({"ICC (site)": var["site"] / total, "ICC (batch)": var["batch"] / total,
                                  "Adjusted ICC": sum(var.values()) / total}, abs=PRINTED)
    latent = _rows(text, "Latent scale")
    assert latent[0][0] == "distribution-specific" and float(latent[0][1]) == pytest.approx(np.pi ** 2 / 3, abs=PRINTED)
    assert "Standard errors of fixed effects: observed information (Hessian)." in text


def test_negative_binomial_shape_and_undefined_icc():
    res = _fit("y ~ x + (1 | site) + (1 | batch)", _data(seed=8, family="nb"), sm.families.NegativeBinomial)
    text = res.summary().as_text()
    shape = {r[0]: float(r[1]) for r in _rows(text, "NB2 shape")}
    assert shape == pytest.approx({"alpha": res.alpha, "theta": 1 / res.alpha}, abs=PRINTED)
    assert res.theta == pytest.approx(1 / res.alpha, rel=1e-12)
    assert res.scale == 1.0  # statsmodels' NB GLM: alpha lives in the family, not in scale
    assert "Family: NegativeBinomial" in " ".join(text.split())  # statsmodels' class name, as for one term
    assert "ICC (site)" not in text and "ICC: no theoretically grounded residual variance" in text
    assert [r[0] for r in _rows(text, "Random Effects")] == ["site", "batch"]  # no Residual row for NB2
    lam = res.latent_lambda
    latent = next(r for r in _rows(text, "Latent scale") if r[:2] == ["lognormal", "approximation"])
    assert float(latent[2]) == pytest.approx(np.log1p(1 / lam + res.alpha), abs=PRINTED)


def test_singular_term_flagged_in_header_and_notes():
    df = _data(seed=3, n=200, sd_batch=0.0)
    res = _fit("y ~ x + (1 | site) + (1 | batch)", df)
    assert res.singular_terms == {"site": False, "batch": True}  # the data of this seed: batch at zero
    text = res.summary().as_text()
    assert re.search(r"Singular fit:\s+batch\b", text)
    assert "Singular fit: the covariance of batch is at its boundary" in " ".join(text.split())
    batch = next(r for r in _rows(text, "Random Effects") if r[0] == "batch")
    assert float(batch[2]) == 0.0 and float(batch[3]) == 0.0


def test_header_blups_and_caveats_per_term(slopes_fit):
    res = slopes_fit
    text = res.summary(blup_rows=4).as_text()
    assert re.search(r"Levels:\s+site 10, batch 7", text)
    assert "Groups" not in [r[0] for r in _rows(text, "Model Fit")]  # the levels per term are in the header
    site = _rows(text, "BLUP: site")
    modes, sds = res.random_effects["site"], res.random_effects_se["site"]
    assert [r[0] for r in site] == list(modes.index[:4])
    for r in site:  # Intercept, SE (Intercept), x, SE (x)
        level = r[0]
        assert [float(v) for v in r[1:]] == pytest.approx(
            [modes.loc[level, "Intercept"], sds.loc[level, "Intercept"], modes.loc[level, "x"], sds.loc[level, "x"]],
            abs=PRINTED)
    assert "... site: 6 more levels (res.blup_table() has all 10)." in text
    assert "... batch: 3 more levels" in text
    assert "with 7 levels of batch they can be too narrow" in " ".join(text.split())
    cli = res.summary(blup_rows=20, from_cli=True).as_text()
    assert "--blups FILE writes every level's BLUP and standard error." in cli


@pytest.mark.parametrize("formula", ["y ~ x + (1 | site)", "y ~ x + (1 + x | site) + (1 | batch)"])
def test_statsmodels_summary_api_for_one_term_and_several(formula):
    res = _fit(formula, _data())
    smry = res.summary(alpha=0.1)
    text = smry.as_text()
    assert max(len(line) for line in text.splitlines()) <= 100
    assert smry.tables and all(isinstance(t, pd.DataFrame) for t in smry.tables)  # statsmodels' summary2 tables
    ci = res.conf_int(0.1)
    fixed = {r[0]: [float(v) for v in r[1:7]] for r in _rows(text, "Fixed Effects")}
    for name in res.params.index:
        assert [fixed[name][0], fixed[name][4], fixed[name][5]] == pytest.approx(
            [res.params[name], ci.loc[name, 0], ci.loc[name, 1]], abs=PRINTED)
    assert "Lower 90%" in text and "Lower 90%" in smry.as_html() and "Lower 90\\%" in smry.as_latex()
    html = res._repr_html_()
    assert "<table" in html and "Random Effects" in html and html == res.summary().as_html()
    latex = smry.as_latex()
    assert "\\begin{tabular}" in latex and "Random Effects" in latex
    assert str(res.summary2(alpha=0.1)) == text
    relabelled = res.summary2(xname=["const", "slope"], yname="response", title="Mine").as_text()
    assert relabelled.splitlines()[0].strip() == "Mine" and "response" in relabelled
    assert [r[0] for r in _rows(relabelled, "Fixed Effects")] == ["const", "slope"]
    with pytest.raises(ValueError, match="alpha"):
        res.summary(alpha=1.5)
