"""Federated 2x2 table: exposure by outcome, odds ratio, risk ratio, chi-square, Mantel-Haenszel OR.

Each data node counts, per stratum (e.g. sex), exposed/unexposed patients with and without the outcome
and sends the four counts. The aggregator adds them up (exactly the pooled table), estimates the crude
odds ratio (Woolf 95% CI), risk ratio (95% CI on the log scale), Pearson chi-square p-value, per-stratum
odds ratios and the Mantel-Haenszel odds ratio over strata (Robins-Breslow-Greenland 95% CI). Rows with
a cell below ``min_cell_size`` are withheld (counts and estimates blank, suppressed=true).
"""

from __future__ import annotations

import inspect
import io
import math
import os
from typing import Any

import pandas as pd

from flame.star import StarAggregator, StarAnalyzer, StarModel

ALGORITHM = {
    "name": "odds_ratio",
    "description": "Federated 2x2 table of a binary exposure by a binary outcome with odds ratio, risk ratio, "
                   "chi-square test and Mantel-Haenszel odds ratio over strata, with small-cell suppression.",
    "data_type": "s3",
    "query": ["cohort.csv"],
    "output": "CSV table: stratum, exposed_events, exposed_non_events, unexposed_events, unexposed_non_events, "
              "odds_ratio, or_ci_low, or_ci_high, risk_ratio, rr_ci_low, rr_ci_high, chi2_p, suppressed",
    "arguments": [
        {"name": "exposure", "type": "str", "default": "smoker", "description": "0/1 exposure column"},
        {"name": "outcome", "type": "str", "default": "outcome", "description": "0/1 outcome column"},
        {"name": "stratify", "type": "str", "default": "sex",
         "description": "column whose values define strata for the Mantel-Haenszel odds ratio ('' for none)"},
        {"name": "min_cell_size", "type": "int", "default": 5,
         "description": "rows with any cell below this count are withheld"},
    ],
}
CELLS = ["exposed_events", "exposed_non_events", "unexposed_events", "unexposed_non_events"]
COLUMNS = ["stratum", *CELLS, "odds_ratio", "or_ci_low", "or_ci_high", "risk_ratio", "rr_ci_low", "rr_ci_high",
           "chi2_p", "suppressed"]
Z_95 = 1.959963984540054
ALL = "all"
MANTEL_HAENSZEL = "mantel-haenszel"


def read_arguments(env: dict[str, str] | None = None) -> dict[str, Any]:
    """Defaults from ALGORITHM, overridden by ``ALGO_<NAME>`` environment variables."""
    env = dict(os.environ) if env is None else env
    out: dict[str, Any] = {}
    for arg in ALGORITHM["arguments"]:
        raw = env.get(f"ALGO_{arg['name'].upper()}")
        out[arg["name"]] = arg["default"] if raw is None else {"int": int, "str": str}[arg["type"]](raw)
    return out


def read_table(data: list[dict[str, Any]]) -> pd.DataFrame:
    frames = [pd.read_csv(io.BytesIO(content if isinstance(content, bytes) else str(content).encode()))
              for source in data for key, content in source.items() if str(key).endswith(".csv")]
    if not frames:
        raise ValueError("no CSV dataset in the node's S3 data; the query should name the cohort CSV file")
    return pd.concat(frames, ignore_index=True)


def count_cells(frame: pd.DataFrame, exposure: str, outcome: str, stratify: str = "") -> dict[str, list[int]]:
    """{stratum: [a, b, c, d]} with a stratum per value of ``stratify`` (none if empty)."""
    columns = [exposure, outcome] + ([stratify] if stratify else [])
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"columns {missing} are not in the dataset; available: {list(frame.columns)}")
    frame = frame[columns].dropna()
    for name in (exposure, outcome):
        if not frame[name].isin([0, 1]).all():
            raise ValueError(f"column {name!r} must be 0/1")
    groups = frame.groupby(stratify) if stratify else [("", frame)]
    counts = {}
    for stratum, group in groups:
        e, o = group[exposure].astype(int), group[outcome].astype(int)
        counts[str(stratum)] = [int(((e == 1) & (o == 1)).sum()), int(((e == 1) & (o == 0)).sum()),
                                int(((e == 0) & (o == 1)).sum()), int(((e == 0) & (o == 0)).sum())]
    return counts


def add_counts(parts: list[dict[str, list[int]]]) -> dict[str, list[int]]:
    total: dict[str, list[int]] = {}
    for part in parts:
        for stratum, cells in part.items():
            total[stratum] = [x + y for x, y in zip(total.get(stratum, [0, 0, 0, 0]), cells, strict=True)]
    return total


def _ratio_ci(estimate: float, se: float) -> tuple[float, float]:
    return math.exp(math.log(estimate) - Z_95 * se), math.exp(math.log(estimate) + Z_95 * se)


def measures(a: int, b: int, c: int, d: int) -> dict[str, float | None]:
    """Odds ratio and risk ratio with 95% CIs and the Pearson chi-square p-value (None when undefined)."""
    out: dict[str, float | None] = dict.fromkeys(COLUMNS[5:12])
    if min(a, b, c, d) > 0:
        odds = a * d / (b * c)
        out["odds_ratio"] = odds
        out["or_ci_low"], out["or_ci_high"] = _ratio_ci(odds, math.sqrt(1 / a + 1 / b + 1 / c + 1 / d))
        risk = (a / (a + b)) / (c / (c + d))
        out["risk_ratio"] = risk
        out["rr_ci_low"], out["rr_ci_high"] = _ratio_ci(risk, math.sqrt(1 / a - 1 / (a + b) + 1 / c - 1 / (c + d)))
    n = a + b + c + d
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    if margins > 0:
        chi2 = n * (a * d - b * c) ** 2 / margins
        out["chi2_p"] = math.erfc(math.sqrt(chi2 / 2))
    return out


def mantel_haenszel(strata: list[list[int]]) -> dict[str, float | None]:
    """Mantel-Haenszel odds ratio with the Robins-Breslow-Greenland 95% CI."""
    out: dict[str, float | None] = dict.fromkeys(COLUMNS[5:12])
    r_sum = s_sum = pr = ps_qr = qs = 0.0
    for a, b, c, d in strata:
        n = a + b + c + d
        if n == 0:
            continue
        r, s = a * d / n, b * c / n
        p, q = (a + d) / n, (b + c) / n
        r_sum, s_sum = r_sum + r, s_sum + s
        pr, ps_qr, qs = pr + p * r, ps_qr + p * s + q * r, qs + q * s
    if r_sum > 0 and s_sum > 0:
        odds = r_sum / s_sum
        variance = pr / (2 * r_sum ** 2) + ps_qr / (2 * r_sum * s_sum) + qs / (2 * s_sum ** 2)
        out["odds_ratio"] = odds
        out["or_ci_low"], out["or_ci_high"] = _ratio_ci(odds, math.sqrt(variance))
    return out


def result_table(counts: dict[str, list[int]], min_cell_size: int) -> pd.DataFrame:
    strata = sorted(counts)
    overall = [sum(counts[s][i] for s in strata) for i in range(4)]
    rows = [(ALL, overall, measures(*overall))]
    if len(strata) > 1:
        rows += [(s, counts[s], measures(*counts[s])) for s in strata]
        rows.append((MANTEL_HAENSZEL, None, mantel_haenszel([counts[s] for s in strata])))
    small = any(min(counts[s]) < min_cell_size for s in strata)
    table = []
    for stratum, cells, estimates in rows:
        withheld = small if cells is None else min(cells) < min_cell_size
        row: dict[str, Any] = {"stratum": stratum, **dict.fromkeys(CELLS), **estimates, "suppressed": withheld}
        if cells is not None:
            row.update(zip(CELLS, cells, strict=True))
        if withheld:
            row.update(dict.fromkeys(COLUMNS[1:12]))
        table.append(row)
    frame = pd.DataFrame(table, columns=COLUMNS)
    for cell in CELLS:
        frame[cell] = frame[cell].astype("Int64")
    return frame


def pooled_table(data: list[dict[str, Any]], exposure: str = "smoker", outcome: str = "outcome",
                 stratify: str = "sex", min_cell_size: int = 5) -> str:
    """The same table from pooled data (one entry per data source of every node)."""
    return result_table(count_cells(read_table(data), exposure, outcome, stratify), min_cell_size).to_csv(index=False)


class TableAnalyzer(StarAnalyzer):
    def __init__(self, flame, exposure: str = "smoker", outcome: str = "outcome", stratify: str = "sex",
                 **_: Any) -> None:
        super().__init__(flame)
        self.exposure, self.outcome, self.stratify = exposure, outcome, stratify

    def analysis_method(self, data, aggregator_results):
        return count_cells(read_table(data), self.exposure, self.outcome, self.stratify)


class TableAggregator(StarAggregator):
    def __init__(self, flame, min_cell_size: int = 5, **_: Any) -> None:
        super().__init__(flame)
        self.min_cell_size = int(min_cell_size)

    def aggregation_method(self, analysis_results):
        return result_table(add_counts(analysis_results), self.min_cell_size).to_csv(index=False)

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
        "analyzer": TableAnalyzer,
        "aggregator": TableAggregator,
        "data_type": "s3",
        "query": ALGORITHM["query"],
        "simple_analysis": True,
        "output_type": "str",
        "analyzer_kwargs": {"exposure": args["exposure"], "outcome": args["outcome"], "stratify": args["stratify"]},
        "aggregator_kwargs": {"min_cell_size": args["min_cell_size"]},
    }
    return {**arguments, **extensions(result_filename=f"{ALGORITHM['name']}.csv")}


def main() -> None:
    StarModel(**star_arguments())


if __name__ == "__main__":
    main()
