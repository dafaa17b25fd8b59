"""A stub FLAME hub answering exactly what the result service's ``flame_hub`` client (v0.2.x) calls, plus a
Keycloak stand-in (JWKS and RS256 analysis tokens with ``iat``, ``exp`` and ``client_id``).

Routes (paths as ``flame_hub`` builds them under each base URL; models as its pydantic classes expect):

* auth ``POST /auth/token`` (robot flow) -> ``{access_token, expires_in, token_type, scope}``
* core ``GET /core/nodes/{id}``, ``GET /core/analyses/{id}``, ``GET /core/projects/{id}``,
  ``GET /core/analysis-buckets?filter[analysis_id]=&filter[type]=``, ``POST /core/analysis-bucket-files``
* storage ``POST /storage/buckets/{id}/upload`` (multipart, any field names), ``GET /storage/bucket-files/{id}``,
  ``GET /storage/bucket-files/{id}/stream``
* Keycloak ``GET /realms/flame/protocol/openid-connect/certs``

Files live in memory; ``objects`` is open to the harness (to read final results, or tamper with an object).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

CERTS_PATH = "/realms/flame/protocol/openid-connect/certs"
REALM = "00000000-0000-4000-8000-000000000001"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


@dataclass
class StoredFile:
    file_id: str
    bucket_id: str
    name: str
    content: bytes


@dataclass
class HubState:
    analysis_id: str
    project_id: str
    nodes: dict[str, str]  # node id -> hex PEM public key
    buckets: dict[str, str] = field(default_factory=dict)  # type -> external (storage) bucket id
    objects: dict[str, StoredFile] = field(default_factory=dict)
    bucket_links: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.buckets = {kind: str(uuid.uuid4()) for kind in ("CODE", "RESULT", "TEMP")}

    def files_in(self, kind: str) -> list[StoredFile]:
        return [f for f in self.objects.values() if f.bucket_id == self.buckets[kind]]


class Keycloak:
    """RS256 signer whose public key the result services fetch as a JWKS."""

    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key()))
        self.jwks = {"keys": [{**jwk, "kid": "stub", "use": "sig", "alg": "RS256"}]}

    def token(self, client_id: str, ttl: int = 3600, issued: int | None = None) -> str:
        iat = int(time.time()) if issued is None else issued
        claims = {"client_id": client_id, "iat": iat, "exp": iat + ttl, "iss": "stub-keycloak"}
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": "stub"})


def _bucket(state: HubState, kind: str) -> dict[str, Any]:
    return {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, state.analysis_id + kind)), "type": kind, "external_id": state.buckets[kind],
            "created_at": _now(), "updated_at": _now(), "analysis_id": state.analysis_id, "realm_id": REALM}


def _bucket_file(stored: StoredFile) -> dict[str, Any]:
    return {"id": stored.file_id, "name": stored.name, "path": f"/{stored.name}", "hash": "0" * 64,
            "directory": "/", "size": len(stored.content), "created_at": _now(), "updated_at": _now(),
            "actor_type": "robot", "actor_id": REALM, "bucket_id": stored.bucket_id}


def _not_found(what: str) -> web.Response:
    return web.json_response({"statusCode": 404, "code": "NOT_FOUND", "message": f"{what} not found"}, status=404)


def create_app(state: HubState, keycloak: Keycloak) -> web.Application:
    def authorized(request: web.Request) -> None:
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            raise web.HTTPUnauthorized(text="missing robot token")

    async def token(request: web.Request) -> web.Response:
        return web.json_response({"access_token": "robot-" + uuid.uuid4().hex, "expires_in": 3600,
                                  "token_type": "Bearer", "scope": "all"})

    async def certs(_: web.Request) -> web.Response:
        return web.json_response(keycloak.jwks)

    async def get_node(request: web.Request) -> web.Response:
        authorized(request)
        node_id = request.match_info["id"]
        if node_id not in state.nodes:
            return _not_found(f"node {node_id}")
        return web.json_response({
            "external_name": None, "hidden": False, "name": f"node-{node_id[:8]}", "realm_id": REALM,
            "registry_id": None, "type": "default", "id": node_id, "public_key": state.nodes[node_id] or None,
            "online": True, "registry_project_id": None, "robot_id": REALM, "created_at": _now(),
            "updated_at": _now()})

    async def get_analysis(request: web.Request) -> web.Response:
        authorized(request)
        if request.match_info["id"] != state.analysis_id:
            return _not_found("analysis")
        return web.json_response({
            "description": None, "name": "conformance", "project_id": state.project_id, "master_image_id": None,
            "registry_id": None, "image_command_arguments": [], "id": state.analysis_id,
            "configuration_locked": True, "nodes": len(state.nodes), "build_status": "finished",
            "run_status": "running", "created_at": _now(), "updated_at": _now(), "realm_id": REALM,
            "user_id": REALM})

    async def get_project(request: web.Request) -> web.Response:
        authorized(request)
        return _not_found("project") if request.match_info["id"] != state.project_id else web.json_response({
            "description": None, "master_image_id": None, "name": "conformance", "id": state.project_id,
            "analyses": 1, "nodes": len(state.nodes), "created_at": _now(), "updated_at": _now(),
            "realm_id": REALM, "user_id": None, "robot_id": None})

    async def find_buckets(request: web.Request) -> web.Response:
        authorized(request)
        kind = request.query.get("filter[type]", "")
        matches = [_bucket(state, kind)] if (request.query.get("filter[analysis_id]") == state.analysis_id
                                             and kind in state.buckets) else []
        return web.json_response({"data": matches, "meta": {"total": len(matches)}})

    async def link_file(request: web.Request) -> web.Response:
        authorized(request)
        body = await request.json()
        state.bucket_links.append(body)
        return web.json_response({**body, "id": str(uuid.uuid4()), "created_at": _now(), "updated_at": _now(),
                                  "realm_id": REALM, "user_id": None, "robot_id": REALM,
                                  "analysis_id": state.analysis_id}, status=201)

    async def upload(request: web.Request) -> web.Response:
        authorized(request)
        bucket_id = request.match_info["id"]
        if bucket_id not in state.buckets.values():
            return _not_found("bucket")
        stored = []
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            content = await part.read()  # type: ignore[union-attr]
            item = StoredFile(str(uuid.uuid4()), bucket_id, part.filename or "file", bytes(content))  # type: ignore[union-attr]
            state.objects[item.file_id] = item
            stored.append(_bucket_file(item))
        return web.json_response({"data": stored, "meta": {"total": len(stored)}}, status=201)

    async def get_file(request: web.Request) -> web.Response:
        authorized(request)
        stored = state.objects.get(request.match_info["id"])
        return _not_found("bucket file") if stored is None else web.json_response(_bucket_file(stored))

    async def stream_file(request: web.Request) -> web.Response:
        authorized(request)
        stored = state.objects.get(request.match_info["id"])
        if stored is None:
            return _not_found("bucket file")
        return web.Response(body=stored.content, content_type="application/octet-stream")

    app = web.Application(client_max_size=1024**3)
    app.router.add_post("/auth/token", token)
    app.router.add_get(CERTS_PATH, certs)
    app.router.add_get("/core/nodes/{id}", get_node)
    app.router.add_get("/core/analyses/{id}", get_analysis)
    app.router.add_get("/core/projects/{id}", get_project)
    app.router.add_get("/core/analysis-buckets", find_buckets)
    app.router.add_post("/core/analysis-bucket-files", link_file)
    app.router.add_post("/storage/buckets/{id}/upload", upload)
    app.router.add_get("/storage/bucket-files/{id}", get_file)
    app.router.add_get("/storage/bucket-files/{id}/stream", stream_file)
    return app
