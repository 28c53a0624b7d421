"""Drop-in entry points with statsmodels' signatures: MixedLM.from_formula and *BayesMixedGLM.from_formula.

Their results carry the names of the classes they replace with those classes' meaning (see
`glmm_ext._compat_results` and docs/migration.md for every difference).
"""
import re
import warnings

import statsmodels.genmod.families as sm_families  # not statsmodels.api: it imports all of statsmodels

from ._compat_results import BayesMixedGLMResultsWrapper, MixedLMResultsWrapper
from .model import GLMM


class MixedLMModel(GLMM):
    """The model ``glmm_ext.mixedlm`` makes: a Gaussian GLMM whose results read as MixedLM's.

    ``fit()`` returns a `MixedLMResultsWrapper`: ``params`` / ``bse`` include MixedLM's variance
    parameters ("Group Var", cov_re / scale), ``bse_re`` is MixedLM's and ``predict()`` without data
    is the fixed part, as MixedLM's.
    """

    def fit(self, *args, **kwargs):
        return MixedLMResultsWrapper(super().fit(*args, **kwargs)._results)

    fit.__doc__ = GLMM.fit.__doc__


def mixedlm(formula, data, re_formula=None, vc_formula=None, subset=None, use_sparse=False, missing="drop",
            *args, groups=None, **kwargs):
    """``statsmodels.formula.api.mixedlm``: ``mixedlm("y ~ x", df, groups="g", re_formula="~x")``.

    ``re_formula`` gives correlated random effects per group as MixedLM's (``"~x"``: intercept and
    slope, ``"~0 + x"``: slope only), fitted as the formula term ``(x | g)``; ``groups`` is then a
    column name.  Variance components (``vc_formula``) raise ValueError.  The results name and
    number things as MixedLM's (``params["Group Var"]``, ``bse_re``, ``predict()``, ``df_resid``), see
    `MixedLMResultsWrapper`.
    """
    if groups is None and args:
        groups = args[0]
    if vc_formula:  # variance components inside groups: nested terms (1 | groups:class)
        kwargs["vc_formula"] = vc_formula
    return MixedLMModel.from_formula(formula, data, groups=groups, family=sm_families.Gaussian(), subset=subset,
                             missing=missing, re_formula=re_formula, **kwargs)


_INTERCEPT_VC = re.compile(r"^\s*0\s*\+\s*C\(\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\)\s*$")


def _intercept_group(vc_formulas, family_name):
    if not isinstance(vc_formulas, dict) or len(vc_formulas) != 1:
        raise ValueError(f"{family_name}MixedGLM takes exactly one variance component of the form "
                         '{"g": "0 + C(g)"} (a random intercept per group); for other random effects use '
                         "GLMM.from_formula with lme4-style terms such as (1 + x | g)")
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
                     "Gauss-Hermite quadrature), not by {what}; running fit() instead. fe_mean, fe_sd, vcp_mean, "
                     "vcp_sd, vc_mean and vc_sd are the ML estimates and standard errors, not posterior moments.")


class _BayesCompatible(GLMM):
    """A GLMM made by the ``*BayesMixedGLM.from_formula`` signature; fit_vb()/fit_map() run fit() with a warning."""

    family_class = None
    _vc_key = _vc_column = None  # set by from_formula

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
        model = GLMM.from_formula.__func__(cls, formula, data, groups=group, family=family, **kwargs)
        model._vc_key, model._vc_column = next(iter(vc_formulas)), group  # BayesMixedGLM's vcp_names, vc_names
        return model

    def fit(self, *args, **kwargs):
        """`GLMM.fit`; the results also answer BayesMixedGLMResults' names (`BayesMixedGLMResultsWrapper`)."""
        return BayesMixedGLMResultsWrapper(super().fit(*args, **kwargs)._results)

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
