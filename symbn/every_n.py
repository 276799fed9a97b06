"""Any model's closed forms for every N at once: `verify_model(model, n="all")`.

N is a positive integer symbol.  The model file's templates (`Model.nodes`, `names`,
`results`) are composed by substitution into SymPy expressions over `IndexedBase`s x, gamma
(along leaves), dy and plain symbols for the scalar leaves; every Sum gets a fresh bound
index (k'1, k'2, ...), so no substitution, derivative or row of the claim can reach a bound
index (alpha-conversion by construction).  Forward mode differentiates the composed output
with SymPy's `diff`: D(f, w) = sum_r dy_r d y_r / d w, where w is leaf[j] for an element or
along leaf (d x_p / d x_j = delta_pj inside the sums) and the scalar for a set, constant or
positive leaf.  Backward mode is the path sum of `Model.paths(leaf)`: every element node on
a path gets its own row r (summed over 1..N), the leaf the row j; the local partial of a
child at row a with respect to an element parent at row b is `diff` of the child's template
(parents held as symbols) by parent[b], which is delta_ab for a same-row use (x[i] in
xhat[i]) and sum_k delta_kb (...) for a use through a Sum (x[k] in ms); products of local
partials are composed and summed over every intermediate row.

Deciding an identity: the canonical form of `symbn.general.Normalizer` (rules R1-R3, each
proved by SymPy's summation code and listed in the report) turns every Sum into a polynomial
in power sums S(x^a gamma^b dy^c) = sum_i x_i^a gamma_i^b dy_i^c over the model's element
and along leaves and dy, taken as indeterminates.  The model's square roots must share one
radicand up to a positive constant square factor, c * w + p with p a scalar leaf (eps) and
c a nonzero rational: sqrt(...) = s and p = (s^2 - w)/c.  The claim is proved when the
numerator of lhs - rhs is the zero polynomial in N, s, the scalars, the leaves at row j and
the S(...).

Why each step is sound:

- R1-R3 are identities for every N >= 1; R3's condition 1 <= j <= N is reported for the
  free j and discharged for a bound row, which ranges over 1..N.  If SymPy does not confirm
  a rule, no claim is proved.
- Distinct symbols (x_j, delta_ab, S(...)) are treated as independent indeterminates: a zero
  polynomial stays zero under any specialization (the relations among power sums at small N,
  rows that coincide), so `proved` holds for every N >= min_n (the model's domain condition:
  N >= 2 for the unbiased variance) and every 1 <= j <= N, wherever both sides are defined.
  The converse fails (the S(...) are dependent for small N), so a nonzero form is never a
  disproof: the claim is then decided at N = min_n..min_n+3 by the exact concrete prover
  (`symbn.verify_model`), and is `disproved` only with its exact witness, else `unknown`.
- s = sqrt(c w + p) and p = (s^2 - w)/c is a change of variables (p, rest) -> (s, rest),
  a bijection of the points where the root is real; a zero rational function in s is zero
  at every such point where it is defined.  Square roots of another form, several radicands
  or other roots are `unknown` with the reason.
- Definedness: every divisor and radicand of both sides is checked by the structural sign
  rules of `symbn.prove.radicals` with N = M + min_n - 1, M >= 1 (so N - 1 > 0 when min_n = 2);
  if all are proved nonzero (radicands nonnegative), the claim holds for every N >= min_n,
  else "wherever defined" is stated, and a divisor whose canonical form is zero (undefined
  for every N) makes the claim `unknown`, never vacuously `proved`.
- Only one set (D = 1) is modelled: the sets are independent and shared leaves sum over
  them, which `verify_model(model, n, d)` checks for a concrete N and D.

>>> report = verify_every_n("rmsnorm")
>>> report["backward/dx"].verdict, report.info["n"]
('proved', 'all')
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from itertools import pairwise

import sympy as sp

from .derivation import N
from .errors import SymbnError
from .general.normal import NONZERO, Normalizer, Unsupported, _rules, claim_note
from .graph import INDEXED_KINDS, Model
from .prove import DISPROVED, PROVED, UNKNOWN
from .prove.radicals import NEG, NONNEG, POS, Signs, needs_rewrite, rewrite
from .report import Report, Result

METHOD = "canonical form, symbolic N"
CONCRETE_SIZES = 4  # a nonzero canonical form is tried at N = min_n .. min_n + 3
_S = sp.Symbol("s'", positive=True)  # the square root of the model's radicand
_M = sp.Symbol("M'", integer=True, positive=True)  # N = M + min_n - 1 for the sign rules


class SymbolicModel:
    """A model file's templates composed for symbolic N, forward and backward mode.

    >>> sm = SymbolicModel(load_model("rmsnorm"))
    >>> sm.set_node("ms")
    Sum(x[k'1]**2, (k'1, 1, N))/N
    """

    def __init__(self, model: Model):
        self.m = model
        self.j = sp.Symbol("j", integer=True, positive=True)
        self._count = 0
        self._sets: dict[str, sp.Expr] = {}
        self._elements: dict[tuple, sp.Expr] = {}

    # -- translation of templates ---------------------------------------------------------
    def fresh(self, prefix: str = "k") -> sp.Symbol:
        """A new row symbol, never a name a model file can write (k'1, r'2, ...)."""
        self._count += 1
        return sp.Symbol(f"{prefix}'{self._count}", integer=True, positive=True)

    def indexed(self, name: str) -> bool:
        return name == self.m.gradient or (name in self.m.leaves
                                           and self.m.leaves[name] in INDEXED_KINDS) \
            or (name in self.m.nodes and self.m.nodes[name].element)

    def run(self, e: sp.Expr, env: dict, keep: bool = False) -> sp.Expr:
        """A template with its indices bound by `env` (index name -> row symbol).

        Nodes are composed down to the leaves, or with `keep` left as references: name for a
        set node, name[row] for an element node.  Names are always expanded.
        """
        m = self.m
        if e.is_Number:
            return e
        if isinstance(e, sp.Indexed):
            name, row = str(e.base), self._row(e.indices[0], env)
            if name in m.nodes and not keep:
                return self.element(name, row)
            return sp.IndexedBase(name)[row]
        if e.is_Symbol:
            if e == N:
                return N
            if e.name in m.names:
                return self.run(m.names[e.name].template, {}, keep)
            if e.name in m.nodes:
                return sp.Symbol(e.name) if keep else self.set_node(e.name)
            if e.name in m.leaves:
                return sp.Symbol(e.name)
            raise Unsupported(f"{e} has no symbolic-N meaning here")
        if isinstance(e, sp.Sum):  # SymPy merges nested sums: limits innermost first
            inner, limits = dict(env), []
            for var, lower, upper in e.limits:
                bound = self.fresh()
                inner[var.name] = bound
                limits.append((bound, self.run(lower, env), self.run(upper, env)))
            out = self.run(e.function, inner, keep)
            for limit in limits:
                out = sp.Sum(out, limit)
            return out
        if isinstance(e, sp.KroneckerDelta):
            return sp.KroneckerDelta(*[self._row(a, env) for a in e.args])
        if e.is_Add or e.is_Mul or e.is_Pow:
            return e.func(*[self.run(a, env, keep) for a in e.args])
        raise Unsupported(f"{type(e).__name__} in {e}")

    def _row(self, e: sp.Expr, env: dict) -> sp.Symbol:
        if e.is_Symbol and e.name in env:
            return env[e.name]
        raise Unsupported(f"row {e} is not an index bound here (a concrete row has no "
                          "symbolic-N meaning)")

    def set_node(self, name: str) -> sp.Expr:
        if name not in self._sets:
            self._sets[name] = self.run(self.m.nodes[name].template, {})
        return self._sets[name]

    def element(self, name: str, row: sp.Symbol) -> sp.Expr:
        key = (name, row)
        if key not in self._elements:
            self._elements[key] = self.run(self.m.nodes[name].template, {"i": row})
        return self._elements[key]

    def compose(self, e: sp.Expr) -> sp.Expr:
        """Node references (mu, xhat[r]) replaced by their composed definitions."""
        mapping = {t: self.element(str(t.base), t.indices[0]) for t in e.atoms(sp.Indexed)
                   if str(t.base) in self.m.nodes}
        mapping.update({t: self.set_node(t.name) for t in e.free_symbols
                        if t.is_Symbol and t.name in self.m.nodes
                        and not self.m.nodes[t.name].element})
        return e.xreplace(mapping)

    # -- the claims' sides ----------------------------------------------------------------
    def wrt(self, leaf: str) -> sp.Expr:
        """The variable D(f, .) is taken with respect to: leaf[j] or the scalar leaf."""
        return sp.IndexedBase(leaf)[self.j] if self.indexed(leaf) else sp.Symbol(leaf)

    def closed(self, leaf: str) -> sp.Expr:
        """The model's closed form of D(f, leaf[j]), composed to the leaves."""
        env = {"j": self.j} if self.indexed(leaf) else {}
        return self.run(self.m.results[leaf].template, env)

    def forward(self, leaf: str) -> sp.Expr:
        """sum_r dy_r d y_r / d leaf[j], y_r composed and differentiated by SymPy `diff`."""
        r = self.fresh("r")
        dy = sp.IndexedBase(self.m.gradient)
        return sp.Sum(dy[r] * sp.diff(self.element(self.m.output, r), self.wrt(leaf)),
                      (r, 1, N))

    def local(self, child: str, parent: str, a: sp.Symbol | None, b: sp.Symbol | None):
        """d child[a] / d parent[b], the child's other parents held fixed (SymPy `diff`)."""
        template = self.run(self.m.nodes[child].template, {"i": a} if a is not None else {},
                            keep=True)
        target = sp.IndexedBase(parent)[b] if b is not None else sp.Symbol(parent)
        return sp.diff(template, target)

    def backward(self, leaf: str) -> sp.Expr:
        """The sum over the paths leaf -> ... -> y -> f of the products of local partials,
        summed over the row of every element node on the path."""
        dy = sp.IndexedBase(self.m.gradient)
        total = sp.Integer(0)
        for path in self.m.paths(leaf):
            rows = {leaf: self.j if self.indexed(leaf) else None}
            for name in path[1:-1]:
                rows[name] = self.fresh("r") if self.indexed(name) else None
            product = dy[rows[self.m.output]]  # d f / d y_r, f arbitrary
            for parent, child in pairwise(path[:-1]):
                product *= self.local(child, parent, rows[child], rows[parent])
            limits = [(rows[name], 1, N) for name in path[1:-1] if rows[name] is not None]
            total += sp.Sum(self.compose(product), *limits)
        return total


def load_model(name: str | Model) -> Model:
    from .models import load

    return name if isinstance(name, Model) else load(name)


# ---------------------------------------------------------------------------------------
# the canonical form
# ---------------------------------------------------------------------------------------


class Radicals:
    """The model's square roots: sqrt(B)**k of a composed side becomes (c s)**k when the
    canonical form of B is c^2 (a p + w), p a scalar leaf, a a nonzero rational, c > 0
    constant (a power of N allowed) and w free of p; p = (s^2 - w)/a afterwards.

    >>> sm = SymbolicModel(load_model("rmsnorm"))
    >>> rad = Radicals([sp.Symbol("eps")])
    >>> ms_eps = sm.set_node("ms") + sp.Symbol("eps")
    >>> rad.replace(sp.sqrt(4 * ms_eps)), rad.leaf, rad.a, rad.w
    (s', eps, 4, 4*S(x^2)/N)
    >>> rad.replace(1 / sp.sqrt(ms_eps))
    2/s'
    """

    def __init__(self, scalars: list):
        self.scalars = scalars
        self.base = self.leaf = self.a = self.w = None
        self._normal: dict = {}

    def normal(self, base: sp.Expr) -> sp.Expr:
        if base not in self._normal:
            # every row the radicand names, through x[k], KroneckerDelta(j, k) or k itself
            # (rows are the integer symbols, N and M' aside); a root that depends on a row
            # summed outside it is one root per row, not one s
            bound = {var for t in base.atoms(sp.Sum) for var, _, _ in t.limits}
            rows = {r for r in base.free_symbols if r.is_integer} - bound - {N, _M}
            if any(str(r) != "j" for r in rows):
                raise Unsupported(f"a square root that depends on a summed row: sqrt({base})")
            self._normal[base] = sp.expand(Normalizer().normal(base))
        return self._normal[base]

    def _choose(self, base: sp.Expr) -> bool:
        for p in self.scalars:
            a = sp.diff(base, p)
            if a.is_Rational and a != 0:
                w = sp.expand(base - a * p)
                if p not in w.free_symbols:
                    self.base, self.leaf, self.a, self.w = base, p, a, w
                    return True
        return False

    def replace(self, e: sp.Expr) -> sp.Expr:
        """Every square root of `e` (a composed side) in terms of s."""
        radicals = sorted((t for t in e.atoms(sp.Pow) if not t.exp.is_Integer),
                          key=sp.default_sort_key)
        if not radicals:
            return e
        for t in radicals:
            if not t.exp.is_Rational or t.exp.q != 2:
                raise Unsupported(f"a power other than a square root: {t}")
        zero = [t for t in radicals if self.normal(t.base) == 0]  # the zero polynomial
        if any(t.exp < 0 for t in zero):
            raise Unsupported(f"a division by the square root of 0: {min(zero, key=str)}")
        if zero:  # sqrt(0) = 0 wherever the radicand is defined
            return self.replace(e.xreplace({t: sp.Integer(0) for t in zero}))
        if self.base is None:
            for t in radicals:
                if self._choose(self.normal(t.base)):
                    break
            else:
                roots = ", ".join(f"sqrt({self.normal(t.base)})" for t in radicals)
                raise Unsupported(f"no square root of the form sqrt(eps + w(x)) with eps a "
                                  f"scalar leaf among {roots}; the symbolic-N form needs one "
                                  "radicand eps + w")
        replace = {}
        for t in radicals:
            # sqrt(c^2 (a p + w)) = c s for a constant c > 0: one radicand written several ways
            root = sp.sqrt(sp.cancel(self.normal(t.base) / self.base))
            if root.free_symbols - {N} or not root.is_positive or \
                    any(not q.exp.is_Integer for q in root.atoms(sp.Pow)):
                raise Unsupported(f"two square roots: sqrt({self.base}) and sqrt("
                                  f"{self.normal(t.base)}) (one radicand per claim)")
            replace[t] = (root * _S) ** int(t.exp.p)
        out = e.xreplace(replace)
        if any(not t.exp.is_Integer for t in out.atoms(sp.Pow)):
            raise Unsupported(f"nested square roots in {e}")
        return out

    def eliminate(self, e: sp.Expr) -> sp.Expr:
        """p = (s^2 - w)/a in a canonical form."""
        if self.base is None:
            return e
        return e.xreplace({self.leaf: (_S ** 2 - self.w) / self.a})


def decide(lhs: sp.Expr, rhs: sp.Expr, scalars: list, distinct=(),
           positive=frozenset()) -> tuple[str, str, Normalizer]:
    """(proved or unknown, note, normalizer) for lhs = rhs for every N; `distinct` holds
    pairs of rows known to differ, `positive` the leaves known > 0 (square roots of squares
    are rewritten only by signs proved from them and N >= 1)."""
    nz = Normalizer(distinct)
    rad = Radicals(scalars)
    radicals = [p for p in sp.Tuple(lhs, rhs).atoms(sp.Pow) if p.exp.is_Rational and p.exp.q == 2]
    if needs_rewrite(radicals):  # sqrt((v + eps)**2) = v + eps
        signs = Signs(set(positive) | {N})
        lhs, rhs = rewrite(lhs, signs), rewrite(rhs, signs)
    try:
        lhs, rhs = rad.replace(lhs), rad.replace(rhs)
        diff = nz.normal(lhs) - nz.normal(rhs)
        if diff.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
            return UNKNOWN, "a side divides by zero in canonical form", nz
        numerator = sp.together(rad.eliminate(diff)).as_numer_denom()[0]
        zero = sp.expand(numerator) == 0
    except Unsupported as err:
        return UNKNOWN, str(err), nz
    except (sp.PolynomialError, NotImplementedError, TypeError, ValueError,
            RecursionError) as err:
        return UNKNOWN, f"outside the symbolic fragment ({type(err).__name__})", nz
    if zero:
        return PROVED, "", nz
    return UNKNOWN, NONZERO, nz


def _definedness(sides: list, m: Model, scalars: list, memo: dict) -> tuple[bool, str | None]:
    """(defined for every N >= min_n, reason it is undefined for every N or None)."""
    signs = Signs({sp.Symbol(n) for n, k in m.leaves.items() if k == "positive"} | {_M})
    everywhere = True
    for t in sorted(set().union(*(s.atoms(sp.Pow) for s in sides)), key=sp.default_sort_key):
        if t.exp.is_Integer and t.exp > 0:
            continue
        if t.base not in memo:
            sign = signs.sign(t.base.xreplace({N: _M + m.min_n - 1}))
            divisor = t.exp.is_negative
            ok = sign in (POS, NEG) if divisor else sign in (POS, NONNEG)
            zero = False
            if not ok and divisor:
                try:
                    rad = Radicals(scalars)
                    form = rad.eliminate(Normalizer().normal(rad.replace(t.base)))
                    zero = sp.expand(sp.together(form).as_numer_denom()[0]) == 0
                except (Unsupported, sp.PolynomialError, NotImplementedError, TypeError,
                        ValueError):
                    zero = False
            memo[t.base] = (ok, zero)
        ok, zero = memo[t.base]
        if zero:
            return False, f"a side divides by {t.base}, which is identically zero for every N"
        everywhere &= ok
    return everywhere, None


# ---------------------------------------------------------------------------------------
# concrete N: where the canonical form does not vanish, look for a disproof
# ---------------------------------------------------------------------------------------


class _Concrete:
    """`verify_model`'s reports at N = min_n .., each computed once, looked up by claim id."""

    def __init__(self, m: Model):
        self.m, self.reports = m, {}

    def disproof(self, cid: str, deadline: float | None) -> tuple[dict | None, str]:
        from .verify_model import verify_model

        notes = []
        for n in range(self.m.min_n, self.m.min_n + CONCRETE_SIZES):
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                notes.append("time budget exhausted")
                break
            if n not in self.reports:
                self.reports[n] = verify_model(self.m, n, timeout=left)
            result = self.reports[n][cid]
            if result.verdict == DISPROVED:
                return {"N": n, **(result.witness or {})}, f"false at N = {n}"
            notes.append(f"N = {n}: {result.verdict}")
        return None, "; ".join(notes)


# ---------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------


def verify_every_n(model: Model | str, timeout: float | None = None,
                   progress: Callable[[str], None] | None = None) -> Report:
    """Prove a model's closed forms, forward and backward mode, for every N >= min_n."""
    m = load_model(model)
    start = time.monotonic()
    deadline = None if timeout is None else start + timeout
    rules = _rules()
    rules_ok = all(r.verdict == PROVED for r in rules)
    sm = SymbolicModel(m)
    scalars = [sp.Symbol(n) for n, k in sorted(m.leaves.items(), key=lambda t: t[1] != "positive")
               if k not in INDEXED_KINDS]
    concrete = _Concrete(m)
    todo = []
    for leaf in m.leaves:
        if leaf in m.results:
            todo.append((f"forward/d{leaf}", leaf, sm.forward, sm.closed,
                         f"forward mode = closed form D(f, {sm.wrt(leaf)})"))
            todo.append((f"backward/d{leaf}", leaf, sm.backward, sm.closed,
                         f"backward path sum = closed form D(f, {sm.wrt(leaf)})"))
        todo.append((f"forward=backward/d{leaf}", leaf, sm.forward, sm.backward,
                     f"forward mode = backward mode for D(f, {sm.wrt(leaf)})"))
    memo: dict = {}
    results = []
    domain = f"N >= {m.min_n}"
    for k, (cid, leaf, lhs, rhs, statement) in enumerate(todo):
        if deadline is not None and time.monotonic() > deadline:
            results.append(Result(cid, UNKNOWN, METHOD, 0.0, note="time budget exhausted"))
            continue
        if progress is not None:
            progress(f"[{k + 1}/{len(todo)}] {cid} ({time.monotonic() - start:.0f} s so far)")
        results.append(_claim(cid, leaf, lhs, rhs, statement, m, scalars, memo, concrete,
                              rules_ok, deadline, domain))
    rule_text = ", ".join(f"{r.id.split('/')[1]} {r.verdict}" for r in rules)
    from .verify_model import describe_source

    vacuous, nowhere = _small_sizes(m) if any(r.verdict == PROVED for r in results) \
        else ({}, {})
    with_n = _sized_conditions(m)
    if vacuous or with_n:
        # a node SymPy cancelled (q = (x - mu)/(x - mu)) still bounds the domain, and so
        # does one whose root or divisor changes sign with N (sqrt(4 - N))
        results = [Result(r.id, r.verdict, r.method, r.seconds, r.witness,
                          re.sub(r"(for every N >= \d+)(?! where)",
                                 r"\1 where both sides are defined", r.note or ""))
                   if r.verdict == PROVED else r for r in results]

    notes = [
        f"model {describe_source(m)}: the graph and the closed forms are read from it",
        f"every result holds for all {domain}, 1 <= j <= N (N a symbol, not a sample), one "
        "set (D = 1), positive leaves > 0"
        + (f"; the model is defined for N >= {m.min_n} only" if m.min_n > 1 else ""),
        ("rules: R1 sum_i (a u_i + b w_i) = a sum_i u_i + b sum_i w_i, R2 sum_{i=1}^N c = "
         f"N c, R3 sum_{{i=1}}^N delta_ij u_i = u_j if 1 <= j <= N; checked by SymPy: "
         f"{rule_text}"),
        ("canonical form: numerator of lhs - rhs as a polynomial over QQ in N, s = the square "
         "root of the model's radicand eps + w, the scalar leaves, the leaves at row j and the "
         "power sums S(" + " ".join(sorted(
             [n for n, kind in m.leaves.items() if kind in INDEXED_KINDS] + [m.gradient]))
         + " with powers) = sum_i of the monomial at row i, as indeterminates"),
    ]
    if with_n:
        notes.append(f"a node's template {with_n}, not shown safe for every N: what is "
                     "proved 'where both sides are defined' may hold vacuously for some N")
    if vacuous:
        sizes = ", ".join(map(str, sorted(vacuous)))
        why = vacuous[min(vacuous)].split(": ", 1)[-1].replace("a side", "a node")
        notes.append(f"the model is undefined at N = {sizes} ({why}): what is proved "
                     "'where both sides are defined' holds there vacuously")
    results = [Result(r.id, UNKNOWN, "definedness", r.seconds,
                      note=f"{nowhere[r.id]}, and likewise at N = {m.min_n}.."
                           f"{m.min_n + CONCRETE_SIZES - 1}")
               if r.verdict == PROVED and r.id in nowhere else r for r in results]
    if len(vacuous) == CONCRETE_SIZES:  # defined at none of the sizes tried: nothing shown
        results = [Result(r.id, UNKNOWN, "definedness", r.seconds,
                          note=f"{r.note}; but the model was not shown defined at any N = "
                               f"{m.min_n}..{m.min_n + CONCRETE_SIZES - 1}")
                   if r.verdict == PROVED and "where both sides are defined" in (r.note or "")
                   else r for r in results]
    notes += [f"paths from {leaf} to f: " + "; ".join(" -> ".join(p) for p in m.paths(leaf))
              for leaf in m.leaves]
    notes.append("unknown means the canonical form did not vanish (or is outside the "
                 f"fragment) and the exact prover found no counterexample at N = {m.min_n}.."
                 f"{m.min_n + CONCRETE_SIZES - 1}; disproved carries a concrete N and an exact "
                 "witness")
    info = {"model": m.name, "n": "all", "d": 1, "method": METHOD,
            "seconds": round(time.monotonic() - start, 3)}
    return Report(f"symbn verify: {m.title}, backward, every N (symbolic)", results, info,
                  notes)


def _sized_conditions(m: Model) -> str | None:
    """How a node template's root or divisor depends on N without a sign shown for every
    N >= min_n (sqrt(4 - N)), or None."""
    signs = Signs({sp.Symbol(n) for n, k in m.leaves.items() if k == "positive"} | {_M})
    for node in m.nodes.values():
        for t in sp.preorder_traversal(node.template):
            if not t.is_Pow or not t.base.has(N) or (t.exp.is_Integer and t.exp > 0):
                continue
            sign = signs.sign(t.base.xreplace({N: _M + m.min_n - 1}))
            safe = ((POS, NEG) if t.exp.is_Integer else (POS,) if t.exp.is_negative
                    else (POS, NONNEG))
            if sign not in safe:
                what = "divides by" if t.exp.is_negative else "takes the root of"
                return f"{what} {t.base}"
    return None


def _small_sizes(m: Model) -> tuple[dict[int, str], dict[str, str]]:
    """({N: reason} for the N in min_n..min_n+3 at which the nodes f depends on divide by
    something identically zero, take the root of something negative wherever it is not 0,
    or roots never real together (`symbn.prove.Algebra`, exact, one set); {claim id: why}
    for the claims against a closed form of [results] undefined at each of those N
    (`symbn.verify_model._undefined_results`))."""
    from .prove import Algebra
    from .verify import model_undefined
    from .verify_model import _undefined_results, _written_results

    found: dict[int, str] = {}
    nowhere: dict | None = None  # None: not yet asked; {} once a size could not be
    for n in range(m.min_n, m.min_n + CONCRETE_SIZES):
        try:
            g = m.instantiate(n, 1)
            alg = Algebra(g)
            reason = model_undefined(g, alg)
        except (SymbnError, Unsupported, ZeroDivisionError):
            nowhere = {}
            continue
        # a divisor or root not decided is no evidence; roots not found real together are
        if reason is not None and not reason.startswith("undefined or undecided:"):
            found[n] = reason
        if nowhere != {}:
            try:
                here = _undefined_results(g, alg, _written_results(g))
            except (SymbnError, Unsupported, ZeroDivisionError):
                here = {}
            nowhere = here if nowhere is None else {k: v for k, v in nowhere.items()
                                                    if k in here}
    return found, nowhere or {}


def _claim(cid, leaf, lhs, rhs, statement, m, scalars, memo, concrete, rules_ok, deadline,
           domain) -> Result:
    start = time.monotonic()
    try:
        left, right = lhs(leaf), rhs(leaf)
        everywhere, undefined = _definedness([left, right], m, scalars, memo)
    except (Unsupported, SymbnError) as err:
        return Result(cid, UNKNOWN, METHOD, time.monotonic() - start, note=str(err))
    except (sp.PolynomialError, NotImplementedError, TypeError, ValueError,
            RecursionError) as err:  # SymPy outside what it handles: undecided, not a crash
        return Result(cid, UNKNOWN, METHOD, time.monotonic() - start,
                      note=f"outside the symbolic fragment ({type(err).__name__})")
    if undefined is not None:
        return Result(cid, UNKNOWN, "definedness", time.monotonic() - start, note=undefined)
    verdict, note, nz = decide(left, right, scalars)
    if verdict == PROVED and not rules_ok:
        verdict, note = UNKNOWN, "a summation rule was not confirmed by SymPy"
    witness = None
    if verdict != PROVED:
        try:
            witness, tried = concrete.disproof(cid, deadline)
        except SymbnError as err:
            witness, tried = None, str(err)
        if witness is not None:
            verdict, note = DISPROVED, tried
        elif tried:
            note = f"{note}; concrete {tried}"
    proved = (f"for every {domain}" + ("" if everywhere else " where both sides are defined")
              if verdict == PROVED else "")
    return Result(cid, verdict, METHOD, time.monotonic() - start, witness,
                  claim_note(statement, nz, note, proved))
