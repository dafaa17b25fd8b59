"""Bearer token holder shared by every client of one SDK object, swapped on /token_refresh."""

from __future__ import annotations

import base64
import binascii
import json
import math
import time
from typing import Any


def token_expiry(token: str | None) -> float | None:
    """Return the ``exp`` claim of a JWT (unverified) when it is a finite number, else None."""
    claims = token_claims(token)
    exp = None if claims is None else claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        return None
    try:
        value = float(exp)
    except OverflowError:  # an int too large for a float
        return None
    return value if math.isfinite(value) else None


def token_claims(token: str | None) -> dict[str, Any] | None:
    """The (unverified) claims of a JWT ``header.payload.signature``, or None when it is not one."""
    if not token or token.count(".") != 2:
        return None
    payload = token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError, RecursionError):
        return None
    return claims if isinstance(claims, dict) else None


def token_problem(token: object) -> str | None:
    """Why ``token`` cannot be a Keycloak access token (not a JWT, or without a finite ``exp``), else None."""
    if not isinstance(token, str) or not token.strip():
        return "the token must be a non-empty string"
    if token_claims(token.strip()) is None:
        return "the token is not a JWT (three base64url parts, the middle one a JSON object of claims)"
    if token_expiry(token.strip()) is None:
        return "the token has no finite numeric 'exp' claim"
    return None


class TokenHolder:
    """The current Keycloak token. Requests read it at send time, so a swap never breaks a call."""

    def __init__(self, token: str | None) -> None:
        self._token = token
        self.version = 0

    @property
    def token(self) -> str | None:
        return self._token

    def set(self, token: str) -> None:
        self._token = token
        self.version += 1

    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def remaining_seconds(self) -> int:
        """Seconds until expiry (0 when expired or when the token carries no ``exp`` claim)."""
        exp = token_expiry(self._token)
        return max(0, int(min(exp - time.time(), 2**31))) if exp is not None else 0
