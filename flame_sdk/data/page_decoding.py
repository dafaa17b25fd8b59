"""Decoding FHIR pages fast: the ``next`` link read off a page's head, and JSON parsed with the collector paused.

* ``peek_links``: a search that pages can ask for page n+1 while page n is parsed, if it knows the ``next``
  link early. Servers write the Bundle's ``link`` before its ``entry`` (HAPI does), so the top-level members
  up to ``link`` are decoded one by one; a page that has ``entry`` first gives None (parse it first).
* ``collector_paused`` / ``decode_json``: Python's cyclic garbage collector paused while pages are parsed
  (``decode_json``: one parse; a whole search holds the pause from its first page to the merged Bundle). A
  FHIR page is thousands of nested dicts and lists; while they are allocated, every 700 new containers start
  a collection, and each time the older generations grow by a quarter a full collection walks everything
  alive, the pages parsed so far included: a search of 100k Observations took 3-6 x the time of the parse
  itself. JSON has no reference cycles, so the pages create nothing the collector could free; other threads'
  cyclic garbage waits until the pause ends. At its end everything allocated meanwhile is moved to the oldest
  generation at once (``gc.freeze()`` then ``gc.unfreeze()``, both O(1); skipped when something is frozen),
  so the young collections do not walk the pages again: the next full collection does, once.
"""

from __future__ import annotations

import gc
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_HEAD_LIMIT = 64 * 1024
_decoder = json.JSONDecoder()
_pause_lock = threading.Lock()
_pauses = 0
_was_enabled = False


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (process-wide) for the block; nested and concurrent uses share one
    pause. When the last one ends, what was allocated meanwhile is promoted to the oldest generation and the
    collector is enabled again, if it was enabled before the first one."""
    global _pauses, _was_enabled
    with _pause_lock:
        if _pauses == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pauses -= 1
            if _pauses == 0 and _was_enabled:
                if gc.get_freeze_count() == 0:  # nobody froze objects: promote, do not unfreeze anyone's
                    gc.freeze()
                    gc.unfreeze()
                gc.enable()


def decode_json(body: bytes | str) -> Any:
    """``json.loads(body)`` with the collector paused (see the module docstring)."""
    with collector_paused():
        return json.loads(body)


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def peek_links(body: bytes) -> list[Any] | None:
    """A Bundle's ``link`` array read from its top-level members before ``entry``; None when the head does not
    tell (``entry`` first, no ``link`` in the first 64 KiB, not a JSON object)."""
    try:
        text = body[:_HEAD_LIMIT].decode("utf-8", errors="ignore")
        pos = _skip_space(text, 0)
        if text[pos : pos + 1] != "{":
            return None
        pos = _skip_space(text, pos + 1)
        while text[pos : pos + 1] == '"':
            key, pos = _decoder.raw_decode(text, pos)
            pos = _skip_space(text, pos)
            if text[pos : pos + 1] != ":" or key == "entry":
                return None
            value, pos = _decoder.raw_decode(text, _skip_space(text, pos + 1))
            if key == "link":
                return value if isinstance(value, list) else None
            pos = _skip_space(text, pos)
            if text[pos : pos + 1] != ",":
                return None
            pos = _skip_space(text, pos + 1)
    except (ValueError, IndexError):  # cut off at the head limit, or not JSON: decode the whole page
        return None
    return None
