"""lme4 idioms that patsy cannot evaluate, refused with the glmm_ext way to write them.

``offset(log(t))`` in a formula is glmm_ext's ``offset=`` (or ``exposure="t"`` with a log link);
``cbind(s, f) ~ x`` is ``"s + f ~ x"``.  Without this check patsy reports "name 'offset' is not defined".
"""
import re

_CALL = {name: re.compile(rf"(?<![\w.]){name}\s*\(") for name in ("offset", "cbind")}
_LOG = re.compile(r"^(?:np\.)?log\s*\((.*)\)$")


def _argument(text, start):
    """The text inside the parentheses opening at text[start]."""
    depth = 0
    for i in range(start, len(text)):
        depth += (text[i] == "(") - (text[i] == ")")
        if depth == 0:
            return text[start + 1:i].strip()
    return text[start + 1:].strip()


def check_lme4_idioms(formula):
    """ValueError naming the glmm_ext way for ``offset(...)`` and ``cbind(...)`` in a formula string."""
    if not isinstance(formula, str):
        return
    match = _CALL["offset"].search(formula)
    if match:
        inner = _argument(formula, match.end() - 1)
        log = _LOG.match(inner)
        hint = (f"exposure={log.group(1).strip()!r} (a log link adds log(exposure)), or offset=np.log(data[...])"
                if log else f"offset= with the values of {inner!r} (a column name or one value per row)")
        raise ValueError(f"offset({inner}) in a formula is lme4's way; glmm_ext takes the offset as an argument: "
                         f"remove it from the formula and give {hint}")
    match = _CALL["cbind"].search(formula)
    if match:
        inner = _argument(formula, match.end() - 1)
        parts = [p.strip() for p in inner.split(",")]
        lhs = " + ".join(parts) if len(parts) == 2 else "successes + failures"
        raise ValueError(f"cbind({inner}) is lme4's two-column Binomial response; glmm_ext writes it "
                         f"'{lhs} ~ ...' (the successes and failures columns joined by +)")
