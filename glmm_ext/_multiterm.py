"""Every design's random-effects structure (`engine._structure.ReStructure`) and the arguments of the one fit
driver (`engine._mixed.fit_mixed`).

A design with several terms carries its structure (``design.terms.structure``, made by `make_structure`);
a one-term design (a random intercept, or the slopes of one factor) gets `one_term_structure` and is
handed to the driver with its precomputations, from which the driver picks the one-factor specialisations.
"""
import numpy as np

from .engine._mixed import SEVERAL_TERMS, check_fit_options  # noqa: F401 - the names other modules import here
from .engine._structure import ReStructure, ReTerm


def make_structure(made):
    """ReStructure from (group, codes, n_levels, Z, z_names, correlated) per term, in the user's order."""
    terms = tuple(ReTerm(group=g, codes=np.ascontiguousarray(c, dtype=np.int64), n_levels=int(L),
                         Z=np.ascontiguousarray(Z, dtype=float), z_names=tuple(zn), correlated=bool(corr))
                  for g, c, L, Z, zn, corr in made)
    return ReStructure(terms=terms)


def one_term_structure(design):
    """ReStructure of a one-term design: a random intercept (one scalar term, z = 1), or the random slopes of
    one factor, one ReTerm per independent block of z columns (correlated within a block; a model of
    singleton blocks, ``(x || g)``, is one diagonal term); rows in the data's order with the design's codes."""
    codes = np.asarray(design.codes, np.int64)
    if design.Z is None:
        return ReStructure((ReTerm(group=design.group_name, codes=codes, n_levels=design.n_groups,
                                   Z=np.broadcast_to(1.0, (len(codes), 1)), z_names=("Intercept",)),))  # no n-array
    blocks = [list(b) for b in design.re_blocks]
    names = list(design.re_names)
    if all(len(b) == 1 for b in blocks):
        blocks, correlated = [[b[0] for b in blocks]], [False]
    else:
        correlated = [True] * len(blocks)
    return ReStructure(tuple(ReTerm(group=design.group_name, codes=codes, n_levels=design.n_groups,
                                    Z=_block_columns(design.Z, b),
                                    z_names=tuple(names[c] for c in b), correlated=corr)
                             for b, corr in zip(blocks, correlated)))


def _block_columns(Z, block):
    """Z's columns `block` as a float array: Z itself (no n-sized copy) when they are all its columns in order."""
    if list(block) == list(range(Z.shape[1])) and Z.dtype == np.float64:
        return Z
    return np.ascontiguousarray(Z[:, block], dtype=float)


def check_several_weights(design):
    """ValueError for prior weights that do not fit the rows of a design (one per row, finite, positive): the
    same conditions the engine checks, raised by the model before the structure of several terms is built (a
    design made by `dataclasses.replace` elsewhere is checked again by the engine).

    Every family takes var_weights (lme4's ``weights=``) and freq_weights (rows counted f times) on every
    structure (`engine._weights`)."""
    n = len(design.y)
    for name in ("var_weights", "freq_weights"):
        w = np.asarray(getattr(design, name), float)
        if w.shape != (n,):
            raise ValueError(f"{name} has {w.size} values for {n} rows")
        if not np.all(np.isfinite(w) & (w > 0)):
            raise ValueError(f"{name} must be finite and > 0 ({int(np.sum(~(np.isfinite(w) & (w > 0))))} rows are "
                             "not); drop the rows that should carry no weight")


def design_structure(design):
    """The design's random-effects structure: its several terms', or the one-term structure (built once)."""
    if design.terms is not None:
        return design.terms.structure
    return design.design_cache("one_term_structure", lambda: one_term_structure(design))


def engine_arguments(design):
    """The driver's data arguments for `design`: y, X, structure, dist, offset, var and freq weights, trials and
    (one-term designs) the design itself as the one-factor precomputations."""
    several = design.terms is not None
    var_weights, freq_weights = design.engine_weights()
    return dict(y=design.y, X=design.X, structure=design_structure(design), dist=design.dist, offset=design.offset,
                prior_weights=var_weights, freq_weights=freq_weights,
                trials=design.trials if design.has_trials else None, prepared=None if several else design)


def fit_design(design, reml=True, nagq=1, maxiter=100, tol=1e-6, cov_type="hessian", callback=None):
    """`engine._mixed.fit_mixed` on a design: the MixedFit (refits of bootstrap and the scale layer)."""
    from .engine._mixed import fit_mixed

    return fit_mixed(**engine_arguments(design), reml=reml, nagq=nagq, maxiter=maxiter, tol=tol, cov_type=cov_type,
                     callback=callback)

