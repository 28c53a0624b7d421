"""Formula and data -> design: the first stage of a fit (lme4's ``lFormula``).

- ``_safe``: reads a formula without evaluating it (the columns it names; the safe mode's checker).
- ``_bars``: lme4's random-effects terms ``(1 + x | g)``, ``(x || g)``, ``(0 + x | g)``.
- ``_data``: input checks, listwise deletion with its record, statsmodels' formula data.
- ``_design``: ``build_design``: response, trials, predictors, groups, offset, scaling, the group sort.
"""
