"""Pure helpers on FHIR data: fhir_to_csv, pandas frames and fhir.resources models.

``resources_frame`` and ``to_models`` are imported on first use, so that importing this package (or one of
its modules, as the SDK's data clients do) does not import pandas or fhir.resources.
"""

from typing import Any

from flame_sdk.data.bundles import bundle_resources, next_link
from flame_sdk.data.fhir_to_csv import fhir_to_csv

__all__ = ["bundle_resources", "fhir_to_csv", "next_link", "resources_frame", "to_models"]


def __getattr__(name: str) -> Any:
    if name in ("resources_frame", "to_models"):
        from flame_sdk.data import frames

        return getattr(frames, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
