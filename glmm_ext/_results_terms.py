"""Results of a fit of any random-effects structure, read through the per-term view (`_term_view`):
covariances, modes, lme4's VarCorr table, ICCs, BLUP tables, each row's random part.

Presentation follows the model's specification: a one-factor model keeps MixedLM's one-group API
(``cov_re`` a DataFrame, ``random_effects`` a dict by group); a model with several terms gives dicts by
term key ("plate", "Block:Variety"; a factor with a second term gets ".1", as lme4's VarCorr).

ICC(x) follows the course seed: with z_k(x) term k's z row at covariate value x (1 for the intercept),
Var_between(x) = sum_k z_k(x)' Sigma_k z_k(x) and ICC(x) = Var_between(x) / (Var_between(x) + sigma_e^2),
sigma_e^2 the residual variance (Gaussian) or the latent one (pi^2/3 logit, 1 probit).  With several
terms the ICC of term k is sigma2_k / (sum_j sigma2_j + sigma_e^2), sigma2_j the intercept variance of each
term with an intercept, and the adjusted ICC is sum_j sigma2_j / (that + sigma_e^2) (Nakagawa et al. 2017).
"""
import numbers

import numpy as np
import pandas as pd

from ._term_view import conditional_covariances, per_term, term_rows

SINGULAR_NOTE = ("Singular fit: the random-effects covariance is at its boundary (a variance at zero or a correlation "
                 "of +-1); the data cannot support this many random terms. Interpret the variance components and "
                 "ICC(x) with caution; a simpler random part (|| or fewer slopes) may be more appropriate.")


def term_keys(res):
    """Unique keys of the terms, in the user's order."""
    return [t.key for t in res._terms]


def _one(res):
    """The term of a one-factor model."""
    return res._terms[0]


# ------------------------------------------------------------------------------ covariances and modes
def cov_re(res):
    """One factor: DataFrame (q x q; a random intercept is named by the group); several: term -> DataFrame."""
    if per_term(res):
        return {t.key: pd.DataFrame(t.cov, index=list(t.z_names), columns=list(t.z_names)) for t in res._terms}
    t = _one(res)
    names = [res.group_name] if t.z_names == ("Intercept",) and t.is_scalar else list(t.z_names)
    return pd.DataFrame(t.cov, index=names, columns=names)


def _vector(t):
    """A one-factor term reported by z column (random slopes) rather than as MixedLM's "Group"."""
    return not (t.is_scalar and t.z_names == ("Intercept",))


def random_effects(res):
    """One factor: group label -> Series (``"Group"``, or the z columns); several: term -> levels x z DataFrame."""
    if per_term(res):
        return {t.key: pd.DataFrame(t.modes, index=pd.Index(t.levels, name=t.key), columns=list(t.z_names))
                for t in res._terms}
    t = _one(res)
    names = list(t.z_names) if _vector(t) else ["Group"]
    return {label: pd.Series(row, index=names) for label, row in zip(t.levels, t.modes)}


def random_effects_se(res):
    """Conditional SDs: one random intercept a Series by group; random slopes groups x z columns; several
    terms a dict of those DataFrames."""
    if per_term(res):
        return {t.key: pd.DataFrame(t.mode_sd, index=pd.Index(t.levels, name=t.key), columns=list(t.z_names))
                for t in res._terms}
    t = _one(res)
    if _vector(t):
        return pd.DataFrame(t.mode_sd, index=t.levels, columns=list(t.z_names))
    return pd.Series(t.mode_sd[:, 0], index=t.levels, name="se")


def random_effects_cov(res):
    """Conditional covariances Var(b | y): one factor group -> q x q DataFrame (``"Group"`` for a random
    intercept, as MixedLM); several terms: term -> {level: DataFrame}."""
    covs = conditional_covariances(res)
    if per_term(res):
        return {t.key: {label: pd.DataFrame(c, index=list(t.z_names), columns=list(t.z_names))
                        for label, c in zip(t.levels, cv)} for t, cv in zip(res._terms, covs)}
    t = _one(res)
    names = list(t.z_names) if _vector(t) else ["Group"]
    return {label: pd.DataFrame(c, index=names, columns=names) for label, c in zip(t.levels, covs[0])}


def singular_terms(res):
    """Term key -> singular flag."""
    return {t.key: t.singular for t in res._terms}


# ------------------------------------------------------------------------------ VarCorr
def vcomp(res):
    """lme4's VarCorr print as a DataFrame: Group, Name, Variance, Std.Dev., Corr (with the earlier columns of
    the same group, lower triangle), a row per z column and a Residual row.  A one-factor model's independent
    blocks are groups "g", "g.1", ... (as lme4 names the blocks of ``(x || g)``)."""
    parts = []
    for t in res._terms:
        if per_term(res):
            parts.append((t.key, list(t.z_names), t.cov))
        else:
            for k, b in enumerate(t.blocks):
                b = list(b)
                parts.append((t.key if k == 0 else f"{t.key}.{k}", [t.z_names[j] for j in b], t.cov[np.ix_(b, b)]))
    rows, width = [], 0
    for k, z, c in parts:
        c = np.atleast_2d(np.asarray(c, float))
        sd = np.sqrt(np.clip(np.diag(c), 0.0, None))
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = c / np.outer(sd, sd)
        width = max(width, len(z) - 1)
        for j, name in enumerate(z):
            rows.append({"Group": k, "Name": name, "Variance": float(c[j, j]), "Std.Dev.": float(sd[j]),
                         "Corr": [float(corr[j, i]) for i in range(j)]})
    dist = res.model.dist
    if dist.name in ("gaussian", "gamma") or dist.has_dispersion and dist.name != "negativebinomial":
        label = "Residual" if dist.name == "gaussian" else "Residual (dispersion)"
        rows.append({"Group": label, "Name": "", "Variance": float(res.scale), "Std.Dev.": float(np.sqrt(res.scale)),
                     "Corr": []})
    out = pd.DataFrame({key: [r[key] for r in rows] for key in ("Group", "Name", "Variance", "Std.Dev.")})
    for i in range(width):  # one Corr column per earlier column; blanks where VarCorr prints none
        label = "Corr" if width == 1 else f"Corr.{i + 1}"
        out[label] = pd.Series([r["Corr"][i] if i < len(r["Corr"]) else None for r in rows], dtype=object)
    return out


def random_effects_table(res):
    """The Random Effects table of summary().  Several terms: vcomp indexed by (Group, Name).  One random
    intercept: Component, Variance, Std.Dev.  Random slopes: (Group, Term), Variance, Std.Dev. and the
    correlations with the earlier terms (lme4's VarCorr print)."""
    if per_term(res):
        return vcomp(res).set_index(["Group", "Name"])
    from .report import _tables

    t = _one(res)
    if not _vector(t):
        return _tables.random_effects_table(res)
    names, cov = list(t.z_names), t.cov
    sd = np.sqrt(np.diag(cov))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.outer(sd, sd)
    rows = []
    for k, name in enumerate(names):
        row = {"Group": res.group_name, "Term": name, "Variance": cov[k, k], "Std.Dev.": sd[k]}
        for j in range(len(names) - 1):
            row[f"Corr ({names[j]})"] = float(corr[k, j]) if j < k else None  # lower triangle, as VarCorr
        rows.append(row)
    dist = res.model.dist
    if dist.name in ("gaussian", "gamma"):
        label = "Residual" if dist.name == "gaussian" else "Residual (dispersion; Var = phi mu^2)"
        rows.append({"Group": label, "Term": "", "Variance": res.scale, "Std.Dev.": np.sqrt(res.scale)})
    df = pd.DataFrame(rows)
    for col in df.columns[4:]:  # keep blanks (None) apart from numbers: object columns
        df[col] = pd.Series([r.get(col) for r in rows], dtype=object)
    return df.set_index(["Group", "Term"])


# ------------------------------------------------------------------------------ ICC
def intercept_variances(res):
    """Term key -> its intercept variance (terms with an "Intercept" column)."""
    return {t.key: float(t.cov[t.z_names.index("Intercept"), t.z_names.index("Intercept")])
            for t in res._terms if "Intercept" in t.z_names}


def icc(res):
    """One random intercept: sigma_u^2 / (sigma_u^2 + sigma_e^2); random slopes ICC(0); several terms the
    adjusted ICC.  None where sigma_e^2 has no basis."""
    if per_term(res):
        value = icc_table(res).loc["Adjusted ICC", "Value"]
        return None if isinstance(value, str) else float(value)
    entry = res._icc_residual
    return None if entry is None else res.var_re / (res.var_re + entry[0])


def _slope_columns(res):
    return sorted({c for t in res._terms for c in t.z_names if c != "Intercept"}) if per_term(res) else \
        [c for c in _one(res).z_names if c != "Intercept"]


def _x_values(res, x):
    """x as a dict slope column -> value (a number where there is one slope column)."""
    slopes = _slope_columns(res)
    if isinstance(x, dict):
        missing = [c for c in slopes if c not in x]
        if missing and per_term(res):  # several terms: every slope column named (one factor: a missing one is 0)
            raise ValueError(f"icc_at(x): no value for the slope column(s) {', '.join(map(repr, missing))}")
        unknown = set(x) - set(slopes)
        if unknown:
            raise ValueError(f"icc_at: {', '.join(map(str, sorted(unknown)))} is not a slope term column "
                             f"(slope columns: {', '.join(slopes) or 'none'})")
        return {c: float(x.get(c, 0.0)) for c in slopes}
    if not isinstance(x, numbers.Real):
        raise ValueError(f"icc_at: x must be a number or a dict column -> value (got {type(x).__name__})")
    if not slopes:  # random intercepts only: the ICC does not depend on x
        return {}
    if len(slopes) != 1:
        raise ValueError(f"icc_at: give a dict with a value for each slope column ({', '.join(slopes)})")
    return {slopes[0]: float(x)}


def var_between(res, x):
    """Var_between(x) = sum over terms of z_k(x)' Sigma_k z_k(x)."""
    values = _x_values(res, x)
    between = 0.0
    for t in res._terms:
        row = np.array([1.0 if c == "Intercept" else values[c] for c in t.z_names])
        between += float(row @ t.cov @ row)
    return between


def icc_at(res, x):
    """ICC(x) = Var_between(x) / (Var_between(x) + sigma_e^2); None where sigma_e^2 has no basis.
    A one-factor random intercept: the ICC (no dependence on x)."""
    if not per_term(res) and not _vector(_one(res)):
        return res.icc
    values = _x_values(res, x)
    entry = res._icc_residual
    if entry is None:
        return None
    vb = var_between(res, values)
    return vb / (vb + entry[0])


def mean_x(res):
    """Mean of each slope column of the one factor's term over the rows used."""
    Z, _ = term_rows(res, 0)
    return {n: float(Z[:, k].mean()) for k, n in enumerate(_one(res).z_names) if n != "Intercept"}


def icc_table(res):
    """Several terms: ICC per term with an intercept and the adjusted ICC.  One random intercept: ICC and
    design effect.  Random slopes: ICC(x) at x = 0 and at the mean of each slope column."""
    from .report._tables import ICC_UNDEFINED

    if per_term(res):
        variances = intercept_variances(res)
        index = pd.Index([f"ICC ({k})" for k in variances] + ["Adjusted ICC"], name="Statistic")
        if res.icc_basis is None or not variances:
            note = ICC_UNDEFINED if res.icc_basis is None else "no term has a random intercept"
            return pd.DataFrame({"Value": ["N/A"] * len(index), "Note": [note] * len(index)}, index=index)
        total = sum(variances.values()) + res._icc_residual[0]
        values = [v / total for v in variances.values()] + [sum(variances.values()) / total]
        notes = [f"sigma2_k / (sum of intercept variances + sigma_e^2), sigma_e^2 = {res.icc_basis}"] + \
            [""] * (len(variances) - 1) + ["sum of intercept variances / (that + sigma_e^2)"]
        return pd.DataFrame({"Value": values, "Note": notes}, index=index)
    if not _vector(_one(res)):
        from .report import _tables

        return _tables.icc_table(res)
    zero_note = "x = 0" if "Intercept" in _one(res).z_names else "x = 0 (no random intercept: 0)"
    points = [("ICC(x = 0)", {}, zero_note)]
    means = mean_x(res)
    if means:
        text = ", ".join(f"{k} = {v:.4g}" for k, v in means.items())
        points.append(("ICC(x = mean)", means, f"x at its mean: {text}"))
    index = pd.Index([p[0] for p in points], name="Statistic")
    if res.icc_basis is None:
        return pd.DataFrame({"Value": ["N/A"] * len(points), "Note": [ICC_UNDEFINED] * len(points)}, index=index)
    values = [icc_at(res, x) for _, x, _ in points]
    notes = [f"{note}; sigma_e^2 = {res.icc_basis}" if k == 0 else note for k, (_, _, note) in enumerate(points)]
    return pd.DataFrame({"Value": values, "Note": notes}, index=index)


# ------------------------------------------------------------------------------ BLUP tables, rows
def blup_table(res):
    """Several terms: long (Term, Group, per z column the mode and its conditional SD).  One random intercept:
    Group, Random Intercept, Std. Error, Rank.  Random slopes: Group, per z column mode and SD."""
    if not per_term(res) and not _vector(_one(res)):
        from .report import _tables

        return _tables.blup_table(res)
    frames = []
    for t in res._terms:
        df = pd.DataFrame({"Term": t.key, "Group": t.levels})
        for j, name in enumerate(t.z_names):
            df[name] = t.modes[:, j]
            df[f"Std. Error ({name})"] = t.mode_sd[:, j]
        frames.append(df)
    if not per_term(res):
        return frames[0].drop(columns=["Term"])
    return pd.concat(frames, ignore_index=True)


def row_effects(res):
    """Each used row's random part: sum over terms of z_ik' b_k,level(i)."""
    out = None
    for k, t in enumerate(res._terms):
        Z, codes = term_rows(res, k)
        part = t.modes[codes, 0] if t.is_scalar and Z.shape[1] == 1 and _ones(Z) else \
            np.einsum("nq,nq->n", Z, t.modes[codes])
        out = part if out is None else out + part
    return out


def _ones(Z):
    return bool(np.all(Z == 1.0))


def row_variances(res):
    """Per row: sum over terms of z_ik' Sigma_k z_ik (the variance of the random part)."""
    out = 0.0
    for k, t in enumerate(res._terms):
        Z, _ = term_rows(res, k)
        out = out + np.einsum("nq,qr,nr->n", Z, t.cov, Z)
    return out


def diagnostics_table(res):
    """One row per row used: fitted values (fixed + random, response scale), deviance and Pearson residuals,
    each row's random part ("group_random_effect" for one factor, "random_effects" for several terms)."""
    model = res.model
    design = model.design
    u = row_effects(res)
    mu = model.dist.mean(model.predict(res.params, which="linear") + u)
    y, m = design.y, design.prior_weights
    return pd.DataFrame({"fitted_values": mu,
                         "deviance_residuals": model.dist.deviance_residuals(y, mu, m, res._phi),
                         "pearson_residuals": model.dist.pearson_residuals(y, mu, m, res._phi),
                         "random_effects" if per_term(res) else "group_random_effect": u}, index=design.index)
