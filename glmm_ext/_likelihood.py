"""`GLMM.loglike` / `score` / `hessian` of a model other than one random intercept (random slopes, several
terms): the ML (Gaussian identity) or Laplace log-likelihood over the vector ``res.params_vector`` holds --
beta, per term its SDs and correlations, then log scale / log alpha where the family has one -- evaluated
by the engine's per-term likelihood (`inference._intervals_terms.TermsDeviance`: the blocked-Cholesky
Gaussian marginal, or `engine._mixed.loglik_function`'s Laplace value), with the model's var_weights and
freq_weights by the engine's rules (`engine._weights`): at an ML fit's ``params_vector`` its value is the fit's llf.

The terms' layout comes from the design alone (no fit needed): `design_terms` gives the model's
`TermView`s with zero estimates.
"""
from types import SimpleNamespace

import numpy as np

from ._term_view import _one_factor_blocks, term_views
from ._validation import is_positive_number


def one_random_intercept(design) -> bool:
    """True for one random intercept (one grouping factor, no exog_re): the model's closed-form (Gaussian)
    and random-intercept Laplace / AGQ likelihood with the parameter vector (beta, sigma_u[, log scale])."""
    return getattr(design, "terms", None) is None and design.Z is None


def design_terms(model):
    """A stand-in results object holding the model's terms (`TermView`s with zero estimates): what the
    per-term likelihood and the names of its vector read."""
    design = model.design
    if design.terms is not None:
        sizes = [(len(levels), len(z)) for levels, z in zip(design.terms.levels, design.terms.z_names)]
    else:
        sizes = [(len(model.group_labels), len(cols)) for cols in _one_factor_blocks(design)[0]]
    record = SimpleNamespace(cov_re=[np.zeros((q, q)) for _, q in sizes],
                             modes=[np.zeros((n, q)) for n, q in sizes], mode_sd=[np.zeros((n, q)) for n, q in sizes],
                             singular=[False] * len(sizes))
    shell = SimpleNamespace(_fit=record, model=model, group_name=model.group_name)
    shell._terms = term_views(shell)
    return shell


def dispersion_argument(dist, scale, alpha):
    """The engine's dispersion from `GLMM.loglike`'s ``scale`` / ``alpha``: NB2 takes alpha (its scale is 1, as
    statsmodels' NB GLM: a scale other than 1 is refused rather than read as alpha); the others take scale."""
    if dist.name == "negativebinomial":
        if scale is not None and scale != 1.0:
            raise ValueError(f"the negative binomial's scale is 1 (as statsmodels' NB GLM; got scale={scale!r}): "
                             "give its dispersion as alpha=")
        if not is_positive_number(alpha):  # None, text, arrays too: this message, not float()'s
            raise ValueError(f"loglike needs alpha > 0 for the negative binomial (results.alpha; got {alpha!r})")
        return float(alpha)
    if alpha is not None:
        raise ValueError(f"alpha is the negative binomial's dispersion; the {dist.name} family has none")
    if scale is None and dist.has_dispersion:
        raise ValueError("loglike needs scale for Gaussian and Gamma families")
    return scale


def vector_names(model) -> list:
    """Names of the vector: `res.params_vector`'s (beta, "<term> SD <z>", "<term> Cor <a>,<b>", log scale)."""
    from .inference._intervals_terms import row_names

    names = row_names(design_terms(model))
    if not model.dist.has_dispersion:
        return names
    return names[:-1] + ["log alpha" if model.dist.name == "negativebinomial" else "log scale"]


def negative_loglike(model):
    """psi -> -log-likelihood (ML for Gaussian identity, else Laplace) at psi in `vector_names`' layout."""
    from .inference._intervals_terms import TermsDeviance

    return TermsDeviance(design_terms(model)).ml
