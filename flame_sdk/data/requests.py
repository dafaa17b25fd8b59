"""What a data request asked for and what came back: the checks and notices both the SDK and the fake SDK
give (pure, no I/O).

* Keys a node's S3 gateway cannot carry are refused before anything is sent (the rule is
  ``flame_sdk.protocol.s3_gateway.key_problem``).
* Named S3 keys that no source holds: ``get_s3_data`` filters each source by the names (the FLAME docs), so
  a key one source lacks is simply left out; a key that no source of the node holds is named in a warning
  with the keys the sources do hold, and when none of the named keys exists at all the request fails with
  them (an analysis cannot do anything useful with empty data, and would otherwise fail later with a
  ``KeyError`` of its own).
* A FHIR search that matched nothing gets a notice naming the node, the source and the query.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flame_sdk.errors import DataSourceError
from flame_sdk.protocol.s3_gateway import explain_key_problems, key_problem

#: Keys per source shown in a missing-key message (a longer listing ends with "...").
KEYS_SHOWN = 20


def refuse_unreadable(keys: list[str], where: str, also: str = "") -> None:
    """Raise before any request when keys cannot pass the node's S3 gateway, naming them and why."""
    problems = {key: problem for key in keys if (problem := key_problem(key)) is not None}
    if problems:
        raise DataSourceError(f"{where}: {len(problems)} key(s) cannot be read through the node's S3 gateway: "
                              f"{explain_key_problems(problems)}{also}")


def missing_keys(named: list[str], found: list[dict[str, bytes]]) -> list[str]:
    """The named keys that no source's answer holds."""
    return [key for key in named if not any(key in source for source in found)]


def _holdings(held: Mapping[str, list[str]]) -> str:
    parts = []
    for source, keys in held.items():
        shown = ", ".join(keys[:KEYS_SHOWN]) or "no objects"
        more = ", ..." if len(keys) > KEYS_SHOWN else ""
        parts.append(f"{source!r}: {shown}{more}")
    return "; ".join(parts)


def missing_keys_error(named: list[str], held: Mapping[str, list[str]], node: str) -> DataSourceError:
    """The error for a request none of whose keys exists: what was asked for and what the sources hold."""
    return DataSourceError(f"none of the S3 keys {named} exists in the S3 source(s) of {node}; they hold "
                           f"{_holdings(held)}. Ask for those names, or get_s3_data([]) for every dataset")


def missing_keys_warning(missing: list[str], held: Mapping[str, list[str]], node: str) -> str:
    """The warning for named keys that no source holds (the others were found and are returned)."""
    return f"S3 key(s) {missing} exist in no S3 source of {node} and are left out; the sources hold {_holdings(held)}"


def matched_nothing(bundle: Any) -> bool:
    """Whether a search answer (a Bundle) says the search matched no resource."""
    if not isinstance(bundle, Mapping) or bundle.get("resourceType") != "Bundle":
        return False
    total = bundle.get("total")
    return total == 0 if isinstance(total, int) else not bundle.get("entry")


def no_match_notice(query: str, source: str, node: str) -> str:
    """The notice for a FHIR search without matches."""
    return (f"FHIR query {query!r} matched no resources in data source {source!r} of {node}; check the resource "
            f"type, codes and dates (an empty Bundle is returned)")


def node_name(label: str) -> str:
    """How messages name the node: its log label (``node-1`` in the simulator) or 'this node'."""
    return f"node {label}" if label else "this node"
