"""Count families beyond statsmodels': NB1 and the zero-truncated (hurdle) families, glmmTMB's names.

Use them as ``family=`` of `glmm_ext.GLMM.from_formula`; all have the log link:

======================================  ==================================  ===========================
glmm_ext                                glmmTMB                             variance of the count part
======================================  ==================================  ===========================
``sm.families.Poisson()``               ``poisson``                         mu
``sm.families.NegativeBinomial()``      ``nbinom2``                         mu + mu^2 / theta
``NegativeBinomial1()``                 ``nbinom1``                         mu (1 + phi)
``TruncatedPoisson()``                  ``truncated_poisson``               (zero-truncated Poisson)
``TruncatedNegativeBinomial()``         ``truncated_nbinom2``               (zero-truncated NB2)
``TruncatedNegativeBinomial("nb1")``    ``truncated_nbinom1``               (zero-truncated NB1)
======================================  ==================================  ===========================

A truncated family with ``zi_formula`` is a hurdle model: P(y = 0) = pz (the zero part, logit link),
P(y = k > 0) = (1 - pz) f(k) / (1 - f(0)).  The negative binomial's dispersion (theta for NB2, phi for
NB1) is estimated; the ``alpha`` of the statsmodels family object is only its start-free placeholder.
"""
import statsmodels.api as sm
from statsmodels.genmod.families import links as sm_links

__all__ = ["NegativeBinomial1", "TruncatedPoisson", "TruncatedNegativeBinomial", "family_code"]


def _check_log_link(link, name):
    if link is None:
        return sm_links.Log()
    if not isinstance(link, sm_links.Log):
        raise ValueError(f"{name} supports only the log link (got {type(link).__name__})")
    return link


class NegativeBinomial1(sm.families.NegativeBinomial):
    """NB1 ("linear" negative binomial, glmmTMB's ``nbinom1``): Var(y) = mu (1 + phi), phi > 0 estimated.

    Parameters
    ----------
    link : statsmodels link, optional
        Only ``Log`` (the default).
    """

    nb_type = "nb1"

    def __init__(self, link=None):
        super().__init__(link=_check_log_link(link, "NegativeBinomial1"), alpha=1.0)

    def __repr__(self):
        return "NegativeBinomial1(link=Log)"


class TruncatedPoisson(sm.families.Poisson):
    """Zero-truncated Poisson, the count part of a Poisson hurdle model (glmmTMB's ``truncated_poisson``).

    f(k | k > 0) = mu^k e^-mu / (k! (1 - e^-mu)); ``zi_formula`` gives the zero part.
    """

    truncated = True
    nb_type = None

    def __init__(self, link=None):
        super().__init__(link=_check_log_link(link, "TruncatedPoisson"))

    def __repr__(self):
        return "TruncatedPoisson(link=Log)"


class TruncatedNegativeBinomial(sm.families.NegativeBinomial):
    """Zero-truncated negative binomial, the count part of an NB hurdle model.

    Parameters
    ----------
    variant : {"nb2", "nb1"}
        "nb2" (default, glmmTMB's ``truncated_nbinom2``, Var = mu + mu^2 / theta) or "nb1"
        (``truncated_nbinom1``, Var = mu (1 + phi)), both before truncation.
    link : statsmodels link, optional
        Only ``Log`` (the default).
    """

    truncated = True

    def __init__(self, variant="nb2", link=None):
        if variant not in ("nb2", "nb1"):
            raise ValueError(f"variant must be 'nb2' or 'nb1' (got {variant!r})")
        self.nb_type = variant
        super().__init__(link=_check_log_link(link, "TruncatedNegativeBinomial"), alpha=1.0)

    def __repr__(self):
        return f"TruncatedNegativeBinomial(variant={self.nb_type!r}, link=Log)"


def family_code(family):
    """(engine family name, truncated) for a statsmodels / glmm_ext family object; ValueError otherwise."""
    link = getattr(family, "link", None)
    name = type(family).__name__
    truncated = bool(getattr(family, "truncated", False))
    if isinstance(family, sm.families.NegativeBinomial):
        code = getattr(family, "nb_type", None) or "nb2"
        _check_log_link(link, name)
        return code, truncated
    if isinstance(family, sm.families.Poisson):
        _check_log_link(link, name)
        return "poisson", truncated
    if isinstance(family, sm.families.Gaussian):
        if not isinstance(link, sm_links.Identity):
            raise ValueError("zi_formula / disp_formula models support Gaussian with the identity link only")
        return "gaussian", False
    if isinstance(family, sm.families.Gamma):
        _check_log_link(link, "Gamma (with disp_formula)")
        return "gamma", False
    raise ValueError(f"family {name} is not supported with zi_formula / disp_formula; use Poisson, "
                     "NegativeBinomial, glmm_ext.families.NegativeBinomial1, TruncatedPoisson, "
                     "TruncatedNegativeBinomial, or (disp_formula only) Gaussian and Gamma")


def is_extended(family):
    """True for the families only the zero-inflation / dispersion engine fits (NB1, truncated)."""
    return isinstance(family, (NegativeBinomial1, TruncatedPoisson, TruncatedNegativeBinomial))
