"""Hub-side storage: each analysis' temp bucket (global intermediate data) and its final results.

The hub only ever stores what nodes upload: objects the sending node's result service encrypted for one
recipient, or objects the SDK sealed itself (it can read neither), and final result files. Callers identify themselves with ``X-Node-Id``
(checked against registered nodes by the hub's middleware); the routes below check analysis membership.

Routes (bodies are streamed both ways):

* ``PUT  /analyses/{analysis_id}/buckets/temp?filename=<name>`` -> 201 ``{"object_id"}``
* ``GET  /analyses/{analysis_id}/buckets/temp/{object_id}`` -> the stored envelope
* ``PUT  /analyses/{analysis_id}/results?filename=<name>`` -> 201 ``{"id", "filename", "size"}`` (aggregator)
* ``GET  /analyses/{analysis_id}/results`` -> ``[{"id", "filename", "size"}]``
* ``GET  /analyses/{analysis_id}/results/{file_id}`` -> the file
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from flame_sdk.sim.common.platform_model import NODE_HEADER
from flame_sdk.sim.common.web import json_error

if TYPE_CHECKING:
    from flame_sdk.sim.common.platform_model import HubAnalysis
    from flame_sdk.sim.services.service_interfaces import HubRegistry as Hub
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class StoredObject:
    object_id: str
    analysis_id: str
    sender_id: str
    filename: str
    path: Path
    size: int


@dataclass(frozen=True)
class StoredResult:
    file_id: str
    analysis_id: str
    filename: str
    path: Path
    size: int


@dataclass
class HubStore:
    """Files under ``root``: ``temp/<analysis>/<object id>`` and ``results/<analysis>/<file id>``."""

    root: Path
    objects: dict[str, StoredObject] = field(default_factory=dict)
    results: dict[str, list[StoredResult]] = field(default_factory=dict)

    def files(self) -> list[Path]:
        """Every stored file (tests scan them for plaintext)."""
        return sorted(p for p in self.root.rglob("*") if p.is_file())


_STORES: weakref.WeakKeyDictionary[Hub, HubStore] = weakref.WeakKeyDictionary()


def hub_store(hub: Hub) -> HubStore:
    """The store of a hub whose app has been created."""
    return _STORES[hub]


def final_results(hub: Hub, analysis_id: str) -> list[tuple[str, bytes]]:
    """Final result files stored for an analysis, in upload order: (filename, content)."""
    store = _STORES.get(hub)
    if store is None:
        return []
    return [(r.filename, r.path.read_bytes()) for r in store.results.get(analysis_id, [])]



async def _receive_file(request: web.Request, path: Path) -> int:
    """Stream the request body to ``path``; return its size. A failed upload leaves no file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    size = 0
    try:
        with partial.open("wb") as out:
            async for chunk in request.content.iter_chunked(CHUNK):
                out.write(chunk)
                size += len(chunk)
        partial.rename(path)
    finally:
        partial.unlink(missing_ok=True)
    return size


def add_hub_storage_routes(app: web.Application, hub: Hub) -> None:
    """Register the hub's storage routes on ``app``; the files live in a temporary directory until cleanup."""
    store = HubStore(Path(tempfile.mkdtemp(prefix="flame-hub-store-")))
    _STORES[hub] = store

    def member(request: web.Request) -> tuple[HubAnalysis, str]:
        analysis = hub.analysis(request)
        caller = request.headers.get(NODE_HEADER, "")
        if caller not in analysis.participants:
            raise web.HTTPForbidden(text=f"node {caller!r} is not a participant of analysis {analysis.analysis_id}")
        return analysis, caller

    async def put_temp(request: web.Request) -> web.Response:
        analysis, sender = member(request)
        object_id = str(uuid.uuid4())
        path = store.root / "temp" / analysis.analysis_id / object_id
        size = await _receive_file(request, path)
        store.objects[object_id] = StoredObject(object_id, analysis.analysis_id, sender,
                                                request.query.get("filename", "data.bin"), path, size)
        return web.json_response({"object_id": object_id}, status=201)

    async def get_temp(request: web.Request) -> web.StreamResponse:
        analysis, _ = member(request)
        stored = store.objects.get(request.match_info["object_id"])
        if stored is None or stored.analysis_id != analysis.analysis_id:
            return json_error(404, f"object {request.match_info['object_id']} does not exist in this analysis' bucket")
        return web.FileResponse(stored.path, headers={"Content-Type": "application/octet-stream"})

    async def put_result(request: web.Request) -> web.Response:
        analysis, caller = member(request)
        if analysis.participants[caller] != "aggregator":
            return json_error(403, f"only the aggregator of analysis {analysis.analysis_id} may submit final results")
        filename = request.query.get("filename") or "result.bin"
        file_id = str(uuid.uuid4())
        path = store.root / "results" / analysis.analysis_id / file_id
        size = await _receive_file(request, path)
        store.results.setdefault(analysis.analysis_id, []).append(
            StoredResult(file_id, analysis.analysis_id, filename, path, size))
        return web.json_response({"id": file_id, "filename": filename, "size": size}, status=201)

    async def list_results(request: web.Request) -> web.Response:
        analysis = hub.analysis(request)
        return web.json_response([{"id": r.file_id, "filename": r.filename, "size": r.size}
                                  for r in store.results.get(analysis.analysis_id, [])])

    async def get_result(request: web.Request) -> web.StreamResponse:
        analysis = hub.analysis(request)
        found = [r for r in store.results.get(analysis.analysis_id, []) if r.file_id == request.match_info["file_id"]]
        if not found:
            return json_error(404, f"final result {request.match_info['file_id']} does not exist")
        return web.FileResponse(found[0].path, headers={
            "Content-Type": "application/octet-stream",
            "Content-Disposition": 'attachment; filename="{}"'.format(found[0].filename.replace('"', "'")),
        })

    async def cleanup(_: web.Application) -> None:
        shutil.rmtree(store.root, ignore_errors=True)

    app.router.add_put("/analyses/{analysis_id}/buckets/temp", put_temp)
    app.router.add_get("/analyses/{analysis_id}/buckets/temp/{object_id}", get_temp)
    app.router.add_put("/analyses/{analysis_id}/results", put_result)
    app.router.add_get("/analyses/{analysis_id}/results", list_results)
    app.router.add_get("/analyses/{analysis_id}/results/{file_id}", get_result)
    app.on_cleanup.append(cleanup)
