"""Simulated data sets of the random-slope reference fits (deterministic seeds); run once, outputs kept as CSV.

The lme4/glmmTMB fits of these (and of sleepstudy, cbpp, grouseticks) are made by reference.R.
"""
import os

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))


def groups(rng, n_groups, per_group):
    g = np.repeat(np.arange(n_groups), per_group)
    return g, len(g)


def main():
    rng = np.random.default_rng(20261125)
    # Gaussian, q = 3: correlated intercept and two slopes
    g, n = groups(rng, 60, 15)
    x1, x2 = rng.normal(size=n), rng.uniform(-1, 1, size=n)
    cov = np.array([[4.0, 0.8, -0.5], [0.8, 1.0, 0.1], [-0.5, 0.1, 0.64]])
    b = rng.multivariate_normal(np.zeros(3), cov, size=60)[g]
    y = 10 + 2 * x1 - x2 + b[:, 0] + b[:, 1] * x1 + b[:, 2] * x2 + rng.normal(scale=1.5, size=n)
    pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": g}).to_csv(os.path.join(HERE, "sim_q3.csv"), index=False)
    # Gaussian, singular: no slope variance in truth (the fit has |rho| = 1); its own seed
    rs = np.random.default_rng(0)
    g, n = groups(rs, 12, 8)
    x = rs.normal(size=n)
    y = 1 + 0.5 * x + rs.normal(scale=0.5, size=12)[g] + rs.normal(size=n)
    pd.DataFrame({"y": y, "x": x, "g": g}).to_csv(os.path.join(HERE, "sim_singular.csv"), index=False)
    # Binomial (Bernoulli, logit) with a correlated slope
    g, n = groups(rng, 80, 25)
    x = rng.normal(size=n)
    b = rng.multivariate_normal([0, 0], [[1.0, 0.3], [0.3, 0.5]], size=80)[g]
    eta = -0.3 + 0.8 * x + b[:, 0] + b[:, 1] * x
    y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    pd.DataFrame({"y": y, "x": x, "g": g}).to_csv(os.path.join(HERE, "sim_binomial.csv"), index=False)
    # Poisson (log) with a correlated slope
    g, n = groups(rng, 50, 20)
    x = rng.uniform(-1, 1, size=n)
    b = rng.multivariate_normal([0, 0], [[0.5, -0.2], [-0.2, 0.3]], size=50)[g]
    y = rng.poisson(np.exp(0.7 + 0.4 * x + b[:, 0] + b[:, 1] * x))
    pd.DataFrame({"y": y, "x": x, "g": g}).to_csv(os.path.join(HERE, "sim_poisson.csv"), index=False)
    # Gamma (log) with a correlated slope; its own seed
    rs = np.random.default_rng(5)
    g, n = groups(rs, 40, 15)
    x = rs.normal(size=n)
    b = rs.multivariate_normal([0, 0], [[0.3, 0.05], [0.05, 0.1]], size=40)[g]
    mu = np.exp(1.0 + 0.3 * x + b[:, 0] + b[:, 1] * x)
    y = rs.gamma(3.0, mu / 3.0)
    pd.DataFrame({"y": y, "x": x, "g": g}).to_csv(os.path.join(HERE, "sim_gamma.csv"), index=False)
    # Bernoulli with a small intercept variance and no slope variance: a boundary (singular) Laplace fit
    rs = np.random.default_rng(0)
    g, n = groups(rs, 15, 20)
    x = rs.normal(size=n)
    y = rs.binomial(1, 1 / (1 + np.exp(-(0.2 + 0.7 * x + rs.normal(scale=0.6, size=15)[g]))))
    pd.DataFrame({"y": y, "x": x, "g": g}).to_csv(os.path.join(HERE, "sim_binomial_singular.csv"), index=False)
    # Poisson (log) with q = 3: intercept and two correlated slopes; its own seed
    rs = np.random.default_rng(12)
    g, n = groups(rs, 60, 20)
    x1, x2 = rs.normal(size=n), rs.uniform(-1, 1, size=n)
    b = rs.multivariate_normal(np.zeros(3), [[0.4, 0.1, 0.0], [0.1, 0.2, -0.05], [0.0, -0.05, 0.3]], size=60)[g]
    y = rs.poisson(np.exp(0.5 + 0.3 * x1 - 0.2 * x2 + b[:, 0] + b[:, 1] * x1 + b[:, 2] * x2))
    pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": g}).to_csv(os.path.join(HERE, "sim_poisson_q3.csv"), index=False)


if __name__ == "__main__":
    main()
