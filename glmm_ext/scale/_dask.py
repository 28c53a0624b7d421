"""Random-intercept GLMMs on a Dask DataFrame: rows stay on the workers, only O(p^2) numbers travel.

``GLMM.from_formula(formula, ddf, groups=...)`` with a ``dask.dataframe.DataFrame`` returns a
`DaskGLMM`.  Its fit

1. shuffles the rows once by group, so every partition holds whole groups (every likelihood here is
   a sum over groups), then on each partition drops incomplete rows and evaluates the formula with
   the categorical levels of the whole data (`_dask_rows`); these arrays stay on their workers;
2. scales the predictors with the global means and SDs (one reduction), as in memory;
3. Gaussian + identity: exact REML / ML.  Each partition reduces its rows to the profile's sufficient
   statistics, compressed to O(p^2) numbers per distinct group size, and the in-memory profile
   (`engine._lmm.fit_lmm`) runs on them (`_dask_lmm`);
4. otherwise: the engine's GLM start (`engine._glm`) on sums over the partitions, then the in-memory
   engine's search (`_glmm._minimize_laplace`: Newton steps with the exact Hessian), whose every
   objective, gradient and Hessian evaluation maps over the partitions and adds up their sums.  One
   ``MarginalLikelihood`` per partition lives on its worker, where its conditional modes warm-start
   between calls.  With many groups the engine's pilot fit runs on the worker of the partition with
   most groups; the AGQ(9) check is estimated from groups of every partition.

The results (`_dask_results.DaskGLMMResults`) are a `GLMMResults`: the same attributes and report
tables; row-level outputs are lazy Dask objects computed on the workers on request.  Scheduling and
transport are Dask's own: any ``distributed.Client`` (LocalCluster, dask-jobqueue, dask-kubernetes,
dask-cloudprovider ...) runs it.
"""
import dataclasses
import functools
import importlib
import operator
import re
import time
import types
import warnings

import numpy as np
import pandas as pd

from ..engine._families import Distribution
from ..engine._glm import glm_start_from
from ..engine._one_factor import unscale_response
from ..engine._record import scalar_record
from ..engine._glmm import (LAPLACE_GAP, PILOT_ABOVE_GROUPS, SINGULAR_TOL, _initial_hessian,
                            _minimize_laplace, _snap_to_boundary, _start_theta, exact_newton, fixed_effects_cov,
                            flat_mode_message, gap_from_subset, laplace_note)
from ..engine._profile import GRID
from ..engine._optimize import minimize
from ..engine._optsummary import OptSummary
from ..engine._pirls import inverse_or_nan
from ..formula import _data
from ..formula._safe import check_safe, formula_columns, formula_names
from .._progress import Progress
from .._validation import check_family, check_fit_options
from . import _dask_rows as rows_
from . import _dask_setup as setup
from ._dask_lmm import fit_profile_dask


def is_dask_frame(data):
    """True for a dask DataFrame (checked without importing dask)."""
    return type(data).__module__.startswith("dask") and hasattr(data, "npartitions")


# ---------------------------------------------------------------------------------- client side
class _Distributed:
    """The objective of `_optimize.minimize` as a sum over partitions (same interface as MarginalLikelihood)."""

    def __init__(self, client, parts, dist, p):
        self.client, self.parts, self.dist, self.p = client, parts, dist, p
        self.n_calls = 0
        self.nagq = 1  # the partitions' objectives: Laplace until `with_nodes` makes them AGQ

    @property
    def has_exact_hessian(self):
        return self.nagq == 1 and self.dist.has_exact_hessian

    def hessian(self, theta):
        """The exact Hessian as the sum of the partitions' (`engine._laplace_hessian`), or None."""
        if not self.has_exact_hessian:
            return None
        parts = self.map(rows_.hessian, np.asarray(theta, float))
        return None if any(h is None for h in parts) else np.sum(parts, axis=0)

    def with_nodes(self, nagq):
        """The partitions' AGQ objectives with `nagq` nodes, warm-started from their Laplace modes."""
        self.parts = [self.client.submit(rows_.with_nodes, part, nagq, workers=list(where), pure=False)
                      for part, where in zip(self.parts, self.locations)]
        self.nagq = nagq
        self.locate()

    def pilot(self, gamma0, scale0, maxiter, tol, n_groups):
        """The engine's pilot fit on the partition with most groups (on its worker), its screen scaled to
        all `n_groups` groups."""
        sizes = self.map(rows_.n_groups)
        biggest = int(np.argmax(sizes))
        future = self.client.submit(rows_.pilot, self.parts[biggest], gamma0, scale0, maxiter, tol, pure=False,
                                    workers=list(self.locations[biggest]), allow_other_workers=False)
        found = future.result()
        return dataclasses.replace(found, screen=dataclasses.replace(found.screen, n_groups=n_groups))

    def agq_gap(self, theta, n_groups, max_groups=500):
        """AGQ(9) minus Laplace at theta as `engine._glmm.laplace_agq_gap`: estimated from about `max_groups`
        groups spread over the partitions when that decides, else summed over all groups."""
        if n_groups > max_groups:
            sizes = self.map(rows_.n_groups)
            share = [int(np.ceil(max_groups * size / n_groups)) for size in sizes]
            futures = [self.client.submit(rows_.agq_gaps, part, theta, k, pure=False, workers=list(where),
                                          allow_other_workers=False)
                       for part, where, k in zip(self.parts, self.locations, share)]
            gaps = np.concatenate(self.client.gather(futures))
            estimate, decided = gap_from_subset(gaps, n_groups)
            if decided:
                return estimate, len(gaps)
        return float(sum(self.map(rows_.agq_gaps, theta, None))), n_groups

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
        from distributed import wait

        wait(self.parts)  # a task still running has no holder yet
        who = self.client.who_has(self.parts)
        self.locations = [who[part.key] for part in self.parts]

    def __call__(self, theta, need_grad=True):
        self.n_calls += 1
        out = self.map(rows_.evaluate, np.asarray(theta, float), need_grad)
        value = float(sum(f for f, _ in out))
        if not np.isfinite(value):
            return np.inf, np.full(self.n_params, np.nan)
        return value, (None if not need_grad else np.sum([g for _, g in out], axis=0))


class DaskGLMM:
    """A random-intercept GLMM whose rows live in a Dask DataFrame (see the module docstring).

    Made by ``GLMM.from_formula(formula, ddf, groups=...)``; its `fit` returns the same results as
    the in-memory model's (`glmm_ext.scale._dask_results.DaskGLMMResults`).

    Parameters
    ----------
    formula : str
        patsy formula, e.g. ``"y ~ x1 + C(site)"`` or ``"successes + failures ~ x"``.
    data : dask.dataframe.DataFrame
    groups : column label
        The grouping column.
    family : statsmodels family instance, optional
        Default Gaussian (identity link: exact REML or ML).
    client : distributed.Client, optional
        Default: the current client (``distributed.default_client()``).
    offset, exposure, weights, var_weights, freq_weights : column label, optional
        Columns of `data`, with the in-memory meaning (exposure: log link only; weights: the Binomial
        trials of a proportion response).  Arrays cannot be aligned with a Dask DataFrame's partitions:
        add them as columns first.
    missing : {"drop", "raise", "none"}
        As in memory: "drop" removes incomplete rows (counted in ``n_dropped``).
    formula_mode : {"python", "safe"}
    eval_env : see `GLMM.from_formula`
        Names the formula takes from the caller's namespace are sent to the workers with it.
    """

    def __init__(self, formula, data, groups, family=None, client=None, offset=None, exposure=None, weights=None,
                 var_weights=None, freq_weights=None, missing="drop", formula_mode="python", eval_env=None):
        from distributed import default_client

        columns = list(data.columns)
        if not _data._is_column_key(groups, columns) or groups not in columns:
            raise ValueError(f"with a Dask DataFrame, groups must name one of its columns (got {groups!r})")
        self.family = check_family(family)
        self.dist = Distribution(self.family)
        _data._check_missing_option(missing)
        if formula_mode not in _data.FORMULA_MODES:
            raise ValueError(f"formula_mode must be 'python' or 'safe' (got {formula_mode!r})")
        if not isinstance(formula, str):
            raise TypeError(f"formula must be a string (got {type(formula).__name__})")
        if "|" in formula:
            raise ValueError("random slopes ((x | g) terms or re_formula) are not supported on a Dask DataFrame; fit "
                             "them in memory, or use a random intercept with groups=")
        stateful = [name for name in rows_.STATEFUL if re.search(rf"\b{name}\s*\(", formula)]
        if stateful:
            raise ValueError(f"{', '.join(stateful)}() in a formula would be computed on each partition, not on the "
                             "whole data; transform the column first (ddf.assign(...)), then use it in the formula")
        found = check_safe(formula, columns) if formula_mode == "safe" else formula_columns(formula, columns)
        if not found.response:
            raise ValueError(f"the response of {formula!r} names no column of the data")
        both = [c for c in found.response if c in found.predictors]
        if both:
            raise ValueError(f"the response column {both[0]!r} is also among the predictors of {formula!r}")
        extra = setup.row_columns({"offset": offset, "exposure": exposure, "weights": weights,
                                   "var_weights": var_weights, "freq_weights": freq_weights}, columns)
        setup.check_family_arguments(self.dist, extra, len(found.response))
        self.client = client if client is not None else default_client()
        self.formula, self.group_name, self.formula_mode = formula, str(groups), formula_mode
        self.vector_columns = {k: v for k, v in extra.items() if k in ("offset", "exposure")}
        env = _data.formula_environment(formula, data, formula_mode, eval_env)
        named = [c for c in formula_names(formula) if c in columns and c not in found.response]
        categorical = [c for c in found.predictors if c in found.categorical]
        numeric = [c for c in dict.fromkeys(found.predictors + named) if c not in categorical]
        self._spec = rows_.RowSpec(formula=formula, groups=groups, response=list(found.response), numeric=numeric,
                                   categorical=categorical, extra=extra, family=self.dist.name, missing=missing,
                                   env=env)
        self._category_order = {c: list(data[c].dtype.categories) for c in numeric + categorical
                                if isinstance(data[c].dtype, pd.CategoricalDtype)
                                and getattr(data[c].cat, "known", False)}
        self._index_meta = data._meta.index[:0]  # the row labels' type, for the lazy row-level outputs
        used = list(dict.fromkeys(list(found.response) + numeric + categorical + list(extra.values()) + [groups]))
        shuffled = data[used].shuffle(on=groups)  # every partition now holds whole groups
        frames = self.client.compute(shuffled.to_delayed())
        self._cleaned = self.client.map(rows_.clean_partition, frames, spec=self._spec, pure=False)
        del frames
        self._prepared = None
        self._fit_options = {}

    # ---------------------------------------------------------------------------------------- setup
    def _prepare(self):
        """Both row steps, global scaling and checks (once); the arrays stay on the workers."""
        if self._prepared is None:
            self.design, self._prepared = setup.prepare(self)
        return self._prepared

    def _release(self):
        """Drop the partitions' arrays and objectives (the cluster frees them); estimates are kept."""
        if self._prepared is not None:
            self._prepared["arrays"] = self._prepared["objectives"] = None
        self._cleaned = None

    def __getstate__(self):
        """A pickle keeps the model's description and sizes, not the cluster (no client, no rows); modules in
        the formula's namespace (``np``) by name."""
        env = self._spec.env
        modules = {k: v.__name__ for k, v in env.items() if isinstance(v, types.ModuleType)}
        spec = dataclasses.replace(self._spec, env={k: v for k, v in env.items() if k not in modules})
        state = dict(self.__dict__, client=None, _cleaned=None, _spec=spec, _modules=modules)
        if self._prepared is not None:
            state["_prepared"] = dict(self._prepared, arrays=None, objectives=None)
        return state

    def __setstate__(self, state):
        modules = state.pop("_modules", {})
        state["_spec"].env.update({k: importlib.import_module(v) for k, v in modules.items()})
        self.__dict__.update(state)

    # ------------------------------------------------------------------------------------ sizes
    @property
    def nobs(self):
        self._prepare()
        return self.design.nobs

    @property
    def n_groups(self):
        self._prepare()
        return self.design.n_groups

    @property
    def group_labels(self):
        self._prepare()
        return self.design.group_labels

    @property
    def exog_names(self):
        self._prepare()
        return list(self.design.exog_names)

    @property
    def endog_name(self):
        self._prepare()
        return self.design.endog_name

    @property
    def k_fe(self):
        return len(self.exog_names)

    @property
    def param_names(self):
        """Names of the model's parameter vector, as `GLMM.param_names`."""
        names = self.exog_names + [f"{self.group_name} SD"]
        if not self.dist.has_dispersion:
            return names
        return names + ["log alpha" if self.dist.name == "negativebinomial" else "log scale"]

    @property
    def data(self):
        """The statsmodels names a results wrapper attaches (no rows)."""
        return setup.Names(self.exog_names, self.endog_name)

    @property
    def random_design(self):
        return None

    @property
    def design_info(self):
        """None: the formula is evaluated on each partition, no specification is kept on the client."""
        return None

    @property
    def endog_names(self):
        return self.endog_name

    @property
    def k_constant(self):
        """1 with an intercept column, else 0 (statsmodels' name)."""
        self._prepare()
        return int(self.design.scaling.intercept >= 0)

    @property
    def endog(self):
        return self.design.y  # a NotImplementedError that says where the rows are

    @property
    def exog(self):
        return self.design.X

    @property
    def groups(self):
        return self.design.codes

    def loglike(self, params, *args, **kwargs):
        """Not on Dask: the fitted log-likelihood is the results' ``llf``."""
        raise NotImplementedError("loglike() at other parameters is not available for a Dask model (each value is "
                                  "a pass over the rows); the fitted log-likelihood is results.llf, and "
                                  "GLMM.from_formula(formula, ddf.compute(), ...) gives the likelihood functions")

    score = hessian = information = loglike

    def _random_intercept_only(self):
        return None

    def _objectives(self):
        """One Laplace objective per partition, kept on the partition's worker (made afresh for each fit, so
        that a refit starts its conditional modes where the first fit did)."""
        prep = self._prepare()
        if prep["arrays"] is None:
            raise ValueError("the rows of this Dask model were released (remove_data()); make the model again")
        prep["objectives"] = [self.client.submit(rows_.objective, part, self.design.scaling, self.dist, 1,
                                                 prep["response_scale"], pure=False) for part in prep["arrays"]]
        return prep["objectives"]

    def _glm_start(self, objective):
        """Fixed effects and dispersion of the GLM without random effects: the engine's start
        (`engine._glm.glm_start_from`) with every sum a map over the partitions."""
        prep, dist = self._prepare(), self.dist
        target = float(dist.link(np.clip(prep["mean_y"] / prep["response_scale"], 1e-6, None)))
        least_squares = tuple(np.sum(part, axis=0) for part in zip(*objective.map(rows_.least_squares, target)))

        def sums_at(gamma):
            return functools.reduce(operator.add, objective.map(rows_.glm_sums, gamma))

        def feasible(gamma):
            return bool(np.all(np.isfinite(gamma)) and all(objective.map(rows_.feasible, gamma)))

        def edge_ratio(gamma):
            parts = objective.map(rows_.eta_range, gamma)
            return min(r[0] for r in parts) / (sum(r[1] for r in parts) / sum(r[2] for r in parts))

        return glm_start_from(dist, sums_at, least_squares, feasible, objective.p, edge_ratio)

    # ---------------------------------------------------------------------------------------- fit
    def fit(self, reml=True, maxiter=100, tol=1e-6, nagq=1, cov_type="hessian", progress=False, callback=None,
            method=None, start_params=None, disp=None, full_output=None, **kwargs):
        """Fit on the cluster, as `GLMM.fit`: exact REML (default) / ML for Gaussian + identity, else
        maximum likelihood by the Laplace approximation (``nagq=1``) or adaptive Gauss-Hermite (``nagq > 1``).

        Parameters
        ----------
        reml, maxiter, tol, nagq, cov_type, progress, callback, method, start_params, disp, full_output
            As `GLMM.fit`; ``nagq=0`` is not available on Dask.

        Returns
        -------
        DaskGLMMResultsWrapper
            The same attributes, tables and summary as an in-memory fit's results (see
            `glmm_ext.scale._dask_results`).
        """
        from ..model import CONVERGENCE_ADVICE, SINGULAR_MESSAGE
        from .._validation import statsmodels_fit_options
        from ._dask_results import DaskGLMMResults, DaskGLMMResultsWrapper

        notes = statsmodels_fit_options(method, start_params, full_output, kwargs)
        if isinstance(reml, np.bool_):
            reml = bool(reml)
        if not isinstance(reml, bool):
            raise ValueError(f"reml must be True or False (got {reml!r})")
        maxiter, tol, nagq = check_fit_options(maxiter, tol, nagq, cov_type)
        gaussian_identity = self.dist.name == "gaussian" and self.dist.link_name == "identity"
        if nagq == 0 and not gaussian_identity:
            raise ValueError("nagq=0 is not available on a Dask DataFrame; use nagq=1 (Laplace) or more")
        self._prepare()
        self._fit_options = {"reml": reml, "maxiter": maxiter, "tol": tol, "nagq": nagq, "cov_type": cov_type}
        with Progress(enabled=progress or bool(disp), callback=callback, maxiter=maxiter) as monitor:
            t0 = time.perf_counter()
            if gaussian_identity:
                fit = fit_profile_dask(self, reml=reml, maxiter=maxiter, tol=tol, callback=monitor)
            else:  # Laplace, then AGQ: the in-memory optimiser with every evaluation a map over the partitions
                objective = _Distributed(self.client, self._objectives(), self.dist, len(self.design.exog_names))
                objective.locate()
                gamma0, scale0 = self._glm_start(objective)
                monitor("start values", 0, np.nan)
                pilot = (objective.pilot(gamma0, scale0, maxiter, tol, self.n_groups)
                         if self.n_groups > PILOT_ABOVE_GROUPS else None)
                theta0, hess0 = (None, None) if pilot is None else pilot.start(objective.p, self.n_groups)
                if theta0 is None:
                    theta0 = _start_theta(objective, gamma0, scale0)
                exact = exact_newton(objective)
                if hess0 is None and not exact:  # BFGS's start: the PIRLS information summed over the partitions
                    hess0 = _initial_hessian(objective, theta0, np.sum(objective.map(rows_.pirls_block, theta0), axis=0))
                res = _minimize_laplace(objective, theta0, maxiter, tol, monitor, hess0=hess0)  # as in memory
                iters = res.iterations
                if nagq > 1:
                    objective.with_nodes(nagq)
                    more = minimize(objective, res.x, res.hess, maxiter, tol, monitor, central=False,
                                    quasi_newton=False)
                    iters += more.iterations
                    res = more
                res = _snap_to_boundary(objective, res)
                theta, f, hess, decrement, message = res.x, res.f, res.hess, res.decrement, res.message
                monitor("standard errors", iters, f)
                method = "Newton, exact Hessian" if exact else "BFGS + Newton"
                method += " (Laplace)" if nagq == 1 else f", then Newton (AGQ, {nagq} nodes)"
                opt = OptSummary(method=f"{method}, Dask",
                                 nagq=nagq, maxiter=maxiter, tol=tol, initial=theta0, final=theta, n_iterations=iters,
                                 n_evaluations=objective.n_calls, objective=f, newton_decrement=float(decrement),
                                 converged=bool(res.converged), message=message,
                                 seconds=time.perf_counter() - t0,
                                 sigma_profile=_screened_profile(None if pilot is None else pilot.screen, theta,
                                                                 objective.p, -f))
                if pilot is not None:
                    opt.notes.append(f"start and sigma_u probe screen from a pilot fit on {pilot.screen.n_subset} "
                                     f"groups of one partition ({self.n_groups} groups in all)")
                fit = self._likelihood_output(objective, theta, hess, opt, cov_type)
            monitor("done", fit.opt.n_iterations, -fit.llf)
        fit.opt.notes = list(fit.opt.notes) + notes
        if any(fit.singular):
            warnings.warn(SINGULAR_MESSAGE, _singular_warning(), stacklevel=2)
        for note in fit.notes or []:
            warnings.warn(note, _laplace_warning(), stacklevel=2)
        if fit.separated_rows:
            from statsmodels.tools.sm_exceptions import PerfectSeparationWarning

            warnings.warn(f"{fit.opt.message}. A predictor (or combination) predicts the response perfectly; its "
                          "estimate and standard error are not meaningful.", PerfectSeparationWarning, stacklevel=2)
        if not fit.converged and not fit.separated_rows:
            from statsmodels.tools.sm_exceptions import ConvergenceWarning

            warnings.warn(f"the optimiser did not converge ({fit.opt.message}). {CONVERGENCE_ADVICE}",
                          ConvergenceWarning, stacklevel=2)
        return DaskGLMMResultsWrapper(DaskGLMMResults(self, fit, cov_type=cov_type))

    def _likelihood_output(self, objective, theta, hess, opt, cov_type):
        """At the optimum: modes, SEs, checks and the estimates in the data's units (as `fit_likelihood`)."""
        dist, p, k = self.dist, objective.p, objective.n_params
        final = objective.map(rows_.final, theta)
        _, sigma, phi = objective.unpack(theta)
        singular = sigma < SINGULAR_TOL
        keep = [j for j in range(k) if not (singular and j == p)]
        cov_pirls = inverse_or_nan(np.sum([o["info"] for o in final], axis=0))
        cov, se_note = fixed_effects_cov(hess, keep, p, cov_pirls, cov_type)
        separated = sum(o["separated"] for o in final)
        if separated:
            opt.converged, opt.message = False, f"complete or quasi-complete separation in {separated} rows"
        if not opt.converged and opt.nagq == 1:
            opt.message = flat_mode_message(np.concatenate([o["curvature"] for o in final]), dist) or opt.message
        opt.message = opt.message or ("converged" if opt.converged else "not converged")
        notes = []
        if opt.nagq == 1:
            gap, used = objective.agq_gap(theta, self.n_groups)
            opt.sigma_profile.update(agq9_gap=gap, agq9_gap_groups=used)
            if abs(gap) > LAPLACE_GAP:
                notes.append(laplace_note(gap, used, self.n_groups))
        blups, blup_sd = self._by_label([o["blups"] for o in final], [o["blup_sd"] for o in final])
        fit = scalar_record(beta=theta[:p].copy(), cov_beta=cov, sigma=sigma, scale=phi, llf=-opt.objective,
                            modes=blups, mode_sd=blup_sd, converged=opt.converged, opt=opt,
                            dispersion=dist.has_dispersion, cov_beta_pirls=cov_pirls, se_note=se_note,
                            separated_rows=separated, notes=notes)
        fit.groups = [self.design.group_name]
        return unscale_response(fit, self._prepare()["response_scale"], dist.link_name, dist.name,
                                self.design.n_obs, R=self.design.scaling.matrix)

    def _by_label(self, *per_partition):
        """Per-partition values by group (each partition's label order) -> arrays in sorted label order."""
        codes = np.concatenate(self._prepare()["part_codes"])
        out = []
        for values in per_partition:
            arranged = np.empty(len(codes))
            arranged[codes] = np.concatenate(values)
            out.append(arranged)
        return out

    # ------------------------------------------------------------------------------------ prediction
    def predict(self, params, exog=None, offset=None, groups=None, which="mean", blups=None, new_groups="zero",
                exposure=None):
        """`GLMM.predict` for new rows (``exog`` a matrix with the model's columns); the fitted rows are on the
        workers: use the results' ``predict()`` / ``fittedvalues`` for them."""
        from ..model import GLMM

        if exog is None:
            raise NotImplementedError("model.predict(params) on a Dask model needs the fitted rows, which stay on "
                                      "the workers; use results.predict() or results.fittedvalues (lazy)")
        return GLMM.predict(self, params, exog, offset=offset, groups=groups, which=which, blups=blups,
                            new_groups=new_groups, exposure=exposure)

    def group_effects(self, groups, blups, n, new_groups="zero"):
        """Each row's random intercept, as `GLMM.group_effects`."""
        from ..model import GLMM

        return GLMM.group_effects(self, groups, blups, n, new_groups)


def _screened_profile(screen, theta, p, llf):
    """optsummary.sigma_profile of a Dask fit: the sigma_u probes of the in-memory fit are not run on all
    rows here; a pilot's screen (many groups) tells which of them lie far below the optimum (estimates)."""
    sigma_hat = abs(float(theta[p]))
    grid = (0.0,) + tuple(sigma_hat * k for k in GRID)
    screened = [screen is not None and screen.skips(s) for s in grid]
    return {"sigma_hat": sigma_hat, "sigma": list(grid),
            "profile_llf": [screen.estimate(s, llf) if done else np.nan for s, done in zip(grid, screened)],
            "newton_steps": [0] * len(grid), "screened": screened, "restarted": False, "restart_sigma": np.nan,
            "llf_gain": 0.0, "agq9_gap": np.nan, "agq9_gap_groups": 0,
            "note": "on a Dask DataFrame no sigma_u probe is evaluated on all rows; NaN = not screened out by a pilot"}


def _singular_warning():
    from ..model import SingularFitWarning

    return SingularFitWarning


def _laplace_warning():
    from ..model import LaplaceApproximationWarning

    return LaplaceApproximationWarning
