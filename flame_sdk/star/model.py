"""StarModel: runs a star analysis (analyzers on data nodes, one aggregator) on this node.

Differences to the reference template, all on purpose: a bound on rounds and on each round's wait, a node
that raises stops every node with that node's error, state lives on instances, and the process ends
without a busy loop once the node has seen the final status.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from typing import Any, Literal

from flame_sdk.disclosure import DisclosureConfig
from flame_sdk.errors import AnalysisError
from flame_sdk.interface import FlameSDK
from flame_sdk.star import progress
from flame_sdk.star.aggregator import StarAggregator
from flame_sdk.star.analyzer import StarAnalyzer
from flame_sdk.star.exchange import Exchange
from flame_sdk.star.log_shapes import data_shape, shape
from flame_sdk.star.participation import METADATA_FILENAME, Participation
from flame_sdk.star.release import release
from flame_sdk.star.rounds import LEFT, AggregatorRounds, AnalyzerRounds
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


def check_arguments(analyzer: Any, aggregator: Any, data_type: Any, query: Any, max_rounds: Any = DEFAULT_MAX_ROUNDS,
                    round_timeout: Any = DEFAULT_ROUND_TIMEOUT, ready_timeout: Any = DEFAULT_READY_TIMEOUT) -> None:
    """Raise TypeError/ValueError naming the first argument a :class:`StarModel` cannot run with (also used
    by the local runners, so they say the same before starting anything)."""
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
        if not (isinstance(value, (int, float)) and value > 0):
            raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")


def check_privacy_options(secure_sum: Any, min_nodes: Any, disclosure: Any) -> None:
    """Raise TypeError/ValueError naming a ``secure_sum``/``min_nodes``/``disclosure`` value that cannot work."""
    if not isinstance(secure_sum, bool):
        raise TypeError(f"secure_sum must be True or False, got {secure_sum!r}")
    if min_nodes is not None and (isinstance(min_nodes, bool) or not isinstance(min_nodes, int) or min_nodes < 1):
        raise ValueError(f"min_nodes must be a positive integer (the data nodes that must remain) or None (every "
                         f"data node must take part), got {min_nodes!r}")
    if secure_sum and min_nodes is not None and min_nodes < 2:
        raise ValueError(f"with secure_sum=True, min_nodes must be at least 2: a sum over one data node is that "
                         f"node's result, got min_nodes={min_nodes}")
    if disclosure is not None and not isinstance(disclosure, DisclosureConfig):
        raise TypeError(f"disclosure must be a flame_sdk.disclosure.DisclosureConfig, got {type(disclosure).__name__}")


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
    * ``report_timeout``: when the model created the SDK from a given ``env``, it waits up to this long (no busy
      wait) for the node to see the final status, then closes the SDK. An SDK made from ``os.environ`` ends the
      process as a node expects once main() returns (``flame_sdk.after_main``).
    * ``secure_sum``: the aggregator gets only the sum of the data nodes' results (pairwise masks from key
      pairs the data nodes exchange for the run, see :mod:`flame_sdk.star.secure_rounds`);
      ``aggregation_method`` then receives a list with one entry, that sum. Results must be numbers in
      dicts, lists, tuples or numpy arrays, with the same layout on every node.
    * ``min_nodes``: a data node whose analysis raises withdraws, and one that stays silent is dropped, as
      long as this many data nodes remain (see :mod:`flame_sdk.star.participation`); the record is
      ``self.participation`` and is submitted as ``participation.json`` next to the result.
    * ``disclosure``: a :class:`~flame_sdk.disclosure.DisclosureConfig`; the final result is a count table
      (DataFrame or :class:`~flame_sdk.star.release.CountTable`) published through ``flame_sdk.disclosure``
      (see :mod:`flame_sdk.star.release`).

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
        secure_sum: bool = False,
        min_nodes: int | None = None,
        disclosure: DisclosureConfig | None = None,
    ) -> None:
        check_arguments(analyzer, aggregator, data_type, query, max_rounds, round_timeout, ready_timeout)
        check_privacy_options(secure_sum, min_nodes, disclosure)
        self.secure_sum, self.min_nodes, self.disclosure = secure_sum, min_nodes, disclosure
        self.participation: Participation | None = None
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

        made_here = flame is None
        self.flame: FlameSDK = self._test_sdk(test_kwargs, flame, env) if test_mode else \
            flame if flame is not None else self._node_sdk(test_kwargs, env)
        self.exchange = Exchange(self.flame, self.round_timeout)
        # an SDK made here is closed here, unless it ends the process itself once main() returns (after_main)
        closes_sdk = made_here and not getattr(self.flame, "owns_process", False)
        try:
            self._run(analyzer, aggregator, analyzer_kwargs or {}, aggregator_kwargs or {})
        finally:
            if closes_sdk:
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
        self.participation = aggregator.participation = Participation(
            list(aggregator.partner_node_ids), self.min_nodes, self.secure_sum)
        rounds = AggregatorRounds(self.flame, self.exchange, self.participation)
        silent = self._wait_until_partners_ready(aggregator.partner_node_ids, tolerate=self.min_nodes is not None)
        if silent and not self.secure_sum:  # with a secure sum the first round's statuses decide (secure_rounds)
            rounds.drop_unready(silent)
        for round_number in range(1, self.max_rounds + 1):
            self.rounds = round_number
            self._round_log(round_number, "waiting for the analyzers' results")
            result, converged = aggregator.aggregate(rounds.collect(round_number), self.simple_analysis)
            if result is None:
                raise ValueError("aggregation_method returned None; return the aggregated value (it is sent to the "
                                 "analyzers or submitted as the final result)")
            self._progress(round_number)
            self.flame.flame_log(f"Round {round_number} aggregated: {shape(result)}")
            if converged or round_number == self.max_rounds:
                self.converged = converged
                if not converged:
                    self.flame.flame_log(f"stopping after max_rounds={self.max_rounds} rounds without convergence; "
                                         f"submitting the last result", log_type="warn")
                self.result = self._submit(aggregator, result)
                self.flame.flame_log(progress.finished_line(round_number, converged, self.max_rounds))
                self.flame.analysis_finished()
                aggregator.node_finished()
                return
            rounds.reply(result, round_number)

    def _submit(self, aggregator: StarAggregator, result: Any) -> Any:
        """Submit the result (through disclosure control if configured) and the participation record;
        return the result as submitted."""
        participation = self.participation or Participation(list(aggregator.partner_node_ids))
        if self.disclosure is not None:
            result = release(result, self.disclosure, len(participation.contributors), self.output_type,
                             self.multiple_results, self.flame.flame_log)
        self.flame.flame_log("Submitting final results...", halt_submission=True)
        response = self.flame.submit_final_result(result, self.output_type, self.multiple_results,
                                                  filename=self.result_filename, local_dp=self._local_dp(aggregator))
        self.flame.flame_log(f"success (response={response})", append=True)
        if self.min_nodes is not None:
            self.flame.submit_final_result(participation.to_json(), "str", filename=METADATA_FILENAME)
            self.flame.flame_log(f"submitted {METADATA_FILENAME}: {len(participation.contributors)} of "
                                 f"{len(participation.data_nodes)} data nodes contributed")
        return result

    def _local_dp(self, aggregator: StarAggregator) -> dict[str, float] | None:
        return None

    # -- analyzer -------------------------------------------------------------------------------------
    def _start_analyzer(self, analyzer: StarAnalyzer) -> None:
        aggregator_id = self.flame.get_aggregator_id()
        if aggregator_id is None:
            raise StarRunError(self.flame.get_id(), "this analyzer has no aggregator among its partners")
        rounds = AnalyzerRounds(self.flame, self.exchange, aggregator_id, self.min_nodes, self.secure_sum,
                                self.max_rounds)
        silent = self._wait_until_partners_ready([aggregator_id, *rounds.peers()], tolerate=self.min_nodes is not None)
        if aggregator_id in silent:
            raise StarRunError(aggregator_id, f"the aggregator did not answer the ready check within "
                                              f"{self.ready_timeout:g} s; check that its analysis started")
        rounds.start()

        def analyze() -> Any:
            if self.data is None:
                self.data = self._get_data()
                self.flame.flame_log(f"Data extracted: {data_shape(self.data)}")
                self._set_progress(progress.DATA)
            result = analyzer.analyze(self.data)
            if result is None:
                raise ValueError("analysis_method returned None; return the value the aggregator should receive")
            return result

        for round_number in range(1, self.max_rounds + 1):
            self.rounds = round_number
            result = rounds.contribute(round_number, analyze)
            if result is LEFT:
                analyzer.node_finished()
                return
            self.result = result
            self._progress(round_number)
            self._round_log(round_number, "result sent; waiting for the aggregated result")
            reply = rounds.reply(round_number)
            if reply is LEFT:
                analyzer.node_finished()
                return
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
    def _wait_until_partners_ready(self, nodes: list[str], tolerate: bool = False) -> list[str]:
        """Wait for the partners' ready answers; return the silent ones if ``tolerate``, else raise on any."""
        self.flame.flame_log(f"Awaiting contact with {len(nodes)} partner node(s)...", halt_submission=True)
        try:
            ready = self.flame.ready_check(nodes, attempt_interval=READY_ATTEMPT_INTERVAL, timeout=self.ready_timeout)
        except AnalysisError as exc:  # a partner failed (status sync) before every partner answered
            raise self.exchange.stopped("waiting for partners to be ready", exc) from exc
        silent = [node for node, ok in ready.items() if not ok]
        if silent and not tolerate:
            self.exchange.raise_partner_failure()
            raise StarRunError(silent[0], f"partner node(s) {silent} did not answer the ready check within "
                                          f"{self.ready_timeout:g} s; check that their analysis started")
        self.flame.flame_log("success" if not silent else f"node(s) {silent} did not answer", append=True)
        self._set_progress(progress.READY)
        return silent

    def _round_log(self, round_number: int, doing: str) -> None:
        self.flame.flame_log(progress.round_line(round_number, self.max_rounds, doing))

    def _progress(self, round_number: int) -> None:
        self._set_progress(progress.round_progress(round_number, self.max_rounds))

    def _set_progress(self, value: int) -> None:
        if value > self.flame.get_progress():
            self.flame.set_progress(value)
