"""Plots of a fit (optional: ``pip install "glmm_ext[plot]"`` brings matplotlib; never needed to fit)."""
import numpy as np
import pandas as pd
from scipy import stats

#: beyond this many groups the caterpillar plot shows the top and bottom SHOWN_EACH_END groups
MANY_GROUPS = 60
SHOWN_EACH_END = 25
MAX_HEIGHT = 10.0  # inches


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError('plots need matplotlib: pip install "glmm_ext[plot]"') from exc
    return plt


def caterpillar_rows(table, many=MANY_GROUPS, each_end=SHOWN_EACH_END):
    """The BLUP rows to draw, sorted: all of them up to `many`, else the lowest and highest `each_end`."""
    table = table.sort_values("Random Intercept", kind="stable")
    if len(table) <= many:
        return table, 0
    return pd.concat([table.head(each_end), table.tail(each_end)]), len(table) - 2 * each_end


def plot_blups(res, ax=None, alpha=0.05):
    """Caterpillar plot: random intercepts sorted, with +- z_{1-alpha/2} SE intervals. Returns the Figure.

    Up to 60 groups every group is drawn and labelled; beyond, the 25 lowest and 25 highest, with
    the number of groups left out marked between them.  The height is capped at 10 inches.
    With random slopes: one panel per term (``ax`` then is a sequence of axes, one per term); with
    several random-effect terms one panel per term and z column (the same rule for many levels).
    """
    plt = _pyplot()
    if res.is_multi or res._terms[0].z_names != ("Intercept",):  # a panel per term and z column
        return _plot_panels(res, plt, ax, alpha)
    table, hidden = caterpillar_rows(res.blup_table())
    crit = stats.norm.isf(alpha / 2)
    rows = len(table) + (1 if hidden else 0)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, min(MAX_HEIGHT, max(2.5, 0.6 + 0.17 * rows))))
    else:
        fig = ax.figure
    pos = np.arange(len(table), dtype=float)
    if hidden:
        pos[SHOWN_EACH_END:] += 1.0  # a gap row for the groups left out
        ax.axhline(SHOWN_EACH_END, color="lightgrey", lw=6, alpha=0.5)
        ax.text(0.5, SHOWN_EACH_END, f"{hidden} groups not shown", transform=ax.get_yaxis_transform(),
                ha="center", va="center", fontsize=7, color="dimgrey")
    ax.errorbar(table["Random Intercept"], pos, xerr=crit * table["Std. Error"], fmt="o", ms=3, lw=1)
    ax.axvline(0.0, color="grey", lw=0.8, ls="--")
    ax.set_yticks(pos)
    ax.set_yticklabels(table["Group"].astype(str), fontsize=6 if rows > 40 else 8)
    ax.set_ylim(pos.min() - 0.7, pos.max() + 0.7)
    ax.set_xlabel(f"Random intercept ({100 * (1 - alpha):g}% interval)")
    ax.set_ylabel(res.group_name)
    kind = "BLUPs" if res.method in ("REML", "ML") else "conditional modes"
    ax.set_title(f"Random intercepts ({kind})" + (f", lowest and highest {SHOWN_EACH_END}" if hidden else ""))
    fig.tight_layout(pad=0.4)
    return fig


def binned_residuals(fitted, residuals, n_bins=None):
    """Gelman & Hill (2007, sec. 5.6) binned residuals for a Binomial model.

    Rows are sorted by fitted probability and cut into `n_bins` bins of (nearly) equal size
    (default: sqrt(n) for n >= 100, else 10 or fewer); per bin the mean fitted value, the mean
    residual y - mu and the bound 2 sqrt(mean(mu (1 - mu)) / n_bin) inside which about 95% of the
    bin means should fall when the model fits.
    """
    fitted = np.asarray(fitted, float)
    residuals = np.asarray(residuals, float)
    n = fitted.size
    if n_bins is None:
        n_bins = int(np.floor(np.sqrt(n))) if n >= 100 else min(10, max(1, n // 5))
    order = np.argsort(fitted, kind="stable")
    bins = np.array_split(order, n_bins)
    rows = [(fitted[b].mean(), residuals[b].mean(),
             2.0 * np.sqrt(np.mean(fitted[b] * (1.0 - fitted[b])) / b.size), b.size) for b in bins if b.size]
    return pd.DataFrame(rows, columns=["fitted", "residual", "bound", "count"])


def plot_diagnostics(res, fig=None):
    """Residuals vs fitted (binned residuals for a Binomial model), QQ plots of the BLUPs and residuals."""
    plt = _pyplot()
    diag = res.diagnostics()
    if fig is None:
        fig = plt.figure(figsize=(11, 3.6))
    axes = fig.subplots(1, 3)
    if res.model.dist.name == "binomial":
        binned = binned_residuals(diag["fitted_values"], res.resid)
        axes[0].plot(binned["fitted"], binned["bound"], color="grey", lw=0.8)
        axes[0].plot(binned["fitted"], -binned["bound"], color="grey", lw=0.8)
        axes[0].scatter(binned["fitted"], binned["residual"], s=10)
        axes[0].set_ylabel("Average residual (y - fitted)")
        axes[0].set_title(f"Binned residuals ({len(binned)} bins, +-2 SE)")
    else:
        axes[0].scatter(diag["fitted_values"], diag["pearson_residuals"], s=6, alpha=0.5)
        axes[0].set_ylabel("Pearson residuals")
        axes[0].set_title("Residuals vs fitted")
    axes[0].axhline(0.0, color="grey", lw=0.8, ls="--")
    axes[0].set_xlabel("Fitted values")
    term = res._terms[0]  # random slopes or several terms: the first term's first column
    first = term.modes[:, 0]
    label = "random intercepts" if term.z_names == ("Intercept",) and not res.is_multi else \
        f"random {term.z_names[0]}" + (f" ({term.key})" if res.is_multi else "")
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


def _plot_panels(res, plt, axes, alpha):
    """One caterpillar panel per (term, z column) of the per-term view, levels sorted within each (beyond 60
    levels the 25 lowest and 25 highest): random slopes and several random-effect terms."""
    several = res.is_multi
    panels = [(t, j) for t in res._terms for j in range(t.q)]
    crit = stats.norm.isf(alpha / 2)
    if axes is None:
        tallest = max(min(2 * SHOWN_EACH_END + 1, t.n_levels) for t, _ in panels)
        height = min(MAX_HEIGHT, max(2.5, 0.6 + 0.17 * tallest))
        fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), height), squeeze=False)
        axes = axes[0]
    else:
        axes = np.atleast_1d(axes)
        if len(axes) != len(panels):
            what = "one per term and column" if several else "one per term"
            names = [f"{t.key}: {t.z_names[j]}" if several else t.z_names[j] for t, j in panels]
            raise ValueError(f"plot_blups needs {len(panels)} axes, {what} ({', '.join(names)})")
        fig = axes[0].figure
    for ax, (t, j) in zip(axes, panels):
        name = t.z_names[j]
        part = pd.DataFrame({"Group": t.levels, "Random Intercept": t.modes[:, j], "Std. Error": t.mode_sd[:, j]})
        part, hidden = caterpillar_rows(part)
        pos = np.arange(len(part), dtype=float)
        if hidden:
            pos[SHOWN_EACH_END:] += 1.0
            ax.text(0.5, SHOWN_EACH_END, f"{hidden} levels not shown", transform=ax.get_yaxis_transform(),
                    ha="center", va="center", fontsize=7, color="dimgrey")
        ax.errorbar(part["Random Intercept"], pos, xerr=crit * part["Std. Error"], fmt="o", ms=3, lw=1)
        ax.axvline(0.0, color="grey", lw=0.8, ls="--")
        ax.set_yticks(pos)
        ax.set_yticklabels(part["Group"].astype(str), fontsize=6 if len(part) > 40 else 8)
        ax.set_xlabel(f"{name} ({100 * (1 - alpha):g}% interval)")
        if several:
            ax.set_ylabel(t.key)
        ax.set_title(f"{t.key}: {name}" if several else f"Random effect: {name}")
    if not several:
        axes[0].set_ylabel(res.group_name)
    fig.tight_layout(pad=0.4)
    return fig
