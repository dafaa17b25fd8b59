"""Typed access to FHIR data: fhir.resources (R4B) models and pandas DataFrames of common resources.

``resources_frame(data)`` takes Bundles, resources or a ``get_fhir_data`` item and gives one row per resource:

* Patient: ``id, gender, birth_date, deceased_date``
* Observation: ``id, patient_id, code, system, display, value, unit, effective``
  (``value`` is the quantity value, or the first coding's code of a valueCodeableConcept)
* Condition: ``id, patient_id, code, system, display, clinical_status, onset, abatement``

Dates stay ISO strings; use ``pd.to_datetime`` on them as needed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from flame_sdk.data.bundles import bundle_resources


def to_models(data: Any) -> list[Any]:
    """Parse resources into fhir.resources R4B models (raises pydantic's ValidationError on invalid data)."""
    from fhir.resources.R4B import get_fhir_model_class

    return [get_fhir_model_class(r["resourceType"]).model_validate(r) for r in bundle_resources(data)]


def _patient_id(resource: dict[str, Any]) -> str | None:
    reference = (resource.get("subject") or {}).get("reference")
    return reference.split("/")[-1] if reference else None


def _first_coding(concept: dict[str, Any] | None) -> dict[str, Any]:
    codings = (concept or {}).get("coding") or [{}]
    first: dict[str, Any] = codings[0]
    return first


def _patient_row(r: dict[str, Any]) -> dict[str, Any]:
    return {"id": r.get("id"), "gender": r.get("gender"), "birth_date": r.get("birthDate"),
            "deceased_date": r.get("deceasedDateTime")}


def _observation_row(r: dict[str, Any]) -> dict[str, Any]:
    coding = _first_coding(r.get("code"))
    quantity = r.get("valueQuantity")
    if quantity is not None:
        value, unit = quantity.get("value"), quantity.get("unit") or quantity.get("code")
    elif "valueCodeableConcept" in r:
        value, unit = _first_coding(r["valueCodeableConcept"]).get("code"), None
    else:
        value = next((v for k, v in r.items() if k.startswith("value")), None)
        unit = None
    return {"id": r.get("id"), "patient_id": _patient_id(r), "code": coding.get("code"),
            "system": coding.get("system"), "display": coding.get("display"), "value": value, "unit": unit,
            "effective": r.get("effectiveDateTime") or (r.get("effectivePeriod") or {}).get("start")}


def _condition_row(r: dict[str, Any]) -> dict[str, Any]:
    coding = _first_coding(r.get("code"))
    return {"id": r.get("id"), "patient_id": _patient_id(r), "code": coding.get("code"),
            "system": coding.get("system"), "display": coding.get("display"),
            "clinical_status": _first_coding(r.get("clinicalStatus")).get("code"),
            "onset": r.get("onsetDateTime"), "abatement": r.get("abatementDateTime")}


ROW_BUILDERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "Patient": _patient_row, "Observation": _observation_row, "Condition": _condition_row,
}
COLUMNS = {name: list(builder({}).keys()) for name, builder in ROW_BUILDERS.items()}


def resources_frame(data: Any, resource_type: str | None = None) -> pd.DataFrame:
    """One row per resource of ``resource_type`` (default: the type of the first resource in ``data``)."""
    resources = bundle_resources(data)
    rtype = resource_type or (resources[0]["resourceType"] if resources else None)
    if rtype is None:
        raise ValueError("no resources in the data and no resource_type given; pass resource_type='Patient', "
                         "'Observation' or 'Condition'")
    if rtype not in ROW_BUILDERS:
        raise ValueError(f"no frame builder for {rtype!r}; supported: {sorted(ROW_BUILDERS)}")
    build = ROW_BUILDERS[rtype]
    rows = [build(r) for r in resources if r.get("resourceType") == rtype]
    return pd.DataFrame(rows, columns=COLUMNS[rtype])
