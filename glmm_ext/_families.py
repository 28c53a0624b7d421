"""Family and link resolution, and the per-row log-likelihood with its derivatives in eta.

The engine needs, for every row, the log density l(y; mu(eta), phi) and its first three
derivatives in the linear predictor eta.  The mean, the inverse-link derivatives, the variance
function and the IRLS working weights come from statsmodels' own family and link objects; only
what statsmodels does not provide (the third derivative of the inverse link, the second derivative
of the variance function, the log density with every normalising constant) is written here.
"""
import numpy as np
from scipy import special
import statsmodels.genmod.families as sm_families
import statsmodels.genmod.families.links as sm_links

#: family name -> the link names a random-intercept GLMM accepts with it (first = canonical default)
ALLOWED_LINKS = {
    "gaussian": ("identity", "log"),
    "binomial": ("logit", "probit"),
    "poisson": ("log", "identity"),
    "gamma": ("inverse", "log", "identity"),
}
FAMILY_CLASSES = {
    "gaussian": sm_families.Gaussian,
    "binomial": sm_families.Binomial,
    "poisson": sm_families.Poisson,
    "gamma": sm_families.Gamma,
}
LINK_CLASSES = {
    "identity": sm_links.Identity,
    "log": sm_links.Log,
    "logit": sm_links.Logit,
    "probit": sm_links.Probit,
    "inverse": sm_links.InversePower,
}
#: families whose dispersion phi is estimated (Var(y|mu) = phi * V(mu))
DISPERSION_FAMILIES = ("gaussian", "gamma")


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
    from ._validation import check_family_name, check_link_name

    name = check_family_name(name)
    link = ALLOWED_LINKS[name][0] if link is None else check_link_name(name, link)
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
    raise ValueError(f"no third derivative for link {link!r}")


#: second derivative of the variance function V(mu) (statsmodels stops at the first)
_VARIANCE_DERIV2 = {"gaussian": 0.0, "binomial": -2.0, "poisson": 0.0, "gamma": 2.0}


class Distribution:
    """One family/link pair: log density, its eta-derivatives, support, residuals.

    ``m`` is the prior weight of each row: the number of trials for a Binomial response given as a
    proportion, 1 otherwise.  ``phi`` is the dispersion (1 for Binomial and Poisson).
    """

    def __init__(self, family):
        self.family = family
        self.link = family.link
        self.name = family_name(family)
        self.link_name = link_name(family.link)
        self.has_dispersion = self.name in DISPERSION_FAMILIES

    def __repr__(self):
        return f"Distribution({self.name}, {self.link_name})"

    # ----------------------------------------------------------------- mean and support
    def mean(self, eta):
        """mu = g^{-1}(eta)."""
        return self.link.inverse(eta)

    def feasible(self, eta):
        """True where eta maps to a mean inside the family's support (mu > 0 for Poisson/Gamma)."""
        if self.link_name in ("identity", "inverse") and self.name != "gaussian":
            return eta > 0
        return np.isfinite(eta)  # identity or inverse link on a positive mean

    # ----------------------------------------------------------------- log density
    def log_constant(self, y, m):
        """Part of log f that depends on the data only (computed once per fit)."""
        if self.name == "binomial":
            k = m * y
            return special.gammaln(m + 1.0) - special.gammaln(k + 1.0) - special.gammaln(m - k + 1.0)
        if self.name == "poisson":
            return -special.gammaln(y + 1.0)
        if self.name == "gamma":
            return np.log(y)
        return np.zeros_like(y)

    def _log_mu_pair(self, eta, mu):
        """log mu and log(1 - mu) for a Binomial mean, exact where mu rounds to 0 or 1."""
        if self.link_name == "logit":
            return -np.logaddexp(0.0, -eta), -np.logaddexp(0.0, eta)
        return special.log_ndtr(eta), special.log_ndtr(-eta)

    def loglik(self, y, eta, m, phi, const):
        """Per-row log density log f(y | eta), every normalising constant included; -inf outside support."""
        ok = self.feasible(eta)
        eta_ok = np.where(ok, eta, 1.0)
        mu = self.mean(eta_ok)
        if self.name == "binomial":
            log_mu, log_1mu = self._log_mu_pair(eta_ok, mu)
            ll = m * (y * log_mu + (1.0 - y) * log_1mu) + const
        elif self.name == "poisson":
            ll = special.xlogy(y, mu) - mu + const
        elif self.name == "gamma":
            k = 1.0 / phi
            ll = k * (np.log(k) + const - np.log(mu) - y / mu) - special.gammaln(k) - const
        else:
            ll = -0.5 * m * (y - mu) ** 2 / phi - 0.5 * np.log(2.0 * np.pi * phi / m)
        return np.where(ok, ll, -np.inf)

    def dloglik_dlogphi(self, y, eta, m, phi, const):
        """d log f / d log(phi) per row (dispersion families only)."""
        mu = self.mean(eta)
        if self.name == "gamma":
            k = 1.0 / phi
            dk = np.log(k) + 1.0 + const - np.log(mu) - y / mu - special.digamma(k)
            return -k * dk
        return 0.5 * m * (y - mu) ** 2 / phi - 0.5

    # ----------------------------------------------------------------- derivatives in eta
    def derivatives(self, y, eta, m, phi, order=3):
        """First `order` derivatives of log f in eta: returns (l1, d, t) with d = -l'' and t = -l'''.

        Chain rule with s(mu) = m (y - mu) / (phi V(mu)):  l' = s mu',  l'' = s' mu'^2 + s mu'',
        l''' = s'' mu'^3 + 3 s' mu' mu'' + s mu'''.  Entries beyond `order` are None.
        """
        link, fam = self.link, self.family
        mu = link.inverse(eta)
        mu1 = link.inverse_deriv(eta)
        var = fam.variance(mu)
        r = y - mu
        mphi = m / phi
        s = mphi * r / var
        l1 = s * mu1
        if order == 1:
            return l1, None, None
        var1 = fam.variance.deriv(mu)
        mu2 = link.inverse_deriv2(eta)
        s1 = -mphi * (1.0 / var + r * var1 / var**2)
        d = -(s1 * mu1 * mu1 + s * mu2)
        if order == 2:
            return l1, d, None
        var2 = _VARIANCE_DERIV2[self.name]
        mu3 = _inverse_link_deriv3(self.link_name, eta, mu)
        s2 = mphi * (2.0 * var1 / var**2 - r * (var2 / var**2 - 2.0 * var1**2 / var**3))
        t = -(s2 * mu1**3 + 3.0 * s1 * mu1 * mu2 + s * mu3)
        return l1, d, t

    def working_weights(self, eta, m, phi):
        """Expected information per row, m / (phi g'(mu)^2 V(mu)): the IRLS working weights."""
        return self.family.weights(self.link.inverse(eta)) * (m / phi)

    # ----------------------------------------------------------------- residuals
    def deviance_residuals(self, y, mu, m):
        """Signed deviance residuals, statsmodels' family formula (dispersion not applied)."""
        return self.family.resid_dev(y, mu, var_weights=m, scale=1.0)

    def pearson_residuals(self, y, mu, m):
        """(y - mu) sqrt(m) / sqrt(V(mu)), with statsmodels' variance function."""
        return (y - mu) * np.sqrt(m) / np.sqrt(self.family.variance(mu))
