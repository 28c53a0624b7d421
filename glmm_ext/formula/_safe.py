"""Reading a formula without evaluating it: the columns it names, and the checker of the safe mode.

patsy (like statsmodels) evaluates the Python inside a formula, so ``I(__import__('os').system(...))``
runs a command.  ``formula_mode="safe"`` parses the formula with Python's ``ast`` first and accepts only

* column names and ``Q("name")``, numbers, the operators ``~ + - * / : **`` and parentheses;
* ``C(col)`` and ``C(col, Treatment(reference=...))`` (also ``Treatment("level")``);
* ``I(...)`` over arithmetic (``+ - * / **``, unary minus) of columns and numbers;
* the transforms ``np.log``, ``np.log1p``, ``np.exp``, ``np.sqrt``, ``np.abs``, ``center``, ``standardize``
  and ``scale`` of such arithmetic.

Anything else (other attributes, dunder names, other calls, lambdas, subscripts, strings outside
``Q``/``Treatment``, keywords) is a ValueError naming the token; nothing is evaluated.

The safe mode also bounds what a formula can cost, from its syntax tree and before patsy sees it:
at most MAX_FORMULA_LENGTH characters, MAX_TERMS model terms once ``*``, ``:``, ``/`` and ``**``
are expanded (``(x0 + ... + x15)**16`` is 65,535 terms), and a syntax tree at most MAX_DEPTH
levels deep (each operation of a chain ``a + b + c`` is a level; patsy's recursive reader fails
near 450).  The walks are iterative, so no formula raises a RecursionError here.
"""
import ast
import io
import math
import tokenize
from dataclasses import dataclass, field

NUMPY_TRANSFORMS = ("log", "log1p", "exp", "sqrt", "abs")
PATSY_TRANSFORMS = ("center", "standardize", "scale")
FORMULA_OPERATORS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.MatMult)  # ':' is read as '@'
ARITHMETIC_OPERATORS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)
MAX_EXPONENT = 100
#: safe-mode limits (see the module notes)
MAX_TERMS = 300
MAX_DEPTH = 320
MAX_FORMULA_LENGTH = 20_000


@dataclass
class FormulaColumns:
    """Columns of the data a formula names: response side, predictor side, and those inside C(...)."""

    response: list = field(default_factory=list)
    predictors: list = field(default_factory=list)
    categorical: set = field(default_factory=set)


def split_formula(formula):
    """(left, right) Python expressions of a formula: '~' splits them, ':' becomes '@'."""
    if not isinstance(formula, str):
        raise TypeError(f"formula must be a string (got {type(formula).__name__})")
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(formula.replace("\n", " ")).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError) as exc:
        raise ValueError(f"formula {formula!r} cannot be read: {exc}") from None
    sides, depth = [[]], 0
    for tok in tokens:
        kind, text = tok.type, tok.string
        if kind in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER, tokenize.INDENT, tokenize.DEDENT):
            continue
        if kind == tokenize.OP and text in "([{":
            depth += 1
        elif kind == tokenize.OP and text in ")]}":
            depth -= 1
        if kind == tokenize.OP and text == "~" and depth == 0:
            sides.append([])
            continue
        if kind == tokenize.OP and text == ":":
            text = "@"
        sides[-1].append((kind, text))
    if len(sides) != 2:
        detail = "no '~'" if len(sides) == 1 else "more than one '~'"
        raise ValueError(f"formula {formula!r} has {detail}; write 'response ~ predictors'")
    return tuple(tokenize.untokenize(side).strip() if side else "" for side in sides)


def _short(formula, limit=120):
    """The formula for a message, cut to `limit` characters."""
    return formula if len(formula) <= limit else f"{formula[:limit]}... ({len(formula):,} characters)"


def _parse(text, formula):
    try:
        return ast.parse(text or "1", mode="eval").body
    except SyntaxError as exc:
        raise ValueError(f"formula {_short(formula)!r} cannot be read near {str(exc.text)[:80]!r}") from None
    except (RecursionError, MemoryError):  # Python's own parser gives up on very deep nesting
        raise ValueError(f"formula {_short(formula)!r} is nested too deeply to be read (the safe mode accepts a "
                         f"syntax tree at most {MAX_DEPTH} levels deep)") from None


def tree_depth(node):
    """Levels of the syntax tree below and including `node` (iterative: no recursion limit)."""
    deepest, stack = 0, [(node, 1)]
    while stack:
        current, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(current)
                     if not isinstance(child, (ast.expr_context, ast.operator, ast.unaryop)))
    return deepest


def _exponent_value(node):
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, int) \
        and not isinstance(node.value, bool) else 1


def _interaction_terms(count, order, cap):
    """Terms of (t_1 + ... + t_count)**order: the non-empty subsets of at most `order` terms (capped)."""
    total = 0
    for k in range(1, min(max(order, 1), count) + 1):
        total += math.comb(count, k)
        if total > cap:
            return cap + 1
    return total


def term_count(node, cap=MAX_TERMS):
    """An upper bound of the model terms a formula side expands to (patsy's rules), at most cap + 1.

    a + b: t(a) + t(b); a - b: t(a); a:b: t(a) t(b); a*b: t(a) + t(b) + t(a) t(b); a/b: t(a) + t(a) t(b);
    a**n: the subsets of at most n of a's terms; a number (intercept) 0; any other value 1.
    """
    counts, stack = {}, [(node, False)]
    while stack:
        current, expanded = stack.pop()
        binary = isinstance(current, ast.BinOp) and isinstance(current.op, FORMULA_OPERATORS)
        unary = isinstance(current, ast.UnaryOp) and isinstance(current.op, (ast.USub, ast.UAdd))
        if (binary or unary) and not expanded:
            stack.append((current, True))
            if binary:
                stack.append((current.left, False))
                if not isinstance(current.op, ast.Pow):
                    stack.append((current.right, False))
            else:
                stack.append((current.operand, False))
            continue
        if binary:
            a = counts.pop(id(current.left))
            op = current.op
            if isinstance(op, ast.Pow):
                value = _interaction_terms(a, _exponent_value(current.right), cap)
            else:
                b = counts.pop(id(current.right))
                value = {ast.Add: a + b, ast.Sub: a, ast.MatMult: a * b, ast.Mult: a + b + a * b,
                         ast.Div: a + a * b}[type(op)]
        elif unary:
            child = counts.pop(id(current.operand))
            value = 0 if isinstance(current.op, ast.USub) else child
        elif isinstance(current, ast.Constant) and isinstance(current.value, (int, float)):
            value = 0
        else:
            value = 1
        counts[id(current)] = min(value, cap + 1)
    return counts[id(node)]


def check_cost(formula, trees):
    """ValueError when a formula exceeds the safe mode's bounds on length, terms or depth."""
    if len(formula) > MAX_FORMULA_LENGTH:
        raise ValueError(f"formula of {len(formula):,} characters: the safe mode accepts at most "
                         f"{MAX_FORMULA_LENGTH:,} (MAX_FORMULA_LENGTH)")
    terms = term_count(trees[-1])
    if terms > MAX_TERMS:
        raise ValueError(f"formula {_short(formula)!r} expands to more than {MAX_TERMS} terms: the safe mode "
                         f"accepts at most {MAX_TERMS} model terms (MAX_TERMS; interactions such as (a + b + c)**3 "
                         "or a*b*c count every term they create)")
    depth = max(tree_depth(tree) for tree in trees)
    if depth > MAX_DEPTH:
        raise ValueError(f"formula {_short(formula)!r} is nested {depth} levels deep: the safe mode accepts a "
                         f"syntax tree at most {MAX_DEPTH} levels deep (MAX_DEPTH; each operation of a chain "
                         "a + b + c counts as a level)")


def formula_columns(formula, columns):
    """Columns of the data a formula names (lenient: any Python is walked, nothing is evaluated)."""
    lhs, rhs = split_formula(formula)
    found = FormulaColumns()
    for side, target in ((lhs, found.response), (rhs, found.predictors)):
        try:
            tree = ast.parse(side or "1", mode="eval")
        except (SyntaxError, RecursionError, MemoryError):  # patsy may still read it; it will report the problem
            target.extend(c for c in columns if isinstance(c, str) and c in side)
            continue
        for node in ast.walk(tree):
            name = _column_of(node, columns)
            if name is not None and name not in target:
                target.append(name)
            if side is rhs and isinstance(node, ast.Call) and _func_name(node) == "C":
                found.categorical.update(n for n in map(lambda x: _column_of(x, columns), ast.walk(node))
                                         if n is not None)
    return found


def _func_name(call):
    return call.func.id if isinstance(call.func, ast.Name) else None


def _column_of(node, columns):
    """The column a Name or Q("name") node refers to, else None."""
    if isinstance(node, ast.Name) and node.id in columns:
        return node.id
    if isinstance(node, ast.Call) and _func_name(node) == "Q" and len(node.args) == 1 \
            and isinstance(node.args[0], ast.Constant) and node.args[0].value in columns:
        return node.args[0].value
    return None


def check_safe(formula, columns):
    """Raise ValueError naming the first token the safe mode does not accept, or the first limit the
    formula exceeds (terms, depth, length; see `check_cost`); return the FormulaColumns."""
    if isinstance(formula, str) and len(formula) > MAX_FORMULA_LENGTH:
        check_cost(formula, [])
    lhs, rhs = split_formula(formula)
    trees = [_parse(side, formula) for side in (lhs, rhs)]
    check_cost(formula, trees)
    checker = _SafeChecker(formula, set(columns))
    try:
        for tree in trees:
            checker.formula_term(tree)
    except RecursionError:  # nested calls recurse; the depth bound keeps this out of reach, but never a traceback
        raise ValueError(f"formula {_short(formula)!r} nests its calls too deeply for the safe mode (MAX_DEPTH "
                         f"{MAX_DEPTH})") from None
    return formula_columns(formula, columns)


class _SafeChecker:
    def __init__(self, formula, columns):
        self.formula = formula
        self.columns = columns

    def reject(self, node, what):
        try:
            token = ast.unparse(node) if isinstance(node, ast.AST) else str(node)
        except RecursionError:  # pragma: no cover - depth is bounded by check_cost first
            token = type(node).__name__
        token = token if len(token) <= 200 else token[:200] + "..."
        raise ValueError(f"formula_mode='safe' does not accept {what} {token!r} in {_short(self.formula)!r} "
                         "(it accepts "
                         "columns, Q(), numbers, + - * / : **, C(), I(arithmetic), np.log/log1p/exp/sqrt/abs, "
                         "center, standardize, scale)")

    def number(self, node):
        return isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
            and not isinstance(node.value, bool)

    def name(self, node):
        if node.id not in self.columns:
            self.reject(node, "the name (not a column of the data)")

    def formula_term(self, node):
        """Formula level: +, -, *, /, :, ** between terms; columns, numbers and the accepted calls."""
        self.operations(node, FORMULA_OPERATORS, inside_i=False)

    def arithmetic(self, node):
        """Inside I(...) and transforms: + - * / ** and unary minus over columns, numbers and transforms."""
        self.operations(node, ARITHMETIC_OPERATORS, inside_i=True)

    def operations(self, node, operators, inside_i):
        """Binary `operators` and unary signs down to the values; an exponent must be a small number.
        Iterative over the chain (a + b + ... is as deep as it is long), left to right."""
        stack = [node]
        while stack:
            current = stack.pop()
            if isinstance(current, ast.BinOp) and isinstance(current.op, operators):
                if isinstance(current.op, ast.Pow):
                    self.exponent(current.right)
                else:
                    stack.append(current.right)
                stack.append(current.left)
            elif isinstance(current, ast.UnaryOp) and isinstance(current.op, (ast.USub, ast.UAdd)):
                stack.append(current.operand)
            else:
                self.value(current, inside_i=inside_i)

    def exponent(self, node):
        inner = node.operand if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) else node
        if not self.number(inner) or abs(inner.value) > MAX_EXPONENT:
            self.reject(node, f"the exponent (a number of at most {MAX_EXPONENT} is required)")

    def value(self, node, inside_i):
        if self.number(node):
            return
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.Constant):
            self.reject(node, "the constant (strings only inside Q(...) or Treatment(...))")
        if not isinstance(node, ast.Call):
            self.reject(node, "the expression")
        self.call(node, inside_i)

    def call(self, node, inside_i):
        if node.keywords and not (_func_name(node) == "C"):
            self.reject(node.keywords[0].value, "the keyword argument")
        func = node.func
        if isinstance(func, ast.Attribute):
            if not (isinstance(func.value, ast.Name) and func.value.id in ("np", "numpy")
                    and func.attr in NUMPY_TRANSFORMS):
                self.reject(func, "the attribute")
            return self.one_argument(node)
        name = _func_name(node)
        if name in PATSY_TRANSFORMS:
            return self.one_argument(node)
        if name == "Q":
            if len(node.args) != 1 or not isinstance(node.args[0], ast.Constant) \
                    or node.args[0].value not in self.columns:
                self.reject(node, "Q(...) that does not name one column")
            return
        if name == "I" and not inside_i:
            return self.one_argument(node)
        if name == "C" and not inside_i:
            return self.categorical(node)
        self.reject(func, "the call of")

    def one_argument(self, node):
        if len(node.args) != 1 or node.keywords:
            self.reject(node, "the call (exactly one argument is accepted)")
        self.arithmetic(node.args[0])

    def categorical(self, node):
        if node.keywords:
            self.reject(node.keywords[0].value, "the keyword argument of C()")
        if not 1 <= len(node.args) <= 2:
            self.reject(node, "C() with other than one or two arguments")
        column = node.args[0]
        if _column_of(column, self.columns) is None:
            self.reject(column, "C() of something other than a column")
        if len(node.args) == 2:
            self.treatment(node.args[1])

    def treatment(self, node):
        if not (isinstance(node, ast.Call) and _func_name(node) == "Treatment"):
            self.reject(node, "the contrast (only Treatment(reference=...) is accepted)")
        given = list(node.args) + [k.value for k in node.keywords]
        if len(given) != 1 or any(k.arg != "reference" for k in node.keywords):
            self.reject(node, "Treatment() other than Treatment(reference=level)")
        level = given[0]
        if isinstance(level, ast.UnaryOp) and isinstance(level.op, ast.USub):
            level = level.operand
        if not (isinstance(level, ast.Constant) and isinstance(level.value, (str, int, float))):
            self.reject(given[0], "the reference level (a string or number is required)")


def formula_names(formula):
    """Every bare name in a formula (columns, functions, the caller's variables), nothing evaluated."""
    names = []
    for side in split_formula(formula):
        try:
            tree = ast.parse(side or "1", mode="eval")
        except (SyntaxError, RecursionError, MemoryError):
            continue
        names += [n.id for n in ast.walk(tree) if isinstance(n, ast.Name)]
    return list(dict.fromkeys(names))
