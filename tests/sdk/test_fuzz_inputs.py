"""Property-based fuzzing (hypothesis) of every input surface: the embedded API's bodies, message bodies and
categories, tags and storage ids, storage frames and pickles, fhir_to_csv input and the node environment.

Each property: no crash other than the documented clear error, no 500, no hang (bounded by the test timeout),
and the node keeps answering ``/healthz``. Example counts are kept small so that the file runs in seconds.
"""

from __future__ import annotations

import json
import pickle
import urllib.error
import urllib.request

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flame_sdk.clients.messages import Message
from flame_sdk.config import NodeConfig
from flame_sdk.errors import ConfigurationError, FlameError, TamperedDataError
from flame_sdk.protocol import envelope
from flame_sdk.protocol.env import PLATFORM_ENV
from flame_sdk.storage import global_frames, safe_pickle, sealed
from flame_sdk.storage.tags import check_storage_id, check_tag, is_valid_tag

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
any_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    | st.tuples(children, children),
    max_leaves=20,
)


def _post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture(scope="module")
def node_api(sim):
    """The embedded API of one node of a fuzzing-only analysis (its SDK objects stay open for the module)."""
    from tests.conftest import connect_all

    analysis = sim.create_analysis()
    sdks = connect_all(analysis)
    yield analysis.deployments[analysis.data_node_ids[0]].analysis_api_url
    for sdk in sdks.values():
        sdk.close()


@pytest.mark.sim
@pytest.mark.slow
@FUZZ
@given(route=st.sampled_from(["/webhook", "/partner_status", "/token_refresh"]),
       body=json_values.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=200)
       | st.builds(lambda meta: json.dumps({"meta": meta}).encode(), st.dictionaries(
           st.sampled_from(["id", "sender", "category", "akn_id", "number", "status", "also_carries"]), json_values,
           max_size=7)))
def test_the_embedded_api_answers_every_body_without_a_500(node_api, route, body):
    assert _post(node_api + route, body) in (200, 400, 403, 503)
    with urllib.request.urlopen(node_api + "/healthz", timeout=30) as resp:
        assert resp.status == 200 and json.loads(resp.read())["status"] == "executing"


@FUZZ
@given(message=any_values, category=any_values | st.text(max_size=10))
def test_message_bodies_and_categories_are_sent_or_refused_clearly(message, category):
    try:
        built = Message.outgoing(message, category, "node-a", 1)
    except (TypeError, ValueError):
        return
    try:
        raw = envelope.encode_request(["node-b"], built.body)
    except envelope.EnvelopeError as exc:
        assert str(exc)
        return
    assert json.loads(raw)["message"]["meta"]["category"] == category


@FUZZ
@given(body=json_values)
def test_incoming_bodies_are_validated_without_exceptions(body):
    reason = envelope.validate_incoming(body)
    assert reason is None or isinstance(reason, str)


@FUZZ
@given(texts=st.lists(st.text(max_size=20), min_size=1, max_size=5))
def test_a_bundle_unbundles_into_the_messages_it_carries(texts):
    messages = [Message.outgoing({"t": t}, "c", "node-a", n).body for n, t in enumerate(texts)]
    wire = json.loads(envelope.encode_request(["node-b"], envelope.bundle(messages)))["message"]
    assert envelope.validate_incoming(wire) is None
    assert envelope.unbundle(wire) == messages


@FUZZ
@given(value=st.text(max_size=40) | st.integers() | st.none() | st.binary(max_size=10))
def test_tags_and_storage_ids_are_checked(value):
    if is_valid_tag(value):
        assert check_tag(value) == value
    else:
        with pytest.raises(ValueError, match="invalid tag"):
            check_tag(value)
    try:
        assert "/" not in check_storage_id(value)
    except ValueError as exc:
        assert "storage id" in str(exc)


@FUZZ
@given(data=st.binary(max_size=300))
def test_storage_frames_and_sealed_streams_refuse_garbage_clearly(data):
    try:
        global_frames.parse_frame(data)
    except TamperedDataError as exc:
        assert str(exc)
    with pytest.raises(TamperedDataError):
        sealed.open_sealed(bytes(32), b"ctx", data)


@FUZZ
@given(data=st.binary(max_size=200) | any_values.map(lambda v: pickle.dumps(v)[:-1]))
def test_garbage_pickles_give_a_clear_error(data):
    try:
        safe_pickle.loads(data)
    except pickle.UnpicklingError as exc:
        assert str(exc)


@FUZZ
@given(data=any_values.filter(lambda v: not isinstance(v, bytes)))
def test_plain_data_round_trips_through_the_restricted_unpickler(data):
    assert repr(safe_pickle.loads(pickle.dumps(data))) == repr(data)


@FUZZ
@given(bundle=st.dictionaries(st.sampled_from(["resourceType", "entry", "type", "link"]), any_values, max_size=4)
       | st.builds(lambda entries: {"resourceType": "Bundle", "entry": entries},
                   st.lists(st.dictionaries(st.sampled_from(["resource", "fullUrl"]), any_values), max_size=3)),
       col=st.text(max_size=12), value=st.text(max_size=12), resource=st.text(max_size=12))
def test_fhir_to_csv_converts_or_refuses_clearly(bundle, col, value, resource):
    from flame_sdk.data.fhir_to_csv import fhir_to_csv

    try:
        fhir_to_csv(bundle, col, value, resource, output_type="dict")
    except (ValueError, TypeError, KeyError, FlameError) as exc:
        assert str(exc)


@FUZZ
@given(env=st.dictionaries(st.sampled_from([*PLATFORM_ENV, "FLAME_NODE_BASE_URL", "FLAME_API_PORT"]),
                           st.text(max_size=30), max_size=8))
def test_the_node_environment_is_read_or_refused_clearly(env):
    try:
        config = NodeConfig.from_env(env)
    except ConfigurationError as exc:
        assert "FLAME" in str(exc) or "environment" in str(exc) or "port" in str(exc)
        return
    assert config.analysis_id == env["ANALYSIS_ID"]
