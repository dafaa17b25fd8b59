"""Federated descriptive statistics of FHIR Observation values per LOINC code, sex and age band.

Each data node reads its Patients and Observations, keeps (by default) each patient's latest value per
code, and sends per cell: count, mean, sum of squared deviations (for a numerically stable pooled
standard deviation) and a fixed-bin histogram (for quantiles). The aggregator pools the cells exactly,
derives mean, sd and the quartiles, withholds every cell with fewer than ``min_cell_size`` values (and,
where a shown total would reveal a withheld count, the next smallest cell too), and submits one CSV table. Run it with ``python descriptive_statistics.py`` on a node (or ``flame-sim run``).
"""

from __future__ import annotations

import inspect
import math
import os
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from flame.star import StarAggregator, StarAnalyzer, StarModel

ALGORITHM = {
    "name": "descriptive_statistics",
    "description": "Counts, mean, standard deviation and quartiles (from pooled histograms) of FHIR "
                   "Observation values per LOINC code, sex and age band, with small-cell suppression.",
    "data_type": "fhir",
    "query": ["Patient?_count=1000", "Observation?_count=1000"],
    "output": "CSV table: loinc, name, unit, sex, age_band, n, mean, sd, q25, median, q75, suppressed",
    "arguments": [
        {"name": "min_cell_size", "type": "int", "default": 5,
         "description": "cells with fewer values are withheld (all statistics blank, suppressed=true)"},
        {"name": "age_bands", "type": "str", "default": "0,40,60,80",
         "description": "lower edges of the age bands in years at the observation date, ascending"},
        {"name": "latest_only", "type": "bool", "default": True,
         "description": "use each patient's latest value per code (false: every observation counts)"},
    ],
}

#: LOINC code -> (name, unit, histogram lower edge, upper edge, bin width). Values outside are clipped.
CODES: dict[str, tuple[str, str, float, float, float]] = {
    "29463-7": ("body weight", "kg", 20.0, 250.0, 0.5),
    "8302-2": ("body height", "cm", 100.0, 230.0, 0.5),
    "39156-5": ("body mass index", "kg/m2", 10.0, 70.0, 0.1),
    "8480-6": ("systolic blood pressure", "mm[Hg]", 60.0, 260.0, 1.0),
    "2093-3": ("total cholesterol", "mg/dL", 50.0, 450.0, 1.0),
    "4548-4": ("hemoglobin A1c", "%", 3.0, 18.0, 0.1),
}
LOINC = "http://loinc.org"
ALL = "all"
COLUMNS = ["loinc", "name", "unit", "sex", "age_band", "n", "mean", "sd", "q25", "median", "q75", "suppressed"]


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


def read_resources(data: list[dict[str, Any]], fetch=None) -> list[dict[str, Any]]:
    """Every resource of every source, following ``next`` links with ``fetch(query, source index)``."""
    resources: dict[tuple[str, str], dict[str, Any]] = {}
    for index, source in enumerate(data):
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
    return list(resources.values())


def loinc_code(observation: dict[str, Any]) -> str | None:
    for coding in observation.get("code", {}).get("coding", []):
        if coding.get("system") == LOINC and coding.get("code") in CODES:
            return coding["code"]
    return None


def age_at(birth: str, when: str) -> int:
    b, w = date.fromisoformat(birth[:10]), date.fromisoformat(when[:10])
    return w.year - b.year - ((w.month, w.day) < (b.month, b.day))


def observation_rows(resources: list[dict[str, Any]], latest_only: bool = True) -> pd.DataFrame:
    """One row per usable observation: loinc, sex, age, value (latest per patient and code if asked)."""
    patients = {r["id"]: r for r in resources if r.get("resourceType") == "Patient" and "id" in r}
    rows = []
    for obs in resources:
        if obs.get("resourceType") != "Observation" or obs.get("status") in ("entered-in-error", "cancelled"):
            continue
        code, value = loinc_code(obs), obs.get("valueQuantity", {}).get("value")
        reference = obs.get("subject", {}).get("reference", "")
        patient = patients.get(reference.split("/")[-1])
        when = obs.get("effectiveDateTime")
        if code is None or value is None or patient is None or not when or not patient.get("birthDate"):
            continue
        rows.append({"patient": patient["id"], "loinc": code, "sex": patient.get("gender", "unknown"),
                     "age": age_at(patient["birthDate"], when), "when": when[:10], "value": float(value)})
    frame = pd.DataFrame(rows, columns=["patient", "loinc", "sex", "age", "when", "value"])
    if latest_only and not frame.empty:
        frame = frame.sort_values(["patient", "loinc", "when"]).groupby(["patient", "loinc"]).tail(1)
    return frame.reset_index(drop=True)


# ----------------------------------------------------------------------------- cell statistics
def histogram(code: str, values: np.ndarray) -> np.ndarray:
    _, _, low, high, width = CODES[code]
    bins = int(round((high - low) / width))
    index = np.clip(np.floor((values - low) / width + 1e-9).astype(int), 0, bins - 1)
    return np.bincount(index, minlength=bins)


def cell_summaries(frame: pd.DataFrame, edges: list[int]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Per (loinc, sex, age band) and their 'all' margins: n, mean, m2 (sum of squared deviations), hist."""
    cells: dict[tuple[str, str, str], dict[str, Any]] = {}
    if frame.empty:
        return cells
    frame = frame.assign(band=[band_label(int(a), edges) for a in frame["age"]])
    frame = frame[frame["band"].notna()]
    for (code, sex, band), group in _groupings(frame):
        values = group["value"].to_numpy(dtype=float)
        mean = float(values.mean())
        cells[(code, sex, band)] = {"n": int(values.size), "mean": mean,
                                    "m2": float(((values - mean) ** 2).sum()), "hist": histogram(code, values)}
    return cells


def _groupings(frame: pd.DataFrame):
    for keys, group in frame.groupby(["loinc", "sex", "band"]):
        yield keys, group
    for (code, sex), group in frame.groupby(["loinc", "sex"]):
        yield (code, sex, ALL), group
    for (code, band), group in frame.groupby(["loinc", "band"]):
        yield (code, ALL, band), group
    for code, group in frame.groupby("loinc"):
        yield (code, ALL, ALL), group


def combine(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Pool cell summaries exactly (Chan et al.'s parallel mean/variance)."""
    n, mean, m2, hist = 0, 0.0, 0.0, None
    for part in parts:
        if part["n"] == 0:
            continue
        total = n + part["n"]
        delta = part["mean"] - mean
        mean += delta * part["n"] / total
        m2 += part["m2"] + delta * delta * n * part["n"] / total
        n = total
        hist = part["hist"].copy() if hist is None else hist + part["hist"]
    return {"n": n, "mean": mean, "m2": m2, "hist": hist}


def hist_quantile(code: str, hist: np.ndarray, q: float) -> float:
    """Quantile by linear interpolation inside the histogram bin that holds it."""
    _, _, low, _, width = CODES[code]
    target = q * float(hist.sum())
    cumulative = np.cumsum(hist)
    index = int(np.searchsorted(cumulative, target, side="left"))
    index = min(index, len(hist) - 1)
    before = float(cumulative[index - 1]) if index > 0 else 0.0
    inside = float(hist[index])
    share = 0.0 if inside == 0 else (target - before) / inside
    return low + width * (index + share)


def withheld_cells(cells: dict[tuple[str, str, str], dict[str, Any]], min_cell_size: int) -> set:
    """Cells below ``min_cell_size`` plus complementary ones, so no withheld count follows from a margin.

    Whenever a shown total has exactly one withheld part (e.g. 'female, all ages' with only 'female, 80+'
    withheld), the smallest other part is withheld too; repeated until nothing changes.
    """
    withheld = {key for key, cell in cells.items() if cell["n"] < min_cell_size}
    groups = []
    for code in {key[0] for key in cells}:
        sexes = sorted({k[1] for k in cells if k[0] == code and k[1] != ALL})
        bands = sorted({k[2] for k in cells if k[0] == code and k[2] != ALL})
        groups += [((code, sex, ALL), [(code, sex, b) for b in bands]) for sex in [*sexes, ALL]]
        groups += [((code, ALL, band), [(code, x, band) for x in sexes]) for band in [*bands, ALL]]
    changed = True
    while changed:
        changed = False
        for total, parts in groups:
            present = [p for p in parts if p in cells]
            hidden = [p for p in present if p in withheld]
            if total in cells and total not in withheld and len(hidden) == 1:
                shown = [p for p in present if p not in withheld]
                if shown:
                    withheld.add(min(shown, key=lambda p: cells[p]["n"]))
                    changed = True
    return withheld


def statistics_table(cells: dict[tuple[str, str, str], dict[str, Any]], min_cell_size: int) -> pd.DataFrame:
    rows = []
    withheld = withheld_cells(cells, min_cell_size)
    for (code, sex, band) in sorted(cells):
        cell = cells[(code, sex, band)]
        name, unit = CODES[code][:2]
        row: dict[str, Any] = {"loinc": code, "name": name, "unit": unit, "sex": sex, "age_band": band}
        if (code, sex, band) in withheld:
            row.update(n=None, mean=None, sd=None, q25=None, median=None, q75=None, suppressed=True)
        else:
            sd = math.sqrt(cell["m2"] / (cell["n"] - 1)) if cell["n"] > 1 else None
            row.update(n=cell["n"], mean=cell["mean"], sd=sd, q25=hist_quantile(code, cell["hist"], 0.25),
                       median=hist_quantile(code, cell["hist"], 0.5), q75=hist_quantile(code, cell["hist"], 0.75),
                       suppressed=False)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["n"] = frame["n"].astype("Int64")
    return frame


def to_csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False)


def pooled_statistics(data: list[dict[str, Any]], min_cell_size: int = 5, age_bands: str = "0,40,60,80",
                      latest_only: bool = True) -> str:
    """The same table computed on pooled data (one entry per data source of every node)."""
    edges = parse_bands(age_bands)
    frame = observation_rows(read_resources(data), latest_only)
    return to_csv(statistics_table(cell_summaries(frame, edges), min_cell_size))


# ----------------------------------------------------------------------------- star roles
class StatisticsAnalyzer(StarAnalyzer):
    def __init__(self, flame, age_bands: str = "0,40,60,80", latest_only: bool = True, **_: Any) -> None:
        super().__init__(flame)
        self.edges = parse_bands(age_bands)
        self.latest_only = latest_only

    def fetch_page(self, query: str, source_index: int) -> dict[str, Any] | None:
        pages = self.flame.get_fhir_data([query]) or []
        return next(iter(pages[source_index].values()), None) if source_index < len(pages) else None

    def analysis_method(self, data, aggregator_results):
        frame = observation_rows(read_resources(data, self.fetch_page), self.latest_only)
        self.flame.flame_log(f"{len(frame)} observation values in {frame['loinc'].nunique()} codes")
        return cell_summaries(frame, self.edges)


class StatisticsAggregator(StarAggregator):
    def __init__(self, flame, min_cell_size: int = 5, **_: Any) -> None:
        super().__init__(flame)
        if int(min_cell_size) < 1:
            raise ValueError(f"min_cell_size must be at least 1, got {min_cell_size}")
        self.min_cell_size = int(min_cell_size)

    def aggregation_method(self, analysis_results):
        keys = sorted({key for result in analysis_results for key in result})
        pooled = {key: combine([r[key] for r in analysis_results if key in r]) for key in keys}
        return to_csv(statistics_table(pooled, self.min_cell_size))

    def has_converged(self, result, last_result):
        return True


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
        "simple_analysis": True,
        "output_type": "str",
        "analyzer_kwargs": {"age_bands": args["age_bands"], "latest_only": args["latest_only"]},
        "aggregator_kwargs": {"min_cell_size": args["min_cell_size"]},
    }
    return {**arguments, **extensions(result_filename=f"{ALGORITHM['name']}.csv")}


def main() -> None:
    StarModel(**star_arguments())


if __name__ == "__main__":
    main()
