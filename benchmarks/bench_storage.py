"""Global intermediate data figures between two simulated nodes (real HTTP on loopback).

* save+get throughput: ``save_intermediate_data(..., 'global')`` on one node (pickle, upload, encrypt for
  the recipient, hub) then ``get_intermediate_data('global')`` on the recipient (hub, verify and decrypt,
  download, unpickle), for 1, 16 and 64 MiB payloads;
* the same sizes through a bare aiohttp PUT + GET on loopback (no TLS, no disk, no crypto) for comparison;
* peak Python heap (tracemalloc) of one 64 MiB save+get above the payload itself.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import tracemalloc

import aiohttp
from aiohttp import web

from benchmarks.report import row
from flame_sdk import FlameCoreSDK
from flame_sdk.sim.run.simulation import SimConfig, Simulation

MIB = 1024 * 1024
SIZES_MIB = (1, 16, 64)
REPEATS = {1: 7, 16: 3, 64: 2}
CHUNK = 256 * 1024


def _rate(size: int, seconds: float) -> str:
    return f"{size / MIB / seconds:8.1f} MiB/s"


def _save_get(sender: FlameCoreSDK, recipient: FlameCoreSDK, payload: bytes) -> tuple[float, float]:
    start = time.perf_counter()
    saved = sender.save_intermediate_data(payload, "global", remote_node_ids=[recipient.get_id()])
    middle = time.perf_counter()
    got = recipient.get_intermediate_data("global", query=saved[recipient.get_id()]["id"])
    end = time.perf_counter()
    assert len(got) == len(payload)
    return middle - start, end - middle


async def _raw_http(sizes: list[int]) -> dict[int, float]:
    """Seconds for PUT then GET of each size against a minimal loopback aiohttp server (median)."""
    blobs = {size: os.urandom(size) for size in sizes}

    async def put(request: web.Request) -> web.Response:
        async for _ in request.content.iter_chunked(CHUNK):
            pass
        return web.Response(status=204)

    async def get(request: web.Request) -> web.Response:
        return web.Response(body=blobs[int(request.match_info["size"])])

    app = web.Application(client_max_size=1024**3)
    app.router.add_put("/blob", put)
    app.router.add_get("/blob/{size}", get)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    timings: dict[int, float] = {}
    try:
        async with aiohttp.ClientSession() as session:
            for size in sizes:
                samples = []
                for _ in range(REPEATS[size // MIB]):
                    start = time.perf_counter()
                    async with session.put(f"{url}/blob", data=blobs[size]) as resp:
                        await resp.read()
                    async with session.get(f"{url}/blob/{size}") as resp:
                        assert len(await resp.read()) == size
                    samples.append(time.perf_counter() - start)
                timings[size] = statistics.median(samples)
    finally:
        await runner.cleanup()
    return timings


def main() -> None:
    raw = asyncio.run(_raw_http([s * MIB for s in SIZES_MIB]))
    tiny_source = [{"kind": "fhir", "name": "tiny", "resources": []}]
    with Simulation(SimConfig(nodes=2, seed=3, node_data=[tiny_source])) as sim:
        analysis = sim.create_analysis()
        sender = FlameCoreSDK(env=analysis.env(analysis.node_ids[0]), silent=True)
        recipient = FlameCoreSDK(env=analysis.env(analysis.node_ids[1]), silent=True)
        try:
            _save_get(sender, recipient, os.urandom(MIB))  # warm up connections and key caches
            for size_mib in SIZES_MIB:
                size = size_mib * MIB
                payload = os.urandom(size)
                runs = [_save_get(sender, recipient, payload) for _ in range(REPEATS[size_mib])]
                save = statistics.median(r[0] for r in runs)
                get = statistics.median(r[1] for r in runs)
                row(f"global save+get {size_mib:>2} MiB", f"{_rate(size, save + get)}   (save {save * 1e3:6.0f} ms, "
                                                         f"get {get * 1e3:6.0f} ms)")
                row(f"raw loopback HTTP PUT+GET {size_mib:>2} MiB", _rate(size, raw[size]))
            payload = os.urandom(64 * MIB)
            tracemalloc.start()
            baseline = tracemalloc.get_traced_memory()[0]
            _save_get(sender, recipient, payload)
            peak = tracemalloc.get_traced_memory()[1] - baseline
            tracemalloc.stop()
            row("peak heap above payload, 64 MiB save+get", f"{peak / MIB:8.1f} MiB  ({peak / len(payload):.2f}x "
                                                             f"payload; sender, recipient and both services)")
        finally:
            sender.close()
            recipient.close()
