"""The random-effects structure of a mixed model: a list of lme4 bar terms and the ONE parameter packer.

Every term k has a grouping factor with n_k levels and q_k z columns; its random effects b_kj (one
q_k-vector per level j) are N(0, Sigma_k), written as b_kj = Lambda_k u_kj with u ~ N(0, scale I)
(lme4's relative covariance factor, Bates et al. 2015, section 2):

    Sigma_k = scale * Lambda_k Lambda_k',   Lambda_k lower triangular (correlated term, ``(x|g)``),
                                           or diagonal (``(x||g)``).

``scale`` is the residual variance sigma^2 for the Gaussian identity model (whose profiled deviance
needs the relative factor) and 1 for every other family, dispersion families included (Gamma,
Gaussian-log, NB2): as in the one-term engine, their random effects live on the eta scale, so
Lambda_k Lambda_k' is their covariance itself and the dispersion enters only the density.

The optimiser's covariance vector is the concatenation over terms (in the user's order) of each
Lambda_k's free entries: the lower triangle column by column (lme4's theta order) for a correlated
term, the diagonal for a diagonal one.  Diagonal entries are bounded below by 0 (`lower_bounds`).
"""
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ReTerm:
    """One lme4 bar term: a grouping factor and the term's z columns.

    Attributes
    ----------
    group : str
        Display name, e.g. ``"Subject"`` or ``"Block:Variety"``.
    codes : ndarray of int64, shape (n,)
        Level index 0..n_levels-1 of each used row.
    n_levels : int
        Number of levels of the factor.
    Z : ndarray of float64, shape (n, q)
        The term's z columns (a column of ones for a random intercept).
    z_names : tuple of str
        Names of the z columns, e.g. ``("Intercept", "Days")``.
    correlated : bool
        True: unstructured q x q covariance (``(x|g)``); False: diagonal (``(x||g)``).
    """

    group: str
    codes: np.ndarray
    n_levels: int
    Z: np.ndarray
    z_names: tuple
    correlated: bool = True

    @property
    def q(self) -> int:
        """Number of z columns."""
        return int(np.shape(self.Z)[1])

    @property
    def n_theta(self) -> int:
        """Free entries of Lambda_k: q(q+1)/2 (correlated) or q (diagonal)."""
        q = self.q
        return q * (q + 1) // 2 if self.correlated and q > 1 else q

    def theta_positions(self):
        """(rows, cols) of Lambda_k's free entries in the packer's order (lower triangle column-wise)."""
        q = self.q
        if not self.correlated or q == 1:
            return np.arange(q), np.arange(q)
        rows, cols = [], []
        for c in range(q):
            for r in range(c, q):
                rows.append(r)
                cols.append(c)
        return np.array(rows), np.array(cols)


@dataclass(frozen=True)
class ReStructure:
    """The random-effects terms of a model, in the user's order (the engine reorders them internally).

    Attributes
    ----------
    terms : tuple of ReTerm
    """

    terms: tuple

    def __post_init__(self):
        if len(self.terms) == 0:
            raise ValueError("a random-effects structure needs at least one term")
        n = None
        for term in self.terms:
            codes, Z = np.asarray(term.codes), np.asarray(term.Z)
            if Z.ndim != 2 or Z.shape[1] < 1:
                raise ValueError(f"term {term.group!r}: Z must be an (n, q) array with q >= 1, got shape {Z.shape}")
            if codes.ndim != 1 or codes.shape[0] != Z.shape[0]:
                raise ValueError(f"term {term.group!r}: codes ({codes.shape}) and Z ({Z.shape}) disagree on rows")
            if n is not None and codes.shape[0] != n:
                raise ValueError(f"term {term.group!r} has {codes.shape[0]} rows, another term {n}")
            n = codes.shape[0]
            if term.n_levels < 1 or (codes.size and (codes.min() < 0 or codes.max() >= term.n_levels)):
                raise ValueError(f"term {term.group!r}: codes must lie in 0..n_levels-1 = {term.n_levels - 1}")
            if not np.isfinite(np.sum(Z)) and not np.all(np.isfinite(Z)):  # (a finite sum: all finite)
                raise ValueError(f"term {term.group!r}: its z columns hold non-finite values")
            if len(term.z_names) != Z.shape[1]:
                raise ValueError(f"term {term.group!r}: {len(term.z_names)} z names for {Z.shape[1]} columns")

    @property
    def n_rows(self) -> int:
        return int(np.shape(self.terms[0].codes)[0])

    @property
    def n_cov_params(self) -> int:
        """Length of the optimiser's covariance vector (sum over terms of q(q+1)/2 or q)."""
        return int(sum(t.n_theta for t in self.terms))

    @property
    def n_random(self) -> int:
        """Total number of random effects, sum over terms of n_levels * q."""
        return int(sum(t.n_levels * t.q for t in self.terms))

    def _slices(self):
        out, start = [], 0
        for t in self.terms:
            out.append(slice(start, start + t.n_theta))
            start += t.n_theta
        return out

    def unpack(self, params) -> list:
        """Per-term lower-triangular relative factors Lambda_k (q_k x q_k) from the covariance vector."""
        params = np.asarray(params, float)
        if params.shape != (self.n_cov_params,):
            raise ValueError(f"expected {self.n_cov_params} covariance parameters, got shape {params.shape}")
        lams = []
        for term, sl in zip(self.terms, self._slices()):
            lam = np.zeros((term.q, term.q))
            rows, cols = term.theta_positions()
            lam[rows, cols] = params[sl]
            lams.append(lam)
        return lams

    def pack(self, lams) -> np.ndarray:
        """The covariance vector of per-term factors Lambda_k (entries off the free pattern are ignored)."""
        out = []
        for term, lam in zip(self.terms, lams):
            rows, cols = term.theta_positions()
            out.append(np.asarray(lam, float)[rows, cols])
        return np.concatenate(out)

    def pack_covariances(self, covs, scale=1.0) -> np.ndarray:
        """The covariance vector for per-term covariances Sigma_k (data units): Lambda_k = chol(Sigma_k / scale);
        a diagonal term takes the square roots of the diagonal.  A singular Sigma_k gets a pivot of 0."""
        lams = []
        for term, cov in zip(self.terms, covs):
            cov = np.asarray(cov, float) / scale
            if not term.correlated or term.q == 1:
                lams.append(np.diag(np.sqrt(np.clip(np.diag(cov), 0.0, None))))
                continue
            lam = np.zeros_like(cov)
            for c in range(term.q):  # Cholesky that tolerates zero pivots (a singular covariance)
                v = cov[c, c] - lam[c, :c] @ lam[c, :c]
                lam[c, c] = np.sqrt(max(v, 0.0))
                for r in range(c + 1, term.q):
                    lam[r, c] = 0.0 if lam[c, c] == 0.0 else (cov[r, c] - lam[r, :c] @ lam[c, :c]) / lam[c, c]
            lams.append(lam)
        return self.pack(lams)

    def lower_bounds(self) -> np.ndarray:
        """0 for the diagonal entries of each Lambda_k, -inf for the others."""
        out = []
        for term in self.terms:
            rows, cols = term.theta_positions()
            out.append(np.where(rows == cols, 0.0, -np.inf))
        return np.concatenate(out)

    def covariances(self, params, scale=1.0) -> list:
        """Per-term q x q covariances in data units, scale * Lambda_k Lambda_k'."""
        return [scale * lam @ lam.T for lam in self.unpack(params)]

    def singular(self, params, tol=1e-4) -> list:
        """Per term: True when a relative SD (Lambda_k's row norm) is below `tol` or a correlation is at +-1
        (a diagonal entry of Lambda_k below `tol` times its row, or |correlation| > 1 - 1e-6)."""
        out = []
        for lam in self.unpack(params):
            row_norms = np.sqrt(np.sum(lam * lam, axis=1))
            flag = bool(np.any(row_norms < tol))
            if not flag and lam.shape[0] > 1:
                flag = bool(np.any(np.abs(np.diag(lam)) < tol * np.maximum(row_norms, 1.0)))
                cov = lam @ lam.T
                sd = np.sqrt(np.diag(cov))
                corr = cov / np.outer(sd, sd)
                flag = flag or bool(np.any(np.abs(corr[np.triu_indices(len(sd), 1)]) > 1.0 - 1e-6))
            out.append(flag)
        return out

    def start_params(self) -> np.ndarray:
        """lme4's start: identity relative factors (1 on the diagonal, 0 elsewhere)."""
        return self.pack([np.eye(t.q) for t in self.terms])

    def check_identifiable(self, n_obs):
        """ValueError when the random effects cannot be estimated: a term with one level, or more random
        effects in one term than observations (``n_obs``: Bernoulli trials for a Binomial with trials)."""
        for term in self.terms:
            if term.n_levels < 2:
                raise ValueError(f"random-effects term for {term.group!r} has {term.n_levels} level: a variance "
                                 "needs at least 2 levels")
            if term.n_levels * term.q >= n_obs and term.q > 1:
                raise ValueError(f"random-effects term for {term.group!r} has {term.n_levels * term.q} random "
                                 f"effects for {n_obs} observations: its covariance cannot be identified")
