"""Transitional: the old fit entry points (``engine._fitting``, ``engine._fit_vector``) that
``inference/_bootstrap.py`` and ``inference/_intervals_vector.py`` still import, as thin calls of the one
driver returning the record under the old field shapes.  Delete with the aliases in ``engine/__init__.py``
once nothing imports the old names.
"""
from ._one_factor import standardize_gaussian, z_scale  # noqa: F401 - re-exported under the old names
from ._record import LegacyFit


def _fit(design, **options):
    from .._multiterm import fit_design

    return LegacyFit(fit_design(design, **options))


def fit_profile(design, reml=True, maxiter=100, tol=1e-6, callback=None):
    """The one driver on a Gaussian random-intercept design (the Woodbury profile)."""
    return _fit(design, reml=reml, maxiter=maxiter, tol=tol, callback=callback)


def fit_likelihood(design, nagq=1, maxiter=100, tol=1e-6, cov_type="hessian", callback=None):
    """The one driver on a random-intercept design of any other pair (`_glmm.fit_glmm`)."""
    return _fit(design, nagq=nagq, maxiter=maxiter, tol=tol, cov_type=cov_type, callback=callback)


def fit_vector(design, reml=True, nagq=1, maxiter=100, tol=1e-6, cov_type="hessian", callback=None):
    """The one driver on a random-slope design."""
    return _fit(design, reml=reml, nagq=nagq, maxiter=maxiter, tol=tol, cov_type=cov_type, callback=callback)
