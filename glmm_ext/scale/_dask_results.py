"""Results of a Dask fit: a `GLMMResults` whose row-level outputs are lazy Dask objects.

Everything an in-memory fit computes from its estimates (params, bse, conf_int, cov_params, cov_re,
llf, aic, bic, icc, deff, random_effects, blup_table(), the report tables and summary(), t_test ...)
is inherited from `glmm_ext.results.GLMMResults` and so made by the same code.  Whatever needs the
rows is either computed on the workers (`diagnostics`, `fittedvalues`, `resid`, `predict` return
Dask collections that nothing computes until the user does; `latent_lambda`, `overdispersion` and
`r2` reduce over the partitions to a few numbers) or raises NotImplementedError naming the method
and what to use instead (refits and simulations: bootstrap and profile intervals, anova,
test_random_effect, simulate, quantile residuals).
"""
import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.base import wrapper as sm_wrap

from ..results import GLMMResults, GLMMResultsWrapper
from . import _dask_rows as rows_

DIAGNOSTICS = ["fitted_values", "deviance_residuals", "pearson_residuals", "group_random_effect"]
IN_MEMORY = ("fit the model in memory (GLMM.from_formula(formula, ddf.compute(), groups=...)) if the data fit "
             "on one machine")


def unavailable(what, why, instead=IN_MEMORY):
    """The NotImplementedError of a method that a Dask fit cannot offer."""
    raise NotImplementedError(f"{what} is not available for a Dask fit: {why}. Instead, {instead}.")


class DaskGLMMResults(GLMMResults):
    """The results of `DaskGLMM.fit`: the attributes and tables of `GLMMResults`, rows kept on the workers.

    Row-level outputs are computed on the workers on request and returned lazily:

    - ``diagnostics()``: a Dask DataFrame (fitted values, deviance and Pearson residuals, group effect),
      indexed by the data's row labels (rows in the shuffled order: align on the index to compare);
    - ``fittedvalues``, ``resid``: Dask Series;
    - ``predict()``: a Dask Series for the fitted rows or a Dask DataFrame of new rows, a pandas
      Series for a pandas DataFrame of new rows.

    ``overdispersion()``, ``r2()`` (where the latent residual variance needs no refit) and the Poisson
    latent-variance table reduce over the partitions.  Bootstrap and profile intervals, anova,
    ``test_random_effect``, ``simulate``, quantile residuals, ``bse_re`` and ``plot_diagnostics`` raise
    NotImplementedError.  ``remove_data()`` frees the rows on the cluster.
    """

    # ------------------------------------------------------------------ lazy row-level outputs
    def _parts(self):
        """(rows futures, each partition's group effects in its label order), or an error once released."""
        prep = self.model._prepared
        if prep is None or prep.get("arrays") is None:
            raise ValueError("the rows of this Dask fit were released (remove_data(), or the results were "
                             "unpickled); refit the model to compute row-level outputs")
        return prep["arrays"], [self.blups[codes] for codes in prep["part_codes"]]

    def _lazy(self, fn, meta, *args):
        """A Dask collection with one partition per row partition: fn(rows, group effects, *args) on the workers."""
        import dask
        import dask.dataframe as dd

        arrays, blups = self._parts()
        parts = [dask.delayed(fn, pure=True)(part, b, *args) for part, b in zip(arrays, blups)]
        return dd.from_delayed(parts, meta=meta, verify_meta=False)

    def _index_meta(self):
        return self.model._index_meta

    def diagnostics(self):
        """Lazy Dask DataFrame with one row per row used, on the data's row labels: ``fitted_values``
        (fixed + random, response scale), ``deviance_residuals``, ``pearson_residuals`` and
        ``group_random_effect``, as the in-memory ``diagnostics()``.  Computed on the workers when the
        caller computes it (``.compute()``, ``.to_parquet(...)``)."""
        meta = pd.DataFrame({c: pd.Series(dtype=float) for c in DIAGNOSTICS}, index=self._index_meta())
        params = np.asarray(self.params, float)
        return self._lazy(_diagnostics, meta, params, self._phi, self.model.dist)

    def _fitted(self, which, name):
        meta = pd.Series(dtype=float, name=name, index=self._index_meta())
        return self._lazy(_fitted, meta, np.asarray(self.params, float), self.model.dist, which, name)

    @property
    def fittedvalues(self):
        """Conditional means (fixed effects + each row's BLUP), response scale: a lazy Dask Series on the
        data's row labels."""
        return self._fitted("mean", "fittedvalues")

    @property
    def resid(self):
        """Response minus `fittedvalues` (a proportion for a Binomial response with trials): a lazy Dask Series."""
        return self._fitted("resid", "resid")

    def predict(self, exog=None, transform=True, groups=None, which="mean", new_groups="zero", offset=None,
                exposure=None):
        """Predictions, as `GLMMResults.predict`.

        ``exog=None``: the fitted rows with their BLUPs, a lazy Dask Series.  A pandas DataFrame of new
        rows: a pandas Series (the formula's right side applied with the fitted data's levels).  A Dask
        DataFrame of new rows: a lazy Dask Series, one partition per partition; ``groups``, ``offset``
        and ``exposure`` are then column names (an unseen group gets 0 there without a warning, which
        would be raised on a worker; ``new_groups="error"`` makes it an error).
        """
        if which not in ("mean", "linear"):
            raise ValueError(f"which must be 'mean' or 'linear' (got {which!r})")
        if exog is None:
            if groups is not None:
                raise ValueError("predict(groups=...) on a Dask fit needs new rows (exog); the fitted rows use "
                                 "their own groups")
            return self._fitted(which, "predicted" if which == "mean" else "linpred")
        from ._dask import is_dask_frame

        if is_dask_frame(exog):
            return self._predict_dask(exog, groups, which, new_groups, offset, exposure)
        return super().predict(exog, transform=transform, groups=groups, which=which, new_groups=new_groups,
                               offset=offset, exposure=exposure)

    def _predict_dask(self, exog, groups, which, new_groups, offset, exposure):
        model = self.model
        for what, value in (("groups", groups), ("offset", offset), ("exposure", exposure)):
            if value is not None and not (np.ndim(value) == 0 and value in exog.columns):
                raise ValueError(f"{what}: with a Dask DataFrame of new rows give the name of one of its columns")
        columns = model.vector_columns
        offset = columns.get("offset") if offset is None and columns.get("offset") in exog.columns else offset
        exposure = columns.get("exposure") if exposure is None and columns.get("exposure") in exog.columns \
            else exposure
        predictor = _Predictor(self._rhs(), model._spec.levels, model._spec.env, list(model.exog_names),
                               np.asarray(self.params, float), model.dist, groups, offset, exposure, which,
                               new_groups, None if groups is None else self._blup_map)
        name = "predicted" if which == "mean" else "linpred"
        return exog.map_partitions(predictor, meta=pd.Series(dtype=float, name=name, index=exog._meta.index))

    def _rhs(self):
        """The formula's right side as a one-sided formula (what new rows are given)."""
        return "~ " + self.model.formula.split("~", 1)[1]

    def _transform_predict_exog(self, exog, transform=True):
        """The new rows' fixed-effects matrix: the formula's right side with the fitted data's levels
        (statsmodels' version needs the formula's design info, which a Dask model has not kept)."""
        if not isinstance(exog, pd.DataFrame):
            X = np.asarray(exog, float)
            return (X.reshape(-1, 1) if X.ndim == 1 else X), getattr(exog, "index", None)
        model = self.model
        X = _Predictor.matrix(self._rhs(), model._spec.levels, model._spec.env, list(model.exog_names), exog)
        return X, exog.index

    def get_prediction(self, exog=None, transform=True, groups=None, offset=None, exposure=None, new_groups="zero"):
        """As `GLMMResults.get_prediction` for new rows in a pandas DataFrame without ``groups``
        (population-level intervals)."""
        if exog is None or groups is not None:
            unavailable("get_prediction() for the fitted rows or with groups",
                        "its standard errors need each group's working weights, which are on the workers",
                        "use get_prediction(new_frame) for population-level intervals, or predict(groups=...) "
                        "for the point predictions")
        from ._dask import is_dask_frame

        if is_dask_frame(exog):
            unavailable("get_prediction() on a Dask DataFrame", "intervals are computed in memory",
                        "pass a pandas DataFrame of the rows to predict, or use predict(ddf)")
        return super().get_prediction(exog, transform=transform, offset=offset, exposure=exposure,
                                      new_groups=new_groups)

    # ------------------------------------------------------------------ reductions over the partitions
    def _row_sums(self):
        arrays, _ = self._parts()
        client = self.model.client
        out = client.gather(client.map(rows_.row_sums, arrays, beta=np.asarray(self.params, float),
                                       var_re=self.var_re, pure=False))
        return {key: sum(o[key] for o in out) for key in out[0]}

    @property
    def latent_lambda(self):
        """Mean expected count exp(x'beta + offset + sigma_u^2 / 2) over the rows (one reduction, kept)."""
        if "_latent_lambda" not in self.__dict__:
            sums = self._row_sums()
            self.__dict__["_latent_lambda"] = float(sums["lambda"] / sums["count"])
        return self.__dict__["_latent_lambda"]

    def overdispersion(self):
        """Pearson chi2, df, chi2/df and p-value (as the in-memory `overdispersion`), one sum per partition."""
        dist = self.model.dist
        if dist.name in ("gaussian", "gamma"):
            raise ValueError(f"overdispersion checks apply to Binomial, Poisson and negative binomial fits; the "
                             f"{dist.name} family estimates its dispersion")
        arrays, blups = self._parts()
        client = self.model.client
        params = np.asarray(self.params, float)
        chisq = float(sum(client.gather([client.submit(rows_.pearson_chi2, part, params, b, self._phi, dist,
                                                       pure=False) for part, b in zip(arrays, blups)])))
        df = int(self.nobs - self.k_params)
        pvalue = float(stats.chi2.sf(chisq, df))
        return {"chisq": chisq, "df": df, "ratio": chisq / df, "pvalue": pvalue}

    def r2(self, approximation="lognormal"):
        """Marginal and conditional R² as the in-memory `r2`, where the latent residual variance needs no refit
        (Gaussian, Binomial, Gamma-log with "lognormal"/"trigamma")."""
        from ..inference._checks import APPROXIMATIONS, latent_residual_variance

        if approximation not in APPROXIMATIONS:
            raise ValueError(f"approximation must be one of {', '.join(APPROXIMATIONS)} (got {approximation!r})")
        dist = self.model.dist
        key = (dist.name, dist.link_name)
        rows_free = key == ("gaussian", "identity") or dist.name == "binomial" and dist.link_name in (
            "logit", "probit", "cloglog") or (key == ("gamma", "log") and approximation != "delta")
        if not rows_free:
            unavailable(f"r2() for {dist.name}-{dist.link_name} ({approximation!r})",
                        "its latent residual variance needs a refit of the null model or the fitted means",
                        "fit in memory, or compute the variances from diagnostics()")
        sums = self._row_sums()
        n = sums["count"]  # sum f: row i counted f_i times, as the in-memory r2
        var_f = float((sums["xb2"] - sums["xb"] ** 2 / n) / (n - 1))
        var_u = float(self.var_re)
        var_e, how = latent_residual_variance(self, approximation)
        total = var_f + var_u + var_e
        return {"marginal": var_f / total, "conditional": (var_f + var_u) / total, "approximation": how,
                "var_fixed": var_f, "var_random": var_u, "var_residual": var_e}

    # ------------------------------------------------------------------ what needs the rows in memory
    def conf_int(self, alpha=0.05, method=None, nsim=200, seed=None, n_jobs=1, progress=None):
        """Wald intervals of the fixed effects (``method=None``), as `GLMMResults.conf_int`."""
        if method is None:
            return super().conf_int(alpha)
        if method not in ("wald", "profile", "boot"):
            raise ValueError(f"method must be None, 'wald', 'profile' or 'boot' (got {method!r})")
        unavailable(f"conf_int(method={method!r})", "intervals for the variance parameters need the "
                    "likelihood's curvature or refits on the rows" if method != "boot" else
                    "a parametric bootstrap refits the model nsim times", "conf_int() gives the Wald intervals of "
                    "the fixed effects; for the others " + IN_MEMORY)

    def simulate(self, nsim=1, seed=None, use_re="conditional"):
        unavailable("simulate()", "it draws one response per row", IN_MEMORY)

    def quantile_residuals(self, nsim=250, seed=None, use_re="new"):
        unavailable("quantile_residuals()", "it simulates every row nsim times",
                    "use diagnostics() (deviance and Pearson residuals); or " + IN_MEMORY)

    def plot_quantile_residuals(self, nsim=250, seed=None, fig=None, use_re="new"):
        self.quantile_residuals(nsim, seed)

    def plot_diagnostics(self, fig=None):
        unavailable("plot_diagnostics()", "it plots every row", "plot a sample of diagnostics() "
                    "(res.diagnostics().sample(frac=0.01).compute()); plot_blups() works")

    def test_random_effect(self):
        unavailable("test_random_effect()", "it fits the model without random effects on the rows", IN_MEMORY)

    @property
    def cov_params_vector(self):
        unavailable("cov_params_vector", "the curvature over the variance parameters is not kept by the Dask fit",
                    IN_MEMORY)

    @property
    def bse_re(self):
        unavailable("bse_re", "the curvature over the variance parameters is not kept by the Dask fit", IN_MEMORY)

    def t_test_pairwise(self, *args, **kwargs):
        unavailable("t_test_pairwise()", "a Dask model keeps no formula design information",
                    "use t_test('C(c)[T.b] - C(c)[T.z] = 0') with the column names")

    def wald_test_terms(self, *args, **kwargs):
        unavailable("wald_test_terms()", "a Dask model keeps no formula design information",
                    "use wald_test('x1 = 0, x2 = 0') with the column names")

    def remove_data(self):
        """Free the rows on the cluster (estimates, tables and summary stay; row-level outputs then raise)."""
        _ = self.latent_lambda if self.model.dist.name in ("poisson", "negativebinomial") else None  # for the tables
        self.model._release()


def _diagnostics(rows, blups, params, scale, dist):
    return rows_.diagnostics(rows, params, blups, scale, dist)


def _fitted(rows, blups, params, dist, which, name):
    return rows_.fitted(rows, params, blups, dist, which).rename(name)


class _Predictor:
    """Predictions for a partition of new rows (a picklable callable for ``map_partitions``)."""

    def __init__(self, rhs, levels, env, names, params, dist, groups, offset, exposure, which, new_groups, blups):
        self.rhs, self.levels, self.env, self.names = rhs, levels, env, names
        self.params, self.dist, self.groups, self.offset, self.exposure = params, dist, groups, offset, exposure
        self.which, self.new_groups, self.blups = which, new_groups, blups

    @staticmethod
    def matrix(rhs, levels, env, names, frame):
        """The fixed-effects matrix of `frame` (NaN rows where a value is missing)."""
        used = {c: v for c, v in (levels or {}).items() if c in frame.columns}
        _, X, _ = rows_.evaluate_formula(rhs, rows_.with_levels(frame, used), env)
        if list(map(str, X.columns)) != names:
            raise ValueError(f"the new data give the columns {list(X.columns)}; the model has {names}")
        return X.reindex(frame.index).to_numpy(dtype=float)

    def __call__(self, frame):
        from ..model import GLMM

        X = self.matrix(self.rhs, self.levels, self.env, self.names, frame)
        eta = X @ self.params
        if self.offset is not None:
            eta = eta + frame[self.offset].to_numpy(dtype=float)
        if self.exposure is not None:
            eta = eta + np.log(frame[self.exposure].to_numpy(dtype=float))
        if self.groups is not None:
            eta = eta + GLMM.group_effects(None, frame[self.groups].to_numpy(), self.blups, len(eta), self.new_groups)
        values = eta if self.which == "linear" else self.dist.mean(eta)
        return pd.Series(values, index=frame.index, name="predicted" if self.which == "mean" else "linpred")


class DaskGLMMResultsWrapper(GLMMResultsWrapper):
    """The statsmodels wrapper of `DaskGLMMResults`: parameters named as in memory; row-level outputs (Dask
    collections) passed through unchanged."""

    _wrap_attrs = {k: v for k, v in GLMMResultsWrapper._wrap_attrs.items() if k not in ("resid", "fittedvalues")}
    _wrap_methods = dict(GLMMResultsWrapper._wrap_methods)


sm_wrap.populate_wrapper(DaskGLMMResultsWrapper, DaskGLMMResults)
