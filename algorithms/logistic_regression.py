"""Federated logistic regression by Newton-Raphson (IRLS) over the nodes' gradients and Hessians.

Round k: every data node evaluates, at the coefficients the aggregator sent (zeros in round 1), the
gradient and Hessian of its log-likelihood; the aggregator sums them and takes one Newton step. The run
stops once no coefficient moves by more than ``tolerance``; the result is the fit of the pooled complete
cases. The final result is a CSV table with coefficients, standard errors, z, p, 95% confidence intervals
and odds ratios. Data: the S3 CSV dataset (one row per patient) of each node.

Where no fit exists the run fails with the cause: a predictor constant on every node or collinear with
others (checked in round 1 on the pooled cross-products), and perfect or quasi-complete separation (each
node counts its rows on either side of the last Newton step's direction; no row on the wrong side proves
that the direction separates the outcomes, so the maximum likelihood estimate does not exist).

Every node sends only sums (its count as a node included), so the analysis runs unchanged with a secure sum
(``ALGO_SECURE_SUM=true``): the aggregator then sees only the pooled gradient, Hessian and counts per round.
"""

from __future__ import annotations

import inspect
import io
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from flame.star import StarAggregator, StarAnalyzer, StarModel
from flame_sdk.disclosure import DisclosureConfig, check_contributing_nodes, check_count, publish_count

ALGORITHM = {
    "name": "logistic_regression",
    "description": "Federated logistic regression (Newton-Raphson on summed gradients and Hessians); equals "
                   "the pooled maximum likelihood fit on the complete cases.",
    "data_type": "s3",
    "query": ["cohort.csv"],
    "output": "CSV table: term, coef, std_error, z, p_value, ci_low, ci_high, odds_ratio, n, n_excluded, "
              "iterations",
    "arguments": [
        {"name": "outcome", "type": "str", "default": "outcome", "description": "0/1 outcome column"},
        {"name": "features", "type": "str", "default": "age,bmi,systolic_bp,cholesterol,smoker,male",
         "description": "comma-separated predictor columns; 'male' is derived from sex (male/female)"},
        {"name": "tolerance", "type": "float", "default": 1e-10,
         "description": "stop when no coefficient changes by more than this between rounds"},
        {"name": "max_rounds", "type": "int", "default": 50, "description": "upper bound on Newton rounds"},
        {"name": "min_rows", "type": "int", "default": 10,
         "description": "a node with fewer complete rows refuses to take part"},
        {"name": "min_cell_size", "type": "int", "default": 5,
         "description": "fewer events or non-events than this (pooled) fail the run; smaller counts are withheld"},
        {"name": "min_contributing_nodes", "type": "int", "default": 1,
         "description": "fewer data nodes than this fail the run"},
        {"name": "rounding_base", "type": "int", "default": 1,
         "description": "published counts (n, n_excluded) are rounded to a multiple of this (1: exact)"},
        {"name": "secure_sum", "type": "bool", "default": False,
         "description": "the aggregator learns only the sums over the nodes (pairwise-masked secure sum)"},
        {"name": "min_nodes", "type": "int", "default": 0,
         "description": "a data node that fails (e.g. fewer than min_rows rows) is left out as long as this many "
                        "remain (0: every node must take part)"},
    ],
}
COLUMNS = ["term", "coef", "std_error", "z", "p_value", "ci_low", "ci_high", "odds_ratio", "n", "n_excluded",
           "iterations"]
Z_95 = 1.959963984540054
#: FHIR administrative gender codes of the derived 'male' column; other codes are handled as below.
SEX_CODES = {"male": 1.0, "female": 0.0}
#: HL7 v2 administrative sex (table 0001) codes mapped to the FHIR ones, with a warning naming the counts.
SEX_HL7_V2 = {"m": "male", "f": "female"}
#: Codes that are not male/female: such rows are left out (complete cases), with a warning.
SEX_NOT_BINARY = {"other", "o", "a", "n"}
#: Codes that mean 'not known': such rows are left out like empty cells.
SEX_UNKNOWN = {"unknown", "u", ""}
#: Row classification tolerance for the separation check, relative to the row's and the direction's size.
SIDE_TOLERANCE = 1e-8


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


def feature_list(text: str) -> list[str]:
    names = [part.strip() for part in str(text).split(",") if part.strip()]
    if not names:
        raise ValueError("features must name at least one column, e.g. 'age,bmi'")
    return names


def read_table(data: list[dict[str, Any]]) -> pd.DataFrame:
    """All CSV datasets of all sources, stacked."""
    frames = [pd.read_csv(io.BytesIO(content if isinstance(content, bytes) else str(content).encode()))
              for source in data for key, content in source.items() if str(key).endswith(".csv")]
    if not frames:
        raise ValueError("no CSV dataset in the node's S3 data; the query should name the cohort CSV file")
    return pd.concat(frames, ignore_index=True)


def male_indicator(sex: pd.Series) -> tuple[pd.Series, list[str]]:
    """1.0 for male, 0.0 for female, NaN where unknown or neither; plus warnings naming what was mapped.

    Accepted: the FHIR administrative gender codes (any case). HL7 v2 'M'/'F' are mapped with a warning;
    'other' (and HL7 v2 'O', 'A', 'N') cannot be coded male/female and are left out with a warning; any
    other code, numbers included (1 means male in ISO 5218 but female in other registries), is rejected.
    """
    text = sex.astype("string").str.strip().str.lower()
    counts = text.value_counts(dropna=False)
    unknown = {str(code): int(n) for code, n in counts.items()
               if not pd.isna(code) and code not in {*SEX_CODES, *SEX_HL7_V2, *SEX_NOT_BINARY, *SEX_UNKNOWN}}
    if unknown:
        raise ValueError(f"column 'sex' has codes {unknown} (code: rows) that are not FHIR administrative gender "
                         f"(male, female, other, unknown) nor HL7 v2 (M, F, O, U); numbers are ambiguous (ISO 5218 "
                         f"has 1 = male, other registries 1 = female). Recode them to male/female, or give a 0/1 "
                         f"column 'male' instead")
    warnings = []
    mapped = {code: int(counts[code]) for code in SEX_HL7_V2 if code in counts}
    if mapped:
        warnings.append("sex: mapped HL7 v2 codes to FHIR ones: "
                        + ", ".join(f"{n} rows '{code.upper()}' -> {SEX_HL7_V2[code]}" for code, n in mapped.items()))
    other = {code: int(counts[code]) for code in SEX_NOT_BINARY if code in counts}
    if other:
        warnings.append(f"sex: {sum(other.values())} rows with codes {sorted(other)} are neither male nor female "
                        f"and are left out of the fit")
    indicator = text.map(lambda code: SEX_CODES.get(SEX_HL7_V2.get(code, code), np.nan) if isinstance(code, str)
                         else np.nan)
    return indicator.astype(float), warnings


@dataclass
class Design:
    """The complete cases as (X with a leading intercept column, y), and what was left out and why."""

    x: np.ndarray
    y: np.ndarray
    excluded: int
    missing: dict[str, int]
    warnings: list[str] = field(default_factory=list)


def design(frame: pd.DataFrame, features: list[str], outcome: str) -> Design:
    frame = frame.copy()
    warnings: list[str] = []
    if "male" in features and "male" not in frame.columns and "sex" in frame.columns:
        frame["male"], warnings = male_indicator(frame["sex"])
    missing_columns = [c for c in [*features, outcome] if c not in frame.columns]
    if missing_columns:
        raise ValueError(f"columns {missing_columns} are not in the dataset; available: {list(frame.columns)}")
    used = frame[[*features, outcome]]
    numbers = used.apply(pd.to_numeric, errors="coerce")
    for column in used.columns:
        bad = used[column][numbers[column].isna() & used[column].notna()]
        if len(bad):
            raise ValueError(f"column {column!r} has values that are not numbers, e.g. {sorted(map(str, set(bad)))[:5]}; "
                             f"code them as numbers (empty cells count as missing)")
    missing = {column: int(n) for column, n in numbers.isna().sum().items() if n}
    complete = numbers.dropna()
    y = complete[outcome].to_numpy(dtype=float)
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(f"outcome column {outcome!r} must be 0/1, found {sorted(set(y) - {0.0, 1.0})[:5]}")
    x = np.column_stack([np.ones(len(complete)), complete[features].to_numpy(dtype=float)])
    return Design(x, y, int(len(frame) - len(complete)), missing, warnings)


def logistic(eta: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-eta)) without overflow for any eta."""
    return 0.5 * (1.0 + np.tanh(0.5 * eta))


def side_counts(x: np.ndarray, y: np.ndarray, direction: np.ndarray) -> dict[str, int]:
    """Rows whose outcome lies on the wrong side of, on, or on the right side of the hyperplane x.d = 0."""
    signed = (2.0 * y - 1.0) * (x @ direction)
    tolerance = SIDE_TOLERANCE * np.abs(x).max(axis=1) * np.abs(direction).max()
    return {"wrong": int((signed < -tolerance).sum()), "tied": int((np.abs(signed) <= tolerance).sum()),
            "right": int((signed > tolerance).sum())}


def local_terms(x: np.ndarray, y: np.ndarray, beta: np.ndarray) -> dict[str, Any]:
    """Gradient, Hessian (of the negative log-likelihood) and log-likelihood at ``beta``."""
    eta = x @ beta
    p = logistic(eta)
    w = p * (1.0 - p)
    loglik = float(np.sum(y * eta - np.logaddexp(0.0, eta)))
    return {"n": int(len(y)), "gradient": x.T @ (y - p), "hessian": (x * w[:, None]).T @ x, "loglik": loglik}


def check_predictors(terms: list[str], cross_products: np.ndarray, n: int) -> np.ndarray:
    """Raise ValueError naming constant or collinear predictors; return the pooled standard deviations.

    ``cross_products`` is X'X of the pooled complete cases (intercept first): its first row holds the
    column sums, its diagonal the sums of squares.
    """
    means = cross_products[0] / n
    covariance = cross_products / n - np.outer(means, means)
    variance = np.diag(covariance)[1:]
    constant = [(terms[j + 1], means[j + 1]) for j, v in enumerate(variance)
                if v <= 1e-10 * max(means[j + 1] ** 2, 1e-300)]
    if constant:
        raise ValueError("predictor(s) " + ", ".join(f"{name!r} (always {value:g})" for name, value in constant)
                         + " take a single value in every row of every node, so their effect cannot be told apart "
                           "from the intercept; remove them from features")
    sd = np.sqrt(variance)
    correlation = covariance[1:, 1:] / np.outer(sd, sd)
    eigenvalues, eigenvectors = np.linalg.eigh(correlation)
    if eigenvalues[0] <= 1e-10 * len(sd):
        loading = np.abs(eigenvectors[:, 0])
        names = [terms[j + 1] for j in np.flatnonzero(loading >= 0.1 * loading.max())]
        raise ValueError(f"predictors {names} are perfectly collinear (one is a linear combination of the others "
                         f"on the pooled data), so their coefficients are not identified; remove one of them")
    return np.concatenate([[1.0], sd])


def separation_error(terms: list[str], direction: np.ndarray, sd: np.ndarray, tied: int) -> ValueError:
    """The error for data that ``direction`` separates (``tied`` rows on the boundary: quasi-complete)."""
    weight = np.abs(direction[1:]) * sd[1:]
    names = [repr(terms[j + 1]) for j in np.flatnonzero(weight >= 0.1 * weight.max())] if weight.max() > 0 else []
    which = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names) or "the intercept"
    verb = "predicts" if len(names) == 1 else "predict"
    kind = (f"quasi-complete separation: {which} {verb} the outcome without error except for rows exactly on the "
            f"boundary" if tied else f"perfect separation: {which} {verb} the outcome without error (every row with "
            f"outcome 1 lies on one side of a threshold, every row with outcome 0 on the other)")
    return ValueError(f"{kind}. The maximum likelihood estimates do not exist: the coefficients grow without bound "
                      f"and their standard errors are meaningless. Remove or coarsen {which}, or use a penalized "
                      f"(Firth) logistic regression")


def coefficient_table(terms: list[str], beta: np.ndarray, hessian: np.ndarray, n: int | None,
                      excluded: int | None, iterations: int) -> pd.DataFrame:
    se = np.sqrt(np.diag(np.linalg.inv(hessian)))
    z = beta / se
    rows = [{"term": term, "coef": b, "std_error": s, "z": zz, "p_value": math.erfc(abs(zz) / math.sqrt(2)),
             "ci_low": b - Z_95 * s, "ci_high": b + Z_95 * s, "odds_ratio": math.exp(b), "n": n,
             "n_excluded": excluded, "iterations": iterations}
            for term, b, s, zz in zip(terms, beta, se, z, strict=True)]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame[["n", "n_excluded"]] = frame[["n", "n_excluded"]].astype("Int64")
    return frame


def coefficients(table_csv: str) -> np.ndarray:
    return pd.read_csv(io.StringIO(table_csv))["coef"].to_numpy(dtype=float)


class RegressionAnalyzer(StarAnalyzer):
    def __init__(self, flame, features: str = ALGORITHM["arguments"][1]["default"], outcome: str = "outcome",
                 min_rows: int = 10, **_: Any) -> None:
        super().__init__(flame)
        self.features, self.outcome, self.min_rows = feature_list(features), outcome, int(min_rows)
        self.design: Design | None = None
        self.beta: np.ndarray | None = None

    def load(self, data: list[dict[str, Any]]) -> Design:
        rows = design(read_table(data), self.features, self.outcome)
        for warning in rows.warnings:
            self.flame.flame_log(warning, log_type="warn")
        if rows.excluded:
            self.flame.flame_log(f"{rows.excluded} rows left out (complete-case analysis); missing values per "
                                 f"column: {rows.missing}", log_type="warn")
        if len(rows.y) < self.min_rows:
            raise ValueError(f"only {len(rows.y)} complete rows on this node, fewer than min_rows={self.min_rows}")
        self.flame.flame_log(f"{len(rows.y)} complete rows, {int(rows.y.sum())} events")
        return rows

    def analysis_method(self, data, aggregator_results):
        if self.design is None:
            self.design = self.load(data)
        x, y = self.design.x, self.design.y
        beta = np.zeros(x.shape[1]) if aggregator_results is None else coefficients(aggregator_results)
        terms = local_terms(x, y, beta)
        no_step = {"wrong": 0, "tied": 0, "right": 0}  # round 1 (numbers only, so that they can be summed)
        terms.update(events=int(y.sum()), excluded=self.design.excluded, nodes=1,
                     sides=no_step if self.beta is None else side_counts(x, y, beta - self.beta))
        self.beta = beta
        return terms


class RegressionAggregator(StarAggregator):
    def __init__(self, flame, features: str = ALGORITHM["arguments"][1]["default"], tolerance: float = 1e-10,
                 **disclosure: Any) -> None:
        super().__init__(flame)
        self.terms = ["intercept", *feature_list(features)]
        self.tolerance = float(tolerance)
        self.config = DisclosureConfig.from_mapping(disclosure)
        self.beta = np.zeros(len(self.terms))
        self.step = np.zeros(len(self.terms))
        self.sd = np.ones(len(self.terms))

    def aggregation_method(self, analysis_results):
        gradient = sum(r["gradient"] for r in analysis_results)
        hessian = sum(r["hessian"] for r in analysis_results)
        n = sum(r["n"] for r in analysis_results)
        if self.num_iterations == 0:
            self.check_first_round(analysis_results, hessian, n)
        else:
            self.check_separation(analysis_results)
        loglik = sum(r["loglik"] for r in analysis_results)
        try:
            self.step = np.linalg.solve(hessian, gradient)
        except np.linalg.LinAlgError:
            raise ValueError(f"round {self.num_iterations + 1}: the Hessian is singular (fitted probabilities of 0 "
                             f"or 1 for nearly every row), a sign of separation; remove the strongest predictors "
                             f"or use a penalized fit") from None
        self.beta = self.beta + self.step
        self.flame.flame_log(f"round {self.num_iterations + 1}: log-likelihood {loglik:.6f}")
        excluded = sum(r["excluded"] for r in analysis_results)
        table = coefficient_table(self.terms, self.beta, hessian, publish_count(n, self.config),
                                  publish_count(excluded, self.config), self.num_iterations + 1)
        return table.to_csv(index=False)

    def check_first_round(self, results: list[dict[str, Any]], hessian: np.ndarray, n: int) -> None:
        """Disclosure and identifiability, on the pooled counts and X'X (the Hessian at zero is X'X / 4)."""
        check_contributing_nodes(sum(r["nodes"] for r in results), self.config, "the regression")
        events = sum(r["events"] for r in results)
        if events in (0, n):
            raise ValueError(f"the outcome is {int(events > 0)} in every complete row of every node; there is "
                             f"nothing to estimate")
        check_count("events (outcome 1)", events, self.config)
        check_count("non-events (outcome 0)", n - events, self.config)
        self.sd = check_predictors(self.terms, 4.0 * hessian, n)

    def check_separation(self, results: list[dict[str, Any]]) -> None:
        """Fail if the last step's direction separates the outcomes (no row on its wrong side)."""
        sides = {key: sum(r["sides"][key] for r in results) for key in ("wrong", "tied", "right")}
        if sides["wrong"] == 0 and sides["right"] > 0:
            raise separation_error(self.terms, self.step, self.sd, sides["tied"])

    def has_converged(self, result, last_result):
        if last_result is None:
            return False
        return bool(np.max(np.abs(coefficients(result) - coefficients(last_result))) <= self.tolerance)


def pooled_fit(data: list[dict[str, Any]], features: str = ALGORITHM["arguments"][1]["default"],
               outcome: str = "outcome", tolerance: float = 1e-12, max_iterations: int = 100) -> pd.DataFrame:
    """The reference: Newton-Raphson on all complete rows at once (no disclosure control, no checks)."""
    names = feature_list(features)
    rows = design(read_table(data), names, outcome)
    beta, iterations = np.zeros(rows.x.shape[1]), 0
    while iterations < max_iterations:
        iterations += 1
        terms = local_terms(rows.x, rows.y, beta)
        beta, previous = beta + np.linalg.solve(terms["hessian"], terms["gradient"]), beta
        if np.max(np.abs(beta - previous)) <= tolerance:
            break
    hessian = local_terms(rows.x, rows.y, beta)["hessian"]
    return coefficient_table(["intercept", *names], beta, hessian, len(rows.y), rows.excluded, iterations)


def extensions(**values: Any) -> dict[str, Any]:
    """flame_sdk's keyword extensions of StarModel, left out where the installed templates lack them."""
    known = inspect.signature(StarModel).parameters
    return {key: value for key, value in values.items() if key in known}


def star_arguments(env: dict[str, str] | None = None) -> dict[str, Any]:
    """The StarModel arguments of this analysis (also used by the local tester)."""
    args = read_arguments(env)
    disclosure = {key: args[key] for key in ("min_cell_size", "min_contributing_nodes", "rounding_base")}
    arguments = {
        "analyzer": RegressionAnalyzer,
        "aggregator": RegressionAggregator,
        "data_type": "s3",
        "query": ALGORITHM["query"],
        "simple_analysis": False,
        "output_type": "str",
        "analyzer_kwargs": {"features": args["features"], "outcome": args["outcome"], "min_rows": args["min_rows"]},
        "aggregator_kwargs": {"features": args["features"], "tolerance": args["tolerance"], **disclosure},
    }
    options = {"secure_sum": True} if args["secure_sum"] else {}
    if args["min_nodes"] > 0:
        options["min_nodes"] = args["min_nodes"]
    return {**arguments, **extensions(max_rounds=args["max_rounds"], result_filename=f"{ALGORITHM['name']}.csv",
                                      **options)}


def main() -> None:
    StarModel(**star_arguments())


if __name__ == "__main__":
    main()
