"""The real node result service's encryption as the simulated one runs it (node-result-service project/crypto.py)."""

from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import ec

from flame_sdk.protocol.result_api import IV_SIZE, TAG_SIZE
from flame_sdk.sim.common import crypto as node_crypto


# -- the node result service's scheme (simulator) ---------------------------------------------------------
@pytest.fixture(scope="module")
def keys() -> dict[str, ec.EllipticCurvePrivateKey]:
    return {name: ec.generate_private_key(ec.SECP384R1()) for name in ("alice", "bob", "carol")}


def test_node_scheme_round_trip_and_binding(keys):
    box = node_crypto.encrypt(keys["alice"], keys["bob"].public_key(), b"hello")
    assert len(box) == IV_SIZE + 5 + TAG_SIZE
    assert node_crypto.decrypt(keys["bob"], keys["alice"].public_key(), box) == b"hello"
    # ECDH is symmetric: the sender's own service can decrypt with the recipient's public key
    assert node_crypto.decrypt(keys["alice"], keys["bob"].public_key(), box) == b"hello"
    for private, public in ((keys["carol"], keys["alice"]), (keys["bob"], keys["carol"])):
        with pytest.raises(InvalidTag):
            node_crypto.decrypt(private, public.public_key(), box)


def test_public_key_hex_round_trip(keys):
    public = keys["alice"].public_key()
    hex_pem = node_crypto.public_key_to_hex(public)
    assert node_crypto.public_key_from_hex(hex_pem).public_numbers() == public.public_numbers()
