"""Plain formulas (a numeric response, numeric columns and the intercept: ``y ~ x1 + x2``) built from the columns.

statsmodels' formula machinery evaluates a formula with patsy on every row; for a plain formula that costs
more than the model's fit on 1e6 rows and gives only the columns themselves and a column of ones.  Here patsy
builds the specification on a few rows (it does not depend on the values) and the matrices are the frame's
columns; every other formula goes through statsmodels as before.
"""
import keyword
import re

import numpy as np
import pandas as pd

from ._data import SPEC_KEY
from ._levels import formula_engine_is_patsy as _formula_engine_is_patsy

_PLAIN_TOKEN = re.compile(r"\s*(?:([A-Za-z_][A-Za-z_0-9]*)|([01])(?![0-9A-Za-z_.])|([+-]))")
#: rows on which the formula engine builds the specification of a plain formula (it does not depend on them)
_SPEC_ROWS = 8


def _plain_names(side):
    """The column names of a formula side made only of names, 0, 1, + and - (e.g. ``x1 + x2 - 1``), else None."""
    names, pos, side = [], 0, side.rstrip()
    while pos < len(side):
        match = _PLAIN_TOKEN.match(side, pos)
        if match is None:
            return None
        if match.group(1):
            if keyword.iskeyword(match.group(1)):
                return None
            names.append(match.group(1))
        pos = match.end()
    return names


def plain_design(formula, frame, eval_env, missing):
    """statsmodels' ``handle_formula_data(frame, None, formula)`` for a formula whose response is one numeric
    column and whose terms are numeric columns and the intercept (``y ~ x1 + x2``, ``y ~ 0 + x``): the same
    ``((endog, exog), missing_mask, spec)`` with the matrices built from the columns directly.  None for any
    other formula (the formula engine evaluates it).

    The specification of such a formula does not depend on the values, so patsy builds it (and the column
    names and order) on the first rows only; the design columns are then the frame's columns and a column of
    ones, which is what patsy computes for them.  `frame` is `prepare`'s: numeric columns are float and finite,
    so no row is missing.
    """
    if not isinstance(formula, str) or formula.count("~") != 1:
        return None
    lhs, rhs = formula.split("~")
    response, names = _plain_names(lhs), _plain_names(rhs)
    if response is None or names is None or len(response) != 1 or "+" in lhs or "-" in lhs:
        return None
    columns = set(frame.columns)
    for name in response + names:
        if name not in columns or frame[name].dtype != np.float64:
            return None
    if len(frame) <= _SPEC_ROWS or not _formula_engine_is_patsy():
        return None
    from statsmodels.formula.formulatools import handle_formula_data

    head = frame.iloc[:_SPEC_ROWS].copy()  # a small frame of its own (a view would carry the whole blocks along)
    (endog_h, exog_h), mask, spec = handle_formula_data(head, None, formula, depth=eval_env, missing=missing)
    if mask is not None or list(endog_h.columns) != response:
        return None
    values = []
    for name in exog_h.columns:
        if name in names:
            column = frame[name].to_numpy()
        elif np.all(exog_h[name].to_numpy() == 1.0):  # the intercept
            column = None
        else:
            return None
        if column is not None and not np.array_equal(exog_h[name].to_numpy(), column[:_SPEC_ROWS]):
            return None
        values.append(column)
    X = np.empty((len(frame), len(values)), order="F")  # a DataFrame block's layout: columns contiguous
    for j, column in enumerate(values):
        X[:, j] = 1.0 if column is None else column
    exog = pd.DataFrame(X, index=frame.index, columns=exog_h.columns, copy=False)
    endog = pd.DataFrame({response[0]: frame[response[0]].to_numpy(dtype=float, copy=True)}, index=frame.index)
    return (endog, exog), None, spec


def model_from_plain_formula(cls, formula, frame, drop_cols, model_kwargs):
    """What statsmodels' ``Model.from_formula(formula, frame, drop_cols=drop_cols, **model_kwargs)`` returns,
    for a plain formula (`plain_design`) without evaluating it on every row; None for any other formula."""
    if drop_cols is not None and len(drop_cols):
        return None
    kwargs = dict(model_kwargs)
    matrices = plain_design(formula, frame, kwargs.pop("eval_env"), kwargs.get("missing", "drop"))
    if matrices is None:
        return None
    (endog, exog), missing_idx, spec = matrices
    kwargs.update({"missing_idx": missing_idx, "formula": formula, SPEC_KEY: spec})
    model = cls(endog, exog, **kwargs)
    model.formula = formula
    model.data.frame = frame
    return model
