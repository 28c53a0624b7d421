"""The one-factor specialisations of the fit driver (`_mixed.fit_mixed`), chosen there from the structure.

A structure whose terms all share one grouping factor (a random intercept, or the slopes of one factor)
has fast paths the general PLS/Laplace engine does not:

* one scalar term, Gaussian identity: the Woodbury REML/ML profile over theta = sigma_u / sigma_e (`_lmm`);
* one scalar term, other pairs: `_glmm.fit_glmm` (exact Laplace Hessian, AGQ, nagq=0, the pilot fit,
  cov_type="pirls");
* one vector factor, Gaussian identity: the block profile (`_lmm_blocks`);
* one vector factor, other pairs: the general engine, then the per-level conditional covariances and
  the PIRLS covariance of beta (`finish_vector_laplace`).

They read the design-level precomputations (rows sorted by group, the X scaling, ``engine_data``) from a
`prepared` object (the in-memory ``formula._design.Design``); estimates come back in the data's units.
"""
import time
from dataclasses import dataclass, replace

import numpy as np

from ._glmm import fit_glmm
from ._lmm import SINGULAR_TOL, fit_lmm, lmm_stats, reml_loglik
from ._lmm_block_stats import scaled_stats
from ._lmm_blocks import LambdaPattern, fit_vector_stats
from ._optsummary import OptSummary
from ._pirls import inverse_or_nan
from ._record import MixedFit, one_factor_record
from ._segments import group_sums
from ._weights import differs
from .._validation import check_response_varies


@dataclass
class StandardizedGaussian:
    """A Gaussian design on the profile's scale: X_s and y_s = (y - offset - c) / s, rows sorted by group.

    c is the response mean when there is an intercept (else 0) and s its SD (else its RMS), so the
    profile sees data of unit scale; `back` maps an estimate on that scale to the data's units.
    """

    X_s: np.ndarray
    y_s: np.ndarray
    y_center: float
    y_scale: float

    def back(self, design, fit_beta, fit_cov_beta, fit_llf, reml, n_obs=None):
        """(beta, Cov(beta), llf) in the data's units: beta = R (s gamma_s + c e_0), llf shifted by -dof log s
        with dof = n (ML) or n - p (REML; + log|det R|, the change of parametrisation of X); n is the
        number of observations (the sum of frequency weights where there are any)."""
        scaling = design.scaling
        R = scaling.matrix
        gamma = fit_beta * self.y_scale
        if scaling.intercept >= 0:
            gamma[scaling.intercept] += self.y_center
        n, p = (design.nobs if n_obs is None else n_obs), design.X.shape[1]
        llf = fit_llf - (n - p if reml else n) * np.log(self.y_scale) + (scaling.log_abs_det if reml else 0.0)
        return R @ gamma, (self.y_scale ** 2) * R @ fit_cov_beta @ R.T, llf


def standardize_gaussian(design):
    """The Gaussian design centred (when there is an intercept) and scaled; ValueError for a constant response.

    Built once per design (design-only arrays, read-only: every fit of the design shares them)."""
    cache = getattr(design, "design_cache", None)
    if cache is None:
        return _standardize_gaussian(design)
    return cache("standardized_gaussian", lambda: _standardize_gaussian(design))


def _standardize_gaussian(design):
    o = design.order
    r, y_center, y_scale = _scaled_response(design)
    scaling = design.scaling
    if design.presorted:  # (C order, as a gather makes it: the block profile's sums follow the memory layout)
        X_s, y_s = np.subtract(design.X, scaling.center, order="C"), r
    else:  # gathered first, then scaled in place: one n x p array
        X_s, y_s = design.X[o], r[o]
        X_s -= scaling.center
    X_s /= scaling.scale
    X_s.flags.writeable = y_s.flags.writeable = False
    return StandardizedGaussian(X_s, y_s, y_center, y_scale)


def _scaled_response(design):
    """((y - offset - c) / s in the data's row order (one new array), c, s): c the mean of y - offset when
    there is an intercept (else 0), s the root mean square of y - offset - c (its SD, else its RMS)."""
    y = design.y - design.offset if np.any(design.offset) else design.y
    y_center = float(np.mean(y)) if design.scaling.intercept >= 0 else 0.0
    r = np.subtract(y, y_center, out=y if y is not design.y else None)
    y_scale = float(np.sqrt((r @ r) / max(len(r), 1)))
    if not y_scale > 0:
        raise ValueError(f"the response {design.endog_name!r} does not vary; there is nothing to fit")
    r /= y_scale
    return r, y_center, y_scale


def scalar_profile_stats(design, weights, n_obs=None):
    """(`StandardizedGaussian` without its rows, `_lmm.LMMStats` by group code) for the scalar profile.

    Rows without weights are read in their own order: segment sums when they come grouped (one run of rows
    per group, `Design.row_runs`), put in code order afterwards, else sums by code; no sort or gather of the
    rows, and no standardized copy kept (the design's cache keeps the O(G) statistics).  Weighted rows:
    the statistics of the rows sorted by group (`standardize_gaussian`)."""
    if weights is not None or not hasattr(design, "codes"):
        std = standardize_gaussian(design)
        return std, lmm_stats(std.X_s, std.y_s, design.starts, design.counts, weights, n_obs)
    runs = getattr(design, "row_runs", None)

    def stats_of(X, y_s):
        if runs is None:  # rows in any order: per-group sums by code (no sort or gather of the rows)
            return lmm_stats(X, y_s, None, design.counts, codes=design.codes)
        stats = lmm_stats(X, y_s, runs.starts, runs.counts)
        sums = np.empty_like(stats.sums)
        sums[runs.codes] = stats.sums  # run order -> code order
        totals = np.empty_like(stats.counts)
        totals[runs.codes] = stats.counts
        return replace(stats, sums=sums, counts=totals)

    def build():
        y_s, y_center, y_scale = _scaled_response(design)
        scaling = design.scaling
        if np.all(np.abs(scaling.center) <= scaling.scale):
            # X_s = X R: the statistics of X mapped through R, no standardized copy of X.  W's intercept row is
            # exactly 0, so W_s = R'WR is W / (s_j s_k) with no cancellation; the group sums lose at most a
            # bit to the centring (S_j - n_j c) / s with |c| <= s (beyond that: the standardized copy)
            raw = stats_of(design.X, y_s)
            T = np.eye(raw.p + 1)
            T[:-1, :-1] = scaling.matrix
            stats = replace(raw, within=T.T @ raw.within @ T, sums=raw.sums @ T)
        else:
            stats = stats_of(scaling.transform(design.X), y_s)
        return StandardizedGaussian(None, None, y_center, y_scale), stats

    cache = getattr(design, "design_cache", None)
    return build() if cache is None else cache("scalar_profile_stats", build)


def reml_loglik_function(design):
    """(var_re, scale) -> REML log-likelihood of a one-term Gaussian random-intercept design in the data's units
    (beta at its GLS value, prior weights by the profile's rules), evaluated on the profile's standardized
    statistics -- so that a response far from 0 keeps its digits -- and mapped back as `StandardizedGaussian.back`
    maps the fit's: at the estimates it is the fit's llf."""
    weights, n_obs = design.lmm_weights()
    std, stats = scalar_profile_stats(design, weights, n_obs)
    s2 = std.y_scale ** 2
    n = design.nobs if n_obs is None else n_obs
    const = -0.5 * (n - design.X.shape[1]) * np.log(s2) + design.scaling.log_abs_det + 0.5 * design.log_var_weights
    return lambda var_re, scale: reml_loglik(stats, var_re / s2, scale / s2) + const


def _predictors(prepared, beta, modes):
    """(eta, eta_fixed) in the data's row order from beta and a random intercept's modes by level."""
    eta_fixed = prepared.X @ beta
    eta_fixed += prepared.offset  # (in place: n-sized temporaries cost page faults at 1e6 rows)
    eta = np.asarray(modes, float)[prepared.codes]
    eta += eta_fixed
    return eta, eta_fixed


def fit_scalar_profile(structure, prepared, reml=True, maxiter=100, tol=1e-6, callback=None) -> MixedFit:
    """Exact REML/ML for Gaussian + identity, one scalar term, on a response centred (when there is an
    intercept) and scaled (the Woodbury profile of `_lmm`)."""
    t0 = time.perf_counter()
    design = prepared
    weights, n_obs = design.lmm_weights()
    std, stats = scalar_profile_stats(design, weights, n_obs)
    y_scale = std.y_scale
    if callback is not None:
        callback("start values", 0, np.nan)
    fit = fit_lmm(stats, reml=reml, tol=tol, maxiter=maxiter)
    if callback is not None:
        callback("REML" if reml else "ML", fit.n_evaluations, -fit.llf)
    beta, cov, llf = std.back(design, fit.beta, fit.cov_beta, fit.llf, reml, n_obs=n_obs)
    llf += 0.5 * design.log_var_weights  # the Gaussian density's log sqrt(w_i) terms
    p = design.X.shape[1]
    sigma2 = fit.sigma2 * y_scale**2
    method = f"{'REML' if reml else 'ML'} profile: log-grid + bounded Brent over theta = sigma_u/sigma_e"
    opt = OptSummary(method=method,
                     nagq=0, maxiter=maxiter, tol=tol, initial=np.array([np.nan]), final=np.array([fit.theta]),
                     n_iterations=fit.n_evaluations, n_evaluations=fit.n_evaluations, objective=-fit.llf,
                     newton_decrement=np.nan, converged=fit.converged, message=fit.message,
                     seconds=time.perf_counter() - t0)
    blups = fit.blups * y_scale
    term = structure.terms[0]
    return one_factor_record(beta=beta, cov_beta=cov, cov_re=fit.theta**2 * sigma2, scale=sigma2, llf=llf,
                             modes=blups, mode_sd=fit.blup_sd * y_scale, converged=fit.converged,
                             singular=fit.theta < SINGULAR_TOL, method="REML" if reml else "ML", opt=opt,
                             n_params=p + 2, group=term.group, z_names=term.z_names, cov_params=fit.theta)


def unscale_response(fit, c, link_name, family_name, n, R=None):
    """The record of a fit to y / c (`Design.response_scale`) mapped to the record for y, in place; with `R`
    also from the scaled predictors to X (beta = R gamma and its covariances).

    log link: beta, Lambda unchanged (log c sits in the offset); identity: beta, Lambda, modes times c;
    inverse: divided by c.  Gamma's dispersion is unchanged, Gaussian's times c^2; llf - n log c.  c is a
    power of 2, so these products are exact.
    """
    if c != 1.0:
        k = {"log": 1.0, "identity": c, "inverse": 1.0 / c}[link_name]
        fit.beta = fit.beta * k
        fit.cov_beta = fit.cov_beta * k * k
        fit.cov_beta_pirls = fit.cov_beta_pirls * k * k
        fit.cov_re = [cov * k * k for cov in fit.cov_re]
        fit.cov_params = fit.cov_params * abs(k)
        fit.modes, fit.mode_sd = [b * k for b in fit.modes], [sd * k for sd in fit.mode_sd]
        if family_name == "gaussian":
            fit.scale = fit.scale * c * c
        fit.llf = fit.llf - n * np.log(c)
    if R is not None:
        fit.beta = R @ fit.beta
        fit.cov_beta = R @ fit.cov_beta @ R.T
        fit.cov_beta_pirls = R @ fit.cov_beta_pirls @ R.T
    return fit


def fit_scalar_likelihood(structure, prepared, nagq=1, maxiter=100, tol=1e-6, cov_type="hessian",
                          callback=None) -> MixedFit:
    """Laplace / AGQ maximum likelihood (or nagq = 0) for one scalar term of any non-(Gaussian, identity) pair
    (`_glmm.fit_glmm`).  Gamma and Gaussian-log responses are fitted on the scale y / c (`Design.response_scale`)."""
    design = prepared
    check_response_varies(design.dist.name, design.dist.link_name, design.y, design.offset, design.endog_name)
    data = design.engine_data(scale_response=True)
    with np.errstate(all="ignore"):  # trial points outside the support are rejected, not reported
        fit = fit_glmm(design.dist, data, nagq=nagq, maxiter=maxiter, tol=tol, cov_type=cov_type,
                       callback=callback)
    fit = unscale_response(fit, design.response_scale, design.dist.link_name, design.dist.name, design.n_obs,
                           R=design.scaling.matrix)
    fit.eta, fit.eta_fixed = _predictors(design, fit.beta, fit.modes[0][:, 0])
    term = structure.terms[0]
    fit.groups, fit.z_names = [term.group], [list(term.z_names)]
    return fit


# ------------------------------------------------------------------ one factor with several z columns
def z_scale(Z):
    """Root mean square of each column of Z (1 for an all-zero column)."""
    rms = np.sqrt(np.array([z @ z for z in Z.T]) / max(len(Z), 1))  # BLAS dot products (a column mean is ~10x slower)
    return np.where(rms > 0, rms, 1.0)


def is_singular(lam_s):
    """Lambda at its boundary: a (relative) diagonal entry near 0, or an implied correlation of +-1."""
    if np.any(np.diag(lam_s) < SINGULAR_TOL):
        return True
    cov = lam_s @ lam_s.T
    sd = np.sqrt(np.diag(cov))
    corr = cov / np.outer(sd, sd)
    return bool(np.any(np.abs(corr[np.triu_indices_from(corr, 1)]) > 1.0 - 1e-6))


def factor_blocks(structure):
    """The columns of the factor's (G, Q) layout each term occupies (terms in order, columns consecutive)."""
    out, o = [], 0
    for t in structure.terms:
        out.append(list(range(o, o + t.q)))
        o += t.q
    return out


def factor_Z(structure):
    """The factor's z columns (n, Q), terms side by side, column-major as the design's Z: the block profile's
    per-group sums (and so its search path) follow the memory layout."""
    return np.asfortranarray(np.column_stack([t.Z for t in structure.terms]))


def check_q(structure, prepared):
    """Q, or a ValueError when the groups (or, Gaussian, the rows) cannot identify the covariance."""
    Q = sum(t.q for t in structure.terms)
    G = structure.terms[0].n_levels
    names = [n for t in structure.terms for n in t.z_names]
    if G <= Q:
        raise ValueError(f"{G} groups cannot identify a {Q} x {Q} random-effects covariance "
                         f"({', '.join(names)}); use fewer random terms or more groups")
    n = structure.n_rows
    if prepared.gaussian_identity and n <= G * Q:
        raise ValueError(f"{n} rows for {G * Q} random effects ({G} groups x {Q} terms): the residual variance is "
                         "not identifiable; use fewer random terms")
    return Q


def _split(structure, full, square=False):
    """Per-term parts of a factor-wide array: (G, Q) -> [(G, q_k)], (G, Q, Q) -> [(G, q_k, q_k)], and with
    `square` (Q, Q) -> [(q_k, q_k)]."""
    out = []
    for b in factor_blocks(structure):
        if square:
            out.append(full[np.ix_(b, b)])
        elif full.ndim == 3:
            out.append(full[:, b][:, :, b])
        else:
            out.append(full[:, b])
    return out


def lambda_blocks(structure):
    """The independent blocks of the factor's Lambda (`_lmm_blocks.LambdaPattern`): a correlated term's
    columns together, each column of a diagonal term alone."""
    blocks = []
    for t, b in zip(structure.terms, factor_blocks(structure)):
        blocks += [b] if t.correlated and t.q > 1 else [[c] for c in b]
    return blocks


def _vector_stats(design, Z, zs):
    """(StandardizedGaussian, `_lmm_block_stats.VectorStats`) of the design scaled as `standardize_gaussian`
    scales it (the same y_center, X_s; y_scale to rounding) and Z_s = Z / zs, in one pass over the rows in their
    own order (`_lmm_block_stats.scaled_stats`): the block profile reads only the per-group sums, so the sorted
    standardised copies are not built (X_s, y_s: None here)."""
    scaling = design.scaling
    y = design.y - design.offset if differs(design.offset, 0.0) else design.y
    stats, y_center, y_scale = scaled_stats(design.X, scaling.center, scaling.scale, y, Z, zs, design.codes,
                                            design.counts.astype(float), scaling.intercept, design.endog_name)
    return StandardizedGaussian(None, None, y_center, y_scale), stats


def fit_vector_profile(structure, prepared, reml=True, maxiter=100, tol=1e-6, callback=None) -> MixedFit:
    """Exact REML/ML for Gaussian + identity with the z columns of one factor (the block profile, `_lmm_blocks`)."""
    t0 = time.perf_counter()
    design = prepared
    q = check_q(structure, design)
    # one term: its own Z (no copy; the block profile's sums read any layout), else the terms side by side
    Z = structure.terms[0].Z if len(structure.terms) == 1 else factor_Z(structure)
    zs = z_scale(Z)
    std, stats = _vector_stats(design, Z, zs)
    y_scale = std.y_scale
    pattern = LambdaPattern(q, lambda_blocks(structure))
    if callback is not None:
        callback("start values", 0, np.nan)
    fit = fit_vector_stats(stats, pattern, reml=reml, tol=tol, maxiter=maxiter)
    if callback is not None:
        callback("REML" if reml else "ML", fit.n_evaluations, -fit.llf)
    beta, cov_beta, llf = std.back(design, fit.beta, fit.cov_beta, fit.llf, reml)
    sigma2 = fit.sigma2 * y_scale**2
    back = y_scale / zs  # b = back * b_s
    cov_re = sigma2 * (fit.lam @ fit.lam.T) / np.outer(zs, zs)
    blup_cov = fit.blup_cov * np.outer(back, back)
    opt = OptSummary(method=f"{'REML' if reml else 'ML'} profile over Lambda (Newton steps, exact Hessian)",
                     nagq=0, maxiter=maxiter, tol=tol, initial=pattern.start(1.0), final=fit.theta,
                     n_iterations=fit.n_evaluations, n_evaluations=fit.n_evaluations, objective=-fit.llf,
                     newton_decrement=fit.decrement, converged=fit.converged, message=fit.message,
                     seconds=time.perf_counter() - t0)
    blups = fit.blups * back
    singular = is_singular(fit.lam)
    lam = fit.lam / zs[:, None]  # relative factor in the data's units (Lambda = diag(1/s) Lambda_s)
    return MixedFit(beta=beta, cov_beta=cov_beta, cov_params=structure.pack(_split(structure, lam, square=True)),
                    cov_re=_split(structure, cov_re, square=True), scale=sigma2, llf=llf,
                    modes=_split(structure, blups),
                    mode_sd=_split(structure, np.sqrt(np.diagonal(blup_cov, axis1=1, axis2=2))), eta=None,
                    eta_fixed=None, converged=fit.converged, singular=[singular] * len(structure.terms),
                    method="REML" if reml else "ML", message=fit.message, n_iterations=fit.n_evaluations,
                    n_evaluations=fit.n_evaluations, n_params=design.X.shape[1] + 1 + pattern.size,
                    seconds=opt.seconds, decrement=fit.decrement, opt=opt,
                    mode_cov=_split(structure, blup_cov), groups=[t.group for t in structure.terms],
                    z_names=[list(t.z_names) for t in structure.terms], one_factor=True, vector=True)


def _pirls_information(X, Z, lam, weights, starts):
    """Information for beta with the modes profiled out: X'WX - sum_j C_j' (I + Lambda'A_jLambda)^{-1} C_j,
    C_j = Lambda' sum_i w_i z_i x_i', A_j = sum_i w_i z_i z_i' (the working weights w)."""
    W = Z @ lam
    C = group_sums(weights[:, None, None] * W[:, :, None] * X[:, None, :], starts)
    H = np.eye(lam.shape[0]) + group_sums(weights[:, None, None] * W[:, :, None] * W[:, None, :], starts)
    return X.T @ (X * weights[:, None]) - np.einsum("gqa,gqb->ab", C, np.linalg.solve(H, C))


def finish_vector_laplace(fit, structure, prepared, cov_type, t0, maxiter, tol, callback=None) -> MixedFit:
    """The general engine's Laplace fit of one vector factor completed as the one-factor record: separation,
    the PIRLS covariance of beta (cov_type="pirls", or where the Hessian fails), the per-level conditional
    covariances Lambda H_j^-1 Lambda' with the observed curvature, and the optimiser's record."""
    design, dist = prepared, prepared.dist
    q = sum(t.q for t in structure.terms)
    phi = fit.scale
    lam = np.zeros((q, q))
    for b, lam_k in zip(factor_blocks(structure), structure.unpack(fit.cov_params)):
        lam[np.ix_(b, b)] = lam_k
    converged, message = bool(fit.converged), fit.message or ("converged" if fit.converged else "not converged")
    separated = fit.separated_rows  # (`fit_general`'s check, `_separation.separated_fit_rows`)
    if callback is not None:
        callback("standard errors", fit.n_iterations, -fit.llf)
    o = design.order
    m = (design.prior_weights * design.freq_weights)[o]
    eta = fit.eta[o]
    Z = factor_Z(structure)[o]
    weights = np.broadcast_to(dist.working_weights(eta, m, phi), eta.shape) * 1.0
    cov_pirls = inverse_or_nan(_pirls_information(design.X[o], Z, lam, weights, design.starts))
    cov_beta, se_note = fit.cov_beta, ""
    if cov_type != "hessian":
        cov_beta = cov_pirls
    elif not np.all(np.isfinite(np.diag(cov_beta))):
        cov_beta, se_note = cov_pirls, ("the Hessian is not positive definite (or not finite at the edge of the "
                                        "support); standard errors use the PIRLS working weights")
    # conditional covariance of b_j: Lambda H_j^-1 Lambda', H_j = I + Lambda' A_j Lambda with the observed
    # curvature A_j = sum_i d_i z_i z_i' (the engine's H block of group j, cross-block entries included)
    _, d, _ = dist.derivatives(design.y[o], eta, m, phi, order=2)
    ZL = Z @ lam
    H = np.eye(q) + group_sums(d[:, None, None] * ZL[:, :, None] * ZL[:, None, :], design.starts)
    blup_cov = lam @ np.linalg.inv(H) @ lam.T
    fit.mode_sd = _split(structure, np.sqrt(np.clip(np.diagonal(blup_cov, axis1=1, axis2=2), 0.0, None)))
    fit.mode_cov = _split(structure, blup_cov)
    fit.opt = OptSummary(method="Laplace on the any-structure engine (PIRLS modes, bounded Newton)", nagq=1,
                         maxiter=maxiter, tol=tol, initial=structure.start_params(), final=np.asarray(fit.cov_params),
                         n_iterations=fit.n_iterations, n_evaluations=fit.n_evaluations, objective=-fit.llf,
                         newton_decrement=float(fit.decrement), converged=converged, message=message,
                         seconds=time.perf_counter() - t0)
    fit.converged, fit.message, fit.separated_rows = converged, message, separated
    fit.cov_beta, fit.cov_beta_pirls, fit.se_note = cov_beta, cov_pirls, se_note
    fit.singular = [bool(any(fit.singular))] * len(structure.terms)
    fit.method, fit.one_factor, fit.vector = "Laplace", True, True
    return fit
