"""summary(): every table in a statsmodels summary2.Summary (HTML in a notebook) with a compact text form.

One builder (`make_summary`) for every random-effects structure: a one-factor model is the one-term case
(its grouping factor and group sizes in the header, its random intercept or slopes in one table), several
terms give lme4's VarCorr rows per term, an ICC per term and the BLUPs per term.

The text form fits in 100 columns for every family: each table is rendered at its own natural width,
split by columns where it is wider, every ruled line has the width of the widest table, notes wrap at
word boundaries at that width.
"""
import numbers
import textwrap

import numpy as np
import pandas as pd
from statsmodels.iolib import summary2

MAX_WIDTH = 100
#: below this many groups the Wald intervals' normal approximation is flagged as optimistic
FEW_GROUPS = 30
LABEL_WIDTH = 30
#: statsmodels' family class names
FAMILY_NAMES = {"gaussian": "Gaussian", "binomial": "Binomial", "poisson": "Poisson", "gamma": "Gamma",
                "negativebinomial": "NegativeBinomial"}


def check_float_format(float_format):
    """None, or a printf-style format of one number (statsmodels' ``float_format``, e.g. "%.4f")."""
    if float_format is None:
        return None
    try:
        if not isinstance(float_format, str):
            raise TypeError
        float_format % 1.5
    except (TypeError, ValueError):
        raise ValueError(f"float_format must be a printf-style format of one number such as '%.4f' "
                         f"(got {float_format!r})") from None
    return float_format


def fmt(value, float_format=None):
    """A number as the tables show it: 4 decimals in the ordinary range, scientific outside it; with
    `float_format` (e.g. "%.2f") every non-integer number in that format."""
    if value is None or isinstance(value, str):
        return "" if value is None else value
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return f"{int(value):d}"
    value = float(value)
    if not np.isfinite(value):
        return str(value)
    if float_format is not None:
        return float_format % value
    if value == 0 or 1e-3 <= abs(value) < 1e6:
        return f"{value:.4f}"
    return f"{value:.4e}"


def fmt_pvalue(value, float_format=None):
    """As statsmodels prints p-values: four decimals (0.0000 for anything below 5e-5), or `float_format`."""
    value = float(value)
    return "" if not np.isfinite(value) else (float_format or "%.4f") % value


def _label(text):
    text = str(text)
    return text if len(text) <= LABEL_WIDTH else text[: LABEL_WIDTH - 3] + "..."


def titled(df, title, headers=None, shorten=True, float_format=None):
    """The table with its index as a first column headed by `title`, every cell formatted as text (numbers
    with `float_format` when given).

    With `shorten`, first-column labels beyond 30 characters are cut (group labels); variable names
    are never cut.
    """
    out = df.reset_index()
    out = out.rename(columns={out.columns[0]: title})
    for col in out.columns[1:]:
        out[col] = [fmt_pvalue(v, float_format) for v in out[col]] if col == "P>|z|" \
            else [fmt(v, float_format) for v in out[col]]
    out[title] = [_label(v) if shorten else str(v) for v in out[title]]
    if headers:
        out = out.rename(columns=headers)
    return out


def model_info(res):
    """The header: model, data and the fit's status.  One term: its grouping factor and group sizes; several
    terms: each term's number of levels (in full: a header too wide for two columns is printed in one)."""
    model = res.model
    info = {
        "Model:": _model_name(res),
        "Family:": FAMILY_NAMES.get(model.dist.name, model.dist.name),
        "Link:": model.dist.link_name,
        "Method:": res.method if res.method in ("REML", "ML", "Laplace") else
        (f"AGQ ({res.nagq} nodes)" if res.method == "AGQ" else res.method),
        "Dependent Variable:": _label(model.endog_name),
    }
    if res.is_multi:
        info["Levels:"] = ", ".join(f"{t.key} {t.n_levels}" for t in res._terms)
    else:
        info["Group variable:"] = _label(model.group_name)
    info.update({"No. Observations:": fmt(res.nobs), "Rows dropped:": fmt(res.n_dropped)})
    if not res.is_multi:
        counts = model.design.counts
        info.update({"No. Groups:": fmt(res.n_groups),
                     "Group size min/mean/max:": f"{counts.min()} / {counts.mean():.1f} / {counts.max()}"})
    info["Converged:"] = "Yes" if res.converged else "No"
    info["Singular fit:"] = ", ".join(_singular_keys(res)) or ("Yes" if res.singular else "No")
    return info


def _singular_keys(res):
    """The singular terms of a several-term fit, named (a one-term fit's flag is ``res.singular``)."""
    return [k for k, v in res.singular_terms.items() if v] if res.is_multi else []


def _model_name(res):
    if res.is_multi:
        return f"GLMM ({len(res._terms)} random-effect terms)"
    return f"GLMM (random: {', '.join(res._terms[0].z_names)})" if _slopes(res) else "GLMM (random intercept)"


def _slopes(res):
    """The one factor has random slopes (a vector of effects per group)."""
    return res._terms[0].z_names != ("Intercept",)


def _effects(res):
    if res.is_multi:
        return "Random effects"
    return "Random effects (per term)" if _slopes(res) else "Random intercepts"


def _singular_note(res):
    if _singular_keys(res):
        return (f"Singular fit: the covariance of {', '.join(_singular_keys(res))} is at its boundary (a variance "
                "at zero or a correlation of +-1); interpret its variance components with caution.")
    if res.is_multi or not res.singular:
        return None
    if _slopes(res):
        from .._results_terms import SINGULAR_NOTE

        return SINGULAR_NOTE
    return ("Singular fit: the random-intercept variance is at or near zero (the boundary); interpret the ICC and "
            "variance components with caution, a GLM may be more appropriate.")


def _fewest_levels(res):
    """(number, what) of the term with the fewest levels: the groups of a one-term model."""
    if not res.is_multi:
        return res.n_groups, "groups"
    term = min(res._terms, key=lambda t: t.n_levels)
    return term.n_levels, f"levels of {term.key}"


def notes(res):
    """The notes printed after the tables: deleted rows, boundary and convergence warnings, what the standard
    errors are, the ICC's and the intervals' caveats."""
    lines = []
    if res.n_dropped:
        reasons = ", ".join(f"{k} ({v})" for k, v in res.model.design.drop_reasons.items())
        lines.append(f"{res.n_dropped} rows dropped (listwise deletion: missing, non-numeric or infinite values"
                     + (f" in {reasons}" if reasons else "") + ").")
    singular = _singular_note(res)
    if singular:
        lines.append(singular)
    if not res.converged:
        lines.append("The optimiser did not converge: " + res.optsummary.message)
    if res.icc_basis is None:
        from ._tables import ICC_UNDEFINED

        lines.append(f"ICC: {ICC_UNDEFINED}.")
    gaussian = res.model.dist.name == "gaussian" and res.model.dist.link_name == "identity"
    kind = "BLUPs" if gaussian else "conditional modes"
    if res.is_multi:  # the modes of every term jointly: their conditional SDs, fixed effects held
        lines.append(f"{_effects(res)} are {kind}; Std. Error = conditional SD (fixed effects held at their "
                     "estimates).")
    elif gaussian:
        lines.append(f"{_effects(res)} are BLUPs; Std. Error = sqrt(conditional variance).")
    else:
        lines.append(f"{_effects(res)} are conditional modes; Std. Error = sqrt(inverse curvature of each group's "
                     "log integrand), a posterior-based SE.")
    if not gaussian:
        source = "observed information (Hessian)" if res.cov_type == "hessian" else "PIRLS working weights"
        lines.append(f"Standard errors of fixed effects: {source}.")
    if res.se_note:
        lines.append(res.se_note + ".")
    if res.method == "REML":
        lines.append("REML AIC and BIC compare only models with the same fixed effects (refit with reml=False to "
                     "compare fixed effects).")
    few, what = _fewest_levels(res)
    if few < FEW_GROUPS:
        lines.append(f"Confidence intervals: Wald, standard normal; with {few} {what} they can be too narrow.")
    else:
        lines.append("Confidence intervals: Wald, standard normal.")
    return lines


def _exp_headers(res, alpha):
    """Shorter headers for the exponentiated interval: 'OR [2.5%' / '97.5%]' style."""
    from ._tables import exp_label, level_label

    name = exp_label(res.model.dist)
    if name is None:
        return None
    label = level_label(alpha)
    short = "exp" if name.startswith("exp") else name
    return {name: "exp(b)" if short == "exp" else name, f"exp(Lower {label})": f"{short} low",
            f"exp(Upper {label})": f"{short} high"}


class GLMMSummary(summary2.Summary):
    """summary2.Summary whose text form is compact (at most 100 columns for the standard tables)."""

    def __init__(self):
        super().__init__()
        self._blocks = []  # ("info", dict) / ("table", DataFrame) / ("text", str), in order

    def add_block(self, kind, content):
        self._blocks.append((kind, content))
        if kind == "info":
            self.add_dict(content, ncols=2)
        elif kind == "table":
            self.add_df(content, index=False)
        else:
            self.add_text(content)

    def as_text(self):
        rendered = []
        for kind, content in self._blocks:
            if kind == "info":
                rendered.append(("info", _info_lines(content)))
            elif kind == "table":
                table, moved = _wide_columns(content)
                rendered += [("table", lines) for lines in _table_parts(table)]
                rendered += [("text", line) for line in moved]
            else:
                rendered.append(("text", content))
        width = max([len(line) for kind, lines in rendered if kind != "text" for line in lines] + [60])
        width = min(width, MAX_WIDTH)
        out = [self.title.center(width).rstrip(), "=" * width]
        first = True
        for kind, lines in rendered:
            if kind == "text":
                continue
            if not first:
                out.append("-" * width)
            first = False
            if kind == "table":
                out += [lines[0], "-" * width] + lines[1:]
            else:
                out += lines
        out.append("=" * width)
        for kind, text in rendered:
            if kind == "text":
                out += textwrap.wrap(text, width=width, break_on_hyphens=False, break_long_words=False)
        return "\n".join(line.rstrip() for line in out)

    def __str__(self):
        return self.as_text()


def _wide_columns(df, width=MAX_WIDTH):
    """The table without the columns too wide to print beside its label column alone (long notes, which no
    split by columns can fit), and those columns as text lines "rows: note" (a blank cell shares the note
    above it, as the table reads)."""
    label = df.columns[0]
    wide = [c for c in df.columns[1:]
            if max(len(line) for line in df[[label, c]].to_string(index=False).splitlines()) > width]
    lines = []
    for col in wide:
        groups = []  # [row labels, note]
        for row, note in zip(df[label], df[col]):
            if note:
                groups.append([[str(row)], note])
            elif groups:
                groups[-1][0].append(str(row))
        if groups:
            lines.append("; ".join(f"{', '.join(rows)}: {note}" for rows, note in groups) + ".")
    return df.drop(columns=wide), lines


def _table_parts(df, width=MAX_WIDTH):
    """The table's text lines, split by columns into parts each within `width` where the whole is wider (as
    statsmodels and pandas wrap a wide table), the first (label) column repeated in every part; the columns
    named in ``df.attrs["together"]`` (the exponentiated estimates) go last and stay in one part."""
    lines = df.to_string(index=False).splitlines()
    if max(len(line) for line in lines) <= width or df.shape[1] <= 2:
        return [lines]
    together = [c for c in df.attrs.get("together", ()) if c in df.columns]
    units = [[c] for c in df.columns[1:] if c not in together]
    if together:
        units.append(together)
    label, parts, current = df.columns[0], [], []
    for unit in units:
        trial = df[[label, *current, *unit]].to_string(index=False).splitlines()
        if current and max(len(line) for line in trial) > width:
            parts.append(current)
            current = []
        current += unit
    parts.append(current)
    return [df[[label, *cols]].to_string(index=False).splitlines() for cols in parts]


def _info_lines(info, width=MAX_WIDTH):
    """Two key: value columns; one (values wrapped under themselves) where two would pass `width`."""
    items = [(k, str(v)) for k, v in info.items()]
    half = (len(items) + 1) // 2
    left, right = items[:half], items[half:]
    kw = max(len(k) for k, _ in items)
    vw = max(len(v) for _, v in left)
    lines = []
    for i, (k, v) in enumerate(left):
        line = f"{k:<{kw}} {v:<{vw}}"
        if i < len(right):
            line += f"   {right[i][0]:<{kw}} {right[i][1]}"
        lines.append(line)
    if max(len(line) for line in lines) <= width:
        return lines
    lines = []
    for k, v in items:
        lines += textwrap.wrap(v, width=width - kw - 1, break_on_hyphens=False, initial_indent=f"{k:<{kw}} ",
                               subsequent_indent=" " * (kw + 1)) if v else [k]
    return lines


def summary_start(info, labels):
    """A GLMMSummary with the title and the model-information block (a user's yname replaces the response)."""
    smry = GLMMSummary()
    smry.add_title(labels.get("title") or "Generalized Linear Mixed Model Results")
    if labels.get("yname"):
        info["Dependent Variable:"] = _label(labels["yname"])
    smry.add_block("info", info)
    return smry


def add_fixed_effects(smry, res, alpha, labels):
    """The Fixed Effects block (a user's xname_fe renames its rows)."""
    fixed = res.fixed_effects_table(alpha)
    if labels.get("xname_fe") is not None:
        fixed.index = pd.Index([str(v) for v in labels["xname_fe"]], name=fixed.index.name)
    headers = _exp_headers(res, alpha)
    table = titled(fixed, "Fixed Effects", headers, shorten=False, float_format=labels.get("float_format"))
    if headers:  # a text form too wide is split before these, never between them (`_table_parts`)
        table.attrs["together"] = [c for c in table.columns if c in headers.values()]
    smry.add_block("table", table)


def random_effects_block(res, labels):
    """The Random Effects table: one random intercept, one term's VarCorr rows, or every term's (lme4's VarCorr
    print) with the Residual row.  A user's xname_re renames a one-row-per-component table's first row."""
    random = res.random_effects_table()
    if labels.get("xname_re") and random.index.nlevels == 1:
        random = random.rename(index={random.index[0]: labels["xname_re"]})
    # a one-factor table's labels are names, never cut; several terms' keys (interactions) are cut at 30
    return titled(random, "Random Effects", shorten=res.is_multi, float_format=labels.get("float_format"))


def blup_parts(res):
    """(title, table with a Group column, the unit its rows count, prefix of its "more" line) per term."""
    table = res.blup_table()
    if not res.is_multi:
        return [("BLUP: group", table, "groups", "")]
    parts = []
    for term, part in table.groupby("Term", sort=False):
        part = part.drop(columns=["Term"]).dropna(axis=1, how="all")  # the long table's other terms' columns
        part.columns = [c.replace("Std. Error", "SE") for c in part.columns]
        parts.append((f"BLUP: {_label(term)}", part, "levels", f"{term}: "))
    return parts


def make_summary(res, alpha=0.05, blup_rows=10, from_cli=False, labels=None):
    """The summary of a fit of any random-effects structure: header, random effects, NB2 shape, ICC, latent
    scale, fixed effects, model fit, BLUPs (per term), notes."""
    from ._tables import dispersion_table

    labels = labels or {}
    ff = labels.get("float_format")
    smry = summary_start(model_info(res), labels)
    smry.add_block("table", random_effects_block(res, labels))
    shape = dispersion_table(res)
    if shape is not None:
        smry.add_block("table", titled(shape, "NB2 shape", shorten=False, float_format=ff))
    icc = res.icc_table()
    if not (icc["Value"].astype(str) == "N/A").all():
        smry.add_block("table", titled(icc, "ICC", float_format=ff))
    latent = res.latent_variance_table()
    if latent is not None:
        smry.add_block("table", titled(latent, "Latent scale", {"Latent residual variance": "Residual variance",
                                                                 "Random-intercept variance": "Group variance"},
                                        float_format=ff))
    add_fixed_effects(smry, res, alpha, labels)
    fit_table = res.model_fit_table()
    if res.is_multi:  # the levels per term are in the header
        fit_table = fit_table.drop(index=["Groups"])
    smry.add_block("table", titled(fit_table, "Model Fit", float_format=ff))
    where = "--blups FILE writes" if from_cli else "res.blup_table() has"
    cut = False
    for title, table, unit, prefix in blup_parts(res):
        if blup_rows:
            shown = table.head(blup_rows).set_index("Group")
            shown.index = shown.index.astype(str)
            smry.add_block("table", titled(shown, title, float_format=ff))
        if len(table) > blup_rows:
            cut = True
            smry.add_block("text", f"... {prefix}{len(table) - blup_rows} more {unit} ({where} all {len(table)}).")
    if from_cli and not cut:
        smry.add_block("text", f"--blups FILE writes every {unit[:-1]}'s BLUP and standard error.")
    for line in notes(res):
        smry.add_block("text", line)
    return smry
