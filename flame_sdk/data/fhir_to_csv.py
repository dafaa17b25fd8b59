"""fhir_to_csv: pivot FHIR Observations or QuestionnaireResponses into a table, as CSV or dict.

Key sequences are dot paths into each Bundle entry (``resource.code.coding.code``). Lists on the way are
searched in order and the first match wins. If the last key is not present verbatim, the first field whose
name contains it is used (so ``...answer.value`` finds ``valueInteger``/``valueBoolean``/...).

* ``Observation``: one cell per entry: column = ``col_key_seq``, row = ``row_key_seq`` (required),
  value = ``value_key_seq``; a later entry for the same cell replaces an earlier one.
* ``QuestionnaireResponse``: one row per response, one column per item. Key sequences start with
  ``resource.item`` and continue inside each item (``resource.item.linkId``, ``resource.item.answer.value``);
  nested item groups are walked. The row id is ``row_key_seq`` when given, else the response's position
  (``"0"``, ``"1"``, ... across all pages).

``row_id_filters`` / ``col_id_filters`` keep only rows / columns whose id contains one of the substrings.
With ``next_page`` (a callable fetching a ``Bundle.link`` ``next`` URL), every following page is converted
too; a page loop or more than ``max_pages`` pages is an error.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Iterator
from io import StringIO
from typing import Any, Literal, TextIO

from flame_sdk.data.bundles import next_link

KNOWN_RESOURCES = ("Observation", "QuestionnaireResponse")
DEFAULT_MAX_PAGES = 10_000
_QR_PREFIX = ["resource", "item"]
_ABSENT = object()

Table = dict[Any, dict[Any, Any]]


def find_value(node: Any, keys: list[str]) -> Any:
    """Follow ``keys`` into nested dicts/lists; None when the path does not exist."""
    return _find(node, keys, 0)


def _find(node: Any, keys: list[str], at: int) -> Any:
    end = len(keys)
    while at < end:
        if isinstance(node, dict):
            key = keys[at]
            value = node.get(key, _ABSENT)
            if value is not _ABSENT:
                node, at = value, at + 1
                continue
            if at == end - 1:  # the last key may be a prefix: valueQuantity for "value"
                for name, value in node.items():
                    if key in name:
                        return value
            return None
        if isinstance(node, list):
            for item in node:
                found = _find(item, keys, at)
                if found is not None:
                    return found
        return None
    return node


def _split(name: str, seq: str | None) -> list[str]:
    if not isinstance(seq, str) or not seq.strip() or any(not part for part in seq.split(".")):
        raise ValueError(f"{name} must be a dot-separated key sequence such as 'resource.code.coding.code', "
                         f"got {seq!r}")
    return seq.split(".")


def _substrings_or_none(value: object) -> bool:
    """None, or a collection of str that is not itself a str (callers may pass anything)."""
    if value is None:
        return True
    return isinstance(value, Iterable) and not isinstance(value, str) and all(isinstance(f, str) for f in value)


def _pages(first: dict[str, Any], next_page: Callable[[str], dict[str, Any]] | None,
           max_pages: int) -> Iterator[dict[str, Any]]:
    yield first
    if next_page is None:
        return
    seen: set[str] = set()
    page, count = first, 1
    while (link := next_link(page)) is not None:
        if link in seen:
            raise ValueError(f"FHIR paging loop: the next link {link!r} was already followed (after {count} pages)")
        if count >= max_pages:
            raise ValueError(f"more than {max_pages} FHIR pages; narrow the query or raise max_pages")
        seen.add(link)
        page = next_page(link)
        count += 1
        yield page


def _items(items: Any) -> Iterator[dict[str, Any]]:
    for item in items or []:
        if isinstance(item, dict):
            yield item
            yield from _items(item.get("item"))


def _keep(ident: Any, filters: list[str] | None) -> bool:
    return filters is None or (ident is not None and any(f in str(ident) for f in filters))


def _missing(name: str, seq: str, entries: int, resource: str, sample: dict[str, Any] | None) -> ValueError:
    keys = sorted(sample) if isinstance(sample, dict) else []
    return ValueError(f"{name}={seq!r} matched nothing in any of the {entries} {resource} entries; check the "
                      f"key sequence (fields of the first resource: {keys})")


def _table(pages: Iterator[dict[str, Any]], resource: str, col_keys: list[str], value_keys: list[str],
           row_keys: list[str] | None, row_filters: list[str] | None, col_filters: list[str] | None,
           names: dict[str, str]) -> Table:
    table: Table = {}
    entries, found_col, found_row, position = 0, False, False, 0
    sample: dict[str, Any] | None = None
    for page in pages:
        if not isinstance(page, dict):
            raise TypeError(f"fhir_data must be a FHIR Bundle (dict), got {type(page).__name__}")
        for entry in page.get("entry") or []:
            res = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(res, dict) or res.get("resourceType", resource) != resource:
                continue
            entries += 1
            sample = sample or res
            if resource == "Observation":
                row_id = find_value(entry, row_keys or [])
                col_id = find_value(entry, col_keys)
                found_row |= row_id is not None
                found_col |= col_id is not None
                if row_id is None or col_id is None:
                    continue
                if (row_filters or col_filters) and not (_keep(row_id, row_filters) and _keep(col_id, col_filters)):
                    continue
                table.setdefault(col_id, {})[row_id] = find_value(entry, value_keys)
            else:
                row_id = find_value(entry, row_keys) if row_keys else str(position)
                position += 1
                found_row |= row_id is not None
                if row_id is None or not _keep(row_id, row_filters):
                    continue
                for item in _items(res.get("item")):
                    col_id = find_value(item, col_keys[2:])
                    found_col |= col_id is not None
                    if col_id is None or not _keep(col_id, col_filters):
                        continue
                    table.setdefault(col_id, {})[row_id] = find_value(item, value_keys[2:])
    if entries and not found_col:
        raise _missing("col_key_seq", names["col"], entries, resource, sample)
    if entries and not found_row:
        raise _missing("row_key_seq", names["row"], entries, resource, sample)
    return table


def _missing_cell(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def write_csv(table: Table, out: TextIO, row_col_name: str = "", separator: str = ",") -> None:
    """The pivot table as CSV: a header (``row_col_name``, then the column ids), one line per row id; columns
    and rows in first-seen order, missing cells (and None or NaN values) empty. Written as pandas'
    ``DataFrame.to_csv`` writes such a table of objects, with the csv module."""
    columns = list(table)
    rows = list(dict.fromkeys(row for column in table.values() for row in column))
    writer = csv.writer(out, delimiter=separator, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow([row_col_name, *columns])
    cells = [table[column] for column in columns]
    for row in rows:
        values = [cell.get(row) for cell in cells]
        writer.writerow([row, *("" if _missing_cell(v) else v for v in values)])


def fhir_to_csv(
    fhir_data: dict[str, Any],
    col_key_seq: str,
    value_key_seq: str,
    input_resource: str,
    row_key_seq: str | None = None,
    row_id_filters: list[str] | None = None,
    col_id_filters: list[str] | None = None,
    row_col_name: str = "",
    separator: str = ",",
    output_type: Literal["file", "dict"] = "file",
    next_page: Callable[[str], dict[str, Any]] | None = None,
    max_pages: int = DEFAULT_MAX_PAGES,
) -> StringIO | Table:
    """Pivot a FHIR Bundle into a table: a CSV ``StringIO`` (``output_type='file'``) or
    ``{column id: {row id: value}}`` (``'dict'``). See the module docstring for the semantics."""
    if input_resource not in KNOWN_RESOURCES:
        raise ValueError(f"input_resource {input_resource!r} is not supported; use one of {KNOWN_RESOURCES}")
    if output_type not in ("file", "dict"):
        raise ValueError(f"output_type must be 'file' or 'dict', got {output_type!r}")
    if not isinstance(fhir_data, dict):
        raise TypeError(f"fhir_data must be one FHIR Bundle (dict), got {type(fhir_data).__name__}; e.g. "
                        f"flame.get_fhir_data(['Observation'])[0]['Observation']")
    col_keys = _split("col_key_seq", col_key_seq)
    value_keys = _split("value_key_seq", value_key_seq)
    if input_resource == "Observation" and row_key_seq is None:
        raise ValueError("input_resource='Observation' needs row_key_seq, e.g. 'resource.subject.reference'")
    row_keys = _split("row_key_seq", row_key_seq) if row_key_seq is not None else None
    if input_resource == "QuestionnaireResponse":
        for name, keys in (("col_key_seq", col_keys), ("value_key_seq", value_keys)):
            if keys[:2] != _QR_PREFIX or len(keys) < 3:
                raise ValueError(f"for QuestionnaireResponse, {name} starts with 'resource.item.' and continues "
                                 f"inside an item (e.g. 'resource.item.linkId'), got {'.'.join(keys)!r}")
    if not isinstance(separator, str) or len(separator) != 1:
        raise ValueError(f"separator must be one character, got {separator!r}")
    for name, filters in (("row_id_filters", row_id_filters), ("col_id_filters", col_id_filters)):
        if not _substrings_or_none(filters):
            raise TypeError(f"{name} must be a list of substrings (str), got {filters!r}")
    table = _table(_pages(fhir_data, next_page, max_pages), input_resource, col_keys, value_keys, row_keys,
                   row_id_filters, col_id_filters, {"col": col_key_seq, "row": str(row_key_seq)})
    if output_type == "dict":
        return table
    out = StringIO()
    write_csv(table, out, row_col_name, separator)
    out.seek(0)
    return out
