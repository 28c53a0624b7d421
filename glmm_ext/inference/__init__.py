"""The analysis around a fit, beside the results: comparison (``_comparison``: anova, the random-effect
LRT), intervals (``_intervals``, ``_intervals_vector``: Wald and profile; ``_bootstrap``), simulation
(``_simulate``), model checks (``_checks``: R², overdispersion, quantile residuals) and predictions
on new data (``_prediction``).  They call the engine; the engine never calls them.
"""
