"""Wall time and peak memory of the 3-node demo analyses over the simulator (informative, no targets).

algorithms/descriptive_statistics.py and algorithms/logistic_regression.py, seed 7, as ``make demo`` runs
them (``flame-sim run``: one process per node) and in the in-process tester (``run_local``). Each run happens
in a fresh process; peak memory is that process's peak resident set size (VmHWM; for the in-process runs: the
simulator's hub and node services plus every node's SDK), and for ``flame-sim run`` also the largest node
process's (``RUSAGE_CHILDREN``, which Linux keeps across fork and exec: at least the runner's size when it
started the nodes).
"""

from __future__ import annotations

import importlib.util
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks.processes import ChildError, run_child, status_kib
from benchmarks.report import row
from flame_sdk.sim.run.runner import run_analysis
from flame_sdk.testing import run_local

ALGORITHMS = Path(__file__).resolve().parent.parent / "algorithms"
RUN_TIMEOUT = 600.0


def _algorithm(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_algorithm_{name}", ALGORITHMS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _demo(name: str) -> str:
    """``make demo``'s command: flame-sim run with one process per node."""
    with tempfile.TemporaryDirectory() as results:
        code = run_analysis(str(ALGORITHMS / f"{name}.py"), nodes=3, seed=7, results_dir=Path(results),
                            timeout=300, quiet=True)
    if code != 0:
        raise RuntimeError(f"flame-sim run {name} exited with {code}")
    return "-"


def _local_demo(name: str) -> int:
    return run_local(nodes=3, seed=7, **_algorithm(name).star_arguments({})).rounds


JOBS: dict[str, Callable[[], Any]] = {
    "demo, flame-sim run: descriptive_statistics": lambda: _demo("descriptive_statistics"),
    "demo, flame-sim run: logistic_regression": lambda: _demo("logistic_regression"),
    "demo, in-process tester: descriptive_statistics": lambda: _local_demo("descriptive_statistics"),
    "demo, in-process tester: logistic_regression": lambda: _local_demo("logistic_regression"),
}


def job(name: str) -> tuple[float, float, float, Any]:
    """A fresh process: wall time, peak RSS (own and largest child's) and rounds of one job."""
    sys.stdout = open(os.devnull, "w")  # the nodes log; figures go back to the parent
    start = time.perf_counter()
    rounds = JOBS[name]()
    elapsed = time.perf_counter() - start
    own = status_kib("VmHWM") / 1024
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return elapsed, own, child, rounds


def main() -> None:
    for name in JOBS:
        try:
            elapsed, own_mb, child_mb, rounds = run_child(job, name, timeout=RUN_TIMEOUT)
        except ChildError as exc:
            row(name, f"FAILED ({exc.summary()})")
            continue
        children = f" (largest node process {child_mb:.1f} MiB)" if child_mb else ""
        row(name, f"{elapsed:7.2f} s   peak RSS {own_mb:7.1f} MiB{children}   rounds {rounds}")


if __name__ == "__main__":
    main()
