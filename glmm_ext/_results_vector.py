"""Results of a vector random effect (random slopes): covariance, BLUPs per term, ICC(x), report tables.

ICC(x) follows the course seed: with z(x) the random-effects row at covariate value x (1 for the
intercept, x for a slope), Var_between(x) = z(x)' Sigma z(x)  (= s0^2 + 2 x s01 + x^2 s1^2 for one
slope) and ICC(x) = Var_between(x) / (Var_between(x) + sigma_e^2), sigma_e^2 the residual variance
(Gaussian) or the latent one (pi^2/3 logit, 1 probit).
"""
import numbers
import warnings

import numpy as np
import pandas as pd


def term_names(res):
    return list(res._fit.re_names)


def cov_re(res):
    """q x q covariance of the random effects, rows and columns named by term."""
    names = term_names(res)
    return pd.DataFrame(res._fit.cov_re, index=names, columns=names)


def random_effects(res):
    """Group label -> Series of the group's effect per term (MixedLM's shape)."""
    names = term_names(res)
    return {label: pd.Series(row, index=names) for label, row in zip(res.model.group_labels, res.blups)}


def random_effects_se(res):
    """Conditional SD of each group's effect per term (groups x terms)."""
    return pd.DataFrame(res.blup_se, index=res.model.group_labels, columns=term_names(res))


def row_effects(res, Z=None, codes=None):
    """Each row's random part z_i' b_{g(i)} (the model's rows by default)."""
    design = res.model.design
    Z = design.Z if Z is None else Z
    codes = design.codes if codes is None else codes
    return np.einsum("nq,nq->n", Z, res.blups[codes])


def row_variances(res):
    """Var(z_i' b) = z_i' Sigma z_i for every row of the model."""
    Z = res.model.design.Z
    return np.einsum("nq,qr,nr->n", Z, res._fit.cov_re, Z)


def _slope_terms(names):
    return [n for n in names if n != "Intercept"]


def re_row(res, x):
    """z(x): 1 for the intercept, the given value for each slope term.

    `x` is a number (when there is one slope term) or a dict term -> value (missing slopes: 0).
    """
    names = term_names(res)
    slopes = _slope_terms(names)
    if isinstance(x, numbers.Real):
        if len(slopes) != 1:
            raise ValueError(f"icc_at: give a dict with a value for each slope term ({', '.join(slopes)})")
        x = {slopes[0]: float(x)}
    if not isinstance(x, dict):
        raise ValueError(f"icc_at: x must be a number or a dict term -> value (got {type(x).__name__})")
    unknown = set(x) - set(slopes)
    if unknown:
        raise ValueError(f"icc_at: {', '.join(map(str, sorted(unknown)))} is not a slope term "
                         f"(terms: {', '.join(slopes)})")
    return np.array([1.0 if n == "Intercept" else float(x.get(n, 0.0)) for n in names])


def var_between(res, x):
    """Var_between(x) = z(x)' Sigma z(x)."""
    z = re_row(res, x)
    return float(z @ res._fit.cov_re @ z)


def icc_at(res, x):
    """ICC(x) = Var_between(x) / (Var_between(x) + sigma_e^2); None where sigma_e^2 has no basis."""
    entry = res._icc_residual
    if entry is None:
        return None
    vb = var_between(res, x)
    return vb / (vb + entry[0])


def mean_x(res):
    """Mean of each slope term's column over the rows used."""
    names = term_names(res)
    Z = res.model.design.Z
    return {n: float(Z[:, k].mean()) for k, n in enumerate(names) if n != "Intercept"}


SINGULAR_NOTE = ("Singular fit: the random-effects covariance is at its boundary (a variance at zero or a correlation "
                 "of +-1); the data cannot support this many random terms. Interpret the variance components and "
                 "ICC(x) with caution; a simpler random part (|| or fewer slopes) may be more appropriate.")


def random_effects_table(res):
    """lme4's VarCorr print: Term, Variance, Std.Dev. and the correlations with the earlier terms; Residual."""
    names = term_names(res)
    cov = res._fit.cov_re
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


def icc_table(res):
    """ICC(x) at x = 0 and at the mean of each slope term (Var_between(x) with the covariance)."""
    from .report._tables import ICC_UNDEFINED

    zero_note = "x = 0" if "Intercept" in term_names(res) else "x = 0 (no random intercept: 0)"
    points = [("ICC(x = 0)", {}, zero_note)]
    means = mean_x(res)
    if means:
        text = ", ".join(f"{k} = {v:.4g}" for k, v in means.items())
        points.append(("ICC(x = mean)", means, f"x at its mean: {text}"))
    if res.icc_basis is None:
        return pd.DataFrame({"Value": ["N/A"] * len(points), "Note": [ICC_UNDEFINED] * len(points)},
                            index=pd.Index([p[0] for p in points], name="Statistic"))
    values = [icc_at(res, x) for _, x, _ in points]
    notes = [f"{note}; sigma_e^2 = {res.icc_basis}" if k == 0 else note for k, (_, _, note) in enumerate(points)]
    return pd.DataFrame({"Value": values, "Note": notes}, index=pd.Index([p[0] for p in points], name="Statistic"))


def blup_table(res):
    """Group, then per term its BLUP / conditional mode and conditional SD."""
    df = pd.DataFrame({"Group": res.model.group_labels})
    for k, name in enumerate(term_names(res)):
        df[name] = res.blups[:, k]
        df[f"Std. Error ({name})"] = res.blup_se[:, k]
    return df


def predict(res, rows, exog, which="mean", new_groups="zero"):
    """Predictions for `rows` (``_prediction.NewData``): the fixed part plus z_i' b_g for rows with a group.

    Without new data the model's rows and Z are used; new rows need ``exog`` as a DataFrame holding the
    random-effects terms' columns.  An unseen group gets 0 (warned) or a ValueError, as for one random
    intercept (``model.group_effects`` per term).
    """
    model = res.model
    params = np.asarray(res.params, float)
    if rows.X is None:
        eta, Z = model.predict(params, which="linear"), model.design.Z
    else:
        eta = model.predict(params, rows.X, offset=rows.offset, which="linear")
        Z = None
        if rows.groups is not None:
            if model.random_design is None or not model.random_design.design_infos \
                    or not isinstance(exog, pd.DataFrame):
                raise ValueError("predicting random slopes for new rows needs exog as a DataFrame holding the "
                                 "random-effects terms' columns (a model from a formula)")
            Z = model.random_design.matrix(exog)
    if rows.groups is not None:
        effects = np.zeros(len(eta))
        for k, name in enumerate(term_names(res)):
            with warnings.catch_warnings():
                if k:  # an unseen group is reported once, not once per term
                    warnings.simplefilter("ignore")
                effects += Z[:, k] * model.group_effects(rows.groups, dict(zip(model.group_labels, res.blups[:, k])),
                                                         len(eta), new_groups)
        eta = eta + effects
    return eta if which == "linear" else model.dist.mean(eta)
