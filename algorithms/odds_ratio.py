"""Federated 2x2 table: exposure by outcome, odds ratio, risk ratio, chi-square, Mantel-Haenszel OR.

Each data node counts, per stratum (e.g. sex), exposed/unexposed patients with and without the outcome
and sends the four counts (rows with a missing value are left out and counted). The aggregator adds them
up (exactly the pooled table), estimates the crude odds ratio (Woolf 95% CI), risk ratio (95% CI on the log
scale), Pearson chi-square p-value, per-stratum odds ratios and the Mantel-Haenszel odds ratio over strata
(Robins-Breslow-Greenland 95% CI). The counts are protected with ``flame_sdk.disclosure``: small cells and
the cells that would give them away through the 'all' row are withheld, and so are the estimates of a row
with a withheld cell (and the Mantel-Haenszel row if any stratum has one).

Every node sends only sums (counts and 0/1 "non-zero" indicators per cell, whose sums are the contributing
nodes), so the analysis runs unchanged with a secure sum (``ALGO_SECURE_SUM=true``): the aggregator then sees
only the pooled counts. The strata are then fixed in advance (``ALGO_STRATA``; for ``sex`` by default the FHIR
administrative gender codes), since what the nodes send must have the same layout on every node.
"""

from __future__ import annotations

import inspect
import io
import math
import os
from typing import Any

import pandas as pd

from flame.star import StarAggregator, StarAnalyzer, StarModel
from flame_sdk.disclosure import DisclosureConfig, protect_table, publish_count

ALGORITHM = {
    "name": "odds_ratio",
    "description": "Federated 2x2 table of a binary exposure by a binary outcome with odds ratio, risk ratio, "
                   "chi-square test and Mantel-Haenszel odds ratio over strata, with small-cell and "
                   "complementary suppression.",
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
         "description": "counts from 1 to this minus 1 are withheld, with the cells that would reveal them"},
        {"name": "min_contributing_nodes", "type": "int", "default": 1,
         "description": "non-zero counts from fewer nodes are withheld"},
        {"name": "rounding_base", "type": "int", "default": 1,
         "description": "published counts are rounded to a multiple of this (1: exact)"},
        {"name": "strata", "type": "str", "default": "",
         "description": "comma-separated stratum values expected in the stratify column ('': the values found; "
                        "with secure_sum and stratify 'sex': female,male,other,unknown); other values fail the run"},
        {"name": "secure_sum", "type": "bool", "default": False,
         "description": "the aggregator learns only the sum of the nodes' counts (pairwise-masked secure sum)"},
        {"name": "min_nodes", "type": "int", "default": 0,
         "description": "a data node that fails is left out as long as this many remain (0: every node must take "
                        "part)"},
    ],
}
CELLS = ["exposed_events", "exposed_non_events", "unexposed_events", "unexposed_non_events"]
ESTIMATES = ["odds_ratio", "or_ci_low", "or_ci_high", "risk_ratio", "rr_ci_low", "rr_ci_high", "chi2_p"]
COLUMNS = ["stratum", *CELLS, *ESTIMATES, "suppressed"]
Z_95 = 1.959963984540054
ALL = "all"
MANTEL_HAENSZEL = "mantel-haenszel"
#: FHIR administrative gender: the strata of 'sex' in secure-sum mode unless ALGO_STRATA lists others.
SEX_CODES = ["female", "male", "other", "unknown"]


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
            out[arg["name"]] = {"int": int, "str": str}[arg["type"]](raw)
    return out


def read_table(data: list[dict[str, Any]]) -> pd.DataFrame:
    frames = [pd.read_csv(io.BytesIO(content if isinstance(content, bytes) else str(content).encode()))
              for source in data for key, content in source.items() if str(key).endswith(".csv")]
    if not frames:
        raise ValueError("no CSV dataset in the node's S3 data; the query should name the cohort CSV file")
    return pd.concat(frames, ignore_index=True)


def count_cells(frame: pd.DataFrame, exposure: str, outcome: str, stratify: str = "",
                strata: list[str] | None = None) -> dict[str, Any]:
    """``{"counts": {stratum: [a, b, c, d]}, "nonzero": {stratum or 'all': four 0/1}, "excluded": rows with a
    missing value}``; one stratum '' if none. With ``strata`` every listed stratum is there (zeros if absent)
    and any other value fails; ``nonzero`` marks the cells (and 'all' row cells) this node contributes to."""
    columns = [exposure, outcome] + ([stratify] if stratify else [])
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"columns {missing} are not in the dataset; available: {list(frame.columns)}")
    complete = frame[columns].dropna()
    for name in (exposure, outcome):
        bad = sorted({str(v) for v in complete[name] if v not in (0, 1)})
        if bad:
            raise ValueError(f"column {name!r} must be 0/1 (or empty for unknown), found {bad[:5]}")
    if stratify:
        reserved = sorted({str(v) for v in complete[stratify]} & {ALL, MANTEL_HAENSZEL})
        if reserved:
            raise ValueError(f"column {stratify!r} has the value(s) {reserved}, which name rows of the result; "
                             f"rename them")
    if stratify and strata:
        unexpected = sorted({str(v) for v in complete[stratify]} - set(strata))
        if unexpected:
            raise ValueError(f"column {stratify!r} has the value(s) {unexpected[:5]}, which are not among the strata "
                             f"{strata}; list every stratum in ALGO_STRATA")
    groups = complete.groupby(complete[stratify].astype(str)) if stratify else [("", complete)]
    counts = {stratum: [0, 0, 0, 0] for stratum in (strata or []) if stratify}
    for stratum, group in groups:
        e, o = group[exposure].astype(int), group[outcome].astype(int)
        counts[str(stratum)] = [int(((e == 1) & (o == 1)).sum()), int(((e == 1) & (o == 0)).sum()),
                                int(((e == 0) & (o == 1)).sum()), int(((e == 0) & (o == 0)).sum())]
    nonzero = {stratum: [int(c > 0) for c in cells] for stratum, cells in counts.items()}
    nonzero[ALL] = [int(any(cells[i] for cells in counts.values())) for i in range(4)]
    return {"counts": counts, "nonzero": nonzero, "excluded": int(len(frame) - len(complete))}


def add_up(parts: list[Any]) -> Any:
    """Entry-wise sum of the nodes' results: dicts by key (a key missing on a node counts as nothing), lists
    by position. With a secure sum the template hands over one part, already the sum."""
    if isinstance(parts[0], dict):
        keys = list(dict.fromkeys(key for part in parts for key in part))
        return {key: add_up([part[key] for part in parts if key in part]) for key in keys}
    if isinstance(parts[0], (list, tuple)):
        return [add_up(list(column)) for column in zip(*parts, strict=True)]
    return sum(parts)


def contributors_table(table: pd.DataFrame, nonzero: dict[str, list[int]]) -> pd.DataFrame:
    """Per cell of ``table`` (strata and 'all' rows), the number of nodes with a non-zero count."""
    return pd.DataFrame([nonzero[row] for row in table.index], index=table.index, columns=table.columns, dtype=int)


def count_table(counts: dict[str, list[int]]) -> pd.DataFrame:
    """Strata x cells, with the 'all' row (their sum) when there is more than one stratum."""
    strata = sorted(counts)
    table = pd.DataFrame([counts[s] for s in strata], index=strata, columns=CELLS, dtype=int)
    if len(strata) > 1:
        table.loc[ALL] = table.sum(axis=0)
    return table


def _ratio_ci(estimate: float, se: float) -> tuple[float, float]:
    return math.exp(math.log(estimate) - Z_95 * se), math.exp(math.log(estimate) + Z_95 * se)


def measures(a: int, b: int, c: int, d: int) -> dict[str, float | None]:
    """Odds ratio and risk ratio with 95% CIs and the Pearson chi-square p-value (None when undefined)."""
    out: dict[str, float | None] = dict.fromkeys(ESTIMATES)
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
    """Mantel-Haenszel odds ratio with the Robins-Breslow-Greenland 95% CI.

    Strata with zero cells take part as the estimator allows (a stratum adds a*d/n and b*c/n); it is
    undefined only when either sum is zero over all strata.
    """
    out: dict[str, float | None] = dict.fromkeys(ESTIMATES)
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


def result_table(counts: dict[str, list[int]], config: DisclosureConfig,
                 contributors: pd.DataFrame | None = None) -> pd.DataFrame:
    """The published table: protected counts, and the estimates of rows whose counts are all shown."""
    exact = count_table(counts)
    protected = protect_table(exact, config, contributors=contributors)
    if len(exact) == 1:  # a single stratum (or none) is the whole table
        for frame in (exact, protected.counts, protected.withheld):
            frame.index = [ALL]
    rows = []
    for stratum in [ALL, *[s for s in exact.index if s != ALL]]:
        withheld = bool(protected.withheld.loc[stratum].any())
        estimates = dict.fromkeys(ESTIMATES) if withheld else measures(*exact.loc[stratum].tolist())
        rows.append({"stratum": stratum, **protected.counts.loc[stratum].to_dict(), **estimates,
                     "suppressed": withheld})
    if len(exact) > 1:
        withheld = bool(protected.withheld.drop(index=ALL).to_numpy().any())
        strata = [exact.loc[s].tolist() for s in exact.index if s != ALL]
        rows.append({"stratum": MANTEL_HAENSZEL, **dict.fromkeys(CELLS),
                     **(dict.fromkeys(ESTIMATES) if withheld else mantel_haenszel(strata)), "suppressed": withheld})
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for cell in CELLS:
        frame[cell] = frame[cell].astype("Int64")
    return frame


def pooled_table(data: list[dict[str, Any]], exposure: str = "smoker", outcome: str = "outcome",
                 stratify: str = "sex", **disclosure: Any) -> str:
    """The same table from pooled data (one entry per data source of every node)."""
    cells = count_cells(read_table(data), exposure, outcome, stratify)
    return result_table(cells["counts"], DisclosureConfig.from_mapping(disclosure)).to_csv(index=False)


def stratum_list(strata: str, stratify: str, secure_sum: bool) -> list[str]:
    """The fixed strata: as listed, or in secure-sum mode the FHIR gender codes for 'sex'; [] for 'as found'."""
    listed = [part.strip() for part in str(strata).split(",") if part.strip()]
    if listed or not (secure_sum and stratify):
        return listed
    if stratify == "sex":
        return list(SEX_CODES)
    raise ValueError(f"with secure_sum, list the values of {stratify!r} in ALGO_STRATA (comma-separated): every node "
                     f"must send the same strata, whatever its data holds")


class TableAnalyzer(StarAnalyzer):
    def __init__(self, flame, exposure: str = "smoker", outcome: str = "outcome", stratify: str = "sex",
                 strata: list[str] | None = None, **_: Any) -> None:
        super().__init__(flame)
        self.exposure, self.outcome, self.stratify, self.strata = exposure, outcome, stratify, strata

    def analysis_method(self, data, aggregator_results):
        cells = count_cells(read_table(data), self.exposure, self.outcome, self.stratify, self.strata)
        if cells["excluded"]:
            self.flame.flame_log(f"{cells['excluded']} rows left out: a value of "
                                 f"{[c for c in (self.exposure, self.outcome, self.stratify) if c]} is missing",
                                 log_type="warn")
        return cells


class TableAggregator(StarAggregator):
    def __init__(self, flame, **disclosure: Any) -> None:
        super().__init__(flame)
        self.config = DisclosureConfig.from_mapping(disclosure)

    def aggregation_method(self, analysis_results):
        total = add_up(analysis_results)
        counts = {stratum: cells for stratum, cells in total["counts"].items() if any(cells)}
        if not counts:
            raise ValueError("no complete rows on any node")
        nodes = contributors_table(count_table(counts), total["nonzero"])
        excluded = publish_count(total["excluded"], self.config)
        shown = f"fewer than {self.config.min_cell_size}" if excluded is None else excluded
        self.flame.flame_log(f"rows left out for a missing value, all nodes: {shown}")
        return result_table(counts, self.config, nodes).to_csv(index=False)

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
        "analyzer_kwargs": {"exposure": args["exposure"], "outcome": args["outcome"], "stratify": args["stratify"],
                            "strata": stratum_list(args["strata"], args["stratify"], args["secure_sum"])},
        "aggregator_kwargs": {key: args[key] for key in ("min_cell_size", "min_contributing_nodes", "rounding_base")},
    }
    options = {"secure_sum": True} if args["secure_sum"] else {}
    if args["min_nodes"] > 0:
        options["min_nodes"] = args["min_nodes"]
    return {**arguments, **extensions(result_filename=f"{ALGORITHM['name']}.csv", **options)}


def main() -> None:
    StarModel(**star_arguments())


if __name__ == "__main__":
    main()
