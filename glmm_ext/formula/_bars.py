"""lme4 bar terms in a formula: ``y ~ x + (1 + x | g)``, ``(x || g)``, ``(0 + x | g)``, ``(1 | g)``.

`parse_formula` splits a formula into its fixed part and its random-effects terms; `random_design`
builds the random-effects design Z (one column per term, named as patsy names them) on the rows
where it is defined.  One grouping factor per model: a second factor, nesting ``(1 | a/b)`` and an
interaction ``(1 | a:b)`` are ValueErrors.  ``(1 + x | g)`` gives one correlated block; ``||`` and
several terms on the same factor give independent blocks (a block-diagonal covariance).
"""
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import patsy

from . import _terms
from ._data import _unique_columns, copy_on_write

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


@dataclass
class BarTerm:
    expr: str  # left of the bar, a patsy expression ("1 + Days", "0 + x")
    group: str
    correlated: bool
    text: str  # the term as written, parentheses included


@dataclass
class RandomSpec:
    """The formula's random part: its terms (all on one grouping column) and the fixed-effects formula."""

    fixed: str
    terms: list
    group: str

    @property
    def intercept_only(self):
        """True for a single ``(1 | g)``: the scalar random-intercept engine fits it."""
        return len(self.terms) == 1 and re.sub(r"\s+", "", self.terms[0].expr) in ("1", "+1")


@dataclass
class RandomDesign:
    """Z (the rows `index` of the data it is defined on), its column names and the independent blocks of columns."""

    Z: np.ndarray  # (rows, columns), float
    index: pd.Index  # the data's labels of Z's rows
    names: list
    blocks: list  # lists of column indices; the covariance is block diagonal, each block unstructured
    group: str
    design_infos: list = field(default_factory=list)
    keep: np.ndarray = None  # rows of the data where Z is defined
    dropped_index: list = field(default_factory=list)
    exprs: list = field(default_factory=list)  # the terms' patsy expressions
    source: pd.DataFrame = None  # the columns they use (rows used): rebuilds the patsy designs after unpickling
    #: Z's columns when every term is a plain numeric expression (`_plain_sources`: a column name, None for the
    #: intercept) and Z is not built yet (Z None): `attach_random` takes them from the fixed design's X when it
    #: holds them (a view, no copy), else from `source`
    plain: list = None

    def __getstate__(self):  # patsy's DesignInfo cannot be pickled: it is rebuilt from exprs and source
        state = dict(self.__dict__)
        state["design_infos"] = []
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if not self.design_infos and self.exprs and self.source is not None:
            self.design_infos = [patsy.dmatrix(e, self.source, NA_action="drop").design_info for e in self.exprs]

    def matrix(self, data):
        """Z for new data (a DataFrame) from the stored patsy designs."""
        keep_nan = patsy.NAAction(NA_types=[])  # a row with a missing value predicts NaN, as the fixed part
        parts = [np.asarray(patsy.build_design_matrices([info], data, NA_action=keep_nan)[0], dtype=float)
                 for info in self.design_infos]
        return np.column_stack(parts)


def _bar_spans(rhs):
    """(start, end) of each top-level parenthesised group of `rhs` that contains a '|'."""
    spans, depth, start = [], 0, None
    for i, ch in enumerate(rhs):
        if ch == "(":
            if depth == 0:
                start = i
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise ValueError(f"formula right side {rhs!r} has an unmatched ')'")
            called = start > 0 and (rhs[start - 1].isalnum() or rhs[start - 1] in "_.")  # I(a | b), f(...)
            if depth == 0 and "|" in rhs[start:i] and not called:
                spans.append((start, i + 1))
    if depth:
        raise ValueError(f"formula right side {rhs!r} has an unmatched '('")
    return spans


def fixed_part(rhs, spans):
    """The right-hand side without its random-effects terms (the character spans `spans`) and the '+' joining
    them, stripped ('' when nothing is left)."""
    fixed = rhs
    for a, b in reversed(spans):
        fixed = fixed[:a] + "\0" + fixed[b:]
    return re.sub(r"\s*\+\s*\0|\0\s*\+\s*|\0", "", fixed).strip()


def _bare_bar(text):
    """True when `text` has a '|' outside every parenthesis."""
    depth = 0
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == "|" and depth == 0:
            return True
    return False


def _parse_term(text):
    inner = text[1:-1]
    correlated = "||" not in inner
    lhs, _, group = inner.partition("||" if not correlated else "|")
    lhs, group = lhs.strip(), group.strip()
    if "|" in group or "|" in lhs:
        raise ValueError(f"random-effects term {text!r} has more than one bar")
    if "*" in group or "+" in group:
        raise ValueError(f"random-effects term {text!r}: the grouping part may only combine columns with '/' "
                         "(nesting, a/b = a + a:b) and ':' (interaction)")
    if "/" in group or ":" in group:  # nested or interaction factors: checked by _terms.expand_group
        group = re.sub(r"\s+", "", group)
    elif not _NAME.match(group):
        raise ValueError(f"random-effects term {text!r}: the grouping factor must be a column name (got {group!r})")
    if not lhs:
        raise ValueError(f"random-effects term {text!r} has nothing left of the bar; use (1 | {group})")
    return BarTerm(expr=lhs, group=group, correlated=correlated, text=text)


def parse_formula(formula):
    """RandomSpec of a formula with bar terms, or None when it has none."""
    if not isinstance(formula, str) or "|" not in formula or "~" not in formula:
        return None
    lhs, rhs = formula.split("~", 1)
    spans = _bar_spans(rhs)
    if not spans:
        if _bare_bar(rhs):
            raise ValueError(f"formula {formula!r}: a '|' outside parentheses; write random effects as (1 + x | g)")
        return None  # a '|' inside a function call such as I(a | b) is patsy's
    terms = [_parse_term(rhs[a:b]) for a, b in spans]
    groups = list(dict.fromkeys(t.group for t in terms))
    fixed = fixed_part(rhs, spans)
    if _bare_bar(fixed):
        raise ValueError(f"formula {formula!r}: a '|' outside a random-effects term")
    if _terms.is_multi(terms):  # several grouping factors, a/b or a:b: the multi-term structure
        return _terms.MultiSpec(fixed=f"{lhs.strip()} ~ {fixed or '1'}", terms=_terms.terms_of(terms))
    return RandomSpec(fixed=f"{lhs.strip()} ~ {fixed or '1'}", terms=terms, group=groups[0])


def resolve_groups(spec, groups):
    """The grouping column: the formula's, which `groups` (when given) must match."""
    if groups is None or (isinstance(groups, str) and groups == spec.group):
        return spec.group
    raise ValueError(f"groups={_describe(groups)} and the formula's grouping factor {spec.group!r} differ; give one "
                     "of them")


def _describe(groups):
    """groups as an error message shows it: a name, or the kind and length of the values (never all of them)."""
    if isinstance(groups, str) or np.ndim(groups) == 0:
        return repr(groups)
    name = getattr(groups, "name", None)
    return f"<{type(groups).__name__} of {len(groups)} values{f' named {name!r}' if name is not None else ''}>"


def split_random_terms(formula, data, groups, re_formula, arrays, formula_mode="python", missing="drop",
                       vc_formula=None):
    """Separate the random part of a formula fit (from_formula's first step).

    Returns (fixed-effects formula, groups, data, RandomDesign or None, arrays): with random slopes the
    data are restricted to the rows where the random-effects terms are defined and the per-row
    `arrays` (offset, exposure, weights given as arrays) with them.  MixedLM's ``re_formula="~x"``
    becomes the term ``(x | groups)``; ``(1 | g)`` alone is the random-intercept model.
    """
    if re_formula is not None and str(re_formula).replace(" ", "") not in ("1", "~1"):
        if not isinstance(formula, str):
            raise TypeError(f"formula must be a string (got {type(formula).__name__})")
        if not isinstance(groups, str):
            data, groups = _groups_column(data, groups)
        formula = f"{formula} + {from_re_formula(re_formula, groups)}"
    if vc_formula:  # MixedLM's variance components inside groups: nested terms (1 | groups:class)
        if not isinstance(formula, str):
            raise TypeError(f"formula must be a string (got {type(formula).__name__})")
        if not isinstance(groups, str):
            data, groups = _groups_column(data, groups)
        if re_formula is None and parse_formula(formula) is None:
            formula = f"{formula} + (1 | {groups})"  # MixedLM: a random intercept per group unless re_formula
        formula = f"{formula} + {from_vc_formula(vc_formula, groups)}"
    spec = parse_formula(formula)
    if spec is None:
        return formula, groups, data, None, arrays
    data = _nullable_as_float(data, formula)
    if isinstance(data, pd.DataFrame) and data.columns.has_duplicates:  # a term naming a repeated column: refused
        _unique_columns(formula, data, [groups])
    if getattr(spec, "is_multi", False):
        return _split_multi(spec, data, groups, arrays, formula_mode, missing)
    groups = resolve_groups(spec, groups)
    if spec.intercept_only:
        return spec.fixed, groups, data, None, arrays
    if formula_mode == "safe":
        from ._safe import check_safe

        for term in spec.terms:
            check_safe(f"{spec.group} ~ {term.expr}", list(data.columns))
    used, random = random_design(spec, data)
    if random.dropped_index and missing != "drop":
        raise ValueError(f"{len(random.dropped_index)} rows have a missing value in a random-effects term "
                         f"(first: row {random.dropped_index[0]!r}); missing={missing!r} does not drop them")
    return spec.fixed, groups, used, random, tuple(align(v, random) for v in arrays)


def _split_multi(spec, data, groups, arrays, formula_mode, missing):
    """split_random_terms for several terms: the fixed formula, the design's groups (a labelled Series), the
    rows kept, the `_terms.MultiDesign` and the per-row arrays on those rows.  One term alone (``(1 | a:b)``,
    ``(x | a:b)``) keeps the one-factor path with the interaction as its groups."""
    if groups is not None and not (isinstance(groups, str) and (groups in spec.factors
                                                                 or groups in [t.group for t in spec.terms])):
        raise ValueError(f"groups={_describe(groups)} is not a grouping factor of the formula's random-effects terms "
                         f"({', '.join(t.group for t in spec.terms)}); leave groups out")
    used, multi = _terms.split_terms(spec, data, formula_mode, missing)
    arrays = tuple(_align_keep(v, multi.keep) for v in arrays)
    if len(multi.terms) == 1:  # one term on an interaction of columns: today's one-factor engine
        term = multi.terms[0]
        labels = term.labels.rename(term.spec.group)
        if re.sub(r"\s+", "", term.spec.expr) in ("1", "+1"):
            return spec.fixed, labels, used, None, arrays
        one = RandomSpec(fixed=spec.fixed, terms=[BarTerm(term.spec.expr, term.spec.group, term.spec.correlated,
                                                          term.spec.text)], group=term.spec.group)
        used2, random = random_design(one, used)
        labels = labels.loc[used2.index] if len(used2) < len(used) else labels
        return spec.fixed, labels, used2, random, tuple(align(v, random) for v in arrays)
    return spec.fixed, _terms.design_groups(multi), used, multi, arrays


def _align_keep(value, keep):
    if value is None or isinstance(value, str) or np.ndim(value) == 0 or len(value) != len(keep):
        return value
    return value[keep] if isinstance(value, np.ndarray) else \
        (value.loc[keep] if isinstance(value, pd.Series) else np.asarray(value)[keep])


def from_vc_formula(vc_formula, group):
    """Bar terms for MixedLM's ``vc_formula={"class": "0 + C(class)"}`` within `group`: a categorical
    component is the nested term ``(1 | group:class)``, a numeric one ``(0 + x | group)``."""
    if not isinstance(vc_formula, dict):
        raise ValueError(f"vc_formula must be a dict name -> formula such as {{'class': '0 + C(class)'}} "
                         f"(got {type(vc_formula).__name__})")
    terms = []
    for name, text in vc_formula.items():
        expr = str(text).strip().lstrip("~").strip()
        match = re.match(r"^0\s*\+\s*C\(\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\)$", expr)
        if match:
            terms.append(f"(1 | {group}:{match.group(1)})")
        elif re.match(r"^0\s*\+", expr) and "C(" not in expr:
            terms.append(f"({expr} || {group})")
        else:
            raise ValueError(f"vc_formula {name!r}: {text!r} is not supported; use '0 + C(column)' (a variance "
                             "component per level within each group) or '0 + x' (a numeric one)")
    return " + ".join(terms)


def _groups_column(data, groups):
    """(data, column name) for groups given as values (MixedLM's ``groups=data["Pig"]``): the column
    itself when the values are one of the data's columns, else a copy of the data with them added."""
    if groups is None:
        raise ValueError("re_formula needs groups: a column name or one label per row")
    name = getattr(groups, "name", None)
    if isinstance(groups, pd.Series) and not groups.index.equals(data.index):
        if not groups.index.is_unique or not data.index.isin(groups.index).all():
            raise ValueError("groups is a Series whose index does not cover the data's index")
        groups = groups.reindex(data.index)
    values = np.asarray(groups).reshape(-1)
    if len(values) != len(data):
        raise ValueError(f"groups has {len(values)} values but the data have {len(data)} rows")
    if isinstance(name, str) and name in data.columns and \
            pd.Series(values, index=data.index).equals(data[name]):
        return data, name
    column = name if isinstance(name, str) and _NAME.match(name) and name not in data.columns else "groups"
    while column in data.columns:
        column += "_"
    return data.assign(**{column: values}), column


def random_design(spec, data):
    """(data restricted to rows where every random-effects column is defined, RandomDesign)."""
    if not data.index.is_unique:
        raise ValueError("random slopes need a DataFrame with a unique index (use data.reset_index(drop=True))")
    parts, infos, blocks, names = [], [], [], []
    keep = np.ones(len(data), dtype=bool)
    z_infos = _check_slope_dimensions(spec, data)
    plain = [_plain_sources(term.expr, z_info, data) for term, z_info in zip(spec.terms, z_infos)]
    deferred = all(sources is not None for sources in plain)  # (Z is made when the fixed design is there)
    for term, z_info, sources in zip(spec.terms, z_infos, plain):
        if sources is not None:  # the columns themselves (all finite); deferred: made with the fixed design
            Zk, index, width = None if deferred else _plain_z(sources, data), data.index, len(sources)
        else:
            try:
                (frame,) = patsy.build_design_matrices([z_info], data, NA_action="drop", return_type="dataframe")
            except patsy.PatsyError as exc:
                raise ValueError(f"random-effects term {term.text!r}: {exc}") from None
            Zk, index, width = frame.to_numpy(dtype=float), frame.index, frame.shape[1]
            if not np.isfinite(Zk).all():
                raise ValueError("a random-effects column holds an infinite value")
        if width == 0:
            raise ValueError(f"random-effects term {term.text!r} has no column")
        if len(index) < len(data):  # rows dropped by patsy for a missing value
            kept = np.zeros(len(data), dtype=bool)
            kept[data.index.get_indexer(index)] = True
            keep &= kept
        parts.append((Zk, index))
        infos.append(z_info)
        cols = list(range(len(names), len(names) + width))
        blocks.extend([cols] if term.correlated else [[c] for c in cols])
        names.extend(str(c) for c in z_info.column_names)
    if len(set(names)) != len(names):
        raise ValueError(f"random-effects terms repeat a column ({', '.join(names)}): each term may appear once")
    used = data if keep.all() else data.loc[keep]
    if deferred:
        Z = None
    else:
        parts = [Zk if len(index) == len(used) else Zk[index.get_indexer(used.index)] for Zk, index in parts]
        Z = parts[0] if len(parts) == 1 else np.column_stack(parts)  # (one term: no copy)
    named = _named_columns(used.columns, [t.expr for t in spec.terms])
    return used, RandomDesign(Z=Z, index=used.index, names=names, blocks=blocks, group=spec.group, design_infos=infos,
                              keep=keep, exprs=[t.expr for t in spec.terms], source=_columns(used, named),
                              dropped_index=[] if keep.all() else list(data.index[~keep]),
                              plain=[c for sources in plain for c in sources] if deferred else None)


_WORD = re.compile(r"[A-Za-z0-9_.]+")


def _nullable_as_float(data, formula):
    """`data` with the formula's nullable numeric columns (pandas' Int64, Float64: pd.NA for a missing value) as
    float columns with NaN, as the fixed part reads them, so that a random-effects term sees a missing value
    (patsy cannot tell pd.NA's truth: a TypeError deep inside it); the caller's frame is not changed."""
    if not isinstance(data, pd.DataFrame):
        return data
    nullable = [c for c, dtype in data.dtypes.items() if isinstance(c, str) and dtype.kind in "iuf"
                and isinstance(dtype, pd.api.extensions.ExtensionDtype) and not isinstance(dtype, pd.CategoricalDtype)]
    named = _named_columns(nullable, [formula]) if nullable else []
    return data.assign(**{c: data[c].astype(float) for c in named}) if named else data


def _named_columns(columns, exprs):
    """The columns an expression names: as a whole word (a name's characters on neither side)."""
    words = {w for expr in exprs for w in _WORD.findall(expr)}
    return [c for c in columns if (str(c) in words if _WORD.fullmatch(str(c)) else
                                   any(re.search(rf"(?<![A-Za-z0-9_.]){re.escape(str(c))}(?![A-Za-z0-9_.])", e)
                                       for e in exprs))]


def _columns(data, names):
    """A frame of the columns `names` of `data` that no later change to `data` reaches (with copy-on-write
    sharing their values, else a copy)."""
    return pd.DataFrame({name: data[name] for name in names}, index=data.index, copy=not copy_on_write())


def _plain_sources(expr, z_info, data):
    """The data columns of a plain numeric expression's z columns (``1 + x``: `_terms.plain_numeric_names`), None
    for the intercept, when every value is finite; else None (patsy builds the columns and drops rows with a
    missing value)."""
    if _terms.plain_numeric_names(expr, data) is None or len(z_info.terms) != len(z_info.column_names):
        return None
    sources = []
    for term in z_info.terms:  # (by term, not column name: a data column may be called "Intercept")
        name = term.factors[0].code if len(term.factors) == 1 else None
        if not term.factors:
            sources.append(None)
        elif name in data.columns:
            values = data[name].to_numpy(dtype=float)
            if not np.isfinite(np.sum(values)) and not np.all(np.isfinite(values)):  # (a finite sum: all finite)
                return None
            sources.append(name)
        else:
            return None
    return sources


def _plain_z(sources, data):
    """The z columns of `_plain_sources` as patsy builds them (a column of ones for the intercept), in one
    column-major block, the data's rows."""
    Z = np.empty((len(data), len(sources)), order="F")
    for j, name in enumerate(sources):
        Z[:, j] = 1.0 if name is None else data[name].to_numpy(dtype=float)
    return Z


def _plain_view(sources, X, exog_names, ones=-1):
    """Z as a view of the fixed design's X when X holds the plain z columns `sources` as columns evenly spaced
    in order (``1 + x`` in ``y ~ x + x2``: X's first two columns), else None.  A design column named as a numeric
    data column is that column (patsy names a transformed one otherwise); the intercept is X's column `ones` (its
    column of ones, -1: none), not whatever is named "Intercept" (a data column of that name in ``0 + Intercept``)."""
    where = [ones if name is None else exog_names.index(name) if name in exog_names and name != "Intercept" else -1
             for name in sources]  # (X's "Intercept" is its ones, never a data column of that name)
    if min(where) < 0:
        return None
    step = where[1] - where[0] if len(where) > 1 else 1
    if step < 1 or where != list(range(where[0], where[0] + step * len(where), step)):
        return None
    return X[:, where[0]:where[-1] + 1:step]


#: rows whose distinct groups are counted first (`_few_groups`): the full count only when they show few
_GROUP_SAMPLE = 4096


def _few_groups(column, k):
    """The number of distinct non-missing groups of `column` when it is at most k, else None (also for no
    column).  The first rows decide in the usual case (more than k groups among them), without factorising
    every row (~5 ms for 1e5 text labels; the design's levels are found once, later)."""
    if column is None:
        return None
    for rows in (_GROUP_SAMPLE // 16, _GROUP_SAMPLE):  # (a few rows usually show more than k groups already)
        if len(column) > rows and column.iloc[:rows].nunique() > k:
            return None
    n_groups = int(column.nunique())
    return n_groups if n_groups <= k else None


def _check_slope_dimensions(spec, data):
    """The terms' patsy designs (nothing built) after checking from their sizes alone that the groups can
    identify the covariance: a q x q covariance needs more than q groups (issue 23: a C(f) slope with
    thousands of levels is refused before a dense rows x levels design is made)."""
    column = data[spec.group] if spec.group in data.columns else None
    descs = [_terms.parsed(t.expr) for t in spec.terms]  # (parsed once for both steps)
    bound = sum(_terms.quick_q(t.expr, data, desc) for t, desc in zip(spec.terms, descs))
    n_groups = _few_groups(column, bound)
    if n_groups is not None and bound > 1 and n_groups <= bound:  # refused before patsy's contrasts are built
        raise ValueError(f"{n_groups} groups cannot identify a random-effects covariance of at least {bound} x "
                         f"{bound} ({' + '.join(t.expr for t in spec.terms)}); use fewer random terms or more groups")
    infos = [_terms._z_info(_terms.TermSpec(t.expr, (t.group,), t.correlated, t.text), data, desc)
             for t, desc in zip(spec.terms, descs)]
    q = sum(len(info.column_names) for info in infos)
    n_groups = _few_groups(column, q) if q > bound else n_groups
    if n_groups is not None and q > 1 and n_groups <= q:
        names = [c for info in infos for c in info.column_names]
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise ValueError(f"{n_groups} groups cannot identify a {q} x {q} random-effects covariance ({shown}); "
                         "use fewer random terms or more groups")
    return infos


def align(value, random):
    """A per-row array given with the data (groups, offset, ...) restricted to the rows where Z is defined."""
    if random is None or value is None or isinstance(value, str) or np.ndim(value) == 0:
        return value
    if len(value) != len(random.keep):
        return value  # a length mismatch is reported by the formula layer
    return value[random.keep] if isinstance(value, np.ndarray) else \
        (value.loc[random.keep] if isinstance(value, pd.Series) else np.asarray(value)[random.keep])


def attach_random(design, random, clean):
    """The Design with Z (data row order) and the rows dropped for a missing random-effects value."""
    rows = clean.endog.index
    if random.Z is None:  # plain z columns: X's own columns where it holds them (its rows are `rows`)
        k0 = design.scaling.intercept  # (the constant column, of ones where its scale, the constant, is 1)
        ones = k0 if k0 >= 0 and design.scaling.scale[k0] == 1.0 else -1
        Z = _plain_view(random.plain, design.X, list(design.exog_names), ones)
        if Z is None:
            source = random.source if rows.equals(random.source.index) else random.source.loc[rows]
            Z = _plain_z(random.plain, source)
        random.Z, random.index = Z, rows
    Z = random.Z if rows is random.index or rows.equals(random.index) else random.Z[random.index.get_indexer(rows)]
    n_extra = len(random.dropped_index)
    reasons = dict(design.drop_reasons)
    if n_extra:
        reasons["random-effects terms"] = n_extra
    return design.same_rows(Z=Z, re_names=list(random.names), re_blocks=[list(b) for b in random.blocks],
                            n_dropped=design.n_dropped + n_extra, dropped_index=list(random.dropped_index)
                            + list(design.dropped_index), drop_reasons=reasons)


def from_re_formula(re_formula, group):
    """RandomSpec terms for MixedLM's ``re_formula="~x"`` (an intercept unless ``0 +``), correlated."""
    expr = str(re_formula).strip()
    expr = expr[1:].strip() if expr.startswith("~") else expr
    return f"({expr or '1'} | {group})"


def from_exog_re(exog_re, endog):
    """RandomDesign of an array ``exog_re`` (n rows, one correlated block), aligned with `endog`'s rows."""
    n = len(endog)
    index = endog.index if isinstance(endog, (pd.Series, pd.DataFrame)) else pd.RangeIndex(n)
    if isinstance(exog_re, pd.DataFrame):
        names, values = [str(c) for c in exog_re.columns], exog_re.to_numpy()
    else:
        values = np.asarray(exog_re)
        values = values.reshape(-1, 1) if values.ndim == 1 else values
        names = None
    try:
        values = np.array(values, dtype=float)  # (a copy: the model never shares the caller's array)
    except (TypeError, ValueError):
        raise ValueError("exog_re must be numeric") from None
    if values.ndim != 2 or values.shape[0] != n:
        raise ValueError(f"exog_re has {values.shape[0]} rows but endog has {n}")
    if not np.isfinite(values).all():
        raise ValueError("exog_re holds a missing or infinite value; drop those rows first")
    if names is None:
        names = ["Intercept" if np.all(values[:, k] == 1.0) else f"z{k}" for k in range(values.shape[1])]
    return RandomDesign(Z=values, index=index, names=names, blocks=[list(range(len(names)))], group="groups",
                        design_infos=[], keep=np.ones(n, dtype=bool))
