"""The reference SDK's import names (package ``flamesdk``) and ``flame.config`` as the star template reads it."""

from __future__ import annotations

import typing

import pytest

from flame_sdk.config_view import NodeConfigView
from flame_sdk.core import FlameCoreSDK as OurFlameCoreSDK
from flame_sdk.protocol import env as names
from flame_sdk.testing import FakeFlameSDK


def test_the_reference_import_paths_give_this_sdk():
    from flamesdk import FlameCoreSDK
    from flamesdk.flame_core import FlameCoreSDK as core_module_sdk
    from flamesdk.flame_core import LocalDifferentialPrivacyParams, NodeConfig
    from flamesdk.resources.client_apis.clients.storage_client import (
        LocalDifferentialPrivacyParams as client_params,
    )
    from flamesdk.resources.client_apis.storage_api import LocalDifferentialPrivacyParams as api_params
    from flamesdk.resources.node_config import NodeConfig as resources_node_config

    assert FlameCoreSDK is core_module_sdk is OurFlameCoreSDK
    assert NodeConfig is resources_node_config is NodeConfigView
    assert LocalDifferentialPrivacyParams is client_params is api_params


def test_local_dp_params_is_a_typed_dict_with_both_keys_required():
    from flamesdk.flame_core import LocalDifferentialPrivacyParams

    assert typing.is_typeddict(LocalDifferentialPrivacyParams)
    assert LocalDifferentialPrivacyParams.__required_keys__ == {"epsilon", "sensitivity"}
    assert not LocalDifferentialPrivacyParams.__optional_keys__
    assert typing.get_type_hints(LocalDifferentialPrivacyParams) == {"epsilon": float, "sensitivity": float}
    params = LocalDifferentialPrivacyParams(epsilon=1.0, sensitivity=2.0)
    assert params == {"epsilon": 1.0, "sensitivity": 2.0} and type(params) is dict


def test_config_of_a_fake_node_is_read_only_and_finishes_with_the_run():
    flame = FakeFlameSDK("default", node_id="a1", aggregator_id="agg", analysis_id="an-1", project_id="pr-1")
    config = flame.config
    assert isinstance(config, NodeConfigView)
    assert (config.analysis_id, config.project_id, config.node_id, config.node_role) == ("an-1", "pr-1", "a1",
                                                                                        "default")
    assert config.finished is False
    with pytest.raises(AttributeError, match="flame.config is read-only"):
        config.finished = True  # type: ignore[misc]
    with pytest.raises(AttributeError, match="read-only"):
        config.node_id = "other"  # type: ignore[misc]
    flame.deliver_message("agg", "analysis_finished", {})
    assert config.finished is True


def test_config_on_real_nodes_shows_identity_and_finished(sdks, analysis):
    aggregator_id = analysis.aggregator_id
    for node_id, sdk in sdks.items():
        config = sdk.config
        env = analysis.env(node_id)
        assert (config.node_id, config.node_role) == (node_id, sdk.get_role())
        assert (config.analysis_id, config.project_id) == (env[names.ANALYSIS_ID], env[names.PROJECT_ID])
        assert config.keycloak_token == env[names.KEYCLOAK_TOKEN]
        assert config.nginx_name == (f"nginx-{env[names.DEPLOYMENT_NAME]}" if env.get(names.DEPLOYMENT_NAME)
                                     else config.base_url.split("//", 1)[1])
        assert config.finished is False
    sdks[aggregator_id].analysis_finished()
    assert sdks[aggregator_id].config.finished is True
    for node_id, sdk in sdks.items():
        if node_id != aggregator_id:  # the partner's message finishes these nodes
            sdk.await_messages([aggregator_id], "analysis_finished", timeout=60)
            assert sdk.config.finished is True, node_id
