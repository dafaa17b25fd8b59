"""The simulator's token issuer: verified tokens are remembered, but never past their expiry."""

from __future__ import annotations

import pytest

from flame_sdk.sim.common import keycloak
from flame_sdk.sim.common.keycloak import TokenError, TokenIssuer


def test_a_remembered_token_is_refused_once_it_expired(monkeypatch: pytest.MonkeyPatch) -> None:
    issuer = TokenIssuer(ttl_seconds=60)
    token = issuer.issue("analysis-1")
    now = keycloak.time.time()
    assert issuer.verify(token, "analysis-1")["client_id"] == "analysis-1"
    calls = []
    monkeypatch.setattr(keycloak.jwt, "decode", lambda *a, **k: calls.append(a) or {})  # must not be asked again
    assert issuer.verify(token, "analysis-1")["client_id"] == "analysis-1" and not calls
    with pytest.raises(TokenError, match="belongs to analysis analysis-1"):
        issuer.verify(token, "analysis-2")
    monkeypatch.undo()
    monkeypatch.setattr(keycloak.time, "time", lambda: now + 61)
    with pytest.raises(TokenError, match="expired"):
        issuer.verify(token, "analysis-1")


def test_forged_tokens_are_never_remembered() -> None:
    issuer, other = TokenIssuer(), TokenIssuer()
    forged = other.issue("analysis-1")
    for _ in range(2):
        with pytest.raises(TokenError, match="invalid bearer token"):
            issuer.verify(forged, "analysis-1")
