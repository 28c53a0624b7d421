"""Drop-in entry points with statsmodels' call signatures."""
import warnings

import numpy as np
import pytest
import statsmodels.formula.api as smf
from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM, PoissonBayesMixedGLM

import glmm_ext


def test_mixedlm_call_matches_statsmodels():
    df = glmm_ext.simulate("gaussian", n_groups=25, group_size=8, seed=2)
    mine = glmm_ext.mixedlm("y ~ x1 + x2", df, groups=df["g"]).fit(reml=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = smf.mixedlm("y ~ x1 + x2", df, groups=df["g"]).fit(reml=True)
    assert mine.llf == pytest.approx(theirs.llf, abs=1e-5)
    assert np.allclose(mine.fe_params, theirs.fe_params, rtol=1e-5)
    assert float(mine.cov_re.iloc[0, 0]) == pytest.approx(float(theirs.cov_re.iloc[0, 0]), rel=1e-4)
    assert mine.scale == pytest.approx(theirs.scale, rel=1e-4)
    assert set(mine.random_effects) == set(theirs.random_effects)


def test_mixedlm_rejects_what_it_cannot_express():
    df = glmm_ext.simulate("gaussian", n_groups=5, group_size=4, seed=2)
    with pytest.raises(ValueError, match="groups has 3 values"):
        glmm_ext.mixedlm("y ~ x1", df, groups=df["g"].to_numpy()[:3], re_formula="~x1")
    with pytest.raises(ValueError, match="vc_formula 'a'"):  # variance components: '0 + C(col)' or numeric
        glmm_ext.mixedlm("y ~ x1", df, groups="g", vc_formula={"a": "x1 + C(x2)"})


@pytest.mark.parametrize("cls,bayes,family", [(glmm_ext.BinomialMixedGLM, BinomialBayesMixedGLM, "binomial"),
                                              (glmm_ext.PoissonMixedGLM, PoissonBayesMixedGLM, "poisson")])
def test_bayes_call_is_accepted_and_reaches_a_higher_likelihood(cls, bayes, family):
    df = glmm_ext.simulate(family, n_groups=40, group_size=15, sigma_u=0.8, seed=3)
    vc = {"g": "0 + C(g)"}
    res = cls.from_formula("y ~ x1 + x2", vc, df).fit()
    assert res.model.dist.name == family and res.model.group_name == "g"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vb = bayes.from_formula("y ~ x1 + x2", vc, df).fit_vb()
    # the variational fit lands near, but below, the maximum of the Laplace likelihood
    vb_sd = float(np.exp(vb.vcp_mean[0]))
    assert res.model.loglike(vb.fe_mean, vb_sd**2) <= res.llf + 1e-8
    assert np.allclose(res.params, vb.fe_mean, atol=0.1)


def test_bayes_call_rejects_other_variance_structures():
    df = glmm_ext.simulate("binomial", n_groups=5, group_size=4, seed=2)
    with pytest.raises(ValueError, match="random intercept"):
        glmm_ext.BinomialMixedGLM.from_formula("y ~ x1", {"g": "0 + x1"}, df)
    crossed = glmm_ext.BinomialMixedGLM.from_formula("y ~ x1", {"g": "0 + C(g)", "h": "0 + C(x2)"}, df)
    assert [t.group for t in crossed.design.terms.terms] == ["g", "x2"]  # BayesMixedGLM's crossed call
    with pytest.raises(ValueError, match="random intercept"):
        glmm_ext.BinomialMixedGLM.from_formula("y ~ x1", {"g": "0 + C(g)", "h": "0 + x1"}, df)
