"""``LocalDifferentialPrivacyParams``: the ``local_dp`` argument of ``submit_final_result``.

As in the reference SDK, a ``TypedDict`` with both keys required: ``epsilon`` (privacy budget) and
``sensitivity`` (of the submitted number), both positive. At run time it is a plain dict, which is what
``FlameCoreSDK.submit_final_result(..., local_dp=...)`` takes.
"""

from typing import TypedDict


class LocalDifferentialPrivacyParams(TypedDict, total=True):
    epsilon: float
    sensitivity: float


__all__ = ["LocalDifferentialPrivacyParams"]
