"""The one fit record of every model (`MixedFit`): per-term parts, in data units and the user's term order.

A one-factor model is the one-factor case of the record (its lists have one entry per term of the
grouping factor: one per independent block of its z columns).  Every reader (results through
`glmm_ext._term_view`, the scale layer, the engine's own pilot fits) reads the per-term lists.
`one_factor_record` builds a one-term record from its single-factor parts and `scalar_record` the
record of a one-scalar-term likelihood fit on the engine's parametrisation (scaled predictors).
"""
from dataclasses import dataclass, field

import numpy as np

from ._lmm import SINGULAR_TOL
from ._optsummary import OptSummary


@dataclass
class MixedFit:
    """A fitted mixed model of any structure, in data units and the user's term order."""

    beta: np.ndarray  # (p,)
    cov_beta: np.ndarray  # (p, p)
    cov_params: np.ndarray  # the packer's covariance vector at the optimum (`ReStructure.unpack`)
    cov_re: list  # per term: q x q covariance, data units
    scale: float  # residual variance (Gaussian identity), dispersion (Gamma, Gaussian-log, NB2 alpha), else 1
    llf: float  # REML/ML (Gaussian identity) or Laplace / AGQ log-likelihood, every constant included
    modes: list  # per term: (n_levels, q) conditional modes / BLUPs b, data units
    mode_sd: list  # per term: (n_levels, q) conditional SDs
    #: (n,) linear predictor incl. offset and every random effect; None where nothing reads it (Gaussian identity
    #: fits: the results recompute their fitted values from beta and the modes) or it is not kept (Dask)
    eta: np.ndarray
    eta_fixed: np.ndarray  # (n,) X beta + offset (None as eta)
    converged: bool
    singular: list  # per term
    method: str  # "REML", "ML", "Laplace", "AGQ", "PIRLS (nagq=0)"
    message: str
    n_iterations: int
    n_evaluations: int
    n_params: int  # counted by AIC/BIC: p + n_cov_params (+1 for an estimated scale)
    cov_all: np.ndarray = None  # covariance of (beta, cov_params[, log scale]) where available
    seconds: float = 0.0
    decrement: float = np.nan  # the final scaled gradient g'H^-1g/2 of the search
    opt: OptSummary = None  # the optimiser's record (settings, start, end, counts, notes)
    notes: list = field(default_factory=list)  # warnings for the user (e.g. Laplace is poor for these data)
    se_note: str = ""  # how Cov(beta) was obtained when not from the Hessian
    separated_rows: int = 0  # rows fitted with probability 0 or 1 (Binomial separation)
    cov_beta_pirls: np.ndarray = None  # Cov(beta) from the PIRLS working weights (lme4's use.hessian = FALSE)
    mode_cov: list = None  # per term: (n_levels, q, q) conditional covariance of the modes, where computed
    groups: list = None  # per term: the grouping factor's name
    z_names: list = None  # per term: the names of its z columns
    #: a one-factor model (a random intercept, or the slopes of one factor) fitted by its specialisations
    #: (`_one_factor`); the model's singular-fit warning is worded from these two flags
    one_factor: bool = False
    #: a one-factor model with z columns other than one intercept (random slopes)
    vector: bool = False


def one_factor_record(*, beta, cov_beta, cov_re, scale, llf, modes, mode_sd, converged, singular, method, opt,
                      n_params, group, z_names, cov_params, mode_cov=None, eta=None, eta_fixed=None,
                      cov_beta_pirls=None, se_note="", separated_rows=0, notes=None) -> MixedFit:
    """The record of a one-term fit (one ReTerm: a random intercept, or one block of correlated slopes)
    from its single-factor parts: cov_re (q, q) or a variance, modes / mode_sd (G,) or (G, q)."""
    cov_re = np.atleast_2d(np.asarray(cov_re, float))
    G = len(modes)
    return MixedFit(beta=np.asarray(beta, float), cov_beta=np.asarray(cov_beta, float),
                    cov_params=np.atleast_1d(np.asarray(cov_params, float)), cov_re=[cov_re], scale=float(scale),
                    llf=float(llf), modes=[np.asarray(modes, float).reshape(G, -1)],
                    mode_sd=[np.asarray(mode_sd, float).reshape(G, -1)], eta=eta, eta_fixed=eta_fixed,
                    converged=bool(converged), singular=[bool(singular)], method=method, message=opt.message,
                    n_iterations=int(opt.n_iterations), n_evaluations=int(opt.n_evaluations), n_params=int(n_params),
                    seconds=float(opt.seconds), decrement=float(opt.newton_decrement), opt=opt,
                    notes=list(notes or []), se_note=se_note, separated_rows=int(separated_rows),
                    cov_beta_pirls=cov_beta_pirls, mode_cov=None if mode_cov is None else [mode_cov],
                    groups=[group], z_names=[list(z_names)], one_factor=True)


def scalar_record(*, beta, cov_beta, sigma, scale, llf, modes, mode_sd, converged, opt, dispersion, cov_beta_pirls,
                  se_note="", separated_rows=0, notes=None) -> MixedFit:
    """The record of a Laplace / AGQ / nagq=0 fit of one random intercept on the engine's parametrisation
    (beta for the scaled predictors, the response y / c): sigma_u = `sigma`, modes sigma b and their SDs by
    level, the method from ``opt.nagq``, k = p + 1 (+1 with a `dispersion`).  The caller names the group and
    maps the estimates to the data's units (`_one_factor.unscale_response`)."""
    var_re = sigma * sigma
    return one_factor_record(beta=beta, cov_beta=cov_beta, cov_re=var_re, scale=scale, llf=llf, modes=modes,
                             mode_sd=mode_sd, converged=converged, singular=sigma < SINGULAR_TOL,
                             method={0: "PIRLS (nagq=0)", 1: "Laplace"}.get(opt.nagq, "AGQ"), opt=opt,
                             n_params=len(beta) + 1 + int(dispersion), group=None, z_names=("Intercept",),
                             cov_params=np.sqrt(var_re), cov_beta_pirls=cov_beta_pirls, se_note=se_note,
                             separated_rows=separated_rows, notes=notes)
