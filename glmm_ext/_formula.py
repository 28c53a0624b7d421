"""Formula and data -> cleaned arrays: listwise deletion, then patsy design matrices.

A row is dropped when any column the model uses (response, predictors, groups, offset/exposure
given as columns) is missing, infinite or, in a numeric column, not a number.  A text column whose
values are mostly numbers is read as numeric with the others dropped; a column wrapped in C(...),
the groups column and a column of words are categorical.  The caller's DataFrame is never modified.
"""
import ast
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import patsy

from ._validation import check_vector


@dataclass
class CleanData:
    """The model's inputs after listwise deletion, in the data's row order."""

    endog: pd.DataFrame  # one column, or two (successes, failures)
    exog: pd.DataFrame
    groups: pd.Series
    offset: np.ndarray
    n_dropped: int
    weights: np.ndarray = None  # Binomial trials for a proportion response
    prior_weights: dict = field(default_factory=dict)  # "var_weights" / "freq_weights" -> values of the rows kept
    has_exposure: bool = False
    dropped_index: list = field(default_factory=list)
    drop_reasons: dict = field(default_factory=dict)  # column -> rows dropped because of it
    design_info: object = None
    formula: str = None


def _as_python(text):
    """Patsy formula side as a Python expression (':' interaction and '|' read as operators)."""
    return text.replace(":", "*").replace("|", "+").strip() or "1"


def _formula_columns(formula, columns):
    """Columns of `data` named in the formula (Q("name") included), split into response and predictors."""
    if "~" not in formula:
        raise ValueError(f"formula {formula!r} has no '~' separating the response from the predictors")
    lhs, rhs = formula.split("~", 1)

    def names(text):
        found = []
        try:
            tree = ast.parse(_as_python(text), mode="eval")
        except SyntaxError:
            return [c for c in columns if str(c) in text]
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id in columns:
                found.append(node.id)
            elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Q" and node.args \
                    and isinstance(node.args[0], ast.Constant) and node.args[0].value in columns:
                found.append(node.args[0].value)
        return list(dict.fromkeys(found))

    categorical = set()
    try:
        rhs_nodes = list(ast.walk(ast.parse(_as_python(rhs), mode="eval")))
    except SyntaxError:
        rhs_nodes = []
    for node in rhs_nodes:
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "C":
            categorical.update(n.id for n in ast.walk(node) if isinstance(n, ast.Name) and n.id in columns)
    return names(lhs), names(rhs), categorical


def _numeric_view(series):
    """(numeric values or None if the column is categorical, mask of bad rows)."""
    if pd.api.types.is_bool_dtype(series):
        values = series.astype(float)
        return values, values.isna().to_numpy()
    if pd.api.types.is_numeric_dtype(series):
        values = series.astype(float)
        return values, ~np.isfinite(values.to_numpy())
    coerced = pd.to_numeric(series, errors="coerce")
    present = series.notna().to_numpy()
    n_numeric = int(coerced.notna().sum())
    if n_numeric == 0 or n_numeric < 0.5 * present.sum():
        return None, ~present
    return coerced.astype(float), ~np.isfinite(coerced.to_numpy(dtype=float, na_value=np.nan))


def clean_frame(data, response_cols, numeric_cols, categorical_cols, required_numeric=()):
    """Copy of the used columns with bad rows marked; returns (frame, bad mask, reasons).

    A column of words is an error in `response_cols` and `required_numeric`, categorical elsewhere.
    """
    frame = pd.DataFrame(index=data.index)
    bad = np.zeros(len(data), dtype=bool)
    reasons = {}
    for col in list(dict.fromkeys(response_cols + numeric_cols + categorical_cols)):
        series = data[col]
        if col in categorical_cols:
            col_bad = series.isna().to_numpy()
            frame[col] = series
        else:
            values, col_bad = _numeric_view(series)
            if values is None:
                if col in response_cols or col in required_numeric:
                    role = "response" if col in response_cols else "numeric"
                    raise ValueError(f"{role} column {col!r} holds no numbers (dtype {series.dtype})")
                frame[col] = series  # a column of words: patsy makes it categorical
            else:
                frame[col] = values
        if col_bad.any():
            reasons[col] = int(col_bad.sum())
        bad |= col_bad
    return frame, bad, reasons


ROW_VECTORS = ("offset", "exposure", "weights", "var_weights", "freq_weights")
PRIOR_WEIGHTS = ("var_weights", "freq_weights")


def _row_vectors(used, arrays, columns, keep):
    """(offset incl. log exposure, weights or None, {var_weights, freq_weights}) for the rows kept."""
    n = int(keep.sum())
    values = {}
    for what in ROW_VECTORS:
        if what in columns:
            values[what] = used[columns[what]].to_numpy(dtype=float)
        elif what in arrays:
            values[what] = arrays[what][keep]
    for what in ("exposure", "weights") + PRIOR_WEIGHTS:
        if what in values and (values[what] <= 0).any():
            bad = np.flatnonzero(values[what] <= 0)
            raise ValueError(f"{what} must be > 0; {bad.size} rows are not (first: row {used.index[bad[0]]}, "
                             f"value {values[what][bad[0]]:g})")
    off = np.zeros(n) + values.get("offset", 0.0)
    if "exposure" in values:
        off = off + np.log(values["exposure"])
    return off, values.get("weights"), {k: values[k] for k in PRIOR_WEIGHTS if k in values}


def _drop_missing_groups(values, name, bad, reasons):
    """Mark rows whose group label is missing; returns the updated bad-row mask."""
    missing = pd.isna(values).to_numpy()
    if missing.any():
        reasons[name or "groups"] = int(missing.sum())
    return bad | missing


def _checked_vectors(given, n):
    """Offset/exposure/weights given as arrays: n finite values (exposure and weights > 0)."""
    return {what: check_vector(value, n, what, positive=(what != "offset"))
            for what, value in given.items() if value is not None and not isinstance(value, str)}


def _rows_kept(bad, reasons):
    """~bad, or an error when listwise deletion leaves no row."""
    keep = ~bad
    if not keep.any():
        detail = ", ".join(f"{k}: {v}" for k, v in reasons.items())
        raise ValueError(f"every one of the {len(bad)} rows has a missing, non-numeric or infinite value "
                         f"in a column the model uses ({detail})")
    return keep


def from_formula(formula, data, groups, offset=None, exposure=None, weights=None, var_weights=None,
                 freq_weights=None):
    """Build CleanData from a patsy formula and a DataFrame (listwise deletion first)."""
    if not isinstance(data, pd.DataFrame):
        data = pd.DataFrame(data)
    if not isinstance(formula, str):
        raise TypeError(f"formula must be a string (got {type(formula).__name__})")
    columns = set(data.columns)
    lhs_cols, rhs_cols, c_cols = _formula_columns(formula, columns)
    if not lhs_cols:
        raise ValueError(f"the response of {formula!r} names no column of the data")
    group_values, group_col = _resolve_groups(groups, data)
    given = {"offset": offset, "exposure": exposure, "weights": weights, "var_weights": var_weights,
             "freq_weights": freq_weights}
    extra = {}
    for what, value in given.items():
        if isinstance(value, str):
            if value not in columns:
                raise ValueError(f"{what} column {value!r} is not in the data")
            extra[what] = value
    categorical = [c for c in rhs_cols if c in c_cols]
    numeric = [c for c in rhs_cols if c not in c_cols] + list(extra.values())
    frame, bad, reasons = clean_frame(data, lhs_cols, numeric, categorical, required_numeric=list(extra.values()))
    bad = _drop_missing_groups(group_values, group_col, bad, reasons)
    arrays = _checked_vectors(given, len(data))
    keep = _rows_kept(bad, reasons)
    used = frame.loc[keep]
    try:
        endog, exog = patsy.dmatrices(formula, used, NA_action="raise", return_type="dataframe")
    except patsy.PatsyError as exc:
        raise ValueError(f"formula {formula!r}: {exc}") from None
    off, trials, prior = _row_vectors(used, arrays, extra, keep)
    dropped = list(data.index[bad])
    return CleanData(endog=endog, exog=exog, groups=pd.Series(np.asarray(group_values)[keep], index=used.index,
                                                              name=group_col or "groups"),
                     offset=off, n_dropped=int(bad.sum()), dropped_index=dropped, drop_reasons=reasons,
                     design_info=exog.design_info, formula=formula, weights=trials, prior_weights=prior,
                     has_exposure=exposure is not None)


def _resolve_groups(groups, data):
    """(values aligned with data rows, column name or None)."""
    if isinstance(groups, str):
        if groups not in data.columns:
            raise ValueError(f"groups column {groups!r} is not in the data (columns: "
                             f"{', '.join(map(str, list(data.columns)[:20]))})")
        return data[groups], groups
    if groups is None:
        raise ValueError("groups is required: a column name or an array with one label per row")
    values = groups.reindex(data.index) if isinstance(groups, pd.Series) and groups.index.equals(data.index) \
        else pd.Series(np.asarray(groups).reshape(-1) if np.ndim(groups) else [groups], index=None)
    if len(values) != len(data):
        raise ValueError(f"groups has {len(values)} values but the data have {len(data)} rows")
    values.index = data.index
    return values, getattr(groups, "name", None)


def from_arrays(endog, exog, groups, offset=None, exposure=None, weights=None, var_weights=None, freq_weights=None):
    """Build CleanData from arrays (the array API); rows with a non-finite value are dropped."""
    endog_df = endog.to_frame() if isinstance(endog, pd.Series) else pd.DataFrame(endog)
    if endog_df.shape[1] == 1 and not isinstance(endog, (pd.Series, pd.DataFrame)):
        endog_df.columns = ["y"]
    elif endog_df.shape[1] == 2 and not isinstance(endog, pd.DataFrame):
        endog_df.columns = ["successes", "failures"]
    if isinstance(exog, pd.DataFrame):
        exog_df = exog.copy()
    else:
        arr = np.asarray(exog)
        arr = arr.reshape(-1, 1) if arr.ndim == 1 else arr
        exog_df = pd.DataFrame(arr, columns=[f"x{i}" if i else "const" for i in range(arr.shape[1])]
                               if arr.ndim == 2 and arr.shape[1] and np.all(arr[:, 0] == 1)
                               else [f"x{i + 1}" for i in range(arr.shape[1])])
    n = len(endog_df)
    if len(exog_df) != n:
        raise ValueError(f"exog has {len(exog_df)} rows but endog has {n}")
    if endog_df.shape[1] > 2:
        raise ValueError(f"endog has {endog_df.shape[1]} columns; give one, or two (successes, failures)")
    exog_df.index = endog_df.index
    frame = pd.concat([endog_df, exog_df], axis=1)
    cols = list(frame.columns)
    frame.columns = [f"_c{i}" for i in range(len(cols))]
    cleaned, bad, reasons = clean_frame(frame, list(frame.columns[: endog_df.shape[1]]),
                                        list(frame.columns[endog_df.shape[1]:]), [])
    reasons = {cols[int(k[2:])]: v for k, v in reasons.items()}
    for col in cleaned.columns:
        if cleaned[col].dtype.kind not in "biuf":
            raise ValueError(f"exog column {cols[int(col[2:])]!r} is not numeric")
    group_values, group_name = _resolve_groups(groups, endog_df)
    bad = _drop_missing_groups(group_values, group_name, bad, reasons)
    arrays = _checked_vectors({"offset": offset, "exposure": exposure, "weights": weights,
                               "var_weights": var_weights, "freq_weights": freq_weights}, n)
    keep = _rows_kept(bad, reasons)
    cleaned.columns = cols
    off, trials, prior = _row_vectors(cleaned.loc[keep], arrays, {}, keep)
    e = cleaned.iloc[:, : endog_df.shape[1]].loc[keep]
    x = cleaned.iloc[:, endog_df.shape[1]:].loc[keep]
    return CleanData(endog=e, exog=x, groups=group_values.loc[keep].rename(group_name or "groups"),
                     offset=off, n_dropped=int(bad.sum()), dropped_index=list(endog_df.index[bad]),
                     drop_reasons=reasons, weights=trials, prior_weights=prior, has_exposure=exposure is not None)
