"""Data for a model: input checks and listwise deletion with a record of what was dropped.

``prepare`` runs before statsmodels' formula machinery (``Model.from_formula``) evaluates the formula
once: it reads the formula without evaluating it (``formula._safe``), checks the columns it names,
drops every row with a missing, infinite or (in a numeric column) non-numeric value in a column the
model uses, and hands statsmodels a cleaned copy.  A text column whose values are mostly numbers is
read as numeric with the others dropped; a column wrapped in C(...), the groups column and a column
of words are categorical.  ``from_arrays`` does the same for the array API.  The caller's data are
never modified.
"""
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ._levels import categorical_env, categorical_frame
from ._safe import check_safe, formula_columns, formula_names, split_formula
from .._validation import check_vector

try:  # where statsmodels keeps a formula's right-hand side specification on model.data
    import statsmodels.formula._manager  # noqa: F401

    SPEC_KEY = "model_spec"
except ImportError:  # pragma: no cover - statsmodels 0.14
    SPEC_KEY = "design_info"

from statsmodels.base.data import PandasData


def filled(n, value):
    """n copies of `value` as a read-only view of one number: the rows' offset, trials or weights when the
    data give none (no n-sized array to fill and page in; a write to it raises)."""
    return np.broadcast_to(np.float64(value), (n,))


def copy_on_write():
    """True when pandas copies on write (always from pandas 3, an option before): a frame or Series built on
    another's values is then never changed through it, so the copies made only to protect them can go."""
    if int(pd.__version__.split(".")[0]) >= 3:
        return True
    mode = getattr(pd.options, "mode", None)
    return getattr(mode, "copy_on_write", False) is True


class FormulaPandasData(PandasData):
    """statsmodels' PandasData whose unpickling rebuilds the formula's specification with numpy as ``np``
    first (no stack-frame guessing), then as statsmodels does (for formulas using the caller's names)."""

    def __setstate__(self, d):
        flag = "restore_" + SPEC_KEY
        if flag in d and "frame" in d and "formula" in d:
            from statsmodels.formula.formulatools import handle_formula_data

            try:
                _, _, spec = handle_formula_data(d["frame"], None, d["formula"],
                                                 depth=eval_env_for_statsmodels({"np": np}), missing="drop")
            except Exception:  # a name from the caller's namespace: statsmodels' own search
                return super().__setstate__(d)
            d = {k: v for k, v in d.items() if k != flag}
            setattr(self, SPEC_KEY, spec)
            self.__dict__.update(d)
            return None
        return super().__setstate__(d)


MISSING_OPTIONS = ("drop", "raise", "none")
FORMULA_MODES = ("python", "safe")
ROW_VECTORS = ("offset", "exposure", "weights", "var_weights", "freq_weights")
PRIOR_WEIGHTS = ("var_weights", "freq_weights")  # statsmodels GLM's prior weights (issue 15)


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


@dataclass
class Prepared:
    """Rows kept for a formula fit: the frame the formula is evaluated on and the per-row vectors."""

    frame: pd.DataFrame
    groups: pd.Series
    vectors: dict  # offset / exposure / weights -> float array over the rows kept
    n_dropped: int
    dropped_index: list
    drop_reasons: dict

    missing: str = "drop"

    def clean(self, endog, exog, formula_missing=None, finite=False):
        """CleanData for the matrices the formula produced.

        `formula_missing` marks the rows the formula engine dropped in turn (a NaN produced by
        evaluating the formula, e.g. the log of a negative number, or in a variable taken from the
        caller's namespace); rows where the formula produced an infinite value are dropped here.
        ``finite=True`` says that the matrices are the frame's own columns (and ones), which `prepare`
        found finite: nothing is read again.
        """
        keep = None if formula_missing is None else ~np.asarray(formula_missing, bool)  # (None: every row)
        dropped, reasons = list(self.dropped_index), dict(self.drop_reasons)
        if keep is not None and not keep.all():
            reasons["NaN from evaluating the formula"] = int((~keep).sum())
            dropped += list(self.frame.index[~keep])
        infinite = None  # (None: no infinite value)
        for table in () if finite else (endog, exog):
            values = np.asarray(table, dtype=float)
            if np.all(np.isfinite(np.sum(values, axis=0))):  # a finite sum: every value finite (cheap test first)
                continue
            bad = ~np.isfinite(values)
            for j in np.flatnonzero(bad.any(axis=0)):
                reasons[str(table.columns[j])] = int(bad[:, j].sum())
            infinite = bad.any(axis=1) if infinite is None else infinite | bad.any(axis=1)
        if infinite is not None and infinite.any():
            _refuse_missing(self.missing, infinite, reasons, endog.index)
            dropped += list(endog.index[infinite])
            if infinite.all():
                _rows_kept(infinite, reasons)
        else:
            infinite = None
        if (keep is None or keep.all()) and infinite is None:  # nothing dropped here (the usual case): no copies
            groups = self.groups if self.groups.index.equals(endog.index) else self.groups.set_axis(endog.index)
            vectors = dict(self.vectors)
        else:
            keep = np.ones(len(self.frame), bool) if keep is None else keep
            infinite = np.zeros(len(endog), bool) if infinite is None else infinite
            rows = np.flatnonzero(keep)[~infinite]
            endog, exog = endog.iloc[~infinite], exog.iloc[~infinite]
            groups = self.groups.iloc[rows]
            groups.index = endog.index
            vectors = {k: v[rows] for k, v in self.vectors.items()}
        off = np.array(vectors["offset"], dtype=float) if "offset" in vectors else filled(len(groups), 0.0)
        if "exposure" in vectors:
            off = off + np.log(vectors["exposure"])
        return CleanData(endog=endog, exog=exog, groups=groups, offset=off, n_dropped=len(dropped),
                         weights=vectors.get("weights"), has_exposure="exposure" in vectors, dropped_index=dropped,
                         drop_reasons=reasons, prior_weights={k: vectors[k] for k in PRIOR_WEIGHTS if k in vectors})


# --------------------------------------------------------------------------------- columns
#: rows whose values show that a column varies before the whole column is compared (`constant_column`)
_CONSTANT_PREFIX = 64


def constant_column(exog):
    """Where statsmodels' ``ModelData._handle_constant`` finds the constant, in the usual case and cheaply: the
    position of the one constant, non-zero column of `exog` (a DataFrame of finite floats, as the model keeps)
    when every other column varies, else None (statsmodels then searches itself: a maximum and a minimum of
    every column, and a rank when no column is constant).  A column varying in its first rows is not read
    further."""
    if not isinstance(exog, pd.DataFrame) or exog.shape[1] == 0 or len(exog) < 2 \
            or any(dtype != np.float64 for dtype in exog.dtypes):
        return None
    found, matrix = None, exog.to_numpy()  # (float columns in one block: a view)
    for j in range(exog.shape[1]):
        values = matrix[:, j]
        head = values[:_CONSTANT_PREFIX]
        if np.any(head != head[0]) or values.min() != values.max():  # (the values are finite)
            continue
        if found is not None or values[0] == 0 or not np.isfinite(values[0]):
            return None
        found = j
    return found


def _column_problem(series, name, role):
    """A message when a column's type cannot be a number the model uses, else None."""
    kind = series.dtype.kind
    what = {"M": "dates (datetime)", "m": "time spans (timedelta)", "c": "complex numbers"}.get(kind)
    if what is None and isinstance(series.dtype, pd.PeriodDtype):
        what = "periods"
    if what is not None:
        return f"{role} column {name!r} holds {what} (dtype {series.dtype}); convert it to numbers first"
    return None


def _not_finite(values):
    """Mask of the rows of a float array that are not finite, or None when every one is (a finite sum says
    so in one pass without a mask; an overflowing sum falls back to the mask)."""
    if np.isfinite(np.sum(values)):
        return None
    bad = ~np.isfinite(values)
    return bad if bad.any() else None


def _numeric_view(series):
    """(numeric values or None if the column is categorical, mask of bad rows or None when there is none)."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        return None, series.isna().to_numpy()
    if pd.api.types.is_bool_dtype(series):
        values = series.astype(float)
        return values, values.isna().to_numpy()
    if pd.api.types.is_numeric_dtype(series):
        values = series if series.dtype == np.float64 else series.astype(float)
        return values, _not_finite(values.to_numpy())
    coerced = pd.to_numeric(series, errors="coerce")
    present = series.notna().to_numpy()
    n_numeric = int(coerced.notna().sum())
    if n_numeric == 0 or n_numeric < 0.5 * present.sum():
        return None, ~present
    return coerced.astype(float), ~np.isfinite(coerced.to_numpy(dtype=float, na_value=np.nan))


def clean_frame(data, response_cols, numeric_cols, categorical_cols, required_numeric=(), as_frame=True):
    """Copy of the used columns with bad rows marked; returns (frame, bad mask, reasons).

    A column of words is an error in `response_cols` and `required_numeric`, categorical elsewhere.  With
    ``as_frame=False`` the columns come back as a dict of Series (no copy into one frame).
    """
    columns = {}  # built into one frame at the end (inserting 1,000 columns one by one fragments it)
    bad = np.zeros(len(data), dtype=bool)
    reasons = {}
    for col in list(dict.fromkeys(list(response_cols) + list(numeric_cols) + list(categorical_cols))):
        series = data[col]
        role = "response" if col in response_cols else "predictor"
        problem = _column_problem(series, col, role)
        if problem and col not in categorical_cols:
            raise ValueError(problem)
        if col in categorical_cols:
            col_bad = series.isna().to_numpy()
            columns[col] = series
        else:
            values, col_bad = _numeric_view(series)
            if values is None:
                if col in response_cols or col in required_numeric:
                    role = "response" if col in response_cols else "numeric"
                    raise ValueError(f"{role} column {col!r} holds no numbers (dtype {series.dtype})")
                columns[col] = series  # a column of words: patsy makes it categorical
            else:
                columns[col] = values
        if col_bad is not None and col_bad.any():
            reasons[col] = int(col_bad.sum())
            bad |= col_bad
    if not as_frame:
        return columns, bad, reasons
    frame = pd.DataFrame(columns, index=data.index) if columns else pd.DataFrame(index=data.index)
    return frame, bad, reasons


def _is_column_key(value, columns):
    """A column name given for a per-row argument (a string, or any hashable label of the data)."""
    if isinstance(value, str):
        return True
    try:
        return np.ndim(value) == 0 and not isinstance(value, (bool, np.bool_))
    except TypeError:
        return False


def aligned(values, index, what):
    """A Series aligned on the data's index (statsmodels' convention); arrays are used by position."""
    if not isinstance(values, pd.Series) or values.index.equals(index):
        return values
    if values.index.has_duplicates or index.has_duplicates:
        raise ValueError(f"{what} is a Series whose index differs from the data's and has repeated labels, so it "
                         "cannot be aligned; pass .to_numpy() to use it by position")
    absent = ~index.isin(values.index)
    if absent.any():
        raise ValueError(f"{what} is a Series whose index lacks {int(absent.sum())} of the data's row labels "
                         f"(first: {index[absent][0]!r}); align it, or pass .to_numpy() to use it by position")
    return values.reindex(index)


def resolve_groups(groups, data):
    """(labels as a Series on the data's index, column name or None)."""
    if groups is None:
        raise ValueError("groups is required: a column name or an array with one label per row")
    if _is_column_key(groups, data.columns):
        if groups not in data.columns:
            raise ValueError(f"groups column {groups!r} is not in the data (columns: "
                             f"{', '.join(map(str, list(data.columns)[:20]))})")
        return data[groups], groups
    groups = aligned(groups, data.index, "groups")
    arr = np.asarray(groups)
    if arr.ndim > 1 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1 or len(arr) != len(data):
        raise ValueError(f"groups has {arr.size} values but the data have {len(data)} rows")
    return pd.Series(arr, index=data.index), getattr(groups, "name", None)


def _missing_labels(values):
    """Rows whose group label is missing: NaN/None/NaT, or an infinite number."""
    missing = np.array(pd.isna(values).to_numpy(), dtype=bool)
    if values.dtype.kind == "f":
        missing |= np.isinf(values.to_numpy())
    elif values.dtype == object:
        missing |= np.array([isinstance(v, float) and np.isinf(v) for v in values], bool)
    return missing


def tidy_labels(labels):
    """Group labels as they were written: whole floats (an int column with a missing value) back to int."""
    if labels.dtype.kind == "f" and len(labels) and np.all(np.mod(labels.to_numpy(), 1) == 0):
        return labels.astype(np.int64)
    if isinstance(labels.dtype, pd.CategoricalDtype):
        return labels.cat.remove_unused_categories()
    return labels


def _check_missing_option(missing):
    if missing not in MISSING_OPTIONS:
        raise ValueError(f"missing must be one of {', '.join(MISSING_OPTIONS)} (got {missing!r})")


def _refuse_missing(missing, bad, reasons, index):
    """missing='raise' (and 'none', which statsmodels' formulas read as 'raise'): an error naming the columns."""
    if missing != "drop" and bad.any():
        detail = ", ".join(f"{k} ({v})" for k, v in reasons.items())
        first = ", ".join(map(str, list(index[bad])[:5]))
        raise ValueError(f"missing={missing!r}: {int(bad.sum())} rows have missing, non-numeric or infinite values "
                         f"in {detail} (rows {first}); use missing='drop' to drop them")


def _rows_kept(bad, reasons):
    """~bad, or an error when listwise deletion leaves no row."""
    keep = ~bad
    if not keep.any():
        detail = ", ".join(f"{k}: {v}" for k, v in reasons.items())
        raise ValueError(f"every one of the {len(bad)} rows has a missing, non-numeric or infinite value "
                         f"in a column the model uses ({detail})")
    return keep


def _positive(values, what, index):
    if what != "offset" and (values <= 0).any():
        bad = np.flatnonzero(values <= 0)
        raise ValueError(f"{what} must be > 0; {bad.size} rows are not (first: row {index[bad[0]]}, "
                         f"value {values[bad[0]]:g})")


# --------------------------------------------------------------------------------- formula API
def _unique_columns(formula, data, keys):
    """The data's column names that occur once; ValueError if the model names a repeated one."""
    repeated = set(data.columns[data.columns.duplicated()])
    if repeated:
        named = formula_columns(formula, list(repeated))
        used = named.response + named.predictors + [k for k in keys if _is_column_key(k, data.columns)]
        clash = [c for c in used if c in repeated]
        if clash:
            raise ValueError(f"the data have more than one column named {clash[0]!r}; rename them so the model "
                             "names one column")
    return [c for c in data.columns if c not in repeated]



def prepare(formula, data, groups, offset=None, exposure=None, weights=None, missing="drop",
            formula_mode="python", env_names=(), var_weights=None, freq_weights=None):
    """Check the inputs of a formula fit and drop incomplete rows; nothing in the formula is evaluated.

    Parameters
    ----------
    formula : str
    data : DataFrame
    groups, offset, exposure, weights, var_weights, freq_weights
        Column names (any label of ``data``, e.g. ``7``) or arrays with one value per row; a pandas
        Series whose index differs from the data's is aligned on it.
    missing : {"drop", "raise", "none"}
        "drop" removes incomplete rows (and reports them); "raise" and "none" raise ValueError.
    formula_mode : {"python", "safe"}
        "safe" accepts only the grammar of ``formula._safe``; "python" lets patsy run the formula's code.
    env_names : iterable of str
        Names the formula may take from the caller's namespace (python mode).
    """
    _check_missing_option(missing)
    if len(data) == 0:
        raise ValueError("the data have no rows")
    if formula_mode not in FORMULA_MODES:
        raise ValueError(f"formula_mode must be 'python' or 'safe' (got {formula_mode!r})")
    columns = _unique_columns(formula, data, [groups, offset, exposure, weights, var_weights, freq_weights])
    found = check_safe(formula, columns) if formula_mode == "safe" else formula_columns(formula, columns)
    if not found.response and not (formula_mode == "python"
                                   and set(formula_names(split_formula(formula)[0] + " ~ 1")) & set(env_names)):
        raise ValueError(f"the response of {formula!r} names no column of the data")
    both = [c for c in found.response if c in found.predictors]
    if both:
        raise ValueError(f"the response column {both[0]!r} is also among the predictors of {formula!r}")
    group_values, group_col = resolve_groups(groups, data)
    extra, arrays = {}, {}
    for what, value in (("offset", offset), ("exposure", exposure), ("weights", weights),
                        ("var_weights", var_weights), ("freq_weights", freq_weights)):
        if value is None:
            continue
        if _is_column_key(value, data.columns):
            if value not in data.columns:
                raise ValueError(f"{what} column {value!r} is not in the data")
            extra[what] = value
        else:
            arrays[what] = check_vector(aligned(value, data.index, what), len(data), what,
                                        positive=(what != "offset"))
    categorical = [c for c in found.predictors if c in found.categorical]
    numeric = [c for c in found.predictors if c not in found.categorical] + list(extra.values())
    cleaned, bad, reasons = clean_frame(data, found.response, numeric, categorical,
                                        required_numeric=list(extra.values()), as_frame=False)
    missing_group = _missing_labels(group_values)
    if missing_group.any():
        reasons[str(group_col) if group_col is not None else "groups"] = int(missing_group.sum())
        bad = bad | missing_group
    _refuse_missing(missing, bad, reasons, data.index)
    keep = _rows_kept(bad, reasons)
    every_row = bool(keep.all())
    rows = slice(None) if every_row else np.flatnonzero(keep)  # every row kept (usual): no gather
    # the formula sees only the columns it names (a copy of them, also what a pickle keeps)
    named = [c for c in dict.fromkeys(found.response + found.predictors + formula_names(formula)) if c in columns]
    used = {}
    for col in named:
        values = cleaned[col] if col in cleaned else data[col]
        values = values if every_row else values.iloc[rows]
        used[col] = values.cat.remove_unused_categories() if col in cleaned and \
            isinstance(values.dtype, pd.CategoricalDtype) else values
    index = data.index if every_row else data.index[rows]
    # (with copy-on-write the frame shares the data's values, which no write can change through it)
    kept = pd.DataFrame(used, index=index, copy=not copy_on_write()) if used else pd.DataFrame(index=index)
    vectors = {what: cleaned[col].to_numpy(dtype=float)[rows] for what, col in extra.items()}
    vectors.update({what: values[rows] for what, values in arrays.items()})
    for what, values in vectors.items():
        _positive(values, what, kept.index)
    labels = tidy_labels(group_values if every_row else group_values.iloc[rows])
    labels = labels.rename(str(group_col) if group_col is not None else "groups")  # a new Series: the data untouched
    return Prepared(frame=kept, groups=labels, vectors=vectors, n_dropped=int(bad.sum()),
                    dropped_index=list(data.index[bad]), drop_reasons=reasons, missing=missing)


def eval_env_for_statsmodels(env):
    """The formula's namespace as statsmodels takes it: a dict (>= 0.15) or a patsy EvalEnvironment (0.14)."""
    if SPEC_KEY == "model_spec":
        return env
    import patsy  # pragma: no cover - statsmodels 0.14

    return patsy.EvalEnvironment([env])  # pragma: no cover


def from_formula(formula, data, groups, offset=None, exposure=None, weights=None, missing="drop",
                 formula_mode="python", eval_env=None, var_weights=None, freq_weights=None):
    """CleanData for a formula without building a model (one evaluation by statsmodels' formula tools).

    ``GLMM.from_formula`` is the public route; this is for steps that need the cleaned matrices only.
    `eval_env` is a dict of names besides the columns (default: numpy as ``np``).
    """
    from statsmodels.formula.formulatools import handle_formula_data

    data = data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)
    env = {"np": np} if eval_env is None or formula_mode == "safe" else dict(eval_env)
    prepared = prepare(formula, data, groups, offset=offset, exposure=exposure, weights=weights, missing=missing,
                       formula_mode=formula_mode, env_names=env.keys(), var_weights=var_weights,
                       freq_weights=freq_weights)
    try:
        frame = categorical_frame(prepared.frame, formula)
        (endog, exog), missing_mask, spec = handle_formula_data(
            frame, None, formula, depth=eval_env_for_statsmodels(categorical_env(env, frame)),
            missing="raise" if missing == "none" else missing)
    except (ValueError, TypeError):
        raise
    except Exception as exc:  # patsy / formulaic evaluation errors
        raise ValueError(f"formula {formula!r} could not be evaluated: {type(exc).__name__}: {exc}") from None
    clean = prepared.clean(endog, exog, missing_mask)
    clean.design_info, clean.formula = spec, formula
    return clean


# --------------------------------------------------------------------------------- array API
def from_arrays(endog, exog, groups, offset=None, exposure=None, weights=None, missing="drop", var_weights=None,
                freq_weights=None):
    """Build CleanData from arrays (the array API); rows with a non-finite value are dropped."""
    _check_missing_option(missing)
    if np.ndim(endog) > 2 or np.ndim(exog) > 2:
        which = "endog" if np.ndim(endog) > 2 else "exog"
        raise ValueError(f"{which} has {np.ndim(endog if which == 'endog' else exog)} dimensions; give a "
                         "vector or a 2-D table (rows x columns)")
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
    if isinstance(exog, pd.DataFrame) and isinstance(endog, (pd.Series, pd.DataFrame)) \
            and not exog_df.index.equals(endog_df.index):
        raise ValueError("the indexes of endog and exog differ (statsmodels requires them aligned); align them, "
                         "or pass .to_numpy() to use the rows by position")
    exog_df.index = endog_df.index
    frame = pd.concat([endog_df, exog_df], axis=1)
    cols = list(frame.columns)
    frame.columns = [f"_c{i}" for i in range(len(cols))]
    try:
        cleaned, bad, reasons = clean_frame(frame, list(frame.columns[: endog_df.shape[1]]),
                                            list(frame.columns[endog_df.shape[1]:]), [])
    except ValueError as exc:  # name the caller's column, not the internal one
        raise ValueError(re.sub(r"'_c(\d+)'", lambda m: repr(cols[int(m.group(1))]), str(exc))) from None
    reasons = {cols[int(k[2:])]: v for k, v in reasons.items()}
    for col in cleaned.columns:
        if cleaned[col].dtype.kind not in "biuf":
            raise ValueError(f"exog column {cols[int(col[2:])]!r} is not numeric")
    group_values, group_name = resolve_groups(groups, endog_df)
    missing_group = _missing_labels(group_values)
    if missing_group.any():
        reasons[str(group_name or "groups")] = int(missing_group.sum())
        bad = bad | missing_group
    _refuse_missing(missing, bad, reasons, endog_df.index)
    arrays = {what: check_vector(aligned(value, endog_df.index, what), n, what, positive=(what != "offset"))
              for what, value in (("offset", offset), ("exposure", exposure), ("weights", weights),
                                  ("var_weights", var_weights), ("freq_weights", freq_weights))
              if value is not None}
    keep = _rows_kept(bad, reasons)
    cleaned.columns = cols
    e = cleaned.iloc[:, : endog_df.shape[1]].loc[keep]
    x = cleaned.iloc[:, endog_df.shape[1]:].loc[keep]
    vectors = {what: values[keep] for what, values in arrays.items()}
    off = np.zeros(int(keep.sum())) + vectors.get("offset", 0.0)
    if "exposure" in vectors:
        off = off + np.log(vectors["exposure"])
    labels = tidy_labels(group_values.loc[keep]).rename(group_name or "groups")
    return CleanData(endog=e, exog=x, groups=labels, offset=off, n_dropped=int(bad.sum()),
                     dropped_index=list(endog_df.index[bad]), drop_reasons=reasons, weights=vectors.get("weights"),
                     has_exposure=exposure is not None,
                     prior_weights={k: vectors[k] for k in PRIOR_WEIGHTS if k in vectors})


def formula_environment(formula, data, formula_mode, eval_env):
    """The names a formula may use besides the data's columns, as a dict (nothing evaluated)."""
    import inspect

    import patsy

    if formula_mode == "safe" or not isinstance(formula, str):
        return {"np": np}
    if isinstance(eval_env, dict):
        return dict(eval_env)
    if isinstance(eval_env, patsy.EvalEnvironment):
        return {k: v for ns in eval_env._namespaces for k, v in ns.items()}
    if eval_env is not None and (isinstance(eval_env, bool) or not isinstance(eval_env, (int, np.integer))):
        raise ValueError(f"eval_env must be an int (frames up from the caller, -1 for none), a dict or a patsy "
                         f"EvalEnvironment (got {eval_env!r})")
    if eval_env == -1:
        return {}
    frame = inspect.currentframe()
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] == "glmm_ext":
        frame = frame.f_back
    for _ in range(int(eval_env or 0)):
        frame = frame.f_back if frame is not None and frame.f_back is not None else frame
    scopes = [] if frame is None else [frame.f_locals, frame.f_globals]
    env = {}
    for name in formula_names(formula):
        if name in data.columns:
            continue
        for scope in scopes:
            if name in scope:
                env[name] = scope[name]
                break
    env.setdefault("np", np)
    return env
