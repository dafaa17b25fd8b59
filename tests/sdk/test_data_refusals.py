"""What the SDK makes of the error bodies on the data path (pure): each hand's words and the likely cause."""

from __future__ import annotations

import json

import pytest

from flame_sdk.data.refusals import hint, server_message

OUTCOME = json.dumps({"resourceType": "OperationOutcome", "issue": [
    {"severity": "error", "code": "processing", "diagnostics": "HAPI-0389: Failed to call access method"}]})
MINIO = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SignatureDoesNotMatch</Code><Message>The request '
         'signature we calculated does not match the signature you provided.</Message></Error>')
NGINX_504 = "<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<hr><center>nginx</center></html>"


@pytest.mark.parametrize(("body", "message"), [
    (OUTCOME, "HAPI-0389: Failed to call access method"),
    ('{"message": "You cannot consume this service"}', "You cannot consume this service"),
    ('{"detail": {"message": "No data store or project found", "service": "Kong", "status_code": 404}}',
     "No data store or project found"),
    ('{"detail": "Not authenticated"}', "Not authenticated"),
    (MINIO, "SignatureDoesNotMatch: The request signature we calculated does not match the signature you provided."),
    (NGINX_504, "504 Gateway Time-out (from nginx)"),
    ("plain words", "plain words"),
])
def test_each_hand_is_understood(body: str, message: str) -> None:
    assert server_message(body) == message


def test_the_cause_follows_the_status_and_the_body() -> None:
    assert "not linked to this analysis' project" in hint(403, '{"message": "You cannot consume this service"}', "fhir")
    signature = hint(403, MINIO, "s3")
    assert "minio-gateway plugin signed" in signature and "project" not in signature
    assert "credentials" in hint(403, "<Error><Code>AccessDenied</Code></Error>", "s3")
    assert "60 s read limit" in hint(504, NGINX_504, "fhir") and "query smaller" in hint(504, "", "fhir")
    assert "DATA_SOURCE_TOKEN" in hint(401, "", "s3")
    assert "not routed" in hint(404, '{"message": "no Route matched with those values"}', "fhir")
    assert "expired" in hint(410, OUTCOME, "fhir") and "failed on this request" in hint(500, OUTCOME, "fhir")
    assert hint(418, "", "fhir") == "see the server's answer" and "no answer" in hint(None, "", "s3")
