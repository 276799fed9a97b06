"""Results and reports: the verdict table, JSON, and exit codes shared by every command."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .prove import CONSISTENT, DISPROVED, PROBABLE, PROVED, UNKNOWN


@dataclass
class Result:
    """One claim's verdict, how it was reached, and how long it took."""

    id: str
    verdict: str
    method: str
    seconds: float
    witness: dict | None = None
    note: str = ""

    def to_dict(self) -> dict:
        out = {"id": self.id, "verdict": self.verdict, "method": self.method,
               "seconds": round(self.seconds, 4)}
        if self.witness is not None:
            out["witness"] = self.witness
        if self.note:
            out["note"] = self.note
        return out


@dataclass
class Report:
    """An iterable of `Result`s; `ok` when nothing is disproved or unknown.

    >>> r = Report("demo", [Result("a", "proved", "exact", 0.01)])
    >>> r.ok, r.exit_code, len(r)
    (True, 0, 1)
    """

    title: str
    results: list[Result]
    info: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __iter__(self):
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, key: str | int) -> Result:
        if isinstance(key, int):
            return self.results[key]
        for r in self.results:
            if r.id == key:
                return r
        raise KeyError(key)

    @property
    def ok(self) -> bool:
        return all(r.verdict in (PROVED, PROBABLE) for r in self.results)

    @property
    def exit_code(self) -> int:
        """0 all proved (or probable); 1 something disproved; 3 unknown (or consistent),
        nothing disproved."""
        if any(r.verdict == DISPROVED for r in self.results):
            return 1
        return 0 if self.ok else 3

    def to_dict(self) -> dict:
        return {"ok": self.ok, "title": self.title, **self.info, "notes": self.notes,
                "results": [r.to_dict() for r in self.results]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def _repr_markdown_(self) -> str:
        """Jupyter: the verdict table, counterexamples typeset as math."""
        from .jupyter import report_markdown

        return report_markdown(self)

    def _repr_latex_(self) -> str:
        """Jupyter/MathJax: the verdicts as a display-math array."""
        from .jupyter import report_latex

        return report_latex(self)

    def __str__(self) -> str:
        width = max([len(r.id) for r in self.results] + [5])
        lines = [self.title, ""]
        wide = max([len(r.verdict) for r in self.results] + [9])  # 10 with "consistent"
        lines += [f"  {r.id:<{width}}  {r.verdict:<{wide}}  {r.seconds:7.3f}s  {r.method}"
                  + (f"  ({r.note})" if r.note else "") for r in self.results]
        for r in self.results:
            if r.witness:
                lines += ["", f"  {r.id}: counterexample"]
                lines += [f"    {k} = {_show(v)}" for k, v in r.witness.items() if k != "point"]
                lines += [f"    {k} = {v}" for k, v in r.witness.get("point", {}).items()]
        lines += [""] * bool(self.notes) + [f"  {n}" for n in self.notes]
        counts = {v: sum(r.verdict == v for r in self.results)
                  for v in (PROVED, PROBABLE, CONSISTENT, DISPROVED, UNKNOWN)}
        lines += ["", "  " + ", ".join(f"{k} {v}" for k, v in counts.items() if v)]
        return "\n".join(lines)


def _show(value) -> str:
    """A witness field on one line: an index assignment reads `i = 1, j = 2`."""
    if isinstance(value, dict):
        return ", ".join(f"{k} = {v}" for k, v in value.items()) or "none"
    return str(value)
