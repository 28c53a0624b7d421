"""Fused per-row kernels: log f and its eta-derivatives from one pass of exp/log per family/link.

For each supported (family, link) pair a kernel returns, for every row,

    ll = log f(y | eta)  (every normalising constant, -inf outside the support),
    l1 = d ll / d eta,   d = -d^2 ll / d eta^2,   t = -d^3 ll / d eta^3,

sharing one exp (or log) between all four, with closed forms that stay exact where the mean
rounds to the edge of its support (|eta| = 40 for the logit: mu (1 - mu) = e^-|eta| / (1 + e^-|eta|)^2).
`FOURTH` gives q = -d^4 ll / d eta^4 for the exact Hessian of the Laplace log-likelihood; it is needed
once per Hessian, not in the inner Newton steps, so it is kept out of the fused pass.
statsmodels' family and link objects remain the definition: `Distribution` (``_families.py``)
falls back to its generic, statsmodels-based path for any pair without a kernel, and the tests
check every kernel against that path and against differences of statsmodels' ``loglike``.

Notation: m = prior weight (Binomial trials, else 1), phi = dispersion, k = 1 / phi, ``const`` = the
data-only part of log f (``Distribution.log_constant``).  Returned arrays are fresh (callers may keep
them) but some may be shared between outputs; treat them as read-only.
"""
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import special

_LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)


def _is_one(m):
    """True when m is 1 or stored as one broadcast 1 (``formula._design._compact``): no multiply needed."""
    if np.ndim(m) == 0:
        return m == 1.0
    return m.size > 0 and not any(m.strides) and m.flat[0] == 1.0


def _row_scalar(m):
    """m as a Python float when it is one value stored once (broadcast), else m."""
    if np.ndim(m) == 0:
        return float(m)
    return float(m.flat[0]) if m.size and not any(m.strides) else m


def _scaled(values, factor):
    """values * factor in place (factor a scalar or an array), skipping a multiply by one."""
    if not _is_one(factor):
        values *= factor
    return values


def _plus_const(ll, const):
    """ll + const in place, skipping a broadcast zero (0/1 Binomial responses, Gaussian)."""
    if np.ndim(const) == 0:
        if const != 0.0:
            ll += const
    elif any(const.strides) or const.flat[0] != 0.0:
        ll += const
    return ll


def _outside(ll, ok):
    """ll with -inf where eta leaves the support (``ok`` False)."""
    if ok is not None:
        ll[~ok] = -np.inf
    return ll


def _positive_eta(eta):
    """(eta with out-of-support entries replaced by 1, mask or None) for links needing eta > 0."""
    ok = eta > 0
    if ok.all():
        return eta, None
    return np.where(ok, eta, 1.0), ok


# ---------------------------------------------------------------------------------------- binomial
def binomial_logit(y, eta, m, phi, const, order=3, loglik=True):
    """ll = m (y eta - log(1 + e^eta)) + const; l1 = m (y - mu); d = m mu (1 - mu); t = d (1 - 2 mu).

    With e = exp(-|eta|) and s = 2 mu - 1 = sign(eta) (1 - e) / (1 + e) (no cancellation):
    ll = m ((y - 1/2) eta - |eta| / 2 - log1p(e)), l1 = m (y - 1/2 - s / 2),
    d = m e / (1 + e)^2 (exact where mu rounds to 0 or 1) and t = -d s.  No branch per row.
    """
    a = np.abs(eta)
    e = np.negative(a)
    np.exp(e, out=e)
    y_half = y - 0.5
    ll = l1 = d = t = None
    if loglik:
        ll = y_half * eta
        a *= 0.5
        ll -= a
        ll -= np.log1p(e, out=a)
        ll = _plus_const(_scaled(ll, m), const)
    if order >= 1:
        inv = np.add(e, 1.0, out=a)
        np.reciprocal(inv, out=inv)
        s = np.subtract(1.0, e)
        s *= inv
        np.copysign(s, eta, out=s)
        l1 = s * -0.5
        l1 += y_half
        l1 = _scaled(l1, m)
        if order >= 2:
            d = e * inv
            d *= inv
            d = _scaled(d, m)
        if order >= 3:
            s *= d
            np.negative(s, out=s)
            t = s
    return ll, l1, d, t


def binomial_logit_weights(eta, m, phi):
    """m mu (1 - mu)."""
    e = np.exp(-np.abs(eta))
    w = e / (1.0 + e) ** 2
    return _scaled(w, m)


def _mills_derivatives(x, order):
    """q = phi(x) / Phi(x) and its x-derivatives q1 = -q (x + q), q2 = -q1 (x + q) - q (1 + q1)."""
    q = np.exp(-0.5 * x * x - _LOG_SQRT_2PI - special.log_ndtr(x))
    q1 = q2 = None
    if order >= 2:
        xq = x + q
        q1 = -q * xq
        if order >= 3:
            q2 = -q1 * xq - q * (1.0 + q1)
    return q, q1, q2


def binomial_probit(y, eta, m, phi, const, order=3, loglik=True):
    """ll = m (y log Phi(eta) + (1 - y) log Phi(-eta)) + const, derivatives from the Mills ratio.

    (log Phi)' = q, (log Phi)'' = q1, (log Phi)''' = q2 with q, q1, q2 from `_mills_derivatives`,
    all computed from log Phi, so exact in the far tails.  A 0/1 response needs one side per row:
    with s = 2 y - 1, ll = log Phi(s eta), l1 = s q(s eta), d = -q1(s eta), t = -s q2(s eta).
    """
    ll = l1 = d = t = None
    if np.all(y * (1.0 - y) == 0.0):
        s = 2.0 * y - 1.0
        x = s * eta
        if loglik:
            ll = _scaled(special.log_ndtr(x), m)
            ll = _plus_const(ll, const)
        if order >= 1:
            q, q1, q2 = _mills_derivatives(x, order)
            l1 = _scaled(s * q, m)
            d = None if q1 is None else _scaled(-q1, m)
            t = None if q2 is None else _scaled(-s * q2, m)
        return ll, l1, d, t
    if loglik:
        ll = y * special.log_ndtr(eta) + (1.0 - y) * special.log_ndtr(-eta)
        ll = _scaled(ll, m)
        ll = _plus_const(ll, const)
    if order >= 1:
        qp, qp1, qp2 = _mills_derivatives(eta, order)
        qm, qm1, qm2 = _mills_derivatives(-eta, order)
        l1 = _scaled(y * qp - (1.0 - y) * qm, m)
        if order >= 2:
            d = _scaled(-(y * qp1 + (1.0 - y) * qm1), m)
        if order >= 3:
            t = _scaled(-(y * qp2 - (1.0 - y) * qm2), m)
    return ll, l1, d, t


def binomial_probit_weights(eta, m, phi):
    """m phi(eta)^2 / (Phi(eta) Phi(-eta)) = m q(eta) q(-eta)."""
    w = np.exp(-eta * eta - 2.0 * _LOG_SQRT_2PI - special.log_ndtr(eta) - special.log_ndtr(-eta))
    return _scaled(w, m)


# ---------------------------------------------------------------------------------------- poisson
def _poisson_loglik(y, log_ratio, mu, const):
    """log f = y log(mu / y) - (mu - y) + const, with const = y log y - y - log y! (`Distribution.log_constant`)
    and log(mu / y) taken as log mu where y = 0 (y times it is 0 there).

    Written around the saturated fit so that counts of 1e9 keep their digits: y log mu - mu would
    cancel two numbers of size 2e10, while y log(mu / y) and mu - y carry the rounding of eta alone."""
    ll = y * log_ratio
    ll -= mu
    ll += y
    return _plus_const(ll, const)


#: counts below this are looked up in a table of a function's values (one evaluation per distinct count)
COUNT_TABLE = 1 << 16


def on_counts(fn, y):
    """fn(y) per row; for counts (integers in [0, COUNT_TABLE)) from a table of fn(0..max y): the same numbers
    at the cost of an index (gammaln or log of a million rows costs more than the rest of the data's set-up)."""
    top = float(np.max(y)) if y.size else 0.0
    if 0.0 <= top < COUNT_TABLE and np.all(y >= 0.0):
        k = y.astype(np.intp)
        if np.array_equal(k, y):
            return fn(np.arange(int(top) + 1, dtype=float))[k]
    return fn(y)


def _safe_log_y(y):
    """log y, with 0 where y = 0 (those rows use -mu instead)."""
    return np.log(np.where(y > 0, y, 1.0))


def poisson_aux(y):
    """What the Poisson kernels precompute once per response: log y (0 where y = 0)."""
    return on_counts(_safe_log_y, y)


def poisson_log(y, eta, m, phi, const, order=3, loglik=True, aux=None):
    """mu = e^eta: ll as `_poisson_loglik` with log(mu / y) = eta - log y; l1 = y - mu; d = t = mu.
    ``aux`` = `poisson_aux(y)` when precomputed."""
    mu = np.exp(eta)
    ll = _poisson_loglik(y, eta - (_safe_log_y(y) if aux is None else aux), mu, const) if loglik else None
    if order == 0:
        return ll, None, None, None
    return ll, y - mu, (mu if order >= 2 else None), (mu.copy() if order >= 3 else None)


def poisson_log_weights(eta, m, phi):
    """mu."""
    return np.exp(eta)


def poisson_identity(y, eta, m, phi, const, order=3, loglik=True, aux=None):
    """mu = eta > 0: ll as `_poisson_loglik`; l1 = y / eta - 1; d = y / eta^2; t = -2 y / eta^3."""
    eta, ok = _positive_eta(eta)
    log_y = _safe_log_y(y) if aux is None else aux
    ll = _outside(_poisson_loglik(y, np.log(eta) - log_y, eta, const), ok) if loglik else None
    l1 = d = t = None
    if order >= 1:
        inv = 1.0 / eta
        y_inv = y * inv
        l1 = y_inv - 1.0
        if order >= 2:
            d = y_inv * inv
        if order >= 3:
            t = -2.0 * d * inv
    return ll, l1, d, t


def poisson_identity_weights(eta, m, phi):
    """1 / mu."""
    return 1.0 / eta


# ---------------------------------------------------------------------------------------- gamma
def _gamma_loglik(k, const, log_mu, y_over_mu):
    """k (log k + log y - log mu - y / mu) - log Gamma(k) - log y  (const = log y)."""
    ll = log_mu + y_over_mu
    ll -= const
    ll -= np.log(k)
    ll *= -k
    ll -= special.gammaln(k) + const
    return ll


def gamma_log(y, eta, m, phi, const, order=3, loglik=True):
    """mu = e^eta, z = y / mu: ll as `_gamma_loglik`; l1 = k (z - 1); d = k z; t = -k z."""
    k = 1.0 / phi
    z = np.exp(-eta)
    z *= y
    ll = _gamma_loglik(k, const, eta, z) if loglik else None
    if order == 0:
        return ll, None, None, None
    l1 = k * (z - 1.0)
    d = k * z if order >= 2 else None
    return ll, l1, d, (-d if order >= 3 else None)


def gamma_log_weights(eta, m, phi):
    """1 / phi (g'(mu)^2 V(mu) = 1)."""
    return np.full(np.shape(eta), 1.0 / phi)


def gamma_inverse(y, eta, m, phi, const, order=3, loglik=True):
    """mu = 1 / eta (eta > 0): ll as `_gamma_loglik`; l1 = k (1 / eta - y); d = k / eta^2; t = -2 k / eta^3."""
    k = 1.0 / phi
    eta, ok = _positive_eta(eta)
    ll = _outside(_gamma_loglik(k, const, -np.log(eta), y * eta), ok) if loglik else None
    l1 = d = t = None
    if order >= 1:
        inv = 1.0 / eta
        l1 = k * (inv - y)
        if order >= 2:
            d = k * inv * inv
        if order >= 3:
            t = -2.0 * d * inv
    return ll, l1, d, t


def gamma_identity(y, eta, m, phi, const, order=3, loglik=True):
    """mu = eta > 0: l1 = k (y - eta) / eta^2; d = k (2 y - eta) / eta^3; t = 2 k (eta - 3 y) / eta^4."""
    k = 1.0 / phi
    eta, ok = _positive_eta(eta)
    inv = 1.0 / eta
    ll = _outside(_gamma_loglik(k, const, np.log(eta), y * inv), ok) if loglik else None
    l1 = d = t = None
    if order >= 1:
        k_inv2 = k * inv * inv
        l1 = (y - eta) * k_inv2
        if order >= 2:
            d = (2.0 * y - eta) * k_inv2 * inv
        if order >= 3:
            t = 2.0 * (eta - 3.0 * y) * k_inv2 * inv * inv
    return ll, l1, d, t


def gamma_inverse_power_weights(eta, m, phi):
    """mu^2 / phi for both the inverse (mu = 1 / eta) and identity (mu = eta) links: 1 / (phi eta^2)."""
    return 1.0 / (phi * eta * eta)


# ---------------------------------------------------------------------------------------- gaussian
def _gaussian_loglik(r, m, phi, const):
    """-m r^2 / (2 phi) - log(2 pi phi / m) / 2 + const."""
    ll = r * r
    ll = _scaled(ll, m)
    ll *= -0.5 / phi
    ll -= 0.5 * np.log(2.0 * np.pi * phi / m) if not _is_one(m) else 0.5 * np.log(2.0 * np.pi * phi)
    return _plus_const(ll, const)


def gaussian_identity(y, eta, m, phi, const, order=3, loglik=True):
    """ll = -m (y - eta)^2 / (2 phi) + ...; l1 = m (y - eta) / phi; d = m / phi; t = 0."""
    r = y - eta
    ll = _gaussian_loglik(r, m, phi, const) if loglik else None
    if order == 0:
        return ll, None, None, None
    w = m / phi if not _is_one(m) else 1.0 / phi
    d = np.broadcast_to(w, np.shape(eta)).copy() if order >= 2 else None
    return ll, _scaled(r, w), d, (np.zeros(np.shape(eta)) if order >= 3 else None)


def gaussian_identity_weights(eta, m, phi):
    """m / phi."""
    return np.broadcast_to(m / phi, np.shape(eta)).copy()


def gaussian_log(y, eta, m, phi, const, order=3, loglik=True):
    """mu = e^eta, w = m / phi: l1 = w (y - mu) mu; d = w mu (2 mu - y); t = w mu (4 mu - y)."""
    mu = np.exp(eta)
    r = y - mu
    ll = _gaussian_loglik(r, m, phi, const) if loglik else None
    l1 = d = t = None
    if order >= 1:
        w = mu * (1.0 / phi)
        w = _scaled(w, m)
        l1 = w * r
        if order >= 2:
            d = w * (mu - r)
        if order >= 3:
            t = w * (4.0 * mu - y)
    return ll, l1, d, t


def gaussian_log_weights(eta, m, phi):
    """m mu^2 / phi."""
    mu = np.exp(eta)
    w = mu * mu * (1.0 / phi)
    return _scaled(w, m)


# ---------------------------------------------------------------------------------------- fourth derivative
# q = -d^4 ll / d eta^4 from eta, or from the row's d and t where they give it without another exp.

def binomial_logit_fourth(y, eta, m, phi, d, t):
    """q = d (s^2 - 2 d / m) with d = m mu (1 - mu) and s = 2 mu - 1, i.e. t^2 / d - 2 d^2 / m (t = -d s;
    0 where d underflows)."""
    m1 = _row_scalar(m)
    q = np.divide(t * t, d, out=np.zeros_like(d), where=d > 0)
    q -= (2.0 / m1) * d * d if np.ndim(m1) == 0 else 2.0 * d * d / m1
    return q


def binomial_probit_fourth(y, eta, m, phi, d, t):
    """q = -(y q3(eta) + (1 - y) q3(-eta)) m with q3 = -q2 (x + q) - 2 q1 (1 + q1) - q q2, the third
    x-derivative of the Mills ratio q = phi(x) / Phi(x) (see `_mills_derivatives`)."""
    def q3(x):
        q, q1, q2 = _mills_derivatives(x, 3)
        return -q2 * (x + q) - 2.0 * q1 * (1.0 + q1) - q * q2

    if np.all(y * (1.0 - y) == 0.0):
        return _scaled(-q3(np.where(y > 0.5, eta, -eta)), m)
    return _scaled(-(y * q3(eta) + (1.0 - y) * q3(-eta)), m)


def equals_d_fourth(y, eta, m, phi, d, t):
    """q = d: Poisson-log (q = mu) and Gamma-log (q = k y / mu)."""
    return d


def poisson_identity_fourth(y, eta, m, phi, d, t):
    """q = 6 y / eta^4."""
    eta, _ = _positive_eta(eta)
    return 6.0 * y / eta**4


def gamma_inverse_fourth(y, eta, m, phi, d, t):
    """q = 6 k / eta^4."""
    eta, _ = _positive_eta(eta)
    return 6.0 / (phi * eta**4)


def gamma_identity_fourth(y, eta, m, phi, d, t):
    """q = 6 k (4 y - eta) / eta^5."""
    eta, _ = _positive_eta(eta)
    return 6.0 * (4.0 * y - eta) / (phi * eta**5)


def gaussian_identity_fourth(y, eta, m, phi, d, t):
    """q = 0."""
    return np.zeros(np.shape(eta))


def gaussian_log_fourth(y, eta, m, phi, d, t):
    """q = w mu (8 mu - y) with w = m / phi."""
    mu = np.exp(eta)
    return _scaled(mu * (8.0 * mu - y) * (1.0 / phi), m)


#: (family, link) -> q = -d^4 log f / d eta^4 per row, for the exact Hessian of the Laplace log-likelihood
FOURTH = {
    ("binomial", "logit"): binomial_logit_fourth,
    ("binomial", "probit"): binomial_probit_fourth,
    ("poisson", "log"): equals_d_fourth,
    ("poisson", "identity"): poisson_identity_fourth,
    ("gamma", "log"): equals_d_fourth,
    ("gamma", "inverse"): gamma_inverse_fourth,
    ("gamma", "identity"): gamma_identity_fourth,
    ("gaussian", "identity"): gaussian_identity_fourth,
    ("gaussian", "log"): gaussian_log_fourth,
}


#: (family, link) -> (kernel, working weights); pairs not listed use Distribution's generic path
KERNELS = {
    ("binomial", "logit"): (binomial_logit, binomial_logit_weights),
    ("binomial", "probit"): (binomial_probit, binomial_probit_weights),
    ("poisson", "log"): (poisson_log, poisson_log_weights),
    ("poisson", "identity"): (poisson_identity, poisson_identity_weights),
    ("gamma", "log"): (gamma_log, gamma_log_weights),
    ("gamma", "inverse"): (gamma_inverse, gamma_inverse_power_weights),
    ("gamma", "identity"): (gamma_identity, gamma_inverse_power_weights),
    ("gaussian", "identity"): (gaussian_identity, gaussian_identity_weights),
    ("gaussian", "log"): (gaussian_log, gaussian_log_weights),
}


#: (family, link) -> per-row data computed once from y and passed to the kernel as ``aux``
AUX = {("poisson", "log"): poisson_aux, ("poisson", "identity"): poisson_aux}


def find_kernel(family_name, link_name):
    """(kernel, weights) for a pair, or None when the generic statsmodels-based path must serve."""
    return KERNELS.get((family_name, link_name))


#: threads a kernel may use on long inputs (numpy releases the GIL in its loops); 1 = never split.
#: ``fit_many``'s worker processes and Dask workers set 1: they are the parallelism there.
THREADS = min(4, os.cpu_count() or 1)
#: rows per thread below which a kernel runs in the calling thread (thread start-up would dominate)
MIN_ROWS_PER_THREAD = 200_000
_POOL = {"pid": None, "pool": None}
_POOL_LOCK = threading.Lock()


def _pool():
    """The module's thread pool, created again in a forked child (threads do not survive fork)."""
    with _POOL_LOCK:
        if _POOL["pid"] != os.getpid():
            _POOL["pool"] = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="glmm_ext-kernel")
            _POOL["pid"] = os.getpid()
        return _POOL["pool"]


def in_group_blocks(fn, n, starts):
    """[fn(r0, r1, g0, g1)] over up to `THREADS` blocks of whole groups (rows r0:r1 = groups g0:g1) in the
    kernel threads when the rows are many, else [fn(0, n, 0, G)]: for sums over rows and groups, which the
    caller adds up (only the order of additions changes)."""
    G = len(starts)
    k = min(THREADS, n // MIN_ROWS_PER_THREAD, G)
    if k < 2 or threading.current_thread().name.startswith("glmm_ext-kernel"):
        return [fn(0, n, 0, G)]
    cuts = np.unique(np.searchsorted(starts, np.linspace(0, n, k + 1)[1:-1]))
    g_bounds = np.concatenate(([0], cuts[(cuts > 0) & (cuts < G)], [G]))
    r_bounds = np.append(starts, n)[g_bounds]
    futures = [_pool().submit(fn, r_bounds[i], r_bounds[i + 1], g_bounds[i], g_bounds[i + 1])
               for i in range(len(g_bounds) - 1)]
    return [f.result() for f in futures]


def evaluate(kernel, y, eta, m, phi, const, order=3, loglik=True, aux=None):
    """kernel(...) over row blocks in up to `THREADS` threads, each writing its rows of the outputs.

    Every output row depends on its own input row only, so the split changes no number.  ``aux``
    (the kernel's precomputed per-row data, `AUX`) is passed on only when given.  A kernel returns
    log f when ``loglik`` and the derivatives up to ``order`` (the others None).
    """
    n = np.shape(eta)[0] if np.ndim(eta) else 0
    k = min(THREADS, n // MIN_ROWS_PER_THREAD)
    extra = {} if aux is None else {"aux": aux}
    if k < 2 or threading.current_thread().name.startswith("glmm_ext-kernel"):
        return kernel(y, eta, m, phi, const, order=order, loglik=loglik, **extra)
    bounds = np.linspace(0, n, k + 1).astype(np.intp)

    def block(a, lo, hi):
        return a[lo:hi] if np.ndim(a) else a

    out = [np.empty(n) if wanted else None for wanted in (loglik, order >= 1, order >= 2, order >= 3)]

    def run(lo, hi):  # the copy into the outputs runs in the thread too
        rows = kernel(block(y, lo, hi), eta[lo:hi], block(m, lo, hi), phi, block(const, lo, hi), order, loglik,
                      **{key: block(v, lo, hi) for key, v in extra.items()})
        for target, values in zip(out, rows):
            if target is not None:
                target[lo:hi] = values

    for future in [_pool().submit(run, lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]:
        future.result()
    return tuple(out)

