"""Raw requests through a node's nginx (redirects not followed): the facts behind the table, as observed."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass

import aiohttp

from conformance.cases import Harness

SHOWN_HEADERS = ("Location", "Content-Type", "Content-Length", "Transfer-Encoding", "X-Flame-Sender")


@dataclass
class Probe:
    request: str
    status: int
    body: str
    headers: str
    seconds: float = 0.0


def _form(content: bytes, **fields: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for name, value in fields.items():
        form.add_field(name, value)
    form.add_field("file", content, filename="probe.bin", content_type="application/octet-stream")
    return form


async def _probe(h: Harness, label: str, method: str, path: str, token: str | None = "node", via: str = "a",
                 **kwargs: object) -> Probe:
    node = h.a if via == "a" else h.b
    headers = {} if token is None else {"Authorization": f"Bearer {node.tokens.token if token == 'node' else token}"}
    start = time.perf_counter()
    async with h.raw.request(method, node.gateway_url + path, headers=headers, allow_redirects=False,
                             **kwargs) as resp:  # type: ignore[arg-type]
        body = await resp.read()
        shown = {k: resp.headers[k] for k in SHOWN_HEADERS if k in resp.headers}
    text = body[:160].decode("utf-8", "replace") if resp.content_type.startswith(("application/json", "text")) \
        else f"<{len(body)} bytes>"
    return Probe(label, resp.status, " ".join(text.split()), ", ".join(f"{k}: {v}" for k, v in shown.items()),
                 time.perf_counter() - start)


def _id_in(probe: Probe, key: str) -> str:
    return probe.body.split(f'"{key}":"')[-1].split('"')[0]


async def run_probes(h: Harness) -> list[Probe]:
    a, b = h.a.node_id, h.b.node_id
    probes = [
        await _probe(h, "PUT /storage/final (no slash)", "PUT", "/storage/final", data=_form(b"x")),
        await _probe(h, "PUT /storage/final/", "PUT", "/storage/final/", data=_form(b"probe")),
        await _probe(h, "PUT /storage/local (no slash)", "PUT", "/storage/local", data=_form(b"x")),
        await _probe(h, "PUT /storage/intermediate (no slash)", "PUT", "/storage/intermediate",
                     data=_form(b"x", remote_node_id=b)),
        await _probe(h, "GET /storage/local/tags, no Authorization", "GET", "/storage/local/tags", token=None),
        await _probe(h, "GET /storage/local/tags, Bearer not-a-jwt", "GET", "/storage/local/tags",
                     token="not-a-jwt"),
        await _probe(h, "PUT /storage/final/localdp/ file '[1, 2]'", "PUT", "/storage/final/localdp",
                     data=_form(b"[1, 2]", epsilon="1", sensitivity="1")),
        await _probe(h, "PUT /storage/intermediate/ remote_node_id=<unknown uuid>", "PUT", "/storage/intermediate/",
                     data=_form(b"x", remote_node_id=str(uuid.uuid4()))),
        await _probe(h, "PUT /storage/local/ tag='Bad_Tag'", "PUT", "/storage/local/", data=_form(b"x", tag="Bad_Tag")),
        await _probe(h, "GET /storage/local/not-a-uuid", "GET", "/storage/local/not-a-uuid"),
        await _probe(h, "GET /storage/local/<unknown uuid>", "GET", f"/storage/local/{uuid.uuid4()}"),
        await _probe(h, "GET /storage/intermediate/not-a-uuid", "GET", "/storage/intermediate/not-a-uuid"),
        await _probe(h, "GET /storage/intermediate/<unknown uuid>", "GET", f"/storage/intermediate/{uuid.uuid4()}"),
        await _probe(h, "GET /storage/local/tags/<never used tag>", "GET", "/storage/local/tags/never-used"),
        await _probe(h, "GET /storage/local/tags/Bad_Tag", "GET", "/storage/local/tags/Bad_Tag"),
    ]
    upload = await _probe(h, "PUT /storage/intermediate/ remote_node_id=B (A's gateway)", "PUT",
                          "/storage/intermediate/", data=_form(b"hello B", remote_node_id=b))
    probes.append(upload)
    object_id = _id_in(upload, "object_id") if '"object_id"' in upload.body else None
    if object_id:
        probes += [
            await _probe(h, "GET /storage/intermediate/<id> (A's gateway, no node_id)", "GET",
                         f"/storage/intermediate/{object_id}"),
            await _probe(h, "GET /storage/intermediate/<id>?node_id=A (A's gateway: A is not the recipient)", "GET",
                         f"/storage/intermediate/{object_id}", params={"node_id": a}),
            await _probe(h, "GET /storage/intermediate/<id>?node_id=<unknown uuid>", "GET",
                         f"/storage/intermediate/{object_id}", params={"node_id": str(uuid.uuid4())}),
            await _probe(h, "GET /storage/intermediate/<id>?node_id=not-a-uuid", "GET",
                         f"/storage/intermediate/{object_id}", params={"node_id": "not-a-uuid"}),
            await _probe(h, "GET /storage/intermediate/<id>?node_id=A (B's gateway)", "GET",
                         f"/storage/intermediate/{object_id}", via="b", params={"node_id": a}),
        ]
    for size in (996, 997):  # plaintext sizes around the 1024-byte chunk limit of the decryption
        put = await _probe(h, f"PUT /storage/intermediate/ {size} bytes for B", "PUT", "/storage/intermediate/",
                           data=_form(os.urandom(size), remote_node_id=b))
        probes += [put, await _probe(h, f"GET /storage/intermediate/<{size}-byte id>?node_id=A (B's gateway)", "GET",
                                     f"/storage/intermediate/{_id_in(put, 'object_id')}", via="b",
                                     params={"node_id": a})]
    for label, content in (("20 MiB random bytes", os.urandom(20 * 2**20)),
                           ("20 MiB without newlines", os.urandom(20 * 2**20).replace(b"\n", b"x"))):
        put = await _probe(h, f"PUT /storage/local/ {label}", "PUT", "/storage/local/", data=_form(content))
        probes += [put, await _probe(h, f"GET /storage/local/<id> {label}", "GET",
                                     "/storage/local/" + _id_in(put, "url").rsplit("/", 1)[-1])]
    return probes
