"""`symbn check`: every step of a derivation file, proved or refuted for a concrete N.

A step is proved when every link of its chain a = b = c is proved equal to the next, for
every assignment of its free indices (i, j, k) to rows 1..N allowed by `where` (by row
symmetry above N = 8); the checker is `symbn.stepcheck`.
"""

from __future__ import annotations

from .derivation import Derivation
from .report import Report
from .stepcheck import (  # noqa: F401 (the names `symbn.check` offered before the split)
    EXHAUSTIVE_MAX_N,
    SYMMETRY_NOTE,
    assignments,
    check_steps,
    undefined_at,
)


def check(derivation: Derivation | str, n: int, timeout: float | None = None,
          all_assignments: bool | None = None) -> Report:
    """Check every step of a derivation (a `Derivation`, a path or a shipped name) for N.

    One `Result` per step, with the step's id.  A disproof's witness gives the index
    assignment, the failing link, every leaf's exact value and both sides' values.
    `all_assignments` forces (True) or forbids (False) checking every index assignment;
    by default every assignment is checked for N <= 8, index patterns above.

    >>> report = check("batchnorm", 3)
    >>> report.ok, report["lemma-centered-sum"].verdict
    (True, 'proved')
    """
    return check_steps(derivation, n, timeout, all_assignments)


def append_shipped(report: Report, n: int, timeout: float | None = None,
                   name: str = "batchnorm", prefix: str = "note/") -> Report:
    """Append the steps of a shipped derivation to `report`, ids prefixed (for `verify`).

    >>> report = append_shipped(Report("demo", []), 2)
    >>> report["note/bw-dv-dmu"].verdict
    'proved'
    """
    extra = check(name, n, timeout)
    for result in extra:
        result.id = prefix + result.id
        report.results.append(result)
    report.notes.append(f"{prefix}*: every step of the shipped derivation "
                        f"'{name}' (symbn check {name})")
    report.notes.extend(extra.notes)
    return report
