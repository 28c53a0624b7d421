"""formula_mode="safe": what the grammar accepts gives patsy's own fit; everything else is refused, node type by
node type, wherever it sits (fixed part, response, inside I(...) and transforms, inside a bar term, the grouping
factor, the command line), before anything runs.

Every refused formula carries a payload that would create a sentinel file in tmp_path if it were evaluated: the
file must not exist afterwards, and the ValueError must name the offending token (its exact repr as the
message prints it, not just any piece of the formula, which the message also quotes).
"""
import warnings

import numpy as np
import pandas as pd
import pytest

from glmm_ext import GLMM

from conftest import run_cli

RNG = np.random.default_rng(0)
DF = pd.DataFrame({"y": RNG.normal(size=60), "x1": RNG.normal(size=60), "x2": RNG.normal(size=60),
                   "g": np.repeat(np.arange(12), 5)})

# (node type, payload, how the message describes it, the token it names); {f} is the sentinel file
PAYLOADS = [
    ("builtin __import__", "__import__('os').system('touch {f}')", "the attribute", "__import__('os').system"),
    ("builtin open", "open('{f}', 'w')", "the call of", "open"),
    ("builtin eval", "eval(\"open('{f}', 'w')\")", "the call of", "eval"),
    ("builtin exec", "exec(\"open('{f}', 'w')\")", "the call of", "exec"),
    ("builtin getattr", "getattr(__builtins__, 'open')('{f}', 'w')", "the call of", "getattr(__builtins__, 'open')"),
    ("attribute of __builtins__", "__builtins__.open('{f}', 'w')", "the attribute", "__builtins__.open"),
    ("numpy function outside the list", "np.savetxt('{f}', x1)", "the attribute", "np.savetxt"),
    ("attribute of an allowed name", "np.log.__globals__['__builtins__']['open']('{f}', 'w')", "the call of",
     "np.log.__globals__['__builtins__']['open']"),
    ("dunder of np", "np.__class__", "the expression", "np.__class__"),
    ("dunder of np.log", "np.log.__globals__", "the expression", "np.log.__globals__"),
    ("call on a call's result", "__import__('os').system('touch {f}').log(x1)", "the attribute",
     "__import__('os').system('touch {f}').log"),
    ("allowed attribute on open()", "open('{f}', 'w').log(x1)", "the attribute", "open('{f}', 'w').log"),
    ("method of a transform's result", "np.log(x1).tofile('{f}')", "the attribute", "np.log(x1).tofile"),
    ("attribute of C()", "C(x1).__class__", "the expression", "C(x1).__class__"),
    ("subscript", "[open('{f}', 'w')][0]", "the expression", "[open('{f}', 'w')][0]"),
    ("subscript of a column", "x1[open('{f}', 'w')]", "the expression", "x1[open('{f}', 'w')]"),
    ("list comprehension", "[open('{f}', 'w') for _ in x1]", "the expression", "[open('{f}', 'w') for _ in x1]"),
    ("set comprehension", "{{open('{f}', 'w') for _ in x1}}", "the expression", "{{open('{f}', 'w') for _ in x1}}"),
    ("generator", "(open('{f}', 'w') for _ in x1)", "the expression", "(open('{f}', 'w') for _ in x1)"),
    ("f-string", "f\"{{open('{f}', 'w')}}\"", "the expression", "f\"{{open('{f}', 'w')}}\""),
    ("f-string in Q", "Q(f\"{{open('{f}', 'w')}}\")", "Q(...) that does not name one column",
     "Q(f\"{{open('{f}', 'w')}}\")"),
    ("starred", "np.log(*[open('{f}', 'w')])", "the expression", "*[open('{f}', 'w')]"),
    ("walrus", "(z := open('{f}', 'w'))", "the expression", "(z := open('{f}', 'w'))"),
    ("keyword argument", "np.log(x1, out=open('{f}', 'w'))", "the keyword argument", "open('{f}', 'w')"),
    ("exponent", "x1 ** open('{f}', 'w').write('1')", "the exponent (a number of at most 100 is required)",
     "open('{f}', 'w').write('1')"),
    ("conditional", "np.log(x1 if open('{f}', 'w') else x1)", "the expression", "x1 if open('{f}', 'w') else x1"),
    ("comparison", "np.log(x1 < open('{f}', 'w'))", "the expression", "x1 < open('{f}', 'w')"),
    ("boolean operator", "np.log(x1 or open('{f}', 'w'))", "the expression", "x1 or open('{f}', 'w')"),
    ("not", "np.log(not open('{f}', 'w'))", "the expression", "not open('{f}', 'w')"),
]
# where the payload goes; a bar term is checked as "<group> ~ <term>"
PLACES = {"fixed part": "y ~ x1 + {e}", "response": "{e} ~ x1", "inside I()": "y ~ I({e})",
          "inside np.log()": "y ~ np.log({e})", "bar term": "y ~ x1 + ({e} | g)",
          "bar term after 1 +": "y ~ x1 + (1 + {e} | g)"}


def from_formula(formula, **kw):
    return GLMM.from_formula(formula, DF, formula_mode="safe", **kw)


def refuse(formula, sentinel, fragment, groups="g"):
    """The safe mode refuses `formula` with a ValueError containing `fragment`, and nothing ran."""
    kw = {} if "|" in formula else {"groups": groups}
    try:
        with pytest.raises(ValueError) as info:
            from_formula(formula, **kw)
    finally:
        assert not sentinel.exists(), f"{formula!r} was evaluated"
    assert fragment in str(info.value), (fragment, str(info.value))
    return str(info.value)


@pytest.mark.parametrize("place", list(PLACES))
@pytest.mark.parametrize("kind,payload,what,token", PAYLOADS, ids=[p[0] for p in PAYLOADS])
def test_safe_mode_refuses_each_node_type_everywhere(kind, payload, what, token, place, tmp_path):
    sentinel = tmp_path / "pwned"
    formula = PLACES[place].format(e=payload.format(f=sentinel))
    token = token.format(f=sentinel)
    refuse(formula, sentinel, f"does not accept {what} {token!r} in ")


@pytest.mark.parametrize("place", ["fixed part", "response", "bar term"])
def test_code_in_a_treatment_level_is_refused(place, tmp_path):
    sentinel = tmp_path / "pwned"
    formula = PLACES[place].format(e=f"C(x1, Treatment(open('{sentinel}', 'w')))")
    token = f"open('{sentinel}', 'w')"
    refuse(formula, sentinel, f"does not accept the reference level (a string or number is required) {token!r} in ")


@pytest.mark.parametrize("place", ["inside I()", "inside np.log()"])
def test_c_and_i_are_refused_inside_arithmetic(place, tmp_path):
    sentinel = tmp_path / "pwned"
    for inner, name in ((f"C(x1, Treatment(open('{sentinel}', 'w')))", "C"), ("I(x1)", "I")):
        refuse(PLACES[place].format(e=inner), sentinel, f"does not accept the call of {name!r} in ")


@pytest.mark.parametrize("place", list(PLACES))
def test_a_lambda_cannot_be_read(place, tmp_path):
    # ':' is read as the interaction operator '@': a lambda (or a dict, a slice) is no Python any more
    sentinel = tmp_path / "pwned"
    message = refuse(PLACES[place].format(e=f"(lambda: open('{sentinel}', 'w'))()"), sentinel, "cannot be read near")
    assert "lambda" in message.split("cannot be read near", 1)[1]


@pytest.mark.parametrize("payload", ["open('{f}', 'w')", "__import__('os').system('touch {f}')",
                                     "np.savetxt('{f}', x1)", "getattr(__builtins__, 'open')('{f}', 'w')"])
def test_code_as_the_grouping_factor_is_refused(payload, tmp_path):
    sentinel = tmp_path / "pwned"
    expr = payload.format(f=sentinel)
    message = refuse(f"y ~ x1 + (x1 | {expr})", sentinel, expr)
    assert "random-effects term" in message
    refuse(f"y ~ x1 + (1 | {expr})", sentinel, expr)


def test_dunder_grouping_name_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative payload path would land in tmp_path
    refuse("y ~ x1 + (x1 | np.__class__)", tmp_path / "pwned", "does not accept the expression 'np.__class__' in ")
    refuse("y ~ x1 + (1 | g.__class__)", tmp_path / "pwned", "groups column 'g.__class__' is not in the data")
    refuse("y ~ x1 + (x1 | open('pwned', 'w'))", tmp_path / "pwned",
           "the grouping factor must be a column name (got \"open('pwned', 'w')\")")


def test_names_that_are_not_columns_are_refused_by_name():
    for name in ("__import__", "open", "eval", "exec", "getattr", "__builtins__", "np", "globals"):
        with pytest.raises(ValueError) as info:
            from_formula(f"y ~ x1 + {name}", groups="g")
        assert f"does not accept the name (not a column of the data) {name!r} in " in str(info.value)


@pytest.mark.parametrize("kind,payload,what,token", [p for p in PAYLOADS if p[0] in (
    "builtin __import__", "builtin open", "numpy function outside the list", "call on a call's result",
    "attribute of an allowed name", "subscript", "walrus", "f-string")], ids=lambda v: v if " " in str(v) else None)
@pytest.mark.parametrize("place", ["fixed part", "inside I()", "bar term"])
def test_command_line_refuses_with_one_line_naming_the_token(kind, payload, what, token, place, tmp_path):
    DF.to_csv(tmp_path / "d.csv", index=False)
    sentinel = tmp_path / "pwned"
    formula = PLACES[place].format(e=payload.format(f=sentinel))
    args = ["d.csv", "--formula", formula] + ([] if "|" in formula else ["--groups", "g"])
    out = run_cli(args, tmp_path)
    code, err = out.returncode, out.stderr
    assert not sentinel.exists()
    assert code == 2 and err.count("\n") == 1, err
    assert f"{what} {token.format(f=sentinel)!r}" in err, err


INJECTIONS = ["y ~ x1 + I(__import__('os').system('touch {f}'))",
              "y ~ x1 + I(open('{f}', 'w').write('x'))",
              "y ~ x1 + C(x1, __import__('pathlib').Path('{f}').touch())",
              "y ~ x1 + np.log(__builtins__.open('{f}', 'w'))",
              "y ~ x1 + I((lambda: open('{f}', 'w'))())",
              "y ~ x1 + Q('x1'.join([open('{f}', 'w').name]))"]


@pytest.mark.parametrize("template", INJECTIONS)
def test_safe_mode_runs_no_code(template, tmp_path):
    target = tmp_path / "pwned"
    formula = template.format(f=target)
    with pytest.raises(ValueError, match="formula"):
        from_formula(formula, groups="g")
    assert not target.exists()


def test_cli_is_always_safe(tmp_path):
    DF.to_csv(tmp_path / "d.csv", index=False)
    target = tmp_path / "pwned"
    for formula in ("y ~ x1 + I(__import__('os').system('touch pwned'))", "y ~ x1 + I(exit(7))"):
        out = run_cli(["d.csv", "--formula", formula, "--groups", "g"], tmp_path)
        assert out.returncode == 2 and "safe" in out.stderr, out.stderr
    assert not target.exists()


ACCEPTED = ["y ~ x1 + x2", "y ~ x1 * x2 - 1", "y ~ x1:x2 + x1", "y ~ (x1 + x2) ** 2", "y ~ x1 / x2",
            "y ~ Q('x 1') + x2", "y ~ C(k) + x1", "y ~ C(k, Treatment(reference='c')) + x1",
            "y ~ C(k, Treatment('b'))", "y ~ I(x1 ** 2) + I(-x2 / 3 + 1)", "y ~ np.log(x3) + np.sqrt(x3)",
            "y ~ np.exp(x1 / 10) + np.abs(x1 - 1) + np.log1p(x3)", "y ~ center(x1) + standardize(x2) + scale(x3)",
            "y ~ 0 + x1", "y ~ -1 + x1 + 1"]


@pytest.mark.parametrize("formula", ACCEPTED)
def test_safe_mode_accepts_the_documented_grammar(formula):
    x3 = np.random.default_rng(4).gamma(2.0, 1.0, 60)
    df = DF.assign(**{"x 1": DF.x1, "x3": x3, "k": np.array(["a", "b", "c"])[np.arange(60) % 3]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        safe = GLMM.from_formula(formula, df, groups="g", formula_mode="safe").fit()
        python = GLMM.from_formula(formula, df, groups="g").fit()
    assert safe.llf == pytest.approx(python.llf, abs=1e-10)
    assert list(safe.params.index) == list(python.params.index)


def test_safe_mode_accepts_bar_terms():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        safe = GLMM.from_formula("y ~ x1 + (1 + np.log(x2 ** 2 + 1) | g)", DF, formula_mode="safe").fit()
        python = GLMM.from_formula("y ~ x1 + (1 + np.log(x2 ** 2 + 1) | g)", DF).fit()
    assert safe.llf == pytest.approx(python.llf, abs=1e-10)
