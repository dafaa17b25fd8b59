"""A minimal analysis on the plain SDK: every data node sends a number, the aggregator submits the sum as CSV."""

from flame import FlameCoreSDK


def main() -> None:
    flame = FlameCoreSDK()
    if flame.get_role() == "aggregator":
        partners = flame.get_participant_ids()
        flame.ready_check(partners, attempt_interval=2, timeout=60)
        values = flame.await_intermediate_data(partners, timeout=60)
        flame.set_progress(90)
        flame.submit_final_result(f"nodes,total\n{len(values)},{sum(values.values())}\n", output_type="str",
                                  filename="total.csv")
        flame.analysis_finished()
    else:
        flame.ready_check([flame.get_aggregator_id()], attempt_interval=2, timeout=60)
        flame.set_progress(50)
        flame.send_intermediate_data([flame.get_aggregator_id()], 21, timeout=60)
    flame.wait_until_reported(timeout=60)


if __name__ == "__main__":
    main()
