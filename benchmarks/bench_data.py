"""Data API figures on one simulated data node (real HTTP through the gateway, moto as the S3 endpoint).

* FHIR ingestion: Observations per second through get_fhir_data, following every ``next`` page, at two
  page sizes (~100k Observations);
* fhir_to_csv: Observations converted per second (and output rows) for the same ~100k Observations;
* S3, 1,500 small objects in folders through get_s3_data, without named keys (listing) and with them;
* S3, one 300 MiB object read by an SDK in a child process: time, requests, the slowest request against the
  gateway's 60 s read limit, and the child's peak RSS during the read against one buffer of the object plus
  two parts.

The simulator's services run in the same process as the SDK (the S3 server in a child process), so both share
the GIL (and the garbage collector walks the FHIR store too): the figures are a lower bound for an SDK talking
to a remote node.
"""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
import time
from typing import Any

from benchmarks.report import row
from flame_sdk import FlameCoreSDK
from flame_sdk.clients.s3_source import DEFAULT_PART_SIZE
from flame_sdk.protocol.data_api import GATEWAY_READ_TIMEOUT_S
from flame_sdk.sim.run.simulation import SimConfig, Simulation

PATIENTS = 7200  # about 100k Observations (7 codes, 2 visits on average)
MIB = 1024 * 1024
FOLDER_OBJECTS = 1500
LARGE_MIB = 300
LARGE_KEY = "large/object.bin"


def _sources() -> list[dict]:
    objects = {f"folder{n % 10}/part-{n // 10:03d}/{n:04d}.csv": f"{n},{n * n}\n" for n in range(FOLDER_OBJECTS)}
    return [{"kind": "fhir", "name": "bench-fhir", "generator": {"patients": PATIENTS, "seed": 1, "id_prefix": "b"}},
            {"kind": "s3", "name": "bench-s3", "objects": objects}]


def _fhir(sdk: FlameCoreSDK) -> dict:
    bundle = {}
    for page_size in (200, 1000):
        query = f"Observation?_count={page_size}"
        start = time.perf_counter()
        bundle = sdk.get_fhir_data([query])[0][query]
        elapsed = time.perf_counter() - start
        count = len(bundle["entry"])
        pages = -(-count // page_size)
        row(f"FHIR ingestion, _count={page_size} ({pages} pages)", f"{count / elapsed:10,.0f} Observations/s "
                                                                    f"({count:,} in {elapsed:.2f} s)")
    return bundle


def _fhir_to_csv(sdk: FlameCoreSDK, bundle: dict) -> None:
    start = time.perf_counter()
    csv = sdk.fhir_to_csv(bundle, col_key_seq="resource.code.coding.code", value_key_seq="resource.valueQuantity.value",
                          input_resource="Observation", row_key_seq="resource.subject.reference")
    elapsed = time.perf_counter() - start
    rows = csv.getvalue().count("\n") - 1
    count = len(bundle["entry"])
    row("fhir_to_csv (Observation -> CSV)", f"{count / elapsed:10,.0f} Observations/s "
                                            f"({count:,} -> {rows:,} rows in {elapsed:.2f} s)")


class _Chunks:
    """A file-like stream of ``size`` pseudo-random bytes (never all in memory) that hashes what it gives."""

    def __init__(self, size: int, seed: int) -> None:
        self.remaining, self._random, self.sha256 = size, random.Random(seed), hashlib.sha256()

    def read(self, amount: int = -1) -> bytes:
        amount = self.remaining if amount < 0 else min(amount, self.remaining)
        chunk = self._random.randbytes(amount)
        self.remaining -= amount
        self.sha256.update(chunk)
        return chunk


def _count_requests(sdk: FlameCoreSDK, source: str) -> dict[str, int]:
    counts: dict[str, int] = {}

    def count(model: Any, **_: Any) -> None:
        counts[model.name] = counts.get(model.name, 0) + 1

    sdk.get_data_client(source).boto3_client().meta.events.register("before-call.s3", count)
    return counts


def _s3_folders(sdk: FlameCoreSDK) -> None:
    counts = _count_requests(sdk, "bench-s3")
    keys = sorted(_sources()[1]["objects"])
    for label, asked in (("without named keys", []), ("with all keys named", keys)):
        counts.clear()
        start = time.perf_counter()
        got = sdk.get_s3_data(asked)[0]
        elapsed = time.perf_counter() - start
        assert sorted(got) == keys
        requests = ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))
        row(f"S3 {FOLDER_OBJECTS:,} objects in folders, {label}", f"{elapsed:6.2f} s  {FOLDER_OBJECTS / elapsed:6,.0f} "
                                                                  f"objects/s  ({requests})")


def _s3_large(sim: Simulation, env: dict[str, str], node_id: str) -> None:
    node = sim.node(node_id)
    stream = _Chunks(LARGE_MIB * MIB, seed=7)
    start = time.perf_counter()
    node.s3_endpoint.client().upload_fileobj(stream, node.data.sources["bench-s3"].bucket, LARGE_KEY)
    row(f"S3 upload of the {LARGE_MIB} MiB object (setup)", f"{time.perf_counter() - start:6.1f} s")
    child = subprocess.run([sys.executable, "-m", "benchmarks.bench_data", "--read-large"], input=json.dumps(env),
                           capture_output=True, text=True, check=True, timeout=900)
    got = json.loads(child.stdout.strip().splitlines()[-1])
    assert got["sha256"] == stream.sha256.hexdigest() and got["bytes"] == LARGE_MIB * MIB
    limit = LARGE_MIB * MIB + 2 * DEFAULT_PART_SIZE
    row(f"S3 read, one {LARGE_MIB} MiB object (get_s3_data)", f"{got['seconds']:6.2f} s  "
                                                                  f"{LARGE_MIB / got['seconds']:6.1f} MiB/s  "
                                                                  f"({got['requests']} ranged requests)")
    ratio = got["slowest"] / GATEWAY_READ_TIMEOUT_S
    row("  slowest request vs the gateway's read limit", f"{got['slowest']:6.2f} s = {ratio:.3f} x "
                                                         f"{GATEWAY_READ_TIMEOUT_S:.0f} s")
    row("  peak RSS of the reader above its start", f"{got['peak'] / MIB:6.0f} MiB = {got['peak'] / limit:.3f} x limit "
                                                    f"(object + 2 parts = {limit / MIB:.0f} MiB)")


def _read_large() -> None:
    """The child: one SDK reads the large object; prints time, requests and peak RSS as JSON."""
    env = json.loads(sys.stdin.read())
    sdk = FlameCoreSDK(env=env, silent=True)
    try:
        client = sdk.get_data_client("bench-s3")
        sent: dict[int, float] = {}
        took: list[float] = []
        events = client.boto3_client().meta.events
        events.register("before-send.s3.GetObject", lambda request, **_: sent.__setitem__(id(request), time.perf_counter()))
        events.register("after-call.s3.GetObject", lambda **_: took.append(time.perf_counter() - max(sent.values())))
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # reset the peak RSS (VmHWM) to the current RSS
        before = _status_kib("VmRSS")
        start = time.perf_counter()
        data = sdk.get_s3_data([LARGE_KEY])[0][LARGE_KEY]
        seconds = time.perf_counter() - start
        peak = _status_kib("VmHWM") - before
        print(json.dumps({"seconds": seconds, "bytes": len(data), "requests": len(took), "slowest": max(took),
                          "peak": peak * 1024, "sha256": hashlib.sha256(data).hexdigest()}))
    finally:
        sdk.close()


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def main() -> None:
    start = time.perf_counter()
    with Simulation(SimConfig(nodes=2, seed=1, node_data=[_sources()])) as sim:
        row("simulator start with ~100k generated Observations", f"{time.perf_counter() - start:.1f} s")
        analysis = sim.create_analysis()
        node_id = analysis.data_node_ids[0]
        sdk = FlameCoreSDK(env=analysis.env(node_id), silent=True)
        try:
            bundle = _fhir(sdk)
            _fhir_to_csv(sdk, bundle)
            _s3_folders(sdk)
        finally:
            sdk.close()
        _s3_large(sim, analysis.env(node_id), node_id)


if __name__ == "__main__":
    if sys.argv[1:] == ["--read-large"]:
        _read_large()
    else:
        main()
