"""Several random-effect terms: lme4's ``(1 | a) + (1 | b)``, ``(1 | a/b)``, ``(1 | a:b)``, ``(x | a) + (1 | b)``.

`expand_group` turns a bar's grouping part into grouping factors (``a/b`` is ``a`` and ``b:a``, as lme4);
`split_terms` builds, for the rows where every term is defined, each term's z columns and level
labels (after checking from the DIMENSIONS alone that the terms can be identified, so that nothing
large is built for a design that is refused); `attach_terms` gives the model's Design the engine's
random-effects structure (one `ReTerm` per term, in the user's order) on the rows finally used.
"""
import re
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import patsy

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


@dataclass
class TermSpec:
    """One bar term after expansion: the patsy expression left of the bar and its grouping factors."""

    expr: str
    factors: tuple  # data columns whose interaction is the grouping factor, e.g. ("Block", "Variety")
    correlated: bool
    text: str  # the bar term as written

    @property
    def group(self):
        """Display name of the grouping factor, lme4's: "Block:Variety"."""
        return ":".join(self.factors)


@dataclass
class MultiSpec:
    """The formula's random part when it has several grouping factors (or a nested / interaction one)."""

    fixed: str
    terms: list  # of TermSpec, in the user's order
    is_multi = True

    @property
    def group(self):
        """The first term's first factor (the CLI's default groups column)."""
        return self.terms[0].factors[0]

    @property
    def factors(self):
        return list(dict.fromkeys(f for t in self.terms for f in t.factors))


def expand_group(text, term_text):
    """Grouping factors of a bar's right side: ``a`` -> [(a,)], ``a:b`` -> [(a, b)], ``a/b`` -> [(a,), (b, a)]
    (lme4 expands ``a/b`` to ``a + b:a``, and names the term and its levels so: "Variety:Block", "Golden Rain:I")."""
    group = text.strip()
    if group.startswith("(") and group.endswith(")"):
        group = group[1:-1].strip()
    if "*" in group or "+" in group or "|" in group:
        raise ValueError(f"random-effects term {term_text!r}: the grouping part {text.strip()!r} may only combine "
                         "columns with '/' (nesting) and ':' (interaction)")
    levels = [tuple(name.strip() for name in part.split(":")) for part in group.split("/")]
    for part in levels:
        for name in part:
            if not _NAME.match(name):
                raise ValueError(f"random-effects term {term_text!r}: {name!r} is not a column name")
    out = []
    for k in range(len(levels)):  # a/b/c = a + b:a + c:b:a (lme4's names: the inner factor first)
        out.append(tuple(reversed([f for part in levels[: k + 1] for f in part])) if k else levels[0])
    return out


def terms_of(bars):
    """TermSpecs of parsed bar terms (``_bars.BarTerm``): nesting expanded, each term in the user's order.

    ``(x | a/b)`` gives ``(x | a) + (x | b:a)``, as lme4."""
    out = []
    for bar in bars:
        for factors in expand_group(bar.group, bar.text):
            out.append(TermSpec(expr=bar.expr, factors=factors, correlated=bar.correlated, text=bar.text))
    seen = {}
    for term in out:
        key = (re.sub(r"\s+", "", term.expr), term.factors)
        if key in seen:
            raise ValueError(f"random-effects terms {seen[key]!r} and {term.text!r} repeat the term "
                             f"({term.expr} | {term.group}); each term may appear once")
        seen[key] = term.text
    return out


def is_multi(bars):
    """True when the bar terms need the multi-term structure: several grouping factors, '/' or ':'."""
    groups = {b.group.replace(" ", "") for b in bars}
    return len(groups) > 1 or any("/" in g or ":" in g for g in groups)


# --------------------------------------------------------------------------------- data side
@dataclass
class TermData:
    """One term on the rows kept: level labels (Series), z columns (DataFrame), the z design info."""

    spec: TermSpec
    labels: pd.Series
    Z: pd.DataFrame
    design_info: object = None

    @property
    def z_names(self):
        return [str(c) for c in self.Z.columns]


@dataclass
class MultiDesign:
    """Every term's labels and z columns on the rows where all of them are defined (data row order)."""

    terms: list  # of TermData
    keep: np.ndarray  # rows of the data kept
    dropped_index: list = field(default_factory=list)
    drop_reasons: dict = field(default_factory=dict)
    source: pd.DataFrame = None  # the columns the z expressions use: rebuilds patsy designs after unpickling
    is_multi = True

    @property
    def names(self):
        return [t.spec.group for t in self.terms]

    def __getstate__(self):  # patsy's DesignInfo cannot be pickled: rebuilt from the expressions and source
        state = dict(self.__dict__)
        state["terms"] = [replace(t, design_info=None) for t in self.terms]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self.source is not None:
            self.terms = [replace(t, design_info=_z_info(t.spec, self.source)) for t in self.terms]

    def z_matrix(self, k, data):
        """Term k's z columns for new data (NaN rows where a value is missing)."""
        keep_nan = patsy.NAAction(NA_types=[])
        return np.asarray(patsy.build_design_matrices([self.terms[k].design_info], data, NA_action=keep_nan)[0],
                          dtype=float)

    def labels_of(self, k, data):
        """Term k's level labels for new data (a Series; NaN where a factor is missing)."""
        return combined_labels(data, self.terms[k].spec.factors)


def parsed(expr):
    """patsy's ModelDesc of a z expression, or None when patsy cannot read it (`_z_info` then reports why)."""
    try:
        return patsy.ModelDesc.from_formula(expr)
    except patsy.PatsyError:
        return None


def quick_q(expr, data, desc=None):
    """A lower bound on the number of z columns of `expr`, from the data's column types alone (patsy would
    build a levels x levels contrast matrix first): a categorical factor C(f) of L levels gives L - 1
    columns (L without an intercept), a numeric one 1, an interaction at least 1.  `desc`: `expr` parsed."""
    desc = parsed(expr) if desc is None else desc
    if desc is None:
        return 1
    q, intercept = 0, False
    for term in desc.rhs_termlist:
        if not term.factors:
            intercept, q = True, q + 1
            continue
        if len(term.factors) > 1:
            q += 1
            continue
        code = term.factors[0].code
        match = re.match(r"^C\(\s*([A-Za-z_][A-Za-z0-9_.]*)", code)
        name = match.group(1) if match else code
        categorical = match is not None or (name in data.columns and (data[name].dtype.kind in "OSUb" or isinstance(
            data[name].dtype, pd.CategoricalDtype)))
        q += max(_n_levels(data[name]) - (1 if intercept else 0), 1) if categorical and name in data.columns else 1
    return max(q, 1)


def plain_numeric_names(expr, data):
    """The column names of a z expression made only of names, 0, 1, + and - (``1 + x``) when each is a
    numeric (int or float) column of `data`, else None: its patsy specification depends on the types alone."""
    from ._plain import _plain_names

    names = _plain_names(expr)
    if names is None or not all(isinstance(n, str) and n in data.columns and data[n].dtype.kind in "fi"
                                for n in names):
        return None
    return names


def _z_info(spec, data, desc=None):
    """patsy DesignInfo of a term's z expression, from the data's column types (no matrix is built; a plain
    numeric expression such as ``1 + x`` reads no value at all: `_plain.numeric_design_info`).  `desc`: the
    expression parsed (`parsed`), if it was."""
    from ._plain import numeric_design_info

    env = patsy.EvalEnvironment([{"np": np}])
    try:
        desc = patsy.ModelDesc.from_formula(spec.expr) if desc is None else desc
        names = plain_numeric_names(spec.expr, data)
        info = None if names is None else numeric_design_info(desc.rhs_termlist, env, names)
        if info is None:
            (info,) = patsy.design_matrix_builders([desc.rhs_termlist], lambda: iter([data]), env, NA_action="drop")
    except patsy.PatsyError as exc:
        raise ValueError(f"random-effects term {spec.text!r}: {exc}") from None
    if not info.column_names:
        raise ValueError(f"random-effects term {spec.text!r} has no column")
    return info


def combined_labels(data, factors):
    """One label per row for the interaction of `factors`: the column itself for one factor, else the
    values joined with ':' (lme4's labels, e.g. "I:Golden Rain"); NaN where any factor is missing."""
    if len(factors) == 1:
        return data[factors[0]]
    parts = [data[f] for f in factors]
    missing = np.zeros(len(data), bool)
    for part in parts:
        missing |= pd.isna(part).to_numpy()
    text = _joined([part.astype(str) for part in parts])
    if len(set(zip(*(part[~missing] for part in parts)))) > text[~missing].nunique():
        # a value holding ':' made two pairs one label ('x:y' + 'z' and 'x' + 'y:z'): a level is a pair of
        # values, so such values are parenthesised, '(x:y):z' and 'x:(y:z)'
        text = _joined([part.astype(str).map(lambda v: f"({v})" if ":" in v else v) for part in parts])
    return text.where(~missing, np.nan)


def _joined(parts):
    text = parts[0]
    for part in parts[1:]:
        text = text + ":" + part
    return text


def _n_levels(labels):
    return int(pd.Series(labels).nunique(dropna=True))


def check_dimensions(spec, q, n_levels, n_rows, gaussian=None):
    """ValueError when the term cannot be identified from its dimensions (nothing built yet).

    One level; a correlated q x q covariance with no more levels than q; more random effects (q x levels)
    than rows; a Gaussian term with as many random effects as rows (the residual is then not identified,
    lme4's rule)."""
    where = f"random-effects term {spec.text!r}" + (f" ({spec.expr} | {spec.group})" if spec.text.count("|") == 1
                                                      and "/" in spec.text else "")
    if n_levels < 2:
        raise ValueError(f"{where}: the grouping factor {spec.group!r} has {n_levels} level; a random effect needs "
                         "at least 2 levels")
    if spec.correlated and q > 1 and n_levels <= q:
        raise ValueError(f"{where}: {n_levels} levels of {spec.group!r} cannot identify a {q} x {q} random-effects "
                         f"covariance ({q} z columns); use fewer random terms, (x || g), or more levels")
    if q * n_levels > n_rows:
        raise ValueError(f"{where}: {q * n_levels} random effects ({n_levels} levels x {q} z columns) for {n_rows} "
                         "observations; the term cannot be identified")
    if gaussian and q * n_levels >= n_rows:
        raise ValueError(f"{where}: {q * n_levels} random effects for {n_rows} observations: a Gaussian residual "
                         "variance cannot be told apart from this term")


def split_terms(spec, data, formula_mode="python", missing="drop"):
    """(data restricted to the rows where every term is defined, MultiDesign) for a MultiSpec."""
    if not data.index.is_unique:
        raise ValueError("several random-effect terms need a DataFrame with a unique index "
                         "(use data.reset_index(drop=True))")
    absent = [f for f in spec.factors if f not in data.columns]
    if absent:
        raise ValueError(f"grouping factor {absent[0]!r} of the random-effects terms is not in the data")
    if formula_mode == "safe":
        from ._safe import check_safe

        for term in spec.terms:
            check_safe(f"{term.factors[0]} ~ {term.expr}", list(data.columns))
    keep = np.ones(len(data), dtype=bool)
    reasons = {}
    for name in spec.factors:  # listwise deletion across all grouping columns
        bad = np.array(pd.isna(data[name]).to_numpy(), dtype=bool)
        if data[name].dtype.kind == "f":
            bad |= np.isinf(data[name].to_numpy())
        if bad.any():
            reasons[name] = int(bad.sum())
            keep &= ~bad
    kept = data if keep.all() else data.loc[keep]
    n_levels = [_n_levels(combined_labels(kept, term.factors)) for term in spec.terms]  # once per term
    descs = [parsed(term.expr) for term in spec.terms]
    for term, nl, desc in zip(spec.terms, n_levels, descs):  # from the dimensions (a lower bound on q) first
        check_dimensions(term, quick_q(term.expr, data, desc), nl, len(kept))
    infos = [_z_info(t, data, desc) for t, desc in zip(spec.terms, descs)]
    for term, info, nl in zip(spec.terms, infos, n_levels):  # the exact number of z columns
        check_dimensions(term, len(info.column_names), nl, len(kept))
    frames = []
    for term, info in zip(spec.terms, infos):
        if info.column_names == ["Intercept"]:  # (1 | g): a column of ones, no value to read or drop
            frames.append(pd.DataFrame({"Intercept": np.ones(len(data))}, index=data.index))
            continue
        try:
            (Zt,) = patsy.build_design_matrices([info], data, NA_action="drop", return_type="dataframe")
        except patsy.PatsyError as exc:
            raise ValueError(f"random-effects term {term.text!r}: {exc}") from None
        if len(Zt) < len(data):
            kept = np.zeros(len(data), dtype=bool)
            kept[data.index.get_indexer(Zt.index)] = True
            if (~kept & keep).any():
                reasons["random-effects terms"] = reasons.get("random-effects terms", 0) + int((~kept & keep).sum())
            keep &= kept
        if not np.isfinite(Zt.to_numpy(dtype=float)).all():
            raise ValueError(f"random-effects term {term.text!r}: a z column holds an infinite value")
        frames.append(Zt)
    if not keep.any():
        raise ValueError("every row has a missing value in a grouping factor or random-effects column")
    if not keep.all() and missing != "drop":
        raise ValueError(f"{int((~keep).sum())} rows have a missing value in a grouping factor or random-effects "
                         f"column ({', '.join(f'{k} ({v})' for k, v in reasons.items())}); missing={missing!r} does "
                         "not drop them")
    used = data if keep.all() else data.loc[keep]
    terms = [TermData(spec=t, labels=combined_labels(used, t.factors), design_info=info,
                      Z=(Zt if Zt.index.equals(used.index) else Zt.loc[used.index]))
             for t, info, Zt in zip(spec.terms, infos, frames)]
    named = [c for c in used.columns if any(re.search(rf"(?<![A-Za-z0-9_.]){re.escape(str(c))}(?![A-Za-z0-9_.])",
                                                      t.expr) for t in spec.terms)]
    return used, MultiDesign(terms=terms, keep=keep, dropped_index=list(data.index[~keep]), drop_reasons=reasons,
                             source=used[named].copy())


def design_groups(multi):
    """The Design's own grouping (a labelled Series): the term with the fewest levels, so that the
    one-factor checks see its groups (the multi-term path does not use it for fitting)."""
    counts = [_n_levels(t.labels) for t in multi.terms]
    term = multi.terms[int(np.argmin(counts))]
    labels = term.labels.copy()
    labels.name = term.spec.group
    return labels


# --------------------------------------------------------------------------------- engine structure
@dataclass
class TermLevels:
    """The model's terms on the rows used: the engine structure and each term's level labels."""

    structure: object  # engine ReStructure (glmm_ext.engine._structure) or the local stand-in
    levels: list  # per term: array of level labels, by code
    names: list  # per term: display name of the grouping factor (repeats when a factor has two terms)
    z_names: list  # per term: list of z column names

    @property
    def terms(self):
        return self.structure.terms


def _factorize(labels):
    values = pd.Series(labels).reset_index(drop=True)
    try:
        codes, uniques = pd.factorize(values, sort=True)
    except TypeError:  # labels of mixed types
        codes, uniques = pd.factorize(values.astype(str), sort=True)
    return codes.astype(np.int64), np.asarray(uniques)


def attach_terms(design, multi, clean):
    """The Design with the multi-term structure on the rows finally used (after listwise deletion by the
    fixed part), its drop record extended by the rows the terms removed."""
    from .._multiterm import make_structure

    rows = clean.endog.index
    gaussian = design.gaussian_identity
    n = len(rows)
    made, levels, names, z_names = [], [], [], []
    for term in multi.terms:
        labels = term.labels if term.labels.index.equals(rows) else term.labels.loc[rows]
        codes, uniques = _factorize(labels)
        Z = (term.Z if term.Z.index.equals(rows) else term.Z.loc[rows]).to_numpy(dtype=float)
        check_dimensions(term.spec, Z.shape[1], len(uniques), n, gaussian)
        made.append((term.spec.group, codes, len(uniques), Z, tuple(term.z_names), term.spec.correlated))
        levels.append(uniques)
        names.append(term.spec.group)
        z_names.append(list(term.z_names))
    reasons = dict(design.drop_reasons)
    for key, value in multi.drop_reasons.items():
        reasons[key] = reasons.get(key, 0) + value
    terms = TermLevels(structure=make_structure(made), levels=levels, names=names, z_names=z_names)
    return replace(design, terms=terms, n_dropped=design.n_dropped + len(multi.dropped_index),
                   dropped_index=list(multi.dropped_index) + list(design.dropped_index), drop_reasons=reasons)
