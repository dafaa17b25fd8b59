"""What a node's S3 route can carry: analysis nginx -> Kong -> minio-gateway plugin -> MinIO (pure, no I/O).

The plugin (PrivateAIM/kong-plugin-minio-gateway, handler.lua / aws_v4.lua) signs, for MinIO, the path Kong
hands it after nginx and Kong have decoded it, without encoding it again, and every raw query value encoded
once more. MinIO (minio/minio cmd/signature-v4.go) signs the decoded path and values encoded once. Both
agree only for some characters; every other request is refused with 403 SignatureDoesNotMatch (or 400 when
the decoded path breaks the plugin's request line). Sources and the derivation: docs/protocol.md.

The SDK uses the first part (which keys and query values pass, and how to send them); the simulator uses
the second (the whole chain) to answer as a node does. tests check that both parts agree.
"""

from __future__ import annotations

import re
import string
from urllib.parse import quote, unquote_to_bytes

UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
KEY_CHARS = UNRESERVED | frozenset("/%#?")
"""Characters of an object key that survive the chain (``%#?`` reach the plugin still percent-encoded)."""
QUERY_LITERALS = frozenset("/:@!$'()*,?=")
"""Characters a query value may carry unencoded (legal in a query, decoded to themselves by MinIO)."""
QUERY_CHARS = UNRESERVED | QUERY_LITERALS
"""Characters of a query value (``prefix``, ``marker``) that survive the chain."""

# -- SDK side -----------------------------------------------------------------------------------------------


_CHARS_CAUSE = ("the analysis nginx and Kong decode the object path and Kong's minio-gateway plugin signs the "
                "decoded path, so MinIO refuses the request (403 SignatureDoesNotMatch; 400 for a space)")
_SEGMENTS_CAUSE = "nginx and Kong collapse empty, '.' and '..' path segments, so another object would be read"
_SHOWN = 10


def key_problem(key: str) -> str | None:
    """What in ``key`` the gateway cannot carry (a short phrase), or None when the key can be read."""
    if not key:
        return "is empty"
    bad = sorted({c for c in key if c not in KEY_CHARS})
    if bad:
        return f"has {', '.join(repr(c) for c in bad)}"
    segments = key.split("/")
    if "" in segments[:-1] or any(s in (".", "..") for s in segments):
        return "has an empty, '.' or '..' path segment"
    return None


def explain_key_problems(problems: dict[str, str]) -> str:
    """Unreadable keys with their problems (the first ten), the causes once, and the fix."""
    shown = ", ".join(f"{key!r} ({problem})" for key, problem in list(problems.items())[:_SHOWN])
    more = f" and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
    causes = [cause for marker, cause in (("has '", _CHARS_CAUSE), ("segment", _SEGMENTS_CAUSE))
              if any(marker in problem for problem in problems.values())]
    return (f"{shown}{more}: {'; '.join(causes) or 'an object key cannot be empty'}. Keys of letters, digits and "
            f"- _ . ~ / are readable; ask the data owner to rename the objects")


def query_problem(value: str) -> str | None:
    """Why a listing value (prefix, marker) cannot be sent through the gateway, or None when it can."""
    bad = sorted({c for c in value if c not in QUERY_CHARS})
    if not bad:
        return None
    return (f"it contains {', '.join(repr(c) for c in bad)}: Kong's minio-gateway plugin encodes the raw query "
            f"again when it signs it for MinIO, so only letters, digits and -._~/:@!$'()*,?= pass unchanged")


def sendable_marker(last_key: str) -> str:
    """The longest start of ``last_key`` that can be sent as a listing ``marker`` (keys after it follow)."""
    for index, char in enumerate(last_key):
        if char not in QUERY_CHARS:
            return last_key[:index]
    return last_key


_ESCAPED_LITERAL = re.compile("|".join(re.escape(quote(c, safe="")) for c in sorted(QUERY_LITERALS)), re.IGNORECASE)


def literal_query(query: str) -> str:
    """``query`` with the percent-encoded QUERY_LITERALS written as themselves (e.g. ``%2F`` -> ``/``)."""
    return _ESCAPED_LITERAL.sub(lambda m: unquote_to_bytes(m.group(0)).decode(), query)


# -- the chain, as the simulator plays it -------------------------------------------------------------------

_NGINX_ESCAPED = frozenset(' "#%<>?\\^`{|}') | frozenset(chr(c) for c in (*range(0x20), 0x7F))
_KONG_RESERVED = frozenset("!*'();:@&=+$,/?%#[]")
_TRIPLET = re.compile(rb"%([0-9A-Fa-f]{2})")


def _merge_and_resolve(path: str) -> str:
    """Merge repeated slashes and resolve ``.`` / ``..`` segments (nginx and Kong both do)."""
    out: list[str] = []
    segments = re.sub("/+", "/", path).split("/")
    for index, segment in enumerate(segments[1:], 1):
        last = index == len(segments) - 1
        if segment == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        elif segment == ".":
            if last:
                out.append("")
        else:
            out.append(segment)
    return "/" + "/".join(out)


def nginx_forwarded_path(raw_path: str) -> str:
    """The path the analysis nginx passes to Kong for a request path (``/kong`` prefix removed by its rewrite).

    nginx decodes and normalizes ``$uri``, the rewrite keeps what follows ``/kong``, and proxy_pass escapes
    only space, controls, bytes >= 0x80 and ``"#%<>?\\^`{|}``.
    """
    decoded = unquote_to_bytes(raw_path).decode("utf-8", "surrogateescape")
    uri = _merge_and_resolve(decoded)
    if uri.startswith("/kong/"):
        uri = uri[len("/kong"):]
    return "".join(quote(c.encode("utf-8", "surrogateescape"), safe="") if c in _NGINX_ESCAPED or ord(c) > 0x7F
                   else c for c in uri)


def kong_normalized_path(path: str) -> str:
    """``kong.request.get_path()`` (Kong 3): decode all but reserved triplets, dots resolved, slashes merged."""

    def decode(match: re.Match[bytes]) -> bytes:
        char = chr(int(match.group(1), 16))
        return match.group(0).upper() if char in _KONG_RESERVED else bytes([ord(char)])

    decoded = _TRIPLET.sub(decode, path.encode("utf-8", "surrogateescape")).decode("utf-8", "surrogateescape")
    return _merge_and_resolve(decoded)


def minio_encoded_path(path: str) -> str:
    """MinIO's canonical URI of a decoded path (s3utils.EncodePath): all but unreserved and ``/`` encoded."""
    return quote(path.encode("utf-8", "surrogateescape"), safe="/~")


def plugin_canonical_query(raw_query: str) -> str:
    """The canonical query the plugin signs: raw pairs, key and value encoded again, sorted by key."""
    pairs = []
    for pair in (p for p in raw_query.split("&") if p):
        key, _, value = pair.partition("=")
        if key:
            pairs.append((quote(key, safe="-._~"), quote(value, safe="-._~")))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs, key=lambda kv: kv[0]))


def minio_canonical_query(raw_query: str) -> str:
    """The canonical query MinIO checks: decoded pairs (``+`` is a space, ``;`` pairs dropped as by Go),
    encoded once, sorted by key, spaces as ``%20``."""
    pairs: list[tuple[bytes, bytes]] = []
    for pair in (p for p in raw_query.split("&") if p):
        if ";" in pair:
            continue
        key, _, value = pair.partition("=")
        pairs.append((unquote_to_bytes(key.replace("+", " ")), unquote_to_bytes(value.replace("+", " "))))
    pairs.sort(key=lambda kv: kv[0])
    return "&".join(f"{quote(k, safe='-._~')}={quote(v, safe='-._~')}" for k, v in pairs)


def minio_answer(signed_path: str, raw_query: str) -> tuple[int, str] | None:
    """What MinIO says to the plugin's request for ``signed_path`` (what the plugin signed and sent) and the raw
    query: None when the signature matches, else ``(status, S3 error code)``."""
    if any(c == " " or ord(c) < 0x20 or ord(c) == 0x7F for c in signed_path):
        return 400, "BadRequest"  # Go's HTTP server: the request line is broken
    decoded = unquote_to_bytes(signed_path).decode("utf-8", "surrogateescape")
    if minio_encoded_path(decoded) != signed_path:
        return 403, "SignatureDoesNotMatch"
    if plugin_canonical_query(raw_query) != minio_canonical_query(raw_query):
        return 403, "SignatureDoesNotMatch"
    return None
