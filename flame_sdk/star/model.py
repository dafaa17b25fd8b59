"""StarModel: runs a star analysis (analyzers on data nodes, one aggregator) on this node.

Differences to the reference template, all on purpose: a bound on rounds and on each round's wait, a node
that raises stops every node with that node's error, state lives on instances, and the process ends
without a busy loop once the node has seen the final status.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from typing import Any, Literal

from flame_sdk.errors import AnalysisError
from flame_sdk.interface import FlameSDK
from flame_sdk.star.aggregator import StarAggregator
from flame_sdk.star.analyzer import StarAnalyzer
from flame_sdk.star.exchange import Exchange
from flame_sdk.star.run_errors import NodeFailedError, StarRunError

DEFAULT_MAX_ROUNDS = 100
DEFAULT_ROUND_TIMEOUT = 600.0
DEFAULT_READY_TIMEOUT = 300.0
#: Seconds between ready-check attempts: partners that start later are found within this long.
READY_ATTEMPT_INTERVAL = 2
#: How long the node is given to poll the final status before the process may exit (seconds).
DEFAULT_REPORT_TIMEOUT = 120.0

OutputType = Literal["str", "bytes", "pickle"] | list[str]


def _check_class(cls: Any, base: type, name: str) -> None:
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise TypeError(f"{name} must be a subclass of {base.__name__} (pass the class, not an instance), "
                        f"got {cls!r}")


class StarModel:
    """Construct it to run the analysis: the node's role picks the analyzer or the aggregator.

    The documented arguments are those of the FLAME star template. Keyword-only extensions:

    * ``flame``: an existing SDK object (e.g. :class:`flame_sdk.testing.FakeFlameSDK`); the caller keeps
      ownership. ``env``: node environment for a new ``FlameCoreSDK`` (default ``os.environ``).
    * ``max_rounds``: an iterative run stops after this many rounds; the last result is submitted with a
      warning (``self.converged`` is then False).
    * ``round_timeout``: seconds a node waits for its partners' data in one round; a silent node is named.
    * ``ready_timeout``: seconds the start-up ready check waits for partners.
    * ``result_filename``: passed to ``submit_final_result`` as ``filename``.
    * ``report_timeout``: when the model created the SDK, it waits up to this long (no busy wait) for the
      node to see the final status, then closes the SDK.

    ``test_mode=True`` with ``test_kwargs`` (as in the FLAME star template) runs this node on an in-process
    fake SDK instead of a node (:func:`flame_sdk.testing.fake_network.sdk_from_test_kwargs` lists the keys):
    models started in threads with the same ``analysis_id`` in their ``test_kwargs`` exchange data with each
    other, and each node's data is ``test_kwargs['fhir_data']`` or ``['s3_data']`` exactly as given. The
    aggregator's submitted result is then ``self.flame.final_results_storage``.

    After the run: ``result`` (aggregator: the submitted result; analyzer: its last result), ``rounds``,
    ``converged``. Any failure raises :class:`StarRunError` naming the responsible node.
    """

    def __init__(
        self,
        analyzer: type[StarAnalyzer],
        aggregator: type[StarAggregator],
        data_type: Literal["fhir", "s3"],
        query: str | list[str] | None = None,
        simple_analysis: bool = True,
        output_type: OutputType = "str",
        multiple_results: bool = False,
        analyzer_kwargs: dict[str, Any] | None = None,
        aggregator_kwargs: dict[str, Any] | None = None,
        test_mode: bool = False,
        test_kwargs: dict[str, Any] | None = None,
        *,
        flame: FlameSDK | None = None,
        env: Mapping[str, str] | None = None,
        max_rounds: int = DEFAULT_MAX_ROUNDS,
        round_timeout: float = DEFAULT_ROUND_TIMEOUT,
        ready_timeout: float = DEFAULT_READY_TIMEOUT,
        result_filename: str | list[str] | None = None,
        report_timeout: float = DEFAULT_REPORT_TIMEOUT,
    ) -> None:
        _check_class(analyzer, StarAnalyzer, "analyzer")
        _check_class(aggregator, StarAggregator, "aggregator")
        if data_type not in ("fhir", "s3"):
            raise ValueError(f"data_type must be 'fhir' or 's3', got {data_type!r}")
        if data_type == "fhir" and not query:
            raise ValueError("a FHIR analysis needs query=... (a FHIR search such as 'Patient?_count=1000', or a "
                             "list of them)")
        if not isinstance(max_rounds, int) or max_rounds < 1:
            raise ValueError(f"max_rounds must be a positive integer, got {max_rounds!r}")
        for name, value in (("round_timeout", round_timeout), ("ready_timeout", ready_timeout)):
            if not value > 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        self.data_type = data_type
        self.query = [query] if isinstance(query, str) else query
        self.simple_analysis = simple_analysis
        self.output_type = output_type
        self.multiple_results = multiple_results
        self.max_rounds = 1 if simple_analysis else max_rounds
        self.round_timeout = float(round_timeout)
        self.ready_timeout = float(ready_timeout)
        self.result_filename = result_filename
        self.data: Any = None
        self.result: Any = None
        self.rounds = 0
        self.converged = False
        self.test_mode = bool(test_mode)
        self.test_kwargs = test_kwargs if test_mode else None

        owns_sdk = flame is None
        self.flame: FlameSDK = self._test_sdk(test_kwargs, flame, env) if test_mode else \
            flame if flame is not None else self._node_sdk(test_kwargs, env)
        self.exchange = Exchange(self.flame, self.round_timeout)
        try:
            self._run(analyzer, aggregator, analyzer_kwargs or {}, aggregator_kwargs or {})
        finally:
            if owns_sdk:
                self.flame.wait_until_reported(report_timeout)
                self.flame.close()

    @staticmethod
    def _node_sdk(test_kwargs: dict[str, Any] | None, env: Mapping[str, str] | None) -> FlameSDK:
        if test_kwargs is not None:
            raise ValueError("test_kwargs is only used with test_mode=True; pass test_mode=True to run on a test SDK, "
                             "or drop test_kwargs to run on the node")
        from flame_sdk.core import FlameCoreSDK

        return FlameCoreSDK(env=env)

    @staticmethod
    def _test_sdk(test_kwargs: dict[str, Any] | None, flame: FlameSDK | None,
                  env: Mapping[str, str] | None) -> FlameSDK:
        if flame is not None or env is not None:
            raise ValueError("test_mode=True runs on a test SDK built from test_kwargs; do not also pass flame= or env=")
        from flame_sdk.testing.fake_network import sdk_from_test_kwargs

        return sdk_from_test_kwargs(test_kwargs)

    # -- roles ----------------------------------------------------------------------------------------
    def _is_aggregator(self) -> bool:
        return self.flame.get_role() == "aggregator"

    def _is_analyzer(self) -> bool:
        return self.flame.get_role() == "default"

    def _run(self, analyzer: type[StarAnalyzer], aggregator: type[StarAggregator],
             analyzer_kwargs: dict[str, Any], aggregator_kwargs: dict[str, Any]) -> None:
        try:
            if self._is_aggregator():
                self.flame.flame_log("Aggregator started")
                self._start_aggregator(aggregator(flame=self.flame, **aggregator_kwargs))
            elif self._is_analyzer():
                self.flame.flame_log("Analyzer started")
                self._start_analyzer(analyzer(flame=self.flame, **analyzer_kwargs))
            else:
                raise StarRunError(self.flame.get_id(), f"unknown node role {self.flame.get_role()!r}")
        except Exception as exc:  # noqa: BLE001 - every failure ends the run loudly, named
            raise self._fail(exc) from exc
        self.flame.flame_log("Analysis finished!")

    def _fail(self, exc: Exception) -> StarRunError:
        """Log the failure as this node's error, tell partners unless they told us, and return the error."""
        own_id = self.flame.get_id()
        if isinstance(exc, StarRunError) and exc.node_id not in (None, own_id):
            error: StarRunError = exc  # a partner's failure or silence
        elif isinstance(exc, StarRunError) and exc.node_id is None:
            error = exc  # the platform stopped the run; partners know
        else:
            text = str(exc) if isinstance(exc, StarRunError) else \
                "".join(traceback.format_exception_only(type(exc), exc)).strip()
            self.flame.flame_log("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
                                 log_type="info")
            error = NodeFailedError(own_id, text)
        if error.node_id is not None and not error.relayed:
            self.exchange.announce_failure(error.node_id, getattr(error, "error", error.reason))
        try:
            self.flame.flame_log(str(error), log_type="error")  # marks the node failed
        except AnalysisError:
            pass
        return error

    # -- aggregator -----------------------------------------------------------------------------------
    def _start_aggregator(self, aggregator: StarAggregator) -> None:
        analyzers = aggregator.partner_node_ids
        self._wait_until_partners_ready(analyzers)
        for round_number in range(1, self.max_rounds + 1):
            self.rounds = round_number
            received = self.exchange.receive(analyzers, round_number, "their analysis results")
            result, converged = aggregator.aggregate([received[n] for n in analyzers], self.simple_analysis)
            if result is None:
                raise ValueError("aggregation_method returned None; return the aggregated value (it is sent to the "
                                 "analyzers or submitted as the final result)")
            self.flame.flame_log(f"Round {round_number} aggregated: {str(result)[:100]}")
            if converged or round_number == self.max_rounds:
                self.converged = converged
                if not converged:
                    self.flame.flame_log(f"stopping after max_rounds={self.max_rounds} rounds without convergence; "
                                         f"submitting the last result", log_type="warn")
                self._submit(aggregator, result)
                self.result = result
                self.flame.analysis_finished()
                aggregator.node_finished()
                return
            self._progress(round_number)
            self.exchange.send(analyzers, result, round_number)

    def _submit(self, aggregator: StarAggregator, result: Any) -> None:
        self.flame.flame_log("Submitting final results...", halt_submission=True)
        response = self.flame.submit_final_result(result, self.output_type, self.multiple_results,
                                                  filename=self.result_filename, local_dp=self._local_dp(aggregator))
        self.flame.flame_log(f"success (response={response})", append=True)

    def _local_dp(self, aggregator: StarAggregator) -> dict[str, float] | None:
        return None

    # -- analyzer -------------------------------------------------------------------------------------
    def _start_analyzer(self, analyzer: StarAnalyzer) -> None:
        aggregator_id = self.flame.get_aggregator_id()
        if aggregator_id is None:
            raise StarRunError(self.flame.get_id(), "this analyzer has no aggregator among its partners")
        self._wait_until_partners_ready([aggregator_id])
        self.data = self._get_data()
        self.flame.flame_log(f"Data extracted: {str(self.data)[:100]}")
        for round_number in range(1, self.max_rounds + 1):
            self.rounds = round_number
            result = analyzer.analyze(self.data)
            if result is None:
                raise ValueError("analysis_method returned None; return the value the aggregator should receive")
            self.result = result
            self.exchange.send([aggregator_id], result, round_number)
            self._progress(round_number)
            reply = self.exchange.receive([aggregator_id], round_number, "the aggregated result")[aggregator_id]
            if reply is None:  # the aggregator finished the analysis
                self.converged = True
                analyzer.node_finished()
                return
            analyzer.latest_result = reply
        raise StarRunError(aggregator_id, f"the aggregator neither finished nor failed within "
                                          f"max_rounds={self.max_rounds} rounds")

    def _get_data(self) -> Any:
        if self.data_type == "fhir":
            data: Any = self.flame.get_fhir_data(self.query)
        else:  # no keys: every dataset of every S3 source
            data = self.flame.get_s3_data(self.query or [])
        if data is None:
            where = f"test_kwargs['{self.data_type}_data'] is None" if self.test_mode else \
                "the data API is not available on this node (see the start-up log)"
            raise StarRunError(self.flame.get_id(), f"no {self.data_type} data: {where}")
        return data

    # -- helpers --------------------------------------------------------------------------------------
    def _wait_until_partners_ready(self, nodes: list[str]) -> None:
        self.flame.flame_log(f"Awaiting contact with {len(nodes)} partner node(s)...", halt_submission=True)
        try:
            ready = self.flame.ready_check(nodes, attempt_interval=READY_ATTEMPT_INTERVAL, timeout=self.ready_timeout)
        except AnalysisError as exc:  # a partner failed (status sync) before every partner answered
            raise self.exchange.stopped("waiting for partners to be ready", exc) from exc
        silent = [node for node, ok in ready.items() if not ok]
        if silent:
            self.exchange.raise_partner_failure()
            raise StarRunError(silent[0], f"partner node(s) {silent} did not answer the ready check within "
                                          f"{self.ready_timeout:g} s; check that their analysis started")
        self.flame.flame_log("success", append=True)

    def _progress(self, round_number: int) -> None:
        value = int(99 * round_number / self.max_rounds) if not self.simple_analysis else 50
        if value > self.flame.get_progress():
            self.flame.set_progress(value)
