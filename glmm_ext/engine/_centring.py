"""Centred z columns for the covariance search of a correlated term whose slope variable sits far from zero.

A term (x | g) with x = 1000 + (0..10) has, in lme4's parametrisation Lambda (Sigma = Lambda Lambda'), an
intercept variance at x = 0 millions of times the one inside the data and an intercept-slope correlation within
1e-6 of -1: the search over theta there is so badly conditioned that it stops far from the optimum (lme4's and
glmmTMB's too).  With Z M the term's columns centred (M = (I - e_k m'/c) diag(1/s), column k the constant c, m the
column means, s their SDs), the likelihood is the same function of Sigma = M Sigma_c M', so the search runs on the centred columns
and its optimum maps back exactly: Lambda = lower factor of M Lambda_c.
"""
from dataclasses import replace

import numpy as np

#: a column is centred when its mean exceeds this many standard deviations (the search on the raw columns still
#: reaches the optimum at 100, not at 300)
CENTRE_RATIO = 30.0


def centring_maps(structure):
    """Per term the q x q map M (Z M centres the far columns of a correlated term with a constant column), or
    None when no term needs one."""
    maps, needed = [], False
    for t in structure.terms:
        M = np.eye(t.q)
        if t.correlated and t.q > 1:
            Z = np.asarray(t.Z, float)
            mean, sd = Z.mean(axis=0), Z.std(axis=0)
            const = np.flatnonzero((sd <= 1e-12 * np.abs(mean)) & (mean != 0.0))
            if const.size:
                k = const[0]
                far = (sd > 0.0) & (np.abs(mean) > CENTRE_RATIO * sd)
                far[k] = False
                if far.any():
                    M[k, far] = -mean[far] / mean[k]
                    M[:, far] /= sd[far]  # and unit spread: the search steps on one scale (as `_scaled_structure`)
                    needed = True
        maps.append(M)
    return maps if needed else None


def centred_structure(structure, maps):
    """The structure with each term's columns Z M."""
    return type(structure)(tuple(t if np.array_equal(M, np.eye(t.q)) else replace(t, Z=np.asarray(t.Z, float) @ M)
                                 for t, M in zip(structure.terms, maps)))


def lower_factor(B):
    """A lower-triangular L with L L' = B B' and a non-negative diagonal (QR of B'; B may be singular)."""
    L = np.linalg.qr(np.asarray(B, float).T, mode="r").T
    signs = np.where(np.diag(L) < 0.0, -1.0, 1.0)
    return L * signs


def to_original(structure, maps, centred, params_c):
    """The covariance parameters of `structure` equal to `params_c` of the centred structure."""
    return structure.pack([lower_factor(M @ lam) for M, lam in zip(maps, centred.unpack(params_c))])


def jacobian(structure, maps, centred, params_c, step=1e-7):
    """d params / d params_c (central differences; the map is smooth where Lambda_c has a positive diagonal)."""
    k = len(params_c)
    J = np.empty((k, k))
    for j in range(k):
        h = step * max(1.0, abs(params_c[j]))
        e = np.zeros(k)
        e[j] = h
        J[:, j] = (to_original(structure, maps, centred, params_c + e)
                   - to_original(structure, maps, centred, params_c - e)) / (2.0 * h)
    return J
