"""Deterministic synthetic cohorts: FHIR R4 resources and tabular datasets for simulated nodes.

A cohort is drawn from ``CohortParams`` with a seeded numpy generator, so the same parameters and seed
always give the same resources, byte for byte. Nodes get different parameters (see
``flame_sdk.sim.data.data_sources.default_data_sources``), so federated results differ per node.

FHIR resources (``cohort_resources``):

* ``Patient``: ``id`` ``<prefix>-p<n>``, ``gender`` (female/male), ``birthDate``, ``deceasedDateTime`` for
  patients who died before the end of follow-up (``FOLLOW_UP_END``).
* ``Encounter``: one per visit (1 to ``max_visits`` per patient between 2021 and 2023), ambulatory check-ups
  (``ENCOUNTER_CLASS``, ``ENCOUNTER_TYPE``), ``status`` finished, ``period`` the visit day.
* ``Observation`` (``status`` final, ``subject`` ``Patient/<id>``, ``encounter`` its visit,
  ``effectiveDateTime``, one per code and visit), LOINC codes (``OBSERVATION_CODES``):

  =========  ==============================  =========  ==================
  LOINC      meaning                         unit       value
  =========  ==============================  =========  ==================
  29463-7    body weight                     kg         valueQuantity
  8302-2     body height                     cm         valueQuantity
  39156-5    body mass index                 kg/m2      valueQuantity
  8480-6     systolic blood pressure         mm[Hg]     valueQuantity
  2093-3     total cholesterol               mg/dL      valueQuantity
  4548-4     hemoglobin A1c                  %          valueQuantity
  72166-2    tobacco smoking status          -          valueCodeableConcept
  =========  ==============================  =========  ==================

  Smoking status uses SNOMED 77176002 (smoker) / 266919005 (never smoked).
* ``Condition`` (SNOMED, ``CONDITION_CODES``): type 2 diabetes 44054006 and hypertension 38341003, with
  ``onsetDateTime``, ``clinicalStatus`` active or resolved, and ``abatementDateTime`` when resolved. For
  survival analysis: time from a condition's onset to ``Patient.deceasedDateTime`` (event) or to
  ``FOLLOW_UP_END`` (censored).
* ``MedicationStatement`` (``MEDICATION_CODES``, RxNorm and ATC codings): metformin for diabetes, lisinopril
  for hypertension, ``effectivePeriod`` from the condition's onset (ended, status completed, when it
  resolved), ``reasonReference`` the condition.
* ``QuestionnaireResponse`` (for a share of patients): questionnaire ``LIFESTYLE_QUESTIONNAIRE`` with items
  ``smoker`` (valueBoolean), ``alcohol-units-week`` (valueInteger), ``activity-minutes-week`` (valueInteger)
  and ``phq2-score`` (valueInteger 0..6).

Tabular dataset (``cohort_csv``), one row per patient, columns ``CSV_COLUMNS``:
``patient_id, age, sex, bmi, systolic_bp, cholesterol, smoker, outcome``. ``sex`` is ``female``/``male``,
``smoker`` and ``outcome`` are 0/1. ``outcome`` is drawn from the logistic model ``OUTCOME_MODEL``:
``logit P(outcome=1) = intercept + sum(coef * standardized feature)`` with the features
``(age-55)/10, (bmi-27)/5, (systolic_bp-130)/15, (cholesterol-200)/40, smoker, male``, so a logistic
regression on the CSV recovers these coefficients (up to sampling noise).

Binary dataset (``cohort_signals``): a ``.npy`` float32 array of shape (patients, ``signal_length``), one
noisy signal per patient, for tests of raw-bytes S3 reads.

``describe_markdown()`` renders this description from the constants (README.md's "The synthetic data"
section is checked against it).
"""

from __future__ import annotations

import io
import math
import zlib
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
LIFESTYLE_QUESTIONNAIRE = "http://flame.example/fhir/Questionnaire/lifestyle"
FOLLOW_UP_END = date(2024, 12, 31)
REFERENCE_DATE = date(2024, 1, 1)  # ages are computed at this date

#: code -> (display, UCUM unit, category)
OBSERVATION_CODES: dict[str, tuple[str, str | None, str]] = {
    "29463-7": ("Body weight", "kg", "vital-signs"),
    "8302-2": ("Body height", "cm", "vital-signs"),
    "39156-5": ("Body mass index (BMI) [Ratio]", "kg/m2", "vital-signs"),
    "8480-6": ("Systolic blood pressure", "mm[Hg]", "vital-signs"),
    "2093-3": ("Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", "laboratory"),
    "4548-4": ("Hemoglobin A1c/Hemoglobin.total in Blood", "%", "laboratory"),
    "72166-2": ("Tobacco smoking status", None, "social-history"),
}
SMOKER_CODES = {True: ("77176002", "Smoker"), False: ("266919005", "Never smoked tobacco")}
CONDITION_CODES = {"44054006": "Diabetes mellitus type 2", "38341003": "Hypertensive disorder"}
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"
#: condition code -> (RxNorm code, ATC code, display): the medication statement a patient with it gets
MEDICATION_CODES = {"44054006": ("6809", "A10BA02", "metformin"), "38341003": ("29046", "C09AA03", "lisinopril")}
ENCOUNTER_CLASS = ("http://terminology.hl7.org/CodeSystem/v3-ActCode", "AMB", "ambulatory")
ENCOUNTER_TYPE = ("185349003", "Encounter for check up")
#: Resource types of a cohort, in the order cohort_resources returns them (referenced types first).
RESOURCE_TYPES = ("Patient", "Encounter", "Observation", "Condition", "MedicationStatement", "QuestionnaireResponse")
#: linkId -> (text, answer type) of the lifestyle questionnaire's items
QUESTIONNAIRE_ITEMS = {"smoker": ("Do you smoke?", "valueBoolean"),
                       "alcohol-units-week": ("Alcohol units per week", "valueInteger"),
                       "activity-minutes-week": ("Minutes of activity per week", "valueInteger"),
                       "phq2-score": ("PHQ-2 score", "valueInteger")}
#: column -> meaning of the tabular dataset (cohort.csv)
CSV_MEANINGS = {"patient_id": "the Patient id of the FHIR store", "age": "years at 2024-01-01",
                "sex": "female or male", "bmi": "body mass index, kg/m2", "systolic_bp": "systolic blood pressure, mm[Hg]",
                "cholesterol": "total cholesterol, mg/dL", "smoker": "0 or 1",
                "outcome": "0 or 1, drawn from OUTCOME_MODEL (logistic in the other columns)"}
CSV_COLUMNS = tuple(CSV_MEANINGS)
OUTCOME_MODEL = {"intercept": -1.2, "age": 0.6, "bmi": 0.5, "systolic_bp": 0.4, "cholesterol": 0.3,
                 "smoker": 0.8, "male": 0.3}


@dataclass(frozen=True)
class CohortParams:
    """What to generate. Every field has a default; ``seed`` and ``id_prefix`` make cohorts distinct."""

    patients: int = 100
    seed: int = 0
    id_prefix: str = "c0"
    age_mean: float = 55.0
    age_sd: float = 12.0
    female_share: float = 0.5
    bmi_mean: float = 27.0
    bmi_sd: float = 4.5
    smoker_share: float = 0.25
    max_visits: int = 3
    questionnaire_share: float = 0.5
    signal_length: int = 256

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CohortParams:
        """Build from a config mapping; unknown keys are an error naming the accepted ones."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown generator parameter(s) {unknown}; accepted: {sorted(known)}")
        params = cls(**values)
        if params.patients < 0 or params.max_visits < 1:
            raise ValueError(f"generator needs patients >= 0 and max_visits >= 1, got {params}")
        return params

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PatientRecord:
    """The ground truth of one synthetic patient (what the resources and the CSV are derived from)."""

    id: str
    sex: str
    birth_date: date
    age: int
    smoker: bool
    height_cm: float
    bmi: float
    systolic_bp: float
    cholesterol: float
    hba1c: float
    outcome: int
    visits: list[date] = field(default_factory=list)
    diabetes_onset: date | None = None
    hypertension_onset: date | None = None
    hypertension_resolved: date | None = None
    deceased: date | None = None


def _rng(params: CohortParams) -> np.random.Generator:
    return np.random.default_rng([params.seed, zlib.crc32(params.id_prefix.encode())])


def _day(start: date, span_days: int, u: float) -> date:
    return start + timedelta(days=int(u * span_days))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def generate_patients(params: CohortParams) -> list[PatientRecord]:
    """Draw the cohort's ground truth (deterministic in ``params``)."""
    rng = _rng(params)
    records = []
    for n in range(params.patients):
        female = bool(rng.random() < params.female_share)
        age = int(np.clip(round(rng.normal(params.age_mean, params.age_sd)), 18, 95))
        birth = REFERENCE_DATE - timedelta(days=age * 365 + int(rng.integers(0, 365)))
        smoker = bool(rng.random() < params.smoker_share)
        height = float(rng.normal(165.0 if female else 178.0, 7.0))
        bmi = float(np.clip(rng.normal(params.bmi_mean, params.bmi_sd), 16.0, 50.0))
        sbp = 118 + 0.5 * (age - 50) + 1.1 * (bmi - 25) + 6 * smoker + rng.normal(0, 10)
        chol = 185 + 0.7 * (age - 50) + 1.5 * (bmi - 25) + rng.normal(0, 30)
        diabetes = rng.random() < _sigmoid(-2.0 + 0.04 * (age - 50) + 0.18 * (bmi - 27))
        hba1c = 5.3 + 0.03 * (bmi - 25) + (1.6 if diabetes else 0.0) + rng.normal(0, 0.35)
        m = OUTCOME_MODEL
        logit = (m["intercept"] + m["age"] * (age - 55) / 10 + m["bmi"] * (bmi - 27) / 5
                 + m["systolic_bp"] * (sbp - 130) / 15 + m["cholesterol"] * (chol - 200) / 40
                 + m["smoker"] * smoker + m["male"] * (not female))
        outcome = int(rng.random() < _sigmoid(logit))
        record = PatientRecord(
            id=f"{params.id_prefix}-p{n:05d}", sex="female" if female else "male", birth_date=birth, age=age,
            smoker=smoker, height_cm=round(height, 1), bmi=round(bmi, 1), systolic_bp=round(float(sbp)),
            cholesterol=round(float(chol)), hba1c=round(float(hba1c), 1), outcome=outcome,
        )
        visits = int(rng.integers(1, params.max_visits + 1))
        record.visits = sorted(_day(date(2021, 1, 1), 1094, float(u)) for u in rng.random(visits))
        if diabetes:
            record.diabetes_onset = _day(date(2010, 1, 1), 4700, float(rng.random()))
        if sbp > 135 or rng.random() < 0.1:
            record.hypertension_onset = _day(date(2012, 1, 1), 3600, float(rng.random()))
            if rng.random() < 0.2:
                record.hypertension_resolved = record.hypertension_onset + timedelta(days=int(rng.integers(90, 900)))
        # death hazard per year grows with age and the outcome risk; censored at FOLLOW_UP_END
        start = min(d for d in (record.diabetes_onset, record.hypertension_onset, record.visits[0]) if d)
        hazard = 0.012 * math.exp(0.06 * (age - 55) + 0.9 * outcome + 0.4 * diabetes)
        death = start + timedelta(days=int(rng.exponential(365.0 / hazard)))
        if death <= FOLLOW_UP_END:
            record.deceased = death
            record.visits = [v for v in record.visits if v <= death] or [start]
        records.append(record)
    return records


# ------------------------------------------------------------------ FHIR resources
def _coding(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def _category(code: str) -> list[dict[str, Any]]:
    system = "http://terminology.hl7.org/CodeSystem/observation-category"
    return [{"coding": [{"system": system, "code": code}]}]


def _patient(record: PatientRecord) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Patient", "id": record.id,
        "identifier": [{"system": "http://flame.example/fhir/patient-id", "value": record.id}],
        "gender": record.sex, "birthDate": record.birth_date.isoformat(),
    }
    if record.deceased:
        resource["deceasedDateTime"] = record.deceased.isoformat()
    return resource


def _visit_values(record: PatientRecord, rng: np.random.Generator) -> dict[str, Any]:
    weight = record.bmi * (record.height_cm / 100) ** 2 + rng.normal(0, 1.0)
    return {
        "29463-7": round(float(weight), 1),
        "8302-2": record.height_cm,
        "39156-5": round(float(weight / (record.height_cm / 100) ** 2), 1),
        "8480-6": round(float(record.systolic_bp + rng.normal(0, 4))),
        "2093-3": round(float(record.cholesterol + rng.normal(0, 6))),
        "4548-4": round(float(record.hba1c + rng.normal(0, 0.1)), 1),
        "72166-2": record.smoker,
    }


def _encounter(enc_id: str, record: PatientRecord, when: date) -> dict[str, Any]:
    system, code, display = ENCOUNTER_CLASS
    return {
        "resourceType": "Encounter", "id": enc_id, "status": "finished",
        "class": {"system": system, "code": code, "display": display},
        "type": [_coding(SNOMED, *ENCOUNTER_TYPE)], "subject": {"reference": f"Patient/{record.id}"},
        "period": {"start": when.isoformat(), "end": when.isoformat()},
    }


def _observation(obs_id: str, record: PatientRecord, code: str, when: date, value: Any,
                 encounter_id: str) -> dict[str, Any]:
    display, unit, category = OBSERVATION_CODES[code]
    resource: dict[str, Any] = {
        "resourceType": "Observation", "id": obs_id, "status": "final", "category": _category(category),
        "code": _coding(LOINC, code, display), "subject": {"reference": f"Patient/{record.id}"},
        "encounter": {"reference": f"Encounter/{encounter_id}"}, "effectiveDateTime": when.isoformat(),
    }
    if unit is None:
        resource["valueCodeableConcept"] = _coding(SNOMED, *SMOKER_CODES[bool(value)])
    else:
        resource["valueQuantity"] = {"value": value, "unit": unit, "system": UCUM, "code": unit}
    return resource


def _condition(cond_id: str, record: PatientRecord, code: str, onset: date, abated: date | None) -> dict[str, Any]:
    status = "resolved" if abated else "active"
    resource: dict[str, Any] = {
        "resourceType": "Condition", "id": cond_id,
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                       "code": status}]},
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                           "code": "confirmed"}]},
        "code": _coding(SNOMED, code, CONDITION_CODES[code]), "subject": {"reference": f"Patient/{record.id}"},
        "onsetDateTime": onset.isoformat(),
    }
    if abated:
        resource["abatementDateTime"] = abated.isoformat()
    return resource


def _medication(med_id: str, record: PatientRecord, condition: str, start: date, end: date | None) -> dict[str, Any]:
    rxnorm, atc, display = MEDICATION_CODES[condition]
    period = {"start": start.isoformat(), **({"end": end.isoformat()} if end else {})}
    return {
        "resourceType": "MedicationStatement", "id": med_id, "status": "completed" if end else "active",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": rxnorm, "display": display},
                                                 {"system": ATC, "code": atc, "display": display}],
                                      "text": display},
        "subject": {"reference": f"Patient/{record.id}"}, "effectivePeriod": period,
        "reasonReference": [{"reference": f"Condition/{record.id}-c{condition}"}],
    }


def _questionnaire(qr_id: str, record: PatientRecord, rng: np.random.Generator) -> dict[str, Any]:
    answers = {
        "smoker": record.smoker,
        "alcohol-units-week": int(rng.poisson(4 + 4 * record.smoker)),
        "activity-minutes-week": int(max(0, rng.normal(220 - 3 * (record.bmi - 25), 60))),
        "phq2-score": int(rng.integers(0, 7)),
    }
    return {
        "resourceType": "QuestionnaireResponse", "id": qr_id, "questionnaire": LIFESTYLE_QUESTIONNAIRE,
        "status": "completed", "subject": {"reference": f"Patient/{record.id}"},
        "authored": record.visits[0].isoformat(),
        "item": [{"linkId": link, "text": QUESTIONNAIRE_ITEMS[link][0],
                  "answer": [{QUESTIONNAIRE_ITEMS[link][1]: value}]} for link, value in answers.items()],
    }


def cohort_resources(params: CohortParams, records: list[PatientRecord] | None = None) -> list[dict[str, Any]]:
    """All FHIR resources of a cohort, by type in ``RESOURCE_TYPES`` order (referenced types first): Patients,
    Encounters (one per visit), Observations, Conditions, MedicationStatements (one per condition, from its
    onset; ended when it resolved), QuestionnaireResponses."""
    records = generate_patients(params) if records is None else records
    rng = np.random.default_rng([params.seed, zlib.crc32(params.id_prefix.encode()), 1])
    by_type: dict[str, list[dict[str, Any]]] = {rtype: [] for rtype in RESOURCE_TYPES}
    for record in records:
        by_type["Patient"].append(_patient(record))
        for v, when in enumerate(record.visits):
            encounter_id = f"{record.id}-e{v}"
            by_type["Encounter"].append(_encounter(encounter_id, record, when))
            values = _visit_values(record, rng)
            for code, value in values.items():
                by_type["Observation"].append(
                    _observation(f"{record.id}-o{v}-{code}", record, code, when, value, encounter_id))
        onsets = [("44054006", record.diabetes_onset, None),
                  ("38341003", record.hypertension_onset, record.hypertension_resolved)]
        for code, onset, resolved in onsets:
            if onset:
                by_type["Condition"].append(_condition(f"{record.id}-c{code}", record, code, onset, resolved))
                by_type["MedicationStatement"].append(_medication(f"{record.id}-m{code}", record, code, onset,
                                                                  resolved))
        if rng.random() < params.questionnaire_share:
            by_type["QuestionnaireResponse"].append(_questionnaire(f"{record.id}-q", record, rng))
    return [resource for rtype in RESOURCE_TYPES for resource in by_type[rtype]]


# ------------------------------------------------------------------ tabular and binary datasets
def cohort_rows(records: list[PatientRecord]) -> list[dict[str, Any]]:
    """One dict per patient with the ``CSV_COLUMNS``."""
    return [{"patient_id": r.id, "age": r.age, "sex": r.sex, "bmi": r.bmi, "systolic_bp": r.systolic_bp,
             "cholesterol": r.cholesterol, "smoker": int(r.smoker), "outcome": r.outcome} for r in records]


def cohort_csv(params: CohortParams, records: list[PatientRecord] | None = None) -> bytes:
    """The cohort as CSV bytes (header + one row per patient)."""
    records = generate_patients(params) if records is None else records
    lines = [",".join(CSV_COLUMNS)]
    lines += [",".join(str(row[c]) for c in CSV_COLUMNS) for row in cohort_rows(records)]
    return ("\n".join(lines) + "\n").encode()


def cohort_signals(params: CohortParams, records: list[PatientRecord] | None = None) -> bytes:
    """A ``.npy`` float32 array, one noisy sine signal per patient (frequency grows with BMI)."""
    records = generate_patients(params) if records is None else records
    rng = np.random.default_rng([params.seed, zlib.crc32(params.id_prefix.encode()), 2])
    t = np.linspace(0.0, 1.0, params.signal_length, dtype=np.float32)
    freqs = np.array([r.bmi / 5 for r in records], dtype=np.float32)[:, None]
    signals = np.sin(2 * np.pi * freqs * t) + rng.normal(0, 0.1, (len(records), params.signal_length))
    buffer = io.BytesIO()
    np.save(buffer, signals.astype(np.float32), allow_pickle=False)
    return buffer.getvalue()


def collection_bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """A FHIR ``collection`` Bundle holding ``resources`` (for files on disk)."""
    return {"resourceType": "Bundle", "type": "collection", "total": len(resources),
            "entry": [{"fullUrl": f"{r['resourceType']}/{r['id']}", "resource": r} for r in resources]}
