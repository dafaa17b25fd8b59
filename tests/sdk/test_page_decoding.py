"""FHIR page decoding helpers: the next link read off a page's head, JSON decoded with the collector paused."""

from __future__ import annotations

import gc
import json
import threading

from flame_sdk.data.bundles import next_link
from flame_sdk.data.page_decoding import collector_paused, decode_json, peek_links

LINKS = [{"relation": "self", "url": "http://hapi/fhir/Observation?_count=2"},
         {"relation": "next", "url": "http://hapi/fhir?_getpages=abc&_getpagesoffset=2&_count=2"}]
ENTRY = [{"resource": {"resourceType": "Patient", "id": "p", "link": [{"relation": "next", "url": "nope"}]}}]


def _page(*members: tuple[str, object], indent: int | None = None) -> bytes:
    return json.dumps(dict(members), indent=indent).encode()


def test_links_are_read_from_the_head_of_a_page_that_writes_them_before_its_entries() -> None:
    page = _page(("resourceType", "Bundle"), ("meta", {"lastUpdated": "x"}), ("type", "searchset"), ("total", 9),
                 ("link", LINKS), ("entry", ENTRY))
    assert peek_links(page) == LINKS
    assert peek_links(_page(("resourceType", "Bundle"), ("link", LINKS), ("entry", ENTRY), indent=2)) == LINKS
    assert next_link({"link": peek_links(page)}) == LINKS[1]["url"]


def test_a_page_with_its_entries_first_or_no_json_object_does_not_tell() -> None:
    # a resource in an entry may have its own "link" (Patient.link): it must never be taken for the Bundle's
    assert peek_links(_page(("resourceType", "Bundle"), ("entry", ENTRY), ("link", LINKS))) is None
    assert peek_links(b"[1, 2]") is None
    assert peek_links(b"<Bundle/>") is None
    assert peek_links(b'{"resourceType": "Bundle", "link": [{"relation": "ne') is None  # cut off
    assert peek_links(_page(("resourceType", "Bundle"), ("link", {"relation": "next"}))) is None  # not a list
    assert peek_links(_page(("resourceType", "Bundle"), ("total", 0))) is None


def test_decoding_pauses_the_collector_and_restores_it() -> None:
    assert gc.isenabled()
    seen = []
    with collector_paused():
        seen.append(gc.isenabled())
        with collector_paused():
            seen.append(gc.isenabled())
        seen.append(gc.isenabled())
    assert seen == [False, False, False] and gc.isenabled()
    assert decode_json(b'{"a": [1, {"b": null}]}') == {"a": [1, {"b": None}]} and gc.isenabled()


def test_a_collector_the_caller_disabled_stays_disabled() -> None:
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_overlapping_pauses_from_threads_end_with_the_collector_enabled() -> None:
    inside, leave = threading.Barrier(3), threading.Event()

    def pause() -> None:
        with collector_paused():
            inside.wait(10)
            leave.wait(10)

    threads = [threading.Thread(target=pause) for _ in range(2)]
    for thread in threads:
        thread.start()
    inside.wait(10)
    assert not gc.isenabled()
    leave.set()
    for thread in threads:
        thread.join(10)
    assert gc.isenabled()
