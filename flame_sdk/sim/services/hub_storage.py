"""Hub-side storage: each analysis' temp bucket (global intermediate data) and its final results.

The hub only ever stores what nodes upload: objects the sending node's result service encrypted for one
recipient, or objects the SDK sealed itself (it can read neither), and final result files. Callers identify
themselves (``X-Node-Id`` over HTTP; checked against registered nodes by the hub); the routes below check
analysis membership. Temp objects of at most ``IN_MEMORY_MAX`` bytes (key and inline frames, payloads of a few
MiB) are kept in memory: for them the file system calls and worker-thread hops of a file cost more than the
bytes (about 0.45 ms for 1 KiB, 1.4 ms for 1 MiB written and read back). Larger objects and final results are
files, written and read in worker threads, never on the event loop, so a run exchanging large payloads does not
hold them all in memory.

Routes (``storage_routes``; bodies are streamed over HTTP, handed over whole in process):

* ``PUT  /analyses/{analysis_id}/buckets/temp?filename=<name>`` -> 201 ``{"object_id"}``
* ``GET  /analyses/{analysis_id}/buckets/temp/{object_id}`` -> the stored envelope
* ``PUT  /analyses/{analysis_id}/results?filename=<name>`` -> 201 ``{"id", "filename", "size"}`` (aggregator)
* ``GET  /analyses/{analysis_id}/results`` -> ``[{"id", "filename", "size"}]``
* ``GET  /analyses/{analysis_id}/results/{file_id}`` -> the file
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from flame_sdk.sim.services.hub_calls import (
    BytesLike,
    Content,
    HubAnswer,
    HubCall,
    HubError,
    HubRoute,
    Pieces,
    content_size,
    joined,
)

if TYPE_CHECKING:
    from flame_sdk.sim.common.platform_model import HubAnalysis


#: Largest temp object kept in memory (larger ones are files).
IN_MEMORY_MAX = 4 * 1024 * 1024


@dataclass(frozen=True)
class StoredObject:
    """A temp object: its bytes in memory (``content``) or in a file (``path``)."""

    object_id: str
    analysis_id: str
    sender_id: str
    filename: str
    size: int
    content: bytes | Pieces | None = None
    path: Path | None = None


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
    _owned: bool = False

    @classmethod
    def create(cls, root: Path | None = None) -> HubStore:
        """A store under ``root``, or under a fresh temporary folder that ``remove`` deletes."""
        if root is None:
            return cls(Path(tempfile.mkdtemp(prefix="flame-hub-store-")), _owned=True)
        return cls(root)

    def temp_contents(self) -> list[bytes]:
        """Every temp object's bytes (tests scan them for plaintext). Blocking."""
        return [self.read(object_id) for object_id in self.objects]

    def read(self, object_id: str) -> bytes:
        """A temp object's bytes. Blocking."""
        stored = self.objects[object_id]
        if stored.content is not None:
            return joined(stored.content)
        return b"" if stored.path is None else stored.path.read_bytes()

    def replace(self, object_id: str, content: bytes) -> None:
        """Overwrite a temp object in place, as someone with access to the hub's storage could. Blocking."""
        stored = self.objects[object_id]
        if stored.path is not None:
            stored.path.write_bytes(content)
        else:
            self.objects[object_id] = replace(stored, content=bytes(content), size=len(content))

    def remove(self) -> None:
        """Delete the store's temporary folder (blocking)."""
        if self._owned:
            shutil.rmtree(self.root, ignore_errors=True)


class HubRegistry(Protocol):
    """The hub as its storage routes see it: analysis lookup by call, and its store."""

    @property
    def store(self) -> HubStore: ...

    def analysis(self, call: HubCall) -> HubAnalysis:
        """The analysis named by the call's ``analysis_id`` (HubError 404 when unknown)."""
        ...


def hub_store(hub: HubRegistry) -> HubStore:
    """The store of a hub."""
    return hub.store


def final_results(hub: HubRegistry, analysis_id: str) -> list[tuple[str, bytes]]:
    """Final result files stored for an analysis, in upload order: (filename, content). Blocking."""
    return [(r.filename, r.path.read_bytes()) for r in hub.store.results.get(analysis_id, [])]


def _write_whole(path: Path, content: BytesLike | Pieces) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    try:
        with partial.open("wb") as out:
            out.writelines(content if isinstance(content, tuple) else (content,))
        partial.rename(path)
    finally:
        partial.unlink(missing_ok=True)
    return content_size(content)


def _open_partial(path: Path) -> BinaryIO:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_suffix(".part").open("wb")


def _finish_partial(out: BinaryIO, path: Path, complete: bool) -> None:
    out.close()
    partial = path.with_suffix(".part")
    if complete:
        partial.rename(path)
    else:
        partial.unlink(missing_ok=True)


async def _receive(content: Content | None, path: Path) -> int:
    """Store an upload at ``path`` (in worker threads); return its size. A failed upload leaves no file."""
    if content is None:
        content = b""
    if isinstance(content, (bytes, bytearray, memoryview, tuple)):
        return await asyncio.to_thread(_write_whole, path, content)
    out = await asyncio.to_thread(_open_partial, path)
    size, complete = 0, False
    try:
        async for chunk in content:
            await asyncio.to_thread(out.write, chunk)
            size += len(chunk)
        complete = True
    finally:
        await asyncio.to_thread(_finish_partial, out, path, complete)
    return size


def storage_routes(hub: HubRegistry, store: HubStore) -> list[HubRoute]:
    """The hub's storage routes over ``store``."""

    def member(call: HubCall) -> HubAnalysis:
        analysis = hub.analysis(call)
        if call.caller not in analysis.participants:
            raise HubError(403, f"node {call.caller!r} is not a participant of analysis {analysis.analysis_id}")
        return analysis

    async def put_temp(call: HubCall) -> HubAnswer:
        analysis = member(call)
        object_id = str(uuid.uuid4())
        filename = call.query.get("filename", "data.bin")
        content = call.content
        if content is None or isinstance(content, (bytes, bytearray, memoryview, tuple)):
            # kept as it came when immutable (bytes, or pieces that are read-only views), else copied
            kept = content if isinstance(content, tuple) else bytes(content or b"")
            size = content_size(kept)
            if size <= IN_MEMORY_MAX:
                store.objects[object_id] = StoredObject(object_id, analysis.analysis_id, call.caller, filename,
                                                        size, content=kept)
                return HubAnswer(201, {"object_id": object_id})
        path = store.root / "temp" / analysis.analysis_id / object_id
        size = await _receive(content, path)  # a large or streamed upload: a file
        store.objects[object_id] = StoredObject(object_id, analysis.analysis_id, call.caller, filename, size,
                                                path=path)
        return HubAnswer(201, {"object_id": object_id})

    async def get_temp(call: HubCall) -> HubAnswer:
        analysis = member(call)
        stored = store.objects.get(call.params["object_id"])
        if stored is None or stored.analysis_id != analysis.analysis_id:
            raise HubError(404, f"object {call.params['object_id']} does not exist in this analysis' bucket")
        return HubAnswer(200, file=stored.path, content=stored.content,
                         headers={"Content-Type": "application/octet-stream"})

    async def put_result(call: HubCall) -> HubAnswer:
        analysis = member(call)
        if analysis.participants[call.caller] != "aggregator":
            raise HubError(403, f"only the aggregator of analysis {analysis.analysis_id} may submit final results")
        filename = call.query.get("filename") or "result.bin"
        file_id = str(uuid.uuid4())
        path = store.root / "results" / analysis.analysis_id / file_id
        size = await _receive(call.content, path)
        store.results.setdefault(analysis.analysis_id, []).append(
            StoredResult(file_id, analysis.analysis_id, filename, path, size))
        return HubAnswer(201, {"id": file_id, "filename": filename, "size": size})

    async def list_results(call: HubCall) -> HubAnswer:
        analysis = hub.analysis(call)
        return HubAnswer(200, [{"id": r.file_id, "filename": r.filename, "size": r.size}
                               for r in store.results.get(analysis.analysis_id, [])])

    async def get_result(call: HubCall) -> HubAnswer:
        analysis = hub.analysis(call)
        found = [r for r in store.results.get(analysis.analysis_id, []) if r.file_id == call.params["file_id"]]
        if not found:
            raise HubError(404, f"final result {call.params['file_id']} does not exist")
        return HubAnswer(200, file=found[0].path, headers={
            "Content-Type": "application/octet-stream",
            "Content-Disposition": 'attachment; filename="{}"'.format(found[0].filename.replace('"', "'")),
        })

    return [
        HubRoute("PUT", "/analyses/{analysis_id}/buckets/temp", put_temp, "content"),
        HubRoute("GET", "/analyses/{analysis_id}/buckets/temp/{object_id}", get_temp),
        HubRoute("PUT", "/analyses/{analysis_id}/results", put_result, "content"),
        HubRoute("GET", "/analyses/{analysis_id}/results", list_results),
        HubRoute("GET", "/analyses/{analysis_id}/results/{file_id}", get_result),
    ]
