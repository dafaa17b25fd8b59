"""Federated logistic regression by Newton-Raphson (IRLS) over the nodes' gradients and Hessians.

Round k: every data node evaluates, at the coefficients the aggregator sent (zeros in round 1), the
gradient and Hessian of its log-likelihood; the aggregator sums them and takes one Newton step. The run
stops once no coefficient moves by more than ``tolerance``; the result is the fit of the pooled data.
The final result is a CSV table with coefficients, standard errors, z, p, 95% confidence intervals and
odds ratios. Data: the S3 CSV dataset (one row per patient) of each node.
"""

from __future__ import annotations

import inspect
import io
import math
import os
from typing import Any

import numpy as np
import pandas as pd

from flame.star import StarAggregator, StarAnalyzer, StarModel

ALGORITHM = {
    "name": "logistic_regression",
    "description": "Federated logistic regression (Newton-Raphson on summed gradients and Hessians); equals "
                   "the pooled maximum likelihood fit.",
    "data_type": "s3",
    "query": ["cohort.csv"],
    "output": "CSV table: term, coef, std_error, z, p_value, ci_low, ci_high, odds_ratio, n, iterations",
    "arguments": [
        {"name": "outcome", "type": "str", "default": "outcome", "description": "0/1 outcome column"},
        {"name": "features", "type": "str", "default": "age,bmi,systolic_bp,cholesterol,smoker,male",
         "description": "comma-separated predictor columns; 'male' is derived from sex"},
        {"name": "tolerance", "type": "float", "default": 1e-10,
         "description": "stop when no coefficient changes by more than this between rounds"},
        {"name": "max_rounds", "type": "int", "default": 50, "description": "upper bound on Newton rounds"},
        {"name": "min_rows", "type": "int", "default": 10,
         "description": "a node with fewer complete rows refuses to take part"},
    ],
}
COLUMNS = ["term", "coef", "std_error", "z", "p_value", "ci_low", "ci_high", "odds_ratio", "n", "iterations"]
Z_95 = 1.959963984540054


def read_arguments(env: dict[str, str] | None = None) -> dict[str, Any]:
    """Defaults from ALGORITHM, overridden by ``ALGO_<NAME>`` environment variables."""
    env = dict(os.environ) if env is None else env
    out: dict[str, Any] = {}
    for arg in ALGORITHM["arguments"]:
        raw = env.get(f"ALGO_{arg['name'].upper()}")
        out[arg["name"]] = arg["default"] if raw is None else {"int": int, "float": float, "str": str}[arg["type"]](raw)
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


def design(frame: pd.DataFrame, features: list[str], outcome: str) -> tuple[np.ndarray, np.ndarray]:
    """(X with a leading intercept column, y) from complete rows."""
    frame = frame.copy()
    if "male" in features and "male" not in frame.columns and "sex" in frame.columns:
        frame["male"] = (frame["sex"].astype(str).str.lower() == "male").astype(float)
    missing = [c for c in [*features, outcome] if c not in frame.columns]
    if missing:
        raise ValueError(f"columns {missing} are not in the dataset; available: {list(frame.columns)}")
    frame = frame[[*features, outcome]].apply(pd.to_numeric, errors="coerce").dropna()
    y = frame[outcome].to_numpy(dtype=float)
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(f"outcome column {outcome!r} must be 0/1")
    x = np.column_stack([np.ones(len(frame)), frame[features].to_numpy(dtype=float)])
    return x, y


def local_terms(x: np.ndarray, y: np.ndarray, beta: np.ndarray) -> dict[str, Any]:
    """Gradient, Hessian (of the negative log-likelihood) and log-likelihood at ``beta``."""
    eta = x @ beta
    p = 1.0 / (1.0 + np.exp(-eta))
    w = p * (1.0 - p)
    loglik = float(np.sum(y * eta - np.logaddexp(0.0, eta)))
    return {"n": int(len(y)), "gradient": x.T @ (y - p), "hessian": (x * w[:, None]).T @ x, "loglik": loglik}


def newton_step(beta: np.ndarray, gradient: np.ndarray, hessian: np.ndarray) -> np.ndarray:
    return beta + np.linalg.solve(hessian, gradient)


def coefficient_table(terms: list[str], beta: np.ndarray, hessian: np.ndarray, n: int,
                      iterations: int) -> pd.DataFrame:
    se = np.sqrt(np.diag(np.linalg.inv(hessian)))
    z = beta / se
    rows = [{"term": term, "coef": b, "std_error": s, "z": zz, "p_value": math.erfc(abs(zz) / math.sqrt(2)),
             "ci_low": b - Z_95 * s, "ci_high": b + Z_95 * s, "odds_ratio": math.exp(b), "n": n,
             "iterations": iterations}
            for term, b, s, zz in zip(terms, beta, se, z, strict=True)]
    return pd.DataFrame(rows, columns=COLUMNS)


def coefficients(table_csv: str) -> np.ndarray:
    return pd.read_csv(io.StringIO(table_csv))["coef"].to_numpy(dtype=float)


def pooled_fit(data: list[dict[str, Any]], features: str = ALGORITHM["arguments"][1]["default"],
               outcome: str = "outcome", tolerance: float = 1e-12, max_iterations: int = 100) -> pd.DataFrame:
    """The reference: Newton-Raphson on all rows at once."""
    names = feature_list(features)
    x, y = design(read_table(data), names, outcome)
    beta, iterations = np.zeros(x.shape[1]), 0
    while iterations < max_iterations:
        iterations += 1
        terms = local_terms(x, y, beta)
        beta, previous = newton_step(beta, terms["gradient"], terms["hessian"]), beta
        if np.max(np.abs(beta - previous)) <= tolerance:
            break
    return coefficient_table(["intercept", *names], beta, local_terms(x, y, beta)["hessian"], len(y), iterations)


class RegressionAnalyzer(StarAnalyzer):
    def __init__(self, flame, features: str = ALGORITHM["arguments"][1]["default"], outcome: str = "outcome",
                 min_rows: int = 10, **_: Any) -> None:
        super().__init__(flame)
        self.features, self.outcome, self.min_rows = feature_list(features), outcome, int(min_rows)
        self.x: np.ndarray | None = None
        self.y: np.ndarray | None = None

    def analysis_method(self, data, aggregator_results):
        if self.x is None:
            self.x, self.y = design(read_table(data), self.features, self.outcome)
            if len(self.y) < self.min_rows:
                raise ValueError(f"only {len(self.y)} complete rows on this node, fewer than min_rows={self.min_rows}")
            self.flame.flame_log(f"{len(self.y)} complete rows, {int(self.y.sum())} events")
        beta = np.zeros(self.x.shape[1]) if aggregator_results is None else coefficients(aggregator_results)
        return local_terms(self.x, self.y, beta)


class RegressionAggregator(StarAggregator):
    def __init__(self, flame, features: str = ALGORITHM["arguments"][1]["default"], tolerance: float = 1e-10,
                 **_: Any) -> None:
        super().__init__(flame)
        self.terms = ["intercept", *feature_list(features)]
        self.tolerance = float(tolerance)
        self.beta = np.zeros(len(self.terms))

    def aggregation_method(self, analysis_results):
        gradient = sum(r["gradient"] for r in analysis_results)
        hessian = sum(r["hessian"] for r in analysis_results)
        n = sum(r["n"] for r in analysis_results)
        loglik = sum(r["loglik"] for r in analysis_results)
        self.beta = newton_step(self.beta, gradient, hessian)
        self.flame.flame_log(f"round {self.num_iterations + 1}: log-likelihood {loglik:.6f}")
        table = coefficient_table(self.terms, self.beta, hessian, n, self.num_iterations + 1)
        return table.to_csv(index=False)

    def has_converged(self, result, last_result):
        if last_result is None:
            return False
        return bool(np.max(np.abs(coefficients(result) - coefficients(last_result))) <= self.tolerance)


def extensions(**values: Any) -> dict[str, Any]:
    """flame_sdk's keyword extensions of StarModel, left out where the installed templates lack them."""
    known = inspect.signature(StarModel).parameters
    return {key: value for key, value in values.items() if key in known}


def star_arguments(env: dict[str, str] | None = None) -> dict[str, Any]:
    """The StarModel arguments of this analysis (also used by the local tester)."""
    args = read_arguments(env)
    arguments = {
        "analyzer": RegressionAnalyzer,
        "aggregator": RegressionAggregator,
        "data_type": "s3",
        "query": ALGORITHM["query"],
        "simple_analysis": False,
        "output_type": "str",
        "analyzer_kwargs": {"features": args["features"], "outcome": args["outcome"], "min_rows": args["min_rows"]},
        "aggregator_kwargs": {"features": args["features"], "tolerance": args["tolerance"]},
    }
    return {**arguments, **extensions(max_rounds=args["max_rounds"], result_filename=f"{ALGORITHM['name']}.csv")}


def main() -> None:
    StarModel(**star_arguments())


if __name__ == "__main__":
    main()
