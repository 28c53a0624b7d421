"""The GLMM model class: a thin statsmodels shell around the numerical engine."""
import warnings

import numpy as np
import pandas as pd
from statsmodels.base import model as sm_base
from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationWarning

from .formula import _bars

from .formula import _data, _plain
from .formula._design import build_design
from .formula._levels import categorical_env, categorical_frame
from .engine._differences import central_gradient, second_differences
from .engine._memory import fast_allocation
from .engine._mixed import fit_mixed
from .engine._one_factor import reml_loglik_function
from ._likelihood import dispersion_argument, negative_loglike, one_random_intercept, vector_names
from ._multiterm import check_several_weights, engine_arguments
from ._progress import Progress
from ._validation import check_family, check_fit_options, check_vector, statsmodels_fit_options
from .results import GLMMResults, GLMMResultsWrapper

CONVERGENCE_ADVICE = ("Try: increase maxiter (100 -> 500); relax tol (1e-6 -> 1e-4); very few groups (2-3) make "
                      "the variance hard to estimate; predictors on very different scales can upset the GLM start "
                      "values (they are scaled internally, but extreme cases remain).")


class LaplaceApproximationWarning(UserWarning):
    """The Laplace approximation is poor for these data: adaptive quadrature (``nagq``) differs by > 1."""


class SingularFitWarning(UserWarning):
    """A variance estimate at (or near) zero, or a correlation of +-1: the boundary of the parameter space."""


SINGULAR_MESSAGE = ("boundary (singular) fit: the random-intercept variance is at or near zero. The groups explain "
                    "little variation, or there are too few groups or rows to separate group-level from residual "
                    "variation. Interpret the ICC and variance components with caution; a GLM without random "
                    "effects may be more appropriate.")


SINGULAR_MESSAGE_VECTOR = ("boundary (singular) fit: the random-effects covariance is at its boundary (a variance at "
                           "zero or a correlation of +-1). The data cannot support this many random terms; consider "
                           "(x || g) or fewer random slopes, and interpret the variance components with caution.")


class GLMM(sm_base.LikelihoodModel):
    """Generalized linear mixed model with one random intercept (or a vector of random effects) per group.

    g(E[y | u]) = X beta + offset + u_group,  u_group ~ N(0, sigma_u^2);  with random slopes
    (``(1 + x | g)`` in the formula, or ``exog_re``) the group part is z' b_group, b_group ~ N(0, Sigma).

    Parameters
    ----------
    endog : array_like
        Response: one column, or for the Binomial family two columns (successes, failures).
    exog : array_like
        Fixed-effects design matrix (include a constant column for an intercept).
    groups : array_like
        Group label of each row.
    family : statsmodels family instance, optional
        ``sm.families.Gaussian()`` (default), ``Binomial``, ``Poisson`` or ``Gamma`` with an allowed link.
    offset, exposure : array_like, optional
        Offset added to the linear predictor; exposure adds log(exposure) (log links).
    weights : array_like, optional
        Binomial only: the number of trials when ``endog`` is a proportion (glmer's convention).
    var_weights, freq_weights : array_like, optional
        Prior weights with statsmodels GLM's meaning, for every family: ``var_weights`` v scale each
        row's dispersion to phi / v (lme4's ``weights``; for Binomial they multiply the trials, for
        Poisson and negative binomial the log density), ``freq_weights`` f count a row f times (the
        results' ``nobs`` is their sum).
    exog_re : array_like, optional
        Random-effects design (as MixedLM's): one column per correlated random term of each group,
        e.g. ``np.column_stack([np.ones(n), x])`` for a random intercept and slope.  In a formula
        write ``(1 + x | g)`` instead.
    missing : {"drop", "raise", "none"}
        "drop" (default) removes rows with a missing, infinite or non-numeric value and reports
        them (``n_dropped``, ``drop_reasons``); "raise" and "none" raise ValueError instead.

    A pandas Series given for ``groups``, ``offset``, ``exposure`` or ``weights`` is aligned on the
    index of ``endog`` (ValueError when it cannot be); arrays are used by position.

    Notes
    -----
    Gaussian with the identity link is fitted by exact REML (default) or ML; every other pair by
    maximum likelihood with the Laplace approximation (``nagq=1``) or adaptive Gauss-Hermite
    quadrature (``nagq > 1``).  Rows with a missing, non-numeric or infinite value are dropped.
    """

    _formula_max_endog = 2  # "successes + failures ~ x"

    def __init__(self, endog, exog, groups=None, family=None, offset=None, exposure=None, weights=None,
                 missing="drop", var_weights=None, freq_weights=None, **kwargs):
        self.family = check_family(family)
        prepared = kwargs.pop("_prepared", None)
        clean = kwargs.pop("_clean", None)  # a CleanData made elsewhere (e.g. formula._data.from_formula)
        formula_missing = kwargs.pop("missing_idx", None)
        checked = kwargs.pop("_finite", False)  # a plain formula's matrices: prepare's columns, already checked
        spec = {k: kwargs.pop(k) for k in ("formula", "model_spec", "design_info") if k in kwargs}
        self.formula_mode = kwargs.pop("_formula_mode", None)
        random = kwargs.pop("_random", None)  # _bars.RandomDesign of a formula with random slopes
        exog_re = kwargs.pop("exog_re", None)
        if exog_re is not None and random is None:  # the array interface's random slopes (MixedLM's exog_re)
            random = _bars.from_exog_re(exog_re, endog)
        unknown = set(kwargs) - {"hasconst"}
        if unknown:
            raise TypeError(f"GLMM got unexpected keyword arguments: {', '.join(sorted(unknown))}")
        if prepared is not None:  # from_formula: statsmodels evaluated the formula on prepared.frame
            clean = prepared.clean(endog, exog, formula_missing, finite=checked)
        elif clean is None:
            clean = _data.from_arrays(endog, exog, groups, offset=offset, exposure=exposure, weights=weights,
                                         missing=missing, var_weights=var_weights, freq_weights=freq_weights)
        elif "formula" in spec and clean.design_info is not None and not set(spec) & {"model_spec", "design_info"}:
            spec[_data.SPEC_KEY] = clean.design_info  # so that statsmodels' predict and wald_test_terms find it
        self.design = build_design(clean, self.family)
        if getattr(random, "is_multi", False):  # several random-effect terms (formula._terms.MultiDesign)
            self.design = _multi_design(self.design, random, clean)
        elif random is not None:
            self.design = _bars.attach_random(self.design, random, clean)
        self.random_design = random
        self.dist = self.design.dist
        endog_used = clean.endog.iloc[:, 0] if clean.endog.shape[1] == 1 else clean.endog
        const = None if "hasconst" in kwargs else _data.constant_column(clean.exog)
        if const is not None:  # statsmodels' own search skipped (a max and a min of every column): known here
            kwargs["hasconst"] = False
        super().__init__(endog_used, clean.exog, missing="none", **spec, **kwargs)
        if const is not None:
            self.data.k_constant, self.data.const_idx, self.k_constant = 1, const, 1
            self._init_keys.remove("hasconst")
        if "formula" in spec:  # statsmodels reads hasattr(model, "formula") as "made from a formula"
            self.formula = spec["formula"]
            if type(self.data) is _data.PandasData:
                self.data.__class__ = _data.FormulaPandasData  # unpickles without guessing stack frames
        self.k_fe = self.design.X.shape[1]
        self._fit_options = {}

    @property
    def design_info(self):
        """The formula's right-hand side specification (patsy DesignInfo / formulaic ModelSpec), or None."""
        data = self.data
        return getattr(data, "model_spec", None) or getattr(data, "design_info", None)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_formula(cls, formula, data, groups=None, family=None, offset=None, exposure=None, weights=None,
                     subset=None, drop_cols=None, *args, missing="drop", formula_mode="python", eval_env=None,
                     var_weights=None, freq_weights=None, **kwargs):
        """Model from a formula, e.g. ``GLMM.from_formula("y ~ x", df, groups="school")``.

        The formula goes through statsmodels' formula machinery (``Model.from_formula``: patsy, or
        formulaic where statsmodels is set to use it), so ``eval_env``, ``subset``, ``drop_cols``,
        pickling, ``wald_test_terms`` and ``predict`` on new data behave as in statsmodels.

        Parameters
        ----------
        formula : str
            ``"y ~ x1 + C(track)"``; ``"successes + failures ~ x"`` gives a Binomial response with trials.
        data : DataFrame or dask.dataframe.DataFrame
            A Dask DataFrame gives a `glmm_ext.scale._dask.DaskGLMM` fitted on the Dask cluster with the
            same estimates and results API (``groups``, ``offset``, ``exposure``, ``weights``,
            ``var_weights`` and ``freq_weights`` as column names; optional ``client=``; no ``subset``,
            ``drop_cols`` or random slopes), see docs/scale.md.
        groups : str, label or array_like
            The grouping column's name (any column label, e.g. ``7``) or one label per row.
        family : statsmodels family instance, optional
        offset, exposure, weights : str or array_like, optional
            Column names or one value per row (a Series is aligned on the data's index).
        var_weights, freq_weights : str or array_like, optional
            Prior weights with statsmodels GLM's meaning (see the class docstring), as column names or
            one value per row.
        subset : array_like, optional
            Rows of ``data`` to use (``data.loc[subset]``).
        drop_cols : list of str, optional
            Design columns to drop (statsmodels' semantics).
        missing : {"drop", "raise", "none"}
            "drop" (default) removes rows with a missing, infinite or non-numeric value in a column
            the model uses and reports them (``n_dropped``, ``drop_reasons``); "raise" raises
            ValueError; "none" is read as "raise", as statsmodels' formulas do.
        formula_mode : {"python", "safe"}
            "python" (default, statsmodels' convention) lets patsy evaluate the formula, which RUNS
            the Python code in it: never use it on a formula from an untrusted source.  "safe" first
            parses the formula and accepts only column names, ``Q("name")``, numbers, ``~ + - * / : **``,
            ``C(col)``, ``C(col, Treatment(reference=...))``, ``I(...)`` over arithmetic, ``np.log``,
            ``np.log1p``, ``np.exp``, ``np.sqrt``, ``np.abs``, ``center``, ``standardize`` and ``scale``;
            anything else is a ValueError naming the token, with nothing evaluated.
        eval_env : int, dict or patsy.EvalEnvironment, optional
            Where names that are not columns are looked up: default the caller's namespace; an int
            goes that many frames further up; -1 an empty namespace (python mode only).
        zi_formula : str, optional
            Zero part, glmmTMB's ``ziformula``: ``"~ 1"``, ``"~ x"``, ``"~ 1 + (1 | g)"`` (logit link).
            With a count family it is zero inflation, with ``glmm_ext.families.TruncatedPoisson`` /
            ``TruncatedNegativeBinomial`` the zero part of a hurdle model; returns a
            `glmm_ext.zi_model.ZeroInflatedGLMM` (random effects written in the formula), see
            docs/zero_inflated.md.
        disp_formula : str, optional
            Fixed-effects model for the dispersion (log link), glmmTMB's ``dispformula``: NB2's theta,
            NB1's phi, Gaussian's sigma^2 (identity link), Gamma's phi (log link).
        re_formula : str, optional
            MixedLM's random-effects formula, ``"~x"`` (with ``groups`` a column name): the same model
            as the term ``(x | groups)``.  Random slopes can also be written in the formula, lme4's
            way: ``"y ~ x + (1 + x | g)"``, ``(x || g)``, ``(0 + x | g)``; then ``groups`` is optional.
        """
        from .formula._idioms import check_lme4_idioms
        from .scale._dask import is_dask_frame
        from .families import is_extended

        check_lme4_idioms(formula)
        zi_formula, disp_formula = kwargs.pop("zi_formula", None), kwargs.pop("disp_formula", None)
        if zi_formula is not None or disp_formula is not None or is_extended(family):
            # zero-inflated / hurdle / dispersion models: their own shell (glmm_ext.zi_model)
            from .zi_model import ZeroInflatedGLMM

            if args or drop_cols is not None or weights is not None or var_weights is not None or \
                    freq_weights is not None:
                raise ValueError("zi_formula / disp_formula models take no positional arguments, drop_cols or "
                                 "weights")
            return ZeroInflatedGLMM.from_formula(formula, data, family=family, zi_formula=zi_formula,
                                                 disp_formula=disp_formula, offset=offset, exposure=exposure,
                                                 subset=subset, missing=missing, groups=groups,
                                                 formula_mode=formula_mode, **kwargs)
        if is_dask_frame(data):  # rows stay on the Dask workers
            from .scale._dask import DaskGLMM

            _refuse_dask_terms(formula, kwargs)
            formula, groups = _dask_random_part(formula, groups)

            if kwargs.get("re_formula") is not None:
                raise ValueError("re_formula (random slopes) is not supported with a Dask DataFrame; fit them in "
                                 "memory, or use a random intercept with groups=")
            kwargs.pop("re_formula", None)
            unsupported = [name for name, value in (("subset", subset), ("drop_cols", drop_cols)) if value is not None]
            unsupported += [f"positional argument {a!r}" for a in args] + [k for k in kwargs if k != "client"]
            if unsupported:
                raise ValueError(f"{', '.join(map(str, unsupported))}: not supported with a Dask DataFrame (select "
                                 "rows and columns on the Dask DataFrame first, e.g. ddf[ddf.x > 0])")
            return DaskGLMM(formula, data, groups, family=family, client=kwargs.get("client"), offset=offset,
                            exposure=exposure, weights=weights, var_weights=var_weights, freq_weights=freq_weights,
                            missing=missing, formula_mode=formula_mode, eval_env=eval_env)
        if not isinstance(data, pd.DataFrame):
            data = pd.DataFrame(data)
        if subset is not None:
            data = data.loc[subset]
        formula, groups, data, random, arrays = _bars.split_random_terms(
            formula, data, groups, kwargs.pop("re_formula", None), (offset, exposure, weights), formula_mode,
            missing, vc_formula=kwargs.pop("vc_formula", None))
        offset, exposure, weights = arrays
        if random is not None:
            kwargs["_random"] = random
        env = _data.formula_environment(formula, data, formula_mode, eval_env)
        prepared = _data.prepare(formula, data, groups, offset=offset, exposure=exposure, weights=weights,
                                    missing=missing, formula_mode=formula_mode, env_names=env.keys(),
                                    var_weights=var_weights, freq_weights=freq_weights)
        family = check_family(family)
        try:
            model_kwargs = dict(family=family, missing="raise" if missing == "none" else missing,
                                eval_env=_data.eval_env_for_statsmodels(env), _prepared=prepared,
                                _formula_mode=formula_mode, **kwargs)
            model = _plain.model_from_plain_formula(cls, formula, prepared.frame, drop_cols, model_kwargs)
            if model is None:  # not a plain formula: statsmodels' formula machinery evaluates it
                frame = categorical_frame(prepared.frame, formula)
                model_kwargs["eval_env"] = _data.eval_env_for_statsmodels(categorical_env(env, frame))
                model = super().from_formula(formula, frame, None, drop_cols, **model_kwargs)
                model.data.frame = prepared.frame  # (words as words: the Categoricals only sped the evaluation)
        except (ValueError, TypeError):
            raise
        except Exception as exc:  # patsy / formulaic evaluation errors (PatsyError, IndexError, NameError, ...)
            message = str(exc).strip().splitlines()
            raise ValueError(f"formula {formula!r} could not be evaluated: {type(exc).__name__}: "
                             f"{message[0] if message else ''}") from None
        model.vector_columns = {what: value for what, value in (("offset", offset), ("exposure", exposure))
                                if value is not None and _data._is_column_key(value, data.columns)}
        return model

    # ------------------------------------------------------------------ names and sizes
    @property
    def nobs(self):
        return self.design.nobs

    @nobs.setter
    def nobs(self, value):  # statsmodels' base class assigns nobs; the design is the authority
        pass

    @property
    def n_groups(self):
        return self.design.n_groups

    @property
    def group_labels(self):
        return self.design.group_labels

    @property
    def group_name(self):
        return self.design.group_name

    @property
    def groups(self):
        """Group label of each row used, in the data's row order."""
        return self.design.group_labels[self.design.codes]

    @property
    def endog_name(self):
        return self.design.endog_name

    @property
    def exog_names(self):
        return list(self.design.exog_names)

    # ------------------------------------------------------------------ fitting
    def fit(self, reml=True, maxiter=100, tol=1e-6, nagq=1, cov_type="hessian", progress=False, callback=None,
            method=None, start_params=None, disp=None, full_output=None, **kwargs):
        """Fit the model.

        Parameters
        ----------
        reml : bool
            Gaussian + identity only: REML (default) or ML. Every other pair is fitted by ML.
        maxiter : int
            Maximum optimiser iterations (>= 1).
        tol : float
            Convergence tolerance (> 0): the predicted log-likelihood gain of one more Newton step.
        nagq : int
            Non-Gaussian pairs: 1 = Laplace (default), 2-100 = adaptive Gauss-Hermite nodes per group,
            0 = beta inside PIRLS, only the variance optimised (fast approximation, lme4's nAGQ=0).
            Ignored for Gaussian + identity, whose likelihood is exact.
        cov_type : {"hessian", "pirls"}
            Standard errors from the observed information of the log-likelihood over (beta, sigma_u,
            dispersion), or from the PIRLS working weights (lme4's ``use.hessian = FALSE``).
        progress : bool
            Show the estimation stage and a progress bar on stderr.
        callback : callable, optional
            ``callback(stage, iteration, objective)`` after every stage and iteration.
        method, start_params, disp, full_output
            statsmodels' options, accepted so that MixedLM / GLM code runs unchanged: ``disp=True``
            shows progress; ``method`` (glmm_ext always runs its own search: the exact REML/ML profile,
            or Newton steps on the Laplace/AGQ objective), ``start_params`` (start values come from a GLM fit) and
            ``full_output`` are ignored, each with a line in ``optsummary.notes``.  Other MixedLM
            options (``niter_sa``, ``do_cg``) are ignored the same way; penalties (``fe_pen``,
            ``cov_pen``) and ``free`` are a ValueError.

        Returns
        -------
        GLMMResultsWrapper
        """
        notes = statsmodels_fit_options(method, start_params, full_output, kwargs)
        if disp:
            progress = True
        if isinstance(reml, np.bool_):
            reml = bool(reml)
        if not isinstance(reml, bool):
            raise ValueError(f"reml must be True or False (got {reml!r})")
        maxiter, tol, nagq = check_fit_options(maxiter, tol, nagq, cov_type)
        self._fit_options = {"reml": reml, "maxiter": maxiter, "tol": tol, "nagq": nagq, "cov_type": cov_type}
        monitor = Progress(enabled=progress, callback=callback, maxiter=maxiter)
        with monitor, fast_allocation(rows=self.design.nobs):
            fit = fit_mixed(**engine_arguments(self.design), reml=reml, nagq=nagq, maxiter=maxiter, tol=tol,
                            cov_type=cov_type, callback=monitor)
            monitor("done", fit.opt.n_iterations, -fit.llf)
        fit.opt.notes = list(getattr(fit.opt, "notes", [])) + notes
        names = getattr(self.design.terms, "names", None) or fit.groups  # the terms as the user wrote them
        singular = [name for name, flag in zip(names, fit.singular) if flag]
        if singular:
            warnings.warn(_singular_message(fit, singular), SingularFitWarning, stacklevel=2)
        for note in fit.notes or []:
            warnings.warn(note, LaplaceApproximationWarning, stacklevel=2)
        if fit.separated_rows:
            warnings.warn(f"{fit.opt.message}. A predictor (or combination) predicts the response perfectly; "
                          "its estimate and standard error are not meaningful. Consider removing it, merging "
                          "categories, or a penalised (Bayesian) model.", PerfectSeparationWarning, stacklevel=2)
        if not np.all(np.isfinite(np.diag(fit.cov_beta))):
            warnings.warn("standard errors could not be computed: the information matrix is singular (an "
                          "over-parameterised model or degenerate data); they are reported as NaN", UserWarning,
                          stacklevel=2)
        if not fit.converged and not fit.separated_rows:
            warnings.warn(f"the optimiser did not converge ({fit.opt.message}). {CONVERGENCE_ADVICE}",
                          ConvergenceWarning, stacklevel=2)
        return GLMMResultsWrapper(GLMMResults(self, fit, cov_type=cov_type))

    # ------------------------------------------------------------------ likelihood
    @property
    def param_names(self):
        """Names of the vector `loglike`, `score`, `hessian` and `information` take."""
        if not one_random_intercept(self.design):
            return vector_names(self)
        names = self.exog_names + [f"{self.group_name} SD"]
        if not self.dist.has_dispersion:
            return names
        return names + ["log alpha" if self.dist.name == "negativebinomial" else "log scale"]  # NB2: the slot holds alpha

    def loglike(self, params, var_re=None, scale=None, reml=False, nagq=None, alpha=None):
        """Marginal log-likelihood.

        ``loglike(vector)`` takes the model's parameter vector ``(beta, sigma_u, log scale)``: the
        fixed effects, the random-intercept SD (the likelihood is even in it) and, for families with
        a dispersion (Gaussian, Gamma, Gaussian-log), the log of the residual variance / dispersion
        (negative binomial: log alpha); ``param_names`` names it, ``results.params_vector`` holds the
        estimate.  The value is the exact ML log-likelihood for Gaussian + identity and the Laplace /
        AGQ one otherwise, with the fit's ``nagq`` (1 before a fit).  ``loglike(beta, var_re, scale)``
        gives the same with the variance given directly (negative binomial: ``loglike(beta, var_re,
        alpha=alpha)``; its scale is 1, as statsmodels' NB GLM); ``reml=True`` returns the REML
        log-likelihood at ``var_re`` and ``scale`` (beta at its GLS value).

        Other models (slopes, several terms): ``loglike(vector)``, the layout of ``res.params_vector``.
        """
        if not one_random_intercept(self.design):
            if var_re is not None or reml or nagq not in (None, 1) or alpha is not None or scale is not None:
                raise ValueError("loglike(beta, var_re, scale), alpha, reml and nagq are for one random intercept; "
                                 "this model takes loglike(vector) (param_names): the ML or Laplace log-likelihood")
            return -float(negative_loglike(self)(self._vector(params)))
        params = np.asarray(params, float)
        if var_re is None:
            if alpha is not None or scale is not None:  # never silently dropped
                raise ValueError("loglike(vector) holds the dispersion (param_names); scale / alpha go with var_re")
            beta, var_re, scale = self._split(params)
        else:
            beta = params
            scale = dispersion_argument(self.dist, scale, alpha)
        design = self.design
        nagq = self._fit_options.get("nagq", 1) if nagq is None else nagq
        if design.gaussian_identity:
            if reml:
                return reml_loglik_function(design)(var_re, scale)
            if self._per_term_ml:  # prior weights: the per-term likelihood takes the weights' rules
                return -float(negative_loglike(self)(np.concatenate([beta, [np.sqrt(var_re)], [np.log(scale)]])))
            o = design.order
            y = (design.y - design.offset)[o]
            return gaussian_ri_loglik(y - design.X[o] @ beta, design.starts, design.counts, var_re, scale)
        value, _ = self._engine_objective(nagq)(self._engine_theta(beta, var_re, scale), need_grad=False)
        return -value

    def score(self, params):
        """Gradient of `loglike` over the parameter vector (analytic for Laplace/AGQ, else differences)."""
        params = self._vector(params)
        if self.design.gaussian_identity or not one_random_intercept(self.design):
            return central_gradient(self._loglike_function(), params, 1e-6 * np.maximum(1.0, np.abs(params)))
        beta, var_re, scale = self._split(params)
        theta = self._engine_theta(beta, var_re, scale)
        _, grad = self._engine_objective(self._fit_options.get("nagq", 1))(theta)
        grad = -np.asarray(grad, float)
        p = self.k_fe
        out = grad.copy()
        out[:p] = np.linalg.solve(self.design.scaling.matrix.T, grad[:p])  # d/d beta = R^-T d/d gamma
        out[p] = grad[p] * np.sign(params[p]) if params[p] != 0 else grad[p]
        return out

    def hessian(self, params):
        """Hessian of `loglike` over the parameter vector: differences of `score` or of `loglike`."""
        from .engine._optimize import fd_hessian

        params = self._vector(params)
        if self.design.gaussian_identity or not one_random_intercept(self.design):
            return second_differences(self._loglike_function(), params, 1e-4 * np.maximum(1.0, np.abs(params)))
        return fd_hessian(lambda x: (np.nan, self.score(x)), params)

    def information(self, params):
        """Observed information, ``-hessian(params)``."""
        return -self.hessian(params)

    def _loglike_function(self):
        """`loglike` on the vector; one evaluator for all the differences of a model other than one intercept."""
        if one_random_intercept(self.design) and not self._per_term_ml:
            return self.loglike
        minus = negative_loglike(self)  # (built once for all the differences)
        return lambda x: -minus(x)

    @property
    def _per_term_ml(self):
        """A weighted Gaussian random intercept: its ML likelihood is the per-term one (`negative_loglike`)."""
        return self.design.gaussian_identity and self.design.lmm_weights()[0] is not None

    def _vector(self, params):
        params = np.asarray(params, float).reshape(-1)
        expected = len(self.param_names)
        if params.size != expected:
            raise ValueError(f"the parameter vector has {expected} entries ({', '.join(self.param_names)}); "
                             f"got {params.size}")
        return params

    def _split(self, params):
        """(beta, sigma_u^2, scale) from the parameter vector."""
        params = self._vector(params)
        p = self.k_fe
        scale = float(np.exp(params[p + 1])) if self.dist.has_dispersion else 1.0
        return params[:p], float(params[p]) ** 2, scale

    def _engine_theta(self, beta, var_re, scale):
        gamma = np.linalg.solve(self.design.scaling.matrix, np.asarray(beta, float))
        return np.concatenate([gamma, [np.sqrt(var_re)], [np.log(scale)] if self.dist.has_dispersion else []])

    def _engine_objective(self, nagq):
        from .engine._laplace import MarginalLikelihood

        return MarginalLikelihood(self.design.dist, self.design.engine_data(), nagq=max(int(nagq), 1))

    # ------------------------------------------------------------------ prediction
    def predict(self, params, exog=None, offset=None, groups=None, which="mean", blups=None, new_groups="zero",
                exposure=None):
        """Linear predictor or mean for the rows of `exog` (the data's when None).

        With ``groups`` and ``blups`` (a mapping label -> random intercept) each row's group effect is
        added; a group absent from `blups` gets 0 (a population-level prediction) with a warning, or
        a ValueError with ``new_groups="error"``.  Rows with a missing value give NaN.
        """
        if which not in ("mean", "linear"):
            raise ValueError(f"which must be 'mean' or 'linear' (got {which!r})")
        if new_groups not in ("zero", "error"):
            raise ValueError(f"new_groups must be 'zero' or 'error' (got {new_groups!r})")
        params = np.asarray(params, float)
        if exog is None:
            X, off = self.design.X, self.design.offset
            if groups is None and blups is not None:
                groups = self.groups
        else:
            X = np.asarray(exog, float)
            X = X.reshape(-1, 1) if X.ndim == 1 else X
            if X.ndim != 2 or X.shape[1] != len(params):
                raise ValueError(f"exog has {X.shape[1] if X.ndim == 2 else X.shape} columns; the model has "
                                 f"{len(params)} ({', '.join(self.exog_names)})")
            off = np.zeros(X.shape[0])
            if offset is not None:
                off = off + check_vector(offset, X.shape[0], "offset", allow_nan=True)
            if exposure is not None:
                off = off + np.log(check_vector(exposure, X.shape[0], "exposure", positive=True, allow_nan=True))
        eta = X @ params + off
        if groups is not None and blups is not None:
            eta = eta + self.group_effects(groups, blups, len(eta), new_groups)
        return eta if which == "linear" else self.dist.mean(eta)

    def group_effects(self, groups, blups, n, new_groups="zero"):
        """Each row's random intercept: 0 (warned, or an error) for an unseen group, NaN for a missing label."""
        labels = pd.Series(np.asarray(groups, dtype=object).reshape(-1))
        if len(labels) != n:
            raise ValueError(f"groups has {len(labels)} values; the predictions have {n} rows")
        missing = _data._missing_labels(labels)
        effects = labels.map(blups)
        unseen = effects.isna().to_numpy() & ~missing
        if unseen.any():
            names = list(dict.fromkeys(labels[unseen]))
            text = ", ".join(map(repr, names[:5])) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            if new_groups == "error":
                raise ValueError(f"{len(names)} groups are not in the fitted data: {text}")
            warnings.warn(f"{len(names)} groups are not in the fitted data ({text}); their random effect is 0, a "
                          "population-level prediction", UserWarning, stacklevel=4)
        values = np.array(effects.to_numpy(dtype=float, na_value=np.nan))
        values[unseen] = 0.0
        return values


def _singular_message(fit, names):
    """The boundary-fit warning: a random intercept's, a random-slope model's, or naming the terms at it."""
    if fit.one_factor:
        return SINGULAR_MESSAGE_VECTOR if fit.vector else SINGULAR_MESSAGE
    return (f"boundary (singular) fit: the random-effects covariance of {', '.join(names)} is at its boundary (a "
            "variance at or near zero or a correlation of +-1); interpret its variance components with caution, "
            "or drop the term")


def _dask_random_part(formula, groups):
    """(fixed-effects formula, groups) of a Dask fit: a ``(1 | g)`` term gives the group; slopes stay in memory."""
    spec = _bars.parse_formula(formula) if isinstance(formula, str) else None
    if spec is None:
        return formula, groups
    if not spec.intercept_only:
        raise ValueError(f"random slopes ({', '.join(t.text for t in spec.terms)}) are not supported on a Dask "
                         f"DataFrame; fit them in memory, or use a random intercept (1 | {spec.group})")
    return spec.fixed, _bars.resolve_groups(spec, groups)


def _multi_design(design, multi, clean):
    """The Design with several random-effect terms attached (refusing what the multi-term path lacks)."""
    from .formula._terms import attach_terms

    check_several_weights(design)
    return attach_terms(design, multi, clean)


def _refuse_dask_terms(formula, kwargs):
    """Several random-effect terms on a Dask DataFrame: NotImplementedError (one factor only there)."""
    spec = _bars.parse_formula(formula) if isinstance(formula, str) else None
    if getattr(spec, "is_multi", False) or kwargs.get("vc_formula"):
        raise NotImplementedError("several random-effect terms (crossed or nested factors) are not supported on a "
                                  "Dask DataFrame; fit them in memory (data.compute()), or use one grouping factor")


def gaussian_ri_loglik(resid, starts, counts, var_re, scale):
    """Exact Gaussian random-intercept log-likelihood of residuals sorted by group (Woodbury, per group)."""
    from .engine._segments import group_sums

    n = resid.size
    c = var_re / (scale * (scale + counts * var_re))
    sums = group_sums(resid, starts)
    quad = (resid @ resid) / scale - np.sum(c * sums * sums)
    logdet = n * np.log(scale) + np.sum(np.log1p(counts * var_re / scale))
    return -0.5 * (n * np.log(2 * np.pi) + logdet + quad)


def glmm(formula, data, groups, family=None, **kwargs):
    """Shortcut for ``GLMM.from_formula`` (like ``smf.mixedlm``)."""
    return GLMM.from_formula(formula, data, groups=groups, family=family, **kwargs)
