"""Fit driver for a mixed model with any random-effects structure (`_structure.ReStructure`): `fit_mixed`,
the one fit entry of every model.

A structure of one grouping factor given with its design-level precomputations (``prepared``) runs on
the one-factor specialisations (`_one_factor`: the Woodbury profile, `_glmm.fit_glmm`, the block
profile); every other structure on the general engine (`fit_general`):
Gaussian identity -> the profiled REML/ML deviance (`_mixed_lmm`); every other family/link pair ->
PIRLS modes and the Laplace log-likelihood with beta and the covariance parameters optimised jointly
(nagq=1, lme4's nAGQ=1), beta inside PIRLS (nagq=0, lme4's nAGQ=0) or adaptive Gauss-Hermite
quadrature (nagq>1, one scalar term only, lme4's rule) (`_mixed_glmm`).  All on the blocked Cholesky
core of `_pls`.  Results come back in the data's units and in the user's term order.
"""
import time
from dataclasses import fields, replace

import numpy as np

from scipy import linalg

from ._boundary import ridge_probes
from ._glm import Rows
from ._glmm import FLAT_MODE_NOTE, flat_mode_message, glm_start
from ._centring import centred_structure, centring_maps
from ._mixed_glmm import MixedGLMM, response_scale, scaling_matrix, uncentre_cov_all, uncentre_fit
from ._mixed_lmm import fit_gaussian, minimize_bounded
from ._optsummary import OptSummary
from ._record import MixedFit
from ._separation import separated_fit_rows, separation_message
from ._structure import ReStructure
from ._weights import density_weights, gaussian_weights


def _check_inputs(y, X, structure, offset, prior_weights, trials, freq_weights=None):
    """Shapes and values of the inputs: ValueError before anything large is built."""
    y = np.asarray(y, float)
    X = np.asarray(X, float)
    if y.ndim != 1:
        raise ValueError(f"y must be one-dimensional, got shape {y.shape}")
    if X.ndim != 2 or X.shape[0] != y.shape[0]:
        raise ValueError(f"X must be an (n, p) array with n = len(y) = {y.shape[0]}, got shape {X.shape}")
    if structure.n_rows != y.shape[0]:
        raise ValueError(f"the random-effects structure has {structure.n_rows} rows, y has {y.shape[0]}")
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(X))):
        raise ValueError("y and X must be finite (drop or impute missing values first)")
    n = y.shape[0]
    out = []
    for name, v in (("offset", offset), ("prior_weights", prior_weights), ("trials", trials),
                    ("freq_weights", freq_weights)):
        if v is None:
            out.append(None)
            continue
        v = np.asarray(v, float)
        if v.shape != (n,):
            raise ValueError(f"{name} must have one value per row ({n}), got shape {v.shape}")
        if not np.all(np.isfinite(v)):
            raise ValueError(f"{name} must be finite")
        if name != "offset" and not np.all(v > 0):
            raise ValueError(f"{name} must be positive ({int(np.sum(~(v > 0)))} rows are not)")
        out.append(v)
    if np.linalg.matrix_rank(X) < X.shape[1]:
        raise ValueError("the fixed-effects design X is rank deficient: drop collinear columns")
    return (y, X, *out)


#: how messages name a structure of more than one term
SEVERAL_TERMS = "several random-effect terms"


def check_fit_options(structure, nagq):
    """lme4's rule: adaptive quadrature (nagq > 1) integrates one scalar random effect only."""
    if nagq > 1:
        raise ValueError(f"nagq={nagq}: adaptive Gauss-Hermite quadrature needs a single scalar random-effect term; "
                         f"this model has {len(structure.terms)} random-effect terms (lme4's rule: one scalar "
                         "random-effects term only). Use nagq=1 "
                         "(Laplace) or nagq=0")


def one_factor(structure) -> bool:
    """True when every term of `structure` has the same grouping factor (the same codes)."""
    first = structure.terms[0]
    return all(t.group == first.group and (t.codes is first.codes or np.array_equal(t.codes, first.codes))
               for t in structure.terms[1:])


def random_intercept(structure) -> bool:
    """True for one scalar term whose z column is 1 (a random intercept: the scalar specialisations)."""
    term = structure.terms[0]
    return len(structure.terms) == 1 and term.q == 1 and bool(np.all(term.Z == 1.0))


def fit_mixed(y, X, structure, dist, *, offset=None, prior_weights=None, trials=None, reml=True, nagq=1,
              maxiter=200, tol=1e-6, cov_type="hessian", callback=None, prepared=None, freq_weights=None) -> MixedFit:
    """Fit a mixed model with the random-effects structure `structure`: the one fit driver.

    The path is chosen here from the structure: one grouping factor with `prepared` -> the one-factor
    specialisations (`_one_factor`); otherwise the general PLS / Laplace engine (`fit_general`).

    Parameters
    ----------
    y, X, structure, dist, offset, prior_weights, trials, reml, nagq, maxiter, tol, freq_weights
        As for `fit_general`.
    cov_type : {"hessian", "pirls"}
        Cov(beta) from the observed information, or from the PIRLS working weights (one factor only).
    callback : callable, optional
        ``callback(stage, iteration, objective)`` at each stage.
    prepared : object, optional
        The design-level precomputations of a one-factor model (the in-memory ``formula._design.Design``:
        rows sorted by group, the X scaling, ``engine_data``, prior and frequency weights).  Without it
        every structure runs on the general engine.

    Returns
    -------
    MixedFit
    """
    t0 = time.perf_counter()
    if prepared is not None and one_factor(structure):
        return _fit_one_factor(y, X, structure, dist, offset, prior_weights, trials, reml, nagq, maxiter, tol,
                               cov_type, callback, prepared, t0, freq_weights)
    if len(structure.terms) > 1:
        check_fit_options(structure, nagq)
        if cov_type != "hessian":
            raise ValueError(f"cov_type={cov_type!r} is not available for {SEVERAL_TERMS}; use 'hessian'")
    if callback is not None:
        callback("start values", 0, np.nan)
    gaussian_identity = dist.name == "gaussian" and dist.link_name == "identity"
    fit = fit_general(y, X, structure, dist, offset=offset, prior_weights=prior_weights, trials=trials,
                      reml=bool(reml and gaussian_identity), nagq=int(nagq), maxiter=int(maxiter), tol=float(tol),
                      freq_weights=freq_weights)
    return _finish_general(fit, structure, nagq, maxiter, tol, time.perf_counter() - t0)


def _fit_one_factor(y, X, structure, dist, offset, prior_weights, trials, reml, nagq, maxiter, tol, cov_type,
                    callback, prepared, t0, freq_weights=None):
    """The one-factor specialisations (`_one_factor`); a vector factor of a non-Gaussian pair on the general
    engine, completed by `_one_factor.finish_vector_laplace`, and so a weighted Gaussian one (the block profile
    has no prior weights), completed by `_one_factor_gaussian`."""
    from . import _one_factor as one

    gaussian_identity = dist.name == "gaussian" and dist.link_name == "identity"
    if random_intercept(structure):
        if gaussian_identity:
            return one.fit_scalar_profile(structure, prepared, reml=reml, maxiter=maxiter, tol=tol, callback=callback)
        return one.fit_scalar_likelihood(structure, prepared, nagq=nagq, maxiter=maxiter, tol=tol, cov_type=cov_type,
                                         callback=callback)
    if gaussian_identity and prior_weights is None and freq_weights is None:
        return one.fit_vector_profile(structure, prepared, reml=reml, maxiter=maxiter, tol=tol, callback=callback)
    if gaussian_identity:
        one.check_q(structure, prepared)
        if callback is not None:
            callback("start values", 0, np.nan)
        fit = fit_general(y, X, structure, dist, offset=offset, prior_weights=prior_weights, reml=reml,
                          maxiter=maxiter, tol=tol, freq_weights=freq_weights)
        return _one_factor_gaussian(_finish_general(fit, structure, 0, maxiter, tol, time.perf_counter() - t0),
                                    structure)
    if nagq != 1:
        names = ", ".join(n for t in structure.terms for n in t.z_names)
        raise ValueError(f"nagq={nagq}: with a vector random effect ({names}) only the Laplace approximation (nagq=1) "
                         "is available; adaptive quadrature needs a scalar random effect (lme4's rule) and nagq=0 is "
                         "not implemented for random slopes")
    one.check_q(structure, prepared)
    if callback is not None:
        callback("start values", 0, np.nan)
    fit = fit_general(y, X, structure, dist, offset=offset, prior_weights=prior_weights, trials=trials, nagq=1,
                      maxiter=maxiter, tol=tol, freq_weights=freq_weights)
    fit = _finish_general(fit, structure, 1, maxiter, tol, time.perf_counter() - t0)
    return one.finish_vector_laplace(fit, structure, prepared, cov_type, t0, maxiter, tol, callback)


def _one_factor_gaussian(fit, structure):
    """A weighted Gaussian fit of one factor's z columns on the general engine as the one-factor record (as the
    block profile's: one (G, q) layout of the modes, their conditional covariances, one singular flag)."""
    fit.singular = [bool(any(fit.singular))] * len(structure.terms)
    fit.one_factor, fit.vector = True, True
    fit.opt.method = f"{fit.method} profile on the any-structure engine (prior weights)"
    return fit


def _finish_general(fit, structure, nagq, maxiter, tol, seconds):
    """The general engine's record (or a stand-in with its core fields, as tests put in its place) with the
    optimiser's record and the terms' names."""
    if not isinstance(fit, MixedFit):
        names = {f.name for f in fields(MixedFit)}
        core = {k: getattr(fit, k) for k in names if hasattr(fit, k)}
        core.setdefault("cov_params", np.zeros(0))
        for key, value in (("message", ""), ("n_iterations", 0), ("n_evaluations", 0)):
            core.setdefault(key, value)
        fit = MixedFit(**core)
    cov_params = np.asarray(fit.cov_params, float)
    fit.opt = OptSummary(method=fit.method, nagq=int(nagq), maxiter=int(maxiter), tol=float(tol), initial=cov_params,
                         final=cov_params, n_iterations=int(fit.n_iterations), n_evaluations=int(fit.n_evaluations),
                         objective=-float(fit.llf), converged=bool(fit.converged), message=str(fit.message),
                         newton_decrement=float(getattr(fit, "decrement", np.nan)), seconds=seconds)
    fit.groups = [t.group for t in structure.terms]
    fit.z_names = [list(t.z_names) for t in structure.terms]
    return fit


def fit_general(y, X, structure, dist, *, offset=None, prior_weights=None, trials=None, reml=True, nagq=1,
                maxiter=200, tol=1e-6, freq_weights=None) -> MixedFit:
    """Fit a mixed model with the random-effects structure `structure` on the general engine (PLS / Laplace).

    Parameters
    ----------
    y : ndarray (n,)
        Response; for the Binomial a proportion (successes / trials) with `trials`.
    X : ndarray (n, p)
        Fixed-effects design, full column rank.
    structure : ReStructure
        The random-effects terms.
    dist : Distribution
        The family/link pair (`_families.Distribution`).
    offset : ndarray (n,), optional
    prior_weights : ndarray (n,), optional
        statsmodels' ``var_weights``: the density of row i has dispersion scale / w_i (Gaussian, Gamma) or
        is raised to the power w_i (Binomial, Poisson, NB2).
    trials : ndarray (n,), optional
        Binomial number of trials per row (1 otherwise).
    freq_weights : ndarray (n,), optional
        statsmodels' ``freq_weights``: row i counts f_i times (its log density times f_i; an integer f gives
        the fit of the data with the row repeated f times, `_weights`).
    reml : bool
        REML (Gaussian identity only; ignored otherwise).
    nagq : int
        0: beta inside PIRLS (lme4's nAGQ=0); 1: Laplace; > 1: adaptive Gauss-Hermite quadrature with
        `nagq` nodes, only for one scalar random-effects term.
    maxiter, tol : optimiser's iteration limit and the tolerance on the scaled gradient g'H^-1g/2.

    Returns
    -------
    MixedFit
    """
    t0 = time.perf_counter()
    y, X, offset, prior_weights, trials, freq_weights = _check_inputs(y, X, structure, offset, prior_weights, trials,
                                                                      freq_weights)
    nagq = int(nagq)
    if nagq < 0:
        raise ValueError(f"nagq must be 0, 1 or a larger number of quadrature nodes, got {nagq}")
    n, p = X.shape
    # a Binomial row of m trials (a row of frequency weight f) is m (f) observations of the random effects
    n_obs = n if trials is None and freq_weights is None else \
        int(round(np.sum((1.0 if trials is None else trials) * (1.0 if freq_weights is None else freq_weights))))
    structure.check_identifiable(n_obs)
    gaussian_identity = dist.name == "gaussian" and dist.link_name == "identity"
    if gaussian_identity:
        for term in structure.terms:  # lme4's check: a residual and a level per observation are not identified
            if term.n_levels * term.q >= n:
                raise ValueError(f"random-effects term for {term.group!r} has {term.n_levels * term.q} random effects "
                                 f"for {n} observations: with a Gaussian residual its variance is not identified")
        if trials is not None:
            raise ValueError("trials are for the Binomial family only")
        yy = y if offset is None else y - offset
        scaled, scales = _scaled_structure(structure)
        w, n_obs, log_w = gaussian_weights(prior_weights, freq_weights, n)
        prof, res = fit_gaussian(scaled, yy, X, w, reml=reml, n_obs=n_obs, maxiter=maxiter, tol=tol, log_weights=log_w)
        fit = _gaussian_result(scaled, prof, res, y, X, offset, reml, time.perf_counter() - t0)
        return _to_data_units(fit, structure, scaled, scales)
    if nagq > 1:
        terms = structure.terms
        if len(terms) != 1 or terms[0].q != 1:
            raise ValueError(f"nagq={nagq} (adaptive Gauss-Hermite quadrature) needs exactly one scalar random-"
                             "effects term (lme4's rule); use nagq=1 (Laplace) for this structure")
    scaled, scales = _scaled_structure(structure)
    fit = fit_glmm_mixed(scaled, dist, y, X, offset, prior_weights, trials, nagq=nagq, maxiter=maxiter, tol=tol,
                         freq_weights=freq_weights)
    fit = _to_data_units(fit, structure, scaled, scales)
    fit.separated_rows = separated_fit_rows(dist, X, y, fit.eta)
    if fit.separated_rows:
        fit.converged, fit.message = False, separation_message(fit.separated_rows)
    fit.seconds = time.perf_counter() - t0
    return fit


def _scaled_structure(structure):
    """(the structure with each z column divided by its root mean square, the per-term divisors): the search
    then starts (Lambda = I) and steps on one scale whatever the units of a slope's variable."""
    terms, scales = [], []
    for t in structure.terms:
        Z = np.asarray(t.Z, float)
        s = np.sqrt(np.mean(Z * Z, axis=0))
        s = np.where(s > 0, s, 1.0)
        terms.append(t if np.all(s == 1.0) else replace(t, Z=Z / s))
        scales.append(s)
    return ReStructure(tuple(terms)), scales


def _to_data_units(fit, structure, scaled, scales):
    """A fit on the scaled z columns in the units of the user's: b = b_s / s, Lambda = diag(1/s) Lambda_s."""
    if all(np.all(s == 1.0) for s in scales):
        return fit
    params_s = fit.cov_params
    fit.singular = scaled.singular(params_s)  # judged on the scale-free parametrisation
    lams = [lam / s[:, None] for lam, s in zip(scaled.unpack(params_s), scales)]
    fit.cov_params = structure.pack(lams)
    fit.cov_re = [cov / np.outer(s, s) for cov, s in zip(fit.cov_re, scales)]
    fit.modes = [m / s for m, s in zip(fit.modes, scales)]
    fit.mode_sd = [m / s for m, s in zip(fit.mode_sd, scales)]
    if fit.mode_cov is not None:
        fit.mode_cov = [c / np.outer(s, s) for c, s in zip(fit.mode_cov, scales)]
    if fit.cov_all is not None:
        factors = np.concatenate([1.0 / s[t.theta_positions()[0]] for t, s in zip(structure.terms, scales)])
        p = len(fit.beta)
        J = np.ones(fit.cov_all.shape[0])
        J[p:p + len(factors)] = factors
        fit.cov_all = fit.cov_all * np.outer(J, J)
    return fit


def _gaussian_result(structure, prof, res, y, X, offset, reml, seconds):
    """MixedFit of a profiled Gaussian fit."""
    beta, cov_beta, sigma2, u, fac, lams = prof.solution(res.x)
    layout = prof.layout
    b = layout.lambda_times(lams, u)
    blocks = fac.inverse_diag_blocks()
    mode_cov_int = [sigma2 * (lam @ blocks[pos] @ lam.T) for pos, lam in enumerate(lams)]  # Var(b_j | y)
    modes = layout.to_user(b)
    mode_sd, mode_cov = [None] * len(lams), [None] * len(lams)
    for pos, k in enumerate(layout.order):
        mode_cov[k] = mode_cov_int[pos]
        mode_sd[k] = np.sqrt(np.clip(np.diagonal(mode_cov[k], axis1=1, axis2=2), 0.0, None))
    cov_params = np.asarray(res.x, float)
    return MixedFit(beta=beta, cov_beta=cov_beta, cov_params=cov_params,
                    cov_re=structure.covariances(cov_params, sigma2), scale=float(sigma2), llf=-0.5 * res.f,
                    modes=modes, mode_sd=mode_sd, mode_cov=mode_cov, eta=None, eta_fixed=None,
                    converged=res.converged, singular=structure.singular(cov_params), method="REML" if reml else "ML",
                    message=res.message, n_iterations=res.n_iterations, n_evaluations=res.n_evaluations,
                    n_params=X.shape[1] + structure.n_cov_params + 1, seconds=seconds)


def fit_glmm_mixed(structure, dist, y, X, offset, prior_weights, trials, nagq=1, maxiter=200, tol=1e-6,
                   freq_weights=None):
    """Laplace (nagq=1), AGQ (nagq>1) or nagq=0 fit of a non-(Gaussian identity) model: MixedFit."""
    n, p = X.shape
    c = response_scale(dist, y)
    off = np.zeros(n) if offset is None else np.asarray(offset, float)
    if c != 1.0:  # Gamma / Gaussian-log fitted on y / c (`Design.response_scale`)
        y = y / c
        link = dist.link_name
        off = off - np.log(c) if link == "log" else (off / c if link == "identity" else off * c)
    m, const, term = density_weights(dist, y, trials, prior_weights, freq_weights)
    A = scaling_matrix(X)
    Xs = X @ A
    aux = dist.row_aux(y)
    maps = centring_maps(structure)  # a slope far from zero: the search on centred columns (`_centring`)
    search = MixedGLMM(structure if maps is None else centred_structure(structure, maps), dist, y, Xs, off, m, const,
                       aux, dispersion_term=term)
    with np.errstate(all="ignore"):
        gamma0, scale0 = glm_start(dist, Rows(y, Xs, off, m, const, aux))
        fit = _optimise(search, gamma0, scale0, nagq, maxiter, tol)
    n_obs = n if freq_weights is None else float(np.sum(freq_weights))  # y / c: one Jacobian per observation
    if maps is None:
        return _glmm_result(search, fit, A, c, X, offset, nagq, n_obs)
    model = MixedGLMM(structure, dist, y, Xs, off, m, const, aux, dispersion_term=term)
    fit, T = uncentre_fit(model, search, maps, fit)
    return uncentre_cov_all(_glmm_result(model, fit, A, c, X, offset, nagq, n_obs), T)


#: scalar terms: the Laplace search starts at the GLM directly (its gradient is analytic); False: nagq=0 first
SKIP_STAGE0 = True


def _optimise(model, gamma0, scale0, nagq, maxiter, tol):
    """nagq=0 search over (theta[, log phi]), then (nagq>=1) the joint search from there; with scalar terms the
    joint search first tries the GLM start directly (analytic gradients make the nagq=0 stage unnecessary)."""
    structure = model.structure
    nc, p = model.nc, model.p
    tail = [np.log(scale0)] if model.disp else []
    v0 = np.concatenate([structure.start_params(), tail])
    lb = np.asarray(model.lower, float).copy()  # (the NB2 alpha's floor included: `_mixed_glmm.NB_LOG_ALPHA_MIN`)
    lb_v = lb[p:]
    model.beta_warm = np.asarray(gamma0, float)
    if nagq >= 1 and SKIP_STAGE0 and (all(t.q == 1 for t in structure.terms) or len(structure.terms) == 1):
        # scalar terms or one term: the Laplace search has analytic gradients and starts at the GLM (lme4's theta = 1);
        # should it fail, the nagq=0 stage below gives the start as for other structures
        model.nagq = 1
        start = np.concatenate([gamma0, model.moment_start(gamma0, scale0 if model.disp else 1.0), tail])
        res = minimize_bounded(model, start, lb, maxiter=maxiter, tol=min(tol, 1e-6) * 1e-2, fg=model.value_and_grad,
                               probes=ridge_probes(structure, p))
        if res.converged:
            if nagq > 1:
                model.nagq = nagq
                res = minimize_bounded(model, res.x, lb, maxiter=maxiter, tol=min(tol, 1e-6) * 1e-2,
                                       probes=ridge_probes(structure, p))
            return {"x": res.x, "res": res, "stage0": None}
        model.u_warm = np.zeros_like(model.u_warm)
    res0 = minimize_bounded(model.nagq0_objective, v0, lb_v, maxiter=maxiter, tol=min(tol, 1e-6) * 1e-2,
                            polish=(nagq == 0), rough=(nagq != 0), probes=ridge_probes(structure))
    v = res0.x
    model.nagq0_objective(v)  # leave the warm start (beta, u) at the nagq=0 optimum
    beta0 = model.beta_warm.copy()
    if nagq == 0:
        return {"x": np.concatenate([beta0, v]), "res": res0, "stage0": res0}
    x0 = np.concatenate([beta0, v])
    model.nagq = 1
    res = minimize_bounded(model, x0, lb, maxiter=maxiter, tol=min(tol, 1e-6) * 1e-2,
                           fg=model.value_and_grad if model.has_beta_gradient else None,
                           probes=ridge_probes(structure, p))
    if nagq == 1:
        res = _flat_mode_note(model, res)
    if nagq > 1:
        model.nagq = nagq
        res = minimize_bounded(model, res.x, lb, maxiter=maxiter, tol=min(tol, 1e-6) * 1e-2,
                               probes=ridge_probes(structure, p))
    return {"x": res.x, "res": res, "stage0": res0}


#: relative step to the neighbours probed for an edge, and bisection steps towards it, by `_flat_mode_note`
EDGE_PROBE_STEP = 1e-3
EDGE_BISECTIONS = 30


def _level_curvatures_at(model, x):
    """Per-level curvatures of the conditional modes at x from the warm start (flat ones included: the
    search's objective refuses them); None where there are no converged modes, inf where H >= I."""
    beta, theta, phi = model.unpack(x)
    if not (np.all(np.isfinite(x)) and 0.0 < phi < np.inf):
        return None
    lams = model.lams(theta)
    st = model.modes(model.eta_fixed(beta), lams, phi, model.u_warm)
    if st is None or not st.converged or not st.observed:
        return None
    curv = model.level_curvatures(st, lams, np.inf)
    return np.array([np.inf]) if curv is None else curv


def _flat_mode_note(model, res):
    """`res` with the random-intercept engine's reason (`flat_mode_message`) when the Laplace search stopped
    unconverged at the edge where a level's two modes meet: its curvature falls below FLAT_MODE_NOTE there.
    The edge is found by bisection towards each neighbour (a relative EDGE_PROBE_STEP away) without modes."""
    if res.converged:
        return res
    x = np.asarray(res.x, float)
    model(x)  # the warm start at the end point's modes
    best = _level_curvatures_at(model, x)
    if best is None:
        return res
    for k in range(len(x)):
        for sign in (1.0, -1.0):
            far = x.copy()
            far[k] += sign * EDGE_PROBE_STEP * max(1.0, abs(x[k]))
            if far[k] < model.lower[k] or _level_curvatures_at(model, far) is not None:
                continue
            near = x
            for _ in range(EDGE_BISECTIONS):
                mid = 0.5 * (near + far)
                curv = _level_curvatures_at(model, mid)
                if curv is None:
                    far = mid
                    continue
                near = mid
                if np.min(curv) < np.min(best):
                    best = curv
    message = flat_mode_message(best, model.dist)
    return res if message is None else replace(res, message=message)


def _glmm_result(model, fit, A, c, X, offset, nagq, n_obs):
    """MixedFit in data units from the engine's scaled fit."""
    structure, dist, layout = model.structure, model.dist, model.layout
    p, nc = model.p, model.nc
    x, res = fit["x"], fit["res"]
    beta_s, theta, phi = model.unpack(x)
    lams = model.lams(theta)
    model.nagq = max(nagq, 1)
    st = model.laplace_state(x)
    if st is None:
        raise FloatingPointError("no conditional modes at the optimum")
    llf = -model(x)
    cov_all = None
    converged, message = res.converged, res.message
    if nagq == 0:  # lme4's nAGQ=0 covariance: the beta block of the joint PIRLS system's inverse
        st0 = model.pirls_joint(theta, phi, beta_s, st.u)
        LFF = st0.factor.LFF
        Linv = linalg.solve_triangular(LFF, np.eye(p), lower=True)
        cov_s = Linv.T @ Linv
    else:
        H = res.hess
        free = np.asarray(res.free, bool)
        cov_s = np.full((p, p), np.nan)
        if H is not None:
            try:
                Hf = H[np.ix_(free, free)]
                inv = linalg.inv(linalg.cholesky(Hf, lower=True))
                full = np.full(H.shape, np.nan)
                full[np.ix_(free, free)] = inv.T @ inv
                cov_all = full
                cov_s = full[:p, :p]
            except (linalg.LinAlgError, ValueError):
                message += "; the Hessian is not positive definite: no standard errors"
    k = {"log": 1.0, "identity": c, "inverse": 1.0 / c}.get(dist.link_name, 1.0) if c != 1.0 else 1.0
    beta = A @ beta_s * k
    cov_beta = A @ cov_s @ A.T * (k * k)
    if cov_all is not None:
        J = np.eye(len(x))
        J[:p, :p] = A * k
        J[p:p + nc, p:p + nc] *= k
        cov_all = J @ cov_all @ J.T
    b = layout.lambda_times(lams, st.u)
    blocks = st.factor.inverse_diag_blocks()
    modes = [v * k for v in layout.to_user(b)]
    mode_sd, mode_cov = [None] * len(lams), [None] * len(lams)
    for pos, kk in enumerate(layout.order):  # Var(b_j | y) = Lambda (H^-1)_jj Lambda', kept whole (condVar blocks)
        mode_cov[kk] = (lams[pos] @ blocks[pos] @ lams[pos].T) * (k * k)
        mode_sd[kk] = np.sqrt(np.clip(np.diagonal(mode_cov[kk], axis1=1, axis2=2), 0.0, None))
    cov_params = np.asarray(theta, float) * k
    eta_fixed = X @ beta + (0.0 if offset is None else offset)
    eta = eta_fixed + layout.times_Z(b * k)
    scale = phi * (c * c if dist.name == "gaussian" else 1.0) if model.disp else 1.0
    llf = llf - n_obs * np.log(c)
    method = {0: "PIRLS (nagq=0)", 1: "Laplace"}.get(nagq, "AGQ")
    stage0 = fit["stage0"]
    n_iter = res.n_iterations + (stage0.n_iterations if stage0 is not None and stage0 is not res else 0)
    return MixedFit(beta=beta, cov_beta=cov_beta, cov_params=cov_params, cov_re=structure.covariances(cov_params),
                    scale=float(scale), llf=float(llf), modes=modes, mode_sd=mode_sd, mode_cov=mode_cov, eta=eta,
                    eta_fixed=eta_fixed,
                    converged=bool(converged), singular=structure.singular(cov_params), method=method,
                    message=message, n_iterations=int(n_iter), n_evaluations=int(model.n_calls),
                    n_params=p + nc + int(model.disp), cov_all=cov_all,
                    decrement=float(getattr(res, "decrement", np.nan)))


def loglik_function(y, X, structure, dist, *, offset=None, prior_weights=None, trials=None, reml=True,
                    freq_weights=None):
    """The engine's log-likelihood as a function, for profiles, likelihood-ratio tests at fixed parameters
    and independent checks.

    Gaussian identity: ``f(cov_params) -> (llf, beta, sigma2)``, the REML/ML log-likelihood with beta and
    sigma^2 profiled out (lme4's profiled deviance / -2).  Other families: ``f(x) -> llf`` with
    x = (beta, cov_params[, log dispersion]) in data units: the Laplace log-likelihood (`fit_mixed`'s llf at
    its estimates).  Inputs as for `fit_mixed`.
    """
    y, X, offset, prior_weights, trials, freq_weights = _check_inputs(y, X, structure, offset, prior_weights, trials,
                                                                      freq_weights)
    n = len(y)
    if dist.name == "gaussian" and dist.link_name == "identity":
        from ._mixed_lmm import GaussianProfile

        w, n_obs, log_w = gaussian_weights(prior_weights, freq_weights, n)
        prof = GaussianProfile(structure, y if offset is None else y - offset, X, w, reml, n_obs=n_obs,
                               log_weights=log_w)

        def gaussian(cov_params):
            params = np.asarray(cov_params, float)
            beta, _, sigma2, *_ = prof.solution(params)
            return -0.5 * prof(params), beta, sigma2

        return gaussian
    m, const, term = density_weights(dist, y, trials, prior_weights, freq_weights)
    model = MixedGLMM(structure, dist, y, X, np.zeros(n) if offset is None else offset, m, const, dist.row_aux(y),
                      dispersion_term=term)

    def laplace(x):
        with np.errstate(all="ignore"):
            return -model(np.asarray(x, float))

    return laplace
