"""Derivation files: TOML with `title`, `model`, optional `source` and `[[step]]` tables
(`id`, `claim`, optional `where` and `text`), each claim read into a chain of templates.

>>> _split_links("v = Sum((x[k] - mu)**2, (k, 1, N))/N")
['v ', ' Sum((x[k] - mu)**2, (k, 1, N))/N']
>>> len(load("batchnorm").steps[1].links)  # D(f, gamma) = ... = ...
3
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import sympy as sp

from ..errors import SymbnError
from .expression import check_size, parse_expression
from .util import _clip, _did_you_mean, _free_indices, _one_line, _rows
from .vocabulary import INDEX, MAX_FILE_BYTES, MAX_STEPS, Vocabulary, builtin, builtin_weights

STEP_KEYS = ("id", "claim", "where", "text")
TOP_KEYS = ("title", "model", "source", "step")

_ID = re.compile(r"[a-z0-9-]{1,64}")
_CONDITION = re.compile(r"\s*([a-z]\w*)\s*(==|!=)\s*([a-z]\w*)\s*")


@dataclass(frozen=True)
class Step:
    """One claimed step: `links` is the chain a = b = c as unevaluated templates.

    `conditions` holds `sp.Eq(i, j)` / `sp.Ne(i, j)` from `where`.
    """

    id: str
    claim: str
    where: str
    text: str
    links: tuple[sp.Expr, ...]
    conditions: tuple

    @property
    def free_indices(self) -> tuple[sp.Symbol, ...]:
        """Index symbols free in the claim (not bound by a Sum), sorted by name."""
        found: set = set()
        for link in self.links:
            found |= _free_indices(link)
        return tuple(sorted(found, key=str))

    @property
    def rows(self) -> tuple[int, ...]:
        """Concrete row numbers the claim names, such as 2 in x[2]."""
        found: set = set()
        for link in self.links:
            found |= _rows(link)
        return tuple(sorted(found))

    def link_texts(self) -> list[str]:
        """The claim's links as written."""
        return [part.strip() for part in _split_links(self.claim)]


@dataclass(frozen=True)
class Derivation:
    """A parsed derivation file; `spec` is the model file it speaks of (None: the built-in
    BatchNorm vocabulary of `model = "batchnorm"`)."""

    title: str
    model: str
    source: str
    path: str
    steps: list[Step]
    spec: object = None


def shipped() -> dict[str, Path]:
    """The derivations shipped with symbn, by name (the file name without .toml)."""
    here = Path(__file__).resolve().parent.parent  # symbn/
    found: dict[str, Path] = {}
    # inside an installed package, then in a source checkout
    for folder in (here / "derivations", here.parent / "derivations"):
        if folder.is_dir():
            for p in sorted(folder.glob("*.toml")):
                found.setdefault(p.stem, p)
    return found


def load(path_or_name: str) -> Derivation:
    """Read a derivation file; a bare name such as "batchnorm" loads the shipped file.

    >>> [s.id for s in load("batchnorm").steps][:2]
    ['df-dx-chain-rule', 'df-dgamma']
    """
    text = str(path_or_name)
    path, label = Path(text), text
    if not path.is_file():
        available = shipped()
        if text in available:
            path = available[text]
            label = str(path)
        elif path.exists():
            raise SymbnError(f"{text}: not a regular file; give a .toml derivation file")
        else:
            names = ", ".join(available) or "none"
            raise SymbnError(f"{text}: no such file or shipped derivation"
                             f"{_did_you_mean(text, available)}; shipped: {names}")
    return parse(read_text(path, text, "a derivation file is a short list of steps"), label)


def read_text(path: Path, name: str, advice: str) -> str:
    """A data file's text (derivation or model file), at most MAX_FILE_BYTES of UTF-8;
    one-line errors start with `name` and say `advice` when the file is too large."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise SymbnError(f"{name}: cannot read ({err.strerror}); check the path") from None
    if len(data) > MAX_FILE_BYTES:
        raise SymbnError(f"{name}: file larger than {MAX_FILE_BYTES // 1024} KiB; {advice}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SymbnError(f"{name}: not UTF-8 text (byte {err.start}); save it as UTF-8") \
            from None


def read_toml(source: str, path: str) -> dict:
    """TOML text within the size limit as a table (derivation and model files), or a
    one-line SymbnError naming `path`."""
    if len(source) > MAX_FILE_BYTES:
        raise SymbnError(f"{path}: larger than {MAX_FILE_BYTES // 1024} KiB")
    try:
        return tomllib.loads(source)
    except tomllib.TOMLDecodeError as err:
        raise SymbnError(f"{path}: malformed TOML: {_one_line(str(err))}") from None
    except RecursionError:
        raise SymbnError(f"{path}: malformed TOML: nested too deeply") from None


def parse(source: str, path: str = "<string>") -> Derivation:
    """Parse derivation text (TOML) into a `Derivation`; `path` names it in errors."""
    data = read_toml(source, path)
    for key in data:
        if key not in TOP_KEYS:
            raise SymbnError(f"{path}: unknown top-level key '{_clip(key)}'"
                             f"{_did_you_mean(key, TOP_KEYS)}; expected {', '.join(TOP_KEYS)}")
    title = string_field(data, "title", path, required=True)
    model = string_field(data, "model", path, required=True)
    # batchnorm keeps its own checkers (spec None); its names are read off its model file too
    spec = None if model == "batchnorm" else _model(model, path)
    vocabulary = builtin() if spec is None else spec.vocabulary()
    weights = builtin_weights() if spec is None else spec.weights()
    steps_data = data.get("step")
    if not isinstance(steps_data, list) or not steps_data:
        raise SymbnError(f"{path}: no steps; add [[step]] tables with id and claim")
    if len(steps_data) > MAX_STEPS:
        raise SymbnError(f"{path}: {len(steps_data)} steps, more than {MAX_STEPS}; split the file")
    steps, seen = [], set()
    for number, table in enumerate(steps_data, 1):
        if not isinstance(table, dict):
            raise SymbnError(f"{path}: step {number} is not a table; write [[step]]")
        step = _step(table, number, path, vocabulary, weights)
        if step.id in seen:
            raise SymbnError(f"{path}: step '{step.id}': duplicate id; ids must be unique")
        seen.add(step.id)
        steps.append(step)
    return Derivation(title, model, string_field(data, "source", path) or "", path, steps, spec)


def _model(model: str, path: str):
    """The model a derivation names: a shipped model, or a model file relative to the
    derivation file."""
    from .. import models

    if model in models.shipped():
        return models.load(model)
    candidate = Path(path).parent / model if not Path(model).is_absolute() else Path(model)
    if model.endswith(".toml") and candidate.is_file():
        return models.load(candidate)
    raise SymbnError(f"{path}: model '{_clip(model)}' is not known; use a shipped model "
                     f"({', '.join(models.shipped())}) or a .toml model file relative to "
                     "this file")


def string_field(table: dict, key: str, where: str, required: bool = False) -> str | None:
    """The string at `key` of a TOML table (None if absent and not required), or a one-line
    error naming `where` and the key."""
    value = table.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        got = "missing" if value is None else f"a {type(value).__name__}"
        raise SymbnError(f"{where}: '{key}' must be a string ({got}); write {key} = \"...\"")
    return value


def _step(table: dict, number: int, path: str, vocabulary: Vocabulary | None = None,
          weights: dict | None = None) -> Step:
    for key in table:
        if key not in STEP_KEYS:
            raise SymbnError(f"{path}: step {number}: unknown key '{_clip(key)}'"
                             f"{_did_you_mean(key, STEP_KEYS)}; expected {', '.join(STEP_KEYS)}")
    sid = string_field(table, "id", f"{path}: step {number}", required=True)
    if not _ID.fullmatch(sid):
        raise SymbnError(f"{path}: step {number}: id '{_clip(sid)}' must match [a-z0-9-]+ "
                         "(at most 64 characters)")
    where_at = f"{path}: step '{sid}'"
    claim = string_field(table, "claim", where_at, required=True)
    where = string_field(table, "where", where_at) or ""
    text = string_field(table, "text", where_at) or ""
    links = _parse_claim(claim, where_at, vocabulary, weights)
    conditions = _parse_where(where, where_at)
    step = Step(sid, claim, where, text, links, conditions)
    free = step.free_indices
    for cond in conditions:
        for sym in cond.args:
            if sym not in free:
                names = ", ".join(map(str, free)) or "none"
                raise SymbnError(f"{where_at}: where names {sym}, which is not a free index "
                                 f"of the claim (free: {names})")
    return step


def _parse_where(where: str, at: str) -> tuple:
    if not where.strip():
        return ()
    out = []
    for part in re.split(r"\band\b", where):
        m = _CONDITION.fullmatch(part)
        if not m or m.group(1) not in INDEX or m.group(3) not in INDEX:
            raise SymbnError(f"{at}: cannot read where = '{_clip(where)}'; write conditions "
                             "like \"i != j\" or \"i == j\", joined by \" and \"")
        a, op, b = m.groups()
        if a == b:
            raise SymbnError(f"{at}: where compares {a} with itself; compare two indices")
        rel = sp.Eq if op == "==" else sp.Ne
        out.append(rel(INDEX[a], INDEX[b], evaluate=False))
    # the == conditions make classes of equal indices; a != inside one never holds
    same = {name: {name} for name in INDEX}
    for c in out:
        if isinstance(c, sp.Eq):
            joined = same[str(c.lhs)] | same[str(c.rhs)]
            for name in joined:
                same[name] = joined
    for c in out:
        if isinstance(c, sp.Ne) and str(c.rhs) in same[str(c.lhs)]:
            raise SymbnError(f"{at}: where = '{_clip(where)}' never holds ({c.lhs} != {c.rhs} "
                             "contradicts the == conditions); a step must claim something")
    return tuple(out)


def _split_links(claim: str) -> list[str]:
    """Split a chain a = b = c at the `=` signs outside brackets (not ==, !=, <=, >=, :=)."""
    parts, depth, start = [], 0, 0
    for pos, ch in enumerate(claim):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if (ch == "=" and depth == 0 and claim[pos - 1:pos] not in ("=", "!", "<", ">", ":")
                and claim[pos + 1:pos + 2] != "="):
            parts.append(claim[start:pos])
            start = pos + 1
    return parts + [claim[start:]]


def _parse_claim(claim: str, at: str, vocabulary: Vocabulary | None = None,
                 weights: dict | None = None) -> tuple[sp.Expr, ...]:
    check_size(claim, at, "split it into steps", what="claim is ")
    parts = _split_links(claim)
    if len(parts) < 2:
        hint = ("; write one '=' between the sides, not '=='"
                if "==" in claim else "")
        raise SymbnError(f"{at}: claim must be an equation 'lhs = rhs' (or a chain a = b = c)"
                         f"{hint}")
    links = []
    for part in parts:
        if not part.strip():
            raise SymbnError(f"{at}: empty side in claim '{_clip(claim)}'")
        # each part passes the size checks, as the claim did: it splits at depth 0
        links.append(parse_expression(part, at, vocabulary, weights, "split it into steps"))
    return tuple(links)
