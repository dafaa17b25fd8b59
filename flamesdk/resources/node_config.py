"""``NodeConfig``: the type of ``flame.config``.

In the reference SDK it is a mutable object built inside ``FlameCoreSDK`` from the environment. Here it is
a read-only view (:class:`flame_sdk.config_view.NodeConfigView`) with the same attribute names
(``finished``, ``analysis_id``, ``project_id``, ``keycloak_token``, ``data_source_token``, ``nginx_name``,
``node_id``, ``node_role``); ``finished`` follows the run. Analyses read it through ``flame.config``; it is
not constructed, and its setters (``set_role``, ``set_node_id``, ``finish_analysis``) do not exist.
"""

from flame_sdk.config_view import NodeConfigView as NodeConfig

__all__ = ["NodeConfig"]
