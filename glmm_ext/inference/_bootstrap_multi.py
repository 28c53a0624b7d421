"""Parametric bootstrap intervals for fits with several random-effect terms (lme4's ``bootMer``).

Replicate k draws a response with new effects for every level of every term (b ~ N(0, Sigma_k)), refits
the model by the same method and keeps beta, each term's SDs and correlations and the family parameter.
Replicate k's random numbers come from child k of ``SeedSequence(seed)`` (the same samples whatever
n_jobs).  A refit that fails or does not converge is a failed replicate: NaN, counted in ``n_failed``
and left out of the quantiles.
"""
import dataclasses
import os
import warnings
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd

from ._comparison import fit_options, unwrap
from ._intervals_terms import covariance_estimates, row_names
from .._term_view import record_covariances
from ._simulate import check_nsim, simulator


def estimates(design, fit, terms):
    """The row_names values of one refit."""
    values = list(np.asarray(fit.beta, float))
    with np.errstate(all="ignore"):
        values += covariance_estimates(terms, record_covariances(fit))
    dist = design.dist
    if dist.name == "gaussian":
        values.append(np.sqrt(fit.scale))
    elif dist.has_dispersion:
        values.append(fit.scale)
    return np.array(values, float)


def _run(task):
    from .._multiterm import fit_multi

    design, options, sim, seeds, width, terms = task
    out = []
    for seed in seeds:
        new = dataclasses.replace(design, y=sim.draw(np.random.default_rng(seed), "new"))
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                fit = fit_multi(new, reml=options.get("reml", True), nagq=options.get("nagq", 1),
                                maxiter=options.get("maxiter", 100), tol=options.get("tol", 1e-6))
            out.append(estimates(design, fit, terms) if fit.converged else np.full(width, np.nan))
        except (ValueError, FloatingPointError, np.linalg.LinAlgError):
            out.append(np.full(width, np.nan))
    return np.array(out).reshape(len(seeds), width)


def bootstrap_intervals(res, alpha=0.05, nsim=200, seed=None, n_jobs=1, progress=None):
    """Percentile intervals (lower, upper) of every row_names parameter; attrs: method, nsim, n_failed."""
    res = unwrap(res)
    nsim = check_nsim(nsim)
    n_jobs = check_nsim(n_jobs, "n_jobs") if n_jobs != -1 else (os.cpu_count() or 1)
    options = {"reml": True, "maxiter": 100, "tol": 1e-6, "nagq": 1}
    options.update(fit_options(res))
    design, sim = res.model.design, simulator(res)
    names = row_names(res)
    seeds = np.random.SeedSequence(seed).spawn(nsim)
    size = max(1, min(25, nsim // (4 * n_jobs) or 1))
    tasks = [(design, options, sim, seeds[i:i + size], len(names), res._terms) for i in range(0, nsim, size)]
    if n_jobs == 1:
        chunks = list(map(_run, tasks))
    else:
        with ProcessPoolExecutor(max_workers=n_jobs) as pool:
            chunks = list(pool.map(_run, tasks))
    samples = pd.DataFrame(np.vstack(chunks), columns=names)
    out = pd.DataFrame({"lower": samples.quantile(alpha / 2.0).to_numpy(),
                        "upper": samples.quantile(1.0 - alpha / 2.0).to_numpy()}, index=pd.Index(names))
    out.attrs.update(method="boot", nsim=nsim, n_failed=int(samples.isna().any(axis=1).sum()))
    return out
