"""Parametric bootstrap (lme4's ``bootMer``, MixedModels.jl's ``parametricbootstrap``).

Replicate k draws a response from the fitted model with new group effects (u ~ N(0, sigma_u^2),
b_j ~ N(0, Sigma) with random slopes, new effects for every level of every term with several terms),
refits the same model by the same method and keeps the parameters conf_int reports (beta, sigma_u or
each term's SDs and correlations, family parameter).  A
replicate the package's own fit would not accept is a failed replicate (a row of NaN, counted in
``attrs["n_failed"]`` and left out of the percentiles, as lme4's ``bootMer`` reports failures): a
response with no finite maximum (every count 0, every Binomial row without a success or a failure,
Binomial separation), a refit that raises a ValueError, or one that does not converge.  Replicate
k's random numbers come from child k of ``SeedSequence(seed)``, so the samples, and the percentile
intervals, are the same whatever the number of worker processes.
"""
import dataclasses
import os
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd

from ._comparison import fit_options, unwrap
from . import _intervals, _intervals_terms
from ._intervals import family_parameter
from .._term_view import record_covariances
from .._progress import Progress
from .._validation import check_finite_mle_response
from ._simulate import check_nsim, simulator


#: a warm-started refit further than this many of the original fit's standard errors from it is redone
#: by the full fit (whose convergence checks then decide whether the replicate has an estimate)
QUICK_TRUST = 8.0


def _estimates(design, fit, terms):
    """(beta, per term SDs and correlations, sqrt(phi) | phi | alpha) of one fit, as reported by conf_int."""
    dist = design.dist
    tail = []
    if dist.name == "gaussian":
        tail = [np.sqrt(fit.scale)]
    elif dist.has_dispersion:
        tail = [fit.scale]
    with np.errstate(all="ignore"):
        values = _intervals_terms.covariance_estimates(terms, record_covariances(fit, design))
    return np.concatenate([fit.beta, values, tail])


def warm_start(res):
    """(theta_hat, inverse Hessian) on the engine's scale, the start of every likelihood refit; None for
    Gaussian identity fits (their profiled fit is already a one-dimensional search)."""
    from ..engine._laplace import MarginalLikelihood
    from ._intervals import _pd_inverse
    from ..engine._optimize import fd_hessian

    design = res.model.design
    if design.gaussian_identity or not res._scalar_intercept:  # slopes, several terms: from the usual start
        return None
    nagq = max(1, int(res.fit_options.get("nagq", 1) or 1))
    objective = MarginalLikelihood(design.dist, design.engine_data(), nagq=nagq)
    theta = np.concatenate([np.linalg.solve(design.scaling.matrix, np.asarray(res.params, float)),
                            [np.sqrt(res.var_re)], [np.log(res._phi)] if design.dist.has_dispersion else []])
    theta[design.X.shape[1]] = max(theta[design.X.shape[1]], 0.05)  # d/ds = 0 at s = 0: BFGS could not leave it
    with np.errstate(all="ignore"):
        return theta, _pd_inverse(fd_hessian(lambda t: objective(t), theta))


def _quick_fit(design, options, start):
    """Likelihood refit by BFGS from the original estimates (no GLM start, no standard errors)."""
    from scipy import optimize

    from ..engine._laplace import MarginalLikelihood

    theta0, hess_inv = start
    objective = MarginalLikelihood(design.dist, design.engine_data(), nagq=max(1, int(options["nagq"] or 1)))
    f0, _ = objective(theta0, need_grad=False)
    if not np.isfinite(f0):
        return None
    out = optimize.minimize(objective, theta0, jac=True, method="BFGS",
                            options={"hess_inv0": hess_inv, "gtol": 1e-5, "maxiter": 4 * options["maxiter"]})
    if not np.isfinite(out.fun) or out.status not in (0, 2):
        return None
    # far outside the original fit's sampling spread (rare events: a flat ridge towards sigma -> inf or
    # beta -> -inf, where BFGS stops anywhere): the full fit decides whether there is a maximum
    se = np.sqrt(np.maximum(np.diag(hess_inv), 1e-300))
    if not np.all(np.isfinite(out.x)) or np.max(np.abs(out.x - theta0) / se) > QUICK_TRUST:
        return None
    if design.dist.name == "binomial":  # rows fitted at probability 0 or 1: the full fit's separation check
        modes = objective.modes_at(out.x)
        if modes is None or design.dist.separated_rows(objective.data.y, modes.eta):
            return None
    p = design.X.shape[1]
    theta = out.x
    return np.concatenate([design.scaling.matrix @ theta[:p], [abs(theta[p])],
                           family_parameter(design.dist, theta[p + 1:]) if design.dist.has_dispersion else []])


def _failed(design, terms):
    """The NaN row of a failed replicate."""
    k = design.X.shape[1] + int(design.dist.has_dispersion) + sum(t.q + len(t.pairs) for t in terms)
    return np.full(k, np.nan)


def has_no_mle(design, y):
    """True when the package's own fit would refuse response y: every count 0, every Binomial row without a
    success (or a failure).  Separation is left to the refit's own check, as in the package's fit (rows
    fitted at probability 0 or 1, then the linear program of ``engine._separation``): run here on every
    replicate, that program would cost as much as the refit on large data."""
    weights = np.asarray(design.var_weights, float) * np.asarray(design.freq_weights, float)
    try:
        check_finite_mle_response(design.dist.name, y, design.trials if design.has_trials else None,
                                  design.endog_name, weights)
    except ValueError:
        return True
    return False


def refit(design, options, y, start=None, terms=None):
    """Estimates after refitting `design` with response y; NaN (a failed replicate, as bootMer's) when the
    package's own fit would refuse y (see `has_no_mle`), raises a ValueError, or does not converge."""
    from .._multiterm import fit_design

    new = dataclasses.replace(design, y=y)
    if terms is None:
        raise ValueError("refit needs the fit's terms (GLMMResults._terms)")
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            if has_no_mle(design, y):
                return _failed(design, terms)
            if start is not None and options["nagq"] != 0:  # a random intercept, not Gaussian identity
                quick = _quick_fit(new, options, start)
                if quick is not None:
                    return quick
            # Cov(beta) is not reported: the cheaper PIRLS one where the fit offers it (one factor)
            fit = fit_design(new, reml=options.get("reml", True), nagq=options["nagq"], maxiter=options["maxiter"],
                             tol=options["tol"], cov_type="hessian" if getattr(new, "terms", None) is not None
                             else "pirls")
        if not fit.converged:
            return _failed(design, terms)
        return _estimates(design, fit, terms)
    except (ValueError, FloatingPointError, ArithmeticError, np.linalg.LinAlgError):
        return _failed(design, terms)


def _run(task):
    """Worker: the replicates of one chunk, from their own seed sequences."""
    design, options, sim, seeds, start, terms = task
    return np.array([refit(design, options, sim.draw(np.random.default_rng(s), "new"), start, terms)
                     for s in seeds])


def bootstrap_samples(res, nsim=200, seed=None, n_jobs=1, progress=None):
    """DataFrame of nsim bootstrap estimates (rows) of every conf_int parameter (columns)."""
    res = unwrap(res)
    nsim = check_nsim(nsim)
    n_jobs = check_nsim(n_jobs, "n_jobs") if n_jobs != -1 else (os.cpu_count() or 1)
    if progress is None:
        progress = bool(getattr(sys.stderr, "isatty", lambda: False)())
    options = {"reml": True, "maxiter": 100, "tol": 1e-6, "nagq": 1}
    options.update(fit_options(res))
    design, sim = res.model.design, simulator(res)
    seeds = np.random.SeedSequence(seed).spawn(nsim)
    size = max(1, min(25, nsim // (4 * n_jobs) or 1))
    start = warm_start(res)
    tasks = [(design, options, sim, seeds[i:i + size], start, res._terms) for i in range(0, nsim, size)]
    out, done = [], 0
    with Progress(enabled=progress, maxiter=nsim) as monitor:
        if n_jobs == 1:
            results = map(_run, tasks)
            for chunk in results:
                out.append(chunk)
                done += len(chunk)
                monitor("bootstrap", done, np.nan)
        else:
            with ProcessPoolExecutor(max_workers=n_jobs) as pool:
                for chunk in pool.map(_run, tasks):
                    out.append(chunk)
                    done += len(chunk)
                    monitor("bootstrap", done, np.nan)
    names = _row_names(res)
    return pd.DataFrame(np.vstack(out), columns=names)


def _row_names(res):
    """conf_int's rows: "<groups> SD" for one random intercept, else per term SDs and correlations."""
    if res._scalar_intercept:
        return list(res.model.exog_names) + _intervals.extra_row_names(res)
    return _intervals_terms.row_names(res)


def bootstrap_intervals(res, alpha=0.05, nsim=200, seed=None, n_jobs=1, progress=None):
    """Percentile intervals: the alpha/2 and 1 - alpha/2 quantiles of the bootstrap estimates."""
    samples = bootstrap_samples(res, nsim=nsim, seed=seed, n_jobs=n_jobs, progress=progress)
    lower = samples.quantile(alpha / 2.0).to_numpy()
    upper = samples.quantile(1.0 - alpha / 2.0).to_numpy()
    res = unwrap(res)
    out = pd.DataFrame({"lower": lower, "upper": upper}, index=pd.Index(_row_names(res)))
    n_failed = int(samples.isna().any(axis=1).sum())
    out.attrs.update(method="boot", nsim=nsim, n_failed=n_failed)
    if n_failed:
        warnings.warn(f"{n_failed} of {nsim} bootstrap refits failed (no finite maximum-likelihood estimate: a "
                      "response with no event or separated, not converged, or refused) and are left out of the "
                      f"intervals (ci.attrs['n_failed']){'; every refit failed' if n_failed == nsim else ''}",
                      UserWarning, stacklevel=3)
    return out
