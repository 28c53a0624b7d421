"""Plots of a fit (optional: ``pip install "glmm_ext[plot]"`` brings matplotlib; never needed to fit)."""
import numpy as np
from scipy import stats


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError('plots need matplotlib: pip install "glmm_ext[plot]"') from exc
    return plt


def plot_blups(res, ax=None, alpha=0.05):
    """Caterpillar plot: random intercepts sorted, with +- z_{1-alpha/2} SE intervals. Returns the Figure.

    With random slopes: one panel per term (``ax`` then is a sequence of axes, one per term).
    """
    plt = _pyplot()
    if res.is_vector:
        return _plot_terms(res, plt, ax, alpha)
    table = res.blup_table().sort_values("Random Intercept")
    crit = stats.norm.isf(alpha / 2)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, max(3, 0.18 * len(table))))
    else:
        fig = ax.figure
    pos = np.arange(len(table))
    ax.errorbar(table["Random Intercept"], pos, xerr=crit * table["Std. Error"], fmt="o", ms=3, lw=1)
    ax.axvline(0.0, color="grey", lw=0.8, ls="--")
    ax.set_yticks(pos)
    ax.set_yticklabels(table["Group"].astype(str), fontsize=6 if len(table) > 40 else 8)
    ax.set_xlabel(f"Random intercept ({100 * (1 - alpha):g}% interval)")
    ax.set_ylabel(res.group_name)
    ax.set_title("Random intercepts (conditional modes)" if res.method != "REML" and res.method != "ML"
                 else "Random intercepts (BLUPs)")
    fig.tight_layout()
    return fig


def plot_diagnostics(res, fig=None):
    """Residuals vs fitted values, QQ plot of the random intercepts and of the Pearson residuals."""
    plt = _pyplot()
    diag = res.diagnostics()
    if fig is None:
        fig = plt.figure(figsize=(11, 3.6))
    axes = fig.subplots(1, 3)
    axes[0].scatter(diag["fitted_values"], diag["pearson_residuals"], s=6, alpha=0.5)
    axes[0].axhline(0.0, color="grey", lw=0.8, ls="--")
    axes[0].set_xlabel("Fitted values")
    axes[0].set_ylabel("Pearson residuals")
    axes[0].set_title("Residuals vs fitted")
    first = res.blups if not res.is_vector else res.blups[:, 0]  # random slopes: the first term
    label = "random intercepts" if not res.is_vector else f"random {res.cov_re.columns[0]}"
    for ax, values, title in ((axes[1], first, f"QQ: {label}"),
                              (axes[2], diag["pearson_residuals"].to_numpy(), "QQ: Pearson residuals")):
        (osm, osr), (slope, intercept, _) = stats.probplot(values, dist="norm")
        ax.scatter(osm, osr, s=6, alpha=0.6)
        ax.plot(osm, slope * osm + intercept, color="grey", lw=1)
        ax.set_xlabel("Normal quantiles")
        ax.set_ylabel("Sample quantiles")
        ax.set_title(title)
    fig.tight_layout()
    return fig


def _plot_terms(res, plt, axes, alpha):
    """One caterpillar panel per random-effects term (random slopes), groups sorted within each."""
    table = res.blup_table()
    names = list(res.cov_re.columns)
    crit = stats.norm.isf(alpha / 2)
    if axes is None:
        fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), max(3, 0.18 * len(table))), squeeze=False)
        axes = axes[0]
    else:
        axes = np.atleast_1d(axes)
        if len(axes) != len(names):
            raise ValueError(f"plot_blups needs {len(names)} axes, one per term ({', '.join(names)})")
        fig = axes[0].figure
    for ax, name in zip(axes, names):
        part = table.sort_values(name)
        pos = np.arange(len(part))
        ax.errorbar(part[name], pos, xerr=crit * part[f"Std. Error ({name})"], fmt="o", ms=3, lw=1)
        ax.axvline(0.0, color="grey", lw=0.8, ls="--")
        ax.set_yticks(pos)
        ax.set_yticklabels(part["Group"].astype(str), fontsize=6 if len(part) > 40 else 8)
        ax.set_xlabel(f"{name} ({100 * (1 - alpha):g}% interval)")
        ax.set_title(f"Random effect: {name}")
    axes[0].set_ylabel(res.group_name)
    fig.tight_layout()
    return fig
