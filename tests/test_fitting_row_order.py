"""The Gaussian random-intercept profile does not depend on how the rows come, and its one-pass sums are exact.

Rows that come grouped are read in their own order (no sort), in code order or not; shuffled rows are
sorted: the fits must agree.  The within-group cross-product W is read off Z'Z where that loses nothing
and from two-pass deviations where it would (a column varying mostly between groups, a huge mean): checked
against a long-double reference, and through the public API on a response 1e8 + noise against the
dense n x n REML likelihood.
"""
import numpy as np
import pandas as pd
import pytest

import glmm_ext
from conftest import dense_reml_deviance
from glmm_ext.engine._lmm import lmm_stats
from glmm_ext.engine._segments import group_starts


def _grouped_frame(seed=3, n_groups=40, icc_sd=1.0):
    """Rows grouped by a string label whose sorted order ("g10" < "g2") is not the order the groups come in;
    x2 is constant within each group (a group-level predictor)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(3, 25, n_groups)
    g = np.repeat(np.arange(n_groups), sizes)
    n = len(g)
    x1 = rng.normal(0.7, 1.0, size=n)
    x2 = rng.normal(size=n_groups)[g]
    y = 0.5 + 0.8 * x1 - 0.6 * x2 + rng.normal(0, icc_sd, n_groups)[g] + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": [f"g{k}" for k in g]})


def _modes(res):
    """The random intercepts by group label, sorted by label."""
    return pd.Series({label: float(v.iloc[0]) for label, v in res.random_effects.items()}).sort_index()


def _fit(df, formula="y ~ x1 + x2 + (1|g)", reml=True):
    return glmm_ext.GLMM.from_formula(formula, df).fit(reml=reml)


@pytest.mark.parametrize("icc_sd", [1.0, 30.0])  # 30: y varies almost only between groups (W_yy from deviations)
@pytest.mark.parametrize("reml", [True, False])
def test_grouped_sorted_and_shuffled_rows_give_the_same_fit(icc_sd, reml):
    df = _grouped_frame(icc_sd=icc_sd)
    rng = np.random.default_rng(0)
    shuffled = df.iloc[rng.permutation(len(df))]
    in_code_order = df.sort_values("g", kind="stable")  # grouped, groups in sorted-label order
    blocks = df.groupby("g", sort=False).ngroup()  # grouped, groups in a random order
    regrouped = df.iloc[np.argsort(rng.permutation(blocks.max() + 1)[blocks.to_numpy()], kind="stable")]
    fits = [_fit(d, reml=reml) for d in (df, shuffled, in_code_order, regrouped)]
    first = fits[0]
    for other in fits[1:]:
        assert other.llf == pytest.approx(first.llf, rel=1e-12, abs=1e-9)
        assert np.asarray(other.params) == pytest.approx(np.asarray(first.params), rel=1e-9, abs=1e-12)
        assert np.asarray(other.bse) == pytest.approx(np.asarray(first.bse), rel=1e-7)
        assert other.var_re == pytest.approx(first.var_re, rel=1e-8)
        assert other.scale == pytest.approx(first.scale, rel=1e-9)
        pd.testing.assert_series_equal(_modes(other), _modes(first), rtol=1e-8, atol=1e-10)
        # fitted values follow the caller's rows, whatever their order
        pd.testing.assert_series_equal(other.fittedvalues.sort_index(), first.fittedvalues.sort_index(),
                                       rtol=1e-9, atol=1e-10, check_names=False)


def test_response_with_a_huge_mean_matches_the_dense_reml_likelihood():
    """y = 1e8 + O(1): the centring and the one-pass sums must keep every digit the fit needs."""
    df = _grouped_frame(seed=5, n_groups=25)
    big = df.assign(y=df.y + 1e8, x1=df.x1 + 1e7)
    res, ref = _fit(big), _fit(df)
    shuffled = _fit(big.iloc[np.random.default_rng(1).permutation(len(big))])  # the rows read in any order
    assert shuffled.llf == pytest.approx(res.llf, abs=1e-8)
    assert shuffled.var_re == pytest.approx(res.var_re, rel=1e-8)
    y, g = big.y.to_numpy(), big.g.to_numpy()
    X = np.column_stack([np.ones(len(big)), big.x1, big.x2])
    dense = -0.5 * dense_reml_deviance(y - 1e8, X - [0, 1e7, 0], g, res.var_re, res.scale)[0]
    # the dense evaluator is given the offsets removed (its own n x n algebra would lose them); REML's
    # log|X'V^-1X| is invariant to the shift of x1 (a unit-determinant change of the columns)
    assert res.llf == pytest.approx(dense, abs=1e-7)
    assert res.llf == pytest.approx(ref.llf, abs=1e-7)
    assert res.var_re == pytest.approx(ref.var_re, rel=1e-7)
    assert res.scale == pytest.approx(ref.scale, rel=1e-8)
    assert res.params["x1"] == pytest.approx(ref.params["x1"], rel=1e-7)
    # the same fitted values (the intercept absorbs 1e8 - 1e7 x1's slope)
    assert np.asarray(res.fittedvalues - 1e8) == pytest.approx(np.asarray(ref.fittedvalues), abs=1e-6)


def _reference_within(Z, counts):
    """sum_j (Z_j - mean_j)'(Z_j - mean_j) in long double, group by group."""
    Z = np.asarray(Z, np.longdouble)
    out = np.zeros((Z.shape[1], Z.shape[1]), np.longdouble)
    for s, c in zip(group_starts(counts), counts):
        D = Z[s:s + c] - Z[s:s + c].mean(axis=0)
        out += D.T @ D
    return out.astype(float)


def test_within_cross_product_keeps_the_two_pass_accuracy():
    """Columns of every kind: the intercept (W row exactly 0), a within-varying column, a column varying
    mostly between groups, a group-level column (true W row 0), a column with a mean of 1e7, and a response
    of mean 1e8: each entry of W within 1e-10 of the exact value on the scale sqrt(W_aa W_bb) (a group-level
    column: on the scale of its raw second moment, its true W being 0)."""
    rng = np.random.default_rng(11)
    counts = rng.integers(1, 40, 300)
    g = np.repeat(np.arange(len(counts)), counts)
    n = len(g)
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.normal(size=len(counts))[g] * 50 + rng.normal(size=n),
                         rng.normal(size=len(counts))[g], 1e7 + rng.normal(size=n)])
    y = 1e8 + X[:, 1] + rng.normal(0, 20, len(counts))[g] + rng.normal(size=n)
    stats = lmm_stats(X, y, group_starts(counts), counts)
    exact = _reference_within(np.column_stack([X, y]), counts)
    perm = np.random.default_rng(2).permutation(n)  # rows in any order, groups given by code
    by_code = lmm_stats(X[perm], y[perm], None, counts, codes=g[perm])
    assert np.allclose(by_code.sums, stats.sums, rtol=1e-13, atol=1e-6)  # (1e8-sized sums: ~1e-8 apart)
    assert np.all(stats.within[0] == 0.0) and np.all(stats.within[:, 0] == 0.0)
    Z = np.column_stack([X, y])
    size = np.sqrt(np.maximum(np.diag(exact), 1e-300))
    size[3] = np.sqrt(Z[:, 3] @ Z[:, 3])  # the group-level column
    size[0] = 1.0
    for found in (stats.within, by_code.within):
        assert np.all(found[0] == 0.0) and np.all(found[:, 0] == 0.0)
        assert (np.abs(found - exact) / np.outer(size, size)).max() < 1e-10
    assert np.allclose(stats.sums, np.add.reduceat(Z, group_starts(counts), axis=0), rtol=1e-14, atol=0)


def test_weighted_profile_is_unchanged_by_the_row_order():
    """Weights take the sorted path: grouped and shuffled weighted rows give one fit, equal to the dense
    weighted REML likelihood (lme4's weights: residual variance sigma^2 / w)."""
    from dense_reference import gaussian_loglik

    df = _grouped_frame(seed=8, n_groups=20)
    w = np.random.default_rng(2).uniform(0.5, 2.0, len(df))
    fits = []
    for rows in (np.arange(len(df)), np.random.default_rng(4).permutation(len(df))):
        d = df.iloc[rows]
        fits.append(glmm_ext.GLMM.from_formula("y ~ x1 + x2 + (1|g)", d, var_weights=w[rows]).fit())
    assert fits[1].llf == pytest.approx(fits[0].llf, rel=1e-12)
    assert np.asarray(fits[1].params) == pytest.approx(np.asarray(fits[0].params), rel=1e-9)
    res = fits[0]
    codes = pd.factorize(df.g)[0]
    X = np.column_stack([np.ones(len(df)), df.x1, df.x2])
    dense = gaussian_loglik(df.y.to_numpy(), X, None, [(codes, np.ones((len(df), 1)))], [res.var_re], res.scale,
                            reml=True, weights=w)
    assert res.llf == pytest.approx(dense, abs=1e-7)


@pytest.mark.parametrize("layout", ["sorted", "grouped", "shuffled", "one group"])
def test_the_design_order_is_the_stable_sort_of_the_codes(layout):
    """Rows that come grouped get their sort without a sort (from the runs): it must be numpy's stable sort,
    and a design made from shuffled rows must not be taken for a grouped one."""
    from glmm_ext.formula._codes import group_order, group_runs

    rng = np.random.default_rng(7)
    n_groups = 1 if layout == "one group" else 500
    codes = np.repeat(np.arange(n_groups), rng.integers(1, 9, n_groups))
    if layout == "grouped":
        codes = np.repeat(rng.permutation(n_groups), np.bincount(codes))
    elif layout == "shuffled":
        codes = rng.permutation(codes)
    runs = group_runs(codes, n_groups)
    assert (runs is None) == (layout == "shuffled")
    assert np.array_equal(group_order(codes, n_groups, runs), np.argsort(codes, kind="stable"))
    if n_groups < 2:
        return
    df = pd.DataFrame({"y": rng.normal(size=len(codes)) + codes % 5, "g": codes})
    design = glmm_ext.GLMM.from_formula("y ~ 1", df, groups="g").design
    assert np.array_equal(design.order, np.argsort(design.codes, kind="stable"))
    assert design.presorted == (layout in ("sorted", "one group"))


@pytest.mark.parametrize("dtype", ["string[pyarrow]", "string[python]"])
def test_text_groups_give_the_codes_and_fit_of_plain_strings(dtype):
    """Groups read as text (pandas' CSV reader gives Arrow strings) are coded from Arrow's dictionary encoding:
    the labels must come sorted as pandas sorts them (code points: "Z" < "a" < "ä"), the codes the same as for
    plain Python strings, and a random-slope fit on shuffled rows identical; its sort of the rows by group,
    made only when read (the slope profile needs none), is the stable sort of the codes, and stays so for a
    design that no longer holds it."""
    pytest.importorskip("pyarrow")
    rng = np.random.default_rng(11)
    labels = np.array(["g10", "g2", "Z", "a", "ä", "é", "b"] + [f"k{i}" for i in range(33)])
    g = rng.permutation(np.repeat(labels, rng.integers(4, 12, len(labels))))
    x = rng.normal(size=len(g))
    effect = dict(zip(labels, rng.normal(size=(len(labels), 2))))
    y = 1.0 + 0.5 * x + np.array([effect[k][0] + effect[k][1] * x_i for k, x_i in zip(g, x)]) + rng.normal(size=len(g))
    plain = pd.DataFrame({"y": y, "x": x, "g": g.astype(object)})
    text = plain.assign(g=plain.g.astype(dtype))
    models = [glmm_ext.GLMM.from_formula("y ~ x + (1 + x|g)", d) for d in (plain, text)]
    assert list(models[1].group_labels) == sorted(labels)
    assert list(models[0].group_labels) == list(models[1].group_labels)
    assert np.array_equal(models[0].design.codes, models[1].design.codes)
    fits = [m.fit() for m in models]
    assert np.array_equal(fits[0].params, fits[1].params) and fits[0].llf == fits[1].llf
    design = models[1].design
    assert "order" not in vars(design)  # not made by the fit
    assert np.array_equal(design.order, np.argsort(design.codes, kind="stable"))
    from dataclasses import replace
    fresh = glmm_ext.GLMM.from_formula("y ~ x + (1 + x|g)", text).design
    assert np.array_equal(replace(fresh, y=fresh.y * 2).order, design.order)


@pytest.mark.parametrize("labels", [
    [str(v) for v in range(-12, 40)],  # integers written canonically: coded from their values
    ["7", "07", "007", "0x7", "-0", "0", "10", "9"] + [str(v) for v in range(20, 60)],  # other spellings: distinct
    ["+7", "7", "8"] + [str(v) for v in range(20, 60)],  # not integers to Arrow's cast: the dictionary
    [str(v) for v in range(10**15, 10**15 + 9 * 10**13, 10**12)] + ["-3"],  # a wide span: numpy's unique
    ["99999999999999999999", "1", "2"] + [str(v) for v in range(30, 70)],  # beyond int64: the dictionary
])
def test_integer_text_groups_give_the_codes_of_plain_strings(labels):
    """Ids read as text ("101") are coded from their integer values when every label writes its integer the
    canonical way; labels that write one integer in several ways ("7", "07") stay distinct groups.  Codes,
    sorted labels (as text: "10" < "9") and rows per group equal pandas' sorted factorize of plain strings,
    whatever the Arrow chunks, and so does the fit."""
    pytest.importorskip("pyarrow")
    from glmm_ext.formula._codes import counted_group_codes

    rng = np.random.default_rng(5)
    g = rng.permutation(np.repeat(np.array(labels, dtype=object), rng.integers(3, 8, len(labels))))
    text = pd.Series(g, dtype="string[pyarrow]")
    chunked = pd.concat([text.iloc[:40], text.iloc[40:]], ignore_index=True)
    expected_codes, expected_labels = pd.factorize(pd.Series(g, dtype=object), sort=True)
    for series in (text, chunked, text.iloc[3:]):
        codes, found, counts = counted_group_codes(series)
        want_codes, want_labels = pd.factorize(pd.Series(list(series), dtype=object), sort=True)
        assert codes.dtype == np.intp and np.array_equal(codes, want_codes)
        assert list(found) == list(want_labels)
        assert np.array_equal(counts, np.bincount(want_codes, minlength=len(want_labels)))
    x = rng.normal(size=len(g))
    y = 0.5 * x + rng.normal(size=len(labels))[expected_codes] + rng.normal(size=len(g))
    plain = pd.DataFrame({"y": y, "x": x, "g": g})
    fits = [glmm_ext.GLMM.from_formula("y ~ x + (1|g)", d).fit() for d in (plain, plain.assign(g=text))]
    assert list(fits[1].model.group_labels) == list(expected_labels)
    assert np.array_equal(fits[0].params, fits[1].params) and fits[0].llf == fits[1].llf


@pytest.mark.parametrize("labels", [
    ["0xf4240", "1000000"] + [str(v) for v in range(20, 60)],  # hexadecimal as long as the decimal: one value
    ["0x1000000000000000", "05", "5"] + [str(v) for v in range(20, 60)],  # a shorter hex makes up for "05"
    ["0x3b9aca00", "0x3b9aca01", "0x3b9aca02", "0x3b9aca03"],  # hex ids alone, each as long as its decimal
])
def test_hexadecimal_text_groups_stay_their_own_labels(labels):
    """Arrow's cast reads "0x..." as an integer too, and a hexadecimal label can be as short as (or shorter than)
    the decimal text of its value: such labels must keep their own spelling and stay apart from the decimal
    label of the same value, as pandas' factorize of the plain strings has them."""
    pytest.importorskip("pyarrow")
    rng = np.random.default_rng(7)
    g = rng.permutation(np.repeat(np.array(labels, dtype=object), 6))
    x = rng.normal(size=len(g))
    want_codes, want_labels = pd.factorize(pd.Series(g, dtype=object), sort=True)
    y = 0.5 * x + rng.normal(size=len(want_labels))[want_codes] + rng.normal(size=len(g))
    df = pd.DataFrame({"y": y, "x": x, "g": pd.Series(g, dtype="string[pyarrow]")})
    model = glmm_ext.GLMM.from_formula("y ~ x + (1|g)", df)
    assert list(model.group_labels) == list(want_labels)
    assert np.array_equal(model.design.codes, want_codes)
    from glmm_ext.formula._codes import counted_group_codes

    text = df.g
    for series in (pd.concat([text.iloc[:7], text.iloc[7:]], ignore_index=True), text.iloc[3:]):  # chunks, offsets
        codes, found, _ = counted_group_codes(series)
        expected_codes, expected_labels = pd.factorize(pd.Series(list(series), dtype=object), sort=True)
        assert list(found) == list(expected_labels) and np.array_equal(codes, expected_codes)
