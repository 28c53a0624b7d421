"""Tables and the summary of a zero-inflated / hurdle / dispersion fit (at most 100 columns)."""
import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.iolib.summary import Summary
from statsmodels.iolib.table import SimpleTable

FAMILY_TEXT = {"poisson": "Poisson", "nb2": "negative binomial (NB2, Var = mu + mu^2/theta)",
               "nb1": "negative binomial (NB1, Var = mu(1 + phi))", "gaussian": "Gaussian",
               "gamma": "Gamma (Var = phi mu^2)"}
DISP_TEXT = {"nb2": "log theta", "nb1": "log phi", "gaussian": "log sigma^2", "gamma": "log phi"}
PART_TITLE = ("Conditional model", "Zero-inflation model", "Dispersion model")


def coef_table(res, k, alpha=0.05):
    """Estimate, SE, z, p, CI and the exponentiated estimate with its CI (IRR / OR / dispersion)."""
    names = res.model.zdesign.names[k]
    p = list(res.model.prob.p)
    start = sum(p[:k])
    est = np.asarray(res._fit.theta[start:start + p[k]])
    cov = np.asarray(res.cov_params())
    se = np.sqrt(np.diag(cov))[start:start + p[k]]
    z = est / se
    pval = 2 * stats.norm.sf(np.abs(z))
    q = stats.norm.ppf(1 - alpha / 2)
    lo, hi = est - q * se, est + q * se
    lab = f"{100 * (1 - alpha):g}%"
    table = pd.DataFrame({"estimate": est, "std_err": se, "z": z, "pvalue": pval, f"ci_lower {lab}": lo,
                          f"ci_upper {lab}": hi}, index=pd.Index(names, name="term"))
    exp_name = None
    if k == 0 and res.family_name != "gaussian":
        exp_name = "IRR" if res.family_name in ("poisson", "nb2", "nb1") else "ratio"
    elif k == 1:
        exp_name = "OR"
    elif k == 2:
        exp_name = "exp"
    if exp_name:
        table[exp_name] = np.exp(est)
        table[f"{exp_name} ci_lower"] = np.exp(lo)
        table[f"{exp_name} ci_upper"] = np.exp(hi)
    return table


def re_table(res):
    """Per part and term: each z column's variance and SD (and correlations for a correlated term)."""
    rows = []
    for (part, group), cov in res.cov_re.items():
        sd = np.sqrt(np.clip(np.diag(cov.to_numpy()), 0, None))
        for i, name in enumerate(cov.index):
            corr = ""
            if i > 0:
                c = [cov.iloc[i, j] / (sd[i] * sd[j]) if sd[i] * sd[j] > 0 else np.nan for j in range(i)]
                corr = " ".join(f"{v:.3f}" for v in c)
            rows.append({"part": part, "group": group, "name": name, "variance": cov.iloc[i, i], "sd": sd[i],
                         "corr": corr})
    return pd.DataFrame(rows, columns=["part", "group", "name", "variance", "sd", "corr"])


def fit_table(res):
    d = res.model.zdesign
    groups = {}
    for st in d.structures:
        if st is not None:
            for t in st.terms:
                groups[t.group] = t.n_levels
    out = {"nobs": res.nobs, "n_params": res.k_params, "logLik": res.llf, "AIC": res.aic, "BIC": res.bic,
           "deviance": -2 * res.llf, "converged": res.converged, "method": res.llf_label,
           "ICC": "N/A (not defined for this family)"}
    for g, n in groups.items():
        out[f"groups: {g}"] = n
    return pd.Series(out, name="value", dtype=object)


def _fmt(v, digits=4):
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            return "NaN" if np.isnan(v) else str(v)
        return f"{v:.{digits}f}" if abs(v) < 1e5 else f"{v:.4g}"
    return str(v)


def _short(name, width=40):
    """A long term name shortened in the middle (both ends identify an interaction)."""
    return name if len(name) <= width else name[:width // 2 - 1] + ".." + name[-(width // 2 - 1):]


def _simple(table, title, cols):
    data = [[_fmt(table.iloc[i][c], 3 if c in ("z",) else 4) for c in cols] for i in range(len(table))]
    stubs = [_short(str(s)) for s in table.index]
    headers = [c.replace("ci_lower", "[").replace("ci_upper", "]") for c in cols]
    return SimpleTable(data, headers=headers, stubs=stubs, title=title)


def _part_title(res, k):
    return PART_TITLE[k] + {0: " (log link)" if res.family_name != "gaussian" else " (identity link)",
                            1: " (logit link: P(structural zero))" if res.zero_part == "zi"
                            else " (logit link: P(y = 0))", 2: f" ({DISP_TEXT.get(res.family_name, '')})"}[k]


def _notes(res):
    notes = [f"ICC: N/A for this family. Conditional-part exp(estimate) = rate ratio (IRR), zero-part exp = "
             f"odds ratio (OR). {res.nobs} rows" + (f", {res.n_dropped} dropped (missing values)." if res.n_dropped
                                                    else ".")]
    for why in res.zi_boundary:
        notes.append("WARNING boundary fit of the zero part: " + why)
    if res.singular:
        notes.append("WARNING boundary (singular) fit: a random-effects variance at or near zero.")
    if not res.converged:
        notes.append(f"WARNING not converged: {res._fit.message}")
    if not np.all(np.isfinite(np.diag(np.asarray(res.cov_params())))):
        notes.append("WARNING the Hessian is not positive definite: some standard errors are NaN.")
    return notes


def summary2(res, yname=None, xname=None, title=None, alpha=0.05, float_format="%.4f"):
    """statsmodels' summary2.Summary: model facts, one coefficient table per part (statsmodels' column names,
    the part in the first header), the random effects, the notes; `float_format` formats every number."""
    from statsmodels.iolib import summary2 as sm_summary2

    from ._display import check_float_format, fmt

    ff = check_float_format(float_format) or "%.4f"
    p = list(res.model.prob.p)
    if xname is not None and len(xname) != sum(p):
        raise ValueError(f"xname has {len(xname)} names; the coefficient tables have {sum(p)} rows (the "
                         "conditional, zero and dispersion fixed effects, in the order of params)")
    model = res.model
    zp = {"none": "none", "zi": "zero inflation", "hurdle": "hurdle (zero-truncated counts)"}[res.zero_part]
    info = {"Model:": "GLMM (zero part / dispersion)", "Family:": FAMILY_TEXT[res.family_name], "Zero part:": zp,
            "Dependent Variable:": str(yname or model.zdesign.endog_name), "No. Observations:": str(res.nobs),
            "Method:": res.llf_label, "Converged:": "Yes" if res.converged else "No",
            "Log-Likelihood:": ff % res.llf, "AIC:": ff % res.aic, "BIC:": ff % res.bic}
    smry = sm_summary2.Summary()
    smry.add_title(title or "Results: Generalized linear mixed model (zero part / dispersion)")
    smry.add_dict(info, ncols=2)
    lo, hi = f"[{alpha / 2:g}", f"{1 - alpha / 2:g}]"
    start = 0
    for k in range(3):
        if p[k] == 0:
            continue
        t = coef_table(res, k, alpha)
        names = list(t.index) if xname is None else [str(v) for v in xname[start:start + p[k]]]
        start += p[k]
        table = pd.DataFrame({"Coef.": t["estimate"].to_numpy(), "Std.Err.": t["std_err"].to_numpy(),
                              "z": t["z"].to_numpy(), "P>|z|": t["pvalue"].to_numpy(), lo: t.iloc[:, 4].to_numpy(),
                              hi: t.iloc[:, 5].to_numpy()})
        # formatted here: statsmodels' summary2 applies the first table's float_format to every table
        table = pd.DataFrame({c: [fmt(v, ff) for v in table[c]] for c in table.columns})
        table.insert(0, _part_title(res, k), names)
        smry.add_df(table, index=False)
    re = re_table(res)
    if len(re):
        for col in ("variance", "sd"):
            re[col] = [fmt(v, ff) for v in re[col]]
        smry.add_df(re.rename(columns={"part": "Random effects: part"}), index=False)
    for note in _notes(res):
        smry.add_text(note)
    return smry


def summary(res, alpha=0.05):
    """statsmodels Summary: model facts, one coefficient table per part, random effects, warnings."""
    model = res.model
    smry = Summary()
    zp = {"none": "none", "zi": "zero inflation", "hurdle": "hurdle (zero-truncated counts)"}[res.zero_part]
    left = [("Family:", FAMILY_TEXT[res.family_name]), ("Zero part:", zp), ("Formula:", str(model.formula)[:60]),
            ("zi_formula:", str(model.zi_formula)[:60]), ("disp_formula:", str(model.disp_formula or "~ 1")[:60])]
    right = [("No. obs:", str(res.nobs)), ("Log-Lik:", f"{res.llf:.4f}"), ("AIC:", f"{res.aic:.2f}"),
             ("BIC:", f"{res.bic:.2f}"), ("Converged:", str(res.converged)), ("Method:", res.llf_label)]
    rows = [[a[0], a[1], b[0], b[1]] for a, b in zip(left + [("", "")], right)]
    smry.tables.append(SimpleTable(rows, title="Generalized linear mixed model (zero part / dispersion)"))
    for k in range(3):
        if model.prob.p[k] == 0:
            continue
        t = coef_table(res, k, alpha)
        lab = f"{100 * (1 - alpha):g}%"
        cols = ["estimate", "std_err", "z", "pvalue", f"ci_lower {lab}", f"ci_upper {lab}"]
        extra = [c for c in t.columns if c not in cols][:1]
        title = _part_title(res, k)
        tcopy = t.rename(columns={f"ci_lower {lab}": "ci_lower", f"ci_upper {lab}": "ci_upper"})
        smry.tables.append(_simple(tcopy, title, ["estimate", "std_err", "z", "pvalue", "ci_lower", "ci_upper"]
                                   + extra))
    re = re_table(res)
    if len(re):
        data = [[r.part, str(r.group)[:18], str(r.name)[:18], _fmt(r.variance), _fmt(r.sd), r.corr[:20]]
                for r in re.itertuples()]
        smry.tables.append(SimpleTable(data, headers=["part", "group", "name", "variance", "sd", "corr"],
                                       title="Random effects"))
    notes = _notes(res)
    smry.add_extra_txt([_wrap(n) for n in notes])
    return smry


def _wrap(text, width=96):
    words, lines, line = text.split(), [], ""
    for w in words:
        if len(line) + len(w) + 1 > width:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    lines.append(line)
    return "\n".join(lines)
