"""Settings: the sandbox's line plus a dataset name is a config; limits are enforced up front."""

from __future__ import annotations

import pytest
from singer_sdk.exceptions import ConfigValidationError
from target_powerbi.target import TargetPowerBI

LINE = {
    "api_url": "https://127.0.0.1:1/v1.0/myorg",
    "authority_url": "https://127.0.0.1:1",
    "tenant_id": "t",
    "client_id": "c",
    "client_secret": "s3cret-value",
    "workspace_id": "w",
    "ca_bundle": "/nonexistent/ca.pem",
    "viewer_url": "https://127.0.0.1:1/",
}


def test_the_sandbox_line_plus_a_dataset_name_is_a_complete_config() -> None:
    target = TargetPowerBI(config={**LINE, "dataset_name": "Finance"}, validate_config=True)
    assert target.config["load_method"] == "upsert"
    assert target.config["batch_size"] == 10_000
    assert target.config["retention_policy"] == "None"


@pytest.mark.parametrize(
    "bad",
    [
        {"batch_size": 10_001},
        {"batch_size": 0},
        {"parallelism": 6},
        {"load_method": "merge"},
        {"retention_policy": "forever"},
    ],
)
def test_settings_beyond_power_bi_limits_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigValidationError):
        TargetPowerBI(config={**LINE, "dataset_name": "Finance", **bad}, validate_config=True)
