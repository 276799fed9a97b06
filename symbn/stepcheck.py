"""The concrete step checker: each link of each step of a derivation, at one N, for every
index assignment (or one per pattern, by row symmetry); used by `symbn check` and by the
every-N prover's concrete disproofs (`symbn.general`), which therefore need not import the
command's module.

Above `EXHAUSTIVE_MAX_N` the assignments are reduced by row symmetry: permuting the rows
(x_i, dy_i) together maps the model to itself, and a template names rows only through its
free indices, sums over all rows and its concrete rows (x[2]).  So two assignments that a
permutation fixing the concrete rows carries into each other are proved together, and one
assignment per pattern suffices: which free indices are equal, and which equal a concrete row.

>>> check_steps("batchnorm", 2)["bw-dv-dmu"].verdict
'proved'
"""

from __future__ import annotations

import itertools
import time

import sympy as sp

from .derivation import Derivation, Step, _Instantiate, load
from .errors import SymbnError
from .limits import check_steps_size
from .model import BatchNorm
from .prove import DISPROVED, PROVED, UNKNOWN, Algebra, Budget, Outcome, alarm, coefficients
from .prove.definedness import completed, not_together, where_defined
from .report import Report, Result

EXHAUSTIVE_MAX_N = 8
SYMMETRY_NOTE = ("rows are exchangeable: permuting (x_i, dy_i) together maps the model to "
                 "itself, so one assignment per index pattern (which indices are equal, "
                 "which equal a row the step names) stands for all of them, and in a link "
                 "linear in dy one row the link does not name stands for all such rows")


def _graph(d: Derivation, n: int):
    """The concrete graph of the derivation's model at N = n."""
    return BatchNorm(n) if d.spec is None else d.spec.instantiate(n)


def assignments(step: Step, n: int, exhaustive: bool = True) -> list[dict[str, int]]:
    """Index assignments to check: all of them, or one per row-symmetry pattern.

    >>> from symbn.derivation import load
    >>> step = load("batchnorm").steps[4]  # free i, j
    >>> len(assignments(step, 3)), assignments(step, 3, exhaustive=False)
    (9, [{'i': 1, 'j': 1}, {'i': 1, 'j': 2}])
    """
    names = [str(s) for s in step.free_indices]
    if exhaustive:
        candidates = (dict(zip(names, rows))
                      for rows in itertools.product(range(1, n + 1), repeat=len(names)))
    else:
        candidates = _patterns(names, step.rows, n)
    return [a for a in candidates if _allowed(step, a)]


def _patterns(names: list[str], fixed: tuple[int, ...], n: int):
    """One assignment per orbit of the row permutations fixing the rows in `fixed`."""
    free_rows = [r for r in range(1, n + 1) if r not in fixed]
    seen = set()
    # each index is a fixed row or one of the fresh classes 0, 1, ...; fresh classes are
    # numbered in order of first use, so each pattern appears once
    for choice in itertools.product([*fixed, *[-c - 1 for c in range(len(names))]],
                                    repeat=len(names)):
        fresh = [c for c in choice if c < 0]
        order = list(dict.fromkeys(fresh))
        if order != [-c - 1 for c in range(len(order))] or len(order) > len(free_rows):
            continue
        rows = tuple(free_rows[-c - 1] if c < 0 else c for c in choice)
        if rows not in seen:
            seen.add(rows)
            yield dict(zip(names, rows))


def _allowed(step: Step, assignment: dict[str, int]) -> bool:
    for cond in step.conditions:
        a, b = (assignment[str(s)] for s in cond.args)
        if (a == b) != isinstance(cond, sp.Eq):
            return False
    return True


class _StepChecker:
    def __init__(self, d: Derivation, bn: BatchNorm, alg: Algebra, deadline: float | None,
                 exhaustive: bool):
        self.d, self.bn, self.alg = d, bn, alg
        self.builder = _Instantiate(bn)
        # one set (check is about D = 1): the upstream gradient of row r, dy[r]
        self._dy_of_row = dict(zip(bn.rows(), (sp.Symbol("d" + y.name)
                                              for y in bn.nodes[bn.f].parents)))
        self._dys = set(self._dy_of_row.values())
        self.deadline, self.exhaustive = deadline, exhaustive
        self._nonzero: dict = {}  # divisor instance -> Algebra.nonzero

    def run(self, step: Step) -> Result:
        start = time.monotonic()
        try:
            with alarm(self.deadline):
                return self._run(step, start)
        except Budget:
            return self._unknown(step, start)
        except RecursionError:  # SymPy recursing through a very deep expression: a budget
            return Result(step.id, UNKNOWN, "exact", time.monotonic() - start,
                          note="expression nested too deeply to decide (recursion limit)")

    def _run(self, step: Step, start: float) -> Result:
        todo = assignments(step, self.bn.n, self.exhaustive)
        texts = step.link_texts()
        methods = set()
        # instantiate first: a non-edge P(a, b) is bad input whatever the verdicts would be
        instances = []
        for assignment in todo:
            if self._late():
                return self._unknown(step, start)
            label = ", ".join(f"{k}={v}" for k, v in assignment.items())
            sides, divisors = [], []
            for link in step.links:
                side, written = self.side(step, link, assignment, label)
                sides.append(side)
                divisors.append(written)
            instances.append((assignment, label, sides, divisors))
        for assignment, label, sides, divisors in instances:
            for k in range(len(sides) - 1):
                if self._late():
                    return self._unknown(step, start)
                undefined = self._undefined_link(divisors[k], divisors[k + 1])
                if undefined is not None:
                    where = f"{label}: " if label else ""
                    return Result(step.id, UNKNOWN, "definedness", time.monotonic() - start,
                                  note=f"{where}link {k + 1} ({texts[k]} = {texts[k + 1]}): "
                                       f"{undefined}")
                outcome = self._decide(sides[k], sides[k + 1], step, assignment)
                if outcome.verdict == DISPROVED:
                    outcome = self._checked(outcome, sides[k], sides[k + 1],
                                            divisors[k], divisors[k + 1])
                methods.add(outcome.method)
                if outcome.verdict != PROVED:
                    link = f"{texts[k]} = {texts[k + 1]}"
                    witness = None
                    if outcome.witness is not None:
                        witness = {"assignment": {a: str(r) for a, r in assignment.items()},
                                   "link": link, **outcome.witness}
                    where = f"{label}: " if label else ""
                    note = f"{where}link {k + 1} ({link})"
                    if outcome.note:
                        note += f": {outcome.note}"
                    return Result(step.id, outcome.verdict, outcome.method,
                                  time.monotonic() - start, witness, note)
        if not todo:
            return Result(step.id, PROVED, "vacuous", time.monotonic() - start,
                          note=f"no index assignment satisfies '{step.where}' for N = "
                               f"{self.bn.n}")
        return Result(step.id, PROVED, _method(methods), time.monotonic() - start,
                      note=self._coverage(step, todo))

    def _decide(self, lhs: sp.Expr, rhs: sp.Expr, step: Step, assignment: dict) -> Outcome:
        """lhs = rhs.  Two linear forms in dy (`linear_in`) are equal exactly when their
        dy_i-coefficients are, since the dy_i are independent leaves: claims free of dy,
        each far smaller than the whole sum.  What those do not prove is decided whole, so
        a verdict other than proved, and its witness, are those of the link itself.

        With row symmetry (not exhaustive), one unnamed row stands for all: a permutation
        of the rows fixing every row the link names (its concrete rows and the assignment's)
        maps both sides to themselves, so it carries the dy_r-coefficient identity to the
        dy_p(r) one, a renaming of the leaves, which keeps an identity an identity."""
        dys = self._dys
        left = coefficients(self.bn, lhs, dys) if len(dys) > 1 else None
        right = coefficients(self.bn, rhs, dys) if left is not None else None
        if right is not None:
            rows = list(self.bn.rows())
            if not self.exhaustive:
                named = set(step.rows) | set(assignment.values())
                rows = [r for r in rows if r in named] + [r for r in rows if r not in named][:1]
            methods, zero = set(), sp.Integer(0)
            for dy in (self._dy_of_row[r] for r in rows):
                outcome = self.alg.decide(left.get(dy, zero), right.get(dy, zero),
                                          self.deadline)
                if outcome.verdict != PROVED:
                    break
                methods.add(outcome.method)
            else:
                return Outcome(PROVED, _method(methods))
        return self.alg.decide(lhs, rhs, self.deadline)

    def _checked(self, outcome: Outcome, lhs, rhs, left: tuple, right: tuple) -> Outcome:
        """A disproof whose witness lies where the link is defined as written: every
        square root written in it of something >= 0, every divisor written nonzero
        (`symbn.prove.definedness.where_defined`); leaves the sides do not depend on are
        chosen to meet them."""
        divisors = [e for _, e in left[0] + right[0]]
        radicands = [e for _, e in left[1] + right[1]]
        if not divisors and not radicands:
            return outcome
        names = {str(s): s for s in self.alg.symbols}
        free = set(self.bn.support(sp.Tuple(*divisors, *radicands))) & set(self.alg.symbols)

        def locate(found: Outcome, seed: int) -> dict | None:
            point = (found.witness or {}).get("point")
            return None if point is None else completed(self.bn, point, names, free,
                                                        divisors, radicands, seed)
        return where_defined(
            outcome, locate, lambda seed: self.alg.decide(lhs, rhs, self.deadline, seed=seed),
            "false as the sides simplify, but no witness was found where every square root "
            "written in the link is of something >= 0 and every divisor written is nonzero",
            self._late)

    def _undefined_link(self, left: tuple, right: tuple) -> str | None:
        """Why a link is undefined, naming the side when only one of them is."""
        why = [self._undefined(*left, side="the left side"),
               self._undefined(*right, side="the right side")]
        for k, (side, (divisors, radicands)) in enumerate((("the left side", left),
                                                           ("the right side", right))):
            if why[k] is None and not self._jointly_real(radicands, divisors):
                why[k] = f"undefined or undecided: {not_together(radicands, side)}"
        if why[0] is not None and why[1] is not None:
            return self._undefined(left[0] + right[0], left[1] + right[1]) or why[0]
        if why[0] is not None:
            return f"{why[0]}; the right side is defined there"
        if why[1] is not None:
            return f"{why[1]}; the left side is defined there"
        both = left[1] + right[1]
        if (left[1] or right[1]) and not self._jointly_real(both, left[0] + right[0]):
            return ("undefined or undecided: each side is defined somewhere, but no point was "
                    "found where both are (square roots of "
                    f"{', '.join(str(t) for t, _ in both[:4])}{', ...' if len(both) > 4 else ''})")
        return None

    def _jointly_real(self, radicands: list, divisors: list = ()) -> bool:
        """`symbn.prove.Algebra.jointly_defined` of the written radicands and divisors."""
        return self.alg.jointly_defined([e for _, e in radicands], [e for _, e in divisors])

    def _undefined(self, divisors: list, radicands: list = (),
                   side: str = "the claim") -> str | None:
        """Why a side is undefined everywhere (a divisor identically zero, a square root of
        something negative wherever it is not 0), or None.

        Only then is a link meaningless: a divisor that is not the zero function vanishes
        on a proper algebraic subset, off which the claim is an identity of functions, and
        a radicand positive at one point is positive on an open set around it."""
        for template, instance in radicands:
            key = ("radicand", instance)
            known = self._nonzero.get(key)
            if known is None:
                known = self._nonzero[key] = self.alg.real_somewhere(instance, self.deadline)
            if known is False:
                return (f"undefined at N = {self.bn.n}: {side} takes the square root of "
                        f"{template}, which is negative wherever it is not 0")
            if known is None:
                return (f"undefined or undecided: {side} takes the square root of "
                        f"{template}, which could not be shown positive anywhere")
        for template, instance in divisors:
            known = self._nonzero.get(instance)
            if known is None:
                known = self._nonzero[instance] = self.alg.nonzero(instance, self.deadline)
            if known is False:
                what = "" if instance.is_zero else ", which is identically zero there"
                return f"division by zero at N = {self.bn.n}: {side} divides by {template}{what}"
            if known is None:
                return (f"undefined or undecided: {side} divides by {template}, which "
                        "could not be shown nonzero")
        return None

    def _late(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    def _unknown(self, step: Step, start: float) -> Result:
        return Result(step.id, UNKNOWN, "exact", time.monotonic() - start,
                      note="time budget exhausted")

    def side(self, step: Step, link: sp.Expr, assignment: dict, label: str = ""):
        """A side of a link at an assignment, and (divisors, radicands) as written: in the
        claim, and in the nodes it depends on (a node defined nowhere makes it so)."""
        self.builder.denominators, self.builder.radicands = [], []
        self.builder.mentioned = []
        side = self._instantiate(step, link, assignment, label)
        divisors, radicands = self.builder.denominators, self.builder.radicands
        if hasattr(self.bn, "conditions_of"):  # q[i] - q[i] cancels, and still needs q
            nodes = self.bn.conditions_of(side, self.builder.mentioned)
            divisors, radicands = divisors + nodes[0], radicands + nodes[1]
        return side, (divisors, radicands)

    def _instantiate(self, step: Step, link: sp.Expr, assignment: dict, label: str):
        try:
            return self.builder.run(link, assignment)
        except SymbnError as err:
            at = f" ({label})" if label else ""
            raise SymbnError(f"{self.d.path}: step '{step.id}'{at}: {err}") from None

    def _coverage(self, step: Step, todo: list[dict]) -> str:
        if not step.free_indices:
            return ""
        count = f"{len(todo)} assignment{'s' if len(todo) != 1 else ''}"
        if self.exhaustive:
            return count
        patterns = "; ".join(", ".join(f"{k}={v}" for k, v in a.items()) for a in todo)
        return f"{count} by row symmetry: {patterns}"


def undefined_at(step: Step, n: int, path: str = "<step>") -> str | None:
    """Why some side of `step` is undefined everywhere at N = n (for some index assignment),
    or None; a step that cannot be instantiated at this N is not judged here.

    >>> from symbn.derivation import parse
    >>> d = parse('title = "t"\\nmodel = "batchnorm"\\n[[step]]\\nid = "a"\\nclaim = "v/v = 1"')
    >>> undefined_at(d.steps[0], 1)
    'division by zero at N = 1: the claim divides by v, which is identically zero there'
    >>> undefined_at(d.steps[0], 2) is None
    True
    """
    if step.rows and max(step.rows) > n:
        return None
    bn = BatchNorm(n)
    checker = _StepChecker(Derivation("", "batchnorm", "", path, [step]), bn, Algebra(bn),
                           None, True)
    for assignment in assignments(step, n):
        for link in step.links:
            try:
                _, written = checker.side(step, link, assignment)
            except SymbnError:
                return None
            reason = checker._undefined(*written)
            if reason is not None:
                label = ", ".join(f"{k}={v}" for k, v in assignment.items())
                return f"{label}: {reason}" if label else reason
    return None


def _method(methods: set[str]) -> str:
    exact = sorted(m for m in methods if m != "identical")
    return "; ".join(exact) if exact else "identical"


def check_steps(derivation: Derivation | str, n: int, timeout: float | None = None,
                all_assignments: bool | None = None) -> Report:
    """`symbn.check.check`: every step of a derivation for N, as a Report."""
    d = derivation if isinstance(derivation, Derivation) else load(derivation)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise SymbnError(f"n must be a positive integer, got {n!r}; try n=4")
    check_steps_size(n, timeout)
    for step in d.steps:
        if step.rows and max(step.rows) > n:
            raise SymbnError(f"{d.path}: step '{step.id}': row {max(step.rows)} is outside "
                             f"1..N = {n}; use n={max(step.rows)} or more")
    start = time.monotonic()
    deadline = None if timeout is None else start + timeout
    exhaustive = n <= EXHAUSTIVE_MAX_N if all_assignments is None else all_assignments
    bn = _graph(d, n)
    checker = _StepChecker(d, bn, Algebra(bn), deadline, exhaustive)
    results = [checker.run(step) for step in d.steps]
    notes = [] if exhaustive else [SYMMETRY_NOTE]
    info = {"n": n, "derivation": d.path, "exhaustive": exhaustive,
            "seconds": round(time.monotonic() - start, 3)}
    return Report(f"symbn check: {d.title}, N = {n}", results, info, notes)
