"""Mutation check, run on demand (not in CI, not collected by pytest):  python tests/mutation.py [name ...]

Applies plausible bugs to the package one at a time (each: file, exact old text, new text), runs the
tests on each and reports which mutants SURVIVE (the tests stay green) — none should.  A mutant whose
old text is gone (the code changed since it was written) is reported "not applicable": update it.
The package file is restored after every mutant, whatever happens (try/finally).

Options: ``--list`` prints the mutants; ``--timeout S`` per mutant (default 300 s); ``--files`` the test files to
run instead of DEFAULT_TESTS (e.g. only the file that should kill the chosen mutants); names select mutants.
"""
import argparse
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTEST = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-W", "ignore"]
# the fast files that read the numbers users see (CLI and plot tests start subprocesses: slow, not needed)
DEFAULT_TESTS = ["tests/test_tables_values.py", "tests/test_tables_r.py", "tests/test_tables_api.py",
                 "tests/test_fitting_paths.py", "tests/test_fitting_input.py", "tests/test_fitting_bruteforce.py",
                 "tests/test_fitting_properties.py", "tests/test_reference_gaussian.py", "tests/test_reference_glmm.py",
                 "tests/test_docs.py", "tests/test_inference_bounds.py", "tests/test_formula_safe.py",
                 "tests/test_cli_output.py", "tests/test_engine_newton.py", "tests/test_engine_derivatives.py",
                 "tests/test_engine_modes.py", "tests/test_engine_start.py", "tests/test_engine_optimize.py",
                 "tests/test_engine_mixed.py"]

# (name, file, old text, new text)
MUTANTS = [
    # ---- the five of issue 16
    ("deff uses n_bar, not n_bar - 1 (ICC table)", "glmm_ext/report/_tables.py",
     "[icc, 1.0 + (n_bar - 1.0) * icc]", "[icc, 1.0 + n_bar * icc]"),
    ("exp(Upper) from the lower bound", "glmm_ext/report/_tables.py",
     'df[f"exp(Upper {label})"] = np.exp(df[f"Upper {label}"])',
     'df[f"exp(Upper {label})"] = np.exp(df[f"Lower {label}"])'),
    ("BLUP SE from the expected (Fisher) curvature", "glmm_ext/engine/_glmm.py",
     "modes=sigma * md.b, mode_sd=sigma / np.sqrt(md.H), converged=converged",
     "modes=sigma * md.b, mode_sd=sigma / np.sqrt(1.0 + sigma * sigma * group_sums(dist.working_weights("
     "md.eta, data.m, phi), data.starts)), converged=converged"),
    ("n_dropped counts reasons, not rows (formula)", "glmm_ext/formula/_data.py",
     "groups=groups, offset=off, n_dropped=len(dropped),",
     "groups=groups, offset=off, n_dropped=sum(reasons.values()),"),
    ("Poisson latent trigamma at lambda + 1", "glmm_ext/report/_tables.py",
     'float(special.polygamma(1, lam)), "trigamma(lambda)"',
     'float(special.polygamma(1, lam + 1.0)), "trigamma(lambda)"'),
    # ---- ones the 0.1.0 suite already caught
    ("binomial coefficient dropped", "glmm_ext/engine/_families.py",
     "return special.gammaln(m + 1.0) - special.gammaln(k + 1.0) - special.gammaln(m - k + 1.0)",
     "return np.zeros_like(k)"),
    ("REML uses n instead of n - p", "glmm_ext/engine/_lmm.py", "        dof = n - p\n", "        dof = n\n"),
    ("group sums off by one", "glmm_ext/engine/_segments.py",
     "return np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.intp)",
     "return np.concatenate(([0], np.cumsum(counts)[:-1] + 1)).astype(np.intp)"),
    ("wrong Gauss-Hermite rule", "glmm_ext/engine/_gausshermite.py",
     "z, w = np.polynomial.hermite.hermgauss(k)", "z, w = np.polynomial.hermite_e.hermegauss(k)"),
    # ---- ICC rules
    ("logit latent variance pi^2/6", "glmm_ext/report/_tables.py",
     '("binomial", "logit"): (np.pi**2 / 3,', '("binomial", "logit"): (np.pi**2 / 6,'),
    ("probit latent variance pi^2/3", "glmm_ext/report/_tables.py",
     '("binomial", "probit"): (1.0,', '("binomial", "probit"): (np.pi**2 / 3,'),
    ("ICC = var_re / residual", "glmm_ext/results.py",
     "self.var_re / (self.var_re + entry[0])", "self.var_re / entry[0]"),
    ("ICC given for Gaussian-log", "glmm_ext/results.py",
     'if dist.name == "gaussian" and dist.link_name == "identity":\n            return self.scale',
     'if dist.name == "gaussian":\n            return self.scale'),
    ("deff attribute uses n_bar", "glmm_ext/results.py",
     "1.0 + (self.nobs / self.n_groups - 1.0) * self.icc", "1.0 + (self.nobs / self.n_groups) * self.icc"),
    # ---- latent-scale variances
    ("Poisson lambda without sigma^2/2", "glmm_ext/results.py",
     "np.exp(eta + 0.5 * var)", "np.exp(eta + var)"),
    ("Poisson lognormal ln(1/lambda)", "glmm_ext/report/_tables.py",
     "np.log1p(1.0 / lam), f\"ln(1 + 1/lambda)", "np.log(1.0 / lam), f\"ln(1 + 1/lambda)"),
    ("Gamma lognormal ln(1 + nu)", "glmm_ext/report/_tables.py",
     "np.log1p(res.scale), f\"ln(1 + 1/nu)", "np.log1p(nu), f\"ln(1 + 1/nu)"),
    ("Gamma trigamma at phi", "glmm_ext/report/_tables.py",
     'float(special.polygamma(1, nu)), "trigamma(nu)"', 'float(special.polygamma(1, res.scale)), "trigamma(nu)"'),
    # ---- AIC / BIC / counts
    ("AIC with k instead of 2k", "glmm_ext/results.py",
     "-2.0 * self.llf + 2.0 * self.k_params", "-2.0 * self.llf + self.k_params"),
    ("BIC with log(groups)", "glmm_ext/results.py",
     "self.k_params * np.log(self.nobs)", "self.k_params * np.log(self.n_groups)"),
    ("k misses the dispersion", "glmm_ext/engine/_record.py",
     "n_params=len(beta) + 1 + int(dispersion)", "n_params=len(beta) + 1"),
    ("Gaussian k misses the residual variance", "glmm_ext/engine/_one_factor.py", "n_params=p + 2,", "n_params=p + 1,"),
    ("Rows dropped row shows the reasons", "glmm_ext/report/_tables.py",
     '("Rows dropped", res.n_dropped)', '("Rows dropped", sum(res.model.design.drop_reasons.values()))'),
    ("n_dropped counts reasons (arrays)", "glmm_ext/formula/_data.py",
     "return CleanData(endog=e, exog=x, groups=labels, offset=off, n_dropped=int(bad.sum()),",
     "return CleanData(endog=e, exog=x, groups=labels, offset=off, n_dropped=int(sum(reasons.values())),"),
    ("summary: observations before deletion", "glmm_ext/report/_display.py",
     '"No. Observations:": fmt(res.nobs)', '"No. Observations:": fmt(res.nobs + res.n_dropped)'),
    # ---- fixed effects table and intervals
    ("interval at alpha / 2", "glmm_ext/report/_tables.py",
     "ci = np.asarray(res.conf_int(alpha), float)", "ci = np.asarray(res.conf_int(alpha / 2), float)"),
    ("one-sided p-values", "glmm_ext/report/_tables.py",
     '"P>|z|": np.asarray(res.pvalues, float)', '"P>|z|": np.asarray(res.pvalues, float) / 2'),
    ("IRR label for every log link", "glmm_ext/report/_tables.py",
     'return "IRR" if dist.name in ("poisson", "negativebinomial") else "exp(Est.)"', 'return "IRR"'),
    ("level label from alpha", "glmm_ext/report/_tables.py",
     "level = round(100.0 * (1.0 - alpha), 4)", "level = round(100.0 * (1.0 - alpha / 2), 4)"),
    ("summary prints 3 decimals", "glmm_ext/report/_display.py",
     '        return f"{value:.4f}"\n    return f"{value:.4e}"',
     '        return f"{value:.3f}"\n    return f"{value:.4e}"'),
    # ---- random effects, BLUPs
    ("Std.Dev. column is the variance", "glmm_ext/report/_tables.py",
     'df["Std.Dev."] = np.sqrt(df["Variance"].to_numpy(dtype=float))',
     'df["Std.Dev."] = df["Variance"].to_numpy(dtype=float)'),
    ("BLUP rank ascending", "glmm_ext/report/_tables.py", "rank(ascending=False", "rank(ascending=True"),
    ("Gaussian BLUP SD without sqrt of the shrinkage", "glmm_ext/engine/_lmm.py",
     "blup_sd = np.sqrt(sigma2 * shrink)", "blup_sd = np.sqrt(sigma2) * shrink"),
    ("nagq=0 BLUP SE from the expected curvature", "glmm_ext/engine/_pirls.py",
     "        eta, b, H = md.eta, md.b, md.H\n",
     "        eta, b, H = md.eta, md.b, 1.0 + sigma * sigma * group_sums(dist.working_weights(md.eta, data.m, phi), "
     "data.starts)\n"),
    # ---- residuals and diagnostics
    ("Pearson residuals ignore the trials", "glmm_ext/engine/_families.py",
     "return (y - mu) * np.sqrt(m) / np.sqrt(self.variance(mu, phi))",
     "return (y - mu) / np.sqrt(self.variance(mu, phi))"),
    ("deviance residuals ignore the trials", "glmm_ext/engine/_families.py",
     "self.family_at(phi).resid_dev(y, mu, var_weights=m, scale=1.0)",
     "self.family_at(phi).resid_dev(y, mu, scale=1.0)"),
    ("fitted values without the group effect", "glmm_ext/report/_tables.py",
     'mu = model.dist.mean(model.predict(res.params, which="linear") + u)',
     'mu = model.dist.mean(model.predict(res.params, which="linear"))'),
    ("REML log-likelihood misses log|R|", "glmm_ext/engine/_one_factor.py",
     "(scaling.log_abs_det if reml else 0.0)", "(0.0 if reml else 0.0)"),
    ("predict: unseen groups get the mean effect", "glmm_ext/model.py",
     "        values[unseen] = 0.0\n", "        values[unseen] = np.nanmean(values)\n"),
    # ---- the Newton engine (issue 13)
    ("exact Hessian misses the b_thetatheta term of the rows", "glmm_ext/engine/_laplace_hessian.py",
     "w = -d[r0:r1] - to_rows(a[g0:g1], counts[g0:g1]) * q[r0:r1] - to_rows(e[g0:g1], counts[g0:g1]) * t[r0:r1]",
     "w = -d[r0:r1] - to_rows(a[g0:g1], counts[g0:g1]) * q[r0:r1]"),
    ("exact Hessian: sigma-lambda term with the wrong sign", "glmm_ext/engine/_laplace_hessian.py",
     "sl = np.sum(-b * L1 + (s * D + 0.5 * s2 * b * T) / H + c * (s * b * D - L1))",
     "sl = np.sum(b * L1 + (s * D + 0.5 * s2 * b * T) / H + c * (s * b * D - L1))"),
    ("logit fourth derivative without -2 d^2", "glmm_ext/engine/_kernels.py",
     "q -= (2.0 / m1) * d * d if np.ndim(m1) == 0 else 2.0 * d * d / m1", "q = q"),
    ("Gamma log-link modes with the Poisson sign", "glmm_ext/engine/_laplace.py",
     "alpha, beta, rho = -k * counts, -k * group_sums(y * np.exp(-eta_fixed), starts), -1.0",
     "alpha, beta, rho = -k * counts, -k * group_sums(y * np.exp(-eta_fixed), starts), 1.0"),
    ("GLM start: Pearson dispersion over n, not n - p", "glmm_ext/engine/_glm.py",
     "scale = sums.pearson / max(sums.n - p, 1)", "scale = sums.pearson / max(sums.n, 1)"),
    ("REML slope polish: ML's degrees of freedom", "glmm_ext/engine/_lmm.py",
     "    dof = stats.n - p if reml else stats.n\n    slope =", "    dof = stats.n\n    slope ="),
    ("a flat conditional mode is a Laplace point", "glmm_ext/engine/_laplace.py",
     "if np.any(H <= FLAT_MODE) or", "if np.any(H <= 0) or"),
    ("a flat conditional mode is a point of the general engine", "glmm_ext/engine/_mixed_glmm.py",
     "if curv is not None and np.min(curv) <= FLAT_MODE:", "if curv is not None and np.min(curv) <= 0.0:"),
    ("the general engine's flatness bound counts the rows of negative curvature with the wrong sign",
     "glmm_ext/engine/_mixed_glmm.py",
     "if 1.0 + float(neg @ weight) > floor:", "if 1.0 - float(neg @ weight) > floor:"),
    ("general-engine modes take every finite Newton step (no step halving)", "glmm_ext/engine/_mixed_glmm.py",
     "                eta_t, l1_t, d_t, h_t = self._point(eta_fixed, lams, phi, u_t)\n"
     "                if np.isfinite(h_t) and (h_t >= h - 1e-12 * (1.0 + abs(h)) or (dec < 1e-10 and alpha == 1.0)):",
     "                eta_t, l1_t, d_t, h_t = self._point(eta_fixed, lams, phi, u_t)\n"
     "                if np.isfinite(h_t):"),
    ("general-engine modes by the working weights where the observed curvature is positive definite",
     "glmm_ext/engine/_mixed_glmm.py",
     "                fac = Factor(self.layout, crossprods(self.layout, d), lams)\n",
     "                fac = Factor(self.layout, crossprods(self.layout, np.broadcast_to(self.dist.working_weights("
     "eta, self.m, phi), eta.shape) * 1.0), lams)\n"),
    # ---- issue 24: each interval bound, the safe-mode grammar, every spreadsheet prefix
    ("bootstrap upper bound at the 1 - alpha percentile", "glmm_ext/inference/_bootstrap.py",
     "upper = samples.quantile(1.0 - alpha / 2.0).to_numpy()", "upper = samples.quantile(1.0 - alpha).to_numpy()"),
    ("bootstrap lower bound at the alpha percentile", "glmm_ext/inference/_bootstrap.py",
     "lower = samples.quantile(alpha / 2.0).to_numpy()", "lower = samples.quantile(alpha).to_numpy()"),
    ("Wald SD upper end on the natural scale", "glmm_ext/inference/_intervals.py",
     "upper.append(np.exp(value + z * se))", "upper.append(np.exp(value) + z * se)"),
    ("random-slope Wald upper end with a narrower half-width", "glmm_ext/inference/_intervals_terms.py",
     "lo, hi = np.exp(centre - half), np.exp(centre + half)",
     "lo, hi = np.exp(centre - half), np.exp(centre + 0.9 * half)"),
    ("profile ends at the one-sided z", "glmm_ext/inference/_intervals.py",
     '["sd"] + tail, stats.norm.isf(alpha / 2.0))', '["sd"] + tail, stats.norm.isf(alpha))'),
    ("safe mode: an allowed attribute name called on any object", "glmm_ext/formula/_safe.py",
     'if not (isinstance(func.value, ast.Name) and func.value.id in ("np", "numpy")\n'
     '                    and func.attr in NUMPY_TRANSFORMS):',
     "if not func.attr in NUMPY_TRANSFORMS:"),
    ("safe mode: dunder names pass as columns", "glmm_ext/formula/_safe.py",
     "        if node.id not in self.columns:\n",
     '        if node.id not in self.columns and not node.id.startswith("__"):\n'),
    ("safe mode: any Treatment level accepted", "glmm_ext/formula/_safe.py",
     "if not (isinstance(level, ast.Constant) and isinstance(level.value, (str, int, float))):",
     "if isinstance(level, ast.Starred):"),
    ("CSV labels: tab not escaped", "glmm_ext/cli.py",
     'FORMULA_PREFIXES = ("=", "+", "-", "@", "\\t", "\\r")', 'FORMULA_PREFIXES = ("=", "+", "-", "@", "\\r")'),
    ("CSV labels: carriage return not escaped", "glmm_ext/cli.py",
     'FORMULA_PREFIXES = ("=", "+", "-", "@", "\\t", "\\r")', 'FORMULA_PREFIXES = ("=", "+", "-", "@", "\\t")'),
    ("CSV labels: '-' not escaped (the docs list it)", "glmm_ext/cli.py",
     'FORMULA_PREFIXES = ("=", "+", "-", "@", "\\t", "\\r")', 'FORMULA_PREFIXES = ("=", "+", "@", "\\t", "\\r")'),
    ("BLUP CSV without quoting (a CR inside a label starts a row)", "glmm_ext/cli.py",
     "table.to_csv(ns.blups, index=False, quoting=csv.QUOTE_NONNUMERIC)", "table.to_csv(ns.blups, index=False)"),
    ("diagnostics CSV labels not escaped", "glmm_ext/cli.py",
     "front = {model.group_name: spreadsheet_safe(list(model.groups))}",
     "front = {model.group_name: list(model.groups)}"),
]


def run_tests(files, timeout):
    """(status, seconds): 'killed by <test>' when a test fails, 'survived' when all pass, 'timeout' when too slow."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(PYTEST + files, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "killed (timeout)", time.perf_counter() - t0
    if proc.returncode == 0:
        return "survived", time.perf_counter() - t0
    failed = [line.split(" ", 1)[1].split(" - ")[0] for line in proc.stdout.splitlines()
              if line.startswith(("FAILED ", "ERROR "))]
    return (f"killed by {failed[0]}" if failed else "killed"), time.perf_counter() - t0


def apply_and_test(name, path, old, new, files, timeout):
    full = os.path.join(ROOT, path)
    with open(full) as fh:
        original = fh.read()
    count = original.count(old)
    if count == 0:
        return "not applicable", 0.0
    if count > 1:
        return f"not applicable (old text found {count} times)", 0.0
    try:
        with open(full, "w") as fh:
            fh.write(original.replace(old, new))
        return run_tests(files, timeout)
    finally:
        with open(full, "w") as fh:
            fh.write(original)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="run only mutants whose name contains one of these")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--files", nargs="+", help="test files to run (default: DEFAULT_TESTS)")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.names or any(n in m[0] for n in args.names)]
    if args.list:
        for m in chosen:
            print(f"{m[0]}  ({m[1]})")
        return 0
    files = [f for f in (args.files or DEFAULT_TESTS) if os.path.exists(os.path.join(ROOT, f))]
    status, seconds = run_tests(files, args.timeout)
    print(f"baseline (no mutant): {'green' if status == 'survived' else status} in {seconds:.0f} s")
    if status != "survived":
        print("the unmutated suite is not green: fix it first")
        return 2
    survivors, skipped = [], []
    width = max(len(m[0]) for m in chosen)
    for name, path, old, new in chosen:
        status, seconds = apply_and_test(name, path, old, new, files, args.timeout)
        print(f"{name:<{width}}  {path:<26}  {seconds:5.1f} s  {status}", flush=True)
        if status == "survived":
            survivors.append(name)
        elif status.startswith("not applicable"):
            skipped.append(name)
    killed = len(chosen) - len(survivors) - len(skipped)
    print(f"\n{len(chosen)} mutants: {killed} killed, {len(survivors)} survived, {len(skipped)} not applicable")
    for name in survivors:
        print(f"SURVIVED: {name}")
    for name in skipped:
        print(f"NOT APPLICABLE (update the mutant): {name}")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
