"""``flame-sim seed``: load the topology's synthetic data into external stores (compose's one-shot service).

Every data source that names an external store gets its generated and inline data written there:

* FHIR (``"url"``): transaction Bundles of ``PUT <Type>/<id>`` entries posted to the server's base URL
  (client-assigned ids, so seeding twice changes nothing), Patients first so references resolve;
* S3 (``"bucket"``): the bucket is created on the topology's ``s3_endpoint`` and the objects uploaded.

It waits (bounded) for each store to answer first: HAPI FHIR needs a minute or two to start.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from flame_sdk.sim.data.data_sources import DataSourceSpec, parse_data_sources
from flame_sdk.sim.run.topology import S3_KEY_VARS, Topology, TopologyError, load_topology
from flame_sdk.sim.services.s3_server import S3Endpoint

#: Resources per transaction Bundle.
CHUNK = 500
FHIR_JSON = "application/fhir+json"


class SeedError(RuntimeError):
    """A store did not come up in time or refused the data."""


def _say(text: str) -> None:
    print(f"flame-sim seed: {text}", flush=True)


def s3_endpoint(topology: Topology, env: Mapping[str, str]) -> S3Endpoint | None:
    """The topology's external S3 endpoint with the credentials from the environment (None without one)."""
    if topology.s3_endpoint is None:
        return None
    missing = [name for name in S3_KEY_VARS if not env.get(name)]
    if missing:
        raise TopologyError(f"the topology names the S3 endpoint {topology.s3_endpoint}; set {' and '.join(missing)} "
                            f"to its access key and secret (docker/compose.env: MINIO_ROOT_USER/PASSWORD)")
    access, secret = (env[name] for name in S3_KEY_VARS)
    return S3Endpoint.external(topology.s3_endpoint, access, secret)


def seed(topology_path: Path, timeout: float = 600.0) -> int:
    """Seed every external store of the topology; return the exit code."""
    try:
        topology = load_topology(topology_path)
        endpoint = s3_endpoint(topology, os.environ)
        asyncio.run(_seed(topology, endpoint, time.monotonic() + timeout))
    except (TopologyError, SeedError, ValueError) as exc:
        print(f"flame-sim seed: {exc}", file=sys.stderr, flush=True)
        return 1
    _say("done")
    return 0


async def _seed(topology: Topology, endpoint: S3Endpoint | None, deadline: float) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300, sock_connect=10)) as session:
        for node in topology.nodes:
            for spec in parse_data_sources(node.data_sources):
                if spec.kind == "fhir" and spec.url:
                    count = await seed_fhir(session, spec.url, spec.fhir_resources(), deadline)
                    _say(f"{node.name}: {count} FHIR resources loaded into {spec.url} ({spec.name})")
                elif spec.kind == "s3" and spec.bucket:
                    if endpoint is None:
                        raise TopologyError(f"{node.name}: source {spec.name} names bucket {spec.bucket} but the "
                                            f"topology has no s3_endpoint")
                    count = await asyncio.to_thread(seed_s3, endpoint, spec, deadline)
                    _say(f"{node.name}: {count} objects uploaded to s3://{spec.bucket} ({spec.name})")


async def _wait_fhir(session: aiohttp.ClientSession, url: str, deadline: float) -> None:
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            async with session.get(f"{url}/metadata", headers={"Accept": FHIR_JSON}) as resp:
                if resp.status == 200:
                    return
                last = f"HTTP {resp.status}"
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            last = repr(exc)
        await asyncio.sleep(2)
    raise SeedError(f"the FHIR server {url} did not answer /metadata in time ({last})")


def transaction(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """A transaction Bundle that creates or replaces each resource under its own id."""
    return {"resourceType": "Bundle", "type": "transaction",
            "entry": [{"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                      for r in resources]}


async def seed_fhir(session: aiohttp.ClientSession, url: str, resources: list[dict[str, Any]],
                    deadline: float) -> int:
    """Write ``resources`` to the FHIR server at ``url``; return how many."""
    await _wait_fhir(session, url, deadline)
    ordered = sorted(resources, key=lambda r: r["resourceType"] != "Patient")
    for start in range(0, len(ordered), CHUNK):
        body = transaction(ordered[start:start + CHUNK])
        async with session.post(url, json=body, headers={"Accept": FHIR_JSON}) as resp:
            if resp.status != 200:
                raise SeedError(f"{url} refused a transaction of {len(body['entry'])} resources: HTTP {resp.status} "
                                f"{(await resp.text())[:500]}")
    return len(ordered)


def seed_s3(endpoint: S3Endpoint, spec: DataSourceSpec, deadline: float) -> int:
    """Create the source's bucket (if needed) and upload its objects; blocking, run in a worker thread."""
    client = endpoint.client()
    while True:
        try:
            client.list_buckets()
            break
        except Exception as exc:  # noqa: BLE001 - any failure means "not up yet" until the deadline
            if time.monotonic() > deadline:
                raise SeedError(f"the S3 endpoint {endpoint.url} did not answer in time ({exc!r})") from None
            time.sleep(2)
    if spec.bucket is None:
        raise SeedError(f"data source {spec.name!r} names no bucket to seed")
    objects = spec.s3_objects()
    endpoint.create_bucket(spec.bucket, objects)
    return len(objects)
