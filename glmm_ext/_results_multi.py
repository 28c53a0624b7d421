"""Results of a fit with several random-effect terms: lme4's VarCorr table, per-term covariances, modes,
ICCs and BLUP tables, fitted values and predictions conditional on every term.

Term keys: the grouping factor's display name ("plate", "Block:Variety"); a factor with a second term
gets ".1", ".2" (lme4's VarCorr names, e.g. "Subject" and "Subject.1" for (1|Subject) + (0+Days|Subject)).
The ICC of term k is sigma2_k / (sum_j sigma2_j + sigma_e^2) with sigma2_j the intercept variance of each
term with an intercept (sigma_e^2 the residual variance, or the latent-scale one as for one term); the
adjusted ICC is sum_j sigma2_j / (sum_j sigma2_j + sigma_e^2) (Nakagawa et al. 2017).
"""
import warnings

import numpy as np
import pandas as pd

from ._multiterm import SEVERAL_TERMS


def not_for_terms(what):
    """NotImplementedError for a method not available with several random-effect terms."""
    return NotImplementedError(f"{what} is not implemented for {SEVERAL_TERMS}")


def term_keys(res):
    """Unique keys of the terms, in the user's order ("g", "g.1" when a factor has two terms)."""
    keys, seen = [], {}
    for name in res.model.design.terms.names:
        k = seen.get(name, 0)
        keys.append(name if k == 0 else f"{name}.{k}")
        seen[name] = k + 1
    return keys


def _parts(res):
    terms = res.model.design.terms
    return list(zip(term_keys(res), terms.z_names, terms.levels, res._fit.mixed.cov_re, res._fit.mixed.modes,
                    res._fit.mixed.mode_sd))


def cov_re(res):
    """Term key -> q x q covariance (DataFrame named by the z columns), data units."""
    return {k: pd.DataFrame(np.atleast_2d(c), index=z, columns=z) for k, z, _, c, _, _ in _parts(res)}


def random_effects(res):
    """Term key -> DataFrame (levels x z columns) of the conditional modes / BLUPs."""
    return {k: pd.DataFrame(np.asarray(m, float).reshape(len(lv), len(z)), index=pd.Index(lv, name=k), columns=z)
            for k, z, lv, _, m, _ in _parts(res)}


def random_effects_se(res):
    """Term key -> DataFrame (levels x z columns) of the conditional SDs."""
    return {k: pd.DataFrame(np.asarray(s, float).reshape(len(lv), len(z)), index=pd.Index(lv, name=k), columns=z)
            for k, z, lv, _, _, s in _parts(res)}


def vcomp_one(res):
    """vcomp of a one-factor fit: each independent block a VarCorr group ("g", "g.1", ... as lme4 names the
    blocks of (x || g) or (1 | g) + (0 + x | g))."""
    if res.is_vector:
        cov = res.cov_re.to_numpy()
        names = list(res.cov_re.columns)
        blocks = res.model.design.re_blocks or [list(range(len(names)))]
    else:
        cov, names, blocks = np.array([[res.var_re]]), ["Intercept"], [[0]]
    group = res.group_name
    parts = [(group if k == 0 else f"{group}.{k}", [names[j] for j in b], cov[np.ix_(b, b)])
             for k, b in enumerate(blocks)]
    return _vcomp_rows(res, parts)


def vcomp(res):
    """lme4's VarCorr print as a DataFrame: Group, Name, Variance, Std.Dev., Corr (with the earlier columns of
    the same term, lower triangle, as VarCorr prints it), a row per term column and a Residual row."""
    return _vcomp_rows(res, [(k, z, c) for k, z, _, c, _, _ in _parts(res)])


def _vcomp_rows(res, parts):
    rows = []
    width = 0
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
    """The Random Effects table of summary(): vcomp indexed by (Group, Name)."""
    return vcomp(res).set_index(["Group", "Name"])


def intercept_variances(res):
    """Term key -> its intercept variance (terms with an "Intercept" column)."""
    return {k: float(np.atleast_2d(c)[z.index("Intercept"), z.index("Intercept")])
            for k, z, _, c, _, _ in _parts(res) if "Intercept" in z}


def icc_table(res):
    """ICC per term with an intercept, sigma2_k / (sum_j sigma2_j + sigma_e^2), and the adjusted ICC."""
    from .report._tables import ICC_UNDEFINED

    variances = intercept_variances(res)
    index = pd.Index([f"ICC ({k})" for k in variances] + ["Adjusted ICC"], name="Statistic")
    if res.icc_basis is None or not variances:
        note = ICC_UNDEFINED if res.icc_basis is None else "no term has a random intercept"
        return pd.DataFrame({"Value": ["N/A"] * len(index), "Note": [note] * len(index)}, index=index)
    resid = res._icc_residual[0]
    total = sum(variances.values()) + resid
    values = [v / total for v in variances.values()] + [sum(variances.values()) / total]
    notes = [f"sigma2_k / (sum of intercept variances + sigma_e^2), sigma_e^2 = {res.icc_basis}"] + \
        [""] * (len(variances) - 1) + ["sum of intercept variances / (that + sigma_e^2)"]
    return pd.DataFrame({"Value": values, "Note": notes}, index=index)


def blup_table(res):
    """Long table: Term, Group (level), then per z column its mode and conditional SD (one row per level)."""
    frames = []
    for k, z, lv, _, m, s in _parts(res):
        m = np.asarray(m, float).reshape(len(lv), len(z))
        s = np.asarray(s, float).reshape(len(lv), len(z))
        df = pd.DataFrame({"Term": k, "Group": lv})
        for j, name in enumerate(z):
            df[name] = m[:, j]
            df[f"Std. Error ({name})"] = s[:, j]
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def row_effects(res):
    """Each used row's random part: sum over terms of z_ik' b_k,level(i)."""
    out = np.zeros(res.model.design.nobs)
    for term, m in zip(res.model.design.terms.terms, res._fit.mixed.modes):
        m = np.asarray(m, float).reshape(term.n_levels, -1)
        out += np.einsum("nq,nq->n", term.Z, m[term.codes])
    return out


def row_variances(res):
    """Per row sum over terms of z_ik' Sigma_k z_ik (the variance of the random part)."""
    out = np.zeros(res.model.design.nobs)
    for term, c in zip(res.model.design.terms.terms, res._fit.mixed.cov_re):
        out += np.einsum("nq,qr,nr->n", term.Z, np.atleast_2d(c), term.Z)
    return out


def singular_terms(res):
    """Term key -> True where the term's covariance is at its boundary."""
    return dict(zip(term_keys(res), map(bool, res._fit.mixed.singular)))


def diagnostics_table(res):
    """diagnostics() with the random part summed over the terms."""
    model = res.model
    design = model.design
    u = row_effects(res)
    mu = model.dist.mean(model.predict(res.params, which="linear") + u)
    y, m = design.y, design.prior_weights
    return pd.DataFrame({"fitted_values": mu,
                         "deviance_residuals": model.dist.deviance_residuals(y, mu, m, res.scale),
                         "pearson_residuals": model.dist.pearson_residuals(y, mu, m, res.scale),
                         "random_effects": u}, index=design.index)


def _selected(res, groups):
    keys = term_keys(res)
    if groups is None or groups is True:
        return list(range(len(keys)))
    if groups is False:
        return []
    chosen = [groups] if isinstance(groups, str) else list(groups)
    unknown = [g for g in chosen if g not in keys]
    if unknown:
        raise ValueError(f"groups: {unknown[0]!r} is not a random-effect term (terms: {', '.join(keys)})")
    return [keys.index(g) for g in chosen]


def new_term_parts(res, exog, rows, groups, new_groups):
    """For each selected term: (k, Z rows, codes with -1 for an unseen level / NaN label) on the new data."""
    model = res.model
    multi = model.random_design
    if not isinstance(exog, pd.DataFrame) or multi is None:
        raise ValueError("predictions with several random-effect terms need the new data as a DataFrame holding the "
                         "grouping factors' columns (a model from a formula); groups=False gives population-level "
                         "predictions")
    out = []
    unseen_terms = []
    for k in _selected(res, groups):
        spec = multi.terms[k].spec
        absent = [f for f in spec.factors if f not in exog.columns]
        if absent:
            raise ValueError(f"the new data lack the grouping column {absent[0]!r} of the term "
                             f"({spec.expr} | {spec.group}); give it, or groups=[...] naming the terms to include")
        labels = multi.labels_of(k, exog)
        levels = model.design.terms.levels[k]
        lookup = pd.Series(np.arange(len(levels)), index=pd.Index(levels))
        if not lookup.index.is_unique:
            lookup = lookup[~lookup.index.duplicated()]
        codes = pd.Series(np.asarray(labels, dtype=object)).map(lookup)
        missing = pd.isna(pd.Series(np.asarray(labels, dtype=object))).to_numpy()
        unseen = codes.isna().to_numpy() & ~missing
        if unseen.any():
            names = list(dict.fromkeys(np.asarray(labels, dtype=object)[unseen]))
            if new_groups == "error":
                raise ValueError(f"{len(names)} levels of {spec.group} are not in the fitted data: "
                                 f"{', '.join(map(repr, names[:5]))}")
            unseen_terms.append(f"{spec.group} ({len(names)}: {', '.join(map(repr, names[:3]))}"
                                f"{' ...' if len(names) > 3 else ''})")
        codes = np.array(codes.to_numpy(dtype=float, na_value=np.nan), dtype=float)
        codes[unseen] = -1
        Z = multi.z_matrix(k, exog[[c for c in exog.columns]])
        if len(Z) != len(codes):
            raise ValueError("the new data's random-effects columns have missing values in rows the fixed part uses")
        out.append((k, Z, codes))
    if unseen_terms:
        warnings.warn(f"levels not in the fitted data contribute 0 (a population-level prediction for that term): "
                      f"{'; '.join(unseen_terms)}", UserWarning, stacklevel=4)
    return out


def predict(res, rows, exog, which="mean", groups=None, new_groups="zero", with_variance=False):
    """Linear predictor (and, with `with_variance`, each row's conditional variance of the random part)
    for new rows, conditional on every selected term."""
    model = res.model
    params = np.asarray(res.params, float)
    if rows.X is None:  # the fitted rows
        u = row_effects(res) if groups is not False else 0.0
        eta = model.predict(params, which="linear") + u
        if with_variance:
            cond = np.zeros(len(eta))
            if groups is not False:
                for k in _selected(res, groups):
                    term = model.design.terms.terms[k]
                    cond += _cond_var(res, k, term.Z, term.codes.astype(float))
            return eta, cond
        return eta if which == "linear" else model.dist.mean(eta)
    eta = model.predict(params, rows.X, offset=rows.offset, which="linear")
    cond = np.zeros(len(eta))
    if groups is not False:
        for k, Z, codes in new_term_parts(res, exog, rows, groups, new_groups):
            modes = np.asarray(res._fit.mixed.modes[k], float).reshape(-1, Z.shape[1])
            ok = np.isfinite(codes) & (codes >= 0)
            contrib = np.full(len(eta), np.nan)
            contrib[np.isfinite(codes)] = 0.0
            contrib[ok] = np.einsum("nq,nq->n", Z[ok], modes[codes[ok].astype(np.intp)])
            eta = eta + contrib
            if with_variance:
                cond += _cond_var(res, k, Z, codes)
    if with_variance:
        return eta, cond
    return eta if which == "linear" else model.dist.mean(eta)


def _cond_var(res, k, Z, codes):
    """z' diag(conditional variances) z for the rows' levels (0 for unseen levels).  A term with several z
    columns needs the modes' conditional covariances, which the fit does not keep: NotImplementedError."""
    if Z.shape[1] > 1:
        raise not_for_terms("get_prediction with a multi-column random-effect term (conditional covariances)")
    sd = np.asarray(res._fit.mixed.mode_sd[k], float).reshape(-1)
    out = np.zeros(len(codes))
    ok = np.isfinite(codes) & (codes >= 0)
    out[ok] = (Z[ok, 0] * sd[codes[ok].astype(np.intp)]) ** 2
    return out


def test_random_effect(res, term):
    """LRT of H0: term `term`'s covariance is 0, against the fit (the model refitted without the term, by the
    fit's own method: REML fits compared by REML, as lme4's anova(refit = FALSE), the fixed effects being
    the same).  df = the term's covariance parameters; p = 0.5 chi2_0 + 0.5 chi2_1 for a scalar term (Self
    & Liang 1987), else the conservative chi2_df with the 0.5 chi2_{df-1} + 0.5 chi2_df approximation."""
    from dataclasses import replace

    from scipy import stats

    from ._multiterm import fit_multi
    from .inference._comparison import RandomEffectTest, boundary_pvalue

    keys = term_keys(res)
    if term not in keys:
        raise ValueError(f"test_random_effect(term): give one of the terms {', '.join(map(repr, keys))} "
                         f"(got {term!r})")
    k = keys.index(term)
    design = res.model.design
    terms = design.terms
    keep = [j for j in range(len(keys)) if j != k]
    structure = type(terms.structure)(terms=tuple(terms.structure.terms[j] for j in keep))
    reduced = replace(design, terms=replace(terms, structure=structure, levels=[terms.levels[j] for j in keep],
                                            names=[terms.names[j] for j in keep],
                                            z_names=[terms.z_names[j] for j in keep]))
    options = res.fit_options
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        null = fit_multi(reduced, reml=options.get("reml", True), nagq=options.get("nagq", 1),
                         maxiter=options.get("maxiter", 100), tol=options.get("tol", 1e-6))
    removed = terms.structure.terms[k]
    q = removed.Z.shape[1]
    df = q * (q + 1) // 2 if removed.correlated else q
    statistic = max(0.0, 2.0 * (res.llf - null.llf))
    chi2_p, mixture_p = float(stats.chi2.sf(statistic, df)), boundary_pvalue(statistic, df)
    if df == 1:
        pvalue, how = mixture_p, "p = 0.5 chi2_0 + 0.5 chi2_1 (Self & Liang 1987)"
    else:
        pvalue, how = chi2_p, (f"p = chi2_{df} (conservative); pvalue_mixture = 0.5 chi2_{df - 1} + 0.5 chi2_{df}")
    return RandomEffectTest(statistic=statistic, pvalue=pvalue, llf_glmm=float(res.llf), llf_glm=float(null.llf),
                            method=f"{res.method}; without the term {term!r}; {how}", df=df, pvalue_chi2=chi2_p,
                            pvalue_mixture=mixture_p)
