"""Every bad input ends in a clear error naming the problem, before any optimisation; odd but valid input (object
columns, infinite labels, unused levels, Series on another index) is read as statsmodels would."""
import copy
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationWarning

import glmm_ext

B, P, G, N = sm.families.Binomial, sm.families.Poisson, sm.families.Gamma, sm.families.Gaussian
L = sm.families.links
DF = glmm_ext.simulate("poisson", n_groups=10, group_size=5, seed=1)
GDF = glmm_ext.simulate("gaussian", n_groups=10, group_size=5, seed=1)


def model(formula="y ~ x1", data=DF, family=P, **kw):
    return glmm_ext.GLMM.from_formula(formula, data, groups=kw.pop("groups", "g"),
                                      family=family() if isinstance(family, type) else family, **kw)


BAD = [
    # (id, call, exception, fragments the message must contain)
    ("poisson negative", lambda: model(data=DF.assign(y=DF.y - 3)), ValueError, ["Poisson", "'y'", ">= 0", "rows 0"]),
    ("bernoulli not 0/1", lambda: model(family=B), ValueError, ["0 or 1", "'y'", "rows"]),
    ("binomial negative failures", lambda: model("y + I(2 - y) ~ x1", family=B), ValueError,
     [">= 0", "I(2 - y)"]),
    ("binomial proportion > 1", lambda: model("I(y / 2) ~ x1", family=B, weights=np.ones(50)), ValueError,
     ["proportion", "successes > trials"]),
    ("gamma zero", lambda: model(family=G), ValueError, ["Gamma", "> 0", "'y'"]),
    ("groups column missing", lambda: model(groups="school"), ValueError, ["'school'", "not in the data"]),
    ("groups wrong length", lambda: model(groups=np.arange(3)), ValueError, ["3 values", "50 rows"]),
    ("single group", lambda: model(data=DF.assign(g=1)), ValueError, ["1 group", "at least 2"]),
    ("gaussian without repeated groups", lambda: model(data=GDF.assign(g=np.arange(50)), family=N), ValueError,
     ["single row"]),
    ("every row dropped", lambda: model(data=DF.assign(x1=np.nan)), ValueError, ["every one of the 50 rows", "x1"]),
    ("fewer rows than parameters", lambda: model("y ~ x1 + x2", data=DF.head(3).assign(g=[1, 1, 2])), ValueError,
     ["3 rows", "4 parameters"]),
    ("link not allowed", lambda: model(family=B(link=L.Cauchy())), ValueError, ["cauchy", "logit, probit, cloglog"]),
    ("power link not allowed", lambda: model(family=P(link=L.Sqrt())), ValueError, ["power(0.5)", "log, identity"]),
    ("family not supported", lambda: model(family=sm.families.Tweedie()), ValueError, ["Tweedie", "Gamma"]),
    ("family class not instance", lambda: glmm_ext.GLMM.from_formula("y ~ x1", DF, groups="g", family=P),
     TypeError, ["instance", "Poisson()"]),
    ("maxiter < 1", lambda: model().fit(maxiter=0), ValueError, ["maxiter", "0"]),
    ("tol <= 0", lambda: model().fit(tol=-1e-6), ValueError, ["tol", "-1e-06"]),
    ("nagq above 100", lambda: model().fit(nagq=101), ValueError, ["nagq", "0 to 100", "101"]),
    ("nagq negative", lambda: model().fit(nagq=-1), ValueError, ["nagq"]),
    ("cov_type unknown", lambda: model().fit(cov_type="sandwich"), ValueError, ["cov_type", "sandwich"]),
    ("unknown fit option", lambda: model().fit(mehtod="lbfgs"), TypeError, ["mehtod"]),
    ("confidence level too high", lambda: model().fit().conf_int(alpha=1e-5), ValueError, ["99.999%", "99.99%"]),
    ("confidence level too low", lambda: model().fit().fixed_effects_table(alpha=0.6), ValueError, ["40%", "50%"]),
    ("offset wrong length", lambda: model(offset=np.zeros(7)), ValueError, ["offset", "7 values", "50 rows"]),
    ("offset not finite", lambda: model(offset=np.r_[np.inf, np.zeros(49)]), ValueError, ["offset", "finite", "row 0"]),
    ("exposure not positive", lambda: model(exposure=np.r_[1.0, -2.0, np.ones(48)]), ValueError,
     ["exposure", "> 0", "row 1", "-2"]),
    ("exposure with identity link", lambda: model(family=P(link=L.Identity()), exposure=np.ones(50)), ValueError,
     ["exposure", "log link"]),
    ("weights wrong length", lambda: model(family=B, data=DF.assign(y=0.5), weights=np.ones(3)), ValueError,
     ["weights", "3 values"]),
    ("weights for poisson", lambda: model(weights=np.ones(50)), ValueError, ["weights", "poisson"]),
    ("collinear predictors", lambda: model("y ~ x1 + I(2 * x1)"), ValueError, ["collinear", "x1", "I(2 * x1)"]),
    ("response of words", lambda: model(data=DF.assign(y="abc")), ValueError, ["'y'", "no numbers"]),
    ("offset column missing", lambda: model(offset="logexp"), ValueError, ["offset", "'logexp'"]),
    ("two-column response for poisson", lambda: model("y + x2 ~ x1"), ValueError, ["two-column", "Binomial"]),
    ("formula without ~", lambda: model("y"), ValueError, ["'~'"]),
    ("response not in data", lambda: model("1 ~ x1"), ValueError, ["response"]),
    ("array exog length", lambda: glmm_ext.GLMM(np.ones(5), np.ones((4, 1)), np.arange(5)), ValueError,
     ["4 rows", "5"]),
    ("unknown model keyword", lambda: glmm_ext.GLMM(np.ones(4), np.ones((4, 1)), [1, 1, 2, 2], wieghts=1), TypeError,
     ["wieghts"]),
    ("mixedlm random slope, groups too short", lambda: glmm_ext.mixedlm("y ~ x1", GDF, groups=GDF["g"].to_numpy()[:3],
                                                                        re_formula="~x1"), ValueError,
     ["groups has 3 values", "50 rows"]),
    ("crossed random-effects term", lambda: model("y ~ x1 + (1 | g*x2)"), ValueError, ["'/'", "(1 | g*x2)"]),
    ("two grouping factors, too few levels", lambda: model("y ~ x1 + (1 | g) + (x1 | x2)"), ValueError,
     ["cannot identify", "(x1 | x2)"]),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_input_is_a_clear_error(case):
    _, call, exc, fragments = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(exc) as info:
            call()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert info.traceback[-1].path.name != "_linalg.py"  # never raised deep inside numpy


def test_non_integer_counts_warn_and_fit():
    with pytest.warns(UserWarning, match="non-integer"):
        res = model(data=DF.assign(y=DF.y + 0.5)).fit()
    assert np.isfinite(res.llf)


def test_non_numeric_cells_are_dropped_not_the_whole_column():
    df = DF.copy()
    df["x1"] = df["x1"].astype(object)
    df.loc[[2, 9], "x1"] = "missing"
    res = model(data=df).fit()
    assert res.n_dropped == 2 and res.nobs == 48
    assert res.model.design.drop_reasons == {"x1": 2}


def test_weights_are_binomial_trials():
    df = glmm_ext.simulate("binomial", n_groups=15, group_size=6, trials=5, seed=3)
    a = model("successes + failures ~ x1 + x2", data=df, family=B).fit()
    prop = df.assign(p=df["successes"] / 5)
    b = model("p ~ x1 + x2", data=prop, family=B, weights=np.full(len(df), 5.0)).fit()
    c = model("p ~ x1 + x2", data=prop.assign(n=5), family=B, weights="n").fit()
    assert a.llf == pytest.approx(b.llf) and a.llf == pytest.approx(c.llf)
    assert np.allclose(a.params, b.params)


def test_binomial_trials_count_as_observations_of_the_random_effects():
    """(x | g) with as many random effects as rows: refused for 0/1 rows, fitted for rows of 40 trials (lme4's
    UCBAdmissions (Gender | Dept)), and the same fit as those trials written out as 0/1 rows."""
    rng = np.random.default_rng(5)
    g, x = np.repeat(np.arange(8), 2), np.tile([0.0, 1.0], 8)
    b = rng.normal(size=(8, 2)) * [0.8, 0.5]
    s = rng.binomial(40, 1 / (1 + np.exp(-(-0.3 + 0.5 * x + b[g, 0] + b[g, 1] * x))))
    rows = pd.DataFrame({"s": s, "f": 40 - s, "x": x, "g": g})
    with pytest.raises(ValueError, match="16 random effects for 16 observations"):
        model("y ~ x + (x | g)", data=rows.assign(y=(s > 20).astype(float)), family=B).fit()
    res = model("s + f ~ x + (x | g)", data=rows, family=B).fit()
    long = pd.concat([rows.loc[rows.index.repeat(rows["s"])].assign(y=1.0),
                      rows.loc[rows.index.repeat(rows["f"])].assign(y=0.0)], ignore_index=True)
    bern = model("y ~ x + (x | g)", data=long, family=B).fit()
    assert np.allclose(bern.params, res.params, atol=1e-4)
    assert np.allclose(np.asarray(bern.cov_re, float), np.asarray(res.cov_re, float), atol=1e-4)


@pytest.mark.parametrize("family,link", [("binomial", "logit"), ("gaussian", "identity"), ("gamma", "log")])
def test_inputs_are_never_modified(family, link):
    df = glmm_ext.simulate(family, link, n_groups=12, group_size=6, scale=0.3, seed=2)
    df.loc[3, "x1"] = np.nan
    frozen = df.copy(deep=True)
    offset = np.linspace(-0.1, 0.1, len(df))
    offset_copy = offset.copy()
    fam = glmm_ext.make_family(family, link)
    fam_copy = copy.deepcopy(fam)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        glmm_ext.GLMM.from_formula("y ~ x1 + x2", df, groups="g", family=fam, offset=offset).fit()
        X = df[["x1", "x2"]].to_numpy().copy()
        X_copy = X.copy()
        y = df["y"].to_numpy().copy()
        glmm_ext.GLMM(y, np.column_stack([np.ones(len(df)), X]), df["g"].to_numpy(), family=fam).fit()
    assert df.equals(frozen)
    assert np.array_equal(offset, offset_copy) and np.array_equal(X, X_copy, equal_nan=True)
    assert type(fam.link) is type(fam_copy.link)


def test_complete_separation_warns_and_is_not_called_converged():
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    df = pd.DataFrame({"y": (x > 0).astype(float), "x": x, "g": np.repeat(np.arange(20), 10)})
    with pytest.warns(PerfectSeparationWarning, match="separation"):
        res = model("y ~ x", data=df, family=B).fit()
    assert not res.converged
    assert np.all(np.isfinite(res.params))


def test_convergence_failure_warns_and_returns_results():
    df = glmm_ext.simulate("gamma", "log", n_groups=30, group_size=8, scale=0.3, seed=1)
    with pytest.warns(ConvergenceWarning, match="maxiter"):
        res = model("y ~ x1 + x2", data=df, family=G(link=L.Log())).fit(maxiter=1)
    assert not res.converged and np.isfinite(res.llf)
    assert "did not converge" in res.summary().as_text()


def test_groups_of_size_one_in_a_glmm_fit():
    df = pd.concat([glmm_ext.simulate("poisson", n_groups=100, group_size=1, seed=1),
                    glmm_ext.simulate("poisson", n_groups=20, group_size=8, seed=2).assign(g=lambda d: d.g + 500)])
    res = model("y ~ x1 + x2", data=df).fit()
    assert res.converged and res.n_groups == 120


def test_very_large_counts():
    df = glmm_ext.simulate("poisson", n_groups=30, group_size=10, beta=(12.0, 0.3, -0.2), seed=1)
    assert df["y"].max() > 1e5
    res = model("y ~ x1 + x2", data=df).fit()
    assert res.converged
    truth = np.array([12.0, 0.3, -0.2])
    assert np.array_equal(np.sign(res.params), np.sign(truth))
    assert np.all(np.abs(res.params - truth) < 4 * res.bse)  # bse of the slopes ~1e-4


def test_offset_column_of_words_is_an_error():
    with pytest.raises(ValueError, match="'label'.*no numbers"):
        model(data=DF.assign(label="abc"), offset="label")


def test_nagq0_is_the_joint_pirls_approximation():
    """nagq=0: beta maximises the penalised log-likelihood at the modes; its llf is below Laplace's maximum."""
    df = glmm_ext.simulate("binomial", n_groups=40, group_size=10, sigma_u=0.8, seed=6)
    m = model("y ~ x1 + x2", data=df, family=B)
    approx, exact = m.fit(nagq=0), m.fit(nagq=1)
    assert approx.method == "PIRLS (nagq=0)" and "nagq=0" in approx.llf_label
    assert approx.llf <= exact.llf + 1e-8
    assert np.allclose(approx.params, exact.params, atol=0.1)
    assert approx.var_re == pytest.approx(exact.var_re, rel=0.2)
    # stationarity of sum_i log f(y_i | x_i'beta + u_g) - sum_j u_j^2 / (2 sigma^2) in beta at the modes
    d = m.design
    eta = d.X @ approx.params.to_numpy() + approx.blups[d.codes]
    mu = 1 / (1 + np.exp(-eta))
    score = d.X.T @ (d.y - mu)
    assert np.max(np.abs(score)) < 1e-4 * len(df)


def _near_zero_identity_counts(seed):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(30), 12)
    x = rng.uniform(0, 2, g.size)
    mu = np.maximum(0.05, 1.0 + 1.5 * x + rng.normal(0, 0.8, 30)[g])
    return pd.DataFrame({"y": rng.poisson(mu), "x": x, "g": g})


def test_identity_link_fit_stays_inside_the_support():
    df = _near_zero_identity_counts(0)
    fam = P(link=L.Identity())
    res = model("y ~ x", data=df, family=fam).fit()
    assert res.converged
    eta = res.model.design.X @ res.params.to_numpy() + res.blups[res.model.design.codes]
    assert eta.min() > 0
    # the reported llf is the Laplace value at the estimates, evaluated afresh
    assert res.model.loglike(res.params, res.var_re) == pytest.approx(res.llf, abs=1e-8)


def test_mode_on_the_edge_of_the_support_is_reported_not_raised():
    """Counts of 0 where the identity-link mean is near 0 pin modes to mu = 0: no stationary mode there."""
    df = _near_zero_identity_counts(2)
    with pytest.warns(ConvergenceWarning):
        res = model("y ~ x", data=df, family=P(link=L.Identity())).fit()
    assert not res.converged and np.isfinite(res.llf) and np.all(np.isfinite(res.params))


def test_singleton_groups_with_a_dispersion_warn_and_fit():
    df = glmm_ext.simulate("gamma", "log", n_groups=300, group_size=1, sigma_u=0.5, scale=0.2, seed=4)
    with pytest.warns(UserWarning, match="single row"):
        res = model("y ~ x1 + x2", data=df, family=G(link=L.Log())).fit()
    assert np.isfinite(res.llf) and np.all(np.isfinite(res.params))


# ---------------------------------------------------------------- data of every kind (Gaussian, 12 groups)
HDF = glmm_ext.simulate("gaussian", n_groups=12, group_size=5, seed=1)
M = glmm_ext.GLMM.from_formula


def gfit(formula="y ~ x1", data=HDF, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return M(formula, data, groups=kw.pop("groups", "g"), **kw).fit()


def with_object_x1(values):
    df = HDF.copy()
    df["x1"] = df["x1"].astype(object)
    for row, value in values.items():
        df.loc[row, "x1"] = value
    return df


BAD_DATA = [
    ("datetime response", lambda: M("y ~ x1", HDF.assign(y=pd.date_range("2020", periods=60)), groups="g"),
     ["'y'", "dates"]),
    ("timedelta response", lambda: M("y ~ x1", HDF.assign(y=pd.to_timedelta(np.arange(60), "D")), groups="g"),
     ["'y'", "timedelta"]),
    ("complex response", lambda: M("y ~ x1", HDF.assign(y=HDF.y + 1j), groups="g"), ["'y'", "complex"]),
    ("object response", lambda: M("y ~ x1", HDF.assign(y=[object()] * 60), groups="g"), ["'y'", "no numbers"]),
    ("complex predictor", lambda: M("y ~ x1", HDF.assign(x1=HDF.x1 + 1j), groups="g"), ["'x1'", "complex"]),
    ("duplicated column", lambda: M("y ~ x1", pd.concat([HDF, HDF[["x1"]]], axis=1), groups="g"),
     ["more than one column", "'x1'"]),
    ("duplicated slope column", lambda: M("y ~ 1 + (x1 | g)", pd.concat([HDF, HDF[["x1"]]], axis=1)),
     ["more than one column", "'x1'"]),
    ("duplicated grouping column", lambda: M("y ~ x1 + (1 + x1 | g) + (1 | h)",
                                             pd.concat([HDF.assign(h=HDF.g), HDF[["g"]]], axis=1)),
     ["more than one column", "'g'"]),
    ("response among predictors", lambda: M("y ~ y", HDF, groups="g"), ["'y'", "among the predictors"]),
    ("patsy IndexError", lambda: M("y ~ C(x1 > 0, 0)", HDF, groups="g"), ["C(x1 > 0, 0)", "IndexError"]),
    ("3-D exog", lambda: glmm_ext.GLMM(HDF.y.to_numpy(), np.ones((60, 2, 2)), HDF.g.to_numpy()), ["exog", "3 dim"]),
    ("reml not a bool", lambda: M("y ~ x1", HDF, groups="g").fit(reml="no"), ["reml", "'no'"]),
    ("groups Series from other rows", lambda: M("y ~ x1", HDF, groups=pd.Series(HDF.g.to_numpy(), index=HDF.index + 100)),
     ["groups", "index"]),
    ("offset Series from other rows", lambda: M("y ~ x1", HDF, groups="g", offset=pd.Series(0.0, index=range(5))),
     ["offset", "index"]),
    ("missing option", lambda: M("y ~ x1", HDF, groups="g", missing="skip"), ["missing", "'skip'"]),
    ("formula mode", lambda: M("y ~ x1", HDF, groups="g", formula_mode="unsafe"), ["formula_mode", "'unsafe'"]),
    ("groups column 7 absent", lambda: M("y ~ x1", HDF, groups=7), ["groups column 7", "not in the data"]),
    ("groups a number", lambda: M("y ~ x1", HDF, groups=1.5), ["groups column 1.5", "not in the data"]),
    ("no rows", lambda: M("y ~ x1", HDF.iloc[:0], groups="g"), ["no rows"]),
    ("eval_env of the wrong kind", lambda: M("y ~ x1", HDF, groups="g", eval_env="x"), ["eval_env", "'x'"]),
    ("unknown name in python mode", lambda: M("y ~ foo(x1)", HDF, groups="g"), ["foo", "not defined"]),
    ("predict without a column", lambda: M("y ~ x1", HDF, groups="g").fit().predict(HDF[["g"]]),
     ["new data", "x1"]),
    ("predict groups of the wrong length", lambda: M("y ~ x1", HDF, groups="g").fit().predict(HDF.head(3), groups=[1]),
     ["groups has 1 values", "3 rows"]),
]


@pytest.mark.parametrize("case", BAD_DATA, ids=[c[0] for c in BAD_DATA])
def test_bad_input_names_the_problem(case):
    _, call, fragments = case
    with pytest.raises(ValueError) as info:
        call()
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


def test_series_are_aligned_on_the_data_index():
    shuffled = HDF["g"].sample(frac=1.0, random_state=2)  # same labels, permuted index
    assert gfit(groups=shuffled).llf == pytest.approx(gfit().llf, abs=1e-10)
    offset = pd.Series(np.linspace(0, 1, 60), index=HDF.index).sample(frac=1.0, random_state=3)
    a = gfit(offset=offset)
    b = gfit(offset=offset.sort_index().to_numpy())
    assert a.llf == pytest.approx(b.llf, abs=1e-10)


def test_integer_column_name_and_tidy_labels():
    df = HDF.rename(columns={"g": 7})
    df[7] = df[7].astype(float)
    df.loc[4, 7] = np.nan  # an int column with a missing value becomes float in pandas
    res = gfit(data=df, groups=7)
    assert res.n_dropped == 1 and res.model.group_name == "7"
    assert res.model.group_labels.dtype.kind == "i"


def test_mostly_numbers_is_numeric_with_rows_dropped():
    res = gfit(data=with_object_x1({2: "n/a", 9: "?"}))
    assert res.nobs == 58 and res.model.design.drop_reasons == {"x1": 2}
    assert list(res.params.index) == ["Intercept", "x1"]


def test_infinite_group_label_is_missing():
    df = HDF.assign(g=HDF.g.astype(float))
    df.loc[[0, 1], "g"] = [np.inf, -np.inf]
    res = gfit(data=df)
    assert res.n_dropped == 2 and res.model.design.drop_reasons == {"g": 2}


def test_unused_categorical_levels_are_dropped():
    df = HDF.assign(t=pd.Categorical(np.where(HDF.x1 > 0, "a", "b"), categories=["a", "b", "never"]))
    res = gfit("y ~ C(t)", data=df)
    assert list(res.params.index) == ["Intercept", "C(t)[T.b]"]


def test_binomial_warnings():
    df = glmm_ext.simulate("binomial", n_groups=10, group_size=6, trials=5, seed=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        M("successes + failures ~ x1", df.assign(successes=df.successes + 0.5), groups="g",
          family=sm.families.Binomial())
    assert any("non-integer numbers of successes" in str(w.message) for w in caught)
    single = df.assign(g=np.arange(len(df)), y=(df.successes > 2).astype(int))
    with pytest.warns(UserWarning, match="weakly"):
        M("y ~ x1", single, groups="g", family=sm.families.Binomial())


def test_formula_is_evaluated_once_like_statsmodels():
    calls = {"glmm": 0, "sm": 0}

    def counted(x, key):
        calls[key] += 1
        return x

    M("y ~ I(counted(x1, 'glmm'))", HDF, groups="g")
    smf.ols("y ~ I(counted(x1, 'sm'))", HDF)
    assert calls["glmm"] == calls["sm"]


def test_values_the_formula_makes_non_finite_are_dropped_and_reported():
    df = HDF.assign(x1=HDF.x1.abs() + 0.1)
    df.loc[3, "x1"] = 1e200  # squares to inf
    res = gfit("y ~ I(x1 ** 2)", data=df, formula_mode="safe")
    assert res.n_dropped == 1 and res.model.design.drop_reasons == {"I(x1 ** 2)": 1}
    with pytest.raises(ValueError, match="I\\(x1 \\*\\* 2\\)"):
        M("y ~ I(x1 ** 2)", df, groups="g", missing="raise")
    df.loc[[5, 6], "x1"] = -1.0  # log of a negative number: NaN, dropped by the formula engine
    res = gfit("y ~ np.log(x1)", data=df)
    assert res.n_dropped == 2 and res.model.design.drop_reasons == {"NaN from evaluating the formula": 2}
