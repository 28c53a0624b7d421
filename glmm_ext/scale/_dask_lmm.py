"""Exact REML / ML for Gaussian + identity on Dask: the in-memory profile on compressed sufficient statistics.

The profiled criterion (`engine._lmm`) needs, at relative SD theta, M(theta) = W + sum_j c_j S_j S_j'
with c_j = 1 / (n_j (1 + n_j theta^2)) and W, S_j the within-group cross-products and group sums of
the standardised [X y], and sum_j log(1 + n_j theta^2).  c_j depends on group j only through its size
n_j, so the groups of one size enter only through T_n = sum_{n_j = n} S_j S_j'.  Each partition
returns W and, per size, T_n (or the few S_j themselves): O(p^2) numbers per size, never rows.  On
the client, T_n = F F' (F: p + 1 columns) becomes p + 1 pseudo-groups of size n, padded with zero
sums to the number of groups of that size, which is an `LMMStats` giving every group-size term of
the exact criterion, so `engine._lmm.fit_lmm` (grid over log theta, bounded Brent, boundary check)
runs unchanged.  The BLUPs are computed on the workers at the optimum (one value per group).
"""
import time

import numpy as np
from scipy import linalg

from ..engine._lmm import SINGULAR_TOL, LMMStats, fit_lmm
from ..engine._record import one_factor_record
from ..engine._optsummary import OptSummary
from . import _dask_rows as rows_


def merge_sums(parts, k):
    """LMMStats-ready (within, sums, counts) from the partitions' `_dask_rows.lmm_sums`."""
    within = np.sum([w for w, _ in parts], axis=0)
    sizes = {}
    for _, by_size in parts:
        for size, entry in by_size.items():
            sizes.setdefault(size, []).append(entry)
    sums, counts = [], []
    for size in sorted(sizes):
        entries = sizes[size]
        n_groups = sum(g for g, _, _ in entries)
        if all(S is not None for _, S, _ in entries):  # few groups of this size: their own sums
            block = np.vstack([S for _, S, _ in entries])
        else:
            T = sum(T for _, _, T in entries if T is not None)
            T = T + sum(S.T @ S for _, S, _ in entries if S is not None)
            w, V = linalg.eigh(0.5 * (T + T.T))
            block = np.zeros((n_groups, k))
            block[:k] = (V * np.sqrt(np.clip(w, 0.0, None))).T  # F' with F F' = T, as k pseudo-groups
        sums.append(block)
        counts.append(np.full(n_groups, size))
    return within, np.vstack(sums), np.concatenate(counts)


def fit_profile_dask(model, reml=True, maxiter=100, tol=1e-6, callback=None):
    """`engine._one_factor.fit_scalar_profile` for a `DaskGLMM`: the same estimates from per-partition statistics."""
    t0 = time.perf_counter()
    prep = model._prepare()
    design, client = model.design, model.client
    scaling, y_center, y_scale = design.scaling, prep["y_center"], prep["y_scale"]
    weighted = prep["weighted"]
    args = dict(scaling=scaling, y_center=y_center, y_scale=y_scale, weighted=weighted, pure=False)
    if callback is not None:
        callback("start values", 0, np.nan)
    parts = client.gather(client.map(rows_.lmm_sums, prep["arrays"], **args))
    p = len(design.exog_names)
    within, sums, counts = merge_sums(parts, p + 1)
    n = design.n_obs if weighted else design.nobs
    fit = fit_lmm(LMMStats(within, sums, counts, n, p), reml=reml, tol=tol, maxiter=maxiter)
    if callback is not None:
        callback("REML" if reml else "ML", fit.n_evaluations, -fit.llf)
    finals = client.gather(client.map(rows_.lmm_final, prep["arrays"], theta=fit.theta, beta=fit.beta,
                                      sigma2=fit.sigma2, **args))
    blups, blup_sd = model._by_label([b for b, _ in finals], [s for _, s in finals])
    # back to the data's units, as engine._one_factor.StandardizedGaussian.back
    R = scaling.matrix
    gamma = fit.beta * y_scale
    if scaling.intercept >= 0:
        gamma[scaling.intercept] += y_center
    llf = fit.llf - (n - p if reml else n) * np.log(y_scale) + (scaling.log_abs_det if reml else 0.0)
    llf += 0.5 * prep["log_var_weights"]  # the Gaussian density's log sqrt(w_i) terms
    sigma2 = fit.sigma2 * y_scale**2
    method = f"{'REML' if reml else 'ML'} profile: log-grid + bounded Brent over theta = sigma_u/sigma_e, Dask"
    opt = OptSummary(method=method, nagq=0, maxiter=maxiter, tol=tol, initial=np.array([np.nan]),
                     final=np.array([fit.theta]), n_iterations=fit.n_evaluations, n_evaluations=fit.n_evaluations,
                     objective=-fit.llf, newton_decrement=np.nan, converged=fit.converged, message=fit.message,
                     seconds=time.perf_counter() - t0)
    return one_factor_record(
        beta=R @ gamma, cov_beta=(y_scale**2) * R @ fit.cov_beta @ R.T, cov_re=fit.theta**2 * sigma2, scale=sigma2,
        llf=llf, modes=blups * y_scale, mode_sd=blup_sd * y_scale, converged=fit.converged,
        singular=fit.theta < SINGULAR_TOL, method="REML" if reml else "ML", opt=opt, n_params=p + 2,
        group=design.group_name, z_names=("Intercept",), cov_params=fit.theta)