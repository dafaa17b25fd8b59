"""requirements/*.lock, the images' pinned dependency sets: consistent with pyproject.toml and installed as locked.

The consistency checks run always. The install check runs each image's install instructions (COPY, ENV, ARG,
WORKDIR and the RUN lines that call pip, taken from the Dockerfile itself) as local processes in a scratch venv
with a clean pip environment; it downloads the locked wheels from the index, so it runs only when asked:
``FLAME_TEST_IMAGE_INSTALLS=1`` (``make check-images``).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.docker.test_docker_compose import DOCKER
from tests.docker.test_docker_images import effective, stages

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = DOCKER.parent
LOCKS = ROOT / "requirements"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
RUN_INSTALLS = os.environ.get("FLAME_TEST_IMAGE_INSTALLS") == "1"
NETWORK_VARS = {"pip_cert", "ssl_cert_file", "requests_ca_bundle", "http_proxy", "https_proxy", "no_proxy",
                "pip_default_timeout"}


@dataclass(frozen=True)
class Pin:
    name: str
    version: Version
    marker: str
    hashes: tuple[str, ...]


def read_lock(path: Path) -> list[Pin]:
    """The pins of a ``uv pip compile --generate-hashes`` file (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", path.read_text())
    pins = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        spec, *hashes = re.split(r"\s+--hash=", line)
        requirement = Requirement(spec)
        (clause,) = requirement.specifier
        assert clause.operator == "==", f"{path.name}: {spec} is not pinned with =="
        pins.append(Pin(canonicalize_name(requirement.name), Version(clause.version), str(requirement.marker or ""),
                        tuple(h.strip() for h in hashes)))
    return pins


def by_name(pins: list[Pin]) -> dict[str, list[Pin]]:
    result: dict[str, list[Pin]] = {}
    for pin in pins:
        result.setdefault(pin.name, []).append(pin)
    return result


def project_requirements(*extras: str) -> list[Requirement]:
    project = PYPROJECT["project"]
    texts = list(project["dependencies"]) + [r for e in extras for r in project["optional-dependencies"][e]]
    return [Requirement(t) for t in texts]


def assert_lock_satisfies(lock: str, requirements: list[Requirement]) -> None:
    pins = by_name(read_lock(LOCKS / lock))
    for requirement in requirements:
        found = pins.get(canonicalize_name(requirement.name))
        assert found, f"{lock} has no pin for {requirement} (pyproject.toml): run `make lock`"
        for pin in found:
            assert requirement.specifier.contains(pin.version, prereleases=True), (
                f"{lock} pins {pin.name}=={pin.version}, outside {requirement} (pyproject.toml): run `make lock`")


@pytest.mark.parametrize("lock", ["sim.lock", "analysis.lock", "build.lock"])
def test_every_pin_is_exact_and_hashed_and_the_file_says_how_to_regenerate_it(lock):
    pins = read_lock(LOCKS / lock)
    assert pins
    for pin in pins:
        assert pin.hashes and all(h.startswith("sha256:") for h in pin.hashes), f"{lock}: {pin.name} has no hash"
    assert "make lock" in (LOCKS / lock).read_text().split("\n", 3)[1], f"{lock}: header names `make lock`"


def test_sim_lock_pins_the_sdk_and_simulator_requirements():
    assert_lock_satisfies("sim.lock", project_requirements("sim"))


def test_analysis_lock_pins_the_sdk_requirements_at_the_sim_lock_versions_and_nothing_of_the_simulator():
    assert_lock_satisfies("analysis.lock", project_requirements())
    analysis, sim = by_name(read_lock(LOCKS / "analysis.lock")), by_name(read_lock(LOCKS / "sim.lock"))
    for name, pins in analysis.items():
        assert name in sim, f"analysis.lock pins {name}, which sim.lock does not: run `make lock`"
        assert {(p.version, p.marker) for p in pins} <= {(p.version, p.marker) for p in sim[name]}, name
    for requirement in project_requirements("sim")[len(project_requirements()):]:
        assert canonicalize_name(requirement.name) not in analysis, f"the analysis image does not need {requirement}"


def test_build_lock_pins_the_build_system_requirements_listed_in_build_in():
    build_system = [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]
    listed = [Requirement(line) for line in (LOCKS / "build.in").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert sorted(map(str, listed)) == sorted(map(str, build_system)), "build.in repeats [build-system] requires"
    assert_lock_satisfies("build.lock", build_system)


@pytest.mark.parametrize("dockerfile,lock", [("Dockerfile.analysis", "analysis.lock"), ("Dockerfile.sim", "sim.lock")])
def test_images_install_their_lock_with_hashes_then_flame_sdk_without_dependencies(dockerfile, lock):
    final = effective(DOCKER / dockerfile, list(stages(DOCKER / dockerfile))[-1])
    runs = [args for keyword, args in final if keyword == "RUN" and "pip install" in args]
    locked = next(r for r in runs if f"requirements/{lock}" in r)
    assert {"--require-hashes", "--no-deps", "--only-binary=:all:"} <= set(locked.split()), locked
    assert "requirements/build.lock" in locked
    project = next(r for r in runs if re.search(r"pip install .*\s\.(\s|$)", r))
    assert runs.index(project) > runs.index(locked)
    assert {"--no-deps", "--no-build-isolation"} <= set(project.split()) and "pip check" in project
    copies = " ".join(args for keyword, args in final if keyword == "COPY")
    assert f"requirements/{lock}" in copies and "requirements/build.lock" in copies


# --- the install instructions as local processes ------------------------------------------------------------

def env_pairs(args: str) -> dict[str, str]:
    return dict(word.split("=", 1) for word in shlex.split(args))


def run_install_instructions(dockerfile: Path, stage: str, context: Path, scratch: Path, build_args: dict[str, str]):
    """COPY/ENV/ARG/WORKDIR/pip RUN lines of ``stage`` against a venv in ``scratch`` (absolute paths under it)."""
    venv = scratch / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # A clean pip environment as in the image (no pip config, index or find-links of this machine), keeping only
    # how this machine reaches the network (proxy, CA bundle).
    network = {k: v for k, v in os.environ.items() if k.lower() in NETWORK_VARS}
    env = {**network, "PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(scratch / "home"),
           "PIP_CONFIG_FILE": os.devnull, "TMPDIR": str(scratch)}
    (scratch / "home").mkdir()
    workdir = scratch

    def inside(path: str) -> Path:
        return scratch / path.lstrip("/") if path.startswith("/") else workdir / path

    for keyword, args in effective(dockerfile, stage):
        if keyword == "ENV":
            env.update(env_pairs(args))
        elif keyword == "ARG":
            name, _, default = args.partition("=")
            env[name] = build_args.get(name, default)
        elif keyword == "WORKDIR":
            workdir = inside(args)
            workdir.mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            *sources, target = [re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], word) for word in args.split()]
            for source in sources:
                destination = inside(target) / Path(source).name if target.endswith("/") else inside(target)
                destination.parent.mkdir(parents=True, exist_ok=True)
                copy = shutil.copytree if (context / source).is_dir() else shutil.copy
                copy(context / source, destination)
        elif keyword == "RUN" and "pip" in args:
            mount = re.match(r"--mount=\S*target=(\S+?)(,\S*)?\s", args)
            command = args
            if mount:  # a bind mount of the build context: the context directory itself
                command = args[mount.end():].replace(mount.group(1), str(context))
            result = subprocess.run(["sh", "-c", command], cwd=workdir, env=env, capture_output=True, text=True,
                                    timeout=900)
            assert result.returncode == 0, f"{dockerfile.name}: {command}\n{result.stdout[-3000:]}{result.stderr}"
    return venv


def freeze(venv: Path) -> dict[str, str]:
    out = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"], check=True,
                         capture_output=True, text=True, timeout=120).stdout
    return {canonicalize_name(n): v for n, _, v in (line.partition("==") for line in out.splitlines())}


def image_context(scratch: Path) -> Path:
    """The build context as .dockerignore leaves it, for what the Dockerfiles copy."""
    context = scratch / "context"
    context.mkdir()
    for name in ("pyproject.toml", "README.md", "requirements", "flame_sdk", "flame", "algorithms"):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, context / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                             if (ROOT / name).is_dir() else {}))
    return context


def installed_as_locked(venv: Path, lock: str) -> None:
    versions = freeze(venv)
    python = subprocess.run([str(venv / "bin" / "python"), "-c", "import sys; print(sys.version.split()[0])"],
                            check=True, capture_output=True, text=True).stdout.strip()
    from packaging.markers import default_environment

    environment = {**default_environment(), "python_full_version": python,
                   "python_version": ".".join(python.split(".")[:2])}
    for pin in read_lock(LOCKS / lock):
        if not pin.marker or Requirement(f"x; {pin.marker}").marker.evaluate(environment):
            assert versions.get(pin.name) == str(pin.version), f"{pin.name}: {versions.get(pin.name)} != {pin.version}"


needs_installs = pytest.mark.skipif(not RUN_INSTALLS, reason="downloads the locked wheels: FLAME_TEST_IMAGE_INSTALLS=1 "
                                    "(make check-images)")


@pytest.mark.slow
@needs_installs
def test_sim_image_installs_its_lock_and_runs_flame_sim(tmp_path):
    venv = run_install_instructions(DOCKER / "Dockerfile.sim", "0", image_context(tmp_path), tmp_path, {})
    installed_as_locked(venv, "sim.lock")
    subprocess.run([str(venv / "bin" / "flame-sim"), "--help"], check=True, capture_output=True, timeout=120)


@pytest.mark.slow
@needs_installs
def test_analysis_image_installs_its_lock_and_a_requirements_txt_beside_the_analysis(tmp_path):
    context = image_context(tmp_path)
    analysis = context / "analyses" / "e2e"
    analysis.mkdir(parents=True)
    (analysis / "analysis.py").write_text("import sklearn, matplotlib\nfrom flame.star import StarModel\n")
    (analysis / "requirements.txt").write_text("scikit-learn\nmatplotlib\n")
    venv = run_install_instructions(DOCKER / "Dockerfile.analysis", "analysis", context, tmp_path,
                                    {"ANALYSIS_FILE": "analyses/e2e/analysis.py"})
    installed_as_locked(venv, "analysis.lock")  # the analysis' requirements moved none of the SDK's pins
    home = tmp_path / "home" / "flame"
    subprocess.run([str(venv / "bin" / "python"), "analysis.py"], cwd=home, check=True, timeout=300)
