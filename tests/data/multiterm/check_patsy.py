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
        names, sums = case["fixef_py_names"], case["X_colsums"]
        if "cond" not in names:  # one linear predictor (multiterm); zi/reference.json has cond, zi, disp
            names, sums = {"cond": names}, {"cond": sums}
        rhs = {"cond": fixed_part(case["py_formula"]).split("~", 1)[1], "zi": case.get("py_ziformula"),
               "disp": case.get("py_dispformula")}
        for part, want in names.items():
            if want is None:
                continue
            X = patsy.dmatrix(rhs[part], df, return_type="dataframe")
            ok = (list(X.columns) == list(want.values())
                  and np.allclose(X.sum().to_numpy(), list(sums[part].values()), rtol=1e-12, atol=1e-9))
            bad += not ok
            print(("ok  " if ok else "BAD ") + name, part, rhs[part] if ok else (list(X.columns), want))
    return bad


if __name__ == "__main__":
    files = sys.argv[1:] or ["tests/data/multiterm/reference.json"]
    sys.exit(sum(check(Path(f)) for f in files))
