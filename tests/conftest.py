"""Shared fixtures: a simulator on loopback ports and SDK objects connected to it over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from flame_sdk import FlameCoreSDK
from flame_sdk.sim.run.simulation import SimAnalysis, SimConfig, Simulation

TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Markers by area: everything under tests/docker is ``docker``; a test using the ``sim`` fixture is ``sim``
    (modules that start a simulator themselves mark themselves)."""
    for item in items:
        if item.path.is_relative_to(TESTS / "docker"):
            item.add_marker(pytest.mark.docker)
        if "sim" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.sim)


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulation]:
    """A hub and three nodes (node-0 aggregator, node-1/2 with data), shared by a test module."""
    with Simulation(SimConfig(nodes=3, seed=11, status_interval=0.2)) as simulation:
        yield simulation


def connect_all(analysis: SimAnalysis, **kwargs) -> dict[str, FlameCoreSDK]:
    """One FlameCoreSDK per participant, constructed concurrently as separate containers would be."""
    kwargs.setdefault("silent", True)
    with ThreadPoolExecutor(len(analysis.node_ids)) as pool:
        futures = {n: pool.submit(FlameCoreSDK, env=analysis.env(n), **kwargs) for n in analysis.node_ids}
        return {n: f.result() for n, f in futures.items()}


@pytest.fixture
def analysis(sim: Simulation) -> SimAnalysis:
    return sim.create_analysis()


@pytest.fixture
def sdks(analysis: SimAnalysis) -> Iterator[dict[str, FlameCoreSDK]]:
    """SDK objects for every node of a fresh analysis, keyed by node id; closed afterwards."""
    objects = connect_all(analysis)
    yield objects
    for sdk in objects.values():
        sdk.close()


@pytest.fixture(scope="module")
def shared(sim: Simulation) -> Iterator[tuple[SimAnalysis, dict[str, FlameCoreSDK]]]:
    """One analysis with SDK objects for all three nodes, shared by the tests of a module."""
    analysis = sim.create_analysis()
    sdks = connect_all(analysis)
    yield analysis, sdks
    for sdk in sdks.values():
        sdk.close()


@pytest.fixture
def nodes(shared: tuple[SimAnalysis, dict[str, FlameCoreSDK]]) -> tuple[FlameCoreSDK, FlameCoreSDK, FlameCoreSDK]:
    """(aggregator, first data node, second data node) of the ``shared`` analysis."""
    analysis, sdks = shared
    return sdks[analysis.aggregator_id], sdks[analysis.data_node_ids[0]], sdks[analysis.data_node_ids[1]]
