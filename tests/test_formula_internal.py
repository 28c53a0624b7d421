"""The formula machinery's private hook (``formula._data.from_formula`` and ``GLMM(..., _clean=...)``, used by
steps such as lme4 bar terms that rewrite the formula first): no public face, so a rewrite of the formula layer
replaces this file; the public behaviour it serves is tested in test_fitting_*.py."""
import numpy as np
import pytest

import glmm_ext


def test_cleaned_data_for_pre_steps_equal_the_formula_fit(tracks):
    """formula._data.from_formula (for steps such as lme4 bar terms that rewrite the formula first)."""
    from glmm_ext.formula import _data

    holes = tracks.assign(x=tracks["x"].where(tracks.index % 17 != 3))
    clean = _data.from_formula("y ~ x + C(track)", holes, "g")
    direct = glmm_ext.GLMM.from_formula("y ~ x + C(track)", holes, groups="g").fit()
    via = glmm_ext.GLMM(None, None, None, _clean=clean, formula="y ~ x + C(track)").fit()
    assert via.llf == pytest.approx(direct.llf, abs=1e-10) and via.n_dropped == direct.n_dropped > 0
    assert np.allclose(via.predict(tracks.head(5)), direct.predict(tracks.head(5)))
