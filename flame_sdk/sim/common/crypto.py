"""Streamed ECDH + HKDF + AES-GCM envelope for global intermediate data (see docs/protocol.md).

An envelope is a header followed by ciphertext segments. The header names sender and recipient and
carries a random HKDF salt and nonce prefix. Each segment is AES-256-GCM over at most ``segment_size``
plaintext bytes with nonce ``prefix(7) || index(4) || final(1)`` and associated data ``header || analysis
id``, so modified, reordered, truncated or extended streams, and envelopes moved to another analysis or
recipient, all fail authentication.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from flame_sdk.errors import TamperedDataError

CURVE = ec.SECP384R1()
MAGIC = b"FLE1"
DEFAULT_SEGMENT_SIZE = 256 * 1024
MAX_SEGMENT_SIZE = 16 * 1024 * 1024
SALT_SIZE = 32
NONCE_PREFIX_SIZE = 7
TAG_SIZE = 16
HKDF_INFO = b"flame-sdk/global-intermediate/v1"
_FIXED = struct.Struct(">4sI32s7s")
_MAX_SEGMENTS = 2**32


def _length_prefixed(*parts: str) -> bytes:
    out = bytearray()
    for part in parts:
        raw = part.encode("utf-8")
        if len(raw) > 0xFFFF:
            raise ValueError(f"identifier is too long for an envelope header ({len(raw)} bytes, max 65535)")
        out += struct.pack(">H", len(raw)) + raw
    return bytes(out)


def public_key_to_hex(public_key: ec.EllipticCurvePublicKey) -> str:
    """Hex of the PEM (SubjectPublicKeyInfo) encoding: how node public keys are published on the hub."""
    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem.hex()


def public_key_from_hex(hex_pem: str) -> ec.EllipticCurvePublicKey:
    """Load a hub-published public key; it must be an EC key on SECP384R1."""
    try:
        key = serialization.load_pem_public_key(bytes.fromhex(hex_pem))
    except ValueError as exc:
        raise ValueError(f"not a hex-encoded PEM public key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != CURVE.name:
        raise ValueError(f"node public keys must be EC keys on {CURVE.name}")
    return key


@dataclass(frozen=True)
class EnvelopeHeader:
    """Clear-text, authenticated start of an envelope."""

    sender_id: str
    recipient_id: str
    segment_size: int = DEFAULT_SEGMENT_SIZE
    salt: bytes = b""
    nonce_prefix: bytes = b""

    def to_bytes(self) -> bytes:
        fixed = _FIXED.pack(MAGIC, self.segment_size, self.salt, self.nonce_prefix)
        return fixed + _length_prefixed(self.sender_id, self.recipient_id)

    @classmethod
    def parse(cls, data: bytes | bytearray) -> tuple[EnvelopeHeader, int] | None:
        """Parse a header from the start of ``data``: (header, its length), or None if more bytes are needed."""
        if len(data) < _FIXED.size:
            return None
        magic, segment_size, salt, prefix = _FIXED.unpack_from(data)
        if magic != MAGIC or not 0 < segment_size <= MAX_SEGMENT_SIZE:
            raise TamperedDataError("this is not a flame_sdk encrypted envelope (bad magic or segment size)")
        ids: list[str] = []
        pos = _FIXED.size
        for _ in range(2):
            if len(data) < pos + 2:
                return None
            (size,) = struct.unpack_from(">H", data, pos)
            if len(data) < pos + 2 + size:
                return None
            try:
                ids.append(bytes(data[pos + 2 : pos + 2 + size]).decode("utf-8"))
            except UnicodeDecodeError:
                raise TamperedDataError("envelope header has a malformed node id") from None
            pos += 2 + size
        return cls(ids[0], ids[1], segment_size, salt, prefix), pos


def derive_key(
    private_key: ec.EllipticCurvePrivateKey,
    peer_public_key: ec.EllipticCurvePublicKey,
    header: EnvelopeHeader,
    analysis_id: str,
) -> bytes:
    """AES-256 key: HKDF-SHA256 over the ECDH secret, salted per envelope, bound to analysis/sender/recipient."""
    shared = private_key.exchange(ec.ECDH(), peer_public_key)
    info = HKDF_INFO + _length_prefixed(analysis_id, header.sender_id, header.recipient_id)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=header.salt, info=info).derive(shared)


class _SegmentCipher:
    def __init__(self, key: bytes, header: EnvelopeHeader, header_bytes: bytes, analysis_id: str) -> None:
        self._aead = AESGCM(key)
        self._prefix = header.nonce_prefix
        self._ad = header_bytes + _length_prefixed(analysis_id)
        self._index = 0

    def nonce(self, final: bool) -> bytes:
        if self._index >= _MAX_SEGMENTS:
            raise ValueError("envelope has too many segments; use a larger segment size")
        nonce = self._prefix + struct.pack(">IB", self._index, 1 if final else 0)
        self._index += 1
        return nonce


class Encryptor(_SegmentCipher):
    """Incremental encryption: ``header`` first, then every ``update`` output, then ``finalize``."""

    def __init__(
        self,
        sender_key: ec.EllipticCurvePrivateKey,
        recipient_public_key: ec.EllipticCurvePublicKey,
        analysis_id: str,
        sender_id: str,
        recipient_id: str,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
    ) -> None:
        if not 0 < segment_size <= MAX_SEGMENT_SIZE:
            raise ValueError(f"segment_size must be in 1..{MAX_SEGMENT_SIZE}, got {segment_size}")
        header = EnvelopeHeader(sender_id, recipient_id, segment_size, os.urandom(SALT_SIZE),
                                os.urandom(NONCE_PREFIX_SIZE))
        self.header = header.to_bytes()
        self.segment_size = segment_size
        super().__init__(derive_key(sender_key, recipient_public_key, header, analysis_id), header, self.header,
                         analysis_id)
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

    def finalize(self) -> bytes:
        """The final segment (possibly of empty plaintext)."""
        last = self._aead.encrypt(self.nonce(True), bytes(self._buffer), self._ad)
        self._buffer.clear()
        return last


class Decryptor(_SegmentCipher):
    """Incremental decryption of the segments following ``header``; only authenticated plaintext is returned."""

    def __init__(
        self,
        recipient_key: ec.EllipticCurvePrivateKey,
        sender_public_key: ec.EllipticCurvePublicKey,
        header: EnvelopeHeader,
        header_bytes: bytes,
        analysis_id: str,
    ) -> None:
        super().__init__(derive_key(recipient_key, sender_public_key, header, analysis_id), header, header_bytes,
                         analysis_id)
        self._segment = header.segment_size + TAG_SIZE
        self._buffer = bytearray()

    def _open(self, data: bytes | memoryview, final: bool) -> bytes:
        index = self._index
        try:
            return self._aead.decrypt(self.nonce(final), data, self._ad)
        except InvalidTag:
            what = "the final segment is missing or" if final else f"segment {index}"
            raise TamperedDataError(
                f"encrypted data failed authentication ({what} was modified, truncated or reordered, or the data "
                f"was not encrypted by this sender for this node in this analysis)"
            ) from None

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
            raise TamperedDataError("encrypted data is truncated (the final segment is incomplete)")
        last = self._open(bytes(self._buffer), final=True)
        self._buffer.clear()
        return last


def encrypt(
    sender_key: ec.EllipticCurvePrivateKey,
    recipient_public_key: ec.EllipticCurvePublicKey,
    analysis_id: str,
    sender_id: str,
    recipient_id: str,
    data: bytes,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
) -> bytes:
    """Whole-buffer convenience wrapper around ``Encryptor``."""
    enc = Encryptor(sender_key, recipient_public_key, analysis_id, sender_id, recipient_id, segment_size)
    return b"".join([enc.header, *enc.update(data), enc.finalize()])


def decrypt(
    recipient_key: ec.EllipticCurvePrivateKey,
    sender_public_key: ec.EllipticCurvePublicKey,
    analysis_id: str,
    envelope: bytes,
) -> tuple[EnvelopeHeader, bytes]:
    """Whole-buffer convenience wrapper around ``Decryptor``: (header, plaintext)."""
    parsed = EnvelopeHeader.parse(envelope)
    if parsed is None:
        raise TamperedDataError("encrypted data is truncated (incomplete header)")
    header, size = parsed
    dec = Decryptor(recipient_key, sender_public_key, header, envelope[:size], analysis_id)
    return header, b"".join([*dec.update(envelope[size:]), dec.finalize()])
