"""Start and stop the real services on loopback: PostgreSQL, SeaweedFS, and per node a result service
(uvicorn, as its Dockerfile runs it) behind the node's nginx server block."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from conformance.install import SetupError, Toolchain
from conformance.nginx_conf import NodeGateway, render

S3_KEY, S3_SECRET = "conformance", "conformance-secret"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, what: str, proc: subprocess.Popen[bytes], log: Path,
                  timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SetupError(f"{what} exited with code {proc.returncode}; see {log}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        time.sleep(0.2)
    raise SetupError(f"{what} did not listen on {host}:{port} within {timeout:.0f} s; see {log}")


class Processes:
    """Children started by the harness; each is stopped by its own pid (process group) at exit."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._cleanups: list[tuple[str, list[str]]] = []

    def start(self, name: str, cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None,
              user: str | None = None) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.work / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        if user is not None:
            cmd = ["runuser", "-u", user, "--", *cmd]
        with log.open("ab") as out:
            proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self._procs.append((name, proc))
        return proc, log

    def on_exit(self, name: str, cmd: list[str]) -> None:
        self._cleanups.append((name, cmd))

    def stop_all(self) -> None:
        for _, cmd in reversed(self._cleanups):
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        for _, proc in reversed(self._procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for _, proc in reversed(self._procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str


def start_postgres(procs: Processes, tools: Toolchain, run: Path, databases: list[str]) -> Postgres:
    """A throwaway cluster in ``run/pg`` (as user ``postgres`` when the harness runs as root)."""
    data = run / "pg"
    data.mkdir(parents=True)
    user = "postgres" if os.geteuid() == 0 else None
    if user is not None:
        shutil.chown(data, user)
        data.chmod(0o700)
    port = free_port()
    prefix = ["runuser", "-u", user, "--"] if user else []
    init = subprocess.run([*prefix, str(tools.pg_bin / "initdb"), "-D", str(data), "-U", "flame", "--auth=trust",
                           "-E", "UTF8"], capture_output=True, text=True)
    if init.returncode != 0:
        raise SetupError(f"initdb failed: {init.stderr.strip()[-500:]}")
    proc, log = procs.start("postgres", [str(tools.pg_bin / "postgres"), "-D", str(data), "-p", str(port),
                                         "-c", "listen_addresses=127.0.0.1", "-k", str(data)], user=user)
    wait_for_port("127.0.0.1", port, "PostgreSQL", proc, log)
    for name in databases:
        for _ in range(50):  # the server may still be starting up after it opened its port
            created = subprocess.run([str(tools.pg_bin / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U",
                                      "flame", name], capture_output=True, text=True)
            if created.returncode == 0:
                break
            time.sleep(0.2)
        else:
            raise SetupError(f"createdb {name} failed: {created.stderr.strip()}")
    return Postgres("127.0.0.1", port, "flame")


def start_seaweedfs(procs: Processes, tools: Toolchain, run: Path) -> str:
    """``weed server`` with its S3 gateway on loopback; returns the S3 endpoint ``host:port``."""
    data = run / "weed"
    data.mkdir(parents=True)
    ports = {name: free_port() for name in ("master", "volume", "filer", "s3")}
    grpc = [f"-{name}.port.grpc={free_port()}" for name in ports]  # the default (port + 10000) may not exist
    cmd = [str(tools.weed), "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
           f"-master.port={ports['master']}", f"-volume.port={ports['volume']}", f"-filer.port={ports['filer']}",
           "-s3", f"-s3.port={ports['s3']}", "-s3.port.iceberg=0", "-s3.port.lance=0", "-metricsPort=0",
           "-master.volumeSizeLimitMB=64", "-volume.max=0", *grpc]
    proc, log = procs.start("seaweedfs", cmd)
    wait_for_port("127.0.0.1", ports["s3"], "SeaweedFS S3", proc, log)
    return f"127.0.0.1:{ports['s3']}"


@dataclass(frozen=True)
class ResultServiceNode:
    name: str
    node_id: str
    gateway_url: str   # http://127.0.0.x[:port] (nginx)
    service_url: str   # http://127.0.0.1:<port> (uvicorn, for diagnostics)


def start_result_service(procs: Processes, tools: Toolchain, src: Path, run: Path, *, name: str, node_id: str,
                         key_pem: bytes, bucket: str, database: str, pg: Postgres, s3: str, hub_url: str,
                         workers: int) -> int:
    """uvicorn ``project.main:app`` from ``src`` with the service's own venv; returns its port."""
    home = run / name
    home.mkdir(parents=True)
    key = home / "ecdh.pem"
    key.write_bytes(key_pem)
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(src), "PYTHONUNBUFFERED": "1",
        "HUB__CORE_BASE_URL": f"{hub_url}/core/", "HUB__STORAGE_BASE_URL": f"{hub_url}/storage/",
        "HUB__AUTH_BASE_URL": f"{hub_url}/auth/", "HUB__AUTH__FLOW": "robot",
        "HUB__AUTH__ID": node_id, "HUB__AUTH__SECRET": "robot-secret",
        "MINIO__ENDPOINT": s3, "MINIO__ACCESS_KEY": S3_KEY, "MINIO__SECRET_KEY": S3_SECRET,
        "MINIO__BUCKET": bucket, "MINIO__USE_SSL": "0",
        "OIDC__CERTS_URL": f"{hub_url}/realms/flame/protocol/openid-connect/certs",
        "OIDC__CLIENT_ID_CLAIM_NAME": "client_id",
        "POSTGRES__HOST": pg.host, "POSTGRES__PORT": str(pg.port), "POSTGRES__USER": pg.user,
        "POSTGRES__PASSWORD": "unused-trust-auth", "POSTGRES__DB": database,
        "CRYPTO__PROVIDER": "file", "CRYPTO__ECDH_PRIVATE_KEY_PATH": str(key),
    }
    # the Dockerfile's entrypoint and arguments, on loopback and our port
    cmd = [str(tools.service_python), "-m", "uvicorn", "project.main:app", "--host", "127.0.0.1", "--port", str(port),
           "--workers", str(workers)]
    proc, log = procs.start(f"result-service-{name}", cmd, cwd=home, env=env)
    wait_for_port("127.0.0.1", port, f"result service {name}", proc, log)
    return port


def start_nginx(procs: Processes, tools: Toolchain, run: Path, name: str, gateway: NodeGateway) -> None:
    prefix = run / f"nginx-{name}"
    prefix.mkdir(parents=True)
    conf = prefix / "nginx.conf"
    conf.write_text(render(gateway, prefix))
    test = subprocess.run([str(tools.nginx), "-t", "-p", str(prefix), "-c", str(conf)], capture_output=True, text=True)
    if test.returncode != 0:
        raise SetupError(f"nginx rejected {conf}: {test.stderr.strip()}")
    proc, log = procs.start(f"nginx-{name}", [str(tools.nginx), "-p", str(prefix), "-c", str(conf),
                                              "-g", "daemon off;"])
    host, _, port = gateway.listen.rpartition(":")
    wait_for_port(host, int(port), f"nginx for {name}", proc, log)


def gateway_address(index: int) -> str:
    """``127.0.0.<2+index>:80`` as on a node (port 80, so redirects that drop the port land here too) when
    the harness may bind it (root), else a free port on that address."""
    host = f"127.0.0.{2 + index}"
    if os.geteuid() == 0:
        with contextlib.suppress(OSError), socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, 80))
            return f"{host}:80"
    return f"{host}:{free_port(host)}"


@contextlib.contextmanager
def processes(work: Path) -> Iterator[Processes]:
    procs = Processes(work)
    try:
        yield procs
    finally:
        procs.stop_all()
