"""Fitting several random-effect terms: the Design's structure handed to the multi-term engine, its
record (`engine._mixed.MixedFit`) brought to the shape the results class reads.

The engine (``glmm_ext.engine._mixed.fit_mixed`` on ``engine._structure.ReStructure``) is the numerical
core; this module only adapts.
"""
from dataclasses import dataclass

import numpy as np

from .engine._optsummary import OptSummary
from .engine._structure import ReStructure, ReTerm

SEVERAL_TERMS = "several random-effect terms"


def make_structure(made):
    """ReStructure from (group, codes, n_levels, Z, z_names, correlated) per term, in the user's order."""
    terms = tuple(ReTerm(group=g, codes=np.ascontiguousarray(c, dtype=np.int64), n_levels=int(L),
                         Z=np.ascontiguousarray(Z, dtype=float), z_names=tuple(zn), correlated=bool(corr))
                  for g, c, L, Z, zn, corr in made)
    return ReStructure(terms=terms)


def engine_fit():
    """The multi-term fit driver ``fit_mixed`` (one seam, where the tests put a dense reference fit)."""
    from .engine._mixed import fit_mixed

    return fit_mixed


@dataclass
class MultiFitOutput:
    """The fields of `engine._fitting.FitOutput` that the results class reads, plus the engine's record."""

    beta: np.ndarray
    cov_beta: np.ndarray
    var_re: float
    scale: float
    llf: float
    blups: np.ndarray
    blup_sd: np.ndarray
    converged: bool
    singular: bool
    method: str
    opt: OptSummary
    n_params: int
    mixed: object  # engine._mixed.MixedFit
    cov_beta_pirls: np.ndarray = None
    se_note: str = ""
    separated_rows: int = 0
    notes: list = None


def check_fit_options(structure, nagq):
    """lme4's rule: adaptive quadrature (nagq > 1) integrates one scalar random effect only."""
    if nagq > 1:
        raise ValueError(f"nagq={nagq}: adaptive Gauss-Hermite quadrature needs a single scalar random-effect term; "
                         f"this model has {len(structure.terms)} random-effect terms (lme4's rule). Use nagq=1 "
                         "(Laplace) or nagq=0")


def fit_multi(design, reml=True, nagq=1, maxiter=100, tol=1e-6, callback=None):
    """Fit a Design with several random-effect terms; a MultiFitOutput."""
    import time

    structure = design.terms.structure
    check_fit_options(structure, nagq)
    if not np.all(design.var_weights == 1.0) or design.has_freq_weights:
        raise ValueError(f"var_weights and freq_weights are not implemented for {SEVERAL_TERMS}")
    fit_mixed = engine_fit()
    t0 = time.perf_counter()
    fit = fit_mixed(design.y, design.X, structure, design.dist, offset=design.offset,
                    prior_weights=None, trials=design.trials if design.has_trials else None,
                    reml=bool(reml and design.gaussian_identity), nagq=int(nagq), maxiter=int(maxiter), tol=float(tol))
    seconds = time.perf_counter() - t0
    cov_params = np.asarray(getattr(fit, "cov_params", np.zeros(0)), float)
    opt = OptSummary(method=fit.method, nagq=int(nagq), maxiter=int(maxiter), tol=float(tol), initial=cov_params,
                     final=cov_params, n_iterations=int(getattr(fit, "n_iterations", 0)),
                     n_evaluations=int(getattr(fit, "n_evaluations", 0)), objective=-float(fit.llf),
                     converged=bool(fit.converged), message=str(getattr(fit, "message", "")), seconds=seconds)
    cov_re = [np.atleast_2d(np.asarray(c, float)) for c in fit.cov_re]
    return MultiFitOutput(beta=np.asarray(fit.beta, float), cov_beta=np.asarray(fit.cov_beta, float),
                          var_re=float(cov_re[0][0, 0]), scale=float(fit.scale), llf=float(fit.llf),
                          blups=np.zeros(0), blup_sd=np.zeros(0), converged=bool(fit.converged),
                          singular=bool(any(fit.singular)), method=str(fit.method), opt=opt,
                          n_params=int(fit.n_params), mixed=fit)
