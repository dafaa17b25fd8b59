"""An analysis in which the first data node raises: the run must fail naming that node."""

from flame import FlameCoreSDK


def main() -> None:
    flame = FlameCoreSDK()
    partners = flame.get_participant_ids()
    if flame.get_role() == "default" and flame.get_id() == sorted(
            [flame.get_id()] + [p for p in partners if p != flame.get_aggregator_id()])[0]:
        raise ZeroDivisionError("bad data on this node")
    if flame.get_role() == "aggregator":
        flame.await_messages(partners, "never", timeout=120)
    else:
        flame.await_messages([flame.get_aggregator_id()], "never", timeout=120)


if __name__ == "__main__":
    main()
