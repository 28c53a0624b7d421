"""Command line: ``glmm-ext [data.csv] --formula ... --groups ...`` (no arguments: the bundled example).

Formulas are always read in the safe mode (``formula_mode="safe"``): no code in them is run.  Group
labels written to CSV files that begin with ``= + - @``, a tab or a carriage return (OWASP's list) get a
leading ``'`` so that a spreadsheet does not read them as formulas.
"""
import argparse
import csv
import json
import os
import re
import sys
import textwrap
import warnings

import numpy as np
import pandas as pd

from .engine._families import ALLOWED_LINKS, make_family
from ._validation import check_conf_level


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and exit code 2, never a traceback
        self.exit(2, f"{self.prog}: error: {message}\n")


#: exit status when the fit ran but did not converge (or its standard errors are not finite); 2 = bad input
EXIT_NOT_CONVERGED = 3
EPILOG = ("exit status: 0 = fitted and converged; 2 = bad input or options (one line on stderr, nothing fitted); "
          f"{EXIT_NOT_CONVERGED} = the fit ran but did not converge or its standard errors are not finite "
          "(the tables are printed, with the reason on stderr).")


def build_parser():
    p = _Parser(prog="glmm-ext", description="Fit a GLMM (random intercept, or random slopes with "
                "(1 + x | g)) and print its tables. Without a data file, fits the bundled schools "
                "example (score ~ hours + ses, groups=school).", epilog=EPILOG)
    p.add_argument("data", nargs="?", help="CSV file with the data")
    p.add_argument("--formula", help='formula, e.g. "y ~ x1 + C(track)" or "succ + fail ~ x" (read in safe mode: '
                   'columns, numbers, C(), I() arithmetic, np.log/exp/sqrt/abs/log1p, center/standardize/scale); '
                   'random slopes as lme4 writes them, "y ~ x + (x | g)"')
    p.add_argument("--groups", help="grouping column (random intercept); optional when the formula has a "
                   "term such as (1 + x | g)")
    p.add_argument("--family", default="gaussian", help=f"one of {', '.join(ALLOWED_LINKS)} (default gaussian)")
    p.add_argument("--link", help="link function (default: the family's canonical link)")
    p.add_argument("--zi-formula", help='zero part (logit), glmmTMB\'s ziformula, e.g. "~ 1" or "~ x + (1 | g)"; with '
                   'a count family zero inflation, with truncated_poisson / truncated_nbinom2 / truncated_nbinom1 '
                   'a hurdle model')
    p.add_argument("--disp-formula", help='dispersion model (log link), glmmTMB\'s dispformula, e.g. "~ x"')
    p.add_argument("--offset", help="offset column (on the linear-predictor scale)")
    p.add_argument("--exposure", help="exposure column (log link; log(exposure) is the offset)")
    p.add_argument("--conf-level", type=float, default=95.0, help="confidence level in percent, 50-99.99 (default 95)")
    p.add_argument("--sep", help="CSV field separator (default: ',' or ';', whichever the header line uses)")
    p.add_argument("--decimal", default=".", help="decimal mark of the CSV numbers (default '.'; a column whose "
                   "values are numbers written with ',' is refused with a hint to give --decimal ',')")
    p.add_argument("--nagq", type=int, default=1, help="1 = Laplace (default), >1 adaptive Gauss-Hermite nodes, "
                   "0 = PIRLS approximation")
    p.add_argument("--ml", action="store_true", help="Gaussian+identity: ML instead of REML")
    p.add_argument("--maxiter", type=int, default=100, help="maximum iterations (default 100)")
    p.add_argument("--tol", type=float, default=1e-6, help="convergence tolerance (default 1e-6)")
    p.add_argument("--cov-type", default="hessian", choices=("hessian", "pirls"), help="standard errors")
    p.add_argument("--blup-rows", type=int, default=10, help="BLUP rows printed (default 10; --blups writes all)")
    p.add_argument("--blups", metavar="CSV", help="write the BLUP table")
    p.add_argument("--diagnostics", metavar="CSV", help="write the diagnostics table")
    p.add_argument("--json", metavar="FILE", help="write the estimates as JSON")
    p.add_argument("--progress", action="store_true", help="show the estimation stage on stderr")
    return p


def results_dict(res, alpha):
    ci = res.conf_int(alpha)
    names = res.model.exog_names
    labels = [str(g) for g in res.model.group_labels]
    out = {
        "family": res.model.dist.name, "link": res.model.dist.link_name, "method": res.method,
        "fe_params": res.fe_params.to_dict(), "bse": dict(zip(names, map(float, res.bse))),
        "zvalues": dict(zip(names, map(float, res.tvalues))), "pvalues": dict(zip(names, map(float, res.pvalues))),
        "conf_level": round(100 * (1 - alpha), 4),
        "conf_int": {k: [float(ci.loc[k].iloc[0]), float(ci.loc[k].iloc[1])] for k in ci.index},
        "var_re": res.var_re, "scale": float(res.scale), "alpha": res.alpha, "theta": res.theta,  # NB2; else None
        "llf": res.llf, "llf_label": res.llf_label,
        "aic": res.aic, "bic": res.bic, "nobs": res.nobs, "n_groups": res.n_groups, "n_dropped": res.n_dropped,
        "drop_reasons": {str(k): int(v) for k, v in res.model.design.drop_reasons.items()},
        "converged": res.converged, "singular": res.singular, "icc": res.icc, "deff": res.deff,
    }
    if getattr(res, "is_multi", False):  # several random-effect terms
        out.update(_terms_dict(res))
        return out
    if res._terms[0].z_names != ("Intercept",):  # random slopes
        out.update(_vector_dict(res))
        return out
    out["blups"] = dict(zip(labels, map(float, res.blups)))
    out["blup_se"] = dict(zip(labels, map(float, res.blup_se)))
    return out


def _formula_group(formula):
    """The grouping column named by the formula's random-effects term, e.g. (1 + x | g), or None."""
    from .formula._bars import parse_formula

    spec = parse_formula(formula) if formula else None
    return None if spec is None else spec.group


def _vector_dict(res):
    """The random-slope entries of the JSON output: covariance, ICC(x) and per-term BLUPs by group."""
    names = list(res.cov_re.columns)
    table = res.icc_table()
    return {"cov_re": res.cov_re.to_dict(), "re_terms": names, "scale": float(res.scale),
            "icc_at": {k: (None if isinstance(v, str) else float(v)) for k, v in table["Value"].items()},
            "blups": {str(g): dict(zip(names, map(float, row))) for g, row in zip(res.model.group_labels, res.blups)},
            "blup_se": {str(g): dict(zip(names, map(float, row)))
                        for g, row in zip(res.model.group_labels, res.blup_se)}}


# OWASP: what a spreadsheet may read as a formula.  The CSV files quote every text cell (QUOTE_NONNUMERIC):
# unquoted, a CR inside a label would end the row and start a cell of the next one (pandas quotes only '\n')
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _terms_dict(res):
    """The JSON entries of several random-effect terms: VarCorr rows, covariances and modes by term."""
    vc = res.vcomp
    return {"var_re": None, "vcomp": vc.where(vc.notna(), None).to_dict(orient="records"),
            "cov_re": {k: v.to_dict() for k, v in res.cov_re.items()},
            "blups": {k: {str(g): dict(zip(map(str, v.columns), map(float, row))) for g, row in zip(v.index, v.values)}
                      for k, v in res.random_effects.items()},
            "singular_terms": res.singular_terms}


def spreadsheet_safe(values):
    """Text labels beginning with = + - @, tab or CR get a leading ' (CSV formula injection); others unchanged."""
    return [f"'{v}" if isinstance(v, str) and v[:1] in FORMULA_PREFIXES else v for v in values]


def _check_writable(parser, paths):
    """Every output path can be written, before any fitting: one line and exit 2 otherwise."""
    for option, path in paths:
        if not path:
            continue
        folder = os.path.dirname(os.path.abspath(path))
        if os.path.isdir(path) or not os.path.isdir(folder) or not os.access(folder, os.W_OK) \
                or (os.path.exists(path) and not os.access(path, os.W_OK)):
            parser.error(f"{option} {path}: cannot write there (missing folder, a folder, or no permission)")


def _conf_level(parser, level):
    if 0 < level < 1:
        parser.error(f"--conf-level {level:g}: give a percentage, e.g. {100 * level:g}")
    return check_conf_level(level)


def _read_csv(parser, path, sep, decimal, groups):
    """The data file, its separator detected from the header line; the groups column read as text."""
    try:
        if sep is None:
            with open(path, encoding="utf-8-sig", errors="replace") as fh:
                header = fh.readline()
            sep = ";" if header.count(";") > header.count(",") else ","
        dtype = {groups: str} if groups else None
        data = pd.read_csv(path, sep=sep, decimal=decimal, dtype=dtype)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        parser.error(f"cannot read {path}: {str(exc).splitlines()[0]}")
    if data.shape[1] == 1 and sep != ";" and ";" in str(data.columns[0]):
        parser.error(f"{path} has one column; is it separated by ';'? Give --sep ';'")
    return data


_COMMA_NUMBER = re.compile(r"^\s*[-+]?(\d+,\d*|\d*,\d+)([eE][-+]?\d+)?\s*$")
_PLAIN_NUMBER = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")


def decimal_comma_columns(data, columns):
    """The text columns among `columns` whose every value is a number, some written with a decimal comma
    ("3,14"): read with decimal '.', they would become factors with a level per distinct number."""
    found = []
    for col in columns:
        if col not in data.columns or data[col].dtype.kind not in "OSU" and str(data[col].dtype) != "string":
            continue
        values = data[col].dropna().astype(str)
        if values.empty:
            continue
        comma = values.str.match(_COMMA_NUMBER)
        if comma.any() and (comma | values.str.match(_PLAIN_NUMBER)).all():
            found.append(col)
    return found


def _check_decimal_mark(parser, data, ns, formula, groups):
    """Refuse numbers written with a decimal comma when the file is read with '.' (suggest --decimal ',')."""
    if ns.decimal != ".":
        return
    from .formula._safe import formula_columns

    try:
        named = formula_columns(formula, list(data.columns))
        used = named.response + named.predictors
    except (ValueError, TypeError):
        used = list(data.columns)
    used += [c for c in (ns.offset, ns.exposure) if c]
    bad = decimal_comma_columns(data, [c for c in dict.fromkeys(used) if c != groups])
    if bad:
        example = str(data[bad[0]].dropna().astype(str).loc[lambda v: v.str.contains(",")].iloc[0]).strip()
        many = len(bad) > 1
        parser.error(f"column{'s' if many else ''} {', '.join(map(repr, bad))} hold{'' if many else 's'} "
                     f"numbers written with a decimal comma (e.g. {example!r}), which would be read as text (a "
                     "factor with a level per value); read the file with --decimal ','")


def _label_column(formula, groups):
    """The groups column, read as text so labels come back as written, unless the formula also uses it."""
    from .formula._safe import formula_columns

    try:
        named = formula_columns(formula, [groups])
    except (ValueError, TypeError):
        return groups
    return None if groups in named.predictors or groups in named.response else groups


def run(args, out=None):
    from .datasets import load_schools

    out = sys.stdout if out is None else out
    parser = build_parser()
    ns = parser.parse_args(args)
    if ns.blup_rows < 0:
        parser.error(f"--blup-rows must be 0 or more (got {ns.blup_rows})")
    _check_writable(parser, [("--json", ns.json), ("--blups", ns.blups), ("--diagnostics", ns.diagnostics)])
    try:
        alpha = _conf_level(parser, ns.conf_level)
        family = _cli_family(ns.family, ns.link)
        if _extended(ns, family) and (ns.blups or ns.diagnostics):
            parser.error("--blups and --diagnostics are not available with --zi-formula / --disp-formula / "
                         f"--family {ns.family}")
        if ns.data is None:
            data = load_schools()
            out.write(textwrap.fill("glmm_ext example: simulated schools data (60 schools, 1413 students; truth: "
                                    "Intercept 50, hours 2.5, ses 4, school variance 25, residual variance 64; "
                                    "passed = score > 60)", width=90) + "\n\n")
            jobs = [("score ~ hours + ses", "school", family)]
            if not args:  # the main job: the exact Gaussian fit, then a Binomial one (OR, latent scale)
                out.write("1. Test score, Gaussian (exact REML)\n")
                jobs.append(("passed ~ hours + ses", "school", make_family("binomial")))
            if ns.formula or ns.groups:
                jobs = [(ns.formula or jobs[0][0], ns.groups or "school", family)]
        else:
            groups = ns.groups or _formula_group(ns.formula)
            if not ns.formula or not groups:
                parser.error("a data file needs --formula and --groups (or a random-effects term such as "
                             "(1 + x | g) in the formula)")
            data = _read_csv(parser, ns.data, ns.sep, ns.decimal, _label_column(ns.formula, groups))
            _check_decimal_mark(parser, data, ns, ns.formula, groups)
            jobs = [(ns.formula, groups, family)]
        failed = []
        for number, (formula, groups, fam) in enumerate(jobs, start=1):
            if number > 1:
                out.write(f"\n{number}. Passed (score > 60), Binomial logit (Laplace)\n")
            res = _fit_and_print(ns, data, formula, groups, fam, alpha, out)
            reason = _not_trusted(res)
            if reason:
                failed.append(f"{formula}: {reason}")
        if ns.blups:
            table = res.blup_table()
            table["Group"] = spreadsheet_safe(table["Group"])
            table.to_csv(ns.blups, index=False, quoting=csv.QUOTE_NONNUMERIC)
        if ns.diagnostics:
            _diagnostics_frame(res, data).to_csv(ns.diagnostics, quoting=csv.QUOTE_NONNUMERIC)
        if ns.json:
            with open(ns.json, "w") as fh:
                json.dump(_finite_or_null(zi_results_dict(res, alpha) if hasattr(res, "zi_boundary") else
                                          results_dict(res, alpha)), fh, indent=2, default=_json_default,
                          allow_nan=False)
    except (ValueError, TypeError) as exc:
        parser.error(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    except OSError as exc:
        parser.error(f"cannot write: {exc}")
    if failed:
        sys.stderr.write(f"{parser.prog}: " + "; ".join(failed) + f" (exit status {EXIT_NOT_CONVERGED})\n")
        return EXIT_NOT_CONVERGED
    return 0


def _not_trusted(res):
    """Why the estimates cannot be used (not converged, non-finite standard errors), or None."""
    if not res.converged:
        message = getattr(res.optsummary, "message", "") or ""
        return "the fit did not converge" + (f" ({message})" if message else "")
    if not np.all(np.isfinite(np.asarray(res.bse, float))):
        return "the fit has non-finite standard errors"
    return None


def _diagnostics_frame(res, data):
    """diagnostics() with the group and response columns of the rows used in front."""
    diag = res.diagnostics()
    model = res.model
    front = {model.group_name: spreadsheet_safe(list(model.groups))}
    endog = model.data.orig_endog
    if getattr(endog, "ndim", 1) == 1:
        front[model.endog_name] = np.asarray(endog, float)
    else:
        for col in endog.columns:
            front[str(col)] = endog[col].to_numpy(dtype=float)
    return pd.concat([pd.DataFrame(front, index=diag.index), diag], axis=1)


EXTENDED_FAMILIES = ("nbinom1", "truncated_poisson", "truncated_nbinom2", "truncated_nbinom1")


def _cli_family(name, link):
    """make_family's names plus glmmTMB's nbinom1 / truncated_* (glmm_ext.families, log link)."""
    from . import families

    if name not in EXTENDED_FAMILIES:
        return make_family(name, link)
    if link not in (None, "log"):
        raise ValueError(f"--family {name} takes the log link only (got {link!r})")
    return {"nbinom1": families.NegativeBinomial1, "truncated_poisson": families.TruncatedPoisson,
            "truncated_nbinom2": families.TruncatedNegativeBinomial,
            "truncated_nbinom1": lambda: families.TruncatedNegativeBinomial("nb1")}[name]()


def _extended(ns, family):
    from .families import is_extended

    return bool(ns.zi_formula or ns.disp_formula or is_extended(family))


def _fit_and_print_zi(ns, data, formula, family, alpha, out):
    """A zero-inflated / hurdle / dispersion fit (random effects written in the formula)."""
    from .model import GLMM

    model = GLMM.from_formula(formula, data, family=family, offset=ns.offset, exposure=ns.exposure,
                              zi_formula=ns.zi_formula, disp_formula=ns.disp_formula, formula_mode="safe")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = model.fit(maxiter=max(ns.maxiter, 300))
    out.write(res.summary(alpha=alpha).as_text() + "\n")
    for w in caught:
        out.write(f"Warning: {w.message}\n")
    return res


def zi_results_dict(res, alpha):
    ci = res.conf_int(alpha=alpha)
    return {"family": res.family_name, "zero_part": res.zero_part, "method": res.llf_label, "nobs": res.nobs,
            "llf": res.llf, "aic": res.aic, "bic": res.bic, "converged": res.converged,
            "params": {k: float(v) for k, v in res.params.items()}, "bse": {k: float(v) for k, v in res.bse.items()},
            "conf_int": {k: [float(ci.loc[k, 0]), float(ci.loc[k, 1])] for k in ci.index},
            "zi_boundary": list(res.zi_boundary)}


def _fit_and_print(ns, data, formula, groups, family, alpha, out):
    """One fit with the command line's options; its summary and warnings go to `out`."""
    from .model import GLMM

    if _extended(ns, family):
        return _fit_and_print_zi(ns, data, formula, family, alpha, out)

    model = GLMM.from_formula(formula, data, groups=groups, family=family, offset=ns.offset, exposure=ns.exposure,
                              formula_mode="safe")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = model.fit(reml=not ns.ml, maxiter=ns.maxiter, tol=ns.tol, nagq=ns.nagq, cov_type=ns.cov_type,
                        progress=ns.progress)
    out.write(res.summary(alpha=alpha, blup_rows=ns.blup_rows, from_cli=True).as_text() + "\n")
    for w in caught:
        out.write(f"Warning: {w.message}\n")
    return res


def _finite_or_null(value):
    """NaN and infinities as JSON null (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_null(v) for v in value]
    if isinstance(value, (float, np.floating)) and not np.isfinite(value):
        return None
    return value


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
