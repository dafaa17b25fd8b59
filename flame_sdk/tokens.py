"""Bearer token holder shared by every client of one SDK object, swapped on /token_refresh."""

from __future__ import annotations

import base64
import binascii
import json
import time


def token_expiry(token: str | None) -> float | None:
    """Return the ``exp`` claim of a JWT (unverified), or None when absent or not a JWT."""
    if not token or token.count(".") != 2:
        return None
    payload = token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, (int, float)) else None


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
        return max(0, int(exp - time.time())) if exp is not None else 0
