"""Responses drawn from a fitted model (lme4's ``simulate``): with the fitted group effects kept
(``use_re="conditional"``) or new ones drawn from N(0, sigma_u^2) (``use_re="new"``).

The draw is y | eta ~ family(mu = g^{-1}(eta), phi) with eta = X beta + offset + u_group:
Gaussian N(mu, phi / v) (v the var_weights); Binomial successes ~ Bin(m, mu) (m the trials),
returned as the proportion like the model's response; Poisson(mu); Gamma with shape v/phi and mean mu; NB2 as the Poisson-Gamma
mixture Poisson(lambda), lambda ~ Gamma(shape 1/alpha, mean mu).
"""
from dataclasses import dataclass

import numpy as np
import pandas as pd

USE_RE = ("conditional", "new")


@dataclass
class Simulator:
    """What a draw needs, as plain arrays (picklable for worker processes)."""

    family: str
    link_inverse: object
    eta_fixed: np.ndarray  # X beta + offset, data row order
    codes: np.ndarray
    blups: np.ndarray
    sigma: float
    phi: float
    trials: np.ndarray
    var_weights: np.ndarray  # the dispersion of row i is phi / v_i (Gaussian, Gamma)

    def draw(self, rng, use_re="new"):
        """One simulated response vector (rows in the data's order)."""
        u = self.blups if use_re == "conditional" else rng.normal(0.0, self.sigma, size=len(self.blups))
        mu = self.link_inverse(self.eta_fixed + u[self.codes])
        m = self.trials
        if self.family == "gaussian":
            return rng.normal(mu, np.sqrt(self.phi / (m * self.var_weights)))
        if self.family == "binomial":
            mu = np.clip(mu, 0.0, 1.0)
            return rng.binomial(m.astype(np.int64), mu) / m
        if self.family == "poisson":
            return rng.poisson(mu).astype(float)
        if self.family == "gamma":
            shape = self.var_weights / self.phi
            return rng.gamma(shape, mu / shape)
        if self.family == "negativebinomial":
            shape = 1.0 / self.phi
            return rng.poisson(rng.gamma(shape, mu / shape)).astype(float)
        raise ValueError(f"no simulation for the {self.family} family")


def simulator(res):
    """The Simulator of a fit."""
    from ._comparison import require_random_intercept

    require_random_intercept(res, "simulation (simulate, bootstrap, quantile residuals)")
    model = res.model
    design = model.design
    return Simulator(family=design.dist.name, link_inverse=design.dist.link.inverse,
                     eta_fixed=model.predict(np.asarray(res.params, float), which="linear"),
                     codes=design.codes, blups=np.asarray(res.blups, float), sigma=float(np.sqrt(res.var_re)),
                     phi=float(res.scale), trials=np.asarray(design.trials, float),
                     var_weights=np.asarray(design.var_weights, float))


def check_use_re(use_re):
    if use_re not in USE_RE:
        raise ValueError(f"use_re must be one of {', '.join(USE_RE)} (got {use_re!r})")
    return use_re


def check_nsim(nsim, what="nsim"):
    import numbers

    if isinstance(nsim, bool) or not isinstance(nsim, numbers.Integral) or nsim < 1:
        raise ValueError(f"{what} must be a whole number >= 1 (got {nsim!r})")
    return int(nsim)


def simulate(res, nsim=1, seed=None, use_re="conditional"):
    """DataFrame of `nsim` simulated responses (columns sim_1 ... sim_nsim), indexed like the data's rows.

    A Binomial model with trials returns proportions (successes / trials), like its response.
    """
    nsim = check_nsim(nsim)
    use_re = check_use_re(use_re)
    sim = simulator(res)
    rng = np.random.default_rng(seed)
    values = np.column_stack([sim.draw(rng, use_re) for _ in range(nsim)])
    return pd.DataFrame(values, index=res.model.design.index, columns=[f"sim_{k + 1}" for k in range(nsim)])
