"""Command line: ``glmm-ext [data.csv] --formula ... --groups ...`` (no arguments: the bundled example)."""
import argparse
import json
import sys
import warnings

import numpy as np
import pandas as pd

from ._families import ALLOWED_LINKS, make_family
from ._validation import check_conf_level


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and exit code 2, never a traceback
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser():
    p = _Parser(prog="glmm-ext", description="Fit a random-intercept GLMM and print its tables. "
                "Without a data file, fits the bundled schools example (score ~ hours + ses, groups=school).")
    p.add_argument("data", nargs="?", help="CSV file with the data")
    p.add_argument("--formula", help='patsy formula, e.g. "y ~ x1 + x2", "succ + fail ~ x" or, with random '
                   'slopes, "y ~ x + (x | g)"')
    p.add_argument("--groups", help="grouping column (random intercept); optional when the formula has a term "
                   "such as (1 + x | g)")
    p.add_argument("--family", default="gaussian", help=f"one of {', '.join(ALLOWED_LINKS)} (default gaussian)")
    p.add_argument("--link", help="link function (default: the family's canonical link)")
    p.add_argument("--offset", help="offset column (on the linear-predictor scale)")
    p.add_argument("--exposure", help="exposure column (log link; log(exposure) is the offset)")
    p.add_argument("--conf-level", type=float, default=95.0, help="confidence level in percent, 50-99.99 (default 95)")
    p.add_argument("--nagq", type=int, default=1, help="1 = Laplace (default), >1 adaptive Gauss-Hermite nodes, "
                   "0 = PIRLS approximation")
    p.add_argument("--ml", action="store_true", help="Gaussian+identity: ML instead of REML")
    p.add_argument("--maxiter", type=int, default=100, help="maximum iterations (default 100)")
    p.add_argument("--tol", type=float, default=1e-6, help="convergence tolerance (default 1e-6)")
    p.add_argument("--cov-type", default="hessian", choices=("hessian", "pirls"), help="standard errors")
    p.add_argument("--blup-rows", type=int, default=50, help="BLUP rows printed (default 50)")
    p.add_argument("--blups", metavar="CSV", help="write the BLUP table")
    p.add_argument("--diagnostics", metavar="CSV", help="write the diagnostics table")
    p.add_argument("--json", metavar="FILE", help="write the estimates as JSON")
    p.add_argument("--progress", action="store_true", help="show the estimation stage on stderr")
    return p


def results_dict(res, alpha):
    ci = res.conf_int(alpha)
    out = {
        "family": res.model.dist.name, "link": res.model.dist.link_name, "method": res.method,
        "fe_params": res.fe_params.to_dict(), "bse": dict(zip(res.model.exog_names, map(float, res.bse))),
        "conf_level": round(100 * (1 - alpha), 4),
        "conf_int": {k: [float(ci.loc[k].iloc[0]), float(ci.loc[k].iloc[1])] for k in ci.index},
        "var_re": res.var_re, "scale": float(res.scale), "llf": res.llf, "llf_label": res.llf_label,
        "aic": res.aic, "bic": res.bic, "nobs": res.nobs, "n_groups": res.n_groups, "n_dropped": res.n_dropped,
        "converged": res.converged, "singular": res.singular, "icc": res.icc, "deff": res.deff,
    }
    if res.is_vector:  # random slopes
        out.update(_vector_dict(res))
        return out
    out["blups"] = {str(g): float(v) for g, v in zip(res.model.group_labels, res.blups)}
    out["blup_se"] = {str(g): float(v) for g, v in zip(res.model.group_labels, res.blup_se)}
    return out


def _has_bar_term(formula):
    return "|" in formula


def _vector_dict(res):
    """The random-slope entries of the JSON output: covariance, ICC(x) and per-term BLUPs by group."""
    names = list(res.cov_re.columns)
    table = res.icc_table()
    return {"cov_re": res.cov_re.to_dict(), "re_terms": names, "scale": float(res.scale),
            "icc_at": {k: (None if isinstance(v, str) else float(v)) for k, v in table["Value"].items()},
            "blups": {str(g): dict(zip(names, map(float, row))) for g, row in zip(res.model.group_labels, res.blups)},
            "blup_se": {str(g): dict(zip(names, map(float, row)))
                        for g, row in zip(res.model.group_labels, res.blup_se)}}


def run(args, out=None):
    from .datasets import load_schools

    out = sys.stdout if out is None else out
    parser = build_parser()
    ns = parser.parse_args(args)
    try:
        alpha = check_conf_level(ns.conf_level)
        family = make_family(ns.family, ns.link)
        if ns.data is None:
            data = load_schools()
            out.write("glmm_ext example: simulated schools data (60 schools, 1413 students; truth: Intercept 50, "
                      "hours 2.5, ses 4, school variance 25, residual variance 64; passed = score > 60)\n\n")
            jobs = [("score ~ hours + ses", "school", family)]
            if not args:  # the main job: the exact Gaussian fit, then a Binomial one (OR, latent scale)
                out.write("1. Test score, Gaussian (exact REML)\n")
                jobs.append(("passed ~ hours + ses", "school", make_family("binomial")))
            if ns.formula or ns.groups:
                jobs = [(ns.formula or jobs[0][0], ns.groups or "school", family)]
        else:
            if not ns.formula or not (ns.groups or _has_bar_term(ns.formula)):
                parser.error("a data file needs --formula and --groups (or a random-effects term such as "
                             "(1 + x | g) in the formula)")
            try:
                data = pd.read_csv(ns.data)
            except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
                parser.error(f"cannot read {ns.data}: {exc}")
            jobs = [(ns.formula, ns.groups, family)]
        for number, (formula, groups, fam) in enumerate(jobs, start=1):
            if number > 1:
                out.write(f"\n{number}. Passed (score > 60), Binomial logit (Laplace)\n")
            res = _fit_and_print(ns, data, formula, groups, fam, alpha, out)
        if ns.blups:
            res.blup_table().to_csv(ns.blups, index=False)
        if ns.diagnostics:
            res.diagnostics().to_csv(ns.diagnostics)
        if ns.json:
            with open(ns.json, "w") as fh:
                json.dump(results_dict(res, alpha), fh, indent=2, default=_json_default)
    except (ValueError, TypeError) as exc:
        parser.error(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return 0


def _fit_and_print(ns, data, formula, groups, family, alpha, out):
    """One fit with the command line's options; its summary and warnings go to `out`."""
    from .model import GLMM

    model = GLMM.from_formula(formula, data, groups=groups, family=family, offset=ns.offset, exposure=ns.exposure)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = model.fit(reml=not ns.ml, maxiter=ns.maxiter, tol=ns.tol, nagq=ns.nagq, cov_type=ns.cov_type,
                        progress=ns.progress)
    out.write(res.summary(alpha=alpha, blup_rows=ns.blup_rows).as_text() + "\n")
    for w in caught:
        out.write(f"Warning: {w.message}\n")
    return res


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return str(value)


def main(argv=None):
    return run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
