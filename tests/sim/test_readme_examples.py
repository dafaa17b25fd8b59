"""README.md's examples run: its analyses unchanged under ``flame-sim run`` (giving the patient total), its
testing examples (``FakeFlameSDK``, ``run_local``) as they are written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.sim.test_cli import flame_sim

pytestmark = pytest.mark.sim

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
EXAMPLES = [block for block in BLOCKS if "__main__" in block]
TESTING_EXAMPLES = [block for block in BLOCKS if "from flame_sdk.testing import" in block]


@pytest.mark.slow
@pytest.mark.parametrize("source", EXAMPLES, ids=[f"example-{i}" for i in range(len(EXAMPLES))])
def test_readme_analysis_runs(tmp_path, source):
    (tmp_path / "analysis.py").write_text(source)
    run = flame_sim("run", "analysis.py", "--nodes", "3", "--seed", "2", "--results", "out", cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    (record,) = list((tmp_path / "out").glob("*/run.json"))
    (result,) = json.loads(record.read_text())["results"]
    assert int((record.parent / result).read_text()) > 0


def test_the_readme_has_examples():
    assert len(EXAMPLES) == 2


@pytest.mark.parametrize("source", TESTING_EXAMPLES, ids=[f"testing-{i}" for i in range(len(TESTING_EXAMPLES))])
def test_readme_testing_example_runs(source):
    exec(compile(source, "README.md", "exec"), {"__name__": "readme_example"})


def test_the_readme_has_a_fake_sdk_example_per_role_and_a_local_run():
    fake = [block for block in TESTING_EXAMPLES if "FakeFlameSDK(" in block]
    assert {role for block in fake for role in ("default", "aggregator") if f'FakeFlameSDK("{role}"' in block} == {
        "default", "aggregator"}
    assert any("run_local(" in block for block in TESTING_EXAMPLES)
