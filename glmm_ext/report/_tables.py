"""The report tables of a fit, as DataFrames (the content of summary() and of the notebook view)."""
import numpy as np
import pandas as pd
from scipy import special


#: residual variance on the latent scale that makes an ICC meaningful, by (family, link)
ICC_RESIDUAL = {("binomial", "logit"): (np.pi**2 / 3, "pi^2/3 (logistic threshold model)"),
                ("binomial", "probit"): (1.0, "1 (normal threshold model)"),
                ("binomial", "cloglog"): (np.pi**2 / 6, "pi^2/6 (Gumbel threshold model)")}
ICC_UNDEFINED = ("no theoretically grounded residual variance exists for this family and link, "
                 "so the ICC is not defined")


def level_label(alpha):
    """'95%' for alpha = 0.05, '97.5%' for 0.025 (at most four significant decimals)."""
    level = round(100.0 * (1.0 - alpha), 4)
    return f"{level:g}%"


def random_effects_table(res):
    """Component, Variance, Std.Dev.: the group row, and a Residual row where the family has one."""
    rows = [(res.group_name, res.var_re)]
    dist = res.model.dist
    if dist.name == "gaussian":
        rows.append(("Residual", res.scale))
    elif dist.name == "gamma":
        rows.append(("Residual (dispersion; Var = phi mu^2)", res.scale))
    df = pd.DataFrame(rows, columns=["Component", "Variance"])
    df["Std.Dev."] = np.sqrt(df["Variance"].to_numpy(dtype=float))
    return df.set_index("Component")


def dispersion_table(res):
    """The negative binomial (NB2) shape: alpha of Var = mu + alpha mu^2 and theta = 1/alpha; None otherwise."""
    if res.model.dist.name != "negativebinomial":
        return None
    return pd.DataFrame({"Value": [res.alpha, res.theta],
                         "Meaning": ["NB2: Var = mu + alpha mu^2", "1/alpha (glmmTMB's sigma, glmer.nb's theta)"]},
                        index=pd.Index(["alpha", "theta"], name="Parameter"))


def icc_table(res):
    """ICC = sigma_u^2 / (sigma_u^2 + sigma_e^2) and design effect 1 + (n_bar - 1) ICC, or N/A with the reason."""
    n_bar = res.nobs / res.n_groups
    icc, basis = res.icc, res.icc_basis
    if icc is None:
        return pd.DataFrame({"Value": ["N/A", "N/A"], "Note": [ICC_UNDEFINED, "needs the ICC"]},
                            index=pd.Index(["ICC", "Design effect"], name="Statistic"))
    return pd.DataFrame({"Value": [icc, 1.0 + (n_bar - 1.0) * icc],
                         "Note": [f"sigma_e^2 = {basis}", f"1 + (n_bar - 1) ICC, n_bar = {n_bar:.4g}"]},
                        index=pd.Index(["ICC", "Design effect"], name="Statistic"))


def latent_variance_table(res):
    """Residual variance on the latent (link) scale, Nakagawa, Johnson & Schielzeth (2017); None if undefined."""
    dist = res.model.dist
    key = (dist.name, dist.link_name)
    rows = []
    if key in ICC_RESIDUAL:
        value, formula = ICC_RESIDUAL[key]
        rows.append(("distribution-specific", value, formula))
    elif key == ("poisson", "log"):
        lam = res.latent_lambda
        rows.append(("lognormal approximation", np.log1p(1.0 / lam), f"ln(1 + 1/lambda), lambda = {lam:.5g}"))
        rows.append(("trigamma", float(special.polygamma(1, lam)), "trigamma(lambda)"))
    elif key == ("negativebinomial", "log"):
        lam, alpha = res.latent_lambda, res.alpha
        rows.append(("lognormal approximation", np.log1p(1.0 / lam + alpha),
                     f"ln(1 + 1/lambda + 1/theta), lambda = {lam:.5g}"))  # theta: the NB2 table
        rows.append(("trigamma", float(special.polygamma(1, 1.0 / (1.0 / lam + alpha))),
                     "trigamma((1/lambda + 1/theta)^-1)"))
    elif key == ("gamma", "log"):
        nu = 1.0 / res.scale
        rows.append(("lognormal approximation", np.log1p(res.scale), f"ln(1 + 1/nu), nu = 1/phi = {nu:.5g}"))
        rows.append(("trigamma", float(special.polygamma(1, nu)), "trigamma(nu)"))
    else:
        return None
    df = pd.DataFrame(rows, columns=["Method", "Latent residual variance", "Formula"]).set_index("Method")
    df["Random-intercept variance"] = res.var_re
    return df


def exp_label(dist):
    """OR for a logit link, IRR for Poisson with a log link, exp(Est.) for any other log link, else None."""
    if dist.link_name == "logit":
        return "OR"
    if dist.link_name == "log":
        return "IRR" if dist.name in ("poisson", "negativebinomial") else "exp(Est.)"
    return None


def fixed_effects_table(res, alpha=0.05):
    """Estimate, Std. Error, z, P>|z|, Wald CI at level 1 - alpha, and exponentiated columns where they apply."""
    ci = np.asarray(res.conf_int(alpha), float)  # validates the level
    label = level_label(alpha)
    df = pd.DataFrame({"Estimate": np.asarray(res.params, float), "Std. Error": np.asarray(res.bse, float),
                       "z": np.asarray(res.tvalues, float), "P>|z|": np.asarray(res.pvalues, float),
                       f"Lower {label}": ci[:, 0], f"Upper {label}": ci[:, 1]},
                      index=pd.Index(res.model.exog_names, name="Variable"))
    name = exp_label(res.model.dist)
    if name is not None:
        df[name] = np.exp(df["Estimate"])
        df[f"exp(Lower {label})"] = np.exp(df[f"Lower {label}"])
        df[f"exp(Upper {label})"] = np.exp(df[f"Upper {label}"])
    return df


def model_fit_table(res):
    """Log-likelihood (labelled by method), AIC, BIC, observations used, rows dropped, groups."""
    rows = [(res.llf_label, res.llf), ("AIC", res.aic), ("BIC", res.bic), ("Observations", res.nobs),
            ("Rows dropped", res.n_dropped), ("Groups", res.n_groups), ("Parameters (k)", res.k_params)]
    return pd.DataFrame({"Value": [v for _, v in rows]}, index=pd.Index([k for k, _ in rows], name="Metric"),
                        dtype=object)


def blup_table(res):
    """Group, Random Intercept, Std. Error (sqrt of the conditional variance), Rank (1 = largest)."""
    df = pd.DataFrame({"Group": res.model.group_labels, "Random Intercept": res.blups,
                       "Std. Error": res.blup_se})
    df["Rank"] = df["Random Intercept"].rank(ascending=False, method="min").astype(int)
    return df
