"""Pure helpers on FHIR data: fhir_to_csv, pandas frames and fhir.resources models."""

from flame_sdk.data.bundles import bundle_resources, next_link
from flame_sdk.data.fhir_to_csv import fhir_to_csv
from flame_sdk.data.frames import resources_frame, to_models

__all__ = ["bundle_resources", "fhir_to_csv", "next_link", "resources_frame", "to_models"]
