"""Every data node counts the rows of its CSV files and FHIR patients; the aggregator submits the totals."""

# Analyzers resend (same message id) until acknowledged: the aggregator's process may subscribe to the broker
# after this one sends, and the broker drops what arrives before, as the real one does.

import io

import pandas as pd

from flame import FlameCoreSDK


def main() -> None:
    flame = FlameCoreSDK()
    aggregator = flame.get_aggregator_id()
    if flame.get_role() == "aggregator":
        partners = sorted(flame.get_participant_ids())
        counts = flame.await_intermediate_data(partners, timeout=60)
        rows = "\n".join(f"{i},{counts[p]['rows']},{counts[p]['patients']}" for i, p in enumerate(partners, 1))
        flame.submit_final_result("node,rows,patients\n" + rows + "\n", filename="counts.csv")
        flame.analysis_finished()
    else:
        objects = {k: v for source in flame.get_s3_data([]) for k, v in source.items()}
        rows = sum(len(pd.read_csv(io.BytesIO(v))) for k, v in objects.items() if k.endswith(".csv"))
        bundles = flame.get_fhir_data(["Patient"]) or []
        patients = sum(len(b["Patient"].get("entry", [])) for b in bundles)
        flame.send_intermediate_data([aggregator], {"rows": rows, "patients": patients}, max_attempts=6, timeout=60)


if __name__ == "__main__":
    main()
