"""Prior weights on the general engine: statsmodels GLM's ``var_weights`` v and ``freq_weights`` f.

A row with var_weights v has the density with dispersion phi / v (Gaussian, Gamma) or raised to the power v
(Binomial: v multiplies the trials; Poisson, NB2).  A row with freq_weights f counts f times: its log density
is multiplied by f, so an integer f gives exactly the fit of the data with the row repeated f times (the
copies share the row's random effects).  Non-integer f keep that meaning (statsmodels GLM's).

The eta-dependent part of every family's log density is linear in its weight, so the engine's per-row weight
is m = trials v f.  What is not linear:

* the data-only constant: Binomial log C(t v, t v y) is multiplied by f, not re-evaluated at t v f;
* Gaussian and Gamma (dispersion) densities: f log f(y; phi / v) - log f(y; phi / (f v)) does not depend on
  eta (`FrequencyTerm`), a function of phi added to the log-likelihood;
* the Gaussian identity profile: the residual degrees of freedom count sum(f) observations, and the
  density's log sqrt(v) terms are sum f log v (`gaussian_weights`).
"""
import numpy as np


def is_filled(values):
    """`values` is one number seen n times (a `filled` view, or any 0-stride row array)."""
    return isinstance(values, np.ndarray) and values.ndim == 1 and values.strides == (0,)


def differs(values, value):
    """Some entry of `values` is not `value` (a `filled` view: its one number, not n comparisons)."""
    return bool(np.any((values[:1] if is_filled(values) else values) != value))


def take_rows(values, rows):
    """values[rows] for a per-row column; a column of one repeated value (a 0-stride view) stays one, of the
    new length; a scalar stays a scalar."""
    values = np.asarray(values)
    if not values.ndim:
        return values
    return np.broadcast_to(values[0], np.shape(rows)) if is_filled(values) else values[rows]


class FrequencyTerm:
    """D(phi) = sum_i [f_i log f(y_i; eta, phi / v_i) - log f(y_i; eta, phi / (f_i v_i))] for Gaussian (log
    link) and Gamma rows, and dD / d log phi.

    Their eta-dependent part is linear in the weight, so D is the same at every eta: it is evaluated at a mean
    inside the support (mu = y, or |y| + 1).  With it the engine's weight m = v f gives the frequency-weighted
    log-likelihood exactly.  The one owner of this rule: the general engine (`density_weights`), the
    one-factor `GLMMData` (``formula._design.engine_data``) and each Dask partition use it.
    """

    def __init__(self, dist, y, base, freq, const):
        self.dist, self.y, self.base, self.freq, self.const = dist, y, base, freq, const
        self.eta = dist.link(y if dist.name == "gamma" else np.abs(y) + 1.0)

    def rows(self, rows):
        """The term of the rows `rows` alone (a subset of the groups, as a pilot fit's)."""
        return FrequencyTerm(self.dist, self.y[rows], take_rows(self.base, rows), self.freq[rows],
                             take_rows(self.const, rows))

    def value(self, phi) -> float:
        """D(phi) alone."""
        d, y, eta, v, f, c = self.dist, self.y, self.eta, self.base, self.freq, self.const
        with np.errstate(all="ignore"):
            return float(np.sum(f * d.loglik(y, eta, v, phi, c) - d.loglik(y, eta, f * v, phi, c)))

    def __call__(self, phi):
        """(D(phi), dD / d log phi)."""
        d, y, eta, v, f, c = self.dist, self.y, self.eta, self.base, self.freq, self.const
        slope = np.sum(f * d.dloglik_dlogphi(y, eta, v, phi, c) - d.dloglik_dlogphi(y, eta, f * v, phi, c))
        return self.value(phi), float(slope)


def density_weights(dist, y, trials=None, var_weights=None, freq_weights=None):
    """(m, const, dispersion_term) of the rows: the weight inside each density (trials v f), the data-only part
    of the weighted log density and, for a dispersion family with frequency weights, its `FrequencyTerm`
    (None otherwise)."""
    if trials is None and var_weights is None:
        base = np.ones(len(y))
    elif trials is None or var_weights is None:  # (no copy: large designs call this once per fit)
        base = np.asarray(var_weights if trials is None else trials, float)
    else:
        base = np.asarray(trials, float) * np.asarray(var_weights, float)
    const = dist.log_constant(y, base)
    if freq_weights is None:
        return base, const, None
    term = None
    if dist.has_dispersion and dist.name != "negativebinomial":
        term = FrequencyTerm(dist, y, base, freq_weights, const)
    else:  # the log density (its constant included) is linear in the weight: f times the row's
        const = const * freq_weights
    return base * freq_weights, const, term


def gaussian_weights(var_weights=None, freq_weights=None, n=None):
    """(row weights w = v f or None, observations sum(f), sum f log v) of a Gaussian identity profile: with
    these the profiled REML/ML deviance is the one of the data with each row repeated f times."""
    if var_weights is None and freq_weights is None:
        return None, n, 0.0
    v = np.ones(n) if var_weights is None else var_weights
    f = np.ones(n) if freq_weights is None else freq_weights
    n_obs = float(np.sum(f)) if freq_weights is not None else n
    return v * f, n_obs, float(np.sum(f * np.log(v)))
