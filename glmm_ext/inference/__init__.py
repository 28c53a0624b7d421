"""The analysis around a fit, beside the results: comparison (``_comparison``: anova, the random-effect
LRT), intervals (``_intervals`` for one random intercept, ``_intervals_terms`` for every other structure:
Wald and profile; ``_bootstrap``), simulation (``_simulate``), model checks (``_checks``: R², overdispersion,
quantile residuals) and predictions on new data (``_prediction``, ``_prediction_terms``).  They call the
engine; the engine never calls them.
"""
