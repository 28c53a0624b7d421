"""The numerical engine: plain functions on arrays, no pandas (lme4's ``mkLmerDevfun`` + ``optimizeLmer``).

One fit driver, ``_mixed.fit_mixed(y, X, structure, dist, ...)``, for every random-effects structure
(``_structure.ReStructure``) and one fit record (``_record.MixedFit``).  The driver runs a structure of
one grouping factor, given its design-level precomputations, on the one-factor specialisations
(``_one_factor``: the Woodbury REML/ML profile of ``_lmm``, the Laplace / AGQ / nagq=0 fit of ``_glmm``,
the block profile of ``_lmm_blocks``) and everything else on the general engine: the blocked Cholesky
PLS core (``_pls``), the profiled Gaussian deviance (``_mixed_lmm``) and PIRLS / Laplace (``_mixed_glmm``),
with prior and frequency weights (``_weights``; a weighted Gaussian random-slope model runs there too).
Underneath: per-row kernels (``_kernels``, ``_families``), per-group segment sums (``_segments``), the
random-intercept marginal likelihood (``_laplace``, ``_gausshermite``), PIRLS (``_pirls``), the outer
search (``_optimize``, ``_profile``) and its record (``_optsummary``).
"""
