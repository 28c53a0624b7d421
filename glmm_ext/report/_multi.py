"""summary() of a fit with several random-effect terms: the VarCorr table, ICC per term, BLUPs per term."""
from ._display import _label, add_fixed_effects, fmt, summary_start, titled


def model_info(res):
    model = res.model
    terms = model.design.terms
    levels = ", ".join(f"{name} {len(lv)}" for name, lv in zip(terms.names, terms.levels))
    return {
        "Model:": f"GLMM ({len(terms.names)} random-effect terms)",
        "Family:": model.dist.name.capitalize(),
        "Link:": model.dist.link_name,
        "Method:": res.method,
        "Dependent Variable:": _label(model.endog_name),
        "Levels:": levels,  # in full: a header too wide for two columns is printed in one, values wrapped
        "No. Observations:": fmt(res.nobs),
        "Rows dropped:": fmt(res.n_dropped),
        "Converged:": "Yes" if res.converged else "No",
        "Singular fit:": ", ".join(k for k, v in res.singular_terms.items() if v) or "No",
    }


def notes(res):
    lines = []
    if res.n_dropped:
        reasons = ", ".join(f"{k} ({v})" for k, v in res.model.design.drop_reasons.items())
        lines.append(f"{res.n_dropped} rows dropped (listwise deletion: missing, non-numeric or infinite values"
                     + (f" in {reasons}" if reasons else "") + ").")
    singular = [k for k, v in res.singular_terms.items() if v]
    if singular:
        lines.append(f"Singular fit: the covariance of {', '.join(singular)} is at its boundary (a variance at zero "
                     "or a correlation of +-1); interpret its variance components with caution.")
    if not res.converged:
        lines.append("The optimiser did not converge: " + res.optsummary.message)
    if res.icc_basis is None:
        from ._tables import ICC_UNDEFINED

        lines.append(f"ICC: {ICC_UNDEFINED}.")
    kind = "BLUPs" if res.model.design.gaussian_identity else "conditional modes"
    lines.append(f"Random effects are {kind}; Std. Error = conditional SD (fixed effects held at their estimates).")
    if res.method == "REML":
        lines.append("REML AIC and BIC compare only models with the same fixed effects (refit with reml=False to "
                     "compare fixed effects).")
    lines.append("Confidence intervals: Wald, standard normal.")
    return lines


def make_summary(res, alpha=0.05, blup_rows=10, from_cli=False, labels=None):
    labels = labels or {}
    smry = summary_start(model_info(res), labels)
    random = res.vcomp.copy()
    random["Group"] = [_label(v) for v in random["Group"]]
    smry.add_block("table", titled(random.set_index("Group"), "Random Effects"))
    from ._tables import dispersion_table

    shape = dispersion_table(res)
    if shape is not None:  # the NB2 shape, as a one-term summary prints it
        smry.add_block("table", titled(shape, "NB2 shape", shorten=False))
    icc = res.icc_table()
    if not (icc["Value"] == "N/A").all():
        smry.add_block("table", titled(icc.drop(columns=["Note"]), "ICC"))
    latent = res.latent_variance_table()
    if latent is not None:
        smry.add_block("table", titled(latent.drop(columns=["Formula"]), "Latent scale",
                                       {"Latent residual variance": "Residual variance"}))
    add_fixed_effects(smry, res, alpha, labels)
    fit_table = res.model_fit_table().drop(index=["Groups"])
    smry.add_block("table", titled(fit_table, "Model Fit"))
    blups = res.blup_table()
    for term, table in blups.groupby("Term", sort=False):
        if blup_rows:
            shown = table.drop(columns=["Term"]).dropna(axis=1, how="all").head(blup_rows).set_index("Group")
            shown.index = shown.index.astype(str)
            shown.columns = [c.replace("Std. Error", "SE") for c in shown.columns]
            smry.add_block("table", titled(shown, f"BLUP: {_label(term)}"))
        if len(table) > blup_rows:
            smry.add_block("text", f"... {term}: {len(table) - blup_rows} more levels (res.blup_table() has all "
                                   f"{len(table)}).")
    for line in notes(res):
        smry.add_block("text", line)
    return smry
