"""The whitelist: a Python expression AST (from `ast.parse`, never evaluated) built into an
unevaluated SymPy template node by node; anything not on the list is a `SymbnError`.

>>> import ast
>>> _Builder("<demo>").build(ast.parse("sqrt(v + eps)", mode="eval").body, 0)
sqrt(eps + v)
"""

from __future__ import annotations

import ast

import sympy as sp

from ..errors import SymbnError
from .util import _clip, _describe, _did_you_mean, _has_df, _kind, _words
from .vocabulary import (
    FUNCTIONS,
    INDEX,
    MAX_DEPTH,
    MAX_DERIVATIVE_DEPTH,
    MAX_EXPONENT,
    MAX_INTEGER,
    D,
    N,
    P,
    Vocabulary,
    builtin,
)


class _Builder:
    """Builds an unevaluated SymPy template from a Python expression AST, node by node,
    accepting the names of `vocabulary` (BatchNorm's by default)."""

    def __init__(self, at: str, vocabulary: Vocabulary | None = None):
        vocabulary = vocabulary or builtin()
        self.at = at
        self.vocab = vocabulary
        self.scalars = {name: sp.Symbol(name) for name in vocabulary.scalars}
        self.indexed = {name: sp.IndexedBase(name) for name in vocabulary.indexed}
        self.known = sorted([*INDEX, "N", *self.scalars, *self.indexed, *vocabulary.functions])
        self.f = sp.Symbol("f")
        self.bound: list[str] = []  # Sum variables in scope
        self.derivative_depth = 0

    def fail(self, message: str, node: ast.AST | None = None) -> SymbnError:
        piece = f" '{_clip(ast.unparse(node))}'" if node is not None else ""
        return SymbnError(f"{self.at}:{piece} {message}")

    def build(self, node: ast.AST, depth: int) -> sp.Expr:
        if depth > MAX_DEPTH:
            raise self.fail(f"nested more than {MAX_DEPTH} deep; simplify the expression")
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            raise self.fail(f"is not allowed ({_describe(node)}); claims use numbers, "
                            "+ - * / **, model names and "
                            f"{', '.join(self.vocab.functions)}", node)
        return method(node, depth + 1)

    # numbers and names -----------------------------------------------------------------
    def _Constant(self, node: ast.Constant, depth: int) -> sp.Expr:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int):
            hint = "exact rationals such as 1/2" if isinstance(value, float) else "integers"
            raise self.fail(f"is not allowed ({type(value).__name__} constant); use {hint}",
                            node)
        if value > MAX_INTEGER:
            raise self.fail(f"is larger than {MAX_INTEGER}", node)
        return sp.Integer(value)

    def _Name(self, node: ast.Name, depth: int) -> sp.Expr:
        name = node.id
        if name in self.scalars:
            if name == "f":
                raise self.fail(f"f appears only as D(f, ...) or P(f, {self.vocab.output}[i])",
                                node)
            return self.scalars[name]
        if name == "N":
            return N
        if name in INDEX:
            # an index names a row, never a number: i*dy[i] would break the row symmetry
            # that `check` relies on above EXHAUSTIVE_MAX_N
            raise self.fail(f"is an index and names a row: use it as x[{name}] or in "
                            f"KroneckerDelta({name}, k), not as a number", node)
        if name in self.indexed:
            raise self.fail(f"needs a row: write {name}[i] or {name}[2]", node)
        if name in self.vocab.functions:
            raise self.fail(f"is a function; call it as {name}(...)", node)
        raise self.fail(f"is not a known name{_did_you_mean(name, self.known)}", node)

    def _Subscript(self, node: ast.Subscript, depth: int) -> sp.Expr:
        base = node.value
        if not isinstance(base, ast.Name) or base.id not in self.indexed:
            raise self.fail(f"subscripts only apply to {', '.join(self.indexed)}", node)
        return self.indexed[base.id][self._row(node.slice, node)]

    def _row(self, node: ast.AST, whole: ast.AST) -> sp.Expr:
        if isinstance(node, ast.Name) and node.id in INDEX:
            return INDEX[node.id]
        if isinstance(node, ast.Constant) and type(node.value) is int:
            if node.value < 1:
                raise self.fail("rows are numbered from 1", whole)
            if node.value > MAX_INTEGER:
                raise self.fail(f"row larger than {MAX_INTEGER}", whole)
            return sp.Integer(node.value)
        name = ast.unparse(whole.value) if isinstance(whole, ast.Subscript) else "x"
        raise self.fail(f"is not a row: the row inside [...] must be one of the indices "
                        f"i, j, k or a number such as 2, e.g. {name}[j] or {name}[2]", whole)

    # arithmetic --------------------------------------------------------------------------
    def _UnaryOp(self, node: ast.UnaryOp, depth: int) -> sp.Expr:
        operand = self.build(node.operand, depth)
        if isinstance(node.op, ast.UAdd):
            return operand
        if isinstance(node.op, ast.USub):
            if operand.is_Number:
                return -operand
            return sp.Mul(sp.Integer(-1), operand, evaluate=False)
        raise self.fail("is not allowed (only unary + and -)", node)

    def _BinOp(self, node: ast.BinOp, depth: int) -> sp.Expr:
        op = node.op
        if isinstance(op, ast.Pow):
            base = self.build(node.left, depth)
            return sp.Pow(base, self._exponent(node.right, node), evaluate=False)
        if not isinstance(op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
            raise self.fail(f"operator {type(op).__name__} is not allowed; use + - * / **", node)
        a, b = self.build(node.left, depth), self.build(node.right, depth)
        if isinstance(op, ast.Add):
            return sp.Add(a, b, evaluate=False)
        if isinstance(op, ast.Sub):
            neg = -b if b.is_Number else sp.Mul(sp.Integer(-1), b, evaluate=False)
            return sp.Add(a, neg, evaluate=False)
        if isinstance(op, ast.Mult):
            return sp.Mul(a, b, evaluate=False)
        if b.is_Number and b == 0:
            raise self.fail("divides by zero", node)
        if a.is_Number and b.is_Number:
            return a / b  # the exact rational, e.g. 1/2
        return sp.Mul(a, sp.Pow(b, sp.Integer(-1), evaluate=False), evaluate=False)

    def _exponent(self, node: ast.AST, whole: ast.AST) -> sp.Rational:
        value = _constant(node)
        if value is None:
            raise self.fail("exponent must be a number such as 2, -1 or -3/2", whole)
        if value.q not in (1, 2) or abs(value) > MAX_EXPONENT:
            raise self.fail(f"exponent {value} is not allowed; exponents are integers or "
                            f"halves with absolute value at most {MAX_EXPONENT}", whole)
        return value

    # functions ---------------------------------------------------------------------------
    def _Call(self, node: ast.Call, depth: int) -> sp.Expr:
        functions = self.vocab.functions
        if not isinstance(node.func, ast.Name) or node.func.id not in functions:
            name = node.func.id if isinstance(node.func, ast.Name) else None
            hint = _did_you_mean(name, functions) if name else ""
            raise self.fail(f"calls something other than {', '.join(functions)}{hint}", node)
        name = node.func.id
        if node.keywords:
            raise self.fail("keyword arguments are not allowed", node)
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise self.fail("starred arguments are not allowed", node)
        if len(node.args) != FUNCTIONS[name]:
            raise self.fail(f"{name} takes {FUNCTIONS[name]} argument"
                            f"{'s' if FUNCTIONS[name] > 1 else ''}, got {len(node.args)}", node)
        return getattr(self, f"_call_{name}")(node, depth)

    def _call_sqrt(self, node: ast.Call, depth: int) -> sp.Expr:
        return sp.Pow(self.build(node.args[0], depth), sp.Rational(1, 2), evaluate=False)

    def _call_Sum(self, node: ast.Call, depth: int) -> sp.Expr:
        limits = node.args[1]
        if not (isinstance(limits, ast.Tuple) and len(limits.elts) == 3):
            raise self.fail("write Sum(e, (k, 1, N))", node)
        var, lower, upper = limits.elts
        if not (isinstance(var, ast.Name) and var.id in INDEX):
            raise self.fail("the summation index is i, j or k", node)
        if var.id in self.bound:
            raise self.fail(f"{var.id} is already a summation index here; use another", node)
        if not (isinstance(lower, ast.Constant) and type(lower.value) is int
                and lower.value == 1):
            raise self.fail("sums start at 1: write Sum(e, (k, 1, N))", node)
        if not (isinstance(upper, ast.Name) and upper.id == "N"):
            raise self.fail("sums run to N: write Sum(e, (k, 1, N))", node)
        self.bound.append(var.id)
        try:
            body = self.build(node.args[0], depth)
        finally:
            self.bound.pop()
        return sp.Sum(body, (INDEX[var.id], sp.Integer(1), N))

    def _call_KroneckerDelta(self, node: ast.Call, depth: int) -> sp.Expr:
        a, b = (self._row(arg, node) for arg in node.args)
        return sp.KroneckerDelta(a, b, evaluate=False)

    def _call_D(self, node: ast.Call, depth: int) -> sp.Expr:
        vocab = self.vocab
        leaves = [f"{name}[j]" if name in self.indexed else name for name in vocab.leaves]
        targets = [name for name in leaves if name.endswith("]")]
        targets += [f"{vocab.output}[i]", *(name for name in leaves if name not in targets)]
        wrt = self._model_name(node.args[1], node)
        if _kind(wrt) not in (*vocab.leaves, vocab.output):
            raise self.fail("differentiates with respect to "
                            f"{_kind(wrt)}; D(a, b) needs b = {_words(targets, 'or')}", node)
        a = self._derivand(node.args[0], depth)
        out, dy = f"{vocab.output}[i]", f"{vocab.gradient}[i]"
        if _kind(wrt) == vocab.output and a != self.f:
            # y[i] is a node, a function of the leaves: a derivative with respect to it
            # holding the leaves fixed would give equal expressions unequal derivatives
            # (D(y[1], y[1]) = 1 but D(gamma*xhat[1] + beta, y[1]) = 0)
            raise self.fail(f"differentiates with respect to {wrt}, a node; D(a, {out}) is "
                            f"defined only for a = f (df/d{out} = {dy}); differentiate with "
                            f"respect to a leaf {_words(leaves, 'or')}", node)
        if a != self.f and _has_df(a, vocab.gradient):
            varying = [name for name, kind in vocab.leaves.items()
                       if kind not in ("constant", "positive")]
            # dy[i] = df/dy[i] depends on y, hence on x, gamma and beta, through the
            # arbitrary f: its derivatives are second derivatives of f, which symbn does
            # not model, so treating dy as constant would prove false claims
            raise self.fail(f"differentiates an expression containing {vocab.gradient} or a "
                            f"derivative of f; {dy} = df/d{out} depends on "
                            f"{_words(varying, 'and')} through the arbitrary f, and second "
                            "derivatives of f are not modelled; state the claim without "
                            f"differentiating {vocab.gradient}", node)
        return D(a, wrt)

    def _call_P(self, node: ast.Call, depth: int) -> sp.Expr:
        child = self._model_name(node.args[0], node, allow_f=True)
        parent = self._model_name(node.args[1], node)
        ck, pk = _kind(child), _kind(parent)
        parents = self.vocab.parents
        if ck not in parents:
            raise self.fail(f"{ck} is not a node of the graph; P(a, b) needs a node a "
                            f"({', '.join(parents)})", node)
        if pk not in parents[ck]:
            raise self.fail(f"{pk} is not a direct parent of {ck}; the parents of {ck} are "
                            f"{', '.join(parents[ck])}", node)
        if (ck, pk) in self.vocab.same_row:
            r1, r2 = child.indices[0], parent.indices[0]
            if r1.is_Integer and r2.is_Integer and r1 != r2:
                raise self.fail(f"{parent} is not a direct parent of {child}; "
                                f"only row {r1} is", node)
        return P(child, parent)

    def _derivand(self, node: ast.AST, depth: int) -> sp.Expr:
        if isinstance(node, ast.Name) and node.id == "f":
            return self.f
        self.derivative_depth += 1
        try:
            if self.derivative_depth > MAX_DERIVATIVE_DEPTH:
                raise self.fail(f"D and P nest more than {MAX_DERIVATIVE_DEPTH} deep")
            return self.build(node, depth)
        finally:
            self.derivative_depth -= 1

    def _model_name(self, node: ast.AST, whole: ast.AST, allow_f: bool = False) -> sp.Expr:
        if allow_f and isinstance(node, ast.Name) and node.id == "f":
            return self.f
        vocab = self.vocab
        if (isinstance(node, ast.Name) and node.id in self.scalars and node.id != "f"
                and node.id not in vocab.names):
            return self.scalars[node.id]
        if isinstance(node, ast.Subscript):
            return self._Subscript(node, 0)
        names = [f"{name}[j]" if name in vocab.leaves else f"{name}[i]"
                 for name in self.indexed if name != vocab.gradient]
        names += [name for name in self.scalars if name != "f" and name not in vocab.names]
        raise self.fail(f"needs a model name here ({', '.join(names)})", whole)


def _constant(node: ast.AST) -> sp.Rational | None:
    """An exponent written as a number: 2, -1, 1/2, -3/2, (-3)/2; None otherwise."""
    if isinstance(node, ast.Constant) and type(node.value) is int and node.value <= 1000:
        return sp.Integer(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _constant(node.operand)
        if inner is None:
            return None
        return -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        a, b = _constant(node.left), _constant(node.right)
        if a is None or b is None or b == 0 or not (a.is_Integer and b.is_Integer):
            return None
        return sp.Rational(a, b)
    return None
