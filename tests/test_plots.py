"""Plots render with the Agg backend (matplotlib is in the test extra, optional for users)."""
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
