"""The Singer SDK's standard tap tests, run against a two-organisation Xero sandbox."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from singer_sdk.testing import SuiteConfig, get_tap_test_class
from singer_sdk.testing.runners import TapTestRunner
from tap_xero.tap import TapXero

from tests.tap.xero_helpers import start_sandbox, tap_config

# The SDK builds its test class from a config; streams and their names need no network.
_PLACEHOLDER = {"client_id": "placeholder", "client_secret": "placeholder"}

# The aged reports are off by default (aged_reports_enabled): they answer no records here.
_AGED = ["aged_receivables_by_contact", "aged_payables_by_contact"]
_Base = get_tap_test_class(
    TapXero,
    config=_PLACEHOLDER,
    parse_env_config=False,
    suite_config=SuiteConfig(ignore_no_records_for_streams=_AGED),
)


@pytest.fixture(scope="module")
def _sandbox_config():
    sbx = start_sandbox(seed=11, tenants=2)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            yield tap_config(sbx, Path(tmp), page_size=200)
        finally:
            sbx.stop()


class TestTapXero(_Base):  # type: ignore[misc,valid-type]
    """Every SDK tap, stream and attribute test, on records from the sandbox."""

    @pytest.fixture(scope="class")
    def runner(self, _sandbox_config) -> TapTestRunner:
        test_runner = TapTestRunner(
            tap_class=TapXero, config=_sandbox_config, parse_env_config=False
        )
        test_runner.sync_all()
        return test_runner
