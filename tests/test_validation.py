"""Every bad input ends in a clear error naming the problem, before any optimisation (issue: reliability)."""
import copy
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
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
