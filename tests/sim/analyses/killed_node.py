"""The first data node is killed (SIGKILL) in the middle of the run; the others wait for it."""

# Analyzers resend (same message id) until acknowledged: the aggregator's process may subscribe to the broker
# after this one sends, and the broker drops what arrives before, as the real one does.

import os
import signal

from flame import FlameCoreSDK


def main() -> None:
    flame = FlameCoreSDK()
    aggregator = flame.get_aggregator_id()
    if flame.get_role() == "aggregator":
        partners = flame.get_participant_ids()
        values = flame.await_intermediate_data(partners, timeout=120)
        flame.submit_final_result(str(sum(v for v in values.values() if v is not None)))
        flame.analysis_finished()
    else:
        analyzers = sorted([flame.get_id()] + [p for p in flame.get_participant_ids() if p != aggregator])
        if flame.get_id() == analyzers[0]:
            flame.flame_log("150 complete rows, 28 events")
            os.kill(os.getpid(), signal.SIGKILL)
        flame.send_intermediate_data([aggregator], 21, max_attempts=6, timeout=60)


if __name__ == "__main__":
    main()
