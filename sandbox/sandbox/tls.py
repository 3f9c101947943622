"""Loopback TLS for sandboxes whose clients insist on https (MSAL, the Azure SDK): a local CA."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import trustme
from starlette.types import ASGIApp
from typing_extensions import override

from sandbox.server import BackgroundServer


class TLSServer(BackgroundServer):
    """A BackgroundServer that removes its certificate directory when it stops."""

    def __init__(self, *args: Any, cert_dir: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cert_dir = cert_dir

    @override
    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.cert_dir, ignore_errors=True)


def tls_server(app: ASGIApp, port: int, prefix: str) -> tuple[TLSServer, str]:
    """A not-yet-started TLS server for 127.0.0.1 and localhost, and the path of its CA bundle.

    The certificate is issued by a fresh local CA (trustme); the key file is 0600.
    """
    cert_dir = Path(tempfile.mkdtemp(prefix=prefix))
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_path = cert_dir / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    cert_path = cert_dir / "server.pem"
    key_path = cert_dir / "server.key"
    cert_path.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key_path))
    key_path.chmod(0o600)
    server = TLSServer(
        app, port, ssl_certfile=str(cert_path), ssl_keyfile=str(key_path), cert_dir=cert_dir
    )
    return server, str(ca_path)
