"""Plain formulas (a numeric response, numeric columns and the intercept: ``y ~ x1 + x2``) built from the columns.

statsmodels' formula machinery evaluates a formula with patsy on every row; for a plain formula that costs
more than the model's fit on 1e6 rows and gives only the columns themselves and a column of ones.  Here patsy
parses the formula, the specification is made from patsy's classes as its builders make it (it depends on the
column types only: nothing is evaluated) and the matrices are the frame's columns; every other formula goes
through statsmodels as before.  `numeric_design_info` also makes the specification of a plain random-effects
expression such as ``1 + x``.
"""
import keyword
import re
from collections import OrderedDict

import numpy as np
import pandas as pd

from ._data import SPEC_KEY, copy_on_write
from ._levels import formula_engine_is_patsy as _formula_engine_is_patsy

_PLAIN_TOKEN = re.compile(r"\s*(?:([A-Za-z_][A-Za-z_0-9]*)|([01])(?![0-9A-Za-z_.])|([+-]))")


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


def _patsy_environment(eval_env):
    """The patsy EvalEnvironment statsmodels' formula tools make of `eval_env` (a dict, statsmodels >= 0.15, or
    an EvalEnvironment, 0.14), or None for anything else (the formula engine then handles it)."""
    import patsy

    if isinstance(eval_env, patsy.EvalEnvironment):
        return eval_env
    if isinstance(eval_env, dict):  # statsmodels' own conversion (formula._manager.FormulaManager.get_matrices)
        return patsy.EvalEnvironment([{key: value} for key, value in eval_env.items()])
    return None


def numeric_design_info(termlist, env, columns):
    """patsy's DesignInfo of a term list made of the intercept and single numeric columns (their names in
    `columns`), as ``patsy.design_matrix_builders`` makes it, without reading any data; None for any other term.

    The caller has checked that each name is a numeric (int or float) column, which patsy would find by
    evaluating it: a numerical factor of one column named by its code.  Each factor's state is memorised by
    patsy itself (``EvalFactor.memorize_passes_needed`` in `env`); the terms take patsy's order, the intercept
    first and the others as written (each single-factor term is its own group of numeric factors).
    """
    import patsy

    factor_infos, codings = {}, {}
    for term in termlist:
        if not term.factors:
            codings[term] = [patsy.SubtermInfo([], {}, 1)]
            continue
        factor = term.factors[0]
        if len(term.factors) != 1 or not isinstance(factor, patsy.EvalFactor) or factor.code not in columns:
            return None
        state = {}
        if factor.memorize_passes_needed(state, env) != 0:  # (a bare name needs no pass over the data)
            return None
        factor_infos[factor] = patsy.FactorInfo(factor, "numerical", state, num_columns=1, categories=None)
        codings[term] = [patsy.SubtermInfo([factor], {}, 1)]
    ordered = OrderedDict((term, codings[term]) for term in sorted(codings, key=lambda t: bool(t.factors)))
    names = ["Intercept" if not term.factors else term.factors[0].name() for term in ordered]
    return patsy.DesignInfo(names, factor_infos=factor_infos, term_codings=ordered)


def plain_specification(formula, frame, eval_env):
    """(response name, patsy DesignInfo of the right-hand side, the frame's column or None for the intercept of
    each design column) for a plain formula, or None.

    patsy parses the formula (``ModelDesc``, as ``patsy.dmatrices``) and `numeric_design_info` makes the
    specification of its right-hand side; nothing is evaluated.  None when a term is not one float column or
    the intercept.
    """
    import patsy

    if not isinstance(formula, str) or formula.count("~") != 1:
        return None
    lhs, rhs = formula.split("~")
    response, names = _plain_names(lhs), _plain_names(rhs)
    if response is None or names is None or len(response) != 1 or "+" in lhs or "-" in lhs \
            or "Intercept" in names:
        return None
    columns = set(frame.columns)
    for name in response + names:
        if name not in columns or frame[name].dtype != np.float64:
            return None
    env = _patsy_environment(eval_env)
    if env is None or not _formula_engine_is_patsy():
        return None
    try:
        desc = patsy.ModelDesc.from_formula(formula)
    except patsy.PatsyError:  # e.g. "y ~ x +": the formula engine reports it
        return None
    lhs_terms = desc.lhs_termlist
    if len(lhs_terms) != 1 or [f.code for f in lhs_terms[0].factors] != response:
        return None
    info = numeric_design_info(desc.rhs_termlist, env, names)
    if info is None:
        return None
    sources = [None if not term.factors else term.factors[0].code for term in info.terms]
    return response[0], info, sources


def plain_design(formula, frame, eval_env, missing):
    """statsmodels' ``handle_formula_data(frame, None, formula)`` for a formula whose response is one numeric
    column and whose terms are numeric columns and the intercept (``y ~ x1 + x2``, ``y ~ 0 + x``): the same
    ``((endog, exog), missing_mask, spec)`` with the matrices built from the columns directly.  None for any
    other formula (the formula engine evaluates it).

    The specification of such a formula does not depend on the values (`plain_specification`); the design
    columns are the frame's columns and a column of ones, which is what patsy computes for them.  `frame` is
    `prepare`'s: numeric columns are float and finite, so no row is missing.  `missing` is statsmodels'
    option, which changes nothing when no row is missing.
    """
    found = plain_specification(formula, frame, eval_env)
    if found is None:
        return None
    response, spec, sources = found
    X = np.empty((len(frame), len(sources)), order="F")  # a DataFrame block's layout: columns contiguous
    for j, name in enumerate(sources):
        X[:, j] = 1.0 if name is None else frame[name].to_numpy()
    exog = pd.DataFrame(X, index=frame.index, columns=list(spec.column_names), copy=False)
    y = frame[response]
    endog = y.to_frame() if copy_on_write() else pd.DataFrame({response: y.to_numpy(copy=True)}, index=frame.index)
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
    kwargs.update({"missing_idx": missing_idx, "formula": formula, SPEC_KEY: spec, "_finite": True})
    model = cls(endog, exog, **kwargs)
    model.formula = formula
    model.data.frame = frame
    return model
