"""Responses drawn from a fitted model (lme4's ``simulate``): with the fitted group effects kept
(``use_re="conditional"``, or True as lme4's ``use.u=TRUE``) or new ones drawn from N(0, sigma_u^2)
(``use_re="new"``, or False).  Each level has its matching predictor: the conditional mean (with the
BLUPs) for conditional draws, the population-level mean g^{-1}(X beta + offset) for new group effects.

Each term k (one for a one-factor model) has a vector b_kj of q_k effects per level: "conditional" keeps
the BLUP vectors, "new" draws b_kj ~ N(0, Sigma_k) as L_k e (Sigma_k = L_k L_k', e standard normal; a
singular Sigma_k through its eigen-decomposition), and eta_i = x_i' beta + offset_i + sum_k z_ik' b_k,j(i).

The draw is y | eta ~ family(mu = g^{-1}(eta), phi) with eta = X beta + offset + u_group:
Gaussian N(mu, phi / v) (v the var_weights); Binomial successes ~ Bin(m, mu) (m the trials),
returned as the proportion (or as successes and failures for a two-column response); Poisson(mu); Gamma with shape v/phi and mean mu; NB2 as the Poisson-Gamma
mixture Poisson(lambda), lambda ~ Gamma(shape 1/alpha, mean mu).
"""
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._term_view import term_rows

USE_RE = ("conditional", "new")


@dataclass
class Simulator:
    """What a draw needs, as plain arrays (picklable for worker processes): per random-effect term (one for a
    one-factor model) its codes, z columns (n, q), modes (L, q) and covariance factor L_k (L_k L_k' = Sigma_k);
    "new" draws every level of every term afresh, b = L_k e with e standard normal."""

    family: str
    link_inverse: object
    eta_fixed: np.ndarray  # X beta + offset, data row order
    phi: float
    trials: np.ndarray
    var_weights: np.ndarray  # the dispersion of row i is phi / v_i (Gaussian, Gamma)
    terms: list  # per term (codes (n,), Z (n, q), modes (L, q), covariance factor (q, q))

    def group_effects(self, rng, use_re="new"):
        """Per term the effects used by one draw: the modes, or new ones from N(0, Sigma_k)."""
        if check_use_re(use_re) == "conditional":
            return [modes for _, _, modes, _ in self.terms]
        return [rng.standard_normal(modes.shape) @ factor.T for _, _, modes, factor in self.terms]

    def linear_predictor(self, effects):
        """eta = X beta + offset + sum over terms of z_ik' b_k,level(i)."""
        eta = np.array(self.eta_fixed, dtype=float)
        for (codes, Z, _, _), b in zip(self.terms, effects):
            eta += np.einsum("nq,nq->n", Z, b[codes])
        return eta

    def conditional_mean(self):
        """mu at the BLUPs (the fitted values)."""
        return self.link_inverse(self.linear_predictor(self.group_effects(None, "conditional")))

    def population_mean(self):
        """mu at zero group effects, g^{-1}(X beta + offset): the fixed part only."""
        return self.link_inverse(self.eta_fixed)

    def predictor(self, use_re):
        """The mean on the level that `use_re` simulates: population-level for "new" group effects
        (the BLUPs are redrawn, so they are no part of the prediction), conditional for "conditional"."""
        return self.conditional_mean() if check_use_re(use_re) == "conditional" else self.population_mean()

    def draw(self, rng, use_re="new"):
        """One simulated response vector (rows in the data's order)."""
        mu = self.link_inverse(self.linear_predictor(self.group_effects(rng, use_re)))
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


def covariance_factor(cov):
    """L with L L' = cov for a positive semi-definite cov (Cholesky, else the eigen-decomposition)."""
    cov = np.asarray(cov, float)
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:  # singular fit: a variance at 0 or a correlation of +-1
        values, vectors = np.linalg.eigh(cov)
        return vectors * np.sqrt(np.clip(values, 0.0, None))


def simulator(res):
    """The Simulator of a fit (any random-effects structure)."""
    model = res.model
    design = model.design
    terms = []
    for k, t in enumerate(res._terms):
        Z, codes = term_rows(res, k)
        terms.append((np.asarray(codes), np.asarray(Z, float), np.asarray(t.modes, float), covariance_factor(t.cov)))
    return Simulator(family=design.dist.name, link_inverse=design.dist.link.inverse,
                     eta_fixed=model.predict(np.asarray(res.params, float), which="linear"), phi=res._phi,
                     trials=np.asarray(design.trials, float), var_weights=np.asarray(design.var_weights, float),
                     terms=terms)


def check_use_re(use_re):
    """"conditional" or "new"; True / False are accepted as lme4's ``use.u`` (True keeps the fitted effects)."""
    if use_re is True or use_re is False:
        return "conditional" if use_re else "new"
    if not isinstance(use_re, str) or use_re not in USE_RE:
        raise ValueError(f"use_re must be one of {', '.join(USE_RE)} (or True / False; got {use_re!r})")
    return use_re


def check_nsim(nsim, what="nsim"):
    import numbers

    if isinstance(nsim, bool) or not isinstance(nsim, numbers.Integral) or nsim < 1:
        raise ValueError(f"{what} must be a whole number >= 1 (got {nsim!r})")
    return int(nsim)


def simulate(res, nsim=1, seed=None, use_re="conditional"):
    """DataFrame of `nsim` simulated responses (columns sim_1 ... sim_nsim), indexed like the data's rows.

    A Binomial response given as ``successes + failures`` gives counts as lme4's simulate of a
    ``cbind`` response: two integer columns per draw, ``(sim_k, successes)`` and ``(sim_k, failures)``
    (a MultiIndex); a proportion response with ``weights=`` trials gives proportions, like its response.
    ``use_re="new"`` (or False) draws new group effects, N(0, sigma_u^2) or with random slopes
    N(0, Sigma) per group; ``"conditional"`` (or True, lme4's ``use.u=TRUE``) keeps the fitted BLUPs
    (vectors with random slopes).
    """
    nsim = check_nsim(nsim)
    use_re = check_use_re(use_re)
    sim = simulator(res)
    rng = np.random.default_rng(seed)
    values = np.column_stack([sim.draw(rng, use_re) for _ in range(nsim)])
    names = [f"sim_{k + 1}" for k in range(nsim)]
    pair = _two_column_response(res)
    if pair is not None:
        return _as_counts(values, sim.trials, pair, names, res.model.design.index)
    return pd.DataFrame(values, index=res.model.design.index, columns=names)


def _two_column_response(res):
    """The (successes, failures) names of a "successes + failures ~ ..." response, else None."""
    names = getattr(res.model.data, "ynames", None)
    if res.model.design.dist.name == "binomial" and isinstance(names, (list, tuple)) and len(names) == 2:
        return [str(n) for n in names]
    return None


def _as_counts(proportions, trials, pair, names, index):
    """Simulated successes and failures (integers) per draw, as lme4's simulate of a cbind response:
    columns (sim_k, successes name), (sim_k, failures name)."""
    m = np.round(trials).astype(np.int64)[:, None]
    successes = np.round(proportions * m).astype(np.int64)
    data = np.stack([successes, m - successes], axis=2).reshape(len(index), -1)
    columns = pd.MultiIndex.from_product([names, pair])
    return pd.DataFrame(data, index=index, columns=columns)
