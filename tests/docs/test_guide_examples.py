"""The guide's examples run as written: its testing examples in this process, its analyses under flame-sim."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.sim.test_cli import flame_sim

pytestmark = pytest.mark.sim

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guide"
BLOCKS = [(page.stem, block) for page in sorted(GUIDE.glob("*.md"))
          for block in re.findall(r"```python\n(.*?)```", page.read_text(), re.S)]
RUNNABLE = [(page, block) for page, block in BLOCKS if "from flame_sdk.testing import" in block]
# analyses with the star templates (the plain FlameCoreSDK one is README.md's, run by test_readme_examples)
ANALYSES = [(page, block) for page, block in BLOCKS if "__main__" in block and "StarModel(" in block]


@pytest.mark.parametrize(("page", "source"), RUNNABLE, ids=[f"{p}-{i}" for i, (p, _) in enumerate(RUNNABLE)])
def test_guide_example_runs(page, source):
    exec(compile(source, f"docs/guide/{page}.md", "exec"), {"__name__": "guide_example"})


@pytest.mark.slow
@pytest.mark.parametrize(("page", "source"), ANALYSES, ids=[f"{p}-{i}" for i, (p, _) in enumerate(ANALYSES)])
def test_guide_analysis_runs_in_flame_sim(tmp_path, page, source):
    (tmp_path / "analysis.py").write_text(source)
    run = flame_sim("run", "analysis.py", "--nodes", "3", "--seed", "7", "--results", "out", cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    (record,) = list((tmp_path / "out").glob("*/run.json"))
    (result,) = json.loads(record.read_text())["results"]
    assert (record.parent / result).read_text().strip()


def test_the_guide_has_examples_of_each_kind():
    assert {page for page, _ in RUNNABLE} >= {"testing-locally", "own-data", "iterative", "local-dp"}
    assert [page for page, _ in ANALYSES] == ["first-analysis"]
