"""``flame-sim serve {hub,node}``: one simulator service per process, as the docker-compose setup runs them.

The hub registers the topology's analysis, prints status changes and writes final results to a folder.
A node stack serves its hub inbox (port of its ``inbox_url``) and the gateway of its analysis deployment
(``--port``, 80 in compose, reached as ``http://nginx-<DEPLOYMENT_NAME>``), and polls the analysis' status;
its data API reads the external stores the topology names (filled by ``flame-sim seed``).
Both run until SIGTERM/SIGINT; the hub also ends once the analysis finished when asked to.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from flame_sdk.protocol.status import AnalysisStatus, is_final
from flame_sdk.runtime import bounded
from flame_sdk.sim.common.keycloak import TokenIssuer
from flame_sdk.sim.common.platform_model import HubAnalysis
from flame_sdk.sim.run import result_files
from flame_sdk.sim.run.seed import s3_endpoint
from flame_sdk.sim.run.topology import SECRET_VAR, Topology, TopologyError, load_topology
from flame_sdk.sim.services.hub import Hub
from flame_sdk.sim.services.hub_storage import StoredResult, hub_store
from flame_sdk.sim.services.node_stack import SHUTDOWN_TIMEOUT, SimNode
from flame_sdk.sim.services.s3_server import S3Endpoint

#: How long a node stack waits for the hub to answer before it gives up.
HUB_WAIT = 120.0
#: How often the hub checks statuses and results.
WATCH_INTERVAL = 0.5
#: After a node failed, the others get this long (default) to end before the hub gives its verdict.
FAILURE_GRACE = 15.0
#: Final results up to this size are printed when the analysis ends (larger ones by size only).
SHOW_LIMIT = 1024 * 1024


class ServeError(RuntimeError):
    """A service this process needs did not come up."""


def _say(role: str, text: str) -> None:
    print(f"flame-sim {role}: {text}", flush=True)


def token_secret(env: Mapping[str, str]) -> bytes:
    """The shared token secret from ``FLAME_SIM_TOKEN_SECRET`` (hex), with errors that say how to fix it."""
    text = env.get(SECRET_VAR, "")
    if not text:
        raise TopologyError(f"{SECRET_VAR} is not set: give every node stack the hex secret that signed "
                            f"KEYCLOAK_TOKEN (docker/compose.env)")
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        raise TopologyError(f"{SECRET_VAR} must be hex digits, got {text[:12]!r}...") from None
    if len(secret) < 32:
        raise TopologyError(f"{SECRET_VAR} has {len(secret)} bytes; use at least 32 (64 hex digits)")
    return secret


def serve(role: str, topology_path: Path, node: str | None = None, host: str = "0.0.0.0", port: int = 80,
          results: Path | None = None, exit_when_finished: bool = False, failure_grace: float = FAILURE_GRACE) -> int:
    """Run the hub or one node stack until stopped; return the process exit code."""
    try:
        topology = load_topology(topology_path)
        if role == "hub":
            return asyncio.run(_serve_hub(topology, host, port, results, exit_when_finished, failure_grace))
        if role == "node":
            if not node:
                raise TopologyError(f"serve node needs --node NAME; nodes: {[n.name for n in topology.nodes]}")
            topology.node(node)
            return asyncio.run(_serve_node(topology, node, host, port, token_secret(os.environ),
                                           s3_endpoint(topology, os.environ)))
        raise TopologyError(f"unknown role {role!r}; use 'hub' or 'node'")
    except (TopologyError, ServeError) as exc:
        print(f"flame-sim serve: {exc}", file=sys.stderr, flush=True)
        return 2


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _listen(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


# -- hub ----------------------------------------------------------------------------------------------
async def _serve_hub(topology: Topology, host: str, port: int, results: Path | None,
                     exit_when_finished: bool, failure_grace: float) -> int:
    stop = _stop_event()
    hub = Hub()
    await hub.start()
    analysis = hub.add_analysis(topology.analysis_id, topology.project_id, topology.participants())
    runner = await _listen(hub.create_app(), host, port)
    names = {n.node_id: n.name for n in topology.nodes}
    _say("hub", f"listening on {host}:{port}; analysis {topology.analysis_id} on "
                + ", ".join(f"{n.name} ({n.role})" for n in topology.nodes))
    seen: dict[str, tuple[str, int]] = {}
    saved = 0
    code = 0
    verdict_at = float("inf")
    try:
        while not stop.is_set():
            for node_id, state in analysis.statuses.items():
                now = (state["status"], state["progress"])
                if seen.get(node_id) != now:
                    seen[node_id] = now
                    _say("hub", f"{names[node_id]} {now[0]} {now[1]}%")
            saved = await _save_new_results(topology, hub, results, saved)
            if exit_when_finished:
                statuses = [s["status"] for s in analysis.statuses.values()]
                if AnalysisStatus.FAILED in statuses:
                    verdict_at = min(verdict_at, time.monotonic() + failure_grace)
                if all(is_final(s) for s in statuses) or time.monotonic() > verdict_at:
                    code = _verdict(analysis, names, hub_store(hub).results.get(topology.analysis_id, []))
                    break
            with contextlib.suppress(asyncio.TimeoutError):
                await bounded(stop.wait(), WATCH_INTERVAL)
    finally:
        await _save_new_results(topology, hub, results, saved)
        await runner.cleanup()
        await hub.stop()
    return code


async def _save_new_results(topology: Topology, hub: Hub, results: Path | None, saved: int) -> int:
    """Copy final results that arrived since the last call into the results folder (so they survive the stack
    being stopped); return how many there are now."""
    stored = hub_store(hub).results.get(topology.analysis_id, [])
    if results is not None:
        for result in stored[saved:]:
            target = results / topology.analysis_id / Path(result.filename).name
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                await asyncio.to_thread(shutil.copyfile, result.path, target)
            except OSError as exc:
                _say("hub", f"cannot write {target} ({exc}); is the results folder writable by uid {os.getuid()}? "
                            f"(`make compose-up` runs the hub with your uid)")
                continue
            _say("hub", f"final result written to {target}")
    return len(stored)


def _verdict(analysis: HubAnalysis, names: dict[str, str], stored: list[StoredResult]) -> int:
    """Print the outcome; 0 when every node executed and a final result arrived."""
    unfinished = {n: s["status"] for n, s in analysis.statuses.items() if s["status"] != AnalysisStatus.EXECUTED}
    for node_id, status in unfinished.items():
        errors = [r["log"] for r in analysis.logs.get(node_id, []) if r.get("log_type") in ("error", "crit", "emerg")]
        state = f"ended {status}" if is_final(status) else f"is still {status}"
        _say("hub", f"FAILED: {names[node_id]} {state}" + (f": {errors[-1]}" if errors else ""))
    if unfinished:
        return 1
    if not stored:
        _say("hub", "FAILED: every node executed but no final result was submitted")
        return 1
    for result in stored:
        shown = result_files.render(result.path.read_bytes()) if result.size <= SHOW_LIMIT else f"<{result.size} bytes>"
        _say("hub", f"final result {result.filename}:\n{shown}")
    _say("hub", "analysis executed on every node")
    return 0


# -- node stack ---------------------------------------------------------------------------------------
async def _wait_for_hub(hub_url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while True:
            try:
                async with session.get(hub_url + "/healthz") as resp:
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise ServeError(f"the hub at {hub_url} did not answer within {timeout:.0f} s; is it running?")
            await asyncio.sleep(0.5)


async def _serve_node(topology: Topology, name: str, host: str, port: int, secret: bytes,
                      s3: S3Endpoint | None) -> int:
    stop = _stop_event()
    spec = topology.node(name)
    tokens = TokenIssuer(secret=secret)
    state_dir = Path(tempfile.mkdtemp(prefix=f"flame-sim-{name}-"))
    node = SimNode(spec.spec(), topology.seed, topology.hub_url, state_dir, tokens, host=host, s3_endpoint=s3)
    try:
        await _wait_for_hub(topology.hub_url, HUB_WAIT)
        await node.start(inbox_port=urlsplit(spec.inbox_url).port or 80, inbox_url=spec.inbox_url)
        await node.deploy(spec.deployment(topology, tokens.issue(topology.analysis_id)), port=port)
        _say(name, f"node {spec.node_id} ({spec.role}) registered at {topology.hub_url}; gateway "
                   f"{spec.gateway_url} listening on {host}:{port}, forwarding /analysis to {spec.analysis_api_url}")
        await stop.wait()
        return 0
    finally:
        await node.stop()
        shutil.rmtree(state_dir, ignore_errors=True)
