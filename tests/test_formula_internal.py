"""The formula machinery's private hook (``formula._data.from_formula`` and ``GLMM(..., _clean=...)``, used by
steps such as lme4 bar terms that rewrite the formula first): no public face, so a rewrite of the formula layer
replaces this file; the public behaviour it serves is tested in test_fitting_*.py."""
import numpy as np
import pandas as pd
import pytest

import glmm_ext


@pytest.fixture(scope="module")
def tracks():
    rng = np.random.default_rng(5)
    n_groups, size = 30, 8
    g = np.repeat(np.arange(n_groups), size)
    track = rng.choice(["academic", "general", "vocational"], size=g.size)
    x = rng.normal(size=g.size)
    y = 1 + 0.5 * x + np.select([track == "general", track == "vocational"], [0.4, -0.3], 0.0) \
        + rng.normal(0, 0.7, n_groups)[g] + rng.normal(size=g.size)
    return pd.DataFrame({"y": y, "x": x, "track": track, "g": g})


def test_cleaned_data_for_pre_steps_equal_the_formula_fit(tracks):
    """formula._data.from_formula (for steps such as lme4 bar terms that rewrite the formula first)."""
    from glmm_ext.formula import _data

    holes = tracks.assign(x=tracks["x"].where(tracks.index % 17 != 3))
    clean = _data.from_formula("y ~ x + C(track)", holes, "g")
    direct = glmm_ext.GLMM.from_formula("y ~ x + C(track)", holes, groups="g").fit()
    via = glmm_ext.GLMM(None, None, None, _clean=clean, formula="y ~ x + C(track)").fit()
    assert via.llf == pytest.approx(direct.llf, abs=1e-10) and via.n_dropped == direct.n_dropped > 0
    assert np.allclose(via.predict(tracks.head(5)), direct.predict(tracks.head(5)))
