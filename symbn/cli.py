"""The `symbn` command line: argument parsing only, one library call per subcommand.

Exit codes: 0 all proved (or success), 1 something disproved, 2 bad input or usage,
3 undecided (unknown) with nothing disproved, 4 internal error (a defect in symbn, never a
verdict), 130 interrupted.
"""

from __future__ import annotations

import argparse
import math
import sys

INTERNAL_ERROR = 4


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `symbn: error: ...`, exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"symbn: error: {message}; see '{self.prog} --help'\n")
        sys.exit(2)


def _positive_int(flag: str, text: str, allow_all: bool = False) -> int | str:
    from .errors import SymbnError

    if allow_all and text == "all":
        return "all"
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < 1:
        extra = " or 'all'" if allow_all else ""
        raise SymbnError(f"{flag} must be a positive integer{extra}, got {text!r}; "
                         f"try {flag} 4" if flag == "--n" else
                         f"{flag} must be a positive integer, got {text!r}; try {flag} 1")
    return value


def _timeout(text: str | None) -> float | None:
    from .errors import SymbnError

    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or math.isnan(value) or value == float("inf"):
        raise SymbnError(f"--timeout must be a positive number of seconds, got {text!r}; "
                         "try --timeout 60")
    return value


def _emit(report, as_json: bool) -> int:
    print(report.to_json() if as_json else str(report))
    return report.exit_code


def _progress():
    """A progress callback writing to stderr, only on a terminal and after a few seconds."""
    import time

    if not sys.stderr.isatty():
        return None
    start = time.monotonic()

    def show(line: str) -> None:
        if time.monotonic() - start > 2.0:
            sys.stderr.write(f"symbn: {line}\n")
            sys.stderr.flush()
    return show


def _verify(args: argparse.Namespace) -> int:
    from .verify import verify

    n = _positive_int("--n", args.n, allow_all=True)
    d = _positive_int("--d", args.d)
    timeout = _timeout(args.timeout)
    if n == "all":
        from .errors import SymbnError
        from .general import verify_all

        if d != 1 or args.method != "exact":
            raise SymbnError("--n all proves the one-column derivation exactly for every N; "
                             "drop --d and --method (columns: --n N --d D)")
        return _emit(verify_all(timeout=timeout, progress=_progress()), args.json)
    report = verify(n=n, d=d, timeout=timeout, all_pairs=args.all_pairs or None,
                    method=args.method, progress=_progress())
    if args.method != "exact" or n > 64:
        # checking the note's steps at this N would dominate; their every-N proof covers it
        from .general import append_every_n

        return _emit(append_every_n(report, n), args.json)
    from .check import append_shipped

    left = None if timeout is None else max(timeout - report.info.get("seconds", 0), 1e-3)
    return _emit(append_shipped(report, n, left), args.json)


def _check(args: argparse.Namespace) -> int:
    from .check import check

    n = _positive_int("--n", args.n, allow_all=True)
    if n == "all":
        from .general import check_all

        return _emit(check_all(args.derivation, timeout=_timeout(args.timeout),
                               progress=_progress()), args.json)
    report = check(args.derivation, n, timeout=_timeout(args.timeout),
                   all_assignments=args.all_assignments or None)
    return _emit(report, args.json)


def _latex(args: argparse.Namespace) -> int:
    from .errors import SymbnError
    from .latex import export

    if args.n == "all" and args.expand:
        raise SymbnError("--expand prints concrete-N expressions and has no meaning with "
                         "--n all; drop --expand or give a size such as --n 3")
    import time

    n = "all" if args.n == "all" else _positive_int("--n", args.n)
    start = time.monotonic()
    doc, out = export(args.output, derivation=args.derivation, n=n, expand=args.expand,
                      timeout=_timeout(args.timeout))
    failed = [r for rep in doc.reports.values() for r in rep if r.verdict != "proved"]
    size = "every N, symbolic" if n == "all" else f"N = {n}"
    print(f"wrote {out} ({size}, {len(doc.equations)} equations, {len(failed)} not "
          f"proved; checked in {doc.seconds:.1f} s, {time.monotonic() - start:.1f} s in all)")
    return 1 if any(r.verdict == "disproved" for r in failed) else (3 if failed else 0)


def _codegen(args: argparse.Namespace) -> int:
    from .codegen import generate, write

    n = None if args.n is None else _positive_int("--n", args.n)
    source = generate(args.target, n=n, unrolled=args.unrolled)
    write(source, args.output)
    what = f"unrolled for N = {n}" if args.unrolled else f"{args.target}, any N"
    print(f"wrote {args.output} ({what}, {source.count(chr(10))} lines)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="symbn", description="Machine-checked BatchNorm backward derivations.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("verify", help="prove the BatchNorm backward derivation for N (x D)")
    p.add_argument("--n", default="4",
                   help="batch size N, a positive integer, or 'all' for every N (default 4)")
    p.add_argument("--d", default="1", help="number of columns D (default 1)")
    p.add_argument("--timeout", help="seconds; claims left when it runs out are 'unknown'")
    p.add_argument("--all-pairs", action="store_true",
                   help="check every index pair instead of using row symmetry")
    p.add_argument("--method", choices=["exact", "random"], default="exact",
                   help="exact canonical forms (proved), or exact values at random points "
                        "(probable, with the Schwartz-Zippel bound)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(run=_verify)

    p = sub.add_parser("check", help="check every step of a derivation file for N")
    p.add_argument("derivation", help="a .toml derivation file, or a shipped name (batchnorm)")
    p.add_argument("--n", default="4",
                   help="batch size N, a positive integer, or 'all' for every N (default 4)")
    p.add_argument("--timeout", help="seconds; steps left when it runs out are 'unknown'")
    p.add_argument("--all-assignments", action="store_true",
                   help="check every index assignment instead of using row symmetry")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(run=_check)

    p = sub.add_parser("latex", help="typeset the checked derivation as LaTeX or PDF")
    p.add_argument("derivation", nargs="?", default=None,
                   help="a .toml derivation file or a shipped name (default: batchnorm)")
    p.add_argument("--n", default="3",
                   help="batch size N, a positive integer (default 3), or all for every N")
    p.add_argument("-o", "--output", required=True,
                   help="out.tex for LaTeX source, out.pdf to compile with pdflatex")
    p.add_argument("--expand", action="store_true",
                   help="also print the results expanded in the leaves")
    p.add_argument("--timeout", help="seconds; claims left when it runs out are 'unknown'")
    p.set_defaults(run=_latex)

    p = sub.add_parser("codegen", help="write a standalone module computing the proved gradients")
    p.add_argument("-o", "--output", required=True, help="the .py file to write")
    p.add_argument("--target", choices=["numpy", "numba"], default="numpy",
                   help="numpy (vectorised, default) or numba (fused loops)")
    p.add_argument("--n", default=None, help="batch size for --unrolled code")
    p.add_argument("--unrolled", action="store_true",
                   help="unrolled scalar expressions for one concrete N (needs --n)")
    p.set_defaults(run=_codegen)
    return parser


def _version() -> str:
    from . import __version__

    return f"symbn {__version__}"


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    from .errors import SymbnError

    try:
        return args.run(args)
    except SymbnError as err:
        if args.debug:
            raise
        sys.stderr.write(f"symbn: error: {err}\n")
        return err.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("symbn: interrupted\n")
        return 130
    except Exception as err:  # a defect: its own exit code, so it never reads as a verdict
        if args.debug:
            raise
        message = " ".join(str(err).split())[:200]
        sys.stderr.write(f"symbn: internal error: {type(err).__name__}: {message}; this is a "
                         "defect in symbn, not a verdict (exit 4); rerun with --debug for "
                         "the traceback\n")
        return INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
