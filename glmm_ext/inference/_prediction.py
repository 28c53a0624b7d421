"""Predictions on new data: the formula applied to it (`new_data`) and delta-method intervals
(`PredictionResults`: eta_i +- z SE(eta_i) mapped through the inverse link; the mean's SE is
|d mu / d eta| SE(eta_i)).  The random part and SE(eta_i) for every structure: `_prediction_terms`.
"""
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from ..formula._data import aligned


@dataclass
class NewData:
    """Rows to predict: fixed-effects matrix (NaN rows where the data are missing), offset, labels, index."""

    X: np.ndarray  # None: the fitted data
    offset: np.ndarray
    groups: object
    index: pd.Index


def _per_row(value, frame, index, what):
    """A column of the new data (by name) or an array aligned on its index."""
    if value is None:
        return None
    if frame is not None and not isinstance(value, (list, tuple, np.ndarray, pd.Series)) \
            and np.ndim(value) == 0 and value in frame.columns:
        return frame[value].to_numpy()
    if isinstance(value, str):
        raise ValueError(f"{what} column {value!r} is not in the new data")
    if isinstance(value, pd.Series) and index is not None:
        value = aligned(value, index, what)
    return np.asarray(value)


def _bool_as_fitted(model, frame):
    """`frame` with its True/False columns as 0.0/1.0 where the model was fitted on them as numbers (the
    fitting data's copy holds them so; the formula engine refuses a bool column for a numeric factor).
    A new frame when anything changes: the caller's data are not modified."""
    fitted = getattr(getattr(model, "data", None), "frame", None)
    if fitted is None:
        return frame
    numeric = [c for c in frame.columns if c in fitted.columns and pd.api.types.is_bool_dtype(frame[c])
               and pd.api.types.is_float_dtype(fitted[c])]
    if not numeric:
        return frame
    out = frame.copy()
    for c in numeric:
        out[c] = frame[c].astype(float)
    return out


def new_data(results, exog=None, transform=True, groups=None, offset=None, exposure=None):
    """Resolve predict()'s arguments into a NewData (the formula is applied by statsmodels)."""
    model = results.model
    if exog is None:
        design = model.design
        return NewData(None, None, model.groups if groups is None else np.asarray(groups), design.index)
    if isinstance(exog, dict):  # statsmodels' formula predict takes a dict of columns; groups= may name one
        exog = _dict_frame(exog)
    frame = exog if isinstance(exog, pd.DataFrame) else None
    if frame is not None:
        exog = _bool_as_fitted(model, frame)
    try:
        X, index = results._transform_predict_exog(exog, transform=transform)
        X = _kept_columns(model, X, transform)
    except ValueError:
        raise
    except Exception as exc:  # patsy / formulaic: an unknown level, a missing column, ...
        original = exc.__cause__ or exc  # statsmodels re-raises the engine's error with a preamble
        first = str(original).strip().splitlines()
        raise ValueError(f"the new data do not fit the model's formula: {type(original).__name__}: "
                         f"{first[0] if first else ''}") from None
    index = pd.RangeIndex(X.shape[0]) if index is None else pd.Index(index)
    columns = getattr(model, "vector_columns", {})
    if frame is not None:  # a model fitted with offset="col" takes the same column of the new data
        offset = columns.get("offset") if offset is None and columns.get("offset") in frame.columns else offset
        exposure = columns.get("exposure") if exposure is None and columns.get("exposure") in frame.columns \
            else exposure
    off = np.zeros(X.shape[0])
    values = _per_row(offset, frame, index, "offset")
    if values is not None:
        off = off + _length(values, X.shape[0], "offset").astype(float)
    values = _per_row(exposure, frame, index, "exposure")
    if values is not None:
        values = _length(values, X.shape[0], "exposure").astype(float)
        if np.any(values <= 0):
            raise ValueError("exposure must be > 0")
        off = off + np.log(values)
    labels = _per_row(groups, frame, index, "groups")
    if labels is not None:
        labels = _length(labels, X.shape[0], "groups")
    return NewData(X, off, labels, index)


def _dict_frame(columns):
    """A dict of columns (or of one value each: one row) as a DataFrame."""
    try:
        return pd.DataFrame(columns)
    except ValueError:  # all scalars
        return pd.DataFrame(columns, index=[0])


def _kept_columns(model, X, transform):
    """The model's columns of a design the formula built: drop_cols removes columns statsmodels' stored
    design still makes (a level of a factor), so predict sees the fitted columns only."""
    info = model.design_info if transform else None
    names = list(getattr(info, "column_names", None) or [])
    if X is None or np.ndim(X) != 2 or len(names) != np.shape(X)[1] or names == list(model.exog_names):
        return X
    if not set(model.exog_names) <= set(names):
        return X
    return np.asarray(X)[:, [names.index(name) for name in model.exog_names]]


def _length(values, n, what):
    values = np.asarray(values).reshape(-1)
    if len(values) != n:
        raise ValueError(f"{what} has {len(values)} values; the new data have {n} rows")
    return values


class PredictionResults:
    """Predicted means with delta-method standard errors and intervals (see the module notes).

    Attributes
    ----------
    predicted, se_mean : Series
        Mean and its standard error.
    linpred, se_linpred : Series
        Linear predictor and its standard error.
    """

    def __init__(self, dist, linpred, se_linpred, index):
        self.dist = dist
        self.linpred = pd.Series(linpred, index=index, name="linpred")
        self.se_linpred = pd.Series(se_linpred, index=index, name="se_linpred")
        mu = dist.mean(linpred)
        self.predicted = pd.Series(mu, index=index, name="mean")
        self.se_mean = pd.Series(np.abs(self._dmu_deta(linpred)) * se_linpred, index=index, name="mean_se")

    def _dmu_deta(self, eta):
        return self.dist.link.inverse_deriv(eta)

    def conf_int(self, alpha=0.05):
        """(lower, upper) of the mean: eta +- z SE(eta) through the inverse link."""
        from .._validation import check_alpha

        z = stats.norm.isf(check_alpha(alpha) / 2.0)
        eta, se = self.linpred.to_numpy(), self.se_linpred.to_numpy()
        a, b = self.dist.mean(eta - z * se), self.dist.mean(eta + z * se)
        return np.column_stack([np.fmin(a, b), np.fmax(a, b)])

    def summary_frame(self, alpha=0.05):
        """DataFrame with mean, mean_se, mean_ci_lower, mean_ci_upper (statsmodels' names)."""
        ci = self.conf_int(alpha)
        return pd.DataFrame({"mean": self.predicted, "mean_se": self.se_mean, "mean_ci_lower": ci[:, 0],
                             "mean_ci_upper": ci[:, 1]}, index=self.predicted.index)
