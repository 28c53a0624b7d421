"""Text columns as pandas Categoricals for the formula engine: the same design, built faster.

patsy reads a column of words value by value (a missing-value test on each, twice: once to find the
levels, once to code the rows); a pandas Categorical it codes in one step from its categories.  With the
categories patsy would choose itself (the sorted distinct values, or the ``levels=`` given in ``C(...)``)
the levels, column names and contrasts are the same, and so is the specification a prediction uses.
The conversion is made on a shallow copy for the one evaluation; the model keeps the frame as it was.
"""
import ast
import re

import pandas as pd

# what may stand on either side of a column name for it to be a plain factor of the formula
_BEFORE = set("~+-*/:(")
_AFTER = set("+-*/:),")


def formula_engine_is_patsy():
    """True when statsmodels evaluates formulas with patsy (its default; formulaic otherwise)."""
    try:
        from statsmodels.formula._manager import FormulaManager
    except ImportError:  # pragma: no cover - statsmodels 0.14: patsy only
        return True
    return FormulaManager().engine == "patsy"


def _string_values(series):
    """The column's distinct values when every one is a str (no missing value), else None."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        return None
    if isinstance(series.dtype, pd.StringDtype):  # str or missing by construction
        if series.isna().any():
            return None
    elif series.dtype != object or pd.api.types.infer_dtype(series, skipna=False) != "string":
        return None
    return [str(v) for v in pd.unique(series)]


def _call_before(text, start):
    """(name of the call whose "(" precedes position `start`, index of that "(") or (None, None)."""
    j = start - 1
    while j >= 0 and text[j].isspace():
        j -= 1
    if j < 0 or text[j] != "(":
        return None, None
    k = j - 1
    while k >= 0 and text[k].isspace():
        k -= 1
    end = k + 1
    while k >= 0 and (text[k].isalnum() or text[k] in "_."):
        k -= 1
    return text[k + 1:end], j


def _closing(text, open_at):
    """Index of the ")" matching the "(" at `open_at` (len(text) when unbalanced)."""
    depth = 0
    for i in range(open_at, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return i
    return len(text)


def _categories(rhs, name, values):
    """The categories patsy would give column `name` of the right-hand side `rhs`, or None when the column
    is used in any other way than as a factor (bare, or the first argument of C(...)): then it is left as is."""
    categories = None
    found = False
    for match in re.finditer(r"(?<![\w.])" + re.escape(name) + r"(?!\w)", rhs):
        found = True
        before = rhs[:match.start()].rstrip()
        after = rhs[match.end():].lstrip()
        if (before and before[-1] not in _BEFORE) or (after and after[0] not in _AFTER):
            return None
        call, open_at = _call_before(rhs, match.start())
        if call not in (None, "", "C"):
            return None
        if call == "C":
            inside = rhs[match.end():_closing(rhs, open_at)]
            if "levels" in inside:
                given = re.fullmatch(r"\s*,\s*levels\s*=\s*(\[[^\[\]]*\]|\([^()]*\))\s*", inside)
                if given is None:
                    return None
                try:
                    levels = list(ast.literal_eval(given.group(1)))
                except (ValueError, SyntaxError):
                    return None
                # values outside the levels: patsy's own error, not a Categorical's silent NaN
                if len(set(levels)) != len(levels) or not set(values) <= set(levels):
                    return None
                if categories is not None and categories != levels:
                    return None
                categories = levels
                continue
        elif after.startswith(","):
            return None
        if categories is not None and categories != sorted(values):
            return None
        categories = sorted(values)
    return categories if found else None


def categorical_frame(frame, formula):
    """`frame` with each column of words that `formula` uses only as a factor as a pandas Categorical (its
    categories in patsy's order), or `frame` itself when there is none.  A shallow copy: `frame` is untouched."""
    if not isinstance(formula, str) or "~" not in formula or not formula_engine_is_patsy():
        return frame
    rhs = formula.split("~", 1)[1]
    converted = {}
    for name in frame.columns:
        if not isinstance(name, str) or name not in rhs:
            continue
        values = _string_values(frame[name])
        if values is None:
            continue
        categories = _categories(rhs, name, values)
        if categories is not None:
            converted[name] = pd.Categorical(frame[name], categories=categories)
    if not converted:
        return frame
    out = frame.copy(deep=False)
    for name, values in converted.items():
        out[name] = pd.Series(values, index=frame.index, name=name)
    return out
