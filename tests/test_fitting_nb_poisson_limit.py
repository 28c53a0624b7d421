"""NB2 fits of data without overdispersion: the likelihood's supremum is the Poisson limit (alpha -> 0, where
glmmTMB stops near theta = 1e8 and glmer.nb near 1e5).  The NB2 terms must stay exact there (their lgamma and
digamma differences cancel to O(1/k^2) in k = 1/alpha), and the fit must converge to the Poisson GLMM's optimum
with its SEs (tests/data/stress: lme4 / glmmTMB references of the several-term case in test_stress_multiterm.py)."""
import warnings
from decimal import Decimal, getcontext

import numpy as np
import pytest
import statsmodels.api as sm

import glmm_ext
import stress_multiterm as st
from glmm_ext.engine._families import _nb_dk, lgamma_ratio


def _exact(y, k, mu):
    """(log Gamma(y+k) - log Gamma(k), d log f / dk) for an integer y with 60 decimal digits: sum_j log(k + j) and
    sum_j 1 / (k + j) - log(1 + mu/k) + (mu - y) / (k + mu)."""
    getcontext().prec = 60
    k, mu = Decimal(repr(float(k))), Decimal(repr(float(mu)))
    lg = sum((k + j).ln() for j in range(int(y)))
    dk = sum(1 / (k + j) for j in range(int(y))) - (1 + mu / k).ln() + (mu - y) / (k + mu)
    return float(lg), float(dk)


@pytest.mark.parametrize("y, k, mu", [(0, 2e4, 2.0), (5, 1e4, 3.0), (5, 1e8, 4.0), (37, 3e6, 30.0), (3, 1e10, 1.0),
                                      (120, 1e5, 90.0), (4, 50.0, 3.0)])
def test_nb2_terms_exact_for_large_k(y, k, mu):
    lg, dk = _exact(y, k, mu)
    assert lgamma_ratio(y, k) == pytest.approx(lg, rel=1e-14, abs=1e-12)
    if k <= 1e8:  # (past the fit's floor alpha = 1e-8 only the gradient row below matters)
        assert _nb_dk(y, k, mu) == pytest.approx(dk, rel=1e-6)
    assert -k * _nb_dk(y, k, mu) == pytest.approx(-k * dk, rel=1e-6, abs=1e-14)  # the log-alpha gradient's row


@pytest.mark.parametrize("formula", ["y ~ x + (1|a)", "y ~ x + (1|a) + (1|a:b)", "y ~ x + (x|a)"])
def test_underdispersed_counts_give_the_poisson_limit(formula):
    """Binomial counts (less spread than Poisson) fitted as NB2: converged, theta >= 1e4, the Poisson GLMM's llf
    (to 1e-5; the NB2 value approaches it from below), fixed effects and SEs."""
    data = st.load("nb2_slope_nested")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nb = glmm_ext.GLMM.from_formula(formula, data, family=sm.families.NegativeBinomial()).fit()
        po = glmm_ext.GLMM.from_formula(formula, data, family=sm.families.Poisson()).fit()
    assert nb.converged and po.converged
    assert nb.theta >= 1e4
    assert po.llf - 1e-5 <= nb.llf <= po.llf + 1e-7
    assert np.allclose(nb.params, po.params, rtol=1e-4, atol=1e-6)
    assert np.allclose(nb.bse, po.bse, rtol=1e-3)
