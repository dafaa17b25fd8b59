"""Final result files as a run record keeps them: named after the analysis, with an extension fitting the content.

A result the analysis named itself (``filename=`` of ``submit_final_result``) keeps its name. A generated name
(``result_<4 hex>_<timestamp>.<ext>``, as the SDK and the reference SDK name unnamed results) becomes
``<analysis>.<ext>``, or ``<analysis>_<n>.<ext>`` for several, where the extension comes from the content: the
output type alone cannot tell a PNG from other bytes.

An upload repeated with the same name and the same bytes (the SDK retried a request whose answer was lost; the
real result service then stores it on the hub twice) is kept once (``repeated_uploads``).
"""

from __future__ import annotations

import io
import json
import re

import pandas as pd

_GENERATED = re.compile(r"^result_[0-9a-f]{4}_\d{12}\.\w+$")
#: Leading bytes of common binary formats.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", ".png"), (b"\xff\xd8\xff", ".jpg"), (b"GIF8", ".gif"), (b"%PDF-", ".pdf"),
    (b"PK\x03\x04", ".zip"), (b"\x1f\x8b", ".gz"), (b"\x93NUMPY", ".npy"),
)


def as_table(content: bytes) -> pd.DataFrame | None:
    """Parse CSV text into a DataFrame, or None when the content is not tabular."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return None
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2 or "," not in lines[0]:
        return None
    try:
        frame = pd.read_csv(io.StringIO(text))
    except (pd.errors.ParserError, ValueError):
        return None
    return frame.convert_dtypes() if frame.shape[1] > 1 else None


def content_extension(content: bytes) -> str:
    """The extension that fits ``content``: a known binary format, pickle, JSON, CSV, text, else ``.bin``."""
    for magic, extension in _MAGIC:
        if content.startswith(magic):
            return extension
    if len(content) > 2 and content[0] == 0x80 and 2 <= content[1] <= 5 and content.endswith(b"."):
        return ".pkl"
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return ".bin"
    try:
        if isinstance(json.loads(text), (dict, list)):
            return ".json"
    except ValueError:
        pass
    return ".csv" if as_table(content) is not None else ".txt"


def repeated_uploads(files: list[tuple[str, bytes]]) -> tuple[list[tuple[str, bytes]], list[str]]:
    """``files`` without exact repeats of an earlier (name, content), and the names of the repeats."""
    seen: set[tuple[str, bytes]] = set()
    kept: list[tuple[str, bytes]] = []
    repeats: list[str] = []
    for name, content in files:
        if (name, content) in seen:
            repeats.append(name)
        else:
            seen.add((name, content))
            kept.append((name, content))
    return kept, repeats


def record_names(analysis: str, files: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """(file name in the run record, content) for each final result, in upload order; names are unique."""
    generated = [name for name, _ in files if _GENERATED.match(name)]
    named: list[tuple[str, bytes]] = []
    taken: set[str] = set()
    number = 0
    for name, content in files:
        if _GENERATED.match(name):
            number += 1
            stem = analysis if len(generated) == 1 else f"{analysis}_{number}"
            name = stem + content_extension(content)
        base, dot, ext = name.rpartition(".")
        candidate, again = name, 1
        while candidate in taken:
            again += 1
            candidate = f"{base}_{again}.{ext}" if dot else f"{name}_{again}"
        taken.add(candidate)
        named.append((candidate, content))
    return named


def render(content: bytes) -> str:
    """Human view of a result: a table for CSV, indented JSON, text, or a size for binary data."""
    table = as_table(content)
    if table is not None:
        with pd.option_context("display.max_rows", 200, "display.max_columns", 50, "display.width", 160):
            return str(table.to_string(index=False))
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(content)} bytes of {content_extension(content).lstrip('.')} data>"
    try:
        return json.dumps(json.loads(text), indent=2)
    except ValueError:
        return text
