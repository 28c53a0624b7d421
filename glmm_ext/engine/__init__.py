"""The numerical engine: plain functions on arrays, no pandas (lme4's ``mkLmerDevfun`` + ``optimizeLmer``).

Entry points, each callable alone on a ``formula._design.Design``:
``_fitting.fit_profile`` (Gaussian + identity: exact REML/ML, ``_lmm``), ``_fitting.fit_likelihood``
(Laplace / AGQ / nagq=0 maximum likelihood, ``_glmm``) and ``_fit_vector.fit_vector`` (random slopes).
Underneath: per-row kernels (``_kernels``, ``_families``), per-group segment sums (``_segments``), the
marginal likelihood (``_laplace``, ``_laplace_vector``, ``_gausshermite``), PIRLS (``_pirls``), the outer
search (``_optimize``, ``_profile``) and its record (``_optsummary``).
"""
