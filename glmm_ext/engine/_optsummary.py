"""One record of an optimisation: settings, start and end points, counts and return status."""
from dataclasses import dataclass, field

import numpy as np


@dataclass
class OptSummary:
    """What the optimiser was asked to do and what it did (carried by every results object).

    Parameters are on the engine's internal scale (scaled predictors; for the Gaussian profile the
    relative SD theta = sigma_u / sigma_e; otherwise (gamma, sigma_u[, log phi])).
    """

    method: str
    nagq: int
    maxiter: int
    tol: float
    initial: np.ndarray = field(repr=False)
    final: np.ndarray = field(repr=False)
    n_iterations: int = 0
    n_evaluations: int = 0
    objective: float = np.nan  # final -log-likelihood on the engine's scale
    newton_decrement: float = np.nan  # g' H^{-1} g / 2: estimated distance to the optimum in log-likelihood
    converged: bool = False
    message: str = ""
    seconds: float = 0.0
    notes: list = field(default_factory=list)  # e.g. statsmodels fit() options that were mapped or ignored
    #: the global check after the local optimum (Laplace/AGQ): sigma_u values probed, their profile
    #: log-likelihoods, whether the search restarted from a better one, and AGQ(9) - Laplace there
    sigma_profile: dict = field(default=None, repr=False)

    def __str__(self):
        rows = [
            ("Method", self.method),
            ("Quadrature nodes (nagq)", self.nagq),
            ("Max iterations / tolerance", f"{self.maxiter} / {self.tol:g}"),
            ("Iterations / evaluations", f"{self.n_iterations} / {self.n_evaluations}"),
            ("Newton decrement", f"{self.newton_decrement:.3g}"),
            ("Converged", self.converged),
            ("Message", self.message),
            ("Seconds", f"{self.seconds:.3f}"),
        ] + [("Note", note) for note in self.notes]
        if self.sigma_profile:
            probe = self.sigma_profile
            grid = ", ".join(f"{s:.3g}" for s in probe["sigma"])
            rows.append(("sigma_u probed", f"{grid} (restarted: {probe['restarted']})"))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
