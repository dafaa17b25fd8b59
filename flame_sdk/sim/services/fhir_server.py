"""An in-memory FHIR R4 REST search endpoint: what a node's FHIR server answers behind its Kong route.

Interactions (``tail`` is the path after ``/fhir/``):

* ``metadata``: a CapabilityStatement listing the resource types and search parameters below;
* ``<Type>/<id>``: read one resource;
* ``<Type>?<params>``: search, answered with a ``searchset`` Bundle with ``total``, ``link`` (``self``,
  ``next``, ``previous``) and ``entry`` (``fullUrl``, ``resource``, ``search.mode``);
* ``?_getpages=<search id>&_getpagesoffset=<n>&_count=<m>``: another page of a search. ``next`` and
  ``previous`` links have this form, as HAPI FHIR writes them (RestfulServerUtils.createPagingLink): the
  server base, no resource type. A search id unknown or expired (the last ``SEARCHES_KEPT`` are kept) is
  answered 410 Gone, as HAPI does.

Search parameters: ``_id``; ``subject`` / ``patient`` (``Patient/<id>`` or ``<id>``); ``code`` (token:
``code`` or ``system|code``, comma = OR); a date parameter per type with the prefixes eq, ne, lt, gt, le, ge
(Observation ``date``, Condition ``onset-date``, Patient ``birthdate``, QuestionnaireResponse ``authored``);
Patient ``gender``. Result parameters: ``_count`` (page size, at most ``MAX_PAGE_SIZE``), ``_summary=count``
(total only), ``_offset`` (start of the first page). ``_format`` and ``_pretty`` are accepted and ignored.
Anything else is answered with HTTP 400 and an OperationOutcome, as HAPI does for unknown parameters.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import OrderedDict
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode

from flame_sdk.protocol.data_api import PAGING_BUNDLE_TYPE, PAGING_OFFSET, PAGING_SEARCH, SEARCH_GONE

MAX_PAGE_SIZE = 1000
SEARCHES_KEPT = 256
_CACHE_SIZE = 32
DATE_PARAMS = {"Observation": ("date", "effectiveDateTime"), "Condition": ("onset-date", "onsetDateTime"),
               "Patient": ("birthdate", "birthDate"), "QuestionnaireResponse": ("authored", "authored")}
_REFERENCE_TYPES = {"Observation", "Condition", "QuestionnaireResponse"}
_CODED_TYPES = {"Observation", "Condition"}
_IGNORED = {"_format", "_pretty"}
_PAGING_PARAMS = {PAGING_SEARCH, PAGING_OFFSET, "_count", PAGING_BUNDLE_TYPE, *_IGNORED}
_PARAM_TYPES = {"_id": "token", "code": "token", "gender": "token", "subject": "reference", "patient": "reference"}
_PREFIX = re.compile(r"^(eq|ne|lt|gt|le|ge)?(\d{4}(-\d{2}(-\d{2})?)?.*)$")


class FhirError(Exception):
    """A FHIR error answer: HTTP status plus an OperationOutcome issue code and diagnostics."""

    def __init__(self, status: int, code: str, diagnostics: str) -> None:
        super().__init__(diagnostics)
        self.status, self.code, self.diagnostics = status, code, diagnostics

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.code, self.diagnostics)


def operation_outcome(code: str, diagnostics: str, severity: str = "error") -> dict[str, Any]:
    return {"resourceType": "OperationOutcome",
            "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}]}


class _Keys(NamedTuple):
    """Search keys of one resource, extracted once (a tuple of plain values: the garbage collector skips it)."""

    id: str
    subject: str | None
    codes: tuple[tuple[str, str], ...]
    date: str | None
    gender: str | None


def _keys(resource: dict[str, Any]) -> _Keys:
    rtype = resource["resourceType"]
    reference = (resource.get("subject") or {}).get("reference") if rtype in _REFERENCE_TYPES else None
    codes = tuple(dict.fromkeys(
        (c.get("system", ""), c.get("code", "")) for c in (resource.get("code") or {}).get("coding", [])
    )) if rtype in _CODED_TYPES else ()
    date_field = DATE_PARAMS.get(rtype, (None, None))[1]
    return _Keys(
        id=str(resource["id"]),
        subject=reference.split("/")[-1] if reference else None,
        codes=codes,
        date=resource.get(date_field) if date_field else None,
        gender=resource.get("gender") if rtype == "Patient" else None,
    )


def _date_matches(value: str | None, expr: str) -> bool:
    match = _PREFIX.match(expr)
    if not match:
        raise FhirError(400, "invalid", f"date parameter value {expr!r} is not [prefix]YYYY[-MM[-DD]]")
    prefix, target = match.group(1) or "eq", match.group(2)
    if value is None:
        return False
    probe = value[: len(target)]
    return {"eq": probe == target, "ne": probe != target, "lt": probe < target, "gt": probe > target,
            "le": probe <= target, "ge": probe >= target}[prefix]


def _code_matches(codes: tuple[tuple[str, str], ...], expr: str) -> bool:
    for token in expr.split(","):
        system, bar, code = token.rpartition("|")
        if any(c == code and (not bar or s == system) for s, c in codes):
            return True
    return False


class FhirStore:
    """Resources of one FHIR server, indexed for search; paging is by ``_offset`` into a cached result.

    Each resource is kept as its JSON text plus its search keys, not as nested dicts: answers are assembled
    from the texts, and the store holds few objects for the garbage collector to walk (a store of 150k
    resources as dicts is millions of them, walked on every full collection of the process).
    """

    def __init__(self, resources: list[dict[str, Any]], page_size: int = 50) -> None:
        self.page_size = page_size
        self._texts: dict[str, list[str]] = {}
        self._keys: dict[str, list[_Keys]] = {}
        self._by_id: dict[tuple[str, str], tuple[str, int]] = {}
        for resource in resources:
            rtype = resource["resourceType"]
            texts = self._texts.setdefault(rtype, [])
            self._by_id[(rtype, str(resource["id"]))] = (rtype, len(texts))
            texts.append(json.dumps(resource))
            self._keys.setdefault(rtype, []).append(_keys(resource))
        self._cache: OrderedDict[tuple[Any, ...], list[int]] = OrderedDict()
        self._searches: OrderedDict[str, tuple[str, list[int]]] = OrderedDict()
        self._search_ids: dict[tuple[Any, ...], str] = {}

    @property
    def resource_types(self) -> list[str]:
        return sorted(self._texts)

    # -- interactions ------------------------------------------------------------------------------
    def handle(self, tail: str, query: str, base_url: str) -> dict[str, Any]:
        """Answer a GET on ``<base_url>/<tail>?<query>``; raise FhirError for error answers."""
        return self._full(*self._answer(tail, query, base_url), base_url)

    def render(self, tail: str, query: str, base_url: str) -> bytes:
        """The answer to a GET on ``<base_url>/<tail>?<query>`` as JSON bytes; raise FhirError for error answers.
        A Bundle is its members, then its entries assembled from the stored resource texts."""
        answer, page = self._answer(tail, query, base_url)
        if page is None:
            return json.dumps(answer).encode()
        rtype, indices = page
        texts = self._texts.get(rtype, [])
        keys = self._keys.get(rtype, [])
        prefix = json.dumps(f"{base_url}/{rtype}/")[:-1]
        body = ",".join(f'{{"fullUrl":{prefix}{_json_tail(keys[i].id)},"resource":{texts[i]},'
                        f'"search":{{"mode":"match"}}}}' for i in indices)
        return f'{json.dumps(answer)[:-1]},"entry":[{body}]}}'.encode()

    def _answer(self, tail: str, query: str, base_url: str) -> tuple[dict[str, Any], tuple[str, list[int]] | None]:
        """The answer without its entries, and (type, indices) of the entries of a search page."""
        parts = [p for p in tail.split("/") if p]
        if not parts and PAGING_SEARCH in {name for name, _ in parse_qsl(query)}:
            return self._page(parse_qsl(query, keep_blank_values=True), base_url)
        if parts == ["metadata"]:
            return self.capability_statement(), None
        if len(parts) == 1:
            return self._search(parts[0], parse_qsl(query, keep_blank_values=True), base_url)
        if len(parts) == 2:
            return self.read(*parts), None
        raise FhirError(400, "not-supported", f"unsupported FHIR interaction {tail!r}; use <Type>, <Type>/<id> "
                                              f"or metadata")

    def read(self, rtype: str, resource_id: str) -> dict[str, Any]:
        self._check_type(rtype)
        found = self._by_id.get((rtype, resource_id))
        if found is None:
            raise FhirError(404, "not-found", f"{rtype}/{resource_id} is not known")
        resource: dict[str, Any] = json.loads(self._texts[found[0]][found[1]])
        return resource

    def search(self, rtype: str, params: list[tuple[str, str]], base_url: str) -> dict[str, Any]:
        """A search answer (Bundle)."""
        return self._full(*self._search(rtype, params, base_url), base_url)

    def page(self, params: list[tuple[str, str]], base_url: str) -> dict[str, Any]:
        """Another page of a stored search (``_getpages``), as HAPI serves its paging links."""
        return self._full(*self._page(params, base_url), base_url)

    def _full(self, answer: dict[str, Any], page: tuple[str, list[int]] | None, base_url: str) -> dict[str, Any]:
        if page is None:
            return answer
        rtype, indices = page
        texts, keys = self._texts.get(rtype, []), self._keys.get(rtype, [])
        return {**answer, "entry": [{"fullUrl": f"{base_url}/{rtype}/{keys[i].id}", "resource": json.loads(texts[i]),
                                     "search": {"mode": "match"}} for i in indices]}

    def _search(self, rtype: str, params: list[tuple[str, str]],
                base_url: str) -> tuple[dict[str, Any], tuple[str, list[int]] | None]:
        """A search answer without its entries, and (type, indices) of its page's entries."""
        self._check_type(rtype)
        filters: list[tuple[str, str]] = []
        count, offset, summary = self.page_size, 0, None
        for name, value in params:
            if name == "_count":
                count = self._int_param(name, value, 0, MAX_PAGE_SIZE)
            elif name == "_offset":
                offset = self._int_param(name, value, 0, None)
            elif name == "_summary":
                if value != "count":
                    raise FhirError(400, "not-supported", f"_summary={value} is not supported; use _summary=count")
                summary = value
            elif name not in _IGNORED:
                filters.append((name, value))
        matches = self._matches(rtype, filters)
        key = (rtype, tuple(sorted(filters)))
        self_query = urlencode(params)
        self_url = f"{base_url}/{rtype}" + (f"?{self_query}" if self_query else "")
        if summary == "count":
            return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "searchset", "total": len(matches),
                    "link": [{"relation": "self", "url": self_url}]}, None
        return self._bundle(rtype, matches, offset, count, base_url, self_url, self._search_ids.get(key), key)

    def _page(self, params: list[tuple[str, str]], base_url: str) -> tuple[dict[str, Any], tuple[str, list[int]]]:
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
        rtype, matches = stored
        return self._bundle(rtype, matches, offset, count, base_url,
                            self._paging_link(base_url, search_id, offset, count), search_id, None)

    def _bundle(self, rtype: str, matches: list[int], offset: int, count: int, base_url: str, self_url: str,
                search_id: str | None, key: tuple[Any, ...] | None) -> tuple[dict[str, Any], tuple[str, list[int]]]:
        links = [{"relation": "self", "url": self_url}]
        more, earlier = count > 0 and offset + count < len(matches), count > 0 and offset > 0
        if more or earlier:
            if search_id is None or search_id not in self._searches:
                search_id = self._remember(key, rtype, matches)
            if more:
                links.append({"relation": "next", "url": self._paging_link(base_url, search_id, offset + count, count)})
            if earlier:
                links.append({"relation": "previous",
                              "url": self._paging_link(base_url, search_id, max(0, offset - count), count)})
        page = matches[offset: offset + count] if count else []
        return ({"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "searchset", "total": len(matches),
                 "link": links}, (rtype, page))

    def _remember(self, key: tuple[Any, ...] | None, rtype: str, matches: list[int]) -> str:
        """A new search id for ``matches``; the same search asked again reuses it (HAPI reuses cached results)."""
        search_id = str(uuid.uuid4())
        self._searches[search_id] = (rtype, matches)
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
        for rtype in self.resource_types:
            names = [n for n in self._supported(rtype) if n not in ("_count", "_summary", "_offset")]
            resources.append({"type": rtype, "interaction": [{"code": "read"}, {"code": "search-type"}],
                              "searchParam": [{"name": n, "type": _PARAM_TYPES.get(n, "date")}
                                              for n in names]})
        return {"resourceType": "CapabilityStatement", "status": "active", "kind": "instance", "date": "2024-01-01",
                "fhirVersion": "4.0.1", "format": ["json"],
                "rest": [{"mode": "server", "resource": resources}]}

    # -- helpers ----------------------------------------------------------------------------------------
    def _check_type(self, rtype: str) -> None:
        if not re.fullmatch(r"[A-Z][A-Za-z]+", rtype):
            raise FhirError(400, "not-supported", f"{rtype!r} is not a FHIR resource type")

    @staticmethod
    def _int_param(name: str, value: str, low: int, high: int | None) -> int:
        try:
            number = int(value)
        except ValueError:
            raise FhirError(400, "invalid", f"{name}={value!r} is not an integer") from None
        if number < low or (high is not None and number > high):
            raise FhirError(400, "invalid", f"{name}={number} is outside {low}..{high if high is not None else ''}")
        return number

    def _matches(self, rtype: str, filters: list[tuple[str, str]]) -> list[int]:
        key = (rtype, tuple(sorted(filters)))
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        predicates = [self._predicate(rtype, name, value) for name, value in filters]
        keys = self._keys.get(rtype, [])
        result = [i for i, k in enumerate(keys) if all(p(k) for p in predicates)]
        self._cache[key] = result
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return result

    def _predicate(self, rtype: str, name: str, value: str) -> Any:
        date_param = DATE_PARAMS.get(rtype, (None,))[0]
        if name == "_id":
            ids = set(value.split(","))
            return lambda k: k.id in ids
        if name in ("subject", "patient") and rtype in _REFERENCE_TYPES:
            target = value.split("/")[-1]
            return lambda k: k.subject == target
        if name == "code" and rtype in _CODED_TYPES:
            return lambda k: _code_matches(k.codes, value)
        if name == date_param:
            _date_matches(None, value)  # validate the expression once
            return lambda k: _date_matches(k.date, value)
        if name == "gender" and rtype == "Patient":
            genders = set(value.split(","))
            return lambda k: k.gender in genders
        raise FhirError(400, "not-supported", f"unknown search parameter {name!r} for {rtype}; supported: "
                                              f"{', '.join(self._supported(rtype))}")

    @staticmethod
    def _supported(rtype: str) -> list[str]:
        names = ["_id", "_count", "_summary", "_offset"]
        names += ["subject", "patient"] if rtype in _REFERENCE_TYPES else []
        names += ["code"] if rtype in _CODED_TYPES else []
        names += [DATE_PARAMS[rtype][0]] if rtype in DATE_PARAMS else []
        names += ["gender"] if rtype == "Patient" else []
        return names


def _json_tail(text: str) -> str:
    """``json.dumps(text)`` without its opening quote (to follow a prefix whose closing quote was cut)."""
    return json.dumps(text)[1:]
