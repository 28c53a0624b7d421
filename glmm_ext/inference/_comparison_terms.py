"""The test of one random-effect term of a fit with several terms: the likelihood ratio against the model
refitted without it."""
import warnings


def test_random_effect(res, term):
    """LRT of H0: term `term`'s covariance is 0, against the fit (the model refitted without the term, by the
    fit's own method: REML fits compared by REML, as lme4's anova(refit = FALSE), the fixed effects being
    the same).  df = the term's covariance parameters; p = 0.5 chi2_0 + 0.5 chi2_1 for a scalar term (Self
    & Liang 1987), else the conservative chi2_df with the 0.5 chi2_{df-1} + 0.5 chi2_df approximation."""
    from dataclasses import replace

    from scipy import stats

    from .._multiterm import fit_design
    from ._comparison import RandomEffectTest, boundary_pvalue

    keys = [t.key for t in res._terms]
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
        null = fit_design(reduced, reml=options.get("reml", True), nagq=options.get("nagq", 1),
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
