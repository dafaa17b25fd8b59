"""An in-memory FHIR R4 REST search endpoint: what a node's FHIR server (HAPI) answers behind its Kong route.

Interactions (``tail`` is the path after ``/fhir/``):

* ``metadata``: a CapabilityStatement listing the resource types and search parameters below;
* ``<Type>/<id>``: read one resource;
* ``<Type>?<params>``: search, answered with a ``searchset`` Bundle with ``total``, ``link`` (``self``,
  ``next``, ``previous``) and ``entry`` (``fullUrl``, ``resource``, ``search.mode`` ``match`` or ``include``);
* ``?_getpages=<search id>&_getpagesoffset=<n>&_count=<m>``: another page of a search. ``next`` and
  ``previous`` links have this form, as HAPI FHIR writes them (RestfulServerUtils.createPagingLink): the
  server base, no resource type. A search id unknown or expired (the last ``SEARCHES_KEPT`` are kept) is
  answered 410 Gone, as HAPI does.

Search parameters: the table in ``fhir_search`` (Patient, Observation, Condition, Encounter,
MedicationStatement, QuestionnaireResponse; ``_id`` and ``_lastUpdated`` for every type). Result parameters:
``_count`` (page size, at most ``MAX_PAGE_SIZE``), ``_offset`` (start of the first page), ``_summary=count``
(total only) or ``false``, ``_include`` / ``_revinclude`` (``Type:param[:target]`` or ``*``, added per page
with ``search.mode`` ``include``), ``_sort`` (``param`` or ``-param``, comma-separated), ``_elements``
(top-level elements; the resources are tagged SUBSETTED as HAPI does), ``_total`` (``none`` leaves
``total`` out). ``_format`` and ``_pretty`` are accepted and ignored.

Errors as HAPI answers them: a type HAPI has no provider for is 404 (HAPI-0302), a parameter the type does
not have is 400 (HAPI-0524, listing the valid ones); a parameter HAPI knows but this server does not
implement is 400 saying so. A type without a parameter table and without data here is searched as HAPI
searches an empty table: an empty Bundle.
"""

from __future__ import annotations

import json
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from flame_sdk.protocol.data_api import PAGING_BUNDLE_TYPE, PAGING_OFFSET, PAGING_SEARCH, SEARCH_GONE
from flame_sdk.sim.services.fhir_search import (
    PARAMETERS,
    FhirError,
    Param,
    check_resource_type,
    operation_outcome,
    param_for,
    parameters,
    predicate,
    references,
    simulator_limit,
    sort_key,
)

__all__ = ["FhirError", "FhirStore", "operation_outcome"]

MAX_PAGE_SIZE = 1000
SEARCHES_KEPT = 256
_CACHE_SIZE = 32
_IGNORED = {"_format", "_pretty"}
_PAGING_PARAMS = {PAGING_SEARCH, PAGING_OFFSET, "_count", PAGING_BUNDLE_TYPE, *_IGNORED}
_SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED",
              "display": "subsetted"}


#: ``json.dumps`` of a str, without its Python-level calls (the encoder json.dumps uses for str by default).
_json_text = json.encoder.encode_basestring_ascii
_SEARCH_MODES = {mode: json.dumps({"mode": mode}) for mode in ("match", "include")}


def _search_json(search: dict[str, Any]) -> str:
    """``json.dumps`` of an entry's ``search`` (the two modes are written once)."""
    text = _SEARCH_MODES.get(search.get("mode", "")) if len(search) == 1 else None
    return text if text is not None else json.dumps(search)


@dataclass(frozen=True)
class _Options:
    """What a search's pages carry besides its matches (kept with the search id for later pages)."""

    include: tuple[tuple[str, Param], ...] = ()  # (param name, param) of the searched type
    revinclude: tuple[tuple[str, str, Param], ...] = ()  # (source type, param name, param)
    elements: tuple[str, ...] = ()
    total: bool = True


class FhirStore:
    """Resources of one FHIR server, indexed for search; paging is by ``_offset`` into a cached result."""

    def __init__(self, resources: list[dict[str, Any]], page_size: int = 50) -> None:
        self.page_size = page_size
        self._by_type: dict[str, list[dict[str, Any]]] = {}
        self._by_id: dict[tuple[str, str], dict[str, Any]] = {}
        for resource in resources:
            rtype = resource["resourceType"]
            self._by_type.setdefault(rtype, []).append(resource)
            self._by_id[(rtype, str(resource["id"]))] = resource
        self._cache: OrderedDict[tuple[Any, ...], list[int]] = OrderedDict()
        self._searches: OrderedDict[str, tuple[str, list[int], _Options]] = OrderedDict()
        self._search_ids: dict[tuple[Any, ...], str] = {}
        self._json: dict[tuple[str, str], str] = {}
        self._pointing: dict[tuple[str, str], dict[tuple[str, str], list[dict[str, Any]]]] = {}

    @property
    def resource_types(self) -> list[str]:
        return sorted(self._by_type)

    # -- interactions ------------------------------------------------------------------------------
    def handle(self, tail: str, query: str, base_url: str) -> dict[str, Any]:
        """Answer a GET on ``<base_url>/<tail>?<query>``; raise FhirError for error answers."""
        parts = [p for p in tail.split("/") if p]
        if not parts and PAGING_SEARCH in {name for name, _ in parse_qsl(query)}:
            return self.page(parse_qsl(query, keep_blank_values=True), base_url)
        if parts == ["metadata"]:
            return self.capability_statement()
        if len(parts) == 1:
            return self.search(parts[0], parse_qsl(query, keep_blank_values=True), base_url)
        if len(parts) == 2:
            return self.read(*parts)
        raise FhirError(400, "not-supported", f"unsupported FHIR interaction {tail!r}; use <Type>, <Type>/<id> "
                                              f"or metadata")

    def render(self, tail: str, query: str, base_url: str) -> bytes:
        """``handle`` as JSON bytes; each whole resource is serialized once and reused by later pages."""
        answer = self.handle(tail, query, base_url)
        entries = answer.get("entry") if answer.get("resourceType") == "Bundle" else None
        if entries is None:
            return json.dumps(answer).encode()
        head = json.dumps({k: v for k, v in answer.items() if k != "entry"})[:-1]
        body = ",".join(f'{{"fullUrl":{_json_text(e["fullUrl"])},"resource":{self._serialized(e["resource"])},'
                        f'"search":{_search_json(e["search"])}}}' for e in entries)
        return f'{head},"entry":[{body}]}}'.encode()

    def _serialized(self, resource: dict[str, Any]) -> str:
        key = (resource["resourceType"], str(resource["id"]))
        if self._by_id.get(key) is not resource:  # a subset (_elements)
            return json.dumps(resource)
        text = self._json.get(key)
        if text is None:
            text = self._json[key] = json.dumps(resource)
        return text

    def read(self, rtype: str, resource_id: str) -> dict[str, Any]:
        check_resource_type(rtype)
        resource = self._by_id.get((rtype, resource_id))
        if resource is None:
            raise FhirError(404, "processing", f"Resource {rtype}/{resource_id} is not known")
        return resource

    def search(self, rtype: str, params: list[tuple[str, str]], base_url: str) -> dict[str, Any]:
        check_resource_type(rtype)
        filters: list[tuple[str, str]] = []
        count, offset, summary, sort = self.page_size, 0, False, ""
        include: list[tuple[str, Param]] = []
        revinclude: list[tuple[str, str, Param]] = []
        elements: tuple[str, ...] = ()
        total = True
        for name, value in params:
            if name == "_count":
                count = self._int_param(name, value, 0, MAX_PAGE_SIZE)
            elif name == "_offset":
                offset = self._int_param(name, value, 0, None)
            elif name == "_summary":
                if value not in ("count", "false"):
                    raise simulator_limit(f"_summary={value}; use _summary=count or false")
                summary = value == "count"
            elif name == "_include":
                include += [(n, p) for _, n, p in self._reference_params(rtype, value, name, rtype)]
            elif name == "_revinclude":
                revinclude += self._reference_params(rtype, value, name, None)
            elif name.partition(":")[0] in ("_include", "_revinclude"):
                raise simulator_limit(f"{name}")
            elif name == "_sort":
                sort = value
                self._sort_params(rtype, sort)
            elif name == "_elements":
                elements = tuple(e.strip() for e in value.split(",") if e.strip())
            elif name == "_total":
                if value not in ("none", "estimate", "accurate"):
                    raise FhirError(400, "invalid", f"_total={value!r}; use none, estimate or accurate")
                total = value != "none"
            elif name not in _IGNORED:
                filters.append((name, value))
        options = _Options(tuple(include), tuple(revinclude), elements, total)
        matches = self._matches(rtype, filters, sort)
        key = (rtype, tuple(sorted(filters)), sort, options)
        self_query = urlencode(params)
        self_url = f"{base_url}/{rtype}" + (f"?{self_query}" if self_query else "")
        if summary:
            return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "searchset", "total": len(matches),
                    "link": [{"relation": "self", "url": self_url}]}
        return self._bundle(rtype, matches, offset, count, base_url, self_url, self._search_ids.get(key), key,
                            options)

    def page(self, params: list[tuple[str, str]], base_url: str) -> dict[str, Any]:
        """Another page of a stored search (``_getpages``), as HAPI serves its paging links."""
        unknown = sorted({name for name, _ in params} - _PAGING_PARAMS)
        if unknown:
            raise FhirError(400, "not-supported", f"a paging request takes no search parameters, got {unknown}")
        query = dict(params)
        search_id = query[PAGING_SEARCH]
        stored = self._searches.get(search_id)
        if stored is None:
            raise FhirError(410, "processing", SEARCH_GONE.format(search_id=search_id))
        self._searches.move_to_end(search_id)
        offset = self._int_param(PAGING_OFFSET, query.get(PAGING_OFFSET, "0"), 0, None)
        count = min(self._int_param("_count", query.get("_count", str(self.page_size)), 0, None), MAX_PAGE_SIZE)
        rtype, matches, options = stored
        return self._bundle(rtype, matches, offset, count, base_url,
                            self._paging_link(base_url, search_id, offset, count), search_id, None, options)

    def _bundle(self, rtype: str, matches: list[int], offset: int, count: int, base_url: str, self_url: str,
                search_id: str | None, key: tuple[Any, ...] | None, options: _Options) -> dict[str, Any]:
        links = [{"relation": "self", "url": self_url}]
        more, earlier = count > 0 and offset + count < len(matches), count > 0 and offset > 0
        if more or earlier:
            if search_id is None or search_id not in self._searches:
                search_id = self._remember(key, rtype, matches, options)
            if more:
                links.append({"relation": "next", "url": self._paging_link(base_url, search_id, offset + count, count)})
            if earlier:
                links.append({"relation": "previous",
                              "url": self._paging_link(base_url, search_id, max(0, offset - count), count)})
        items = self._by_type.get(rtype, [])
        page = [items[i] for i in (matches[offset: offset + count] if count else [])]
        entries = [self._entry(base_url, r, "match", options) for r in page]
        entries += [self._entry(base_url, r, "include", options) for r in self._included(page, options)]
        bundle: dict[str, Any] = {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "searchset"}
        if options.total:
            bundle["total"] = len(matches)
        bundle.update(link=links, entry=entries)
        return bundle

    def _entry(self, base_url: str, resource: dict[str, Any], mode: str, options: _Options) -> dict[str, Any]:
        if options.elements:
            kept = {k: v for k, v in resource.items() if k in options.elements or k in ("resourceType", "id")}
            meta = dict(resource.get("meta") or {})
            kept["meta"] = {**meta, "tag": [*meta.get("tag", []), _SUBSETTED]}
            resource = kept
        return {"fullUrl": f"{base_url}/{resource['resourceType']}/{resource['id']}", "resource": resource,
                "search": {"mode": mode}}

    def _included(self, page: list[dict[str, Any]], options: _Options) -> list[dict[str, Any]]:
        """The resources a page's matches point at (_include) or that point at them (_revinclude), once each."""
        seen = {(r["resourceType"], str(r["id"])) for r in page}
        found: list[dict[str, Any]] = []

        def add(resource: dict[str, Any] | None) -> None:
            if resource is not None and (key := (resource["resourceType"], str(resource["id"]))) not in seen:
                seen.add(key)
                found.append(resource)

        for resource in page:
            for _, param in options.include:
                for target in references(resource, param):
                    add(self._by_id.get(target))
            for source, name, param in options.revinclude:
                for pointing in self._pointing_at(source, name, param).get(
                        (resource["resourceType"], str(resource["id"])), []):
                    add(pointing)
        return found

    def _pointing_at(self, source: str, name: str, param: Param) -> dict[tuple[str, str], list[dict[str, Any]]]:
        index = self._pointing.get((source, name))
        if index is None:
            index = {}
            for resource in self._by_type.get(source, []):
                for target in references(resource, param):
                    index.setdefault(target, []).append(resource)
            self._pointing[(source, name)] = index
        return index

    @staticmethod
    def _reference_params(rtype: str, value: str, name: str, must_be: str | None) -> list[tuple[str, str, Param]]:
        """``Type:param[:target]`` or ``*`` of an _include / _revinclude as (type, param name, param)."""
        if value == "*" and must_be:
            return [(rtype, n, p) for n, p in parameters(rtype).items() if p.type == "reference"]
        source, _, rest = value.partition(":")
        param_name, _, target = rest.partition(":")
        param = parameters(source).get(param_name)
        if param is None or param.type != "reference" or (must_be and source != must_be):
            expected = f"{must_be}:<reference parameter>[:<target type>] or *" if must_be else \
                "<Type>:<reference parameter>[:<target type>]"
            raise FhirError(400, "processing", f"{name}={value!r} is not an include this server can follow: use "
                                              f"{expected}")
        if target:
            param = Param(param.type, param.paths, target)
        return [(source, param_name, param)]

    @staticmethod
    def _sort_params(rtype: str, sort: str) -> list[tuple[Param, bool]]:
        out = []
        for part in (p.strip() for p in sort.split(",") if p.strip()):
            name = part.lstrip("-")
            param = parameters(rtype).get(name)
            if param is None:
                raise FhirError(400, "processing", f"_sort={part!r}: {rtype} has no search parameter {name!r} "
                                                  f"here; sortable: {', '.join(sorted(parameters(rtype)))}")
            out.append((param, part.startswith("-")))
        return out

    def _remember(self, key: tuple[Any, ...] | None, rtype: str, matches: list[int], options: _Options) -> str:
        """A new search id for ``matches``; the same search asked again reuses it (HAPI reuses cached results)."""
        search_id = str(uuid.uuid4())
        self._searches[search_id] = (rtype, matches, options)
        if key is not None:
            self._search_ids[key] = search_id
        if len(self._searches) > SEARCHES_KEPT:
            dropped, _ = self._searches.popitem(last=False)
            self._search_ids = {k: v for k, v in self._search_ids.items() if v != dropped}
        return search_id

    @staticmethod
    def _paging_link(base_url: str, search_id: str, offset: int, count: int) -> str:
        query = urlencode([(PAGING_SEARCH, search_id), (PAGING_OFFSET, offset), ("_count", count),
                           (PAGING_BUNDLE_TYPE, "searchset")])
        return f"{base_url}?{query}"

    def capability_statement(self) -> dict[str, Any]:
        resources = []
        for rtype in sorted(set(self.resource_types) | set(PARAMETERS)):
            resources.append({"type": rtype, "interaction": [{"code": "read"}, {"code": "search-type"}],
                              "searchParam": [{"name": n, "type": p.type}
                                              for n, p in sorted(parameters(rtype).items())]})
        return {"resourceType": "CapabilityStatement", "status": "active", "kind": "instance", "date": "2024-01-01",
                "fhirVersion": "4.0.1", "format": ["json"],
                "rest": [{"mode": "server", "resource": resources}]}

    # -- helpers ----------------------------------------------------------------------------------------
    @staticmethod
    def _int_param(name: str, value: str, low: int, high: int | None) -> int:
        try:
            number = int(value)
        except ValueError:
            raise FhirError(400, "invalid", f"{name}={value!r} is not an integer") from None
        if number < low or (high is not None and number > high):
            raise FhirError(400, "invalid", f"{name}={number} is outside {low}..{high if high is not None else ''}")
        return number

    def _matches(self, rtype: str, filters: list[tuple[str, str]], sort: str) -> list[int]:
        key = (rtype, tuple(sorted(filters)), sort)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        items = self._by_type.get(rtype, [])
        predicates = []
        for name, value in filters:
            param = param_for(rtype, name.partition(":")[0], bool(items))
            if param is not None:
                predicates.append(predicate(rtype, name, value, param))
        result = [i for i, resource in enumerate(items) if all(p(resource) for p in predicates)]
        for param, descending in reversed(self._sort_params(rtype, sort)):
            result.sort(key=lambda i, p=param: sort_key(items[i], p), reverse=descending)  # type: ignore[misc]
        self._cache[key] = result
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return result
