"""Checks that each model's py_formula gives, through patsy, lme4's fixed-effect design (names and column sums).

Run from the repository root: ``python tests/data/multiterm/check_patsy.py [tests/data/zi/reference.json]``.
"""
import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import patsy


def fixed_part(formula: str) -> str:
    """The formula without its ``(...|...)`` terms."""
    rhs = re.sub(r"\+?\s*\([^()|]*\|\|?[^()]*\)", "", formula)
    return rhs.replace("~ +", "~").strip().rstrip("+").strip() or formula


def check(json_path: Path) -> int:
    ref = json.loads(json_path.read_text())
    bad = 0
    for name, case in ref["models"].items():
        path = Path(case["data"]) if "/" in case["data"] else json_path.parent / case["data"]
        facs = list(case.get("data_levels", {}))
        df = pd.read_csv(path, dtype={f: str for f in facs})
        fml = fixed_part(case["py_formula"])
        X = patsy.dmatrix(fml.split("~", 1)[1], df, return_type="dataframe")
        want = list(case["fixef_py_names"].values())
        sums = np.array(list(case["X_colsums"].values()))
        ok = list(X.columns) == want and np.allclose(X.sum().to_numpy(), sums, rtol=1e-12, atol=1e-9)
        bad += not ok
        print(("ok  " if ok else "BAD ") + name, fml if ok else (list(X.columns), want))
    return bad


if __name__ == "__main__":
    files = sys.argv[1:] or ["tests/data/multiterm/reference.json"]
    sys.exit(sum(check(Path(f)) for f in files))
