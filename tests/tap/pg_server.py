"""A real PostgreSQL server for tests: initdb into a temporary folder, started on a free
loopback port, stopped and removed afterwards. Never assumes a server is running.

The binaries come from the distribution's package (Debian: `postgresql`, installed by
`.ci/run`). initdb and postgres refuse to run as root, so under root they run as the
`postgres` system user (which the package creates), or `nobody`, through `runuser`.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found: install them "
    "(Debian/Ubuntu: apt-get install -y postgresql; `.ci/run` does it)"
)


def _bindir() -> Path:
    def version(path: str) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", path))

    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: version(str(p)))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    pytest.fail(INSTALL_HINT)


def _run_as() -> tuple[list[str], str | None]:
    """The command prefix that drops root (initdb refuses it), and the user it becomes."""
    if os.geteuid() != 0:
        return [], None
    for user in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(user)
            return ["runuser", "-u", user, "--"], user
    pytest.fail("running as root without a 'postgres' or 'nobody' user to run PostgreSQL as")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def postgres_server(password: str = "pg-secret-Qx7") -> Iterator[str]:
    """A running server; yields a postgresql:// URL (trust auth ignores the password, which
    is there so tests can check it never shows)."""
    bindir = _bindir()
    prefix, user = _run_as()
    root = Path(tempfile.mkdtemp(prefix="tap-xero-pg-"))
    data = root / "data"
    if user is not None:
        shutil.chown(root, user)
    port = free_port()

    def run(*argv: str | Path) -> None:
        done = subprocess.run(
            [*prefix, *map(str, argv)], capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, f"{argv[0]} failed: {done.stderr[-2000:]}"

    try:
        run(bindir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        run(bindir / "pg_ctl", "-D", data, "-l", root / "server.log", "-o", options, "-w", "start")
        try:
            yield f"postgresql://postgres:{password}@127.0.0.1:{port}/postgres"
        finally:
            run(bindir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
