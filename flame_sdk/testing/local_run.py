"""Run a whole star analysis (N-1 analyzers + 1 aggregator) in one process over the simulator.

Every node runs its StarModel in its own thread with its own ``FlameCoreSDK``, talking real HTTP on
loopback to the simulated hub and node services (real encryption, real FHIR/S3 data). The same seed
gives the same node ids and synthetic data, so a run is repeatable.
"""

from __future__ import annotations

import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

from flame_sdk.star.aggregator import StarAggregator
from flame_sdk.star.analyzer import StarAnalyzer
from flame_sdk.star.local_dp_model import StarLocalDPModel, check_local_dp
from flame_sdk.star.model import StarModel, check_arguments, check_privacy_options
from flame_sdk.star.participation import METADATA_FILENAME, Participation
from flame_sdk.star.run_errors import StarRunError
from flame_sdk.testing.given_data import GivenDataSDK

#: Bound on a whole local run (seconds) unless the caller gives one.
DEFAULT_RUN_TIMEOUT = 300.0
#: Bound on waiting for the hub to record the final statuses once every node thread ended (seconds).
HUB_SETTLE_TIMEOUT = 10.0
#: How long a node waits for the simulated PO to poll its final status before its SDK is closed (seconds).
REPORT_TIMEOUT = 30.0


@dataclass
class NodeRun:
    """What one node did: its role, final status on the hub, error (if any) and streamed logs.

    ``result``: an analyzer's last result; the aggregator's result as released (see :class:`LocalRun`).
    """

    node_id: str
    name: str
    role: str
    status: str = "unknown"
    error: BaseException | None = None
    result: Any = None
    data: Any = None
    logs: list[dict[str, Any]] = field(default_factory=list)

    def log_text(self) -> str:
        return "\n".join(f"[{self.name}] {r['log_type']}: {r['log']}" for r in self.logs)


@dataclass
class LocalRun:
    """Outcome of :func:`run_local`.

    ``result`` is the aggregator's result as released: the object it submitted, or with local differential
    privacy the noised number the result service stored (read from the final file; a list of them with
    ``multiple_results``). ``result_before_noise`` holds the aggregator's own value before the noise (None
    without local DP); never publish it.
    """

    analysis_id: str
    nodes: dict[str, NodeRun]
    result: Any = None
    rounds: int = 0
    converged: bool = False
    final_results: list[tuple[str, bytes]] = field(default_factory=list)
    result_before_noise: Any = None
    participation: Participation | None = None

    @property
    def aggregator(self) -> NodeRun:
        return next(n for n in self.nodes.values() if n.role == "aggregator")

    def logs(self, name: str) -> list[dict[str, Any]]:
        """Log records of one node, by node name (``node-0`` ...) or id."""
        for node in self.nodes.values():
            if name in (node.name, node.node_id):
                return node.logs
        raise KeyError(f"no node {name!r}; nodes: {[n.name for n in self.nodes.values()]}")

    def failure(self) -> BaseException | None:
        """The error to report: the one raised where the failure started, else the most specific one."""
        errors = [(n.node_id, n.error) for n in self.nodes.values() if n.error is not None]

        def rank(item: tuple[str, BaseException]) -> int:
            node_id, error = item
            if not isinstance(error, StarRunError):
                return 4
            if error.relayed:
                return 2
            return 0 if error.node_id == node_id else 1 if error.node_id else 3

        return min(errors, key=rank)[1] if errors else None


def split_specs(data_splits: list[list[dict[str, Any]]], data_type: Literal["fhir", "s3"]) -> list[list[dict[str, Any]]]:
    """Simulator data source specs from per-node data in the shape ``get_fhir_data``/``get_s3_data`` return."""
    specs = []
    for index, split in enumerate(data_splits, start=1):
        check_split(split, data_type, index)
        sources = []
        for number, source in enumerate(split):
            name = f"split{index}-{data_type}-{number}"
            if data_type == "s3":
                objects = {key: value.encode() if isinstance(value, str) else bytes(value)
                           for key, value in source.items()}
                sources.append({"kind": "s3", "name": name, "objects": objects})
            else:
                sources.append({"kind": "fhir", "name": name, "resources": list(source.values())})
        specs.append(sources)
    return specs


def platform_shape(data_type: str) -> str:
    """The data shape of ``get_<data_type>_data`` on a node, in words."""
    return ("a list with one dict per data source, mapping dataset name (S3 key) to bytes" if data_type == "s3"
            else "a list with one dict per data source, mapping FHIR query to a Bundle dict")


def shape_problem(split: Any, data_type: str) -> str | None:
    """Why ``split`` is not in the shape ``get_<data_type>_data`` returns on a node; None if it is."""
    if not isinstance(split, list) or not split or not all(isinstance(s, dict) and s for s in split):
        return f"it is {type(split).__name__}: {str(split)[:80]}"
    for source in split:
        for key, value in source.items():
            ok = isinstance(value, (bytes, bytearray, str)) if data_type == "s3" else \
                isinstance(value, dict) and value.get("resourceType") == "Bundle"
            if not isinstance(key, str) or not ok:
                expected = "bytes" if data_type == "s3" else "a FHIR Bundle dict"
                return f"its entry {key!r} is {type(value).__name__}, where a node has {expected}"
    return None


def check_split(split: Any, data_type: str, index: int) -> None:
    """Raise a ValueError explaining the platform's data shape when a split does not have it."""
    problem = shape_problem(split, data_type)
    if problem is not None:
        raise ValueError(f"data split {index} must be {platform_shape(data_type)} (what get_{data_type}_data "
                         f"returns on a node), but {problem}")


def platform_shaped(data_splits: Any, data_type: str) -> bool:
    """Check ``data_splits`` (one entry per data node) and tell whether every split has the node's data shape.

    Any Python object is a valid split, as in the reference tester; splits not in the node's shape are handed
    to the analyzers as given, with a warning that the analysis may then fail on a node. Raises ValueError
    when ``data_splits`` itself is not a non-empty list, or a split is None.
    """
    if data_type not in ("fhir", "s3"):
        raise ValueError(f"data_type must be 'fhir' or 's3', got {data_type!r}")
    if not isinstance(data_splits, (list, tuple)) or not data_splits:
        raise ValueError(f"data_splits must be a non-empty list with one entry per data node (that node's data), "
                         f"got {type(data_splits).__name__}: {str(data_splits)[:80]}")
    empty = [index for index, split in enumerate(data_splits, start=1) if split is None]
    if empty:
        raise ValueError(f"data split(s) {empty} are None; give every data node its data (one entry per node)")
    problems = [(index, shape_problem(split, data_type)) for index, split in enumerate(data_splits, start=1)]
    odd = [(index, problem) for index, problem in problems if problem is not None]
    if not odd:
        return True
    index, problem = odd[0]
    warnings.warn(
        f"data split {index} is not in the shape a FLAME node gives an analysis ({problem}): on a node, "
        f"get_{data_type}_data returns {platform_shape(data_type)}. The splits are handed to the analyzers as "
        f"given, so this run may pass while the analysis fails on a node. Splits in the node's shape go through "
        f"the simulated {data_type.upper()} service instead.", UserWarning, stacklevel=3)
    return False


def run_local(
    analyzer: type[StarAnalyzer],
    aggregator: type[StarAggregator],
    data_type: Literal["fhir", "s3"],
    *,
    query: str | list[str] | None = None,
    data_splits: list[Any] | None = None,
    nodes: int = 3,
    seed: int = 0,
    simple_analysis: bool = True,
    output_type: Any = "str",
    multiple_results: bool = False,
    analyzer_kwargs: dict[str, Any] | None = None,
    aggregator_kwargs: dict[str, Any] | None = None,
    epsilon: float | None = None,
    sensitivity: float | None = None,
    max_rounds: int = 100,
    round_timeout: float = 60.0,
    ready_timeout: float = 60.0,
    result_filename: str | list[str] | None = None,
    timeout: float = DEFAULT_RUN_TIMEOUT,
    simulation: Any = None,
    raise_on_failure: bool = True,
    faults: float = 0.0,
    fault_seed: int = 0,
    quiet: bool = False,
    secure_sum: bool = False,
    min_nodes: int | None = None,
    disclosure: Any = None,
) -> LocalRun:
    """Run the analysis on a fresh simulator (or on ``simulation``) and return the outcome.

    The first three arguments are positional (as in ``StarModel``), every other one is keyword-only; the
    analysis arguments are those of ``StarModel`` / ``StarLocalDPModel`` and are checked before anything
    starts. ``data_splits`` (one entry per data node) replaces the synthetic data; then ``nodes`` is
    ``len(data_splits) + 1``. Splits in the shape of ``get_fhir_data``/``get_s3_data`` are served by the
    simulated data services; any other Python object (a list of numbers, a DataFrame, ...) is handed to that
    node's analyzer as given (see :func:`platform_shaped`). ``faults`` gives each request through a node
    gateway a seeded fault with that probability (``fault_seed``), as ``flame-sim run --faults``.
    ``secure_sum``, ``min_nodes`` and ``disclosure`` are passed to the templates (see
    :class:`~flame_sdk.star.model.StarModel`); the aggregator's participation record is ``run.participation``.
    ``quiet=True`` prints nothing (every node's log is still in the returned run). With ``raise_on_failure``
    a failed run raises the error of the node that caused it (``StarRunError`` naming it); the run is
    ``error.run``.
    """
    from flame_sdk.sim.run.simulation import SimConfig, Simulation

    check_arguments(analyzer, aggregator, data_type, query, max_rounds, round_timeout, ready_timeout)
    check_local_dp(epsilon, sensitivity)
    check_privacy_options(secure_sum, min_nodes, disclosure)
    if simulation is not None and faults:
        raise ValueError("give faults or simulation, not both: set SimConfig(faults=...) on the simulation")
    given: list[Any] | None = None
    if data_splits is not None:
        if simulation is not None:
            raise ValueError("give data_splits or simulation, not both: a running simulation has its data already")
        nodes = len(data_splits) + 1
        if not platform_shaped(data_splits, data_type):
            given = list(data_splits)
    model_kwargs = dict(query=query, simple_analysis=simple_analysis, output_type=output_type,
                        multiple_results=multiple_results, analyzer_kwargs=analyzer_kwargs,
                        aggregator_kwargs=aggregator_kwargs, max_rounds=max_rounds, round_timeout=round_timeout,
                        ready_timeout=ready_timeout, result_filename=result_filename)
    if epsilon is not None or sensitivity is not None:
        model_kwargs.update(epsilon=epsilon, sensitivity=sensitivity)
    options = {"secure_sum": secure_sum, "min_nodes": min_nodes, "disclosure": disclosure}
    model_kwargs.update({key: value for key, value in options.items() if value not in (None, False)})
    model_class = StarLocalDPModel if "epsilon" in model_kwargs else StarModel
    if simulation is not None:
        return _run(simulation, model_class, analyzer, aggregator, data_type, model_kwargs, timeout,
                    raise_on_failure, multiple_results, quiet)
    # Given objects travel in-process; the data nodes keep synthetic data sources, as a node has a data store.
    node_data = None if data_splits is None or given is not None else split_specs(data_splits, data_type)
    with Simulation(SimConfig(nodes=nodes, seed=seed, node_data=node_data, status_interval=0.2, faults=faults,
                              fault_seed=fault_seed)) as sim:
        return _run(sim, model_class, analyzer, aggregator, data_type, model_kwargs, timeout, raise_on_failure,
                    multiple_results, quiet, given)


def _run(sim: Any, model_class: type[StarModel], analyzer: type[StarAnalyzer], aggregator: type[StarAggregator],
         data_type: Literal["fhir", "s3"], model_kwargs: dict[str, Any], timeout: float, raise_on_failure: bool,
         multiple_results: bool, quiet: bool, given: list[Any] | None = None) -> LocalRun:
    from flame_sdk.core import FlameCoreSDK

    analysis = sim.create_analysis()
    runs = {node_id: NodeRun(node_id, sim.node(node_id).spec.name,
                             "aggregator" if node_id == analysis.aggregator_id else "default")
            for node_id in analysis.node_ids}
    models: dict[str, StarModel] = {}
    data_index = {spec.node_id: index - 1 for index, spec in enumerate(sim.specs) if index > 0}

    def run_node(node_id: str) -> None:
        try:
            env = analysis.env(node_id)
            flame = FlameCoreSDK(env=env, silent=quiet) if given is None or node_id == analysis.aggregator_id \
                else GivenDataSDK(given[data_index[node_id]], data_type, env=env, silent=quiet)
        except BaseException as exc:  # noqa: BLE001 - reported per node
            runs[node_id].error = exc
            return
        try:  # as StarModel does with an SDK of its own: stay until the node saw the final status
            models[node_id] = model_class(analyzer, aggregator, data_type, flame=flame, **model_kwargs)
        except BaseException as exc:  # noqa: BLE001 - reported per node
            runs[node_id].error = exc
        finally:
            flame.wait_until_reported(REPORT_TIMEOUT)
            flame.close()

    threads = [threading.Thread(target=run_node, args=(n,), name=f"flame-{runs[n].name}", daemon=True)
               for n in analysis.node_ids]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [runs[n].name for n, t in zip(analysis.node_ids, threads, strict=True) if t.is_alive()]
    if not stuck:  # the hub records a node's last status just after the node served it
        try:
            analysis.wait_finished(timeout=HUB_SETTLE_TIMEOUT)
        except TimeoutError:
            pass  # reported below with whatever status the hub has

    run = LocalRun(analysis.analysis_id, {r.name: r for r in runs.values()})
    for node_id, node in runs.items():
        node.status = analysis.status(node_id)
        node.logs = analysis.logs(node_id)
        model = models.get(node_id)
        if model is not None:
            node.result, node.data = model.result, model.data
            if node.role == "aggregator":
                run.result, run.rounds, run.converged = model.result, model.rounds, model.converged
                run.participation = model.participation
    run.final_results = analysis.final_results()
    if "epsilon" in model_kwargs and run.final_results:
        from flame_sdk.sim.common.laplace import parse_value  # the stored file is the noised number

        released = [parse_value(content) for name, content in run.final_results if name != METADATA_FILENAME]
        run.result_before_noise = run.result
        run.result = released if multiple_results else released[0]
        run.aggregator.result = run.result
    if stuck:
        raise TimeoutError(f"local run {analysis.analysis_id}: node(s) {stuck} still running after {timeout:g} s")
    error = run.failure()
    if error is not None and raise_on_failure:
        error.run = run  # type: ignore[attr-defined]
        raise error
    return run
