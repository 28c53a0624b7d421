"""Drop-in entry points with statsmodels' signatures: MixedLM.from_formula and *BayesMixedGLM.from_formula."""
import re
import warnings

import statsmodels.genmod.families as sm_families  # not statsmodels.api: it imports all of statsmodels

from .model import GLMM


def mixedlm(formula, data, re_formula=None, vc_formula=None, subset=None, use_sparse=False, missing="drop",
            *args, groups=None, **kwargs):
    """``statsmodels.formula.api.mixedlm``: ``mixedlm("y ~ x", df, groups="g", re_formula="~x")``.

    ``re_formula`` gives correlated random effects per group as MixedLM's (``"~x"``: intercept and
    slope, ``"~0 + x"``: slope only), fitted as the formula term ``(x | g)``; ``groups`` is then a
    column name.  Variance components (``vc_formula``) raise ValueError.
    """
    if groups is None and args:
        groups = args[0]
    if vc_formula:  # variance components inside groups: nested terms (1 | groups:class)
        kwargs["vc_formula"] = vc_formula
    return GLMM.from_formula(formula, data, groups=groups, family=sm_families.Gaussian(), subset=subset,
                             missing=missing, re_formula=re_formula, **kwargs)


_INTERCEPT_VC = re.compile(r"^\s*0\s*\+\s*C\(\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\)\s*$")


def _intercept_group(vc_formulas, family_name):
    if not isinstance(vc_formulas, dict) or len(vc_formulas) != 1:
        raise ValueError(f"{family_name}MixedGLM takes exactly one variance component of the form "
                         '{"g": "0 + C(g)"} (one random intercept per group)')
    (key, text), = vc_formulas.items()
    match = _INTERCEPT_VC.match(str(text))
    if not match:
        raise ValueError(f"variance component {key!r}: {text!r} is not a random intercept; use '0 + C(column)'")
    return match.group(1)


def _crossed_terms(vc_formulas):
    """BayesMixedGLM's crossed call {"a": "0 + C(a)", "b": "0 + C(b)"} as the bar terms (1 | a) + (1 | b)."""
    terms = []
    for key, text in vc_formulas.items():
        match = _INTERCEPT_VC.match(str(text))
        if not match:
            raise ValueError(f"variance component {key!r}: {text!r} is not a random intercept; use '0 + C(column)'")
        terms.append(f"(1 | {match.group(1)})")
    return " + ".join(terms)


BAYES_FIT_MESSAGE = ("{name}.{method}(): glmm_ext fits by maximum likelihood (Laplace; fit(nagq=K) for adaptive "
                     "Gauss-Hermite quadrature), not by {what}; running fit() instead. Its params, bse and cov_re "
                     "take the place of fe_mean, fe_sd and vcp_mean.")


class _BayesCompatible(GLMM):
    """A GLMM made by the ``*BayesMixedGLM.from_formula`` signature; fit_vb()/fit_map() run fit() with a warning."""

    family_class = None

    def __init__(self, endog, exog, exog_vc=None, ident=None, *args, **kwargs):
        if "_prepared" not in kwargs:
            raise ValueError(f"{type(self).__name__} is built with {type(self).__name__}.from_formula(formula, "
                             "{'g': '0 + C(g)'}, data), or use GLMM(endog, exog, groups, family=...) with arrays")
        kwargs.setdefault("family", self.family_class())
        super().__init__(endog, exog, **kwargs)

    @classmethod
    def from_formula(cls, formula, vc_formulas, data, vcp_p=1, fe_p=2, link=None, **kwargs):
        """``BinomialBayesMixedGLM.from_formula(formula, vc_formulas, data)`` with one random intercept.

        Fitted by maximum likelihood (Laplace; ``fit(nagq=K)`` for quadrature), not variationally;
        ``vcp_p`` and ``fe_p`` (prior scales) have no role and are ignored.
        """
        if isinstance(vc_formulas, dict) and len(vc_formulas) > 1:  # crossed intercepts (1 | a) + (1 | b)
            formula = f"{formula} + {_crossed_terms(vc_formulas)}"
            family = cls.family_class(link=link) if link is not None else cls.family_class()
            return GLMM.from_formula.__func__(cls, formula, data, family=family, **kwargs)
        group = _intercept_group(vc_formulas, cls.__name__.replace("MixedGLM", ""))
        family = cls.family_class(link=link) if link is not None else cls.family_class()
        return GLMM.from_formula.__func__(cls, formula, data, groups=group, family=family, **kwargs)

    def fit_vb(self, *args, **kwargs):
        """Runs `fit` (maximum likelihood) with a warning: glmm_ext has no variational Bayes fit."""
        warnings.warn(BAYES_FIT_MESSAGE.format(name=type(self).__name__, method="fit_vb",
                                               what="variational Bayes"), UserWarning, stacklevel=2)
        return self.fit()

    def fit_map(self, *args, **kwargs):
        """Runs `fit` (maximum likelihood) with a warning: glmm_ext has no posterior-mode (MAP) fit."""
        warnings.warn(BAYES_FIT_MESSAGE.format(name=type(self).__name__, method="fit_map",
                                               what="the posterior mode (MAP)"), UserWarning, stacklevel=2)
        return self.fit()


class BinomialMixedGLM(_BayesCompatible):
    """Drop-in for ``BinomialBayesMixedGLM`` with one random intercept (maximum likelihood)."""

    family_class = sm_families.Binomial


class PoissonMixedGLM(_BayesCompatible):
    """Drop-in for ``PoissonBayesMixedGLM`` with one random intercept (maximum likelihood)."""

    family_class = sm_families.Poisson
