"""summary(): every table in a statsmodels summary2.Summary (text in a terminal, HTML in a notebook)."""
import numbers

import numpy as np
from statsmodels.iolib import summary2


def fmt(value):
    """A number as the tables show it: 4 decimals in the ordinary range, scientific outside it."""
    if value is None or isinstance(value, str):
        return "" if value is None else value
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return f"{int(value):d}"
    value = float(value)
    if not np.isfinite(value):
        return str(value)
    if value == 0 or 1e-3 <= abs(value) < 1e6:
        return f"{value:.4f}"
    return f"{value:.4e}"


def titled(df, title):
    """The table with its index as a first column headed by `title`, every cell formatted."""
    out = df.reset_index()
    out = out.rename(columns={out.columns[0]: title})
    for col in out.columns[1:]:
        if col == "P>|z|":
            out[col] = [f"{v:.4f}" if v >= 1e-4 else f"{v:.1e}" for v in out[col]]
        else:
            out[col] = [fmt(v) for v in out[col]]
    out[title] = out[title].astype(str)
    return out


def model_info(res):
    model = res.model
    counts = model.design.counts
    return {
        "Model:": ("GLMM (random intercept)" if not res.is_vector else
                   f"GLMM (random: {', '.join(res.cov_re.columns)})"),
        "Family:": model.dist.name.capitalize(),
        "Link:": model.dist.link_name,
        "Method:": res.method if res.method in ("REML", "ML", "Laplace") else
        (f"AGQ ({res.nagq} nodes)" if res.method == "AGQ" else res.method),
        "Dependent Variable:": model.endog_name,
        "Group variable:": model.group_name,
        "No. Observations:": fmt(res.nobs),
        "Rows dropped:": fmt(res.n_dropped),
        "No. Groups:": fmt(res.n_groups),
        "Group size min/mean/max:": f"{counts.min()} / {counts.mean():.1f} / {counts.max()}",
        "Converged:": "Yes" if res.converged else "No",
        "Singular fit:": "Yes" if res.singular else "No",
    }


def _effects(res):
    return "Random effects (per term)" if res.is_vector else "Random intercepts"


def notes(res, alpha):
    lines = []
    if res.n_dropped:
        reasons = ", ".join(f"{k} ({v})" for k, v in res.model.design.drop_reasons.items())
        lines.append(f"{res.n_dropped} rows dropped (listwise deletion: missing, non-numeric or infinite values"
                     + (f" in {reasons}" if reasons else "") + ").")
    if res.singular and res.is_vector:
        from ._results_vector import SINGULAR_NOTE

        lines.append(SINGULAR_NOTE)
    elif res.singular:
        lines.append("Singular fit: the random-intercept variance is at or near zero (the boundary); interpret the "
                     "ICC and variance components with caution, a GLM may be more appropriate.")
    if not res.converged:
        lines.append("The optimiser did not converge: " + res.optsummary.message)
    if res.model.dist.name == "gaussian" and res.model.dist.link_name == "identity":
        lines.append(f"{_effects(res)} are BLUPs; Std. Error = sqrt(conditional variance).")
    else:
        lines.append(f"{_effects(res)} are conditional modes; Std. Error = sqrt(inverse curvature of each group's "
                     "log integrand), a posterior-based SE.")
        source = "observed information (Hessian)" if res.cov_type == "hessian" else "PIRLS working weights"
        lines.append(f"Standard errors of fixed effects: {source}.")
    if res.se_note:
        lines.append(res.se_note + ".")
    lines.append("Confidence intervals: Wald, standard normal; they can be too narrow with few groups.")
    return lines


def make_summary(res, alpha=0.05, blup_rows=50):
    smry = summary2.Summary()
    smry.add_title("Generalized Linear Mixed Model Results")
    smry.add_dict(model_info(res), ncols=2)
    smry.add_df(titled(res.random_effects_table(), "Random Effects"), index=False)
    smry.add_df(titled(res.icc_table(), "ICC"), index=False)
    latent = res.latent_variance_table()
    if latent is not None:
        smry.add_df(titled(latent, "Latent-scale variance"), index=False)
    smry.add_df(titled(res.fixed_effects_table(alpha), "Fixed Effects"), index=False)
    smry.add_df(titled(res.model_fit_table(), "Model Fit"), index=False)
    blups = res.blup_table()
    shown = blups.head(blup_rows).set_index("Group")
    shown.index = shown.index.astype(str)
    smry.add_df(titled(shown, "BLUP: group"), index=False)
    if len(blups) > blup_rows:
        smry.add_text(f"... {len(blups) - blup_rows} more groups (res.blup_table() has all {len(blups)}).")
    for line in notes(res, alpha):
        smry.add_text(line)
    return smry
