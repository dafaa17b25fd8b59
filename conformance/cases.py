"""The storage calls the harness makes, and what counts as passing.

A case passes when the SDK call does what its documentation promises on a real node: the data comes back
equal, the result lands on the hub, or the call fails with the documented exception (and, for checks the
SDK makes itself, before anything is sent). Each row also shows what crossed the wire.
"""

from __future__ import annotations

import os
import pickle
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from conformance.client import SdkNode, Wire
from conformance.hub_stub import HubState, Keycloak
from flame_sdk.errors import (
    DecryptionLimitError,
    FlameError,
    TamperedDataError,
    TokenExpiredError,
    UnknownNodeError,
)

MIB = 1024 * 1024


@dataclass
class Harness:
    a: SdkNode  # aggregator
    b: SdkNode  # default node
    hub: HubState
    keycloak: Keycloak
    wire: Wire
    raw: aiohttp.ClientSession  # no redirects followed, for wire probes
    unknown_node: str = field(default_factory=lambda: str(uuid.uuid4()))

    def final_files(self) -> dict[str, bytes]:
        return {f.name: f.content for f in self.hub.files_in("RESULT")}


@dataclass
class Row:
    title: str
    ok: bool
    detail: str
    wire: list[str]
    seconds: float


Case = Callable[[Harness], Awaitable[str | None]]
CASES: list[tuple[str, Case]] = []


def case(title: str) -> Callable[[Case], Case]:
    def register(fn: Case) -> Case:
        CASES.append((title, fn))
        return fn
    return register


def pickled_size_object(size: int) -> bytes:
    """Random bytes whose pickle (as the SDK pickles intermediate data) is exactly ``size`` bytes."""
    for n in range(size, 0, -1):
        candidate = os.urandom(n)
        if len(pickle.dumps(candidate, protocol=5)) == size:
            return candidate
    raise ValueError(size)


async def expect_error(call: Awaitable[Any], kinds: tuple[type[BaseException], ...], wire: Wire,
                       before_upload: bool = False) -> str:
    try:
        await call
    except kinds as exc:
        if before_upload and wire.lines:
            raise AssertionError(f"rejected only after sending: {exc}") from None
        return f"{type(exc).__name__}: {exc}"
    except Exception as exc:
        raise AssertionError(f"expected {'/'.join(k.__name__ for k in kinds)}, got {type(exc).__name__}: {exc}") from None
    raise AssertionError(f"expected {'/'.join(k.__name__ for k in kinds)}, but the call succeeded")


# -- final results --------------------------------------------------------------------------------------------
@case("final result, output_type='str'")
async def final_str(h: Harness) -> str | None:
    await h.a.storage.submit_final_result("hello node", "str", filename="hello.txt")
    assert h.final_files().get("hello.txt") == b"hello node", f"hub has {list(h.final_files())}"
    return None


@case("final result, output_type='bytes'")
async def final_bytes(h: Harness) -> str | None:
    payload = bytes(range(256)) * 4
    await h.a.storage.submit_final_result(payload, "bytes", filename="raw.bin")
    assert h.final_files().get("raw.bin") == payload, f"hub has {list(h.final_files())}"
    return None


@case("final result, output_type='pickle'")
async def final_pickle(h: Harness) -> str | None:
    await h.a.storage.submit_final_result({"mean": 4.2, "n": [1, 2]}, "pickle", filename="obj.pkl")
    assert pickle.loads(h.final_files()["obj.pkl"]) == {"mean": 4.2, "n": [1, 2]}
    return None


@case("final result, multiple_results=True (2 files)")
async def final_multiple(h: Harness) -> str | None:
    await h.a.storage.submit_final_result(["first", "second"], "str", multiple_results=True, filename="multi.txt")
    files = h.final_files()
    assert (files.get("multi_1.txt"), files.get("multi_2.txt")) == (b"first", b"second"), f"hub has {list(files)}"
    return None


@case("final result, local_dp with a number")
async def localdp_number(h: Harness) -> str | None:
    await h.a.storage.submit_final_result(42.0, "str", filename="dp.txt", local_dp={"epsilon": 1.0, "sensitivity": 1.0})
    value = float(h.final_files()["dp.txt"])
    return f"stored noisy value {value:.3f} (true 42.0)"


@case("final result, local_dp with a list (not scalar)")
async def localdp_list(h: Harness) -> str | None:
    return await expect_error(h.a.storage.submit_final_result(
        [1.0, 2.0], "str", filename="dplist.txt", local_dp={"epsilon": 1.0, "sensitivity": 1.0}),
        (ValueError,), h.wire, before_upload=True)


@case("final result, local_dp, multiple_results=True with numbers")
async def localdp_multiple(h: Harness) -> str | None:
    await h.a.storage.submit_final_result([1.0, 2.0], "str", multiple_results=True, filename="dpm.txt",
                                          local_dp={"epsilon": 1.0, "sensitivity": 1.0})
    values = [float(h.final_files()[f"dpm_{i}.txt"]) for i in (1, 2)]
    return f"stored {[round(v, 3) for v in values]}"


# -- global intermediate data ---------------------------------------------------------------------------------
async def _send(sender: SdkNode, recipient: SdkNode, data: Any) -> str:
    saved = await sender.storage.save_intermediate_data(data, "global", [recipient.node_id])
    return str(saved[recipient.node_id]["id"])  # type: ignore[index]


@case("global save A->B, B gets it (sender_id=A)")
async def global_a_to_b(h: Harness) -> str | None:
    object_id = await _send(h.a, h.b, {"round": 1, "values": [1.5, 2.5]})
    got = await h.b.storage.get_intermediate_data("global", query=object_id, sender_id=h.a.node_id)
    assert got == {"round": 1, "values": [1.5, 2.5]}, f"got {got!r}"
    return None


@case("global save B->A, A gets it (sender_id=B)")
async def global_b_to_a(h: Harness) -> str | None:
    object_id = await _send(h.b, h.a, [3, 4, 5])
    got = await h.a.storage.get_intermediate_data("global", query=object_id, sender_id=h.b.node_id)
    assert got == [3, 4, 5], f"got {got!r}"
    return None


@case("global get without sender_id (tries participants)")
async def global_no_sender(h: Harness) -> str | None:
    object_id = await _send(h.a, h.b, "who sent me")
    got = await h.b.storage.get_intermediate_data("global", query=object_id)
    assert got == "who sent me", f"got {got!r}"
    return None


@case("global get, wrong sender_id -> TamperedDataError")
async def global_wrong_sender(h: Harness) -> str | None:
    object_id = await _send(h.a, h.b, "from A")
    return await expect_error(h.b.storage.get_intermediate_data("global", query=object_id, sender_id=h.b.node_id),
                              (TamperedDataError,), h.wire)


@case("global get by a node it was not sent to -> TamperedDataError")
async def global_wrong_recipient(h: Harness) -> str | None:
    object_id = await _send(h.a, h.b, "for B only")
    return await expect_error(h.a.storage.get_intermediate_data("global", query=object_id, sender_id=h.a.node_id),
                              (TamperedDataError,), h.wire)


@case("global get of a tampered object -> TamperedDataError")
async def global_tampered(h: Harness) -> str | None:
    object_id = await _send(h.a, h.b, "original")
    stored = next(f for f in h.hub.objects.values() if f.file_id == object_id)
    middle = len(stored.content) // 2
    stored.content = stored.content[:middle] + bytes([stored.content[middle] ^ 1]) + stored.content[middle + 1:]
    return await expect_error(h.b.storage.get_intermediate_data("global", query=object_id, sender_id=h.a.node_id),
                              (TamperedDataError,), h.wire)


@case("global save for a participant the hub does not know -> UnknownNodeError")
async def global_unknown_node(h: Harness) -> str | None:
    return await expect_error(h.a.storage.save_intermediate_data("x", "global", [h.unknown_node]),
                              (UnknownNodeError,), h.wire)


@case("global get of a 2 kB pickle another client sent -> DecryptionLimitError")
async def global_over_limit(h: Harness) -> str | None:
    form = aiohttp.FormData()  # as the reference SDK sends global data: a plain pickle, any size
    form.add_field("remote_node_id", h.b.node_id)
    form.add_field("file", pickle.dumps(os.urandom(2000)), filename="data.pkl")
    async with h.raw.put(h.a.gateway_url + "/storage/intermediate/", data=form,
                         headers={"Authorization": f"Bearer {h.a.tokens.token}"}) as resp:
        object_id = (await resp.json())["object_id"]
    h.wire.take()
    return await expect_error(h.b.storage.get_intermediate_data("global", query=object_id, sender_id=h.a.node_id),
                              (DecryptionLimitError,), h.wire)


@case("global get, malformed id -> ValueError")
async def global_malformed(h: Harness) -> str | None:
    return await expect_error(h.b.storage.get_intermediate_data("global", query="not-a-uuid", sender_id=h.a.node_id),
                              (ValueError,), h.wire)


@case("global get, unknown id -> ValueError")
async def global_missing(h: Harness) -> str | None:
    return await expect_error(h.b.storage.get_intermediate_data("global", query=str(uuid.uuid4()),
                                                                sender_id=h.a.node_id), (ValueError,), h.wire)


def _global_size_case(size: int, label: str) -> Case:
    async def run(h: Harness) -> str | None:
        data = pickled_size_object(size) if size < MIB else os.urandom(size)
        object_id = await _send(h.a, h.b, data)
        got = await h.b.storage.get_intermediate_data("global", query=object_id, sender_id=h.a.node_id)
        assert got == data, "payload came back different"
        return None
    CASES.append((f"global round trip, {label}", run))
    return run


_global_size_case(996, "pickle of 996 bytes")
_global_size_case(997, "pickle of 997 bytes")
_global_size_case(MIB, "1 MiB")
_global_size_case(20 * MIB, "20 MiB")


# -- local intermediate data ----------------------------------------------------------------------------------
@case("local save/get by id")
async def local_by_id(h: Harness) -> str | None:
    saved = await h.a.storage.save_intermediate_data({"state": [1, 2]}, "local")
    got = await h.a.storage.get_intermediate_data("local", query=str(saved["id"]))
    assert got == {"state": [1, 2]}, f"got {got!r}"
    return None


@case("local get, malformed id -> ValueError")
async def local_malformed(h: Harness) -> str | None:
    return await expect_error(h.a.storage.get_intermediate_data("local", query="not-a-uuid"), (ValueError,), h.wire)


@case("local tags: all / first / last in save order")
async def local_tag_order(h: Harness) -> str | None:
    for value in (1, 2, 3):
        await h.a.storage.save_intermediate_data(value, "local", tag="round")
    every = await h.a.storage.get_intermediate_data("local", tag="round", tag_option="all")
    first = await h.a.storage.get_intermediate_data("local", tag="round", tag_option="first")
    last = await h.a.storage.get_intermediate_data("local", tag="round", tag_option="last")
    assert (every, first, last) == ([1, 2, 3], [1], [3]), f"all={every} first={first} last={last}"
    return None


@case("get_local_tags with filter")
async def local_tags_filter(h: Harness) -> str | None:
    for tag in ("alpha-1", "beta", "alpha-2"):
        await h.a.storage.save_intermediate_data(tag, "local", tag=tag)
    some = await h.a.storage.get_local_tags("alpha")
    every = await h.a.storage.get_local_tags()
    assert some == ["alpha-1", "alpha-2"] and {"alpha-1", "alpha-2", "beta", "round"} <= set(every), \
        f"filter -> {some}, all -> {every}"
    return None


def _local_size_case(size: int) -> Case:
    async def run(h: Harness) -> str | None:
        data = os.urandom(size)
        saved = await h.a.storage.save_intermediate_data(data, "local")
        got = await h.a.storage.get_intermediate_data("local", query=str(saved["id"]))
        assert got == data, "payload came back different"
        return None
    CASES.append((f"local round trip, {size // MIB} MiB", run))
    return run


_local_size_case(MIB)
_local_size_case(20 * MIB)


# -- tokens ---------------------------------------------------------------------------------------------------
async def _with_token(node: SdkNode, token: str, call: Callable[[], Awaitable[Any]]) -> Any:
    good = node.tokens.token
    node.tokens.set(token)
    try:
        return await call()
    finally:
        node.tokens.set(good or "")


@case("expired token -> TokenExpiredError")
async def expired_token(h: Harness) -> str | None:
    expired = h.keycloak.token(h.hub.analysis_id, ttl=60, issued=int(time.time()) - 3600)
    return await expect_error(_with_token(h.a, expired, lambda: h.a.storage.get_local_tags()),
                              (TokenExpiredError,), h.wire)


@case("invalid token -> TokenExpiredError")
async def invalid_token(h: Harness) -> str | None:
    return await expect_error(_with_token(h.a, "not-a-jwt", lambda: h.a.storage.get_local_tags()),
                              (TokenExpiredError,), h.wire)


async def run_cases(h: Harness, only: list[str] | None = None) -> list[Row]:
    rows = []
    for title, fn in CASES:
        if only and not any(word in title for word in only):
            continue
        h.wire.take()
        start = time.perf_counter()
        try:
            detail, ok = (await fn(h)) or "", True
        except AssertionError as exc:
            detail, ok = str(exc), False
        except (FlameError, ValueError, TypeError, KeyError, aiohttp.ClientError) as exc:
            detail, ok = f"{type(exc).__name__}: {exc}", False
        rows.append(Row(title, ok, detail, h.wire.take(), time.perf_counter() - start))
        print(f"  {'PASS' if ok else 'FAIL'}  {title} ({rows[-1].seconds:.1f} s)", flush=True)
    return rows
