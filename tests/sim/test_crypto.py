"""The global intermediate data envelope: round trips, binding, tampering, truncation, reordering."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from flame_sdk.errors import TamperedDataError
from flame_sdk.sim.common import crypto
from flame_sdk.sim.common.crypto import Decryptor, Encryptor, EnvelopeHeader, decrypt, encrypt

SEG = 1024


@pytest.fixture(scope="module")
def keys() -> dict[str, ec.EllipticCurvePrivateKey]:
    return {name: ec.generate_private_key(ec.SECP384R1()) for name in ("alice", "bob", "carol")}


def seal(keys, data: bytes, analysis: str = "an-1", segment_size: int = SEG) -> bytes:
    return encrypt(keys["alice"], keys["bob"].public_key(), analysis, "alice", "bob", data, segment_size)


def open_as_bob(keys, envelope: bytes, analysis: str = "an-1") -> bytes:
    return decrypt(keys["bob"], keys["alice"].public_key(), analysis, envelope)[1]


@pytest.mark.parametrize("size", [0, 1, SEG - 1, SEG, SEG + 1, 3 * SEG, 5 * SEG + 17])
def test_round_trip_sizes(keys, size):
    data = os.urandom(size)
    envelope = seal(keys, data)
    assert size < 16 or data not in envelope  # a few random bytes may occur in any ciphertext by chance
    assert open_as_bob(keys, envelope) == data


def test_streaming_in_odd_chunks_matches(keys):
    data = os.urandom(7 * SEG + 5)
    enc = Encryptor(keys["alice"], keys["bob"].public_key(), "an-1", "alice", "bob", SEG)
    parts = [enc.header]
    for start in range(0, len(data), 333):
        parts.extend(enc.update(data[start : start + 333]))
    parts.append(enc.finalize())
    envelope = b"".join(parts)
    header, size = EnvelopeHeader.parse(envelope)
    assert (header.sender_id, header.recipient_id, header.segment_size) == ("alice", "bob", SEG)
    dec = Decryptor(keys["bob"], keys["alice"].public_key(), header, envelope[:size], "an-1")
    out = []
    for start in range(size, len(envelope), 500):
        out.extend(dec.update(envelope[start : start + 500]))
    out.append(dec.finalize())
    assert b"".join(out) == data


def test_fresh_salt_and_nonce_per_envelope(keys):
    first, second = seal(keys, b"same"), seal(keys, b"same")
    assert first != second
    assert EnvelopeHeader.parse(first)[0].salt != EnvelopeHeader.parse(second)[0].salt


def test_header_parse_needs_whole_header(keys):
    envelope = seal(keys, b"x")
    _, size = EnvelopeHeader.parse(envelope)
    assert all(EnvelopeHeader.parse(envelope[:cut]) is None for cut in range(size))


def test_third_node_cannot_decrypt(keys):
    envelope = seal(keys, b"secret")
    with pytest.raises(TamperedDataError):
        decrypt(keys["carol"], keys["alice"].public_key(), "an-1", envelope)


def test_wrong_claimed_sender_fails(keys):
    envelope = seal(keys, b"secret")
    with pytest.raises(TamperedDataError):
        decrypt(keys["bob"], keys["carol"].public_key(), "an-1", envelope)


def test_bound_to_analysis(keys):
    with pytest.raises(TamperedDataError):
        open_as_bob(keys, seal(keys, b"secret", analysis="an-1"), analysis="an-2")


def test_every_flipped_bit_position_class_is_detected(keys):
    envelope = bytearray(seal(keys, os.urandom(3 * SEG)))
    _, header_size = EnvelopeHeader.parse(envelope)
    positions = [4, header_size - 1, header_size, header_size + SEG // 2, len(envelope) - 1]
    for pos in positions:
        bad = bytearray(envelope)
        bad[pos] ^= 0x01
        with pytest.raises(TamperedDataError):
            open_as_bob(keys, bytes(bad))


def test_edited_header_ids_detected(keys):
    envelope = seal(keys, b"payload")
    header, size = EnvelopeHeader.parse(envelope)
    forged = EnvelopeHeader("alice", "bob!", header.segment_size, header.salt, header.nonce_prefix).to_bytes()
    with pytest.raises(TamperedDataError):
        open_as_bob(keys, forged + envelope[size:])


def test_truncation_at_segment_boundary_detected(keys):
    envelope = seal(keys, os.urandom(3 * SEG + 10))
    _, size = EnvelopeHeader.parse(envelope)
    segment = SEG + crypto.TAG_SIZE
    for cut in (size + segment, size + 2 * segment, len(envelope) - 1, size + 3):
        with pytest.raises(TamperedDataError):
            open_as_bob(keys, envelope[:cut])


def test_reordered_and_extended_segments_detected(keys):
    envelope = seal(keys, os.urandom(3 * SEG + 10))
    _, size = EnvelopeHeader.parse(envelope)
    segment = SEG + crypto.TAG_SIZE
    body = envelope[size:]
    first, second, rest = body[:segment], body[segment : 2 * segment], body[2 * segment :]
    with pytest.raises(TamperedDataError):
        open_as_bob(keys, envelope[:size] + second + first + rest)
    with pytest.raises(TamperedDataError):
        open_as_bob(keys, envelope + first)


def test_not_an_envelope(keys):
    with pytest.raises(TamperedDataError, match="not a flame_sdk encrypted envelope"):
        open_as_bob(keys, b"plain pickled bytes that are long enough to hold a header" * 2)


def test_public_key_hex_round_trip(keys):
    public = keys["alice"].public_key()
    assert crypto.public_key_from_hex(crypto.public_key_to_hex(public)).public_numbers() == public.public_numbers()
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(ValueError, match="secp384r1"):
        crypto.public_key_from_hex(crypto.public_key_to_hex(other))
