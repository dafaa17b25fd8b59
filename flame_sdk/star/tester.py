"""StarModelTester: the star template's local tester, run over the simulator (see flame_sdk.testing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from flame_sdk.star.aggregator import StarAggregator
from flame_sdk.star.analyzer import StarAnalyzer


class StarModelTester:
    """Run an analysis locally on ``len(data_splits)`` analyzers plus one aggregator, then write or print
    the final result(s) as the hub stored them.

    Arguments as in the FLAME star templates; ``node_roles`` may only list ``'default'`` entries (node 0
    always aggregates). ``data_splits`` has one entry per data node: in the shape ``get_fhir_data`` /
    ``get_s3_data`` return on a node it is served by the simulated data services, any other Python object
    (a list of numbers, a DataFrame, ...) is handed to that node's analyzer as given, with a warning, as the
    reference tester does. Keyword-only extras are passed to :func:`flame_sdk.testing.run_local` (``seed``,
    ``max_rounds``, ``round_timeout``, ``timeout`` ...). The outcome is kept in ``self.run``.
    """

    def __init__(
        self,
        data_splits: list[Any],
        analyzer: type[StarAnalyzer],
        aggregator: type[StarAggregator],
        data_type: Literal["fhir", "s3"],
        node_roles: list[str] | None = None,
        query: str | list[str] | None = None,
        simple_analysis: bool = True,
        output_type: Literal["str", "bytes", "pickle"] | list[str] = "str",
        multiple_results: bool = False,
        analyzer_kwargs: dict[str, Any] | None = None,
        aggregator_kwargs: dict[str, Any] | None = None,
        epsilon: float | None = None,
        sensitivity: float | None = None,
        result_filepath: str | list[str] | None = None,
        **run_options: Any,
    ) -> None:
        from flame_sdk.testing.local_run import run_local

        if node_roles is not None and (len(node_roles) != len(data_splits)
                                       or any(role != "default" for role in node_roles)):
            raise ValueError(f"node_roles must list 'default' once per data split ({len(data_splits)}); the "
                             f"aggregator is added as its own node, got {node_roles!r}")
        self.run = run_local(analyzer, aggregator, data_type, query=query, data_splits=data_splits,
                             simple_analysis=simple_analysis, output_type=output_type,
                             multiple_results=multiple_results, analyzer_kwargs=analyzer_kwargs,
                             aggregator_kwargs=aggregator_kwargs, epsilon=epsilon, sensitivity=sensitivity,
                             **run_options)
        self.write_result(self.run.final_results, result_filepath)

    @staticmethod
    def write_result(files: list[tuple[str, bytes]], result_filepath: str | list[str] | None = None) -> None:
        """Write each stored result file to ``result_filepath`` (indexed ``name_1.ext`` ... when several),
        or print it when no path is given."""
        if result_filepath is None:
            for name, content in files:
                print(f"Final result {name}: {content.decode('utf-8', errors='replace')}")
            return
        paths = list(result_filepath) if isinstance(result_filepath, list) else [result_filepath]
        if len(paths) == 1 and len(files) > 1:
            path = Path(paths[0])
            paths = [str(path.with_name(f"{path.stem}_{i}{path.suffix}")) for i in range(1, len(files) + 1)]
        if len(paths) != len(files):
            raise ValueError(f"{len(paths)} result_filepath(s) for {len(files)} result file(s)")
        for target, (_, content) in zip(paths, files, strict=True):
            Path(target).write_bytes(content)
            print(f"Final result written to {target}")
