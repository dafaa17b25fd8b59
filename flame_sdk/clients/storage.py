"""Client of the node result service (``/storage``): final results, global and local intermediate data.

Uploads are multipart bodies built around the serialized payload (no further copies); downloads are
streamed into one preallocated buffer. See ``flame_sdk.storage.serialization`` for what is pickled and
when data is unpickled.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from typing import Any

import aiohttp

from flame_sdk.config import NodeConfig
from flame_sdk.errors import FlameError, RoleError, ServiceHTTPError, TamperedDataError, UnknownNodeError
from flame_sdk.http import ServiceClient
from flame_sdk.logs import FlameLogger
from flame_sdk.protocol import result_api
from flame_sdk.protocol.result_api import SENDER_HEADER
from flame_sdk.storage import local_dp as dp_mechanism
from flame_sdk.storage.final_files import FinalFile, plan_final_files
from flame_sdk.storage.serialization import BytesLike, dump_object, encode_final, load_object
from flame_sdk.storage.tags import check_storage_id, check_tag

CHUNK = 256 * 1024
LOCATIONS = ("local", "global")
TAG_OPTIONS = ("all", "last", "first")
#: Answers of ``GET /intermediate/{id}?node_id=...`` that mean "not authentic for this node".
_WRONG_SENDER, _WRONG_RECIPIENT, _TAMPERED = result_api.WRONG_SENDER, result_api.WRONG_RECIPIENT, result_api.TAMPERED


def _check_location(location: object) -> str:
    if location not in LOCATIONS:
        raise ValueError(f"location must be 'local' or 'global', got {location!r}")
    return location  # type: ignore[return-value]


def _form(content: BytesLike, filename: str, fields: dict[str, str]) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for name, value in fields.items():  # fields first, so the service can stream the file through
        form.add_field(name, value)
    # BytesIO over bytes shares the buffer and is written in small chunks with flow control, so the
    # transport never buffers a second full copy of a large payload.
    body = io.BytesIO(content) if isinstance(content, bytes) else content
    form.add_field("file", body, filename=filename, content_type="application/octet-stream")
    return form


def _object_id(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


class StorageClient:
    """Async operations behind FlameCoreSDK's storage methods."""

    def __init__(self, service: ServiceClient, config: NodeConfig, logger: FlameLogger,
                 participant_ids: Callable[[], list[str]]) -> None:
        self.service = service
        self.config = config
        self.logger = logger
        self.participant_ids = participant_ids

    async def connect(self) -> None:
        """A cheap authenticated call; raises if the result service is unreachable or refuses the token."""
        await self.service.json("GET", "/local/tags")

    # -- transfers ----------------------------------------------------------------------------------
    async def _upload(self, path: str, content: BytesLike, filename: str, fields: dict[str, str] | None = None,
                      ok: tuple[int, ...] = (200, 201, 204)) -> Any:
        fields = fields or {}
        return await self.service.json("PUT", path, ok=ok, data_factory=lambda: _form(content, filename, fields))

    async def _download(self, path: str, params: dict[str, str] | None = None) -> tuple[bytearray, str | None]:
        """Body of ``GET path`` in one buffer, plus the authenticated sender header (if any)."""
        async with self.service.stream("GET", path, params=params) as resp:
            size = resp.content_length
            buffer = bytearray(size) if size is not None else bytearray()
            received = 0
            async for chunk in resp.content.iter_chunked(CHUNK):
                if size is None:
                    buffer += chunk
                elif received + len(chunk) > size:
                    raise FlameError(f"GET {path} sent more than its announced {size} bytes")
                else:
                    buffer[received : received + len(chunk)] = chunk
                received += len(chunk)
            if size is not None and received != size:
                raise FlameError(f"GET {path} ended after {received} of {size} bytes; the download was cut off")
            return buffer, resp.headers.get(SENDER_HEADER)

    # -- final results ------------------------------------------------------------------------------
    async def submit_final_result(self, result: Any, output_type: str | list[str] = "str",
                                  multiple_results: bool = False, filename: str | list[str] | None = None,
                                  local_dp: dict[str, float] | None = None) -> dict[str, str] | list[dict[str, str]]:
        """Upload one file per result element to the hub (aggregator only); ``local_dp`` adds Laplace noise."""
        if self.config.node_role != "aggregator":
            raise RoleError(f"submit_final_result is only available on the aggregator; this node "
                            f"({self.config.node_id}) has role {self.config.node_role!r}. Send results to the "
                            f"aggregator (e.g. send_intermediate_data) and submit them there")
        dp = None if local_dp is None else dp_mechanism.check_params(local_dp)
        files = plan_final_files(result, output_type, multiple_results, filename)
        if dp is not None:
            files = [self._as_dp_file(f) for f in files]
        responses = []
        for file in files:
            if dp is None:
                await self._upload("/final", encode_final(file.result, file.output_type), file.filename)
            else:
                await self._upload("/final/localdp", dp_mechanism.encode(file.result), file.filename,
                                   {"epsilon": repr(dp[0]), "sensitivity": repr(dp[1])})
            self.logger.log(f"submitted final result {file.filename}", "debug")
            responses.append({"status": "success"})
        return responses if multiple_results else responses[0]

    def _as_dp_file(self, file: FinalFile) -> FinalFile:
        value = dp_mechanism.normalize(file.result)
        if file.output_type != "str":
            self.logger.log(f"local DP results are submitted as text; output_type={file.output_type!r} is replaced "
                            f"by 'str' for {file.filename}", "warn")
        return FinalFile(value, "str", file.filename)

    # -- intermediate data --------------------------------------------------------------------------
    def _check_nodes(self, node_ids: object) -> list[str]:
        if isinstance(node_ids, str) or not isinstance(node_ids, (list, tuple)) or not node_ids:
            raise ValueError(f"remote_node_ids must be a non-empty list of node ids for location='global', got "
                             f"{node_ids!r}; global data is always encrypted for its recipients")
        known = {*self.participant_ids(), self.config.node_id}
        strangers = [n for n in node_ids if n not in known]
        if strangers:
            raise UnknownNodeError(f"remote_node_ids {strangers} are not participants of analysis "
                                   f"{self.config.analysis_id}; use get_participant_ids() for valid ids")
        return list(dict.fromkeys(node_ids))

    async def save_intermediate_data(self, data: Any, location: str, remote_node_ids: list[str] | None = None,
                                     tag: str | None = None) -> dict[str, dict[str, str]] | dict[str, str]:
        """Pickle ``data`` and store it locally (optionally tagged) or on the hub, encrypted per recipient."""
        if _check_location(location) == "global":
            if tag is not None:
                raise ValueError("tags only apply to location='local'; global data is addressed by its storage id")
            recipients = self._check_nodes(remote_node_ids)
            payload = dump_object(data)

            async def save_for(node_id: str) -> dict[str, str]:
                answer = await self._upload("/intermediate", payload, "data.pkl", {"remote_node_id": node_id})
                return {"status": "success", "url": answer["url"], "id": str(answer["object_id"])}

            saved = await asyncio.gather(*(save_for(n) for n in recipients))
            return dict(zip(recipients, saved, strict=True))
        if remote_node_ids is not None:
            raise ValueError("remote_node_ids only apply to location='global'; local data stays on this node")
        fields = {} if tag is None else {"tag": check_tag(tag)}
        answer = await self._upload("/local", dump_object(data), "data.pkl", fields)
        return {"status": "success", "url": answer["url"], "id": _object_id(answer["url"])}

    async def get_intermediate_data(self, location: str, query: str | None = None, tag: str | None = None,
                                    tag_option: str | None = "all", sender_id: str | None = None) -> Any:
        """Local data by id or tag (a list for tags: all, or only the first/last stored), or global data by id."""
        tag_option = "all" if tag_option is None else tag_option
        if tag_option not in TAG_OPTIONS:
            raise ValueError(f"tag_option must be one of {', '.join(TAG_OPTIONS)}, got {tag_option!r}")
        if _check_location(location) == "global":
            if tag is not None:
                raise ValueError("tags only apply to location='local'; pass the storage id as query for global data")
            if not query:
                raise ValueError("get_intermediate_data('global') needs query=<storage id> (from "
                                 "save_intermediate_data or the sender's message)")
            return await self._get_global(check_storage_id(query), sender_id)
        if tag is not None:
            answer = await self.service.json("GET", f"/local/tags/{check_tag(tag)}")
            ids = [_object_id(item["url"]) for item in answer["results"]]
            ids = ids[:1] if tag_option == "first" else ids[-1:] if tag_option == "last" else ids
            return [load_object((await self._download(f"/local/{object_id}"))[0]) for object_id in ids]
        if not query:
            raise ValueError("get_intermediate_data('local') needs query=<storage id> or tag=<tag>")
        query = check_storage_id(query)
        try:
            return load_object((await self._download(f"/local/{query}"))[0])
        except ServiceHTTPError as exc:
            if exc.status == 404:
                raise ValueError(f"no local data with storage id {query!r} in this project") from None
            raise

    async def _get_global(self, object_id: str, sender_id: str | None) -> Any:
        if sender_id is not None:
            if sender_id not in {*self.participant_ids(), self.config.node_id}:
                raise UnknownNodeError(f"sender {sender_id} is not a participant of analysis {self.config.analysis_id}")
            candidates = [sender_id]
        else:  # the service answers 400 at once for a wrong sender, so trying each participant is cheap
            candidates = [*self.participant_ids(), self.config.node_id]
        for candidate in candidates:
            try:
                payload, verified = await self._download(f"/intermediate/{object_id}", {"node_id": candidate})
            except ServiceHTTPError as exc:
                if exc.status == 404:
                    raise ValueError(f"no global data with storage id {object_id!r} in this analysis") from None
                if exc.status == _WRONG_SENDER and sender_id is None:
                    continue
                if exc.status in (_WRONG_SENDER, _WRONG_RECIPIENT, _TAMPERED):
                    raise TamperedDataError(f"global data {object_id} was rejected by this node's result service: "
                                            f"{exc.reason}") from None
                raise
            if verified != candidate:
                raise TamperedDataError(f"the result service did not confirm that {object_id} comes from {candidate}")
            return load_object(payload)
        raise TamperedDataError(f"global data {object_id} was not encrypted for this node by any participant of "
                                f"analysis {self.config.analysis_id}")

    async def get_local_tags(self, filter: str | None = None) -> list[str]:  # noqa: A002 - documented name
        """Tags of this project's local storage, optionally only those containing ``filter``."""
        answer = await self.service.json("GET", "/local/tags")
        names = [item["name"] for item in answer["tags"]]
        return names if filter is None else [name for name in names if filter in name]

