"""Start-up time of the command line against Python's own, interleaved in one run.

    python3 scripts/bench_startup.py [--runs 10]

Prints a Markdown table: the median wall time of each command over the runs, and its ratio to
`python3 -c pass` measured in the same rounds.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "python3 -c pass": [sys.executable, "-c", "pass"],
    "symbn --help": [shutil.which("symbn") or "symbn", "--help"],
    "symbn verify --help": [shutil.which("symbn") or "symbn", "verify", "--help"],
    "symbn verify --n 0 (usage error)": [shutil.which("symbn") or "symbn", "verify", "--n", "0"],
    "python3 -c 'import sympy' (for scale)": [sys.executable, "-c", "import sympy"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(runs):
        for name, argv in COMMANDS.items():
            start = time.perf_counter()
            subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           check=False)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["python3 -c pass"])
    print(f"| command ({runs} runs) | median | ratio to `python3 -c pass` |")
    print("|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| `{name}` | {median * 1000:.0f} ms | {median / base:.2f} |")


if __name__ == "__main__":
    main()
