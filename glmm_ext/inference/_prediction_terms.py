"""Predictions conditional on the random effects, for any random-effects structure (the per-term view).

For row i, eta_i = x_i' beta + offset_i + sum_k z_ik' b_k,j(i) over the terms predicted on (a level not in
the fit contributes 0, with a warning, or raises), and

    Var(eta_i) = (x_i - K_j' z_i)' Cov(beta) (x_i - K_j' z_i) + sum_k z_ik' Var(b_k,j | y) z_ik,

Var(b_kj | y) the conditional covariance of the level's modes (lme4's condVar).  For a one-factor model
K_j = (Sigma^-1 + Z_j' W Z_j)^-1 Z_j' W X_j (p x q rows of group j, W the working weights at the modes,
1 / sigma_e^2 for Gaussian + identity) is how the BLUP moves against beta-hat, which makes the variance
Henderson's prediction-error variance of x'beta-hat + z'b-hat_j: exact for Gaussian + identity given the
variances, its linearised form otherwise (for one random intercept
K_j = sigma_u^2 sum_j w x / (1 + sigma_u^2 sum_j w)).  With several terms the cross term would need the
whole joint system; it is left out (K = 0), so the variance is x' Cov(beta) x plus the conditional variances.

``groups``: one factor -- the group labels of the new rows (None: population level); several terms -- which
terms to predict on (None / True: every term, False: none, or a list of term keys), the labels being read
from the new data's grouping columns.
"""
import warnings

import numpy as np
import pandas as pd

from .._term_view import conditional_covariances, per_term, term_rows


def _selected(res, groups):
    keys = [t.key for t in res._terms]
    if groups is None or groups is True:
        return list(range(len(keys)))
    if groups is False:
        return []
    chosen = [groups] if isinstance(groups, str) else list(groups)
    unknown = [g for g in chosen if g not in keys]
    if unknown:
        raise ValueError(f"groups: {unknown[0]!r} is not a random-effect term (terms: {', '.join(keys)})")
    return [keys.index(g) for g in chosen]


def _several_terms_parts(res, exog, groups, new_groups):
    """For each selected term: (k, Z rows, codes: float, NaN for a missing label, -1 for an unseen level)."""
    multi = res.model.random_design
    if not isinstance(exog, pd.DataFrame) or multi is None:
        raise ValueError("predictions with several random-effect terms need the new data as a DataFrame holding the "
                         "grouping factors' columns (a model from a formula); groups=False gives population-level "
                         "predictions")
    out, unseen_terms = [], []
    for k in _selected(res, groups):
        spec = multi.terms[k].spec
        absent = [f for f in spec.factors if f not in exog.columns]
        if absent:
            raise ValueError(f"the new data lack the grouping column {absent[0]!r} of the term "
                             f"({spec.expr} | {spec.group}); give it, or groups=[...] naming the terms to include")
        labels = np.asarray(multi.labels_of(k, exog), dtype=object)
        codes, unseen = _codes(res._terms[k].levels, labels)
        if unseen.any():
            names = list(dict.fromkeys(labels[unseen]))
            if new_groups == "error":
                raise ValueError(f"{len(names)} levels of {spec.group} are not in the fitted data: "
                                 f"{', '.join(map(repr, names[:5]))}")
            unseen_terms.append(f"{spec.group} ({len(names)}: {', '.join(map(repr, names[:3]))}"
                                f"{' ...' if len(names) > 3 else ''})")
        Z = multi.z_matrix(k, exog[[c for c in exog.columns]])
        if len(Z) != len(codes):
            raise ValueError("the new data's random-effects columns have missing values in rows the fixed part uses")
        out.append((k, Z, codes))
    if unseen_terms:
        warnings.warn(f"levels not in the fitted data contribute 0 (a population-level prediction for that term): "
                      f"{'; '.join(unseen_terms)}", UserWarning, stacklevel=5)
    return out


def _codes(levels, labels):
    """Codes of `labels` among `levels` as floats: NaN for a missing label, -1 for one not in the fit."""
    lookup = pd.Series(np.arange(len(levels)), index=pd.Index(levels))
    if not lookup.index.is_unique:
        lookup = lookup[~lookup.index.duplicated()]
    series = pd.Series(labels)
    codes = np.array(series.map(lookup).to_numpy(dtype=float, na_value=np.nan), dtype=float)
    unseen = np.isnan(codes) & ~pd.isna(series).to_numpy()
    codes[unseen] = -1
    return codes, unseen


def _one_factor_z(res, exog, n):
    """The one factor's z rows for new data (ones for a random intercept)."""
    term = res._terms[0]
    if term.z_names == ("Intercept",):
        return np.ones((n, 1))
    model = res.model
    if model.random_design is None or not model.random_design.design_infos or not isinstance(exog, pd.DataFrame):
        raise ValueError("predicting random slopes for new rows needs exog as a DataFrame holding the "
                         "random-effects terms' columns (a model from a formula)")
    return model.random_design.matrix(exog)


def _one_factor_effects(res, Z, labels, n, new_groups):
    """sum_j Z_j b_j(group) by the model's group lookup (an unseen group: 0 with one warning, or an error)."""
    model, term = res.model, res._terms[0]
    effects = np.zeros(n)
    for j in range(term.q):
        with warnings.catch_warnings():
            if j:  # an unseen group is reported once, not once per column
                warnings.simplefilter("ignore")
            values = model.group_effects(labels, dict(zip(term.levels, term.modes[:, j])), n, new_groups)
        effects = effects + (values if term.q == 1 and term.z_names == ("Intercept",) else Z[:, j] * values)
    return effects


def linear_parts(res, rows, exog, groups=None, new_groups="zero"):
    """(eta, [(k, Z, codes)] of the terms predicted on, X): the linear predictor with the random part of the
    selected terms, and each such term's z rows and level codes on the rows (for the variances)."""
    model = res.model
    params = np.asarray(res.params, float)
    several = per_term(res)
    if rows.X is None:  # the fitted rows, conditional on their own levels
        eta = model.predict(params, which="linear")
        chosen = _selected(res, groups) if several else ([0] if groups is not False else [])
        parts = []
        for k in chosen:
            Z, codes = term_rows(res, k)
            parts.append((k, Z, np.asarray(codes, float)))
            t = res._terms[k]
            eta = eta + (t.modes[codes, 0] if t.z_names == ("Intercept",) else
                         np.einsum("nq,nq->n", Z, t.modes[codes]))
        return eta, parts, model.design.X
    eta = model.predict(params, rows.X, offset=rows.offset, which="linear")
    n = len(eta)
    if several:
        parts = [] if groups is False else _several_terms_parts(res, exog, groups, new_groups)
        for k, Z, codes in parts:
            t = res._terms[k]
            ok = np.isfinite(codes) & (codes >= 0)
            contrib = np.full(n, np.nan)
            contrib[np.isfinite(codes)] = 0.0
            contrib[ok] = np.einsum("nq,nq->n", Z[ok], t.modes[codes[ok].astype(np.intp)])
            eta = eta + contrib
        return eta, parts, rows.X
    if rows.groups is None:
        return eta, [], rows.X
    Z = _one_factor_z(res, exog, n)
    eta = eta + _one_factor_effects(res, Z, rows.groups, n, new_groups)
    codes, _ = _codes(res._terms[0].levels, np.asarray(rows.groups, dtype=object))
    return eta, [(0, Z, codes)], rows.X


def predict(res, rows, exog, which="mean", groups=None, new_groups="zero"):
    """Predictions for `rows` (``_prediction.NewData``) on the response scale or the linear predictor."""
    eta, _, _ = linear_parts(res, rows, exog, groups, new_groups)
    return eta if which == "linear" else res.model.dist.mean(eta)


def get_prediction(res, exog=None, transform=True, groups=None, offset=None, exposure=None, new_groups="zero"):
    """PredictionResults with the variance of the module docstring."""
    from ._prediction import PredictionResults, new_data

    rows = new_data(res, exog, transform, None if per_term(res) else groups, offset, exposure)
    eta, parts, X = linear_parts(res, rows, exog, groups, new_groups)
    if per_term(res) and parts and res.model.design.gaussian_identity:
        var = _gaussian_prediction_variance(res, parts, np.asarray(X, float))
        return PredictionResults(res.model.dist, eta, np.sqrt(var), rows.index)
    D = np.array(X, dtype=float)
    cond = np.zeros(len(eta))
    covs = conditional_covariances(res) if parts else None
    for k, Z, codes in parts:
        ok = np.isfinite(codes) & (codes >= 0)
        idx = codes[ok].astype(np.intp)
        cond[ok] += np.einsum("nq,nqr,nr->n", Z[ok], covs[k][idx], Z[ok])
        if not per_term(res):
            K = _loadings(res)
            if K is not None:
                D[ok] -= np.einsum("nq,nqp->np", Z[ok], K[idx])
    var = np.einsum("ij,jk,ik->i", D, np.asarray(res.cov_params_fe, float), D) + cond
    return PredictionResults(res.model.dist, eta, np.sqrt(var), rows.index)


def _loadings(res):
    """K_j (q x p) by group code for a one-factor model (None once the data are removed); see the module."""
    from ..engine._segments import group_sums

    design = res.model.design
    if design.X is None:
        return None
    term = res._terms[0]
    Z, codes = term_rows(res, 0)
    eta = design.X @ np.asarray(res.params, float) + design.offset + np.einsum("nq,nq->n", Z, term.modes[codes])
    w = design.dist.working_weights(eta, design.prior_weights * design.freq_weights, res._phi)
    o = design.order
    if term.q == 1 and term.z_names == ("Intercept",):  # sigma_u^2 sum w x / (1 + sigma_u^2 sum w)
        var = float(term.cov[0, 0])
        weighted = group_sums((design.X * w[:, None])[o], design.starts)
        total = group_sums(w[o], design.starts)
        return (weighted * (var / (1.0 + var * total))[:, None])[:, None, :]
    q, p = term.q, design.X.shape[1]
    ZWX = group_sums((np.einsum("nq,np->nqp", Z, design.X) * w[:, None, None]).reshape(len(w), q * p)[o],
                     design.starts).reshape(-1, q, p)
    ZWZ = group_sums((np.einsum("nq,nr->nqr", Z, Z) * w[:, None, None]).reshape(len(w), q * q)[o],
                     design.starts).reshape(-1, q, q)
    # Sigma (I + Z'WZ Sigma)^-1 Z'WX: no inverse of Sigma, so a singular covariance is fine
    A = np.eye(q)[None] + ZWZ @ term.cov
    return term.cov[None] @ np.linalg.solve(A, ZWX)


def _gaussian_prediction_variance(res, parts, X, chunk=256):
    """Henderson's prediction-error variance of x'beta-hat + sum_k z_k'b-hat_k for a Gaussian identity model of
    any structure: sigma^2 ||L^-1 [Lambda'z; x]||^2, L the blocked Cholesky factor of the mixed-model
    equations [[Lambda'Z'Z Lambda + I, Lambda'Z'X], [X'Z Lambda, X'X]] at the estimates (the leading block of
    the engine's factor of [Z Lambda, X, y]).  Unseen levels contribute nothing; NaN rows stay NaN."""
    from scipy import linalg

    from ._intervals_terms import TermsDeviance, psi_hat

    dev = TermsDeviance(res)
    p = len(res.params)
    sigma = float(np.sqrt(res.scale))
    lams = dev.lambdas(psi_hat(res)[p:p + dev.n_omega], sigma)
    fac, lams_engine = dev.prof.factor(dev.structure.pack(lams))
    layout = dev.prof.layout
    # the view terms' rows of each engine term: (position in the engine's order, view term, z columns)
    placed = {k: [] for k, _ in dev.columns}
    for e, (k, cols) in enumerate(dev.columns):
        placed[k].append((layout.order.index(e), cols))
    n = X.shape[0]
    out = np.full(n, np.nan)
    finite = np.all(np.isfinite(X), axis=1)
    for start in range(0, n, chunk):
        rows = np.arange(start, min(n, start + chunk))
        G = np.zeros((layout.n_random, len(rows)))
        for k, Z, codes in parts:
            ok = np.isfinite(codes[rows]) & (codes[rows] >= 0)
            for pos, cols in placed[k]:
                q = layout.q[pos]
                lam = lams_engine[pos]
                vals = Z[rows][:, cols] @ lam  # (Lambda' z)' per row
                base = layout.offsets[pos] + codes[rows][ok].astype(np.intp) * q
                for r in range(q):
                    G[base + r, np.flatnonzero(ok)] += vals[ok, r]
        n1, nR = layout.n1, layout.nR
        G1, GR = G[:n1], G[n1:]
        q1 = layout.q[0]
        if q1 == 1:
            Y1 = G1 * fac.L11inv[:, 0, 0][:, None]
        else:
            Y1 = np.einsum("jab,jbm->jam", fac.L11inv, G1.reshape(-1, q1, len(rows))).reshape(n1, len(rows))
        YR = np.zeros((0, len(rows)))
        if nR:
            YR = linalg.solve_triangular(fac.LRR, GR - fac.LR1 @ Y1, lower=True, check_finite=False)
        XF = np.vstack([X[rows].T, np.zeros((1, len(rows)))])  # the factor's F columns are [X, y]
        rhs = XF - fac.LF1 @ Y1 - (fac.LFR @ YR if nR else 0.0)
        YF = linalg.solve_triangular(fac.LFF, np.nan_to_num(rhs), lower=True, check_finite=False)[:p]
        out[rows] = res.scale * (np.sum(Y1 ** 2, axis=0) + np.sum(YR ** 2, axis=0) + np.sum(YF ** 2, axis=0))
    out[~finite] = np.nan
    for _, _, codes in parts:  # a missing level label: no prediction
        out[np.isnan(codes)] = np.nan
    return out
