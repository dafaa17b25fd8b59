"""Federated descriptive statistics of FHIR Observation values per LOINC code, sex and age band.

Each data node reads its Patients and Observations (patient ids are resolved within each data source: every
FHIR server numbers its own patients), keeps by default each patient's latest value per code, converts it
to the code's unit from its UCUM ``valueQuantity.code`` (values in unknown units are rejected and counted),
counts values outside the code's plausible range (left out, never clipped), and sends per sex x age band
cell: count, mean, sum of squared deviations and a relative-error quantile sketch (DDSketch bucket counts).
The aggregator adds the cells up exactly (Chan's parallel mean/variance; bucket counts add), builds the
margins, reads the quartiles off the pooled sketch (pandas' default linear-interpolation quartiles within
relative error ``quantile_accuracy``), protects all counts with ``flame_sdk.disclosure`` (small cells and the
cells that would give them away through a margin are withheld) and submits one CSV table. Run it with
``python descriptive_statistics.py`` on a node (or ``flame-sim run``).

With ``ALGO_SECURE_SUM=true`` the aggregator sees only sums, in two rounds. Round 1: per LOINC code, sex
(the four FHIR administrative gender codes) and age band, each node sends the count, the sum of the values,
the sketch's bucket counts, the left-out counts and 0/1 indicators of the cells it contributes to (their sum
counts the contributing nodes); the aggregator pools them, applies the disclosure control, and sends back
the means of the published cells. Round 2: each node sends its sum of squared deviations from those means,
so the standard deviations are computed in two passes, without the cancellation of a sum of squares. Only
means that are published anyway leave the aggregator.
"""

from __future__ import annotations

import inspect
import math
import os
from collections import Counter
from datetime import date
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from flame.star import StarAggregator, StarAnalyzer, StarModel
from flame_sdk.disclosure import DisclosureConfig, contributing_nodes, protect_table

ALGORITHM = {
    "name": "descriptive_statistics",
    "description": "Counts, mean, standard deviation and quartiles (relative-error quantile sketch) of FHIR "
                   "Observation values per LOINC code, sex and age band, with units read from the data and "
                   "small-cell and complementary suppression.",
    "data_type": "fhir",
    "query": ["Patient?_count=1000", "Observation?_count=1000"],
    "output": "CSV table: loinc, name, unit, sex, age_band, n, mean, sd, q25, median, q75, out_of_range, "
              "unit_rejected, suppressed",
    "arguments": [
        {"name": "min_cell_size", "type": "int", "default": 5,
         "description": "counts from 1 to this minus 1 are withheld, with the cells that would reveal them "
                        "through a margin (statistics blank, suppressed=true)"},
        {"name": "min_contributing_nodes", "type": "int", "default": 1,
         "description": "cells with values from fewer nodes are withheld"},
        {"name": "rounding_base", "type": "int", "default": 1,
         "description": "published counts are rounded to a multiple of this (1: exact)"},
        {"name": "age_bands", "type": "str", "default": "0,40,60,80",
         "description": "lower edges of the age bands in years at the observation date, ascending"},
        {"name": "latest_only", "type": "bool", "default": True,
         "description": "use each patient's latest value per code (false: every observation counts)"},
        {"name": "quantile_accuracy", "type": "float", "default": 0.005,
         "description": "relative error bound of the quartiles against the exact (pandas default) quartiles"},
        {"name": "secure_sum", "type": "bool", "default": False,
         "description": "the aggregator learns only sums over the nodes (pairwise-masked secure sum; two rounds)"},
        {"name": "min_nodes", "type": "int", "default": 0,
         "description": "a data node that fails is left out as long as this many remain (0: every node must take "
                        "part)"},
    ],
}


class Measure(NamedTuple):
    """A LOINC code's display name, unit, plausible range (in that unit) and accepted UCUM units.

    ``units`` maps a UCUM code to (factor, offset): value in the canonical unit = factor * value + offset.
    """

    name: str
    unit: str
    low: float
    high: float
    units: dict[str, tuple[float, float]]


#: The codes summarised. Plausible ranges are wide physiological limits; values outside are counted and left
#: out. Molar units convert with the analyte's molar mass (cholesterol 386.65 g/mol) or, for HbA1c, the
#: IFCC-NGSP master equation (NGSP % = 0.09148 * IFCC mmol/mol + 2.152).
CODES: dict[str, Measure] = {
    "29463-7": Measure("body weight", "kg", 0.2, 650.0,
                       {"kg": (1.0, 0.0), "g": (0.001, 0.0), "[lb_av]": (0.45359237, 0.0),
                        "[oz_av]": (0.028349523125, 0.0)}),
    "8302-2": Measure("body height", "cm", 20.0, 280.0,
                      {"cm": (1.0, 0.0), "m": (100.0, 0.0), "mm": (0.1, 0.0), "[in_i]": (2.54, 0.0),
                       "[ft_i]": (30.48, 0.0)}),
    "39156-5": Measure("body mass index", "kg/m2", 5.0, 200.0, {"kg/m2": (1.0, 0.0)}),
    "8480-6": Measure("systolic blood pressure", "mm[Hg]", 20.0, 350.0,
                      {"mm[Hg]": (1.0, 0.0), "kPa": (7.500615758, 0.0)}),
    "2093-3": Measure("total cholesterol", "mg/dL", 10.0, 2000.0,
                      {"mg/dL": (1.0, 0.0), "g/L": (100.0, 0.0), "mmol/L": (38.665, 0.0)}),
    "4548-4": Measure("hemoglobin A1c", "%", 2.0, 25.0, {"%": (1.0, 0.0), "mmol/mol": (0.09148, 2.152)}),
}
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ALL = "all"
OK, OUT_OF_RANGE, UNIT_REJECTED = "ok", "out_of_range", "unit_rejected"
COLUMNS = ["loinc", "name", "unit", "sex", "age_band", "n", "mean", "sd", "q25", "median", "q75", OUT_OF_RANGE,
           UNIT_REJECTED, "suppressed"]
ROW_COLUMNS = ["source", "patient", "loinc", "sex", "age", "when", "value", "status", "unit"]
#: FHIR administrative gender: the sexes of the fixed secure-sum layout.
SEXES = ["female", "male", "other", "unknown"]
COUNT_KEYS = ("n", OUT_OF_RANGE, UNIT_REJECTED)


# ----------------------------------------------------------------------------- arguments
def read_arguments(env: dict[str, str] | None = None) -> dict[str, Any]:
    """Defaults from ALGORITHM, overridden by ``ALGO_<NAME>`` environment variables."""
    env = dict(os.environ) if env is None else env
    out: dict[str, Any] = {}
    for arg in ALGORITHM["arguments"]:
        raw = env.get(f"ALGO_{arg['name'].upper()}")
        if raw is None:
            out[arg["name"]] = arg["default"]
        elif arg["type"] == "bool":
            out[arg["name"]] = raw.strip().lower() in ("1", "true", "yes")
        else:
            out[arg["name"]] = {"int": int, "float": float, "str": str}[arg["type"]](raw)
    return out


def parse_bands(text: str) -> list[int]:
    edges = [int(part) for part in str(text).split(",") if part.strip()]
    if not edges or edges != sorted(set(edges)) or edges[0] < 0:
        raise ValueError(f"age_bands must be ascending non-negative integers like '0,40,60,80', got {text!r}")
    return edges


def band_label(age: int, edges: list[int]) -> str | None:
    if age < edges[0]:
        return None
    index = int(np.searchsorted(edges, age, side="right")) - 1
    upper = edges[index + 1] - 1 if index + 1 < len(edges) else None
    return f"{edges[index]}+" if upper is None else f"{edges[index]}-{upper}"


def check_accuracy(accuracy: float) -> float:
    if not 1e-4 <= float(accuracy) <= 0.1:
        raise ValueError(f"quantile_accuracy must be between 0.0001 and 0.1 (relative error), got {accuracy!r}")
    return float(accuracy)


# ----------------------------------------------------------------------------- FHIR reading
def bundle_resources(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if isinstance(e, dict) and "resource" in e]


def next_query(bundle: dict[str, Any], query: str) -> str | None:
    """The ``next`` page link as a query relative to the FHIR base (what get_fhir_data takes)."""
    links = {link.get("relation"): link.get("url", "") for link in bundle.get("link", [])}
    url = links.get("next")
    if not url:
        return None
    resource_type = query.split("?", 1)[0]
    at = url.rfind(f"/{resource_type}?")
    return url[at + 1:] if at >= 0 else None


def read_sources(data: list[dict[str, Any]], fetch=None) -> list[list[dict[str, Any]]]:
    """Per data source, its resources (following ``next`` links with ``fetch(query, source index)``).

    Sources stay apart: resource ids are only unique within one FHIR server.
    """
    sources = []
    for index, source in enumerate(data):
        resources: dict[tuple[str, str], dict[str, Any]] = {}
        for query, bundle in source.items():
            seen: set[str] = set()
            while isinstance(bundle, dict):
                for resource in bundle_resources(bundle):
                    resources[(resource.get("resourceType", ""), resource.get("id", ""))] = resource
                following = next_query(bundle, query) if fetch is not None else None
                if following is None or following in seen:
                    break
                seen.add(following)
                bundle = fetch(following, index)
        sources.append(list(resources.values()))
    return sources


def loinc_code(observation: dict[str, Any]) -> str | None:
    for coding in observation.get("code", {}).get("coding", []):
        if coding.get("system") == LOINC and coding.get("code") in CODES:
            return coding["code"]
    return None


def parse_date(text: Any) -> date | None:
    try:
        return date.fromisoformat(str(text)[:10])
    except ValueError:
        return None


def age_at(birth: date, when: date) -> int:
    return when.year - birth.year - ((when.month, when.day) < (birth.month, birth.day))


def patient_id(reference: str) -> str | None:
    """The id in a ``Patient/<id>`` reference (relative, absolute or versioned)."""
    parts = reference.split("/")
    return parts[parts.index("Patient") + 1] if "Patient" in parts[:-1] else None


def canonical_value(code: str, quantity: dict[str, Any]) -> tuple[float | None, str]:
    """(value in the code's unit or None if the unit is not accepted, the unit as given)."""
    unit = quantity.get("code") or quantity.get("unit") or ""
    if quantity.get("system") not in (None, UCUM) or unit not in CODES[code].units:
        return None, str(unit)
    factor, offset = CODES[code].units[unit]
    return factor * float(quantity["value"]) + offset, unit


def observation_rows(sources: list[list[dict[str, Any]]], latest_only: bool = True,
                     skipped: Counter | None = None) -> pd.DataFrame:
    """One row per observation of a summarised code: source, patient, loinc, sex, age, when, value, status.

    ``status`` is 'ok', 'out_of_range' (outside the plausible range; value kept for the count only) or
    'unit_rejected'. Observations that cannot be placed (no patient, date or value) are counted in
    ``skipped`` by reason.
    """
    skipped = Counter() if skipped is None else skipped
    rows = []
    for index, resources in enumerate(sources):
        patients = {r["id"]: r for r in resources if r.get("resourceType") == "Patient" and "id" in r}
        for obs in resources:
            if obs.get("resourceType") != "Observation" or obs.get("status") in ("entered-in-error", "cancelled"):
                continue
            code = loinc_code(obs)
            if code is None:
                continue
            quantity = obs.get("valueQuantity") or {}
            patient = patients.get(patient_id(obs.get("subject", {}).get("reference", "")) or "")
            when = parse_date(obs.get("effectiveDateTime") or obs.get("effectivePeriod", {}).get("start")
                              or obs.get("effectiveInstant"))
            birth = parse_date(patient.get("birthDate")) if patient else None
            value = quantity.get("value")
            reason = ("no numeric value" if isinstance(value, bool) or not isinstance(value, (int, float))
                      else "no patient in the same source" if patient is None
                      else "no usable effective date" if when is None
                      else "no usable birth date" if birth is None else None)
            if reason:
                skipped[reason] += 1
                continue
            converted, unit = canonical_value(code, quantity)
            measure = CODES[code]
            status = (UNIT_REJECTED if converted is None
                      else OK if measure.low <= converted <= measure.high else OUT_OF_RANGE)
            rows.append({"source": index, "patient": patient["id"], "loinc": code,
                         "sex": patient.get("gender") or "unknown", "age": age_at(birth, when),
                         "when": when.isoformat(), "value": converted, "status": status, "unit": unit})
    frame = pd.DataFrame(rows, columns=ROW_COLUMNS)
    if latest_only and not frame.empty:
        frame = frame.sort_values(["source", "patient", "loinc", "when"], kind="stable")
        frame = frame.groupby(["source", "patient", "loinc"]).tail(1)
    return frame.reset_index(drop=True)


# ----------------------------------------------------------------------------- quantile sketch
def sketch_gamma(accuracy: float) -> float:
    """DDSketch bucket ratio: every value in bucket i, (gamma^(i-1), gamma^i], is within ``accuracy`` of
    the bucket's representative 2 gamma^i / (gamma + 1)."""
    return (1.0 + accuracy) / (1.0 - accuracy)


def sketch_buckets(code: str, gamma: float) -> tuple[int, int]:
    """(index of the first bucket, number of buckets) covering the code's plausible range."""
    first = math.ceil(math.log(CODES[code].low) / math.log(gamma))
    last = math.ceil(math.log(CODES[code].high) / math.log(gamma))
    return first, last - first + 1


def sketch(code: str, values: np.ndarray, gamma: float) -> np.ndarray:
    """Bucket counts of ``values`` (all within the plausible range)."""
    first, size = sketch_buckets(code, gamma)
    index = np.ceil(np.log(values) / math.log(gamma)).astype(int) - first
    return np.bincount(np.clip(index, 0, size - 1), minlength=size)  # clip only guards float rounding at the ends


def sketch_quantile(code: str, counts: np.ndarray, gamma: float, q: float) -> float:
    """Hyndman-Fan type 7 (pandas' and numpy's default) on the sketch's order statistics.

    Each order statistic is within relative error (gamma-1)/(gamma+1) of the exact one, and so is the
    linear interpolation between two of them (all values are positive).
    """
    first, _ = sketch_buckets(code, gamma)
    cumulative = np.cumsum(counts)
    h = (int(cumulative[-1]) - 1) * q
    lower = math.floor(h)

    def order_statistic(rank: int) -> float:
        bucket = first + int(np.searchsorted(cumulative, rank, side="right"))
        return 2.0 * gamma ** bucket / (gamma + 1.0)

    below = order_statistic(lower)
    return below if h == lower else below + (h - lower) * (order_statistic(lower + 1) - below)


# ----------------------------------------------------------------------------- cells
def cell_summaries(frame: pd.DataFrame, edges: list[int], gamma: float) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Per (loinc, sex, age band): n, mean, m2 (sum of squared deviations), sum, sketch and the excluded counts."""
    cells: dict[tuple[str, str, str], dict[str, Any]] = {}
    if frame.empty:
        return cells
    frame = frame.assign(band=[band_label(int(a), edges) for a in frame["age"]])
    frame = frame[frame["band"].notna()]
    for (code, sex, band), group in frame.groupby(["loinc", "sex", "band"]):
        values = group.loc[group["status"] == OK, "value"].to_numpy(dtype=float)
        mean = float(values.mean()) if values.size else 0.0
        cells[(code, sex, band)] = {"n": int(values.size), "mean": mean, "m2": float(((values - mean) ** 2).sum()),
                                    "sum": float(values.sum()),
                                    "sketch": sketch(code, values, gamma),
                                    OUT_OF_RANGE: int((group["status"] == OUT_OF_RANGE).sum()),
                                    UNIT_REJECTED: int((group["status"] == UNIT_REJECTED).sum())}
    return cells


def combine(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Pool cell summaries exactly (Chan et al.'s parallel mean/variance; sketch and counts add)."""
    n, mean, m2 = 0, 0.0, 0.0
    for part in parts:
        if part["n"] == 0:
            continue
        total = n + part["n"]
        delta = part["mean"] - mean
        mean += delta * part["n"] / total
        m2 += part["m2"] + delta * delta * n * part["n"] / total
        n = total
    return {"n": n, "mean": mean, "m2": m2, "sketch": sum(p["sketch"] for p in parts),
            OUT_OF_RANGE: sum(p[OUT_OF_RANGE] for p in parts), UNIT_REJECTED: sum(p[UNIT_REJECTED] for p in parts)}


def band_order(band: str) -> tuple[int, int]:
    return (1, 0) if band == ALL else (0, int(band.rstrip("+").split("-")[0]))


def with_margins(inner: dict[tuple[str, str], dict[str, Any]], sexes: list[str],
                 bands: list[str]) -> dict[tuple[str, str], dict[str, Any]]:
    """Inner (sex, band) cells plus the sex, band and overall margins, each pooled from the inner cells."""
    cells = dict(inner)
    for sex in sexes:
        cells[(sex, ALL)] = combine([inner[(sex, b)] for b in bands if (sex, b) in inner])
    for band in bands:
        cells[(ALL, band)] = combine([inner[(s, band)] for s in sexes if (s, band) in inner])
    cells[(ALL, ALL)] = combine(list(inner.values()))
    return cells


def count_table(cells: dict[tuple[str, str], dict[str, Any]], key: str, sexes: list[str],
                bands: list[str]) -> pd.DataFrame:
    rows = [*sexes, ALL]
    columns = [*bands, ALL]
    return pd.DataFrame([[cells[(s, b)][key] if (s, b) in cells else 0 for b in columns] for s in rows],
                        index=rows, columns=columns)


def protect_counts(pooled: dict[tuple[str, str], dict[str, Any]], contributors: dict[str, pd.DataFrame],
                   sexes: list[str], bands: list[str], config: DisclosureConfig) -> dict[str, Any]:
    """Per count key (n, out_of_range, unit_rejected) the protected table of one code (margins included)."""
    return {key: protect_table(count_table(pooled, key, sexes, bands), config, contributors=contributors[key])
            for key in COUNT_KEYS}


def code_rows(code: str, pooled: dict[tuple[str, str], dict[str, Any]], published: dict[str, Any],
              sexes: list[str], bands: list[str], gamma: float) -> list[dict[str, Any]]:
    """The table rows of one code; ``m2`` is read only for published cells with n > 1."""
    measure = CODES[code]
    rows = []
    for sex in [*sexes, ALL]:
        for band in [*bands, ALL]:
            cell = pooled.get((sex, band))
            if cell is None or cell["n"] + cell[OUT_OF_RANGE] + cell[UNIT_REJECTED] == 0:
                continue
            withheld = bool(published["n"].withheld.at[sex, band])
            row: dict[str, Any] = {"loinc": code, "name": measure.name, "unit": measure.unit, "sex": sex,
                                   "age_band": band, "suppressed": withheld,
                                   **{key: published[key].counts.at[sex, band] for key in published}}
            if not withheld and cell["n"] > 0:
                row.update(mean=cell["mean"], sd=math.sqrt(cell["m2"] / (cell["n"] - 1)) if cell["n"] > 1 else None,
                           **{name: sketch_quantile(code, cell["sketch"], gamma, q)
                              for name, q in (("q25", 0.25), ("median", 0.5), ("q75", 0.75))})
            rows.append(row)
    return rows


def table_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for key in COUNT_KEYS:
        frame[key] = frame[key].astype("Int64")
    return frame


def statistics_table(node_cells: list[dict[tuple[str, str, str], dict[str, Any]]], config: DisclosureConfig,
                     accuracy: float) -> pd.DataFrame:
    """The published table from every node's cells (one dict per node)."""
    gamma = sketch_gamma(accuracy)
    rows = []
    for code in sorted({key[0] for cells in node_cells for key in cells}):
        keys = sorted({key[1:] for cells in node_cells for key in cells if key[0] == code})
        sexes = sorted({sex for sex, _ in keys})
        bands = sorted({band for _, band in keys}, key=band_order)
        per_node = [with_margins({k[1:]: c for k, c in cells.items() if k[0] == code}, sexes, bands)
                    for cells in node_cells]
        pooled = with_margins({key: combine([cells[(code, *key)] for cells in node_cells if (code, *key) in cells])
                               for key in keys}, sexes, bands)
        contributors = {key: contributing_nodes([count_table(cells, key, sexes, bands) for cells in per_node])
                        for key in COUNT_KEYS}
        published = protect_counts(pooled, contributors, sexes, bands, config)
        rows += code_rows(code, pooled, published, sexes, bands, gamma)
    return table_frame(rows)


# ----------------------------------------------------------------------------- secure-sum layout
def band_labels(edges: list[int]) -> list[str]:
    return [str(band_label(edge, edges)) for edge in edges]


def dense_summaries(frame: pd.DataFrame, edges: list[int], gamma: float) -> dict[str, Any]:
    """Round 1 of the secure-sum mode: per code, arrays over SEXES x bands (the same layout on every node).

    ``n``, ``sum``, ``sketch`` (sex x band x bucket) and the left-out counts; ``nonzero`` holds per count key a
    0/1 array over [SEXES, all] x [bands, all] marking the cells (margins included) this node contributes to.
    """
    bands = band_labels(edges)
    unexpected = sorted(set(frame["sex"]) - set(SEXES)) if not frame.empty else []
    if unexpected:
        raise ValueError(f"Patient.gender values {unexpected} are not FHIR administrative gender codes {SEXES}; the "
                         f"secure-sum layout has one row per code")
    cells = cell_summaries(frame, edges, gamma)
    out: dict[str, Any] = {}
    for code in CODES:
        _, size = sketch_buckets(code, gamma)
        arrays = {"n": np.zeros((len(SEXES), len(bands)), dtype=np.int64),
                  "sum": np.zeros((len(SEXES), len(bands))),
                  "sketch": np.zeros((len(SEXES), len(bands), size), dtype=np.int64),
                  OUT_OF_RANGE: np.zeros((len(SEXES), len(bands)), dtype=np.int64),
                  UNIT_REJECTED: np.zeros((len(SEXES), len(bands)), dtype=np.int64)}
        inner = {}
        for i, sex in enumerate(SEXES):
            for j, band in enumerate(bands):
                cell = cells.get((code, sex, band))
                if cell is None:
                    continue
                inner[(sex, band)] = cell
                arrays["n"][i, j], arrays["sum"][i, j] = cell["n"], cell["sum"]
                arrays["sketch"][i, j] = cell["sketch"]
                for key in (OUT_OF_RANGE, UNIT_REJECTED):
                    arrays[key][i, j] = cell[key]
        margins = with_margins(inner, SEXES, bands)
        arrays["nonzero"] = {key: (count_table(margins, key, SEXES, bands).to_numpy() > 0).astype(np.int64)
                             for key in COUNT_KEYS}
        out[code] = arrays
    return out


def add_up(parts: list[Any]) -> Any:
    """Entry-wise sum of the nodes' results (dicts by key, arrays and numbers by value). With a secure sum the
    template hands over one part, already the sum."""
    if isinstance(parts[0], dict):
        return {key: add_up([part[key] for part in parts]) for key in parts[0]}
    return sum(parts[1:], parts[0])


def pooled_from_sums(sums: dict[str, Any], bands: list[str]) -> tuple[dict[tuple[str, str], dict[str, Any]],
                                                                      dict[str, pd.DataFrame], list[str], list[str]]:
    """One code's pooled cells (margins included, m2 still unknown) and contributor tables from summed arrays,
    restricted to the sexes and bands with any value (as the plain mode's tables are)."""
    inner = {}
    for i, sex in enumerate(SEXES):
        for j, band in enumerate(bands):
            n = int(sums["n"][i, j])
            counts = {key: int(sums[key][i, j]) for key in (OUT_OF_RANGE, UNIT_REJECTED)}
            if n + sum(counts.values()):
                inner[(sex, band)] = {"n": n, "sum": float(sums["sum"][i, j]), "sketch": sums["sketch"][i, j],
                                      **counts}
    sexes = [sex for sex in SEXES if any(key[0] == sex for key in inner)]
    present = [band for band in bands if any(key[1] == band for key in inner)]
    pooled = dict(inner)
    groups = {**{(sex, ALL): [c for (s, _), c in inner.items() if s == sex] for sex in sexes},
              **{(ALL, band): [c for (_, b), c in inner.items() if b == band] for band in present},
              (ALL, ALL): list(inner.values())}
    for key, parts in groups.items():
        pooled[key] = {name: sum(part[name] for part in parts) for name in ("n", "sum", "sketch", *COUNT_KEYS[1:])}
    for cell in pooled.values():
        cell["mean"] = cell["sum"] / cell["n"] if cell["n"] else 0.0
    rows, columns = [*sexes, ALL], [*present, ALL]
    labels = pd.Index([*SEXES, ALL]), pd.Index([*bands, ALL])
    contributors = {key: pd.DataFrame(sums["nonzero"][key], index=labels[0], columns=labels[1]).loc[rows, columns]
                    for key in COUNT_KEYS}
    return pooled, contributors, sexes, present


def deviations(frame: pd.DataFrame, means: dict[tuple[str, str, str], float], edges: list[int]) -> dict[Any, float]:
    """Round 2 of the secure-sum mode: per requested (code, sex, band) cell (margins included) the sum of
    squared deviations of this node's values from the pooled mean."""
    ok = frame[frame["status"] == OK]
    ok = ok.assign(band=[band_label(int(a), edges) for a in ok["age"]])
    out = {}
    for (code, sex, band), mean in means.items():
        rows = ok[(ok["loinc"] == code) & ((ok["sex"] == sex) if sex != ALL else True)
                  & ((ok["band"] == band) if band != ALL else ok["band"].notna())]
        out[(code, sex, band)] = float(((rows["value"].to_numpy(dtype=float) - mean) ** 2).sum())
    return out


def to_csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False)


def pooled_statistics(data: list[dict[str, Any]], age_bands: str = "0,40,60,80", latest_only: bool = True,
                      quantile_accuracy: float = 0.005, **disclosure: Any) -> str:
    """The same table computed on pooled data (one entry per data source of every node)."""
    accuracy = check_accuracy(quantile_accuracy)
    frame = observation_rows(read_sources(data), latest_only)
    cells = cell_summaries(frame, parse_bands(age_bands), sketch_gamma(accuracy))
    return to_csv(statistics_table([cells], DisclosureConfig.from_mapping(disclosure), accuracy))


# ----------------------------------------------------------------------------- star roles
class StatisticsAnalyzer(StarAnalyzer):
    def __init__(self, flame, age_bands: str = "0,40,60,80", latest_only: bool = True,
                 quantile_accuracy: float = 0.005, secure_sum: bool = False, **_: Any) -> None:
        super().__init__(flame)
        self.edges = parse_bands(age_bands)
        self.latest_only = latest_only
        self.accuracy = check_accuracy(quantile_accuracy)
        self.secure_sum = secure_sum
        self.frame: pd.DataFrame | None = None

    def fetch_page(self, query: str, source_index: int) -> dict[str, Any] | None:
        pages = self.flame.get_fhir_data([query]) or []
        return next(iter(pages[source_index].values()), None) if source_index < len(pages) else None

    def analysis_method(self, data, aggregator_results):
        if self.secure_sum and aggregator_results is not None:  # round 2: deviations from the pooled means
            return deviations(self.frame, aggregator_results["means"], self.edges)
        self.frame = self.observations(data)
        gamma = sketch_gamma(self.accuracy)
        if self.secure_sum:
            return dense_summaries(self.frame, self.edges, gamma)
        return {"quantile_accuracy": self.accuracy, "cells": cell_summaries(self.frame, self.edges, gamma)}

    def observations(self, data) -> pd.DataFrame:
        skipped: Counter = Counter()
        frame = observation_rows(read_sources(data, self.fetch_page), self.latest_only, skipped)
        for reason, count in sorted(skipped.items()):
            self.flame.flame_log(f"{count} observations skipped: {reason}", log_type="warn")
        for (code, status, unit), group in frame[frame["status"] != OK].groupby(["loinc", "status", "unit"]):
            measure = CODES[code]
            detail = (f"unit {unit!r} is not accepted (accepted UCUM codes: {', '.join(measure.units)})"
                      if status == UNIT_REJECTED else
                      f"outside the plausible range {measure.low:g}-{measure.high:g} {measure.unit}")
            self.flame.flame_log(f"{measure.name} ({code}): {len(group)} values left out, {detail}",
                                 log_type="warn")
        self.flame.flame_log(f"{int((frame['status'] == OK).sum())} observation values in "
                             f"{frame['loinc'].nunique()} codes")
        return frame


class StatisticsAggregator(StarAggregator):
    def __init__(self, flame, quantile_accuracy: float = 0.005, age_bands: str = "0,40,60,80",
                 secure_sum: bool = False, **disclosure: Any) -> None:
        super().__init__(flame)
        self.config = DisclosureConfig.from_mapping(disclosure)
        self.accuracy = check_accuracy(quantile_accuracy)
        self.bands = band_labels(parse_bands(age_bands))
        self.secure_sum = secure_sum
        self.codes: dict[str, tuple[Any, ...]] = {}

    def aggregation_method(self, analysis_results):
        if self.secure_sum:
            return self.from_sums(add_up(analysis_results))
        mismatched = {r["quantile_accuracy"] for r in analysis_results} - {self.accuracy}
        if mismatched:
            raise ValueError(f"analyzers sketched with quantile_accuracy {sorted(mismatched)}, the aggregator expects "
                             f"{self.accuracy}; give every node the same ALGO_QUANTILE_ACCURACY")
        return to_csv(statistics_table([r["cells"] for r in analysis_results], self.config, self.accuracy))

    def from_sums(self, total: dict[Any, Any]) -> Any:
        """Secure-sum mode. Round 1: pool, protect, and ask for deviations from the published means; round 2:
        the table."""
        gamma = sketch_gamma(self.accuracy)
        if not self.codes:
            means = {}
            for code in sorted(CODES):
                pooled, contributors, sexes, bands = pooled_from_sums(total[code], self.bands)
                if not sexes:
                    continue
                published = protect_counts(pooled, contributors, sexes, bands, self.config)
                self.codes[code] = (pooled, published, sexes, bands)
                means.update({(code, *key): cell["mean"] for key, cell in pooled.items()
                              if cell["n"] > 1 and not published["n"].withheld.at[key]})
            return {"means": means}
        rows = []
        for code, (pooled, published, sexes, bands) in self.codes.items():
            for (loinc, sex, band), m2 in total.items():
                if loinc == code:
                    pooled[(sex, band)]["m2"] = m2
            rows += code_rows(code, pooled, published, sexes, bands, gamma)
        return to_csv(table_frame(rows))

    def has_converged(self, result, last_result):
        return not self.secure_sum or isinstance(result, str)


def extensions(**values: Any) -> dict[str, Any]:
    """flame_sdk's keyword extensions of StarModel, left out where the installed templates lack them."""
    known = inspect.signature(StarModel).parameters
    return {key: value for key, value in values.items() if key in known}


def star_arguments(env: dict[str, str] | None = None) -> dict[str, Any]:
    """The StarModel arguments of this analysis (also used by the local tester)."""
    args = read_arguments(env)
    arguments = {
        "analyzer": StatisticsAnalyzer,
        "aggregator": StatisticsAggregator,
        "data_type": "fhir",
        "query": ALGORITHM["query"],
        "simple_analysis": not args["secure_sum"],
        "output_type": "str",
        "analyzer_kwargs": {key: args[key] for key in ("age_bands", "latest_only", "quantile_accuracy", "secure_sum")},
        "aggregator_kwargs": {key: args[key] for key in ("min_cell_size", "min_contributing_nodes", "rounding_base",
                                                         "quantile_accuracy", "age_bands", "secure_sum")},
    }
    options: dict[str, Any] = {"secure_sum": True, "max_rounds": 2} if args["secure_sum"] else {}
    if args["min_nodes"] > 0:
        options["min_nodes"] = args["min_nodes"]
    return {**arguments, **extensions(result_filename=f"{ALGORITHM['name']}.csv", **options)}


def main() -> None:
    StarModel(**star_arguments())


if __name__ == "__main__":
    main()
