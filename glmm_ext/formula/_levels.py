"""Text columns as pandas Categoricals for the formula engine: the same design, built faster.

patsy reads a column of words value by value (a missing-value test on each, twice: once to find the
levels, once to code the rows); a pandas Categorical it codes in one step from its categories.  With the
categories patsy would choose itself (the sorted distinct values, or the ``levels=`` given in ``C(...)``)
the levels, column names and contrasts are the same, and so is the specification a prediction uses.
The conversion is made on a shallow copy for the one evaluation; the model keeps the frame as it was.

A term written ``C(col)`` would still be read value by value (patsy's ``C`` boxes the column and its coder
only takes the one-step route for a bare Categorical), so `categorical_env` puts in the formula's namespace
a ``C`` that hands back the columns converted here as they are and is patsy's ``C`` for anything else
(words at predict time, a caller's own Categorical, a contrast): same levels, names and errors.
"""
import ast
import re

import numpy as np
import pandas as pd
from patsy.builtins import C as _patsy_C

# key of the converted frame's ``attrs`` naming the columns converted here (pandas copies a frame's attrs to
# the Series of its columns, so the mark travels with the column and nothing else carries it)
_MARK = "glmm_ext_categorical_columns"

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
    """(the column's distinct values, each row's index into them) when every value is a str (no missing
    value), else None.  One hashing pass, reused to code the Categorical."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        return None
    if isinstance(series.dtype, pd.StringDtype):  # str or missing by construction
        if series.isna().any():
            return None
    elif series.dtype != object or pd.api.types.infer_dtype(series, skipna=False) != "string":
        return None
    codes, uniques = pd.factorize(series)
    return [str(v) for v in uniques], codes


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
        found = _string_values(frame[name])
        if found is None:
            continue
        values, codes = found
        categories = _categories(rhs, name, values)
        if categories is not None:
            position = {level: i for i, level in enumerate(categories)}
            recode = np.array([position[v] for v in values], dtype=codes.dtype)
            converted[name] = pd.Categorical.from_codes(recode[codes], categories=categories)
    if not converted:
        return frame
    out = frame.copy(deep=False)
    for name, values in converted.items():
        out[name] = pd.Series(values, index=frame.index, name=name)
    out.attrs = {**frame.attrs, _MARK: tuple(converted)}  # a new dict: the caller's attrs untouched
    return out


def C(data, contrast=None, levels=None):
    """patsy's ``C`` that passes a column converted by `categorical_frame` through unboxed (its categories
    are the levels patsy would take), so patsy codes it in one step; otherwise ``patsy.C`` itself."""
    if contrast is None and isinstance(data, pd.Series) and isinstance(data.dtype, pd.CategoricalDtype) \
            and data.name in data.attrs.get(_MARK, ()) \
            and (levels is None or list(levels) == list(data.cat.categories)):
        return data
    return _patsy_C(data, contrast, levels)


def categorical_env(env, frame):
    """The formula namespace `env` with the pass-through ``C`` when `frame` came converted from
    `categorical_frame` and ``C`` in `env` is patsy's own (or absent), else `env` itself."""
    if _MARK not in getattr(frame, "attrs", {}) or env.get("C", _patsy_C) is not _patsy_C:
        return env
    return {**env, "C": C}
