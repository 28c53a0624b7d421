"""Gauss-Hermite rules for the adaptive quadrature of each group's one-dimensional integral."""
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=32)
def gauss_hermite(k):
    """Nodes z and log-weights of the k-point rule for  int f(z) exp(-z^2) dz ~ sum_k w_k f(z_k).

    k = 1 is the Laplace approximation (z = 0, w = sqrt(pi)).
    """
    if k == 1:
        z, w = np.zeros(1), np.full(1, np.sqrt(np.pi))
    else:
        z, w = np.polynomial.hermite.hermgauss(k)
    z.setflags(write=False)
    logw = np.log(w)
    logw.setflags(write=False)
    return z, logw
