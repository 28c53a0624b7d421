"""Parametric bootstrap (lme4's ``bootMer``, MixedModels.jl's ``parametricbootstrap``).

Replicate k draws a response from the fitted model with new group effects (u ~ N(0, sigma_u^2)),
refits the same model by the same method and keeps (beta, sigma_u, family parameter).  Replicate
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
from ._intervals import _frame, extra_row_names
from ._progress import Progress
from ._simulate import check_nsim, simulator


def _estimates(design, fit):
    """(beta, sigma_u, sqrt(phi) | phi | alpha) of one fit, as reported by conf_int."""
    dist = design.dist
    tail = []
    if dist.name == "gaussian":
        tail = [np.sqrt(fit.scale)]
    elif dist.has_dispersion:
        tail = [fit.scale]
    return np.concatenate([fit.beta, [np.sqrt(fit.var_re)], tail])


def refit(design, options, y):
    """Estimates after refitting `design` with response y (NaN when the fit fails)."""
    from ._fitting import fit_likelihood, fit_profile

    new = dataclasses.replace(design, y=y)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            if new.gaussian_identity:
                fit = fit_profile(new, reml=options.get("reml", True), maxiter=options["maxiter"],
                                  tol=options["tol"])
            else:
                fit = fit_likelihood(new, nagq=options["nagq"], maxiter=options["maxiter"], tol=options["tol"],
                                     cov_type="pirls")
        return _estimates(design, fit)
    except (ValueError, FloatingPointError, np.linalg.LinAlgError):
        k = design.X.shape[1] + 1 + int(design.dist.has_dispersion)
        return np.full(k, np.nan)


def _run(task):
    """Worker: the replicates of one chunk, from their own seed sequences."""
    design, options, sim, seeds = task
    return np.array([refit(design, options, sim.draw(np.random.default_rng(s), "new")) for s in seeds])


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
    tasks = [(design, options, sim, seeds[i:i + size]) for i in range(0, nsim, size)]
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
    names = list(res.model.exog_names) + extra_row_names(res)
    return pd.DataFrame(np.vstack(out), columns=names)


def bootstrap_intervals(res, alpha=0.05, nsim=200, seed=None, n_jobs=1, progress=None):
    """Percentile intervals: the alpha/2 and 1 - alpha/2 quantiles of the bootstrap estimates."""
    samples = bootstrap_samples(res, nsim=nsim, seed=seed, n_jobs=n_jobs, progress=progress)
    lower = samples.quantile(alpha / 2.0).to_numpy()
    upper = samples.quantile(1.0 - alpha / 2.0).to_numpy()
    out = _frame(unwrap(res), lower, upper)
    out.attrs.update(method="boot", nsim=nsim, n_failed=int(samples.isna().any(axis=1).sum()))
    return out
