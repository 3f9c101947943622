"""Bad input ends in one actionable line and a non-zero exit, never a traceback (issue 14)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.tap.xero_helpers import start_sandbox, tap_config, write_inputs


@pytest.fixture(scope="module")
def sbx():
    sandbox = start_sandbox(seed=17, tenants=1)
    try:
        yield sandbox
    finally:
        sandbox.stop()


def run(tmp_path, config, tag):
    args = write_inputs(tmp_path, config, None, None, tag)  # no catalog: fails before streams
    env = {k: v for k, v in os.environ.items() if "LOGLEVEL" not in k}
    return subprocess.run(args, capture_output=True, text=True, timeout=120, env=env, check=False)


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("tap-xero: error:")]
    assert len(errors) == 1, done.stderr[-2000:]
    return errors[0]


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"page_size": 1001}, "page_size"),
        ({"max_retries": -1}, "max_retries"),
        ({"request_timeout": 0}, "request_timeout"),
        ({"api_url": "http://xero.example.com/api.xro/2.0"}, "api_url"),
        ({"identity_url": "http://identity.example.com"}, "identity_url"),
    ],
)
def test_an_out_of_range_setting_is_one_line_naming_it(sbx, tmp_path, override, named):
    line = one_error_line(run(tmp_path, tap_config(sbx, tmp_path, **override), "bad"))
    assert named in line


def test_a_read_only_token_folder_is_one_line(sbx, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    if os.access(folder, os.W_OK):  # root writes anywhere: /proc is read-only even for root
        folder = Path("/proc")
    try:
        config = tap_config(sbx, tmp_path, token_store_path=str(folder / "tokens.json"))
        line = one_error_line(run(tmp_path, config, "ro"))
    finally:
        (tmp_path / "ro").chmod(stat.S_IRWXU)
    assert "writable" in line
    assert str(folder) in line


def test_an_unreachable_api_url_is_one_line(sbx, tmp_path):
    config = tap_config(
        sbx, tmp_path, api_url="http://127.0.0.1:9/api.xro/2.0", max_retries=1,
        retry_backoff_seconds=0.01,
    )  # fmt: skip
    line = one_error_line(run(tmp_path, config, "unreachable"))
    assert "cannot reach 127.0.0.1:9" in line
    assert "api_url" in line
