"""Finite differences of a scalar function on arrays, with the step of each coordinate given by the caller."""
import numpy as np


def central_gradient(fun, x, steps):
    """g_j = (f(x + h_j e_j) - f(x - h_j e_j)) / 2 h_j."""
    grad = np.empty(len(x))
    for j in range(len(x)):
        e = np.zeros(len(x))
        e[j] = steps[j]
        grad[j] = (fun(x + e) - fun(x - e)) / (2.0 * steps[j])
    return grad


def second_differences(fun, x, steps):
    """H_ij = (f(x + h_i e_i + h_j e_j) - f(x + h_i e_i - h_j e_j) - f(x - h_i e_i + h_j e_j)
    + f(x - h_i e_i - h_j e_j)) / 4 h_i h_j, filled symmetrically."""
    k = len(x)
    H = np.empty((k, k))
    for i in range(k):
        for j in range(i, k):
            ei, ej = np.zeros(k), np.zeros(k)
            ei[i], ej[j] = steps[i], steps[j]
            value = fun(x + ei + ej) - fun(x + ei - ej) - fun(x - ei + ej) + fun(x - ei - ej)
            H[i, j] = H[j, i] = value / (4.0 * steps[i] * steps[j])
    return H
