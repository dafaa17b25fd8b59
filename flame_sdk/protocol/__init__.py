"""The wire contract, written once and shared by the SDK clients and the simulated services.

Like h11, this package holds the protocol and nothing else: no I/O, no asyncio, no aiohttp, only the
standard library, and it imports nothing else from ``flame_sdk`` (an import-linter contract checks both).
Each module covers one service or one shared fact and cites the real PrivateAIM source it restates:

* ``status``: the one ``AnalysisStatus`` enum and its named sets (final, syncable).
* ``env``: every environment variable: platform, local overrides, SDK tunables.
* ``envelope``: the message envelope between nodes (meta fields, size limit, pure encode/validate).
* ``broker_api``: the node message broker (routes, bodies, participant fields).
* ``po_api``: the pod orchestration (``/po/stream_logs`` body, log levels, how it reads ``/healthz``).
* ``analysis_api``: the analysis' embedded API the broker and PO call (routes, bodies, port).
* ``result_api``: the node result service (routes, form fields, headers, answers).
* ``data_api``: the hub adapter's datastore listing and refusals, Kong routes and refusals, the gateway's
  read limit, HAPI's paging links, the S3 bucket name.
* ``s3_gateway``: what the S3 route (nginx, Kong, the minio-gateway plugin, MinIO) lets through.
* ``gateway_api``: the per-deployment nginx gateway (prefixes, allowed paths, health answer).

docs/protocol.md describes the same contract in prose.
"""
