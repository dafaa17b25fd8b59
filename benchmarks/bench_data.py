"""Data API figures on one simulated data node (real HTTP through the gateway, moto as the S3 endpoint).

* FHIR ingestion: Observations per second through get_fhir_data, following every ``next`` page, at two
  page sizes (~100k Observations);
* fhir_to_csv: Observations converted per second (and output rows) for the same ~100k Observations;
* S3 reads: MB/s for one large object and objects/s for many small ones, through get_s3_data (boto3).

The simulator's services run in the same process as the SDK, so both share the GIL (and the garbage
collector walks the FHIR store too): the figures are a lower bound for an SDK talking to a remote node.
"""

from __future__ import annotations

import os
import time

from benchmarks.report import row
from flame_sdk import FlameCoreSDK
from flame_sdk.sim.run.simulation import SimConfig, Simulation

PATIENTS = 7200  # about 100k Observations (7 codes, 2 visits on average)
BIG_OBJECT_MB = 64
SMALL_OBJECTS = 200
SMALL_OBJECT_KB = 16


def _sources() -> list[dict]:
    objects: dict[str, bytes] = {"big.bin": os.urandom(BIG_OBJECT_MB * 1024 * 1024)}
    objects.update({f"small/{n:04d}.bin": os.urandom(SMALL_OBJECT_KB * 1024) for n in range(SMALL_OBJECTS)})
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


def _s3(sdk: FlameCoreSDK) -> None:
    sdk.get_s3_data(["small/0000.bin"])  # warm up the boto3 client
    start = time.perf_counter()
    big = sdk.get_s3_data(["big.bin"])[0]["big.bin"]
    elapsed = time.perf_counter() - start
    row(f"S3 read, one {BIG_OBJECT_MB} MB object", f"{len(big) / 2**20 / elapsed:10,.1f} MB/s ({elapsed:.2f} s)")
    keys = [f"small/{n:04d}.bin" for n in range(SMALL_OBJECTS)]
    start = time.perf_counter()
    small = sdk.get_s3_data(keys)[0]
    elapsed = time.perf_counter() - start
    row(f"S3 read, {SMALL_OBJECTS} x {SMALL_OBJECT_KB} KB objects", f"{len(small) / elapsed:10,.0f} objects/s "
                                                                    f"({elapsed:.2f} s)")


def main() -> None:
    start = time.perf_counter()
    with Simulation(SimConfig(nodes=2, seed=1, node_data=[_sources()])) as sim:
        row("simulator start with ~100k generated Observations", f"{time.perf_counter() - start:.1f} s")
        analysis = sim.create_analysis()
        sdk = FlameCoreSDK(env=analysis.env(analysis.data_node_ids[0]), silent=True)
        try:
            bundle = _fhir(sdk)
            _fhir_to_csv(sdk, bundle)
            _s3(sdk)
        finally:
            sdk.close()


if __name__ == "__main__":
    main()
