"""Sealed streams: how the SDK carries global payloads too large for the result service to decrypt."""

from __future__ import annotations

import os

import pytest

from flame_sdk.errors import TamperedDataError
from flame_sdk.storage import sealed as crypto
from flame_sdk.storage.sealed import (
    HEADER_SIZE,
    TAG_SIZE,
    Opener,
    Sealer,
    new_key,
    open_sealed,
    parse_header,
    seal,
)

SEG = 1024
CONTEXT = b"analysis-1/alice"


def sealed(data: bytes, key: bytes, context: bytes = CONTEXT) -> bytes:
    return bytes(seal(key, context, data, SEG))


@pytest.mark.parametrize("size", [0, 1, SEG - 1, SEG, SEG + 1, 3 * SEG, 5 * SEG + 17])
def test_round_trip_sizes(size):
    key, data = new_key(), os.urandom(size)
    stream = sealed(data, key)
    assert len(stream) == crypto.sealed_size(size, SEG)
    assert size < 16 or data not in stream  # a few random bytes may occur in any ciphertext by chance
    assert open_sealed(key, CONTEXT, stream) == data


@pytest.mark.parametrize("cuts", [[], [0], [1], [SEG], [SEG - 1, SEG + 1], [5, 6, 7], [2 * SEG, 3 * SEG], [3 * SEG + 5]])
def test_sealing_pieces_gives_the_sealer_s_segments(cuts):
    """Pieces cut anywhere (segments spanning pieces, empty pieces) seal to what the one buffer seals to."""
    key, data = new_key(), os.urandom(3 * SEG + 5)
    bounds = [0, *cuts, len(data)]
    pieces = [memoryview(data)[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    stream = b"".join(crypto.seal_pieces(key, CONTEXT, pieces, SEG))
    assert len(stream) == crypto.sealed_size(len(data), SEG)
    assert open_sealed(key, CONTEXT, stream) == data
    opener = crypto.StreamOpener(key, CONTEXT, len(data))
    for start in range(0, len(stream), 777):
        opener.feed(stream[start : start + 777])
    assert opener.finish() == data
    with pytest.raises(TamperedDataError, match="announced"):
        short = crypto.StreamOpener(key, CONTEXT, len(data) - 1)
        short.feed(stream)
        short.finish()


def test_streaming_in_odd_chunks_matches():
    key, data = new_key(), os.urandom(7 * SEG + 5)
    sealer = Sealer(key, CONTEXT, SEG)
    parts = [sealer.header]
    for start in range(0, len(data), 333):
        parts.extend(sealer.update(data[start : start + 333]))
    parts.append(sealer.finalize())
    stream = b"".join(parts)
    opener = Opener(key, CONTEXT, parse_header(stream) or b"")
    out = []
    for start in range(HEADER_SIZE, len(stream), 500):
        out.extend(opener.update(stream[start : start + 500]))
    out.append(opener.finalize())
    assert b"".join(out) == data


def test_fresh_nonce_prefix_per_stream():
    key = new_key()
    first, second = sealed(b"same", key), sealed(b"same", key)
    assert first[:HEADER_SIZE] != second[:HEADER_SIZE] and first != second


def test_header_parse_needs_whole_header():
    stream = sealed(b"x", new_key())
    assert all(parse_header(stream[:cut]) is None for cut in range(HEADER_SIZE))
    with pytest.raises(TamperedDataError, match="not a flame_sdk sealed stream"):
        parse_header(b"plain pickled bytes" * 2)


def test_wrong_key_or_context_fails():
    key = new_key()
    stream = sealed(b"secret", key)
    with pytest.raises(TamperedDataError):
        open_sealed(new_key(), CONTEXT, stream)
    with pytest.raises(TamperedDataError):
        open_sealed(key, b"analysis-2/alice", stream)


def test_every_flipped_bit_position_class_is_detected():
    key = new_key()
    stream = sealed(os.urandom(3 * SEG), key)
    for pos in (4, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + SEG // 2, len(stream) - 1):
        bad = bytearray(stream)
        bad[pos] ^= 0x01
        with pytest.raises(TamperedDataError):
            open_sealed(key, CONTEXT, bytes(bad))


def test_truncation_reordering_and_extension_detected():
    key = new_key()
    stream = sealed(os.urandom(3 * SEG + 10), key)
    segment = SEG + TAG_SIZE
    for cut in (HEADER_SIZE + segment, HEADER_SIZE + 2 * segment, len(stream) - 1, HEADER_SIZE + 3):
        with pytest.raises(TamperedDataError):
            open_sealed(key, CONTEXT, stream[:cut])
    body = stream[HEADER_SIZE:]
    first, second, rest = body[:segment], body[segment : 2 * segment], body[2 * segment :]
    with pytest.raises(TamperedDataError):
        open_sealed(key, CONTEXT, stream[:HEADER_SIZE] + second + first + rest)
    with pytest.raises(TamperedDataError):
        open_sealed(key, CONTEXT, stream + first)
