"""The S3 gateway model (pure): the SDK's rules agree with the chain nginx -> Kong -> plugin -> MinIO."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from botocore.utils import percent_encode

from flame_sdk.protocol import s3_gateway as gateway

CHARS = [chr(c) for c in range(0x20, 0x7F)] + ["ü", "€", "é"]


def chain_answer(key: str) -> tuple[int, str] | None:
    """MinIO's verdict on GET ``key`` sent by boto3 through the analysis nginx, Kong and the plugin."""
    path = gateway.kong_normalized_path(gateway.nginx_forwarded_path("/kong/src/s3/" + quote(key, safe="/~")))
    assert path.startswith("/src/s3/")
    return gateway.minio_answer("/bucket" + path[len("/src/s3"):], "")


@pytest.mark.parametrize("char", CHARS)
def test_the_sdk_key_rule_is_the_chain_verdict(char: str) -> None:
    key = f"data/a{char}b.csv"
    assert (gateway.key_problem(key) is None) == (chain_answer(key) is None)


@pytest.mark.parametrize("char", CHARS)
def test_the_sdk_query_rule_is_the_chain_verdict(char: str) -> None:
    value = f"data/a{char}b"
    sent = gateway.literal_query(f"prefix={percent_encode(value)}&encoding-type=url")  # what the SDK sends
    assert (gateway.query_problem(value) is None) == (gateway.minio_answer("/bucket/", sent) is None)


def test_the_plugin_encodes_raw_query_values_again() -> None:
    assert gateway.plugin_canonical_query("prefix=patients%2F") == "prefix=patients%252F"
    assert gateway.minio_canonical_query("prefix=patients%2F") == "prefix=patients%2F"
    assert gateway.minio_answer("/bucket/", "prefix=patients%2F") == (403, "SignatureDoesNotMatch")
    assert gateway.minio_answer("/bucket/", "prefix=patients/&marker=a:b(1)") is None
    assert gateway.literal_query("prefix=a%2Fb%20c%2Bd&marker=%3A") == "prefix=a/b%20c%2Bd&marker=:"


def test_paths_are_decoded_and_normalized_on_the_way() -> None:
    # Kong's own documented example (kong/pdk/request.lua)
    assert gateway.kong_normalized_path("/t/Abc%20123%C3%B8%2f/parent/..//test/./") == "/t/Abc 123ø%2F/test/"
    assert gateway.nginx_forwarded_path("/kong/s/s3/a%2Bb%20c%25") == "/s/s3/a+b%20c%25"
    assert gateway.nginx_forwarded_path("/kong/s/s3/x//y/./z/../w") == "/s/s3/x/y/w"
    assert chain_answer("read me.txt") == (400, "BadRequest")
    assert chain_answer("a+b.txt") == (403, "SignatureDoesNotMatch")
    assert chain_answer("50%.txt") is None


def test_markers_are_cut_before_the_first_character_a_query_cannot_carry() -> None:
    assert gateway.sendable_marker("notes/a b/c") == "notes/a"
    assert gateway.sendable_marker("plain/key-1.csv") == "plain/key-1.csv"
    assert gateway.sendable_marker("ü") == ""


def test_key_problems_are_explained_once() -> None:
    problems = {k: gateway.key_problem(k) for k in ("a b", "c+d", "x//y", "")}
    assert problems == {"a b": "has ' '", "c+d": "has '+'", "x//y": "has an empty, '.' or '..' path segment",
                        "": "is empty"}
    text = gateway.explain_key_problems({k: v for k, v in problems.items() if v})
    assert text.count("signs the decoded path") == 1 and "collapse" in text and text.startswith("'a b' (has ' ')")
    assert gateway.key_problem("folder/sub/file.csv") is None and gateway.key_problem("dir/") is None
