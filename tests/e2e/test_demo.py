"""`make demo` from start to end: what a new user sees first."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import pytest

from tests.e2e.pipeline import ROOT, meltano_system_dir

# scripts/demo.py keeps its files in .meltano/sandbox/ (and empties it): one demo at a time.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420), pytest.mark.xdist_group("demo")]


@pytest.mark.parametrize("args", [[], ["--fabric"]], ids=["push", "fabric"])
def test_the_demo_runs_to_the_end_and_stops_its_sandboxes(tmp_path, args) -> None:
    sysdir = meltano_system_dir(tmp_path)  # its own Meltano state, as a fresh clone has
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TAP_", "TARGET_"))}
    env["MELTANO_SYS_DIR_ROOT"] = str(sysdir)
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=410, check=False,
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    first = re.search(
        r"done in [\d.]+ s: (\d+) tables, ([\d,]+) rows, (\d+) Xero API calls, ([\d,]+) KiB", out
    )
    assert first, out
    assert int(first[1]) > 30 and int(first[2].replace(",", "")) > 1000
    second = re.search(
        r"done in [\d.]+ s: (\d+) Xero API calls \((\d+)% of the first run\), ([\d,]+) KiB", out
    )
    assert second, out
    # The demo's day voids each organisation's oldest unpaid invoice: every report month
    # since is re-read (the worst case), so the calls may equal the first run's; the
    # bytes are far fewer, since the documents come from If-Modified-Since.
    assert 0 < int(second[1]) <= int(first[3])
    assert int(second[3].replace(",", "")) < 0.6 * int(first[4].replace(",", ""))
    assert re.search(r"invoices\s+[\d,]+\s+\(\+\d+\)", out), "the new invoices are shown"
    if args == ["--fabric"]:  # only the changed rows land: a few percent of the first run
        landed = re.search(r"([\d,]+) rows landed \(upserts and deletes\)", out)
        assert landed, out
        assert 0 < int(landed[1].replace(",", "")) < 0.1 * int(first[2].replace(",", ""))
        viewer = re.search(r"viewer: https://127\.0\.0\.1:(\d+)/\n", out)
    else:
        viewer = re.search(
            r"The report in the viewer: http://127\.0\.0\.1:(\d+)/reports/\S+\n", out
        )
    assert viewer, out
    assert out.rstrip().endswith(viewer[0].strip() + "\nStopping the sandboxes.")
    with pytest.raises(ConnectionRefusedError):  # stopped: the viewer's port is closed
        socket.create_connection(("127.0.0.1", int(viewer[1])), timeout=5).close()
