"""What the simulator's synthetic data holds, rendered from the generator's constants as Markdown (README.md's
"The synthetic data" section is checked against it, so the two cannot drift)."""

from __future__ import annotations

from collections.abc import Sequence

from flame_sdk.sim.data.data_sources import GENERATED_DATASETS, default_cohort
from flame_sdk.sim.data.synthetic import (
    CONDITION_CODES,
    CSV_MEANINGS,
    ENCOUNTER_CLASS,
    ENCOUNTER_TYPE,
    FOLLOW_UP_END,
    LIFESTYLE_QUESTIONNAIRE,
    LOINC,
    MEDICATION_CODES,
    OBSERVATION_CODES,
    QUESTIONNAIRE_ITEMS,
    RESOURCE_TYPES,
    SMOKER_CODES,
    SNOMED,
)

_RESOURCES = {
    "Patient": "one per patient: `gender`, `birthDate`, `deceasedDateTime` when the patient died before "
               f"{FOLLOW_UP_END.isoformat()}",
    "Encounter": f"one per visit (1 to 3 between 2021 and 2023): class `{ENCOUNTER_CLASS[1]}`, type SNOMED "
                 f"`{ENCOUNTER_TYPE[0]}` ({ENCOUNTER_TYPE[1]}), `period` the visit day",
    "Observation": "one per LOINC code below and visit: `subject`, `encounter`, `effectiveDateTime`, "
                   "`valueQuantity` (UCUM units)",
    "Condition": "SNOMED codes below: `onsetDateTime`, `clinicalStatus` active or resolved (`abatementDateTime`)",
    "MedicationStatement": "one per condition (codes below, RxNorm and ATC): `effectivePeriod` from the onset, "
                           "`status` completed once the condition resolved, `reasonReference` the condition",
    "QuestionnaireResponse": f"for about half of the patients: questionnaire `{LIFESTYLE_QUESTIONNAIRE}`, "
                             "items below",
}
_DATASETS = {"cohort.csv": "the cohort as CSV, columns below",
             "signals.npy": "a NumPy float32 array, one noisy signal of 256 samples per patient"}


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def describe_markdown() -> str:
    """The synthetic data as Markdown: resources, codes, S3 objects and the CSV columns."""
    sizes = sorted({default_cohort(i, 0).patients for i in range(1, 5)})
    lines = [f"Data node *i* (`node-i`, i >= 1) serves a FHIR store `node<i>-fhir` and an S3 bucket `node<i>-s3`, "
             f"both drawn from one seeded cohort of {sizes[0]} to {sizes[-1]} patients whose size and "
             f"distributions differ from node to node (`--seed` changes them all).", ""]
    assert set(_RESOURCES) == set(RESOURCE_TYPES), "describe every generated resource type"
    lines += _table(("FHIR resource", "what"), [(f"`{t}`", _RESOURCES[t]) for t in RESOURCE_TYPES]) + [""]
    observations = [(f"`{code}`", display, f"`{unit}`" if unit else "SNOMED "
                     + " / ".join(f"`{c}` {d.lower()}" for c, d in SMOKER_CODES.values()))
                    for code, (display, unit, _) in OBSERVATION_CODES.items()]
    lines += [f"Observation codes (system `{LOINC}`):", ""]
    lines += _table(("LOINC", "meaning", "unit or value"), observations) + [""]
    conditions = [(f"`{code}`", CONDITION_CODES[code], f"{name}: RxNorm `{rxnorm}`, ATC `{atc}`")
                  for code, (rxnorm, atc, name) in MEDICATION_CODES.items()]
    lines += [f"Conditions (system `{SNOMED}`) and their MedicationStatements:", ""]
    lines += _table(("SNOMED", "condition", "medication"), conditions) + [""]
    lines += ["QuestionnaireResponse items:", ""]
    lines += _table(("linkId", "text", "answer"), [(f"`{k}`", text, f"`{kind}`")
                                                  for k, (text, kind) in QUESTIONNAIRE_ITEMS.items()]) + [""]
    lines += ["S3 objects of every bucket:", ""]
    lines += _table(("key", "content"), [(f"`{key}`", _DATASETS[key]) for key in GENERATED_DATASETS]) + [""]
    lines += ["Columns of `cohort.csv` (one row per patient, the same patients as the FHIR store):", ""]
    lines += _table(("column", "meaning"), [(f"`{c}`", m) for c, m in CSV_MEANINGS.items()])
    return "\n".join(lines) + "\n"
