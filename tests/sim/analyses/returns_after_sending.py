"""Every data node sends a number and returns at once (the reference SDK's style); the aggregator submits the sum."""

# Analyzers resend (same message id) until acknowledged: the aggregator's process may subscribe to the broker
# after this one sends, and the broker drops what arrives before, as the real one does.

from flame import FlameCoreSDK


def main() -> None:
    flame = FlameCoreSDK()
    if flame.get_role() == "aggregator":
        partners = flame.get_participant_ids()
        values = flame.await_intermediate_data(partners, timeout=60)
        flame.submit_final_result(f"nodes,total\n{len(values)},{sum(values.values())}\n", filename="total.csv")
        flame.analysis_finished()
    else:
        flame.send_intermediate_data([flame.get_aggregator_id()], 21, max_attempts=6, timeout=60)


if __name__ == "__main__":
    main()
