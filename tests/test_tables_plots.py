"""Plots render with the Agg backend (matplotlib is in the test extra, optional for users)."""
import numpy as np
import pytest

import glmm_ext

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")


def test_blup_and_diagnostic_plots_render(tmp_path):
    df = glmm_ext.load_schools()
    res = glmm_ext.GLMM.from_formula("score ~ hours + ses", df, groups="school").fit()
    fig = res.plot_blups()
    path = tmp_path / "blups.png"
    fig.savefig(path)
    assert path.stat().st_size > 5000
    assert len(fig.axes[0].get_yticklabels()) == res.n_groups
    fig2 = res.plot_diagnostics()
    path2 = tmp_path / "diag.png"
    fig2.savefig(path2)
    assert path2.stat().st_size > 5000 and len(fig2.axes) == 3


def test_import_does_not_need_matplotlib():
    import subprocess
    import sys

    code = ("import sys; sys.modules['matplotlib'] = None; import glmm_ext; "
            "df = glmm_ext.load_schools(); glmm_ext.glmm('score ~ hours', df, groups='school').fit()")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("n_groups", [5, 5000])
def test_caterpillar_reads_well_from_5_to_5000_groups(n_groups):
    df = glmm_ext.simulate("gaussian", n_groups=n_groups, group_size=2 if n_groups > 100 else 6, seed=1)
    res = glmm_ext.GLMM.from_formula("y ~ x1", df, groups="g").fit()
    fig = res.plot_blups()
    labels = fig.axes[0].get_yticklabels()
    assert len(labels) == min(n_groups, 50)
    assert fig.get_size_inches()[1] <= 10.0
    if n_groups > 60:
        shown = res.blup_table().sort_values("Random Intercept")
        names = [t.get_text() for t in labels]
        assert names[:25] == list(shown["Group"].astype(str).head(25))
        assert names[25:] == list(shown["Group"].astype(str).tail(25))
        assert any("4950 groups not shown" in t.get_text() for t in fig.axes[0].texts)


def test_binned_residuals_follow_gelman_and_hill():
    from glmm_ext.plotting import binned_residuals

    fitted = np.linspace(0.05, 0.95, 400)
    resid = np.tile([0.5, -0.5], 200)
    table = binned_residuals(fitted, resid)
    assert len(table) == 20 and table["count"].sum() == 400  # sqrt(400) bins
    first = fitted[:20]
    assert table["fitted"].iloc[0] == pytest.approx(first.mean())
    assert table["residual"].iloc[0] == pytest.approx(0.0)
    assert table["bound"].iloc[0] == pytest.approx(2 * np.sqrt(np.mean(first * (1 - first)) / 20))
    df = glmm_ext.simulate("binomial", n_groups=30, group_size=8, seed=2)
    res = glmm_ext.GLMM.from_formula("y ~ x1", df, groups="g", family=glmm_ext.make_family("binomial")).fit()
    fig = res.plot_diagnostics()
    assert fig.axes[0].get_title().startswith("Binned residuals")
