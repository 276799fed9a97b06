"""The `symbn` command line: argument parsing only, one library call per subcommand.

Exit codes: 0 all proved (or success), 1 something disproved, 2 bad input or usage,
3 undecided (unknown, or check-impl's consistent) with nothing disproved, 4 internal error
(a defect in symbn, never a verdict), 130 interrupted, 141 the reader of standard output went
away (`| head`).
"""

from __future__ import annotations

import argparse
import math
import re
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


def _refuse_with_all(flags: dict[str, object]) -> None:
    """`--n all` proves for every N at once: flags about one size or one method are refused."""
    from .errors import SymbnError

    given = [flag for flag, value in flags.items() if value not in (None, False)]
    if given:
        one = len(given) == 1
        raise SymbnError(f"{', '.join(given)} {'has' if one else 'have'} no meaning with --n all, "
                         f"which proves for every N at once; drop {'it' if one else 'them'}, or "
                         "give a size such as --n 4")


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
    from .limits import check_size

    n = _positive_int("--n", args.n, allow_all=True)
    d = 1 if args.d is None else _positive_int("--d", args.d)
    timeout = _timeout(args.timeout)
    if n == "all" and args.model not in (None, "batchnorm"):
        _refuse_with_all({"--d": args.d, "--method": args.method,
                          "--all-pairs": args.all_pairs})
        from .verify_model import verify_model

        return _emit(verify_model(args.model, "all", timeout=timeout, progress=_progress()),
                     args.json)
    if n == "all":
        _refuse_with_all({"--d": args.d, "--method": args.method,
                          "--all-pairs": args.all_pairs})
        from .general import verify_all

        return _emit(verify_all(timeout=timeout, progress=_progress()), args.json)
    method = args.method or "exact"
    if args.model not in (None, "batchnorm"):
        from .verify_model import verify_model

        return _emit(verify_model(args.model, n, d, timeout=timeout, progress=_progress(),
                                  method=method), args.json)
    check_size(n, d, timeout, method)
    from .verify import verify

    report = verify(n=n, d=d, timeout=timeout, all_pairs=args.all_pairs or None,
                    method=method, progress=_progress())
    if method != "exact" or n > 64:
        # checking the note's steps at this N would dominate; their every-N proof covers it
        from .general import append_every_n

        return _emit(append_every_n(report, n), args.json)
    from .check import append_shipped

    left = None if timeout is None else max(timeout - report.info.get("seconds", 0), 1e-3)
    return _emit(append_shipped(report, n, left), args.json)


def _check(args: argparse.Namespace) -> int:
    n = _positive_int("--n", args.n, allow_all=True)
    timeout = _timeout(args.timeout)
    if n == "all":
        _refuse_with_all({"--all-assignments": args.all_assignments})
        from .general import check_all

        return _emit(check_all(args.derivation, timeout=timeout, progress=_progress()),
                     args.json)
    from .limits import check_steps_size

    check_steps_size(n, timeout)
    from .check import check

    report = check(args.derivation, n, timeout=timeout,
                   all_assignments=args.all_assignments or None)
    return _emit(report, args.json)


def _latex(args: argparse.Namespace) -> int:
    import time

    n = _positive_int("--n", args.n, allow_all=True)
    if n == "all":
        _refuse_with_all({"--expand": args.expand, "--d": args.d})
    d = None if args.d is None else _positive_int("--d", args.d)
    timeout = _timeout(args.timeout)
    from .pdf import check_output

    check_output(args.output, args.format)  # refused before the proofs, not after
    from .latex import export

    start = time.monotonic()
    if d is None:
        doc, out = export(args.output, derivation=args.derivation, n=n, expand=args.expand,
                          timeout=timeout, fmt=args.format, model=args.model)
    else:
        from .errors import SymbnError

        if args.expand:
            raise SymbnError("--expand prints BatchNorm's Jacobian entries; drop it with --d")
        from .latex.model import export_model

        doc, out = export_model(args.output, model=args.model, derivation=args.derivation,
                                n=n, d=d, timeout=timeout, fmt=args.format)
    claims = [r.verdict for rep in doc.reports.values() for r in rep]
    others = "".join(f", {claims.count(v)} {v}" for v in dict.fromkeys(claims) if v != "proved")
    size = "every N, symbolic" if n == "all" else f"N = {n}" + (f", D = {d}" if d else "")
    _wrote(out, f"{size}, {len(doc.equations)} equations; {claims.count('proved')} of "
                f"{len(claims)} claims proved{others}; checked in {doc.seconds:.1f} s, "
                f"{time.monotonic() - start:.1f} s in all")
    return 1 if "disproved" in claims else (3 if others else 0)


def _codegen(args: argparse.Namespace) -> int:
    from . import io

    n = None if args.n is None else _positive_int("--n", args.n)
    where = io.target(args.output)  # refused before the proofs, not after
    from .codegen import generate

    source = generate(args.target, n=n, unrolled=args.unrolled, model=args.model)
    io.write(where, source)
    bounded = re.search(r"^MAX_N = (\d+)", source, re.MULTILINE)  # proved up to that N
    span = f"N <= {bounded[1]}" if bounded else "any N"
    what = f"unrolled for N = {n}" if args.unrolled else f"{args.target}, {span}"
    what = f"{args.model or 'batchnorm'}, {what}"
    _wrote(where, f"{what}, {source.count(chr(10))} lines")
    return 0


def _wrote(where, what: str) -> None:
    """The summary line; on stderr when the output itself went to stdout."""
    stream = sys.stderr if where.real == "-" else sys.stdout
    stream.write(f"wrote {where.name} ({what})\n")


# library messages name parameters (n=4, method='random'); the command line names flags
_PARAMETER = re.compile(r"(?<![\w\[.-])(n|d|timeout|method|target)=('?)([^\s',;)]*)\2")
_SWITCHES = ("unrolled", "expand", "all_pairs", "all_assignments")


def _cli_terms(message: str) -> str:
    """A library error in the command line's terms.

    >>> _cli_terms("n=5000 is too large; use n=1024 or less, set timeout=, or method='random'")
    '--n 5000 is too large; use --n 1024 or less, set --timeout, or --method random'
    """
    for name in _SWITCHES:
        message = message.replace(f"{name}=True", f"--{name.replace('_', '-')}")
    return _PARAMETER.sub(lambda m: f"--{m[1]} {m[3]}" if m[3] else f"--{m[1]}", message)


def _check_impl(args: argparse.Namespace) -> int:
    n = _positive_int("--n", args.n)
    d = _positive_int("--d", args.d)
    timeout = _timeout(args.timeout)
    from .impl import check_impl, load_function

    function = load_function(args.function)
    report = check_impl(function, model=args.model or "batchnorm", n=n, d=d,
                        signature=args.signature, timeout=timeout or 60.0, arrays=args.arrays)
    return _emit(report, args.json)


def _models(args: argparse.Namespace) -> int:
    from .models import describe, load, shipped

    if args.model is not None:
        print(describe(load(args.model)))
        return 0
    names = shipped()
    width = max(map(len, names))
    for name in names:
        model = load(name)
        print(f"{name:<{width}}  {model.title}\n{'':<{width}}  {model.summary()}")
    print(f"\n{len(names)} shipped models; 'symbn models NAME' (or a .toml path) shows one")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="symbn", description="Machine-checked backward derivations of "
                     "normalization layers (BatchNorm, LayerNorm, RMSNorm, your own model "
                     "files), and checks of your backward code.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("verify", help="prove a layer's backward derivation for N (x D)")
    p.add_argument("--model", help="a shipped model (symbn models) or a .toml model file "
                                   "(default batchnorm)")
    p.add_argument("--n", default="4",
                   help="batch size N, a positive integer, or 'all' for every N (default 4)")
    p.add_argument("--d", help="number of columns D (default 1)")
    p.add_argument("--timeout", help="seconds; claims left when it runs out are 'unknown'")
    p.add_argument("--all-pairs", action="store_true",
                   help="check every index pair instead of using row symmetry")
    p.add_argument("--method", choices=["exact", "random"],
                   help="exact canonical forms (proved; the default), or exact values at random "
                        "points (probable, with the Schwartz-Zippel bound)")
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
                   help="out.tex for LaTeX source, out.pdf to compile with pdflatex, "
                        "- for standard output")
    p.add_argument("--format", choices=["tex", "pdf"],
                   help="tex or pdf (default: from the file name; tex for -o -)")
    p.add_argument("--model", help="a shipped model or a .toml model file (default: the "
                                   "derivation file's model, else batchnorm)")
    p.add_argument("--expand", action="store_true",
                   help="also print the results expanded in the leaves")
    p.add_argument("--d", help="number of sets D: adds the results in matrix form along the "
                               "model's axis, proved for N x D (models other than batchnorm)")
    p.add_argument("--timeout", help="seconds; claims left when it runs out are 'unknown'")
    p.set_defaults(run=_latex)

    p = sub.add_parser("codegen", help="write a standalone module computing the proved gradients")
    p.add_argument("-o", "--output", required=True,
                   help="the .py file to write, - for standard output")
    p.add_argument("--model", help="a shipped model or a .toml model file (default batchnorm)")
    p.add_argument("--target", choices=["numpy", "numba"], default="numpy",
                   help="numpy (vectorised, default) or numba (fused loops)")
    p.add_argument("--n", default=None, help="batch size for --unrolled code")
    p.add_argument("--unrolled", action="store_true",
                   help="unrolled scalar expressions for one concrete N (needs --n)")
    p.set_defaults(run=_codegen)

    p = sub.add_parser(
        "check-impl", help="prove your own backward function right, or find the batch that "
        "breaks it", description="Imports PATH and runs FUNC: it is your own code, run like a "
        "test (derivation and model files are never executed). FUNC is called once on NumPy "
        "arrays of exact symbolic numbers; every returned gradient is proved equal to the "
        "model's derivative for this N and D, or refuted with an exact batch. Code that leaves "
        "exact arithmetic (float buffers, math.sqrt, np.float32, compiled or PyTorch code) is "
        "run in float64 at exact points instead: 'consistent' (agreement within rounding, exit "
        "3, never a proof) or disproved with the batch. Exit codes: 0 proved, 1 disproved, "
        "2 error, 3 consistent or unknown.")
    p.add_argument("function", metavar="PATH:FUNC", help="a .py file and a function in it")
    p.add_argument("--model", help="a shipped model or a .toml model file (default batchnorm)")
    p.add_argument("--n", default="3", help="elements per set N (default 3)")
    p.add_argument("--d", default="2", help="number of sets D (default 2, so that a confusion "
                                             "of axes or sizes shows)")
    p.add_argument("--signature", help='the function\'s arguments and results, e.g. "dy, x, '
                                       'w, eps -> dx, dw, db" (default per model)')
    p.add_argument("--timeout", help="seconds for the call and the proofs (default 60)")
    p.add_argument("--arrays", choices=["numpy", "torch"],
                   help="numpy, or torch to call FUNC with torch.float64 tensors (never proved); "
                        "default: numpy, torch when the exact trace fails on code using torch")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(run=_check_impl)

    p = sub.add_parser("models", help="list the shipped layer models, or show one")
    p.add_argument("model", nargs="?", default=None,
                   help="a shipped model name or a .toml model file to read and show")
    p.set_defaults(run=_models)
    return parser


def _version() -> str:
    from . import __version__

    return f"symbn {__version__}"


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    try:
        return _run(argv)
    except KeyboardInterrupt:
        sys.stderr.write("symbn: interrupted\n")
        return 130
    except BrokenPipeError:  # `symbn ... | head`: the reader left; say nothing more
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _run(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    from .errors import SymbnError

    # a witness is printed exactly, however many digits (claims are size-limited on input)
    sys.set_int_max_str_digits(0)

    try:
        return args.run(args)
    except SymbnError as err:
        if args.debug:
            raise
        sys.stderr.write(f"symbn: error: {_cli_terms(str(err))}\n")
        return err.exit_code
    except BrokenPipeError:
        raise
    except Exception as err:  # a defect: its own exit code, so it never reads as a verdict
        if args.debug:
            raise
        message = " ".join(str(err).split())[:200]
        sys.stderr.write(f"symbn: internal error: {type(err).__name__}: {message}; this is a "
                         "defect in symbn, not a verdict (exit 4); rerun as 'symbn --debug "
                         f"{args.command} ...' for the traceback\n")
        return INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
