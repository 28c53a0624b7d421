"""fit_many: one right-hand side, many responses; each row equals the single in-memory fit."""
import warnings

import numpy as np
import pandas as pd
import pytest

import glmm_ext


@pytest.fixture(scope="module")
def genes():
    rng = np.random.default_rng(3)
    n, G = 600, 30
    g = np.repeat(np.arange(G), n // G)
    x1, x2 = rng.normal(size=n), rng.uniform(-1, 1, n)
    df = pd.DataFrame({"x1": x1, "x2": x2, "g": [f"s{k}" for k in g]})
    for j in range(4):
        u = rng.normal(0, 0.4 + 0.1 * j, G)[g]
        df[f"gene{j}"] = rng.poisson(np.exp(0.2 + 0.3 * j * x1 - 0.2 * x2 + u)).astype(float)
    df["score"] = 1.0 + 0.5 * x1 + rng.normal(0, 0.7, G)[g] + rng.normal(size=n)
    df.loc[[5, 17, 300], "gene2"] = np.nan  # this response alone loses three rows
    df["bad"] = df["gene0"]
    df.loc[10, "bad"] = -1.0  # outside the Poisson support: a failed fit, not an exception
    return df


def _single(df, response, family):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return glmm_ext.GLMM.from_formula(f"{response} ~ x1 + x2", df, groups="g", family=family).fit()


def test_rows_equal_single_fits_and_failures_are_rows(genes):
    family = glmm_ext.make_family("poisson")
    responses = ["gene0", "gene1", "bad", "gene2", "gene3"]
    table = glmm_ext.fit_many(genes, responses, "~ x1 + x2", groups="g", family=family)
    assert list(table.columns) == ["response", "term", "estimate", "std_err", "z", "p_value", "q_value", "var_re",
                                   "llf", "converged", "message"]
    assert list(table["response"].unique()) == responses
    for response in ["gene0", "gene1", "gene2", "gene3"]:
        res = _single(genes, response, family)
        rows = table[table["response"] == response].set_index("term")
        np.testing.assert_allclose(rows["estimate"], res.fe_params, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(rows["std_err"], res.bse_fe, rtol=1e-4)
        np.testing.assert_allclose(rows["llf"], res.llf, rtol=1e-10)
        np.testing.assert_allclose(rows["var_re"], res.var_re, rtol=1e-5)
        np.testing.assert_allclose(rows["p_value"], res.pvalues[res.fe_params.index], rtol=1e-3)
        assert rows["converged"].all()
    bad = table[table["response"] == "bad"]
    assert not bad["converged"].any() and bad["estimate"].isna().all()
    assert "must be >= 0" in bad["message"].iloc[0]
    # Benjamini-Hochberg by hand, per term over the responses that were fitted
    for term, rows in table[table["converged"]].groupby("term"):
        p = rows["p_value"].to_numpy()
        order = np.argsort(p)
        ranked = p[order] * len(p) / np.arange(1, len(p) + 1)
        q = np.empty_like(p)
        q[order] = np.minimum(1.0, np.minimum.accumulate(ranked[::-1])[::-1])
        np.testing.assert_allclose(rows["q_value"], q, rtol=1e-12)


def test_processes_give_the_same_table(genes, capsys, monkeypatch):
    import glmm_ext.scale._many as many

    family = glmm_ext.make_family("poisson")
    responses = ["gene0", "gene1", "gene3", "bad"]
    serial = glmm_ext.fit_many(genes, responses, "x1 + x2", groups="g", family=family, n_jobs=1)
    started = []
    real = many.ProcessPoolExecutor

    def spy(*args, **kwargs):
        started.append(kwargs.get("max_workers"))
        return real(*args, **kwargs)

    monkeypatch.setattr(many, "ProcessPoolExecutor", spy)
    monkeypatch.setattr(many, "MIN_RESPONSES_PER_WORKER", 2)  # 4 responses: two processes
    parallel = glmm_ext.fit_many(genes, responses, "~ x1 + x2", groups="g", family=family, n_jobs=2, progress=True)
    assert started == [2]
    pd.testing.assert_frame_equal(serial, parallel)
    assert "fit_many" in capsys.readouterr().err
    # processes are capped by the responses: one per MIN_RESPONSES_PER_WORKER of them
    glmm_ext.fit_many(genes, responses[:3], "~ x1", groups="g", family=family, n_jobs=8)
    assert started == [2]


def test_gaussian_uses_the_exact_profile(genes):
    table = glmm_ext.fit_many(genes, ["score"], "~ x1", groups="g")
    res = glmm_ext.GLMM.from_formula("score ~ x1", genes, groups="g").fit()
    np.testing.assert_allclose(table["estimate"], res.fe_params, rtol=1e-8)
    np.testing.assert_allclose(table["llf"], res.llf, rtol=1e-10)


def test_bad_arguments(genes):
    with pytest.raises(ValueError, match="not in data: nope"):
        glmm_ext.fit_many(genes, ["gene0", "nope"], "~ x1", groups="g")
    with pytest.raises(ValueError, match="empty"):
        glmm_ext.fit_many(genes, [], "~ x1", groups="g")
    with pytest.raises(ValueError, match="n_jobs"):
        glmm_ext.fit_many(genes, ["gene0"], "~ x1", groups="g", n_jobs=0)
    with pytest.raises(TypeError, match="DataFrame"):
        glmm_ext.fit_many(genes.to_dict(), ["gene0"], "~ x1", groups="g")


def test_one_job_stays_in_this_process(genes, monkeypatch):
    import glmm_ext.scale._many as many

    def no_processes(*args, **kwargs):
        raise AssertionError("n_jobs=1 must not start processes")

    monkeypatch.setattr(many, "ProcessPoolExecutor", no_processes)
    table = glmm_ext.fit_many(genes, ["gene0", "gene1"], "~ x1", groups="g", family=glmm_ext.make_family("poisson"),
                              n_jobs=1)
    assert table["converged"].all()
    # the default (a process per CPU) keeps a handful of responses here too: starting processes costs more
    few = glmm_ext.fit_many(genes, ["gene0", "gene1"], "~ x1", groups="g", family=glmm_ext.make_family("poisson"))
    pd.testing.assert_frame_equal(few, table)
