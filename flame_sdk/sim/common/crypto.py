"""The encryption of the real node result service, for the simulated one.

Restated from PrivateAIM/node-result-service ``project/crypto.py`` (``encrypt_default``,
``decrypt_default``, ``exchange_ecdh_shared_secret``): ECDH between the node's private key and the other
node's public key, the first 32 bytes of the shared secret as the AES-256-GCM key (no KDF), a random
12-byte IV prepended to the ciphertext, no associated data. Node public keys are published on the hub as
the hex of their PEM (SubjectPublicKeyInfo) encoding.
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from flame_sdk.protocol.result_api import IV_SIZE

SECRET_SIZE = 32


def public_key_to_hex(public_key: ec.EllipticCurvePublicKey) -> str:
    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem.hex()


def public_key_from_hex(hex_pem: str) -> ec.EllipticCurvePublicKey:
    key = serialization.load_pem_public_key(bytes.fromhex(hex_pem))
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("node public keys must be EC keys")
    return key


def shared_cipher(private_key: ec.EllipticCurvePrivateKey, public_key: ec.EllipticCurvePublicKey) -> AESGCM:
    """The AES-256-GCM cipher of a node pair (ECDH; the first 32 bytes of the secret). The pair's cipher never
    changes, so callers keep it per peer instead of agreeing on the key for every object."""
    return AESGCM(private_key.exchange(ec.ECDH(), public_key)[:SECRET_SIZE])


def encrypt_with(cipher: AESGCM, data: bytes | bytearray) -> bytes:
    iv = os.urandom(IV_SIZE)
    return iv + cipher.encrypt(iv, data, b"")


def decrypt_with(cipher: AESGCM, data: bytes) -> bytes:
    """Raises ``cryptography.exceptions.InvalidTag`` when ``data`` was not encrypted with this pair's cipher."""
    return cipher.decrypt(data[:IV_SIZE], data[IV_SIZE:], b"")


def encrypt(private_key: ec.EllipticCurvePrivateKey, public_key: ec.EllipticCurvePublicKey,
            data: bytes | bytearray) -> bytes:
    return encrypt_with(shared_cipher(private_key, public_key), data)


def decrypt(private_key: ec.EllipticCurvePrivateKey, public_key: ec.EllipticCurvePublicKey, data: bytes) -> bytes:
    """Raises ``cryptography.exceptions.InvalidTag`` when ``data`` was not encrypted between these two keys."""
    return decrypt_with(shared_cipher(private_key, public_key), data)
