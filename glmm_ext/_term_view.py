"""The per-term view of a fit: the ONE place where results, reports and inference read the fit record.

A fit of any random-effects structure is a list of terms; a one-factor fit (a random intercept, or a
vector of random effects per group) is a structure with one term.  Each `TermView` holds the term's key
(lme4's VarCorr name: the grouping factor, ".1", ".2" for a factor's later terms), its z column names,
level labels, q x q covariance, modes / conditional SDs (levels x q) and, where the record keeps them,
the modes' conditional covariances (levels x q x q).

Only `term_views` and `conditional_covariances` look at the record's fields; everything else in
results, report and inference asks the views.  The design side (each term's z columns and codes on the
fitted rows) is `term_rows`.
"""
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TermView:
    """One random-effect term of a fit, in data units.

    Attributes
    ----------
    key : str
        Unique name of the term ("g", "g.1" when a factor has two terms).
    group : str
        Display name of the grouping factor.
    z_names : tuple of str
        The term's z columns ("Intercept" for a random intercept).
    levels : ndarray
        Level labels, by code.
    cov : ndarray (q, q)
        Covariance of the term's random effects.
    modes, mode_sd : ndarray (L, q)
        Conditional modes / BLUPs and their conditional SDs.
    blocks : tuple of tuple of int
        Independent blocks of z columns (correlated within a block; ``(x || g)`` gives singletons).
    singular : bool
        The covariance is at its boundary.
    """

    key: str
    group: str
    z_names: tuple
    levels: np.ndarray
    cov: np.ndarray
    modes: np.ndarray
    mode_sd: np.ndarray
    blocks: tuple
    singular: bool

    @property
    def q(self) -> int:
        return len(self.z_names)

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    @property
    def is_scalar(self) -> bool:
        """One z column (a random intercept, or one slope alone)."""
        return self.q == 1

    @property
    def pairs(self):
        """(a, b), a < b: the correlated pairs of z columns, lme4's column-wise order."""
        out = []
        for b in range(self.q):
            for a in range(b):
                if any(a in blk and b in blk for blk in self.blocks):
                    out.append((a, b))
        return out


def keys_of(names):
    """Term keys from the terms' grouping-factor names (a second term on a factor gets ".1")."""
    keys, seen = [], {}
    for name in names:
        k = seen.get(name, 0)
        keys.append(name if k == 0 else f"{name}.{k}")
        seen[name] = k + 1
    return keys


def per_term(res) -> bool:
    """True when the model was specified with several terms (crossed, nested, ``a:b``): per-term dicts and
    tables.  A one-factor model keeps MixedLM's one-group API."""
    return getattr(res.model.design, "terms", None) is not None


def _blocks(correlated, q):
    return (tuple(range(q)),) if correlated else tuple((j,) for j in range(q))


def term_views(res):
    """The fit's terms as a list of `TermView` (the user's order) -- built from the fit record
    (`engine._record.MixedFit`) only here."""
    fit, design = res._fit, res.model.design
    if per_term(res):  # several terms: the record's per-term lists are the user's terms
        terms = design.terms
        out = []
        for k, (key, structure_term) in enumerate(zip(keys_of(terms.names), terms.structure.terms)):
            z = tuple(terms.z_names[k])
            q, levels = len(z), np.asarray(terms.levels[k])
            out.append(TermView(key=key, group=terms.names[k], z_names=z, levels=levels,
                                cov=np.atleast_2d(np.asarray(fit.cov_re[k], float)),
                                modes=np.asarray(fit.modes[k], float).reshape(len(levels), q),
                                mode_sd=np.asarray(fit.mode_sd[k], float).reshape(len(levels), q),
                                blocks=_blocks(structure_term.correlated and q > 1, q),
                                singular=bool(fit.singular[k])))
        return out
    # one factor: the record's terms are blocks of the factor's z columns, shown as one term
    levels = np.asarray(res.model.group_labels)
    columns, view_blocks = _one_factor_blocks(design)
    cov, modes, sd = _assemble(columns, fit.cov_re, len(levels), fit.modes, fit.mode_sd)
    names = tuple(design.re_names) if design.Z is not None else ("Intercept",)  # no exog_re: a random intercept
    return [TermView(key=res.model.group_name, group=res.model.group_name, z_names=names, levels=levels, cov=cov,
                     modes=modes, mode_sd=sd, blocks=tuple(view_blocks), singular=bool(any(fit.singular)))]


def _assemble(columns, covs, n_levels=0, modes=(), sds=()):
    """One factor's (q, q) covariance and (L, q) modes / SDs from its record terms (term j: z columns
    ``columns[j]``): the covariance block diagonal, modes and SDs side by side."""
    q = sum(len(c) for c in columns)
    cov, m_out, s_out = np.zeros((q, q)), np.zeros((n_levels, q)), np.zeros((n_levels, q))
    for j, cols in enumerate(columns):
        cov[np.ix_(cols, cols)] = np.atleast_2d(np.asarray(covs[j], float))
        if n_levels:
            m_out[:, cols] = np.asarray(modes[j], float).reshape(n_levels, len(cols))
            s_out[:, cols] = np.asarray(sds[j], float).reshape(n_levels, len(cols))
    return cov, m_out, s_out


def record_covariances(fit, design):
    """Per term the q x q covariance of a fit record of `design` (a refit's: bootstrap replicates)."""
    if getattr(design, "terms", None) is not None:
        return [np.atleast_2d(np.asarray(c, float)) for c in fit.cov_re]
    return [_assemble(_one_factor_blocks(design)[0], fit.cov_re)[0]]


def _one_factor_blocks(design):
    """The record's terms of a one-factor design as column lists (`_multiterm.one_term_structure`'s rule:
    one term per independent block, a model of singleton blocks one diagonal term), and the view's blocks."""
    if design.Z is None:  # no exog_re: a random intercept
        return [[0]], [(0,)]
    q = design.Z.shape[1]
    blocks = [list(map(int, b)) for b in (design.re_blocks or [list(range(q))])]
    view_blocks = [tuple(b) for b in blocks]
    if all(len(b) == 1 for b in blocks):
        return [[b[0] for b in blocks]], view_blocks
    return blocks, view_blocks


def conditional_covariances(res):
    """Per term: (L, q, q) conditional covariances Var(b_kj | y) of the modes (lme4's condVar blocks).

    The record's own where it keeps them (``mode_cov`` of a one-factor fit, or the SDs squared where every
    term has one column).  Otherwise: the diagonal blocks of H^-1 = (Lambda'Z'WZ Lambda + I)^-1 at the
    estimates, Lambda (H^-1)_jj Lambda' (times sigma^2 for the Gaussian identity model), computed here on
    request; a one-factor model's blocks side by side."""
    fit, design = res._fit, res.model.design
    if per_term(res):
        columns = [(k, list(range(t.q))) for k, t in enumerate(res._terms)]
    else:
        columns = [(0, cols) for cols in _one_factor_blocks(design)[0]]
    mode_cov = getattr(fit, "mode_cov", None)
    if mode_cov is not None and all(c is not None for c in mode_cov):
        per_engine_term = [np.asarray(c, float) for c in mode_cov]
    elif all(len(cols) == 1 for _, cols in columns):
        per_engine_term = [(np.asarray(s, float).reshape(-1) ** 2)[:, None, None] for s in fit.mode_sd]
    else:
        structure, columns = engine_structure(res)
        per_engine_term = _engine_conditional_covariances(res, fit, structure)
    out = [np.zeros((t.n_levels, t.q, t.q)) for t in res._terms]
    for (k, cols), c in zip(columns, per_engine_term):
        out[k][:, np.asarray(cols)[:, None], np.asarray(cols)[None, :]] = c
    return out


def _engine_conditional_covariances(res, fit, structure):
    from .engine._pls import Layout

    design = res.model.design
    weights = np.asarray(design.var_weights, float)
    if design.gaussian_identity:
        from .engine._mixed_lmm import GaussianProfile

        prof = GaussianProfile(structure, design.y - design.offset, design.X,
                               None if np.all(weights == 1.0) else weights, res.method == "REML")
        _, _, sigma2, _, fac, lams = prof.solution(fit.cov_params)
        blocks, layout = fac.inverse_diag_blocks(), prof.layout
    else:
        from .engine._mixed_glmm import MixedGLMM

        m = (design.trials if design.has_trials else np.ones(design.nobs)) * weights
        model = MixedGLMM(structure, design.dist, design.y, design.X, design.offset, m,
                          design.dist.log_constant(design.y, m), design.dist.row_aux(design.y))
        tail = [np.log(fit.scale)] if design.dist.has_dispersion else []
        st = model.laplace_state(np.concatenate([fit.beta, fit.cov_params, tail]))
        if st is None:
            raise FloatingPointError("no conditional modes at the estimates")
        sigma2, blocks, layout = 1.0, st.factor.inverse_diag_blocks(), Layout(structure)
        lams = model.lams(fit.cov_params)
    out = [None] * len(structure.terms)
    for pos, k in enumerate(layout.order):
        lam = lams[pos]
        out[k] = sigma2 * (lam @ blocks[pos] @ lam.T)
    return out


def term_rows(res, k):
    """(Z (n, q), codes (n,)) of term k on the fitted rows, the data's row order (the design's arrays)."""
    design = res.model.design
    if getattr(design, "terms", None) is not None:
        term = design.terms.structure.terms[k]
        return term.Z, term.codes
    if design.Z is not None:
        return design.Z, design.codes
    return np.ones((len(design.codes), 1)), design.codes


def engine_structure(res):
    """The engine's `ReStructure` of the fit (a one-factor fit: one ReTerm per independent block, a model of
    singleton blocks one diagonal term), and per ReTerm (view term, its z column indices)."""
    design = res.model.design
    if getattr(design, "terms", None) is not None:
        structure = design.terms.structure
        return structure, [(k, list(range(t.q))) for k, t in enumerate(structure.terms)]
    from .engine._structure import ReStructure, ReTerm

    view = res._terms[0]
    Z, codes = term_rows(res, 0)
    blocks = [list(b) for b in view.blocks]
    correlated = [len(b) > 1 for b in blocks]
    if all(len(b) == 1 for b in blocks):  # one diagonal term, as the engine fits (x || g)
        blocks, correlated = [[b[0] for b in blocks]], [False]
    terms = tuple(ReTerm(group=view.group, codes=np.asarray(codes, np.int64), n_levels=view.n_levels,
                         Z=np.ascontiguousarray(Z[:, b], dtype=float), z_names=tuple(view.z_names[c] for c in b),
                         correlated=corr) for b, corr in zip(blocks, correlated))
    return ReStructure(terms), [(0, b) for b in blocks]
