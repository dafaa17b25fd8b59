"""Run the benchmark modules (all, or those named on the command line), print their figures and a summary.

    python -m benchmarks                  # everything (make bench)
    python -m benchmarks storage data     # some modules
    python -m benchmarks --strict         # exit 1 when a target FAILs

Targets are reported, not enforced: timing on a shared or busy machine varies, so a FAIL alone does not make
the run fail unless ``--strict`` is given. A benchmark that crashes or hangs always makes the exit status 1.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
import traceback

import benchmarks
from benchmarks import report


def main(argv: list[str]) -> int:
    strict = "--strict" in argv
    names = [a for a in argv if a != "--strict"]
    modules = sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_"))
    chosen = [m for m in modules if not names or m.removeprefix("bench_") in names or m in names]
    if not chosen:
        print(f"no benchmark matches {names}; available: {[m.removeprefix('bench_') for m in modules]}")
        return 2
    crashed = []
    for name in chosen:
        print(f"\n=== {name.removeprefix('bench_')} ===", flush=True)
        start = time.perf_counter()
        try:
            importlib.import_module(f"benchmarks.{name}").main()
        except Exception:  # noqa: BLE001 - the other benchmarks still run
            traceback.print_exc()
            crashed.append(name)
        print(f"({time.perf_counter() - start:.1f} s)", flush=True)
    print("\n=== targets ===")
    print(report.summary())
    if crashed:
        print(f"crashed: {', '.join(crashed)}")
        return 1
    return 1 if strict and not all(r.passed for r in report.RESULTS) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
