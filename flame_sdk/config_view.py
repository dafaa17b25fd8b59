"""``flame.config``: this node's configuration under the reference SDK's attribute names, read-only.

The reference SDK (PrivateAIM/python-sdk, ``flamesdk/resources/node_config.py``) keeps one mutable
``NodeConfig``: environment values, the node's id and role, and a ``finished`` flag that the SDK sets when
this node calls ``analysis_finished()`` or a partner's ``analysis_finished`` message arrives; the star
template of PrivateAIM/python-sdk-patterns polls ``flame.config.finished``. Here the configuration is frozen
(``NodeConfig``, ``NodeIdentity``) and ``RunState`` owns the finish flag; this view reads all three, so it
always shows the current state and cannot be used to change it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn
from urllib.parse import urlsplit

from flame_sdk.config import NodeConfig, NodeIdentity
from flame_sdk.run_state import RunState


class NodeConfigView:
    """What ``flame.config`` shows: the reference ``NodeConfig`` attributes plus this SDK's gateway fields.

    ``finished`` is True once the analysis finished for this node (its own ``analysis_finished()``, a
    partner's ``analysis_finished`` message, or a partner's ``executed`` status adopted by status sync).
    ``node_id`` and ``node_role`` are None until the message broker told them (and stay None if it never
    answered). ``keycloak_token`` is the token currently in use (the node refreshes it).
    """

    __slots__ = ("_config", "_state", "_identity", "_token")

    _config: NodeConfig
    _state: RunState
    _identity: Callable[[], NodeIdentity | None]
    _token: Callable[[], str | None]

    def __init__(self, config: NodeConfig, state: RunState, identity: Callable[[], NodeIdentity | None],
                 token: Callable[[], str | None]) -> None:
        for name, value in (("_config", config), ("_state", state), ("_identity", identity), ("_token", token)):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"flame.config is read-only (cannot set {name!r}): the node's configuration comes "
                             f"from its environment, and the run state changes through the SDK's methods "
                             f"(e.g. analysis_finished())")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"flame.config is read-only (cannot delete {name!r})")

    # -- the reference NodeConfig's attributes ----------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self._state.finished

    @property
    def analysis_id(self) -> str:
        return self._config.analysis_id

    @property
    def project_id(self) -> str:
        return self._config.project_id

    @property
    def keycloak_token(self) -> str | None:
        return self._token()

    @property
    def data_source_token(self) -> str | None:
        return self._config.data_source_token

    @property
    def nginx_name(self) -> str:
        """``nginx-<DEPLOYMENT_NAME>``; with a local gateway override (no deployment name) the gateway's host."""
        if self._config.deployment_name:
            return f"nginx-{self._config.deployment_name}"
        return urlsplit(self._config.base_url).netloc

    @property
    def node_id(self) -> str | None:
        identity = self._identity()
        return None if identity is None else identity.node_id

    @property
    def node_role(self) -> str | None:
        identity = self._identity()
        return None if identity is None else identity.node_role

    # -- this SDK's fields ------------------------------------------------------------------------------
    @property
    def deployment_name(self) -> str | None:
        return self._config.deployment_name

    @property
    def base_url(self) -> str:
        """The node gateway the SDK talks to."""
        return self._config.base_url

    def __repr__(self) -> str:
        return (f"NodeConfigView(analysis_id={self.analysis_id!r}, node_id={self.node_id!r}, "
                f"node_role={self.node_role!r}, finished={self.finished!r})")
