"""``fit_many`` with several random-effect terms (crossed / nested factors): the work shared by the responses.

Built once from the right-hand side (`prepare`): the formula's terms, their level codes and z columns
(the engine's `ReStructure`), the fixed-effects design and, for the Gaussian identity model, the
engine's profiled-deviance object (`engine._mixed_lmm.GaussianProfile`) with its `Layout` (the terms'
sparse Z', the sparsity plan of Z'Z) and the cross-products Z'Z, Z'X, X'X, which do not depend on y.
Per response only the y column of the cross-products (Z'y, X'y, y'y) is formed; the optimisation is
the engine's own (`fit_gaussian`'s bounded search from lme4's start), so the estimates are those of the
single fit.  Other families call the engine's `fit_mixed` on the shared structure (no formula or design
work per response).  A response with missing values gets the single fit on its own rows.  var_weights and
freq_weights are the design's, shared by every response: the Gaussian cross-products are weighted once (the
single fit's, `engine._weights.gaussian_weights`), other families pass them to `fit_mixed`.
"""
import copy
import warnings
from dataclasses import dataclass, replace

import numpy as np

from .._multiterm import check_fit_options


@dataclass
class SharedTerms:
    """The responses' common design with several random-effect terms (picklable: sent to workers once)."""

    design: object  # formula.Design with the placeholder response (its `terms` the multi-term structure)
    keys: list  # term keys ("a", "b:a", "g.1")
    single: object  # _many.SingleFits for responses with missing values
    profile: object = None  # GaussianProfile on the placeholder response (Gaussian identity only)
    row_weights: object = None  # the Gaussian profile's row weights v f (None without weights)

    @property
    def exog_names(self):
        return list(self.design.exog_names)


def prepare(design, single, reml=True, nagq=1):
    """SharedTerms of a Design with several terms (the engine's cross-products formed once, Gaussian)."""
    from .._term_view import keys_of
    from ..engine._mixed_lmm import GaussianProfile

    from ..engine._weights import gaussian_weights

    structure = design.terms.structure
    check_fit_options(structure, nagq)
    keys = keys_of(design.terms.names)
    profile = w = None
    if design.gaussian_identity:
        structure.check_identifiable(design.nobs)
        # the weights are the same for every response: the weighted cross-products, sum(f) observations and the
        # density's sum f log v are shared (`engine._weights.gaussian_weights`, as the single fit's)
        w, n_obs, log_w = gaussian_weights(*design.engine_weights(), design.nobs)
        profile = GaussianProfile(structure, design.y - design.offset, design.X, w, bool(reml), n_obs=n_obs,
                                  log_weights=log_w, condition=True)
    return SharedTerms(design=design, keys=keys, single=single, profile=profile, row_weights=w)


def _profile_for(shared, yy):
    """The shared GaussianProfile with the response column of the cross-products swapped for yy's (conditioned
    as the single fit's profile conditions its response: `_mixed_lmm.conditioned_response`)."""
    from ..engine._mixed_lmm import conditioned_response

    base = shared.profile
    prof = copy.copy(base)
    cp, p = base.cp, base.p
    lay = base.layout
    AF1, AFR, AFF = cp.AF1.copy(), cp.AFR.copy(), cp.AFF.copy()
    w = shared.row_weights
    shift, yscale, yt = conditioned_response(yy, base.X, np.ones(len(yy)) if w is None else w)
    wy = yt if w is None else w * yt  # the cross-products are Z'Wy, X'Wy, y'Wy
    AF1[p] = lay.Zt[0] @ wy
    if AFR.shape[1]:
        AFR[p] = np.concatenate([lay.Zt[pos] @ wy for pos in range(1, len(lay.terms))])
    AFF[p, :p] = AFF[:p, p] = base.X.T @ wy
    AFF[p, p] = yt @ wy
    new = replace(cp, AF1=AF1, AFR=AFR, AFF=AFF)
    # Z'Z is the same for every response: the Schur products of its blocks (or their pair plan) are shared too
    new.__dict__["_schur_cache"] = cp.__dict__.setdefault("_schur_cache", [])
    if cp.__dict__.get("_pairs") is not None:
        new.__dict__["_pairs"] = cp.__dict__["_pairs"]
    prof.cp, prof.y, prof.n_calls, prof.shift, prof.yscale = new, yy, 0, shift, yscale
    prof.__dict__.pop("_last", None)  # the kept factor belongs to the other response's cross-products
    return prof


@dataclass
class ManyFit:
    """What a row of the fit_many table reads from a fit (the fields of `engine._mixed.MixedFit`)."""

    beta: np.ndarray
    cov_beta: np.ndarray
    cov_re: list
    llf: float
    converged: bool
    singular: list
    message: str


def _gaussian_fit(shared, y, options):
    """The engine's profiled REML/ML fit of one response on the shared cross-products (no modes: the
    table does not show them)."""
    from ..engine._mixed_lmm import search_profile

    structure = shared.design.terms.structure
    yy = y - shared.design.offset
    prof = _profile_for(shared, yy)
    # the single fit's own search (its start weighted as the single fit's)
    res = search_profile(prof, structure, yy, prof.X, shared.row_weights, options["maxiter"], options["tol"])
    beta, cov_beta, sigma2, *_ = prof.solution(res.x)
    return ManyFit(beta=beta, cov_beta=cov_beta, cov_re=structure.covariances(res.x, sigma2), llf=-0.5 * res.f,
                   converged=bool(res.converged), singular=structure.singular(res.x), message=res.message)


def _single_fit(job, name, y, options):
    """GLMM.from_formula(...).fit() of one response on its own rows: the engine's MixedFit."""
    from ..model import GLMM
    from ._many import _quoted

    frame = job.frame.assign(**{str(name): y})
    model = GLMM.from_formula(f"{_quoted(name)} ~ {job.rhs}", frame, groups=job.groups, family=job.family,
                              exposure=job.exposure, offset=job.offset, var_weights=job.var_weights,
                              freq_weights=job.freq_weights)
    res = model.fit(nagq=options["nagq"], reml=options["reml"], maxiter=options["maxiter"], tol=options["tol"])
    return res._results._fit if hasattr(res, "_results") else res._fit


def fit_response(shared, name, y, options):
    """One response's row dict for `_many._table` (a failure is a row with the error message)."""
    design = shared.design
    terms = shared.exog_names
    y = np.asarray(y, dtype=float)
    try:
        from ..engine._mixed import fit_mixed
        from .._validation import check_response

        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            if not np.all(np.isfinite(y)):  # its own rows: the single fit (the terms' levels may change)
                fit = _single_fit(shared.single, name, y, options)
            else:
                check_response(design.dist.name, y, None, str(name), design.index)
                if shared.profile is not None:
                    fit = _gaussian_fit(shared, y, options)
                else:
                    var_weights, freq_weights = design.engine_weights()
                    fit = fit_mixed(y, design.X, design.terms.structure, design.dist, offset=design.offset,
                                    trials=design.trials if design.has_trials else None, prior_weights=var_weights,
                                    freq_weights=freq_weights, nagq=options["nagq"], maxiter=options["maxiter"],
                                    tol=options["tol"])
    except Exception as exc:  # noqa: BLE001 - reported in the table, the other fits go on
        nan = np.full(len(terms), np.nan)
        return dict(response=name, terms=terms, estimate=nan, std_err=nan, var_re=np.nan, llf=np.nan,
                    converged=False, message=f"{type(exc).__name__}: {exc}", var_terms={})
    message = fit.message or ("converged" if fit.converged else "not converged")
    if any(fit.singular):
        message += "; boundary (singular) fit: " + ", ".join(k for k, s in zip(shared.keys, fit.singular) if s)
    var_terms = {}
    for key, term, cov in zip(shared.keys, design.terms.structure.terms, fit.cov_re):
        diag = np.diag(np.atleast_2d(cov))
        for col, v in zip(term.z_names, diag):
            var_terms[f"var_re[{key}]" if term.q == 1 else f"var_re[{key}:{col}]"] = float(v)
    return dict(response=name, terms=terms, estimate=np.asarray(fit.beta, float),
                std_err=np.sqrt(np.diag(fit.cov_beta)), var_re=np.nan, llf=float(fit.llf),
                converged=bool(fit.converged), message=message, var_terms=var_terms)
