"""The analyses shown in README.md run unchanged under ``flame-sim run`` and give the patient total."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.sim.test_cli import flame_sim

pytestmark = pytest.mark.sim

README = Path(__file__).resolve().parents[2] / "README.md"
EXAMPLES = [block for block in re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
            if "__main__" in block]


@pytest.mark.slow
@pytest.mark.parametrize("source", EXAMPLES, ids=[f"example-{i}" for i in range(len(EXAMPLES))])
def test_readme_analysis_runs(tmp_path, source):
    (tmp_path / "analysis.py").write_text(source)
    run = flame_sim("run", "analysis.py", "--nodes", "3", "--seed", "2", "--results", "out", cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    (result,) = list((tmp_path / "out").glob("*/*"))
    assert int(result.read_text()) > 0


def test_the_readme_has_examples():
    assert len(EXAMPLES) == 2
