"""The Makefile's install steps (read with ``make -n``) and docker/compose.sh's choice of compose command.

Each target installs only what it needs, once: the demo the runtime (the SDK and the simulator), the tests and
the linter their tools on top, each set behind its own stamp. compose.sh runs whichever compose flavour exists
and says what to install when none does.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="make is not installed")


def dry_run(target: str, venv: Path, **variables: str) -> list[str]:
    """The commands ``make -n target`` would run with VENV=venv."""
    args = [MAKE, "-n", "-C", str(ROOT), target, f"VENV={venv}", *(f"{k}={v}" for k, v in variables.items())]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def installs(commands: list[str]) -> list[str]:
    """The package sets the pip commands install, in order (``.[sim]``, ``.[sim,test]``, ...)."""
    found = []
    for command in commands:
        if "pip install" in command and "--upgrade pip" not in command:
            match = re.search(r"'(\.\[[^\]]*\])'", command)
            assert match, f"pip installs something other than the project and its extras: {command}"
            found.append(match.group(1))
    return found


@pytest.fixture
def fresh(tmp_path) -> Path:
    return tmp_path / "venv"


def make_venv(path: Path, *stamps: str) -> Path:
    """A stand-in venv with the given install stamps, newer than pyproject.toml."""
    (path / "bin").mkdir(parents=True)
    (path / "bin" / "python").touch()
    later = (ROOT / "pyproject.toml").stat().st_mtime + 10
    for stamp in ("bin/python", *(f".installed-{s}" for s in stamps)):
        (path / stamp).touch()
        os.utime(path / stamp, (later, later))
    return path


def test_demo_on_a_fresh_machine_creates_the_venv_and_installs_the_runtime_only(fresh):
    commands = dry_run("demo", fresh)
    assert any("-m venv" in c for c in commands)
    assert installs(commands) == [".[sim]"]
    assert any("flame-sim run" in c for c in commands)


def test_bench_needs_the_runtime_only(fresh):
    assert installs(dry_run("bench", fresh)) == [".[sim]"]


def test_test_installs_the_runtime_then_the_test_tools_and_lint_the_lint_tools(fresh):
    assert installs(dry_run("test", fresh)) == [".[sim]", ".[sim,test]"]
    assert installs(dry_run("lint", fresh)) == [".[sim]", ".[sim,lint]"]


def test_install_sets_up_everything_once(fresh):
    commands = dry_run("install", fresh)
    assert installs(commands) == [".[sim]", ".[sim,test]", ".[sim,lint]"]
    assert sum("-m venv" in c for c in commands) == 1


def test_each_set_is_installed_once_behind_its_own_stamp(tmp_path):
    venv = make_venv(tmp_path / "venv", "runtime")
    assert installs(dry_run("demo", venv)) == []
    assert installs(dry_run("test", venv)) == [".[sim,test]"]
    venv = make_venv(tmp_path / "venv2", "runtime", "test", "lint")
    for target in ("demo", "test", "lint", "bench"):
        assert installs(dry_run(target, venv)) == [], target


def test_a_changed_pyproject_reinstalls(tmp_path):
    venv = make_venv(tmp_path / "venv", "runtime", "test")
    earlier = time.time() - 3600 * 24 * 365 * 10
    os.utime(venv / ".installed-runtime", (earlier, earlier))
    assert installs(dry_run("test", venv)) == [".[sim]", ".[sim,test]"]


def test_the_runtime_install_shows_pips_progress(fresh):
    runtime = next(c for c in dry_run("demo", fresh) if "'.[sim]'" in c)
    assert "--quiet" not in runtime and " -q" not in runtime


def test_lock_regenerates_the_three_locks_with_hashes(tmp_path):
    venv = make_venv(tmp_path / "venv", "runtime")
    compiles = [c for c in dry_run("lock", venv) if "pip compile" in c]
    assert [c.split(" -o ")[-1].strip() for c in compiles] == [
        "requirements/sim.lock", "requirements/analysis.lock", "requirements/build.lock"]
    assert all("--generate-hashes" in c and "--universal" in c for c in compiles)
    assert installs(dry_run("lock", venv)) == [".[sim,lock]"]


def test_compose_targets_go_through_the_flavour_script(fresh):
    for target in ("compose-up", "compose-down"):
        commands = dry_run(target, fresh)
        assert installs(commands) == [], "compose needs no venv"
        assert any(c.strip().startswith("docker/compose.sh -f docker/compose.yml --env-file docker/compose.env")
                   for c in commands), commands
    assert any(c.startswith("podman compose -f") for c in dry_run("compose-up", fresh, COMPOSE="podman compose"))


# --- docker/compose.sh ----------------------------------------------------------------------------------------

SCRIPT = ROOT / "docker" / "compose.sh"


def stub(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def compose(tmp_path: Path, *, plugin: bool | None, standalone: bool) -> subprocess.CompletedProcess[str]:
    """compose.sh with stand-ins on PATH: docker with (plugin=True) or without the compose plugin, or no docker
    (plugin=None); docker-compose or not. Each stand-in prints what it was called with."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if plugin is not None:
        status = 0 if plugin else 1
        stub(bin_dir, "docker", f'if [ "$1 $2" = "compose version" ]; then exit {status}; fi\necho "docker $*"')
    if standalone:
        stub(bin_dir, "docker-compose", 'echo "docker-compose $* buildkit=$DOCKER_BUILDKIT,$COMPOSE_DOCKER_CLI_BUILD"')
    return subprocess.run(["/bin/sh", str(SCRIPT), "-f", "docker/compose.yml", "up"], env={"PATH": str(bin_dir)},
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("standalone", [True, False])
def test_the_compose_plugin_is_used_when_docker_has_it(tmp_path, standalone):
    result = compose(tmp_path, plugin=True, standalone=standalone)
    assert result.returncode == 0 and result.stdout.strip() == "docker compose -f docker/compose.yml up"


@pytest.mark.parametrize("plugin", [False, None])
def test_docker_compose_is_used_otherwise_with_buildkit(tmp_path, plugin):
    result = compose(tmp_path, plugin=plugin, standalone=True)
    assert result.returncode == 0
    assert result.stdout.strip() == "docker-compose -f docker/compose.yml up buildkit=1,1"


@pytest.mark.parametrize("plugin", [False, None])
def test_without_either_flavour_it_fails_saying_what_to_install(tmp_path, plugin):
    result = compose(tmp_path, plugin=plugin, standalone=False)
    assert result.returncode == 127 and result.stdout == ""
    assert "neither `docker compose` (the v2 plugin) nor `docker-compose`" in result.stderr
    assert "docker-compose-plugin" in result.stderr and "apt-get install docker-compose" in result.stderr


def test_make_compose_down_without_compose_exits_non_zero_with_the_fix(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    result = subprocess.run([MAKE, "-C", str(ROOT), "compose-down"], env={"PATH": str(bin_dir)},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "Docker Compose is not installed" in result.stderr
