"""GivenDataSDK: a real ``FlameCoreSDK`` whose node data is the Python object a test gave it.

``run_local`` and ``StarModelTester`` accept any per-node object as a data split, as the reference tester
does. Splits in the platform's shape are served by the simulated FHIR/S3 services; any other object cannot
travel that way, so the analyzer's SDK hands it over directly instead. Everything else (messages, storage,
encryption, status) still goes through the simulated node services.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from flame_sdk.core import FlameCoreSDK


class GivenDataSDK(FlameCoreSDK):
    """``get_fhir_data`` (``data_type='fhir'``) or ``get_s3_data`` (``'s3'``) returns ``data`` as given,
    whatever the queries or keys; the other one asks the node's data API as usual."""

    def __init__(self, data: Any, data_type: Literal["fhir", "s3"], *, env: Mapping[str, str],
                 silent: bool = False) -> None:
        super().__init__(env=env, silent=silent)
        self.given_data = data
        self.given_type = data_type

    def get_fhir_data(self, fhir_queries: list[str] | None = []) -> Any:  # noqa: B006 - documented default
        return self.given_data if self.given_type == "fhir" else super().get_fhir_data(fhir_queries)

    def get_s3_data(self, s3_keys: list[str] | None = []) -> Any:  # noqa: B006 - documented default
        return self.given_data if self.given_type == "s3" else super().get_s3_data(s3_keys)
