"""``python -m conformance [--out FILE] [word ...]``: run the harness (cases whose title contains a word)."""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import aiohttp
import boto3
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from conformance.cases import Harness, Row, run_cases
from conformance.client import Wire, storage_client
from conformance.hub_stub import HubState, Keycloak, create_app
from conformance.install import SetupError, Toolchain, prepare
from conformance.nginx_conf import NodeGateway
from conformance.probes import Probe, run_probes
from conformance.stack import (
    S3_KEY,
    S3_SECRET,
    Processes,
    free_port,
    gateway_address,
    processes,
    start_nginx,
    start_postgres,
    start_result_service,
    start_seaweedfs,
)
from flame_sdk.sim.common.crypto import public_key_to_hex

ENV_SRC = "FLAME_RESULT_SERVICE_SRC"
ENV_WORK = "FLAME_CONFORMANCE_WORK"
ENV_WORKERS = "FLAME_CONFORMANCE_WORKERS"


def _sdk_version() -> str:
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _service_version(src: Path) -> str:
    for line in (src / "pyproject.toml").read_text().splitlines():
        if line.startswith("version"):
            return line.split("=", 1)[1].strip().strip('"')
    return "unknown"


def render_table(rows: list[Row], probes: list[Probe], header: list[str]) -> str:
    out = [*header, ""]
    width = max(len(r.title) for r in rows) if rows else 10
    out.append(f"{'result':6}  {'call':{width}}  {'s':>6}")
    out.append("-" * (width + 16))
    for row in rows:
        out.append(f"{'PASS' if row.ok else 'FAIL':6}  {row.title:{width}}  {row.seconds:6.1f}")
        for line in row.wire[:6]:
            out.append(f"{'':8}wire: {line}")
        if len(row.wire) > 6:
            out.append(f"{'':8}wire: ... {len(row.wire) - 6} more requests")
        if row.detail:
            out += textwrap.wrap(row.detail, 150, initial_indent=" " * 8 + "got:  ", subsequent_indent=" " * 14)
    passed = sum(r.ok for r in rows)
    out += ["", f"{passed} passed, {len(rows) - passed} failed", ""]
    if probes:
        out.append("Raw requests through node A's nginx (redirects not followed):")
        for p in probes:
            out.append(f"  {p.request}")
            out.append(f"      -> {p.status} {p.body}" + (f"  [{p.headers}]" if p.headers else "")
                       + (f"  ({p.seconds:.1f} s)" if p.seconds >= 0.5 else ""))
    return "\n".join(out) + "\n"


async def main_async(src: Path, tools: Toolchain, procs: Processes, run: Path, workers: int,
                     only: list[str]) -> tuple[list[Row], list[Probe], list[str]]:
    analysis_id, project_id = str(uuid.uuid4()), str(uuid.uuid4())
    keys = {name: ec.generate_private_key(ec.SECP384R1()) for name in ("a", "b")}
    node_ids = {name: str(uuid.uuid4()) for name in keys}
    hub = HubState(analysis_id, project_id, {node_ids[n]: public_key_to_hex(k.public_key()) for n, k in keys.items()})
    keycloak = Keycloak()
    runner = web.AppRunner(create_app(hub, keycloak), access_log=None)
    await runner.setup()
    hub_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", hub_port).start()
    hub_url = f"http://127.0.0.1:{hub_port}"

    def start_backends() -> dict[str, str]:
        pg = start_postgres(procs, tools, run, [f"node_{n}" for n in keys])
        s3 = start_seaweedfs(procs, tools, run)
        client = boto3.client("s3", endpoint_url=f"http://{s3}", aws_access_key_id=S3_KEY,
                              aws_secret_access_key=S3_SECRET, region_name="us-east-1")
        gateways = {}
        for index, (name, key) in enumerate(keys.items()):
            client.create_bucket(Bucket=f"node-{name}")
            pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
            port = start_result_service(procs, tools, src, run, name=name, node_id=node_ids[name], key_pem=pem,
                                        bucket=f"node-{name}", database=f"node_{name}", pg=pg, s3=s3,
                                        hub_url=hub_url, workers=workers)
            listen = gateway_address(index)
            start_nginx(procs, tools, run, name, NodeGateway(listen, f"127.0.0.1:{port}", "127.0.0.1",
                                                             analysis_id, project_id))
            gateways[name] = f"http://{listen.removesuffix(':80')}"
        return gateways

    gateways = await asyncio.to_thread(start_backends)
    wire = Wire()
    header = [f"SDK {_sdk_version()} against node-result-service {_service_version(src)} ({src})",
              f"through nginx (node-pod-orchestration src/k8s/kubernetes.py server block) at "
              f"{gateways['a']} (node A, aggregator) and {gateways['b']} (node B); uvicorn --workers {workers}; "
              f"PostgreSQL, SeaweedFS S3, stub hub + Keycloak stand-in at {hub_url}"]
    try:
        async with aiohttp.ClientSession(trace_configs=[wire.trace_config()]) as session, \
                aiohttp.ClientSession() as raw:
            unknown = str(uuid.uuid4())  # node A also lists a participant the hub does not know
            participants = {"a": [node_ids["b"], unknown], "b": [node_ids["a"]]}
            nodes = {name: storage_client(session, name=name, node_id=node_ids[name], role=role,
                                          gateway_url=gateways[name], analysis_id=analysis_id, project_id=project_id,
                                          token=keycloak.token(analysis_id, ttl=6 * 3600),
                                          participants=functools.partial(list, participants[name]))
                     for name, role in (("a", "aggregator"), ("b", "default"))}
            harness = Harness(nodes["a"], nodes["b"], hub, keycloak, wire, raw, unknown)
            rows = await run_cases(harness, only)
            probes = await run_probes(harness) if not only else []
    finally:
        await runner.cleanup()
    return rows, probes, header


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance", description=__doc__)
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    parser.add_argument("only", nargs="*", help="run only cases whose title contains one of these words")
    args = parser.parse_args()
    src_text = os.environ.get(ENV_SRC)
    if not src_text:
        print(f"set {ENV_SRC} to a local checkout of PrivateAIM/node-result-service, e.g.\n"
              f"  {ENV_SRC}=/path/to/node-result-service make conformance", file=sys.stderr)
        return 2
    src = Path(src_text).resolve()
    work = Path(os.environ.get(ENV_WORK, ".conformance")).resolve()
    try:
        tools = prepare(work, src)
    except SetupError as exc:
        print(f"conformance: {exc}", file=sys.stderr)
        return 2
    run = work / f"run-{time.strftime('%Y%m%d-%H%M%S')}"
    for old in sorted(work.glob("run-*"))[:-2]:
        shutil.rmtree(old, ignore_errors=True)
    run.mkdir(parents=True)
    try:
        with processes(run) as procs:
            rows, probes, header = asyncio.run(main_async(src, tools, procs, run, int(os.environ.get(ENV_WORKERS, "2")),
                                                          args.only))
    except SetupError as exc:
        print(f"conformance: {exc}", file=sys.stderr)
        return 2
    table = render_table(rows, probes, header)
    print(table)
    if args.out:
        args.out.write_text(table)
    print(f"logs: {run / 'logs'}", file=sys.stderr)
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
