"""Pairwise masks that cancel in a sum: X25519 key agreement, HKDF-SHA256 seeds, ChaCha20 expansion.

Each data node creates an X25519 key pair for the run (:class:`KeyPair`; the private key never leaves the
process). For a pair of nodes (a, b) and a round, both derive the same 256-bit seed: HKDF-SHA256 over the
X25519 shared secret, with ``info`` binding the purpose, the analysis id, the round and both node ids, so a
seed is fresh for every round and never reused in another analysis. The seed keys ChaCha20 (zero nonce:
each key is used for one stream only); its keystream, read as little-endian 64-bit words, gives the mask,
three limbs per number (a uniformly random element of the ring of :mod:`flame_sdk.secure_sum.fixed_point`).
The node whose id sorts first adds the mask, the other subtracts it, so the masks of every pair cancel in the
sum of all nodes' masked vectors, exactly.
"""

from __future__ import annotations

import json

import numpy as np
from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from flame_sdk.secure_sum.fixed_point import LIMBS, Limbs, add, subtract

PUBLIC_KEY_BYTES = 32
#: HKDF ``info`` prefix: the protocol and its version.
PURPOSE = b"flame_sdk secure sum v1"
_NONCE = bytes(16)  # cryptography's ChaCha20 takes a 16-byte nonce (counter and nonce); keys are single-use


class KeyAgreementError(ValueError):
    """A partner's public key is malformed or degenerate."""


class KeyPair:
    """This node's X25519 key pair for one run."""

    def __init__(self) -> None:
        self._private = X25519PrivateKey.generate()
        self.public_bytes = self._private.public_key().public_bytes(serialization.Encoding.Raw,
                                                                    serialization.PublicFormat.Raw)

    def pair_seed(self, peer_public: bytes, analysis_id: str, round_number: int, own_id: str, peer_id: str,
                  round_input: bytes = b"") -> bytes:
        """The seed this node shares with ``peer_id`` for ``round_number`` of ``analysis_id``, given the round's
        input (a digest of what the aggregator sent: nodes given different inputs get different seeds)."""
        if not isinstance(peer_public, bytes) or len(peer_public) != PUBLIC_KEY_BYTES:
            raise KeyAgreementError(f"node {peer_id} sent a public key that is not {PUBLIC_KEY_BYTES} raw bytes")
        try:
            shared = self._private.exchange(X25519PublicKey.from_public_bytes(peer_public))
        except (ValueError, InvalidKey) as exc:  # e.g. a low-order point: the shared secret would be zero
            raise KeyAgreementError(f"node {peer_id} sent an unusable public key: {exc}") from None
        info = PURPOSE + b"\x00" + json.dumps([analysis_id, round_number, *sorted([own_id, peer_id]),
                                                round_input.hex()]).encode()
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)


def mask_stream(seed: bytes, count: int) -> Limbs:
    """``count`` uniformly random ring elements from the ChaCha20 keystream of ``seed``."""
    encryptor = Cipher(algorithms.ChaCha20(seed, _NONCE), mode=None).encryptor()
    stream = encryptor.update(bytes(count * LIMBS * 8))
    return np.frombuffer(stream, dtype="<u8").astype(np.uint64).reshape(count, LIMBS)


def apply_masks(encoded: Limbs, own_id: str, seeds: dict[str, bytes]) -> Limbs:
    """``encoded`` plus the mask shared with each peer (added if ``own_id`` sorts first, else subtracted)."""
    masked = encoded
    for peer_id in sorted(seeds):
        if peer_id == own_id:
            raise ValueError("a node shares no mask with itself")
        stream = mask_stream(seeds[peer_id], len(encoded))
        masked = add(masked, stream) if own_id < peer_id else subtract(masked, stream)
    return masked
