"""glmm_ext: generalized linear mixed models, the statsmodels way.

Random intercepts and random slopes; Gaussian + identity by exact REML/ML; Binomial, Poisson,
negative binomial, Gamma and Gaussian-log by maximum likelihood with the Laplace approximation or
adaptive Gauss-Hermite quadrature.
"""
from .inference._comparison import anova
from .engine._families import ALLOWED_LINKS, make_family
from .scale._many import fit_many
from .engine._optsummary import OptSummary
from .compat import BinomialMixedGLM, PoissonMixedGLM, mixedlm
from .datasets import (load_cbpp, load_dyestuff, load_grouseticks, load_schools, load_sleepstudy,
                       simulate)
from .model import GLMM, LaplaceApproximationWarning, SingularFitWarning, glmm
from .results import GLMMResults, GLMMResultsWrapper
from . import families
from .zi_model import ZeroInflatedGLMM, ZIBoundaryWarning

__version__ = "0.1.0"

__all__ = ["GLMM", "glmm", "mixedlm", "BinomialMixedGLM", "PoissonMixedGLM", "GLMMResults", "GLMMResultsWrapper",
           "OptSummary", "SingularFitWarning", "LaplaceApproximationWarning", "fit_many", "anova", "ALLOWED_LINKS",
           "make_family", "load_schools", "load_sleepstudy", "load_cbpp", "load_dyestuff", "load_grouseticks",
           "simulate", "families", "ZeroInflatedGLMM",
           "ZIBoundaryWarning",
           "__version__"]
