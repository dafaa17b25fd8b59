"""A simulation removes what it wrote (its state folder, the hub's store) however its stop went."""

from __future__ import annotations

import pytest

from flame_sdk.sim.run.simulation import SimConfig, Simulation

pytestmark = pytest.mark.sim


def test_a_node_that_fails_to_stop_leaves_no_files_and_no_running_partner(monkeypatch):
    sim = Simulation(SimConfig(nodes=3, seed=5)).start()
    state, store = sim.state_dir, sim.hub.store.root
    broken, *others = sim.nodes.values()
    stopped: list[str] = []
    for node in others:
        stop = node.stop

        async def recorded(node=node, stop=stop):
            await stop()
            stopped.append(node.node_id)

        monkeypatch.setattr(node, "stop", recorded)

    async def failing() -> None:
        raise RuntimeError("node stop failed")

    monkeypatch.setattr(broken, "stop", failing)
    with pytest.raises(RuntimeError, match="node stop failed"):
        sim.stop()
    assert sorted(stopped) == sorted(n.node_id for n in others)
    assert state.exists() is False and store.exists() is False
