"""Family and link resolution, and the per-row log-likelihood with its derivatives in eta.

The engine needs, for every row, the log density l(y; mu(eta), phi) and its first three
derivatives in the linear predictor eta.  The mean, the inverse-link derivatives, the variance
function and the IRLS working weights come from statsmodels' own family and link objects; only
what statsmodels does not provide (the third derivative of the inverse link, the second derivative
of the variance function, the log density with every normalising constant) is written here.
For the supported pairs the hot path runs fused kernels instead (``_kernels.py``: log f and its
derivatives from one exp/log per row); this generic path remains for any other pair and is the
reference the kernels are tested against.
"""
import numpy as np
from scipy import special
import statsmodels.genmod.families as sm_families
import statsmodels.genmod.families.links as sm_links

from . import _kernels
from ._kernels import find_kernel

#: family name -> the link names a random-intercept GLMM accepts with it (first = canonical default)
ALLOWED_LINKS = {
    "gaussian": ("identity", "log"),
    "binomial": ("logit", "probit", "cloglog"),
    "poisson": ("log", "identity"),
    "gamma": ("inverse", "log", "identity"),
    "negativebinomial": ("log",),
}
FAMILY_CLASSES = {
    "gaussian": sm_families.Gaussian,
    "binomial": sm_families.Binomial,
    "poisson": sm_families.Poisson,
    "gamma": sm_families.Gamma,
    "negativebinomial": sm_families.NegativeBinomial,
}
LINK_CLASSES = {
    "identity": sm_links.Identity,
    "log": sm_links.Log,
    "logit": sm_links.Logit,
    "probit": sm_links.Probit,
    "inverse": sm_links.InversePower,
    "cloglog": sm_links.CLogLog,
}
#: families whose dispersion phi is estimated: Var(y|mu) = phi * V(mu), and for the negative binomial
#: (NB2) the slot holds alpha of Var(y|mu) = mu + alpha mu^2 (estimated, unlike statsmodels' fixed alpha)
DISPERSION_FAMILIES = ("gaussian", "gamma", "negativebinomial")


def family_name(family):
    """Name of a statsmodels family instance among the supported ones, or None."""
    for name, cls in FAMILY_CLASSES.items():
        if type(family) is cls:
            return name
    return None


def link_name(link):
    """Short name of a statsmodels link instance ('logit', 'probit', 'inverse', ...)."""
    if isinstance(link, sm_links.Power):
        power = float(link.power)
        return {1.0: "identity", -1.0: "inverse"}.get(power, f"power({power:g})")
    return type(link).__name__.lower()


def make_family(name, link=None):
    """statsmodels family instance from names, e.g. ``make_family('binomial', 'probit')``."""
    from .._validation import check_family_name, check_link_name

    name = check_family_name(name)
    link = ALLOWED_LINKS[name][0] if link is None else check_link_name(name, link)
    if name == "negativebinomial":  # alpha is estimated by the fit; 1 is only statsmodels' placeholder
        return FAMILY_CLASSES[name](link=LINK_CLASSES[link](), alpha=1.0)
    return FAMILY_CLASSES[name](link=LINK_CLASSES[link]())


def _inverse_link_deriv3(link, eta, mu):
    """Third derivative of the inverse link, d^3 mu / d eta^3 (statsmodels stops at the second)."""
    if link == "identity":
        return np.zeros_like(eta)
    if link == "log":
        return mu
    if link == "inverse":
        return -6.0 / eta**4
    if link == "logit":
        v = mu * (1.0 - mu)
        return v * (1.0 - 2.0 * mu) ** 2 - 2.0 * v * v
    if link == "probit":
        return (eta * eta - 1.0) * np.exp(-0.5 * eta * eta) / np.sqrt(2.0 * np.pi)
    if link == "cloglog":  # mu = 1 - exp(-e^eta), mu' = e^(eta - e^eta), mu''' = mu' ((1 - e^eta)^2 - e^eta)
        e = np.exp(eta)
        return np.exp(eta - e) * ((1.0 - e) ** 2 - e)
    raise ValueError(f"no third derivative for link {link!r}")


def _row_value(m):
    """m as one number when every row has the same value (stored once, `formula._design._compact`): special
    functions of it are then computed once, not per row."""
    m = np.asarray(m)
    if m.ndim and m.size and not any(m.strides):
        return float(m.flat[0])
    return m


#: second derivative of the variance function V(mu) (statsmodels stops at the first)
_VARIANCE_DERIV2 = {"gaussian": 0.0, "binomial": -2.0, "poisson": 0.0, "gamma": 2.0}


#: NB2 k = 1/alpha above which log Gamma(y + k) - log Gamma(k) and psi(y + k) - psi(k) come from their large-k
#: expansions: as alpha -> 0 (data without overdispersion: the Poisson limit) the separate values cancel, the
#: likelihood losing ~1e-7 per row at k = 1e8 and the alpha gradient (O(1/k^2) per row) every digit
NB_LARGE_K = 1e4


def lgamma_ratio(y, k):
    """log Gamma(y + k) - log Gamma(k) for y >= 0, k > 0; Stirling's series for k >= NB_LARGE_K (error below
    y / (120 k^4))."""
    y, k = np.broadcast_arrays(np.asarray(y, float), np.asarray(k, float))
    big = k >= NB_LARGE_K
    if not np.any(big):
        return special.gammaln(y + k) - special.gammaln(k)
    out = np.empty(y.shape)
    small = ~big
    out[small] = special.gammaln(y[small] + k[small]) - special.gammaln(k[small])
    yb, kb = y[big], k[big]
    out[big] = yb * np.log(kb) + ((kb + yb - 0.5) * np.log1p(yb / kb) - yb) - yb / (12.0 * kb * (kb + yb))
    return out


def _nb_dk(y, k, mu):
    """d log f / dk of the NB2 density: psi(y + k) - psi(k) - log(1 + mu/k) + (mu - y) / (k + mu), O(1/k^2) for
    large k, where it is summed from pieces without cancellation (psi's series to 1/x^2)."""
    y, k, mu = np.broadcast_arrays(np.asarray(y, float), np.asarray(k, float), np.asarray(mu, float))
    big = k >= NB_LARGE_K
    if not np.any(big):
        return special.digamma(y + k) - special.digamma(k) - np.log1p(mu / k) + (mu - y) / (k + mu)
    out = np.empty(y.shape)
    s = ~big
    out[s] = special.digamma(y[s] + k[s]) - special.digamma(k[s]) - np.log1p(mu[s] / k[s]) + (mu[s] - y[s]) / (
        k[s] + mu[s])
    yb, kb, mb = y[big], k[big], mu[big]
    z = (yb - mb) / (kb + mb)  # log(1 + y/k) - log(1 + mu/k) = log1p(z); log1p(z) - z without the O(z) terms
    out[big] = (np.log1p(z) - z) + yb / (2.0 * kb * (kb + yb)) + yb * (2.0 * kb + yb) / (12.0 * kb ** 2 * (kb + yb) ** 2)
    return out


class Distribution:
    """One family/link pair: log density, its eta-derivatives, support, residuals.

    ``m`` is the prior weight of each row (statsmodels GLM's ``var_weights``; for a Binomial response
    given as a proportion, times the number of trials), 1 otherwise.  ``phi`` is the dispersion (1 for
    Binomial and Poisson).  Binomial, Poisson and NB2 log densities are m times the unweighted one
    (``const`` carries m); Gaussian and Gamma ones are the densities with dispersion phi / m.
    With ``kernels=True`` (default) a pair with a fused kernel (``_kernels.KERNELS``) computes log f,
    its derivatives and the working weights there; ``kernels=False`` forces the generic path.
    """

    def __init__(self, family, kernels=True):
        self.family = family
        self.link = family.link
        self.name = family_name(family)
        self.link_name = link_name(family.link)
        self.has_dispersion = self.name in DISPERSION_FAMILIES
        # canonical links with the natural parameter equal to eta (V(mu) = d mu / d eta): simpler derivatives
        self._natural = (self.name, self.link_name) in (("binomial", "logit"), ("poisson", "log"),
                                                         ("gaussian", "identity"))
        # links whose class computes d2 mu / d eta2 itself (statsmodels' generic one inverts eta again)
        self._own_inverse_deriv2 = ("inverse_deriv2" in type(self.link).__dict__
                                    or isinstance(self.link, sm_links.Power))
        found = find_kernel(self.name, self.link_name) if kernels else None
        self._kernel, self._kernel_weights = found if found is not None else (None, None)
        self._fourth = _kernels.FOURTH.get((self.name, self.link_name)) if found is not None else None
        self._aux = _kernels.AUX.get((self.name, self.link_name)) if found is not None else None

    def row_aux(self, y):
        """Per-row data the fused kernel computes once from the response (Poisson: log y), or None."""
        return None if self._aux is None else self._aux(y)

    @property
    def log_concave(self):
        """True when log f is concave in eta on the whole real line (d >= 0 everywhere, no support edge) with
        |t| <~ d: a short Newton step on a group's mode then needs no line search."""
        return (self.name, self.link_name) in (("binomial", "logit"), ("binomial", "probit"), ("poisson", "log"),
                                               ("gamma", "log"), ("gaussian", "identity"))

    @property
    def log_link_modes(self):
        """True when the conditional modes follow from group sums (`_laplace.log_link_modes`): the fused
        Poisson-log and Gamma-log kernels (unit prior weights)."""
        return self._kernel is not None and (self.name, self.link_name) in (("poisson", "log"), ("gamma", "log"))

    @property
    def has_exact_hessian(self):
        """True when the Laplace log-likelihood's Hessian can be computed exactly (`_laplace_hessian`): a fused
        kernel with its fourth derivative, and a dispersion (if any) entering log f as phi^-1 times eta's part."""
        return self._fourth is not None  # NB2 has no fused kernel, and its alpha no such form

    def fourth(self, y, eta, m, phi, d, t):
        """q = -d^4 log f / d eta^4 per row (fused-kernel pairs only), given the row's d and t at eta."""
        return self._fourth(y, eta, m, phi, d, t)

    @property
    def full_support(self):
        """True when every finite eta maps to a mean inside the support (no identity/inverse edge)."""
        return not (self.link_name in ("identity", "inverse") and self.name != "gaussian")

    def evaluate(self, y, eta, m, phi, const, order=2, loglik=True, aux=None):
        """(log f, l1, d, t) per row at eta, derivatives up to `order` (others None), in one pass;
        log f is None with ``loglik=False``.  ``aux`` = `row_aux(y)` when precomputed."""
        if self._kernel is not None:
            return _kernels.evaluate(self._kernel, y, eta, m, phi, const, order=order, loglik=loglik, aux=aux)
        if not loglik:
            return (None,) + self.derivatives(y, eta, m, phi, order=order)
        ll = self.loglik(y, eta, m, phi, const)
        if order == 0:
            return ll, None, None, None
        ok = np.isfinite(ll)
        if ok.all():
            return (ll,) + self.derivatives(y, eta, m, phi, order=order)
        return (ll,) + self.derivatives(y, np.where(ok, eta, 1.0), m, phi, order=order)

    def __repr__(self):
        return f"Distribution({self.name}, {self.link_name})"

    # ----------------------------------------------------------------- mean and support
    def mean(self, eta):
        """mu = g^{-1}(eta)."""
        return self.link.inverse(eta)

    def variance(self, mu, phi):
        """Variance function as the residuals need it: V(mu), or mu + alpha mu^2 for NB2 (phi = alpha)."""
        if self.name == "negativebinomial":
            return mu + phi * mu * mu
        return self.family.variance(mu)

    def feasible(self, eta):
        """True where eta maps to a mean inside the family's support (mu > 0 for Poisson/Gamma)."""
        if self.link_name in ("identity", "inverse") and self.name != "gaussian":
            return eta > 0
        return np.isfinite(eta)  # identity or inverse link on a positive mean

    # ----------------------------------------------------------------- log density
    def log_constant(self, y, m):
        """Part of log f that depends on the data only (computed once per fit)."""
        if self.name == "binomial":
            if np.all(m == 1.0) and np.all((y == 0.0) | (y == 1.0)):  # 0/1 rows: log C(1, y) = 0
                return np.zeros_like(y)
            k = m * y
            return special.gammaln(m + 1.0) - special.gammaln(k + 1.0) - special.gammaln(m - k + 1.0)
        if self.name == "poisson":  # log f = y (log(1 + r) - r) + [y log y - y - log y!],  r = mu / y - 1
            return m * _kernels.on_counts(lambda k: special.xlogy(k, k) - k - special.gammaln(k + 1.0), y)
        if self.name == "negativebinomial":
            return -m * _kernels.on_counts(lambda k: special.gammaln(k + 1.0), y)
        if self.name == "gamma":
            return np.log(y)
        return np.zeros_like(y)

    def loglik(self, y, eta, m, phi, const):
        """Per-row log density log f(y | eta), every normalising constant included; -inf outside support."""
        if self._kernel is not None:
            return self._kernel(y, eta, m, phi, const, order=0)[0]
        if self.name == "binomial":
            return m * self._bernoulli_kernel(y, eta) + const
        ok = self.feasible(eta)
        all_ok = bool(ok.all())
        mu = self.mean(eta if all_ok else np.where(ok, eta, 1.0))
        if self.name == "poisson":
            ll = m * self._poisson_kernel(y, eta if all_ok else np.where(ok, eta, 1.0), mu) + const
        elif self.name == "negativebinomial":  # k = 1/alpha: lnG(y+k) - lnG(k) + y ln(mu/(k+mu)) - k ln(1+mu/k)
            k = 1.0 / phi
            ll = m * (lgamma_ratio(y, k) + special.xlogy(y, mu / (k + mu)) - k * np.log1p(mu / k)) + const
        elif self.name == "gamma":  # shape k = m / phi
            k = m / phi
            ll = k * (np.log(k) + const - np.log(mu) - y / mu) - special.gammaln(k) - const
        else:
            ll = -0.5 * m * (y - mu) ** 2 / phi - 0.5 * np.log(2.0 * np.pi * phi / m)
        return ll if all_ok else np.where(ok, ll, -np.inf)

    def _poisson_kernel(self, y, eta, mu):
        """y log mu - mu - (y log y - y) = y (log(1 + r) - r) with r = mu / y - 1 (-mu where y = 0).

        Written around the saturated fit so that counts of 1e9 keep every digit that matters: the naive
        y log mu - mu cancels two numbers of size 2e10 down to one of size 1.
        """
        cached = getattr(self, "_log_y", None)
        if cached is None or cached[0] is not y:  # the response is fixed during a fit: log y once
            positive = y > 0
            cached = (y, positive, np.where(positive, y, 1.0), None)
            self._log_y = cached
        _, positive, safe_y, log_y = cached
        if self.link_name == "log":
            if log_y is None:
                log_y = np.log(safe_y)
                self._log_y = cached[:3] + (log_y,)
            log_ratio = eta - log_y  # log(mu / y), no exp(eta) rounding
            core = log_ratio - np.expm1(log_ratio)
        else:
            r = (mu - y) / safe_y
            core = np.log1p(r) - r
        return np.where(positive, y * core, -mu)

    def _bernoulli_kernel(self, y, eta):
        """y log mu + (1 - y) log(1 - mu) from eta, exact where mu rounds to 0 or 1."""
        if self.link_name == "logit":  # y eta - log(1 + e^eta)
            softplus = np.maximum(eta, 0.0) + np.log1p(np.exp(-np.abs(eta)))
            return y * eta - softplus
        if self.link_name == "cloglog":  # log(1 - mu) = -e^eta, log mu = log(-expm1(-e^eta))
            e = np.exp(np.minimum(eta, 700.0))
            log_mu = np.log(-np.expm1(-e))
            return np.where(y > 0.0, y * log_mu, 0.0) - np.where(y < 1.0, (1.0 - y) * e, 0.0)
        if np.all(y * (1.0 - y) == 0.0):  # a 0/1 response needs one log Phi(+-eta) per row
            return special.log_ndtr(np.where(y > 0.5, eta, -eta))
        return y * special.log_ndtr(eta) + (1.0 - y) * special.log_ndtr(-eta)

    def dloglik_dlogphi(self, y, eta, m, phi, const):
        """d log f / d log(phi) per row (dispersion families only)."""
        if self.name == "gamma":
            k = _row_value(m) / phi
            if self.link_name == "log":  # log mu = eta: no exp and log round trip
                log_mu, y_over_mu = eta, y * np.exp(-eta)
            else:
                mu = self.mean(eta)
                log_mu, y_over_mu = np.log(mu), y / mu
            dk = (np.log(k) + 1.0 - special.digamma(k)) + const - log_mu - y_over_mu
            return -k * dk
        mu = self.mean(eta)
        if self.name == "negativebinomial":  # -k dl/dk, dl/dk = psi(y+k) - psi(k) - ln(1 + mu/k) + (mu - y)/(k + mu)
            k = 1.0 / phi
            return -k * m * _nb_dk(y, k, mu)
        return 0.5 * m * (y - mu) ** 2 / phi - 0.5

    def d2loglik_dlogphi2(self, y, eta, m, phi, const):
        """d^2 log f / d log(phi)^2 per row for Gaussian and Gamma: with P = d log f / d log phi,
        Gaussian -m (y - mu)^2 / (2 phi); Gamma (k = m / phi) -P + k - k^2 psi'(k)."""
        if self.name == "gamma":
            k = _row_value(m) / phi
            return -self.dloglik_dlogphi(y, eta, m, phi, const) + (k - k * k * special.polygamma(1, k))
        if self.name == "gaussian":
            return -0.5 * m * (y - self.mean(eta)) ** 2 / phi
        raise ValueError(f"no closed-form second dispersion derivative for {self.name}")

    def dscore_dlogphi(self, y, eta, m, phi):
        """(d l' / d log phi, d d / d log phi) per row with d = -l''; None when they are (-l', -d), i.e. for
        exponential-dispersion families whose log density is linear in 1/phi.  NB2 (log link, phi = alpha):
        l' = m (y - mu) / (1 + alpha mu),  d = m mu (1 + alpha y) / (1 + alpha mu)^2."""
        if self.name != "negativebinomial":
            return None
        mu = self.mean(eta)
        q = 1.0 + phi * mu
        dl1 = -m * phi * mu * (y - mu) / (q * q)
        dd = m * phi * mu * (y * q - 2.0 * mu * (1.0 + phi * y)) / (q * q * q)
        return dl1, dd

    # ----------------------------------------------------------------- derivatives in eta
    def _safe_eta(self, eta):
        """eta for statsmodels' logit derivatives: beyond |eta| = 350, e^eta (1 + e^eta)^-2 overflows
        (mu is 0 or 1 there anyway)."""
        if self.link_name == "cloglog":
            return np.clip(eta, -700.0, 700.0)
        return np.clip(eta, -350.0, 350.0) if self.link_name == "logit" else eta

    def inverse_link_derivatives(self, eta):
        """(mu, mu', mu'') from statsmodels' link; mu'' = -g''(mu) mu'^3 unless the link class defines it."""
        link = self.link
        eta = self._safe_eta(eta)
        mu = link.inverse(eta)
        mu1 = link.inverse_deriv(eta)
        if self._own_inverse_deriv2:
            mu2 = link.inverse_deriv2(eta)
        else:  # statsmodels' generic formula, reusing mu and mu' instead of inverting eta again
            mu2 = -link.deriv2(mu) * mu1**3
            mu2[~np.isfinite(mu2)] = 0.0  # g''(mu) overflows only where mu is 0 or 1 and mu', mu'' vanish
        return mu, mu1, mu2

    def derivatives(self, y, eta, m, phi, order=3):
        """First `order` derivatives of log f in eta: returns (l1, d, t) with d = -l'' and t = -l'''.

        Chain rule with s(mu) = m (y - mu) / (phi V(mu)):  l' = s mu',  l'' = s' mu'^2 + s mu'',
        l''' = s'' mu'^3 + 3 s' mu' mu'' + s mu'''.  Entries beyond `order` are None.
        """
        if self._kernel is not None:
            return self._kernel(y, eta, m, phi, None, order=order, loglik=False)[1:]
        fam = self.family
        if self.name == "negativebinomial":
            return self._nb_derivatives(y, eta, m, phi, order)
        if order == 1:
            eta = self._safe_eta(eta)
            mu, mu1, mu2 = self.link.inverse(eta), self.link.inverse_deriv(eta), None
        else:
            mu, mu1, mu2 = self.inverse_link_derivatives(eta)
        if self._natural:  # theta = eta: l1 = m (y - mu) / phi, d = m mu1 / phi, t = m mu2 / phi
            mphi = m if phi == 1.0 else m / phi
            l1 = mphi * (y - mu)
            return l1, (None if order < 2 else mphi * mu1), (None if order < 3 else mphi * mu2)
        inv_v = 1.0 / fam.variance(mu)
        r = y - mu
        w = m * inv_v  # m / V, times 1/phi below (a scalar)
        if phi != 1.0:
            w *= 1.0 / phi
        s = w * r
        l1 = s * mu1
        if order == 1:
            return l1, None, None
        var1 = fam.variance.deriv(mu)
        rv1 = r * var1
        rv1 *= inv_v
        s1 = rv1
        s1 += 1.0
        s1 *= w  # -s' = (m / phi V) (1 + r V' / V)
        mu1_sq = mu1 * mu1
        d = s1 * mu1_sq
        d -= s * mu2
        if order == 2:
            return l1, d, None
        var2 = _VARIANCE_DERIV2[self.name]
        mu3 = _inverse_link_deriv3(self.link_name, eta, mu)
        # s'' = (m / phi V^2) (2 V' - r (V'' - 2 V'^2 / V))
        s2 = var1 * var1
        s2 *= inv_v
        s2 *= -2.0
        s2 += var2
        s2 *= r
        s2 = 2.0 * var1 - s2
        s2 *= w
        s2 *= inv_v
        t = s2 * mu1_sq
        t *= mu1
        t -= 3.0 * mu1 * mu2 * s1
        t += s * mu3
        t *= -1.0
        return l1, d, t

    def _nb_derivatives(self, y, eta, m, phi, order):
        """NB2 with the log link (phi = alpha, q = 1 + alpha mu): l' = m (y - mu) / q,
        d = m mu (1 + alpha y) / q^2,  t = m mu (1 + alpha y) (1 - alpha mu) / q^3."""
        mu = np.exp(eta)
        q = 1.0 + phi * mu
        l1 = m * (y - mu) / q
        if order == 1:
            return l1, None, None
        d = m * mu * (1.0 + phi * y) / (q * q)
        return l1, d, (None if order < 3 else d * (1.0 - phi * mu) / q)

    def separated_rows(self, y, eta):
        """Rows whose fitted probability equals the 0/1 response to 1e-6 (Binomial separation), else 0."""
        if self.name != "binomial":
            return 0
        # the Binomial links are increasing: compare eta with the link of the two thresholds (no inverse per row)
        lo, hi = (float(v) for v in self.link(np.array([1e-6, 1.0 - 1e-6])))
        return int(np.sum(((y == 1.0) & (eta > hi)) | ((y == 0.0) & (eta < lo))))

    def working_weights(self, eta, m, phi):
        """Expected information per row, m / (phi g'(mu)^2 V(mu)): the IRLS working weights."""
        if self.name == "negativebinomial":  # m mu^2 / (mu + alpha mu^2) for the log link
            mu = np.exp(eta)
            return m * mu / (1.0 + phi * mu)
        if self._kernel_weights is not None:
            return self._kernel_weights(eta, m, phi)
        return self.family.weights(self.link.inverse(eta)) * (m / phi)

    # ----------------------------------------------------------------- residuals
    def family_at(self, phi):
        """The statsmodels family with NB2's alpha set to the fitted phi (the family itself otherwise)."""
        if self.name != "negativebinomial":
            return self.family
        return type(self.family)(link=type(self.link)(), alpha=float(phi))

    def deviance_residuals(self, y, mu, m, phi=1.0):
        """Signed deviance residuals, statsmodels' family formula (dispersion not applied; NB2 at alpha = phi)."""
        return self.family_at(phi).resid_dev(y, mu, var_weights=m, scale=1.0)

    def pearson_residuals(self, y, mu, m, phi=1.0):
        """(y - mu) sqrt(m) / sqrt(V(mu)), with statsmodels' variance function (NB2: mu + alpha mu^2)."""
        return (y - mu) * np.sqrt(m) / np.sqrt(self.variance(mu, phi))
