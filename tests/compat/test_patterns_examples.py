"""The StarModel examples of PrivateAIM/python-sdk-patterns (``examples/run_star_model.py`` and
``examples/run_star_model_dp.py``), restated in ``analyses/patient_count.py``: a node process calls
``StarModel(...)`` with the examples' arguments and no SDK of its own, as on a FLAME node."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flame_sdk.sim.data.data_sources import default_cohort
from flame_sdk.testing import run_local
from tests.compat.analyses.patient_count import CountSummer, PatientCounter

pytestmark = [pytest.mark.sim, pytest.mark.slow]

ANALYSIS = Path(__file__).parent / "analyses" / "patient_count.py"


def patients(nodes: int, seed: int) -> float:
    """How many patients the simulator's data nodes hold for ``seed`` (nodes 1 .. nodes-1)."""
    return float(sum(default_cohort(index, seed).patients for index in range(1, nodes)))


def test_star_model_example_runs_as_node_processes(tmp_path):
    run = subprocess.run([sys.executable, "-m", "flame_sdk.sim.run.cli", "run", str(ANALYSIS), "--nodes", "2",
                          "--seed", "7", "--results", str(tmp_path)], cwd=tmp_path, capture_output=True, text=True,
                         timeout=240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    [record] = list(tmp_path.glob("*/run.json"))
    assert json.loads(record.read_text())["results"] == ["patient_count.txt"]  # an unnamed str result
    assert float((record.parent / "patient_count.txt").read_text()) == patients(2, 7)


def test_local_dp_example_submits_a_noised_count():
    run = run_local(PatientCounter, CountSummer, "fhir", query="Patient?_summary=count", nodes=3, seed=7, epsilon=1.0,
                    sensitivity=1.0)
    assert run.result_before_noise == patients(3, 7)  # the aggregator's own sum
    [(_, content)] = run.final_results
    assert float(content) == run.result != patients(3, 7)  # the released count carries Laplace noise
