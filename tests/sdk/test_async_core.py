"""AsyncFlameCoreSDK: several async cores on one event loop exchange messages and data over the simulator."""

from __future__ import annotations

import asyncio

from flame_sdk import AsyncFlameCoreSDK


def test_async_cores_on_one_loop_exchange_messages_and_data(analysis):
    async def scenario() -> None:
        cores = await asyncio.gather(*(AsyncFlameCoreSDK.create(silent=True, env=analysis.env(n))
                                       for n in analysis.node_ids))
        by_id = dict(zip(analysis.node_ids, cores, strict=True))
        agg = by_id[analysis.aggregator_id]
        analyzers = [by_id[n] for n in analysis.data_node_ids]
        try:
            assert await agg.get_role() == "aggregator" and await agg.get_aggregator_id() is None
            assert await agg.ready_check(timeout=60, attempt_interval=2) == dict.fromkeys(analysis.data_node_ids, True)
            sent = asyncio.gather(*(a.send_intermediate_data([analysis.aggregator_id], {"n": i})
                                    for i, a in enumerate(analyzers)))
            received = await agg.await_intermediate_data(analysis.data_node_ids, timeout=30)
            assert all(acked == [analysis.aggregator_id] for acked, _ in await sent)
            assert sorted(value["n"] for value in received.values()) == [0, 1]
            await agg.set_progress(50)
            assert await agg.get_progress() == 50
            assert await agg.analysis_finished()
            assert all(await asyncio.gather(*(core.wait_until_reported(timeout=60) for core in cores)))
        finally:
            for core in cores:
                async with core:  # closes it
                    pass

    asyncio.run(scenario())
    assert analysis.wait_finished(timeout=60) == dict.fromkeys(analysis.node_ids, "executed")
