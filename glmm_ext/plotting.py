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
    if getattr(res, "is_multi", False):
        return _plot_multi(res, plt, ax, alpha)
    if res._terms[0].z_names != ("Intercept",):  # random slopes: a panel per term
        return _plot_terms(res, plt, ax, alpha)
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


def _plot_multi(res, plt, axes, alpha):
    """Several random-effect terms: one caterpillar panel per (term, z column), levels sorted within each."""
    table = res.blup_table()
    panels = [(key, name) for key, z in zip(res.cov_re, res.model.design.terms.z_names) for name in z]
    crit = stats.norm.isf(alpha / 2)
    if axes is None:
        tallest = max(min(2 * SHOWN_EACH_END + 1, int((table["Term"] == k).sum())) for k, _ in panels)
        height = min(MAX_HEIGHT, max(2.5, 0.6 + 0.17 * tallest))
        fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), height), squeeze=False)
        axes = axes[0]
    else:
        axes = np.atleast_1d(axes)
        if len(axes) != len(panels):
            raise ValueError(f"plot_blups needs {len(panels)} axes, one per term and column "
                             f"({', '.join(f'{k}: {n}' for k, n in panels)})")
        fig = axes[0].figure
    for ax, (key, name) in zip(axes, panels):
        part = table[table["Term"] == key].rename(columns={name: "Random Intercept"})
        part, hidden = caterpillar_rows(part)
        pos = np.arange(len(part), dtype=float)
        if hidden:
            pos[SHOWN_EACH_END:] += 1.0
            ax.text(0.5, SHOWN_EACH_END, f"{hidden} levels not shown", transform=ax.get_yaxis_transform(),
                    ha="center", va="center", fontsize=7, color="dimgrey")
        ax.errorbar(part["Random Intercept"], pos, xerr=crit * part[f"Std. Error ({name})"], fmt="o", ms=3, lw=1)
        ax.axvline(0.0, color="grey", lw=0.8, ls="--")
        ax.set_yticks(pos)
        ax.set_yticklabels(part["Group"].astype(str), fontsize=6 if len(part) > 40 else 8)
        ax.set_xlabel(f"{name} ({100 * (1 - alpha):g}% interval)")
        ax.set_ylabel(key)
        ax.set_title(f"{key}: {name}")
    fig.tight_layout()
    return fig
