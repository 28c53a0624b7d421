"""Random-intercept GLMMs on a Dask DataFrame: rows stay on the workers, only O(p^2) numbers travel.

``GLMM.from_formula(formula, ddf, groups=...)`` with a ``dask.dataframe.DataFrame`` returns a
`DaskGLMM`.  Its fit

1. drops rows with a missing value in a used column and shuffles the rows once by group, so every
   partition holds whole groups (the Laplace / AGQ log-likelihood is a sum over groups);
2. turns each partition into the engine's arrays (``GLMMData``, predictors scaled with the global
   means and SDs, one reduction) and keeps one ``MarginalLikelihood`` per partition in the memory
   of the worker that holds it (its conditional modes warm-start between calls there);
3. starts from a distributed GLM (Fisher scoring on per-partition sums X'WX and X'l1);
4. runs the in-memory engine's optimiser (`_glmm._start_theta`, `_optimize.minimize`), whose every
   objective, gradient and Hessian-column evaluation maps over the partitions and adds up their
   (value, gradient) pairs.

The estimates are those of the in-memory fit (same start, same optimiser; sums in another order).
Scheduling and transport are Dask's own: any ``distributed.Client`` (LocalCluster, dask-jobqueue,
dask-kubernetes, dask-cloudprovider ...) runs it.
"""
import time

import numpy as np
import pandas as pd
from scipy import linalg, stats

from ..engine import _kernels
from ..formula._design import Scaling
from ..engine._families import Distribution
from ..engine._glmm import SINGULAR_TOL, _start_theta, pirls_information
from ..engine._laplace import GLMMData, MarginalLikelihood
from ..engine._optimize import fd_columns, minimize
from ..engine._optsummary import OptSummary
from ..engine._segments import group_starts
from .._validation import check_family, check_fit_options, check_groups_and_size, check_response


def is_dask_frame(data):
    """True for a dask DataFrame (checked without importing dask)."""
    return type(data).__module__.startswith("dask") and hasattr(data, "npartitions")


# ---------------------------------------------------------------------------------- worker side
def _partition_arrays(frame, formula, names, group_col, family_name):
    """A partition (whole groups) -> (y, X unscaled, group labels, counts) sorted by group.

    patsy's DesignInfo does not pickle, so each partition evaluates the formula again; its columns
    must be those found on the head of the data (numeric predictors; fixed categories otherwise).
    """
    import patsy

    frame = frame.sort_values(group_col, kind="stable")
    y, X = patsy.dmatrices(formula, frame, NA_action="raise")
    name = y.design_info.column_names[0]
    if list(X.design_info.column_names) != list(names):
        raise ValueError(f"a partition gives the columns {X.design_info.column_names}, the head of the data "
                         f"{list(names)}: on a Dask DataFrame every categorical level must occur in its first "
                         "1000 rows (or code the predictors numerically)")
    y = np.asarray(y, float).reshape(-1)
    X = np.asarray(X, float)
    check_response(family_name, y, None, name, frame.index)
    labels, counts = np.unique(frame[group_col].to_numpy(), return_counts=True)
    return {"y": y, "X": X, "labels": labels, "counts": counts}


def _moments(part, center):
    """Column sums of X and of (X - center)^2, and min / max per column (for the global scaling)."""
    X = part["X"]
    if center is None:
        return len(X), X.sum(axis=0), X.min(axis=0, initial=np.inf), X.max(axis=0, initial=-np.inf)
    return ((X - center) ** 2).sum(axis=0)


def _labels(part):
    return part["labels"], part["counts"]


def _objective(part, scaling, dist, nagq):
    """The partition's MarginalLikelihood on the globally scaled predictors (lives on its worker)."""
    _kernels.THREADS = 1  # the workers are the parallelism: no kernel threads inside them
    X = np.asfortranarray(scaling.transform(part["X"]))
    y, n = part["y"], len(part["y"])
    m = np.broadcast_to(1.0, (n,))
    data = GLMMData(y=y, X=X, offset=np.broadcast_to(0.0, (n,)), m=m, const=dist.log_constant(y, m),
                    starts=group_starts(part["counts"]), counts=part["counts"])
    return MarginalLikelihood(dist, data, nagq=nagq)


def _with_nodes(objective, nagq):
    """An AGQ objective on the same partition, warm-started from the Laplace modes."""
    agq = MarginalLikelihood(objective.dist, objective.data, nagq=nagq)
    agq.u_warm = objective.u_warm.copy()
    return agq


def _evaluate(objective, theta, need_grad):
    with np.errstate(all="ignore"):
        return objective(theta, need_grad=need_grad)


def _glm_sums(objective, gamma):
    """Fisher scoring sums at gamma (no random effects): (sum log f, X'WX, X'l1, Pearson chi2)."""
    data, dist = objective.data, objective.dist
    with np.errstate(all="ignore"):
        eta = data.X @ gamma
        ll, l1, _, _ = dist.evaluate(data.y, eta, data.m, 1.0, data.const, order=1)
        w = dist.working_weights(eta, data.m, 1.0)
        mu = dist.mean(eta)
        pearson = float(np.sum((data.y - mu) ** 2 / dist.family.variance(mu)))
    return float(np.sum(ll)), data.X.T @ (data.X * w[:, None]), data.X.T @ l1, pearson


def _pirls_block(objective, theta):
    """PIRLS information of the partition at the modes (the start Hessian's beta block)."""
    md = objective.modes_at(theta)
    _, sigma, phi = objective.unpack(theta)
    data = objective.data
    d = md.d if np.all(md.d >= 0) else objective.dist.working_weights(md.eta, data.m, phi)
    return pirls_information(data.X, d, sigma, data.starts, data.counts)


def _final(objective, theta):
    """At the optimum: BLUPs by group label, working-weight information, separated rows."""
    with np.errstate(all="ignore"):
        md = objective.modes_at(theta)
        _, sigma, phi = objective.unpack(theta)
        data, dist = objective.data, objective.dist
        w = dist.working_weights(md.eta, data.m, phi)
        return {"blups": sigma * md.b, "blup_sd": sigma / np.sqrt(md.H),
                "info": pirls_information(data.X, w, sigma, data.starts, data.counts),
                "separated": dist.separated_rows(data.y, md.eta)}


# ---------------------------------------------------------------------------------- client side
class _Distributed:
    """The objective of `_optimize.minimize` as a sum over partitions (same interface as MarginalLikelihood)."""

    def __init__(self, client, parts, dist, p):
        self.client, self.parts, self.dist, self.p = client, parts, dist, p
        self.n_calls = 0

    @property
    def n_params(self):
        return self.p + 1 + int(self.dist.has_dispersion)

    def unpack(self, theta):
        gamma = theta[: self.p]
        phi = float(np.exp(theta[self.p + 1])) if self.dist.has_dispersion else 1.0
        return gamma, abs(float(theta[self.p])), phi

    def map(self, fn, *args):
        """fn(partition objective, *args) on the worker holding each partition; the results gathered."""
        futures = [self.client.submit(fn, part, *args, pure=False, workers=list(where), allow_other_workers=False)
                   for part, where in zip(self.parts, self.locations)]
        return self.client.gather(futures)

    def locate(self):
        who = self.client.who_has(self.parts)
        self.locations = [who[part.key] for part in self.parts]

    def __call__(self, theta, need_grad=True):
        self.n_calls += 1
        out = self.map(_evaluate, np.asarray(theta, float), need_grad)
        value = float(sum(f for f, _ in out))
        if not np.isfinite(value):
            return np.inf, np.full(self.n_params, np.nan)
        return value, (None if not need_grad else np.sum([g for _, g in out], axis=0))


class DaskGLMM:
    """A random-intercept GLMM whose rows live in a Dask DataFrame (see the module docstring).

    Parameters
    ----------
    formula : str
        patsy formula with numeric predictors, e.g. ``"y ~ x1 + x2"``.
    data : dask.dataframe.DataFrame
    groups : str
        The grouping column.
    family : statsmodels family instance, optional
    client : distributed.Client, optional
        Default: the current client (``distributed.default_client()``).
    """

    def __init__(self, formula, data, groups, family=None, client=None):
        import patsy
        from distributed import default_client

        if not isinstance(groups, str) or groups not in data.columns:
            raise ValueError(f"with a Dask DataFrame, groups must name one of its columns (got {groups!r})")
        self.family = check_family(family)
        self.dist = Distribution(self.family)
        if self.dist.name == "gaussian" and self.dist.link_name == "identity":
            raise ValueError("Gaussian + identity on a Dask DataFrame is not supported yet; use a Laplace family "
                             "or an in-memory DataFrame")
        self.client = client if client is not None else default_client()
        self.formula, self.group_name = formula, groups
        head = data.head(1000, npartitions=-1)
        y_info, x_info = (m.design_info for m in patsy.dmatrices(formula, head, NA_action="drop"))
        self.exog_names = list(x_info.column_names)
        self.endog_name = y_info.column_names[0]
        used = list(dict.fromkeys(_columns((y_info, x_info), data.columns) + [groups]))
        rows = data[used].dropna().shuffle(on=groups, method="tasks")  # every partition now holds whole groups
        frames = self.client.compute(rows.to_delayed())
        self._arrays = self.client.map(_partition_arrays, frames, formula=formula, names=self.exog_names,
                                       group_col=groups,
                                       family_name=self.dist.name, pure=False)
        del frames
        self._prepared = None

    # ---------------------------------------------------------------------------------------- setup
    def _prepare(self):
        """Global scaling, the per-partition objectives (kept on their workers), sizes and checks."""
        if self._prepared is not None:
            return self._prepared
        client = self.client
        sums = client.gather(client.map(_moments, self._arrays, center=None, pure=False))
        n = sum(s[0] for s in sums)
        total = np.sum([s[1] for s in sums], axis=0)
        lo, hi = np.min([s[2] for s in sums], axis=0), np.max([s[3] for s in sums], axis=0)
        center = total / n
        var = np.sum(client.gather(client.map(_moments, self._arrays, center=center, pure=False)), axis=0) / n
        scaling = _global_scaling(center, np.sqrt(var), lo, hi)
        labels = client.gather(client.map(_labels, self._arrays, pure=False))
        arrays = [a for a, (g, _) in zip(self._arrays, labels) if len(g)]  # shuffling may leave partitions empty
        counts = np.concatenate([c for _, c in labels])
        check_groups_and_size(n, len(self.exog_names) + 1 + int(self.dist.has_dispersion), counts, self.dist.name,
                              self.dist.link_name, self.group_name)
        parts = [client.submit(_objective, part, scaling, self.dist, 1, pure=False) for part in arrays]
        self._prepared = {"n": int(n), "scaling": scaling, "labels": np.concatenate([g for g, _ in labels]),
                          "counts": counts, "parts": parts}
        return self._prepared

    @property
    def nobs(self):
        return self._prepare()["n"]

    @property
    def n_groups(self):
        return len(self._prepare()["counts"])

    def _glm_start(self, objective, maxiter=50):
        """Fixed effects and dispersion of the GLM without random effects: Fisher scoring on partition sums."""
        p = objective.p
        gamma = np.zeros(p)
        value = -np.inf
        for _ in range(maxiter):
            out = objective.map(_glm_sums, gamma)
            new_value = sum(o[0] for o in out)
            if not np.isfinite(new_value) or new_value < value - 1e-9 * abs(value):
                raise FloatingPointError("the distributed GLM start left the family's support")
            value = new_value
            info, score = np.sum([o[1] for o in out], axis=0), np.sum([o[2] for o in out], axis=0)
            step = linalg.solve(info, score, assume_a="pos")
            gamma = gamma + step
            if float(score @ step) < 1e-12 * max(1.0, abs(value)):
                break
        out = objective.map(_glm_sums, gamma)
        scale = sum(o[3] for o in out) / (self.nobs - p)
        return gamma, (scale if np.isfinite(scale) and scale > 0 else 1.0)

    # ---------------------------------------------------------------------------------------- fit
    def fit(self, nagq=1, maxiter=100, tol=1e-6, cov_type="hessian"):
        """Maximum likelihood by the Laplace approximation (``nagq=1``) or AGQ, as `GLMM.fit`.

        Returns
        -------
        DaskGLMMResults
        """
        maxiter, tol, nagq = check_fit_options(maxiter, tol, nagq, cov_type)
        if nagq == 0:
            raise ValueError("nagq=0 is not available on a Dask DataFrame; use nagq=1 (Laplace) or more")
        t0 = time.perf_counter()
        prep = self._prepare()
        objective = _Distributed(self.client, prep["parts"], self.dist, len(self.exog_names))
        objective.locate()
        gamma0, scale0 = self._glm_start(objective)
        theta0 = _start_theta(objective, gamma0, scale0)
        p, k = objective.p, objective.n_params
        hess0 = np.zeros((k, k))
        hess0[:p, :p] = np.sum(objective.map(_pirls_block, theta0), axis=0)
        block = fd_columns(objective, theta0, range(p, k))
        hess0[:, p:], hess0[p:, :] = block, block.T
        theta, f, hess, iters, decrement, message = _minimized(minimize(objective, theta0, hess0, maxiter, tol))
        if nagq > 1:
            objective.parts = [self.client.submit(_with_nodes, part, nagq, workers=list(where), pure=False)
                               for part, where in zip(objective.parts, objective.locations)]
            objective.locate()
            theta, f, hess, more, decrement, message = _minimized(
                minimize(objective, theta, hess, maxiter, tol, central=False, quasi_newton=False))
            iters += more
        converged = bool(decrement < tol) and iters <= maxiter
        final = objective.map(_final, theta)
        _, sigma, phi = objective.unpack(theta)
        singular = sigma < SINGULAR_TOL
        keep = [j for j in range(k) if not (singular and j == p)]
        try:
            cov = linalg.inv(linalg.cholesky(hess[np.ix_(keep, keep)], lower=True))
            cov = (cov.T @ cov)[:p, :p]
        except (linalg.LinAlgError, ValueError):
            cov = linalg.inv(np.sum([o["info"] for o in final], axis=0))
        separated = sum(o["separated"] for o in final)
        if separated:
            converged, message = False, f"complete or quasi-complete separation in {separated} rows"
        R = prep["scaling"].matrix
        opt = OptSummary(method=f"BFGS + Newton ({'Laplace' if nagq == 1 else f'AGQ, {nagq} nodes'}), Dask",
                         nagq=nagq, maxiter=maxiter, tol=tol, initial=theta0, final=theta, n_iterations=iters,
                         n_evaluations=objective.n_calls, objective=f, newton_decrement=float(decrement),
                         converged=converged, message=message or ("converged" if converged else "not converged"),
                         seconds=time.perf_counter() - t0)
        blups = pd.DataFrame({"blup": np.concatenate([o["blups"] for o in final]),
                              "se": np.concatenate([o["blup_sd"] for o in final])}, index=prep["labels"]).sort_index()
        return DaskGLMMResults(self, beta=R @ theta[:p], cov=R @ cov @ R.T, var_re=sigma * sigma, scale=phi,
                               llf=-f, converged=converged, singular=singular, opt=opt, blups=blups)


def _minimized(result):
    """(x, f, Hessian, iterations, decrement, message) from `_optimize.minimize`'s result (tuple or object)."""
    if isinstance(result, tuple):
        x, f, _, hess, iterations, decrement, message = result
        return x, f, hess, iterations, decrement, message
    return result.x, result.f, result.hess, result.iterations, result.decrement, result.message


def _global_scaling(center, sd, lo, hi):
    """`formula._design.make_scaling` from global moments: a constant non-zero column is the intercept."""
    constant = np.flatnonzero((lo == hi) & (lo != 0))
    k0 = int(constant[0]) if constant.size else -1
    scale = np.where(sd > 0, sd, 1.0) if k0 >= 0 else np.sqrt(sd**2 + center**2)
    scale = np.where(scale > 0, scale, 1.0)
    center = center.copy() if k0 >= 0 else np.zeros_like(center)
    if k0 >= 0:
        center[k0], scale[k0] = 0.0, lo[k0]
    return Scaling(center, scale, k0)


def _columns(infos, columns):
    """Data columns named in the formula's factors (e.g. x1 in np.log(x1))."""
    import ast

    names = set()
    for info in infos:
        for term in info.terms:
            for factor in term.factors:
                tree = ast.parse(factor.code, mode="eval")
                names.update(n.id for n in ast.walk(tree) if isinstance(n, ast.Name))
    return [c for c in columns if c in names]


class DaskGLMMResults:
    """Estimates of a `DaskGLMM` fit, with the names of `GLMMResults` (fe_params, bse_fe, pvalues, ...)."""

    def __init__(self, model, beta, cov, var_re, scale, llf, converged, singular, opt, blups):
        self.model = model
        names = model.exog_names
        self.fe_params = pd.Series(beta, index=names)
        self.cov_params_fe = pd.DataFrame(cov, index=names, columns=names)
        self.bse_fe = pd.Series(np.sqrt(np.diag(cov)), index=names)
        self.params, self.bse = self.fe_params, self.bse_fe
        self.tvalues = self.fe_params / self.bse_fe
        self.pvalues = pd.Series(2.0 * stats.norm.sf(np.abs(self.tvalues)), index=names)
        self.var_re, self.scale, self.llf = float(var_re), float(scale), float(llf)
        self.cov_re = pd.DataFrame([[self.var_re]], index=[model.group_name], columns=[model.group_name])
        self.converged, self.singular, self.optsummary = bool(converged), bool(singular), opt
        self.nobs, self.n_groups = model.nobs, model.n_groups
        self.k_params = len(names) + 1 + int(model.dist.has_dispersion)
        self.aic = -2.0 * self.llf + 2.0 * self.k_params
        self.bic = -2.0 * self.llf + np.log(self.nobs) * self.k_params
        self._blups = blups

    @property
    def random_effects(self):
        """Conditional modes (BLUPs) by group label, as `GLMMResults.random_effects` (label -> Series)."""
        return {label: pd.Series([value], index=["Group"]) for label, value in self._blups["blup"].items()}

    @property
    def random_effects_se(self):
        """Conditional SDs of the random intercepts by group label."""
        return self._blups["se"].rename("se")

    def conf_int(self, alpha=0.05):
        z = stats.norm.ppf(1.0 - alpha / 2.0)
        return pd.DataFrame({0: self.fe_params - z * self.bse_fe, 1: self.fe_params + z * self.bse_fe})

    def summary(self):
        table = pd.DataFrame({"Coef.": self.fe_params, "Std.Err.": self.bse_fe, "z": self.tvalues,
                              "P>|z|": self.pvalues})
        head = (f"GLMM ({self.model.dist.name}, {self.model.dist.link_name}) on Dask: {self.nobs:,} rows, "
                f"{self.n_groups:,} groups; log-likelihood {self.llf:.4f}; var_re {self.var_re:.6g}; "
                f"converged {self.converged}")
        return head + "\n" + table.to_string()
