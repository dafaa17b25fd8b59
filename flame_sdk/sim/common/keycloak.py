"""Keycloak stand-in: signed JWTs whose ``client_id`` claim is the analysis id, as the node services expect."""

from __future__ import annotations

import secrets
import time
from typing import Any

import jwt

#: Verified tokens whose claims are kept (the oldest is dropped first).
VERIFIED_KEPT = 4096
EXPIRED = "the bearer token has expired; the node refreshes it via /analysis/token_refresh"


class TokenError(Exception):
    """A bearer token is missing, malformed, expired or for another analysis."""


class TokenExpiredError(TokenError):
    """A bearer token whose ``exp`` has passed (otherwise well-formed and signed)."""


class TokenIssuer:
    """Issues and verifies HS256 tokens for analyses (one secret per simulation).

    Processes that must accept each other's tokens (the docker-compose node stacks) pass the same ``secret``;
    by default every issuer draws its own.
    """

    def __init__(self, ttl_seconds: float = 3600.0, secret: bytes | None = None) -> None:
        if secret is not None and len(secret) < 32:
            raise ValueError(f"the token secret has {len(secret)} bytes; use at least 32 (64 hex digits)")
        self._secret = secrets.token_bytes(32) if secret is None else secret
        self.ttl_seconds = ttl_seconds
        self._verified: dict[str, dict[str, Any]] = {}  # token -> claims, oldest first

    def issue(self, analysis_id: str, ttl_seconds: float | None = None) -> str:
        now = int(time.time())
        ttl = self.ttl_seconds if ttl_seconds is None else ttl_seconds
        claims = {"client_id": analysis_id, "iat": now, "exp": now + int(ttl), "iss": "flame-sim-keycloak"}
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def verify(self, token: str, analysis_id: str | None) -> dict[str, Any]:
        """The token's claims; TokenError unless it is signed here, unexpired and (when ``analysis_id`` is given)
        issued for that analysis. Services that only check signature and expiry pass None."""
        claims = self._verified.get(token)
        if claims is None:
            claims = self._decode(token)
        elif claims["exp"] <= int(time.time()):  # PyJWT's rule, without leeway
            self._verified.pop(token, None)
            raise TokenExpiredError(EXPIRED)
        if analysis_id is not None and claims["client_id"] != analysis_id:
            raise TokenError(f"the token belongs to analysis {claims['client_id']}, not {analysis_id}")
        return claims

    def _decode(self, token: str) -> dict[str, Any]:
        """Check signature, structure and expiry; a valid token's claims are kept, so that the next request
        with it costs a dictionary lookup and an expiry check."""
        try:
            claims = jwt.decode(token, self._secret, algorithms=["HS256"], options={"require": ["exp", "client_id"]})
        except jwt.ExpiredSignatureError:
            self._verified.pop(token, None)
            raise TokenExpiredError(EXPIRED) from None
        except jwt.InvalidTokenError as exc:
            raise TokenError(f"invalid bearer token ({exc})") from None
        self._verified[token] = claims
        if len(self._verified) > VERIFIED_KEPT:
            self._verified.pop(next(iter(self._verified)))
        return claims


def bearer_token(authorization: str | None) -> str:
    """Extract the token from an ``Authorization: Bearer ...`` header."""
    if not authorization:
        raise TokenError("missing Authorization header; send 'Authorization: Bearer <KEYCLOAK_TOKEN>'")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenError("the Authorization header must be 'Bearer <token>'")
    return token.strip()
