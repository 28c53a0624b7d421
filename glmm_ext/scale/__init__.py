"""Scale paths beside the single fit: many responses at once (``_many.fit_many``) and Dask DataFrames
beyond one machine (``_dask``).  Both reuse the engine's kernels and likelihood unchanged."""
