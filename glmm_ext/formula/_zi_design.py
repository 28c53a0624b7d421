"""Designs of a zero-inflated / hurdle / dispersion model: three formulas evaluated on the same rows.

``count ~ spp + mined + (1 | site)`` (conditional part, lme4 bar terms, any number of grouping factors,
``a:b`` for an interaction factor), ``zi_formula="~ spp"`` or ``"~ 1 + (1 | site)"`` (zero part, logit),
``disp_formula="~ x"`` (dispersion, log; fixed effects only).  A row with a missing value in any
column one of the formulas uses is dropped (or a ValueError with ``missing="raise"``).
"""
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import patsy

from ..engine._structure import ReStructure, ReTerm
from ._bars import _bar_spans, _bare_bar, fixed_part
from ._safe import check_safe, formula_columns

_GROUP = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*(\s*:\s*[A-Za-z_][A-Za-z0-9_.]*)*$")


@dataclass
class BarSpec:
    expr: str
    group: str  # "site" or "a:b"
    correlated: bool
    text: str


@dataclass
class PartFormula:
    """One part: its fixed right-hand side (patsy) and its bar terms."""

    fixed: str
    bars: list
    absent: bool = False  # "~ 0": no such part


def split_part(rhs, what):
    """PartFormula of a right-hand side (no '~')."""
    rhs = rhs.strip()
    spans = _bar_spans(rhs)
    bars = []
    for a, b in spans:
        inner = rhs[a + 1:b - 1]
        correlated = "||" not in inner
        lhs, _, group = inner.partition("|" if correlated else "||")
        lhs, group = lhs.strip(), re.sub(r"\s+", "", group)
        if "|" in lhs or "|" in group:
            raise ValueError(f"{what}: random-effects term {rhs[a:b]!r} has more than one bar")
        if not lhs:
            raise ValueError(f"{what}: random-effects term {rhs[a:b]!r} has nothing left of the bar")
        if not _GROUP.match(group):
            raise ValueError(f"{what}: the grouping factor of {rhs[a:b]!r} must be a column name or a:b "
                             f"(got {group!r}); nesting a/b is written (1|a) + (1|a:b)")
        bars.append(BarSpec(lhs, group, correlated, rhs[a:b]))
    fixed = fixed_part(rhs, spans)
    if _bare_bar(fixed):
        raise ValueError(f"{what}: a '|' outside parentheses; write random effects as (1 + x | g)")
    absent = re.sub(r"\s+", "", fixed) in ("0", "-1") and not bars
    return PartFormula(fixed or "1", bars, absent)


def parse_rhs(formula, what):
    """The right-hand side of a one-sided formula ("~ x", or "x"); ValueError for a left-hand side."""
    if not isinstance(formula, str) or not formula.strip():
        raise ValueError(f"{what} must be a non-empty string such as '~ 1' or '~ x' (got {formula!r})")
    text = formula.strip()
    if "~" in text:
        lhs, _, text = text.partition("~")
        if lhs.strip():
            raise ValueError(f"{what} is one-sided ('~ x'): it has no response (got {formula!r})")
    if not text.strip():
        raise ValueError(f"{what} has an empty right-hand side (got {formula!r})")
    return text


@dataclass
class ZIDesign:
    """Everything the engine needs plus what results and prediction need (names, patsy designs)."""

    y: np.ndarray
    X: tuple
    offsets: tuple
    structures: tuple
    names: tuple  # column names per part
    design_infos: tuple  # patsy DesignInfo per part (None when absent)
    bars: tuple  # per part, list of BarSpec
    re_levels: tuple  # per part, per term: the Index of group labels
    re_infos: tuple  # per part, per term: patsy DesignInfo of its z columns
    index: pd.Index
    endog_name: str
    n_dropped: int
    zero_part: str
    notes: list = field(default_factory=list)
    texts: tuple = (None, None, None)  # per part, the fixed right-hand side patsy evaluated (None: no such part)
    source: pd.DataFrame = None  # the columns the formulas name, rows used: rebuilds the patsy designs on loading
    formula_mode: str = "python"

    def __getstate__(self):  # patsy's DesignInfo cannot be pickled: a pickle keeps formula texts and data only
        state = dict(self.__dict__)
        state["design_infos"], state["re_infos"] = None, None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.design_infos, self.re_infos = design_infos(self.texts, self.bars, self.source, self.formula_mode)


def formula_env():
    """Where a formula finds names that are not columns: numpy as ``np`` only (at fit and on loading a pickle)."""
    return patsy.EvalEnvironment([{"np": np}])


def _pieces(texts, bars):
    return [t for t in texts if t is not None] + [b.expr for part in bars for b in part]


def formula_source(used, texts, bars):
    """The columns of `used` that the formula texts name (what a pickle keeps to rebuild the patsy designs)."""
    names = []
    for text in _pieces(texts, bars):
        names += formula_columns(f"~ {text}", list(used.columns)).predictors
    return used[list(dict.fromkeys(names))]


def design_infos(texts, bars, source, formula_mode="python"):
    """(patsy DesignInfo per part, per part the list of its bar terms' z DesignInfos) rebuilt from the formula
    texts on `source`, the rows `build` evaluated them on (so categorical levels and stateful transforms such
    as center(x) are those of the fit).  In safe mode the texts are checked again before patsy reads them."""
    if formula_mode == "safe":
        for text in _pieces(texts, bars):
            check_safe(f"~ {text}", list(source.columns))

    def info(text):
        return patsy.incr_dbuilder(text, lambda: iter([source]), eval_env=formula_env(), NA_action="raise")

    return tuple(None if t is None else info(t) for t in texts), tuple([info(b.expr) for b in part] for part in bars)


def _group_codes(data, group):
    cols = [c.strip() for c in group.split(":")]
    missing = [c for c in cols if c not in data.columns]
    if missing:
        raise ValueError(f"grouping factor {missing[0]!r} is not a column of the data")
    if len(cols) == 1:
        labels = data[cols[0]]
    else:
        labels = data[cols].astype(str).agg(":".join, axis=1)
    codes, levels = pd.factorize(labels, sort=True)
    return codes.astype(np.int64), pd.Index(levels)


def _bar_columns(bar, data):
    return [c.strip() for c in bar.group.split(":")]


def build(formula, data, zi_formula, disp_formula, zero_part, has_dispersion, offset=None, missing="drop",
          formula_mode="python"):
    """ZIDesign of the three formulas on `data` (a DataFrame, not modified).  ``formula_mode="safe"`` checks
    every piece (fixed parts, bar terms) with the safe-mode grammar before patsy evaluates anything."""
    if not isinstance(formula, str) or "~" not in formula:
        raise ValueError(f"formula must be a string 'y ~ x + (1 | g)' (got {formula!r})")
    lhs, _, rhs = formula.partition("~")
    if not lhs.strip():
        raise ValueError(f"formula {formula!r} has no response")
    cond = split_part(rhs, "formula")
    zi = split_part(parse_rhs(zi_formula, "zi_formula"), "zi_formula") if zi_formula is not None else None
    disp = split_part(parse_rhs(disp_formula, "disp_formula"), "disp_formula") if disp_formula is not None else None
    if formula_mode == "safe":
        from ._safe import check_safe

        cols = list(data.columns)
        check_safe(f"{lhs} ~ {cond.fixed}", cols)
        for part in (zi, disp):
            if part is not None:
                check_safe(f"{lhs} ~ {part.fixed}", cols)
        for part in (cond, zi):
            for bar in (part.bars if part is not None else []):
                check_safe(f"{lhs} ~ {bar.expr}", cols)
    elif formula_mode != "python":
        raise ValueError(f"formula_mode must be 'python' or 'safe' (got {formula_mode!r})")
    if zi is not None and zi.absent:
        zi = None
    if zero_part == "zi" and zi is None:
        zero_part = "none"
    if disp is not None and disp.bars:
        raise ValueError("disp_formula takes fixed effects only (no random-effects terms)")
    if disp is not None and not has_dispersion:
        raise ValueError("disp_formula needs a family with a dispersion (NegativeBinomial, NegativeBinomial1, "
                         "Gaussian, Gamma); Poisson has none")
    # rows: those where every part is defined
    env = formula_env()
    frame = data
    keep = np.ones(len(frame), dtype=bool)

    def rows_of(text):  # the rows where patsy can evaluate `text`
        return patsy.dmatrix(text, frame, NA_action="drop", return_type="dataframe", eval_env=env).index

    try:
        y_df, _ = patsy.dmatrices(f"{lhs} ~ {cond.fixed}", frame, NA_action="drop", return_type="dataframe",
                                  eval_env=env)
        pieces = [y_df.index]
        for part in (zi, disp):
            if part is not None:
                pieces.append(rows_of(part.fixed))
        for part in (cond, zi):
            for bar in (part.bars if part is not None else []):
                pieces.append(rows_of(bar.expr))
                for col in _bar_columns(bar, frame):
                    if col not in frame.columns:
                        raise ValueError(f"grouping factor {col!r} of {bar.text!r} is not a column of the data")
                    pieces.append(frame.index[frame[col].notna().to_numpy()])
    except patsy.PatsyError as exc:
        raise ValueError(f"a formula could not be evaluated: {str(exc).splitlines()[0]}") from None
    pos = np.arange(len(frame))
    for idx in pieces:
        keep &= frame.index.isin(idx)
    off = np.zeros(len(frame))
    if offset is not None:
        off = np.asarray(offset, float).reshape(-1)
        if off.shape[0] != len(frame):
            raise ValueError(f"offset has {off.shape[0]} values; the data have {len(frame)} rows")
        keep &= np.isfinite(off)
    n_dropped = int(np.sum(~keep))
    if n_dropped and missing != "drop":
        raise ValueError(f"{n_dropped} rows have a missing value in a column the model uses; missing={missing!r}")
    if not keep.any():
        raise ValueError("no rows left after removing those with missing values")
    used = frame.iloc[pos[keep]]
    off = off[keep]
    y_df, Xc = patsy.dmatrices(f"{lhs} ~ {cond.fixed}", used, NA_action="raise", return_type="dataframe", eval_env=env)
    if y_df.shape[1] != 1:
        raise ValueError(f"the response of {formula!r} must be one column")
    n = len(used)
    Xs, names, infos = [np.asarray(Xc, float)], [list(Xc.columns)], [Xc.design_info]
    for part in (zi, disp):
        if part is None:
            Xs.append(np.zeros((n, 0)))
            names.append([])
            infos.append(None)
        else:
            M = patsy.dmatrix(part.fixed, used, NA_action="raise", return_type="dataframe", eval_env=env)
            Xs.append(np.asarray(M, float))
            names.append(list(M.columns))
            infos.append(M.design_info)
    if has_dispersion and disp is None:  # "~ 1" by default
        Xs[2] = np.ones((n, 1))
        names[2] = ["Intercept"]
    structures, levels, re_infos = [], [], []
    for part in (cond, zi):
        terms, levs, zinfos = [], [], []
        for bar in (part.bars if part is not None else []):
            Z = patsy.dmatrix(bar.expr, used, NA_action="raise", return_type="dataframe", eval_env=env)
            if Z.shape[1] == 0:
                raise ValueError(f"random-effects term {bar.text!r} has no column")
            codes, lev = _group_codes(used, bar.group)
            terms.append(ReTerm(bar.group, codes, len(lev), np.asarray(Z, float), tuple(map(str, Z.columns)),
                                bar.correlated))
            levs.append(lev)
            zinfos.append(Z.design_info)
        if terms:
            st = ReStructure(tuple(terms))
            st.check_identifiable(n)
            structures.append(st)
        else:
            structures.append(None)
        levels.append(levs)
        re_infos.append(zinfos)
    texts = (cond.fixed, *(None if part is None else part.fixed for part in (zi, disp)))
    bars = (cond.bars, zi.bars if zi is not None else [])
    if zero_part == "hurdle" and zi is None:
        off_z = np.full(n, -np.inf)  # a zero-truncated model without a zero part: pz = 0
    else:
        off_z = np.zeros(n)
    return ZIDesign(y=np.asarray(y_df, float)[:, 0], X=tuple(Xs), offsets=(off, off_z, np.zeros(n)),
                    structures=tuple(structures), names=tuple(names), design_infos=tuple(infos),
                    bars=bars, re_levels=tuple(levels), re_infos=tuple(re_infos), index=used.index,
                    endog_name=str(y_df.columns[0]), n_dropped=n_dropped, zero_part=zero_part, texts=texts,
                    source=formula_source(used, texts, bars), formula_mode=formula_mode)
