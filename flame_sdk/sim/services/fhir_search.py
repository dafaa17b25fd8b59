"""FHIR R4 search parameters as the simulated FHIR server evaluates them: a table and matchers (pure, no I/O).

``PARAMETERS`` names, per resource type, each supported search parameter, its FHIR type and the element
paths it indexes (R4 SearchParameter definitions, hl7.org/fhir/R4/searchparameter-registry.html, with choice
types spelled out: ``effective`` is ``effectiveDateTime``, ``effectivePeriod`` or ``effectiveInstant``).
Value semantics follow the R4 search page (hl7.org/fhir/R4/search.html):

* token: ``code``, ``system|code``, ``|code`` (no system), ``system|`` (any code of the system); on Coding,
  CodeableConcept, Identifier, code and boolean elements. Modifiers ``:not``, ``:text``.
* reference: ``Type/id``, ``id``, or an absolute URL ending in ``Type/id``; modifier ``:Type``.
* date: prefixes ``eq ne gt lt ge le sa eb`` on the ranges the value and the element cover (a year, a month,
  a day, a second; a Period from start to end), e.g. ``date=ge2022-06`` or ``birthdate=1970``.
* string: case- and accent-insensitive "starts with"; modifiers ``:exact``, ``:contains``; on HumanName
  and Address all their parts.
* quantity: ``[prefix]number[|system|code]``; ``eq`` covers the precision the number was written with.

Every parameter takes ``:missing=true|false``; a comma is OR, a repeated parameter is AND.

Parameters a real HAPI server knows for a type but this table does not (``R4_NAMES``) are refused with a
message naming the simulator; names HAPI does not know are refused with HAPI's own answer (``unknown``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from flame_sdk.protocol.data_api import HAPI_UNKNOWN_PARAMETER, HAPI_UNKNOWN_RESOURCE_TYPE


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


def simulator_limit(what: str) -> FhirError:
    """A search a real HAPI server answers but the simulated one does not implement."""
    return FhirError(400, "not-supported", f"{what} (the simulated FHIR server does not implement this; a real "
                                           f"node's HAPI server does)")


@dataclass(frozen=True)
class Param:
    """One search parameter: FHIR type, element paths (dotted, lists are walked), reference target type."""

    type: str
    paths: tuple[str, ...]
    target: str | None = None  # reference parameters that only point at one type (``patient``)


def _p(kind: str, *paths: str, target: str | None = None) -> Param:
    return Param(kind, paths, target)


_IDENTIFIER = _p("token", "identifier")
#: Parameters every resource type has (``_id`` is matched on the resource id itself).
COMMON: dict[str, Param] = {"_id": _p("token", "id"), "_lastUpdated": _p("date", "meta.lastUpdated")}

PARAMETERS: dict[str, dict[str, Param]] = {
    "Patient": {
        "identifier": _IDENTIFIER, "active": _p("token", "active"), "gender": _p("token", "gender"),
        "birthdate": _p("date", "birthDate"), "death-date": _p("date", "deceasedDateTime"),
        "deceased": _p("token", "deceasedBoolean", "deceasedDateTime"),
        "name": _p("string", "name"), "family": _p("string", "name.family"), "given": _p("string", "name.given"),
        "address": _p("string", "address"), "address-city": _p("string", "address.city"),
        "address-country": _p("string", "address.country"), "address-postalcode": _p("string", "address.postalCode"),
        "address-state": _p("string", "address.state"), "address-use": _p("token", "address.use"),
        "general-practitioner": _p("reference", "generalPractitioner"),
        "organization": _p("reference", "managingOrganization"), "link": _p("reference", "link.other"),
    },
    "Observation": {
        "identifier": _IDENTIFIER, "status": _p("token", "status"), "category": _p("token", "category"),
        "code": _p("token", "code"), "subject": _p("reference", "subject"),
        "patient": _p("reference", "subject", target="Patient"), "encounter": _p("reference", "encounter"),
        "performer": _p("reference", "performer"), "based-on": _p("reference", "basedOn"),
        "part-of": _p("reference", "partOf"), "has-member": _p("reference", "hasMember"),
        "derived-from": _p("reference", "derivedFrom"), "specimen": _p("reference", "specimen"),
        "device": _p("reference", "device"), "focus": _p("reference", "focus"),
        "date": _p("date", "effectiveDateTime", "effectivePeriod", "effectiveInstant"),
        "value-quantity": _p("quantity", "valueQuantity"), "value-concept": _p("token", "valueCodeableConcept"),
        "value-date": _p("date", "valueDateTime", "valuePeriod"), "value-string": _p("string", "valueString"),
        "component-code": _p("token", "component.code"),
        "component-value-quantity": _p("quantity", "component.valueQuantity"),
        "component-value-concept": _p("token", "component.valueCodeableConcept"),
        "combo-code": _p("token", "code", "component.code"),
        "data-absent-reason": _p("token", "dataAbsentReason"), "method": _p("token", "method"),
    },
    "Condition": {
        "identifier": _IDENTIFIER, "clinical-status": _p("token", "clinicalStatus"),
        "verification-status": _p("token", "verificationStatus"), "category": _p("token", "category"),
        "severity": _p("token", "severity"), "code": _p("token", "code"), "body-site": _p("token", "bodySite"),
        "subject": _p("reference", "subject"), "patient": _p("reference", "subject", target="Patient"),
        "encounter": _p("reference", "encounter"), "asserter": _p("reference", "asserter"),
        "onset-date": _p("date", "onsetDateTime", "onsetPeriod"),
        "abatement-date": _p("date", "abatementDateTime", "abatementPeriod"),
        "recorded-date": _p("date", "recordedDate"), "onset-age": _p("quantity", "onsetAge"),
        "abatement-age": _p("quantity", "abatementAge"), "onset-info": _p("string", "onsetString"),
        "abatement-string": _p("string", "abatementString"), "stage": _p("token", "stage.summary"),
        "evidence": _p("token", "evidence.code"), "evidence-detail": _p("reference", "evidence.detail"),
    },
    "Encounter": {
        "identifier": _IDENTIFIER, "status": _p("token", "status"), "class": _p("token", "class"),
        "type": _p("token", "type"),
        "subject": _p("reference", "subject"), "patient": _p("reference", "subject", target="Patient"),
        "participant": _p("reference", "participant.individual"),
        "practitioner": _p("reference", "participant.individual", target="Practitioner"),
        "participant-type": _p("token", "participant.type"), "date": _p("date", "period"),
        "length": _p("quantity", "length"), "reason-code": _p("token", "reasonCode"),
        "reason-reference": _p("reference", "reasonReference"), "diagnosis": _p("reference", "diagnosis.condition"),
        "location": _p("reference", "location.location"), "location-period": _p("date", "location.period"),
        "service-provider": _p("reference", "serviceProvider"), "episode-of-care": _p("reference", "episodeOfCare"),
        "based-on": _p("reference", "basedOn"), "part-of": _p("reference", "partOf"),
        "account": _p("reference", "account"), "appointment": _p("reference", "appointment"),
        "special-arrangement": _p("token", "hospitalization.specialArrangement"),
    },
    "MedicationStatement": {
        "identifier": _IDENTIFIER, "status": _p("token", "status"), "category": _p("token", "category"),
        "code": _p("token", "medicationCodeableConcept"), "medication": _p("reference", "medicationReference"),
        "subject": _p("reference", "subject"), "patient": _p("reference", "subject", target="Patient"),
        "context": _p("reference", "context"), "effective": _p("date", "effectiveDateTime", "effectivePeriod"),
        "part-of": _p("reference", "partOf"), "source": _p("reference", "informationSource"),
    },
    "QuestionnaireResponse": {
        "identifier": _IDENTIFIER, "status": _p("token", "status"), "authored": _p("date", "authored"),
        "subject": _p("reference", "subject"), "patient": _p("reference", "subject", target="Patient"),
        "questionnaire": _p("reference", "questionnaire"), "author": _p("reference", "author"),
        "encounter": _p("reference", "encounter"), "based-on": _p("reference", "basedOn"),
        "part-of": _p("reference", "partOf"), "source": _p("reference", "source"),
    },
}

#: Search parameter names a HAPI R4 server knows beyond ``PARAMETERS`` (R4 registry plus HAPI's meta ones).
META_NAMES = frozenset({"_content", "_id", "_lastUpdated", "_profile", "_security", "_source", "_tag", "_text"})
R4_NAMES: dict[str, frozenset[str]] = {
    "Patient": frozenset({"email", "language", "phone", "phonetic", "telecom"}),
    "Observation": frozenset({"code-value-concept", "code-value-date", "code-value-quantity", "code-value-string",
                              "combo-code-value-concept", "combo-code-value-quantity", "combo-data-absent-reason",
                              "combo-value-concept", "combo-value-quantity", "component-code-value-concept",
                              "component-code-value-quantity", "component-data-absent-reason"}),
}
#: Result parameters this server implements (see FhirStore.search).
RESULT_PARAMETERS = frozenset({"_count", "_offset", "_summary", "_include", "_revinclude", "_sort", "_elements",
                               "_total", "_format", "_pretty"})
#: Parameters HAPI implements and the simulator does not.
UNIMPLEMENTED = frozenset({"_has", "_list", "_type", "_query", "_filter", "_contained", "_containedType",
                           "_language"})
DATE_PREFIXES = NUMBER_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb")
_UNIMPLEMENTED_PREFIXES = ("ap",)

#: Every R4 resource type (hl7.org/fhir/R4/resourcelist.html); HAPI's JPA server has a provider for each.
RESOURCE_TYPES = frozenset("""
Account ActivityDefinition AdverseEvent AllergyIntolerance Appointment AppointmentResponse AuditEvent Basic Binary
BiologicallyDerivedProduct BodyStructure Bundle CapabilityStatement CarePlan CareTeam CatalogEntry ChargeItem
ChargeItemDefinition Claim ClaimResponse ClinicalImpression CodeSystem Communication CommunicationRequest
CompartmentDefinition Composition ConceptMap Condition Consent Contract Coverage CoverageEligibilityRequest
CoverageEligibilityResponse DetectedIssue Device DeviceDefinition DeviceMetric DeviceRequest DeviceUseStatement
DiagnosticReport DocumentManifest DocumentReference EffectEvidenceSynthesis Encounter Endpoint EnrollmentRequest
EnrollmentResponse EpisodeOfCare EventDefinition Evidence EvidenceVariable ExampleScenario ExplanationOfBenefit
FamilyMemberHistory Flag Goal GraphDefinition Group GuidanceResponse HealthcareService ImagingStudy Immunization
ImmunizationEvaluation ImmunizationRecommendation ImplementationGuide InsurancePlan Invoice Library Linkage List
Location Measure MeasureReport Media Medication MedicationAdministration MedicationDispense MedicationKnowledge
MedicationRequest MedicationStatement MedicinalProduct MedicinalProductAuthorization MedicinalProductContraindication
MedicinalProductIndication MedicinalProductIngredient MedicinalProductInteraction MedicinalProductManufactured
MedicinalProductPackaged MedicinalProductPharmaceutical MedicinalProductUndesirableEffect MessageDefinition
MessageHeader MolecularSequence NamingSystem NutritionOrder Observation ObservationDefinition OperationDefinition
OperationOutcome Organization OrganizationAffiliation Parameters Patient PaymentNotice PaymentReconciliation Person
PlanDefinition Practitioner PractitionerRole Procedure Provenance Questionnaire QuestionnaireResponse RelatedPerson
RequestGroup ResearchDefinition ResearchElementDefinition ResearchStudy ResearchSubject RiskAssessment
RiskEvidenceSynthesis Schedule SearchParameter ServiceRequest Slot Specimen SpecimenDefinition StructureDefinition
StructureMap Subscription Substance SubstanceNucleicAcid SubstancePolymer SubstanceProtein
SubstanceReferenceInformation SubstanceSourceMaterial SubstanceSpecification SupplyDelivery SupplyRequest Task
TerminologyCapabilities TestReport TestScript ValueSet VerificationResult VisionPrescription
""".split())


def check_resource_type(rtype: str) -> None:
    """HAPI's 404 for a type it has no provider for."""
    if rtype not in RESOURCE_TYPES:
        raise FhirError(404, "processing", HAPI_UNKNOWN_RESOURCE_TYPE.format(
            rtype=rtype, known="[" + ", ".join(sorted(RESOURCE_TYPES)) + "]"))


def parameters(rtype: str) -> dict[str, Param]:
    """The parameters this server searches ``rtype`` by."""
    return {**COMMON, **PARAMETERS.get(rtype, {})}


def param_for(rtype: str, name: str, has_data: bool) -> Param | None:
    """The parameter ``name`` of ``rtype``; None when the store holds no resource of a type without a table
    (nothing can match there, as on HAPI). Raises HAPI's answer for a name it does not know, and a
    simulator-limit error for one it knows that is not implemented here."""
    if "." in name:
        raise simulator_limit(f"chained search parameter {name!r}")
    found = parameters(rtype).get(name)
    if found is not None:
        return found
    if rtype not in PARAMETERS and not has_data:
        return None
    known = PARAMETERS.get(rtype, {}).keys() | R4_NAMES.get(rtype, frozenset()) | META_NAMES
    if name in known or name in UNIMPLEMENTED or rtype not in PARAMETERS:
        supported = ", ".join(sorted(parameters(rtype)))
        raise simulator_limit(f"search parameter {name!r} of {rtype}; it searches {rtype} by {supported}")
    raise FhirError(400, "processing", HAPI_UNKNOWN_PARAMETER.format(
        name=name, rtype=rtype, valid="[" + ", ".join(sorted(known)) + "]"))


# ------------------------------------------------------------------ extracting element values
def elements(resource: Any, path: str) -> Iterator[Any]:
    """Every value at a dotted path; lists are walked at each step."""
    items = [resource]
    for step in path.split("."):
        found = []
        for item in items:
            value = item.get(step) if isinstance(item, dict) else None
            if isinstance(value, list):
                found.extend(value)
            elif value is not None:
                found.append(value)
        items = found
    yield from items


def values(resource: dict[str, Any], param: Param) -> list[Any]:
    return [value for path in param.paths for value in elements(resource, path)]


def _tokens(value: Any) -> Iterator[tuple[str | None, str, str]]:
    """(system, code, text) of a token element."""
    if isinstance(value, bool):
        yield None, "true" if value else "false", ""
    elif isinstance(value, str):
        yield None, value, ""
    elif isinstance(value, dict):
        if "coding" in value or "text" in value:
            for coding in value.get("coding") or []:
                yield from _tokens(coding)
            if value.get("text"):
                yield None, "", str(value["text"])
        elif "code" in value:
            yield value.get("system"), str(value["code"]), str(value.get("display", ""))
        elif "value" in value:  # Identifier
            yield value.get("system"), str(value["value"]), ""


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):  # HumanName, Address: every part
        for key in ("text", "family", "given", "prefix", "suffix", "line", "city", "district", "state",
                    "postalCode", "country"):
            part = value.get(key)
            for item in part if isinstance(part, list) else [part] if part else []:
                yield str(item)


def _normal(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _reference(value: Any) -> tuple[str | None, str] | None:
    text = value.get("reference") if isinstance(value, dict) else value if isinstance(value, str) else None
    if not text:
        return None
    parts = [p for p in text.split("?")[0].split("/") if p]
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    return (parts[-2], parts[-1]) if len(parts) >= 2 else (None, parts[-1])


# ------------------------------------------------------------------ dates
_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$")
_LOW = datetime.min.replace(tzinfo=timezone.utc)
_HIGH = datetime.max.replace(tzinfo=timezone.utc)


def date_range(text: str) -> tuple[datetime, datetime] | None:
    """[start, end) covered by a FHIR date, dateTime or instant at its precision; None if it is not one."""
    match = _DATE.match(text.strip())
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    tz = timezone.utc
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    start = datetime(int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0),
                     int(second or 0), int(float(fraction or 0) * 1_000_000), tzinfo=tz).astimezone(timezone.utc)
    if month is None:
        end = start.replace(year=start.year + 1)
    elif day is None:
        end = (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    elif hour is None:
        end = start + timedelta(days=1)
    elif second is None:
        end = start + timedelta(minutes=1)
    else:
        end = start + (timedelta(milliseconds=1) if fraction else timedelta(seconds=1))
    return start, end


def _element_range(value: Any) -> tuple[datetime, datetime] | None:
    if isinstance(value, str):
        return date_range(value)
    if isinstance(value, dict) and ("start" in value or "end" in value):  # Period: open ends are unbounded
        start = date_range(value["start"]) if value.get("start") else None
        end = date_range(value["end"]) if value.get("end") else None
        return (start[0] if start else _LOW), (end[1] if end else _HIGH)
    return None


def _compare(prefix: str, target: tuple[datetime, datetime], search: tuple[datetime, datetime]) -> bool:
    (low, high), (s_low, s_high) = target, search
    inside = s_low <= low and high <= s_high
    return {"eq": inside, "ne": not inside, "gt": high > s_high, "lt": low < s_low, "ge": high > s_high or inside,
            "le": low < s_low or inside, "sa": low >= s_high, "eb": high <= s_low}[prefix]


def _prefixed(text: str, prefixes: tuple[str, ...]) -> tuple[str, str]:
    for prefix in _UNIMPLEMENTED_PREFIXES:
        if text.startswith(prefix) and text[2:3].isdigit():
            raise simulator_limit(f"the {prefix!r} prefix")
    if text[:2] in prefixes and not text[:2].isdigit():
        return text[:2], text[2:]
    return "eq", text


# ------------------------------------------------------------------ quantities
def _number_range(text: str) -> tuple[Decimal, Decimal]:
    number = Decimal(text)
    exponent = number.as_tuple().exponent
    half = Decimal(5).scaleb((exponent if isinstance(exponent, int) else 0) - 1)
    return number - half, number + half


def _quantity_matches(expr: str, element: Any) -> bool:
    if not isinstance(element, dict) or not isinstance(element.get("value"), (int, float)):
        return False
    number_text, _, unit = expr.partition("|")
    prefix, number_text = _prefixed(number_text, NUMBER_PREFIXES)
    system, _, code = unit.partition("|") if "|" in unit else ("", "", unit)
    if code and code not in (element.get("code"), element.get("unit")):
        return False
    if system and system != element.get("system"):
        return False
    value, number = Decimal(str(element["value"])), Decimal(number_text)
    low, high = _number_range(number_text)
    return {"eq": low <= value < high, "ne": not low <= value < high, "gt": value > number, "lt": value < number,
            "ge": value >= number, "le": value <= number, "sa": value > number, "eb": value < number}[prefix]


# ------------------------------------------------------------------ one filter
Predicate = Callable[[dict[str, Any]], bool]


def predicate(rtype: str, name: str, value: str, param: Param) -> Predicate:
    """A matcher for one ``name[:modifier]=value`` (comma = OR); raises FhirError for bad values."""
    modifier = name.partition(":")[2]
    if modifier == "missing":
        if value not in ("true", "false"):
            raise FhirError(400, "invalid", f"{name}={value!r}: :missing takes true or false")
        want_missing = value == "true"
        return lambda r: (not values(r, param)) == want_missing
    alternatives = [_one(rtype, name, modifier, part, param) for part in _split(value)]
    if modifier == "not":  # none of the values matches (resources without the element included)
        return lambda r: not any(match(r) for match in alternatives)
    return lambda r: any(match(r) for match in alternatives)


def _split(value: str) -> list[str]:
    """Values separated by unescaped commas (``\\,`` is a literal comma)."""
    return [part.replace("\\,", ",") for part in re.split(r"(?<!\\),", value)]


def _one(rtype: str, name: str, modifier: str, value: str, param: Param) -> Predicate:
    kind = param.type
    if name.partition(":")[0] == "_id":
        return lambda r: str(r.get("id")) == value
    allowed = {"token": {"", "not", "text"}, "string": {"", "exact", "contains"}, "date": {""},
               "quantity": {""}, "reference": {""}}[kind]
    if modifier not in allowed and not (kind == "reference" and modifier in RESOURCE_TYPES):
        raise simulator_limit(f"the modifier :{modifier} on {kind} parameter {name.partition(':')[0]!r}")
    if kind == "token":
        return _token_predicate(value, modifier, param)
    if kind == "string":
        wanted = value if modifier == "exact" else _normal(value)
        test: Callable[[str], bool] = {"exact": lambda s: s == wanted, "contains": lambda s: wanted in _normal(s)}.get(
            modifier, lambda s: _normal(s).startswith(wanted))
        return lambda r: any(test(s) for v in values(r, param) for s in _strings(v))
    if kind == "date":
        prefix, text = _prefixed(value, DATE_PREFIXES)
        search = date_range(text)
        if search is None:
            raise FhirError(400, "invalid", f"{name}: date parameter value {value!r} is not "
                                            f"[prefix]YYYY[-MM[-DD[Thh:mm[:ss][zone]]]]")
        return lambda r: any(t is not None and _compare(prefix, t, search)
                             for t in (_element_range(v) for v in values(r, param)))
    if kind == "quantity":
        try:
            _number_range(_prefixed(value.partition("|")[0], NUMBER_PREFIXES)[1])
        except InvalidOperation:
            raise FhirError(400, "invalid", f"{name}: quantity value {value!r} is not "
                                            f"[prefix]number[|system|code]") from None
        return lambda r: any(_quantity_matches(value, v) for v in values(r, param))
    return _reference_predicate(value, modifier or param.target, param)


def _token_predicate(value: str, modifier: str, param: Param) -> Predicate:
    if modifier == "text":
        wanted = _normal(value)
        return lambda r: any(_normal(text).startswith(wanted) for v in values(r, param) for _, _, text in _tokens(v))
    system, bar, code = value.rpartition("|") if "|" in value else (None, "", value)

    def matches(token: tuple[str | None, str, str]) -> bool:
        t_system, t_code, _ = token
        if not bar:
            return t_code == code
        if system == "":
            return not t_system and t_code == code
        return t_system == system and (code == "" or t_code == code)

    return lambda r: any(matches(t) for v in values(r, param) for t in _tokens(v) if t[1])


def _reference_predicate(value: str, target: str | None, param: Param) -> Predicate:
    wanted = _reference(value)
    if wanted is None:
        raise FhirError(400, "invalid", f"reference value {value!r} is empty")
    w_type, w_id = wanted
    if target and w_type and w_type != target:
        return lambda r: False

    def matches(element: Any) -> bool:
        found = _reference(element)
        if found is None:
            return False
        f_type, f_id = found
        return f_id == w_id and (w_type or target) in (None, f_type)

    return lambda r: any(matches(v) for v in values(r, param))


def references(resource: dict[str, Any], param: Param) -> list[tuple[str, str]]:
    """The (type, id) pairs a reference parameter points at in ``resource`` (for _include)."""
    found = [_reference(v) for v in values(resource, param)]
    return [(t, i) for t, i in (f for f in found if f) if t and (param.target in (None, t))]


def sort_key(resource: dict[str, Any], param: Param) -> Any:
    """What ``_sort`` orders by: a date's start, a string or code; resources without it come last."""
    for value in values(resource, param):
        if param.type == "date":
            found = _element_range(value)
            if found:
                return (0, found[0].isoformat())
        elif param.type == "string":
            return (0, next((_normal(s) for s in _strings(value)), ""))
        elif param.type == "token":
            token = next(_tokens(value), None)
            if token:
                return (0, token[1])
        elif param.type == "quantity" and isinstance(value, dict):
            return (0, float(value.get("value", 0)))
        elif param.type == "reference":
            return (0, str(_reference(value)))
    return (1, "")


def describe_markdown() -> str:
    """The search parameters of the table as Markdown (README.md's FHIR section is checked against it)."""
    lines = ["| resource type | search parameters |", "| --- | --- |",
             "| every type | " + ", ".join(f"`{n}` ({p.type})" for n, p in COMMON.items()) + " |"]
    for rtype, table in PARAMETERS.items():
        by_type: dict[str, list[str]] = {}
        for name, param in table.items():
            by_type.setdefault(param.type, []).append(f"`{name}`")
        lines.append(f"| {rtype} | " + "; ".join(f"{kind}: {', '.join(names)}" for kind, names in by_type.items())
                     + " |")
    return "\n".join(lines) + "\n"
