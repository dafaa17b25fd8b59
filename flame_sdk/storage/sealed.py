"""Streamed AES-256-GCM under a fresh random key: how the SDK seals global payloads too large for the
result service to decrypt (see ``flame_sdk.storage.global_frames`` and docs/protocol.md).

A sealed stream is a header (magic, segment size, random nonce prefix) followed by ciphertext segments.
Each segment is AES-256-GCM over at most ``segment_size`` plaintext bytes with nonce ``prefix(7) ||
index(4) || final(1)`` and associated data ``header || context``, so modified, reordered, truncated or
extended streams, and streams moved to another context (analysis, sender, object), fail authentication.
The key never travels in the clear: it rides inside an object the node result service encrypts for the
recipient.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from flame_sdk.errors import TamperedDataError

KEY_SIZE = 32
MAGIC = b"FLS1"
DEFAULT_SEGMENT_SIZE = 256 * 1024
MAX_SEGMENT_SIZE = 16 * 1024 * 1024
NONCE_PREFIX_SIZE = 7
TAG_SIZE = 16
_HEADER = struct.Struct(">4sI7s")
HEADER_SIZE = _HEADER.size
_MAX_SEGMENTS = 2**32
BytesLike = bytes | bytearray | memoryview


def new_key() -> bytes:
    """A fresh random AES-256 key."""
    return os.urandom(KEY_SIZE)


def sealed_size(plain_size: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    """Bytes of the sealed stream of ``plain_size`` plaintext bytes."""
    segments = max(1, -(-plain_size // segment_size))
    return HEADER_SIZE + plain_size + segments * TAG_SIZE


class _SegmentCipher:
    def __init__(self, key: bytes, header: bytes, context: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise ValueError(f"keys are {KEY_SIZE} bytes, got {len(key)}")
        self._aead = AESGCM(key)
        self._prefix = header[8:HEADER_SIZE]
        self._ad = header + context
        self._index = 0

    def nonce(self, final: bool) -> bytes:
        if self._index >= _MAX_SEGMENTS:
            raise ValueError("stream has too many segments; use a larger segment size")
        nonce = self._prefix + struct.pack(">IB", self._index, 1 if final else 0)
        self._index += 1
        return nonce


class Sealer(_SegmentCipher):
    """Incremental encryption: ``header`` first, then every ``update`` output, then ``finalize``."""

    def __init__(self, key: bytes, context: bytes, segment_size: int = DEFAULT_SEGMENT_SIZE) -> None:
        if not 0 < segment_size <= MAX_SEGMENT_SIZE:
            raise ValueError(f"segment_size must be in 1..{MAX_SEGMENT_SIZE}, got {segment_size}")
        self.header = _HEADER.pack(MAGIC, segment_size, os.urandom(NONCE_PREFIX_SIZE))
        self.segment_size = segment_size
        super().__init__(key, self.header, context)
        self._buffer = bytearray()

    def update(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Encrypt what completes non-final segments; the rest waits for more data or ``finalize``."""
        self._buffer += data
        out, pos, size = [], 0, self.segment_size
        with memoryview(self._buffer) as view:
            while len(self._buffer) - pos > size:  # a segment is final only once no more data follows
                out.append(self._aead.encrypt(self.nonce(False), view[pos : pos + size], self._ad))
                pos += size
        del self._buffer[:pos]
        return out

    def encrypt_segment(self, plaintext: BytesLike, final: bool) -> bytes:
        """Encrypt the next segment as it is given (the caller cuts the segments)."""
        return self._aead.encrypt(self.nonce(final), plaintext, self._ad)

    def finalize(self) -> bytes:
        """The final segment (possibly of empty plaintext)."""
        last = self._aead.encrypt(self.nonce(True), bytes(self._buffer), self._ad)
        self._buffer.clear()
        return last


def parse_header(data: bytes | bytearray) -> bytes | None:
    """The header at the start of ``data`` (None if more bytes are needed); TamperedDataError if malformed."""
    if len(data) < HEADER_SIZE:
        return None
    magic, segment_size, _ = _HEADER.unpack_from(data)
    if magic != MAGIC or not 0 < segment_size <= MAX_SEGMENT_SIZE:
        raise TamperedDataError("this is not a flame_sdk sealed stream (bad magic or segment size)")
    return bytes(data[:HEADER_SIZE])


def _tampered(index: int, final: bool) -> TamperedDataError:
    what = "the final segment is missing or" if final else f"segment {index}"
    return TamperedDataError(f"sealed data failed authentication ({what} was modified, truncated or reordered, or it "
                             f"belongs to another object)")


class Opener(_SegmentCipher):
    """Incremental decryption of the segments following ``header``; only authenticated plaintext is returned."""

    def __init__(self, key: bytes, context: bytes, header: bytes) -> None:
        super().__init__(key, header, context)
        self._segment: int = _HEADER.unpack(header)[1] + TAG_SIZE
        self._buffer = bytearray()

    @property
    def segment_size(self) -> int:
        """Bytes of a full ciphertext segment (plaintext and tag)."""
        return self._segment

    def _open(self, data: bytes | memoryview, final: bool) -> bytes:
        index = self._index
        try:
            return self._aead.decrypt(self.nonce(final), data, self._ad)
        except InvalidTag:
            raise _tampered(index, final) from None

    def open_into(self, data: BytesLike, final: bool, out: memoryview) -> None:
        """Decrypt the next segment straight into ``out`` (its plaintext size); ``out`` holds garbage when this
        raises, so its owner must discard what it wrote."""
        index = self._index
        try:
            self._aead.decrypt_into(self.nonce(final), data, self._ad, out)
        except InvalidTag:
            raise _tampered(index, final) from None

    def update(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        self._buffer += data
        out, pos, size = [], 0, self._segment
        with memoryview(self._buffer) as view:
            while len(self._buffer) - pos > size:
                out.append(self._open(view[pos : pos + size], final=False))
                pos += size
        del self._buffer[:pos]
        return out

    def finalize(self) -> bytes:
        if len(self._buffer) < TAG_SIZE:
            raise TamperedDataError("sealed data is truncated (the final segment is incomplete)")
        last = self._open(bytes(self._buffer), final=True)
        self._buffer.clear()
        return last


def seal_pieces(key: bytes, context: bytes, pieces: Iterable[BytesLike],
                segment_size: int = DEFAULT_SEGMENT_SIZE) -> Iterator[bytes]:
    """The sealed stream of the concatenated ``pieces``, a segment at a time (header first); nothing holds the
    whole plaintext or ciphertext. Segments are encrypted straight from the pieces' memory; only a segment that
    spans two pieces is assembled first. The same stream as ``Sealer`` gives."""
    sealer = Sealer(key, context, segment_size)
    yield sealer.header
    held: BytesLike | None = None  # a complete segment, until it is known whether more data follows it
    carry = bytearray()  # the start of a segment that continues in the next piece
    for piece in pieces:
        flat = memoryview(piece).cast("B")
        pos, end = 0, len(flat)
        while pos < end:
            if held is not None:  # more data follows: the held segment is not the last
                yield sealer.encrypt_segment(held, final=False)
                held = None
            if carry or end - pos < segment_size:
                take = min(segment_size - len(carry), end - pos)
                carry += flat[pos : pos + take]
                pos += take
                if len(carry) == segment_size:
                    held, carry = bytes(carry), bytearray()
            else:
                held = flat[pos : pos + segment_size]
                pos += segment_size
    # nothing followed a held segment (a carry would have released it): it is the last, else the carry is
    yield sealer.encrypt_segment(held if held is not None else carry, final=True)


def seal(key: bytes, context: bytes, data: BytesLike, segment_size: int = DEFAULT_SEGMENT_SIZE) -> bytearray:
    """Whole-buffer convenience wrapper around ``seal_pieces`` (one output buffer, no further copies)."""
    out = bytearray()
    for chunk in seal_pieces(key, context, [data], segment_size):
        out += chunk
    return out


class StreamOpener:
    """Opens a sealed stream fed in chunks of any size into one preallocated plaintext buffer of ``size`` bytes
    (the size the sender announced), so neither the whole ciphertext nor a second plaintext copy is held. Each
    segment is decrypted straight into its place in that buffer: from the chunk itself when the chunk holds it
    whole, else from one reused segment-sized staging buffer."""

    def __init__(self, key: bytes, context: bytes, size: int) -> None:
        self._key, self._context = key, context
        self._head = bytearray()
        self._opener: Opener | None = None
        self._stage = bytearray()  # a segment that spans chunks, or the last one seen (it may be the final one)
        self._fill = 0
        self.plaintext = bytearray(size)
        self._out = memoryview(self.plaintext)
        self._pos = 0

    def feed(self, chunk: BytesLike) -> None:
        with memoryview(chunk) as raw, raw.cast("B") as view:
            if self._opener is None:
                view = self._read_header(view)
                if self._opener is None:
                    return
            self._feed(view, self._opener)

    def _read_header(self, view: memoryview) -> memoryview:
        take = min(HEADER_SIZE - len(self._head), len(view))
        self._head += view[:take]
        header = parse_header(self._head)
        if header is not None:
            self._opener = Opener(self._key, self._context, header)
            self._stage = bytearray(self._opener.segment_size)
        return view[take:]

    def _feed(self, view: memoryview, opener: Opener) -> None:
        size, pos, end = len(self._stage), 0, len(view)
        if self._fill and end:
            if self._fill < size:  # complete the staged segment first
                take = min(size - self._fill, end)
                self._stage[self._fill : self._fill + take] = view[:take]
                self._fill += take
                pos = take
            if self._fill == size and pos < end:  # more data follows: it is not the final segment
                self._open(opener, self._stage, final=False)
                self._fill = 0
        while end - pos > size:  # a segment is final only once no more data follows
            self._open(opener, view[pos : pos + size], final=False)
            pos += size
        if pos < end:
            self._stage[: end - pos] = view[pos:]
            self._fill = end - pos

    def _open(self, opener: Opener, data: BytesLike, final: bool) -> None:
        plain = len(data) - TAG_SIZE
        end = self._pos + plain
        if end > len(self.plaintext):
            raise TamperedDataError(f"sealed data has more plaintext than the {len(self.plaintext)} bytes its "
                                    f"sender announced")
        opener.open_into(data, final, self._out[self._pos : end])
        self._pos = end

    def finish(self) -> bytearray:
        """The plaintext; TamperedDataError when the stream was cut short or holds another size than announced."""
        if self._opener is None:
            raise TamperedDataError("sealed data is truncated (incomplete header)")
        if self._fill < TAG_SIZE:
            raise TamperedDataError("sealed data is truncated (the final segment is incomplete)")
        with memoryview(self._stage) as stage:
            self._open(self._opener, stage[: self._fill], final=True)
        self._fill = 0
        if self._pos != len(self.plaintext):
            raise TamperedDataError(f"sealed data has {self._pos} plaintext bytes, its sender announced "
                                    f"{len(self.plaintext)}")
        self._out.release()
        return self.plaintext


def open_sealed(key: bytes, context: bytes, sealed: BytesLike, size: int | None = None) -> bytearray:
    """Whole-buffer convenience wrapper around ``StreamOpener``; ``size`` defaults to what the stream's length
    implies for an intact stream."""
    if size is None:
        header = parse_header(bytes(memoryview(sealed)[:HEADER_SIZE]))
        if header is None:
            raise TamperedDataError("sealed data is truncated (incomplete header)")
        step = _HEADER.unpack(header)[1] + TAG_SIZE
        segments = max(1, -(-(len(sealed) - HEADER_SIZE) // step))
        size = max(0, len(sealed) - HEADER_SIZE - segments * TAG_SIZE)
    opener = StreamOpener(key, context, size)
    with memoryview(sealed) as view:
        for start in range(0, len(view), DEFAULT_SEGMENT_SIZE):
            opener.feed(view[start : start + DEFAULT_SEGMENT_SIZE])
    return opener.finish()
