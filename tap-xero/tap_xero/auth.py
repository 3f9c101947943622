"""Xero OAuth 2.0: rotation-safe refresh tokens, custom connections, and `auth login`.

Xero rotates the refresh token on every refresh and retires the old one (after a
30-minute grace). Losing the new one is the classic failure of Xero taps, so every
refresh happens under the token store's file lock and the rotated token is written
durably before the new access token is used. A concurrent run waits for the lock and
then reuses what the first run stored instead of refreshing again.
"""

from __future__ import annotations

import base64
import hashlib
import html
import http.server
import logging
import secrets
import threading
import time
import urllib.parse
import webbrowser
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import backoff
import requests
import requests.auth
from typing_extensions import override

from tap_xero.token_store import TokenState, TokenStore, TokenStoreError

DEFAULT_IDENTITY_URL = "https://identity.xero.com"
DEFAULT_CONNECTIONS_URL = "https://api.xero.com/connections"
# Xero serves the consent page from login.xero.com, not from the token host.
XERO_AUTHORIZE_URL = "https://login.xero.com/identity/connect/authorize"
DEFAULT_TOKEN_STORE_PATH = ".secrets/xero-tokens.json"  # noqa: S105 - a path
DEFAULT_REDIRECT_URI = "http://localhost:8765/callback"

# An access token is handed out only if it stays valid this much longer (or, for the short
# lifetimes of a time-scaled sandbox, a quarter of its lifetime).
MIN_VALIDITY_SECONDS = 60.0
DEFAULT_LIFETIME_SECONDS = 1800.0
HTTP_TIMEOUT_SECONDS = 30.0

BROAD_SCOPES: tuple[str, ...] = (
    "offline_access",
    "accounting.transactions.read",
    "accounting.contacts.read",
    "accounting.settings.read",
    "accounting.journals.read",
    "accounting.reports.read",
    "accounting.budgets.read",
)
# Apps created after March 2026 must ask for these; broad scopes stop working in 2027.
GRANULAR_SCOPES: tuple[str, ...] = (
    "offline_access",
    "accounting.invoices.read",
    "accounting.payments.read",
    "accounting.banktransactions.read",
    "accounting.manualjournals.read",
    "accounting.contacts.read",
    "accounting.settings.read",
    "accounting.journals.read",
    "accounting.budgets.read",
    "accounting.reports.aged.read",
    "accounting.reports.balancesheet.read",
    "accounting.reports.banksummary.read",
    "accounting.reports.budgetsummary.read",
    "accounting.reports.executivesummary.read",
    "accounting.reports.profitandloss.read",
    "accounting.reports.trialbalance.read",
)
_IDENTITY_SCOPES = frozenset({"offline_access", "openid", "profile", "email"})

Mode = Literal["oauth_app", "custom_connection"]


class XeroAuthError(Exception):
    """Authentication failed; the message says what to do and never holds a secret."""


RELOGIN_HINT = "run `tap-xero auth login` again to authorise the app and store a new token"


def invalid_grant_message(store_path: str) -> str:
    return (
        "Xero refused the refresh token (invalid_grant): it expired (60 days unused), was "
        "revoked, or was rotated by a run whose token store was lost. "
        f"{RELOGIN_HINT} (it is kept in {store_path})."
    )


# A dropped connection, before or during the response: worth another try.
_NETWORK_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


class _InvalidGrantError(Exception):
    """The refresh token was refused; the caller may try another candidate."""


class _TransientError(Exception):
    """A 5xx or 429 from the identity service: worth another try."""


def token_url(config: Mapping[str, Any]) -> str:
    return str(config.get("identity_url") or DEFAULT_IDENTITY_URL).rstrip("/") + "/connect/token"


def authorize_url(config: Mapping[str, Any]) -> str:
    """Xero's consent page, or the identity service's own for a sandbox."""
    identity = str(config.get("identity_url") or DEFAULT_IDENTITY_URL).rstrip("/")
    if identity == DEFAULT_IDENTITY_URL:
        return XERO_AUTHORIZE_URL
    return identity + "/connect/authorize"


def requested_scopes(config: Mapping[str, Any]) -> list[str]:
    """The read-only scopes to ask for: `scopes` if set, else by `scope_style`."""
    raw = config.get("scopes")
    if raw:
        scopes = raw.split() if isinstance(raw, str) else [str(s) for s in raw]
    else:
        style = str(config.get("scope_style") or "granular")
        if style not in {"broad", "granular"}:
            msg = f"scope_style must be 'broad' or 'granular', not {style!r}"
            raise XeroAuthError(msg)
        scopes = list(BROAD_SCOPES if style == "broad" else GRANULAR_SCOPES)
    writable = [s for s in scopes if s not in _IDENTITY_SCOPES and not s.endswith(".read")]
    if writable:
        msg = (
            f"tap-xero only reads, so it asks for read-only scopes; remove {writable} from "
            "`scopes` (use the '.read' variants)"
        )
        raise XeroAuthError(msg)
    if "offline_access" not in scopes:
        scopes.insert(0, "offline_access")
    return scopes


class _IdentityClient:
    """POSTs to Xero's token endpoint and turns its answers into typed errors."""

    def __init__(
        self,
        config: Mapping[str, Any],
        session: requests.Session,
        *,
        max_tries: int = 4,
        timeout: float = HTTP_TIMEOUT_SECONDS,
    ) -> None:
        self.url = token_url(config)
        self.client_id = str(config.get("client_id") or "")
        self._client_secret = str(config.get("client_secret") or "")
        self._session = session
        self._max_tries = max_tries
        self._timeout = timeout

    def post(self, form: dict[str, str]) -> dict[str, Any]:
        """The token response; retried on dropped connections and 5xx, bounded."""
        retrying = backoff.on_exception(
            backoff.expo,
            (*_NETWORK_ERRORS, _TransientError),
            max_tries=self._max_tries,
            factor=0.25,
            max_value=4,
            jitter=backoff.full_jitter,
            logger=None,
        )(self._post_once)
        try:
            return retrying(form)
        except (*_NETWORK_ERRORS, _TransientError) as exc:
            reason = str(exc) if isinstance(exc, _TransientError) else type(exc).__name__
            msg = (
                f"Xero's identity service at {self.url} did not answer ({reason}) after "
                f"{self._max_tries} tries; check the network or identity_url and retry"
            )
            raise XeroAuthError(msg) from None

    def _post_once(self, form: dict[str, str]) -> dict[str, Any]:
        body = dict(form)
        auth: tuple[str, str] | None = None
        if self._client_secret:
            auth = (self.client_id, self._client_secret)
        else:
            body["client_id"] = self.client_id
        response = self._session.post(
            self.url,
            data=body,
            auth=auth,
            headers={"Accept": "application/json"},
            timeout=self._timeout,
        )
        if response.status_code >= 500 or response.status_code == 429:
            msg = f"HTTP {response.status_code}"
            raise _TransientError(msg)
        try:
            payload = response.json()
        except ValueError:
            payload = {}
        if not isinstance(payload, dict):
            payload = {}
        if response.ok and payload.get("access_token"):
            return payload
        error = str(payload.get("error") or f"HTTP {response.status_code}")
        grant = form.get("grant_type", "")
        if error == "invalid_grant":
            raise _InvalidGrantError(error)
        if error == "invalid_client" or response.status_code == 401:
            msg = (
                "Xero rejected the app's credentials (invalid_client): check client_id and "
                "client_secret against the app in https://developer.xero.com/app/manage"
            )
            raise XeroAuthError(msg)
        if grant == "client_credentials" and error in {"unauthorized_client", "invalid_scope"}:
            msg = (
                f"Xero refused client credentials ({error}): this app is not a custom "
                "connection, or its connection to an organisation is not authorised yet. "
                "Either authorise the custom connection in the Xero developer portal, or "
                "use an OAuth 2.0 app: run `tap-xero auth login`"
            )
            raise XeroAuthError(msg)
        if error == "invalid_scope":
            msg = (
                "Xero refused the requested scopes (invalid_scope): an app created after "
                "March 2026 needs scope_style 'granular'; an older one may need 'broad'"
            )
            raise XeroAuthError(msg)
        msg = f"Xero's token endpoint refused the {grant} request ({error})"
        raise XeroAuthError(msg)


class XeroTokenManager:
    """Hands out valid access tokens for one Xero app, thread-safe and process-safe.

    `oauth_app` mode rotates refresh tokens through the token store;
    `custom_connection` mode (no refresh token anywhere) uses client credentials.
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        logger: logging.Logger,
        *,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
        max_tries: int = 4,
    ) -> None:
        self._logger = logger
        self._clock = clock
        self._session = session or requests.Session()
        self.client_id = str(config.get("client_id") or "")
        if not self.client_id:
            msg = "client_id is not set: copy it from the app in https://developer.xero.com/app/manage"
            raise XeroAuthError(msg)
        self._identity = _IdentityClient(config, self._session, max_tries=max_tries)
        self.connections_url = str(config.get("connections_url") or DEFAULT_CONNECTIONS_URL)
        self.store = TokenStore(str(config.get("token_store_path") or DEFAULT_TOKEN_STORE_PATH))
        self._seed: str = str(config.get("refresh_token") or "")
        self._scopes = config.get("scopes")
        stored = self._guard(lambda: self.store.load(self.client_id))
        self.mode: Mode = "oauth_app" if self._seed or stored else "custom_connection"
        self._access_token = ""
        self._expires_at = 0.0
        self._lifetime = DEFAULT_LIFETIME_SECONDS
        self._rejected: set[str] = set()
        self._lock = threading.RLock()

    def access_token(self) -> str:
        """A token valid for at least another minute, refreshing (and persisting) first."""
        with self._lock:
            if self._usable(self._access_token, self._expires_at, self._lifetime):
                return self._access_token
            if self.mode == "custom_connection":
                self._client_credentials()
            else:
                self._guard(self._refresh_oauth)
            return self._access_token

    def invalidate(self, token: str) -> None:
        """Xero answered 401 to `token`: never hand it out again."""
        with self._lock:
            self._rejected.add(token)
            if self._access_token == token:
                self._access_token = ""
                self._expires_at = 0.0

    def connections(self) -> list[dict[str, Any]]:
        """The organisations the token grants (Xero's `/connections`)."""
        response = None
        for _attempt in range(2):
            token = self.access_token()
            response = self._get_connections(token)
            if response.status_code != 401:
                break
            self.invalidate(token)
        assert response is not None
        if response.status_code == 401:
            msg = (
                "Xero rejected a freshly refreshed access token: the app's connection was "
                f"removed or the user lost access; {RELOGIN_HINT}"
            )
            raise XeroAuthError(msg)
        if response.status_code == 403:
            msg = (
                "Xero refused to list the organisations (403): the user who authorised the "
                f"app has no access to them any more; {RELOGIN_HINT}"
            )
            raise XeroAuthError(msg)
        if not response.ok:
            status = response.status_code
            msg = f"listing organisations at {self.connections_url} failed: HTTP {status}"
            raise XeroAuthError(msg)
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, list):
            msg = f"{self.connections_url} did not answer with a list of connections"
            raise XeroAuthError(msg)
        return [dict(item) for item in data if isinstance(item, dict)]

    # -- internals -------------------------------------------------------------------

    def _get_connections(self, token: str) -> requests.Response:
        getter = backoff.on_exception(
            backoff.expo,
            _NETWORK_ERRORS,
            max_tries=3,
            factor=0.25,
            logger=None,
        )(self._session.get)
        try:
            response: requests.Response = getter(
                self.connections_url,
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                timeout=HTTP_TIMEOUT_SECONDS,
            )
        except _NETWORK_ERRORS as exc:
            msg = f"cannot reach {self.connections_url} ({type(exc).__name__}); retry later"
            raise XeroAuthError(msg) from None
        return response

    def _usable(self, token: str, expires_at: float, lifetime: float) -> bool:
        margin = min(MIN_VALIDITY_SECONDS, lifetime / 4)
        return bool(token) and token not in self._rejected and expires_at - self._clock() >= margin

    def _adopt(self, token: str, expires_at: float, lifetime: float) -> None:
        self._access_token, self._expires_at, self._lifetime = token, expires_at, lifetime

    def _client_credentials(self) -> None:
        form = {"grant_type": "client_credentials"}
        if self._scopes:
            scopes = requested_scopes({"scopes": self._scopes})
            form["scope"] = " ".join(s for s in scopes if s != "offline_access")
        try:
            payload = self._identity.post(form)
        except _InvalidGrantError:
            msg = (
                "Xero refused client credentials (invalid_grant): the custom connection is "
                "not authorised for an organisation; authorise it in the Xero developer portal"
            )
            raise XeroAuthError(msg) from None
        lifetime = _lifetime(payload)
        self._adopt(str(payload["access_token"]), self._clock() + lifetime, lifetime)
        self._logger.info("Got a Xero access token for the custom connection (client credentials)")

    def _refresh_oauth(self) -> None:
        with self.store.locked():
            state = self.store.load(self.client_id)
            seed_is_new = bool(self._seed) and (state is None or not state.has_seen(self._seed))
            if (
                state is not None
                and not seed_is_new
                and self._usable(state.access_token, state.expires_at, state.lifetime)
            ):
                # Another run (or thread) refreshed a moment ago: use its token.
                self._adopt(state.access_token, state.expires_at, state.lifetime)
                self._logger.info("Reusing the Xero access token stored in %s", self.store.path)
                return
            candidates: list[str] = []
            if seed_is_new:
                candidates.append(self._seed)
            if state is not None and state.refresh_token not in candidates:
                candidates.append(state.refresh_token)
            for refresh_token in candidates:
                try:
                    payload = self._identity.post(
                        {"grant_type": "refresh_token", "refresh_token": refresh_token}
                    )
                except _InvalidGrantError:
                    continue
                lifetime = _lifetime(payload)
                new_state = TokenState(
                    client_id=self.client_id,
                    refresh_token=str(payload.get("refresh_token") or refresh_token),
                    access_token=str(payload["access_token"]),
                    expires_at=self._clock() + lifetime,
                    lifetime=lifetime,
                    scope=str(payload.get("scope") or (state.scope if state else "")),
                    seen=list(state.seen) if state else [],
                )
                new_state.remember(refresh_token, self._seed)
                # Durable before use: if this write fails, the new access token is never used.
                self.store.save(new_state)
                self._adopt(new_state.access_token, new_state.expires_at, lifetime)
                self._logger.info(
                    "Refreshed the Xero access token; the rotated refresh token is stored in %s",
                    self.store.path,
                )
                return
            raise XeroAuthError(invalid_grant_message(str(self.store.path)))

    @staticmethod
    def _guard(action: Callable[[], Any]) -> Any:
        """Token store problems surface as `XeroAuthError` with the store's own advice."""
        try:
            return action()
        except TokenStoreError as exc:
            raise XeroAuthError(str(exc)) from None


def _lifetime(payload: Mapping[str, Any]) -> float:
    """Seconds the new access token lives (Xero: 1800)."""
    try:
        return max(1.0, float(payload.get("expires_in") or DEFAULT_LIFETIME_SECONDS))
    except (TypeError, ValueError):
        return DEFAULT_LIFETIME_SECONDS


class XeroBearerAuth(requests.auth.AuthBase):
    """Puts a current access token on each request; pair with `invalidate` on a 401."""

    def __init__(self, manager: XeroTokenManager) -> None:
        self.manager = manager

    @override
    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self.manager.access_token()}"
        return r

    @staticmethod
    def token_of(request: requests.PreparedRequest | None) -> str | None:
        """The bearer token a sent request carried (to pass to `invalidate` after a 401)."""
        if request is None:
            return None
        value = request.headers.get("Authorization", "")
        return value[len("Bearer ") :] if value.startswith("Bearer ") else None


# -- `tap-xero auth login`: authorization code with PKCE on a localhost redirect ------------


@dataclass
class LoginResult:
    store_path: str
    scope: str
    connections: list[dict[str, Any]]


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge) per RFC 7636."""
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return verifier, challenge


class _Callback:
    """What the browser brought back to the localhost redirect."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.params: dict[str, str] = {}
        self.done = threading.Event()


def _callback_server(callback: _Callback, port: int) -> http.server.HTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parsed = urllib.parse.urlsplit(self.path)
            if parsed.path != callback.path:
                self.send_error(404)
                return
            query = urllib.parse.parse_qs(parsed.query)
            callback.params = {key: values[0] for key, values in query.items() if values}
            ok = "code" in callback.params
            text = (
                "tap-xero is authorised: you can close this tab."
                if ok
                else "tap-xero was not authorised: see the terminal."
            )
            body = f"<!doctype html><title>tap-xero</title><p>{html.escape(text)}</p>".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            callback.done.set()

        @override
        def log_message(self, format: str, *args: Any) -> None:
            """Silent: the request line carries the authorization code."""

    return http.server.HTTPServer(("127.0.0.1", port), Handler)


@dataclass(frozen=True)
class _Grant:
    """What the browser's consent brought back: the code and how it was asked for."""

    code: str
    redirect_uri: str
    verifier: str


def _redirect_of(config: Mapping[str, Any]) -> urllib.parse.SplitResult:
    redirect = urllib.parse.urlsplit(str(config.get("redirect_uri") or DEFAULT_REDIRECT_URI))
    if redirect.scheme != "http" or redirect.hostname not in {"localhost", "127.0.0.1"}:
        msg = "redirect_uri must be an http://localhost:PORT/... address registered on the app"
        raise XeroAuthError(msg)
    return redirect


def _listen(callback: _Callback, redirect: urllib.parse.SplitResult) -> http.server.HTTPServer:
    try:
        return _callback_server(callback, redirect.port or 80)
    except OSError as exc:
        msg = (
            f"cannot listen on {redirect.hostname}:{redirect.port} for the redirect "
            f"({exc.strerror}): free the port or change redirect_uri (and the app's)"
        )
        raise XeroAuthError(msg) from None


def _consent_url(
    config: Mapping[str, Any], client_id: str, redirect_uri: str, state: str, challenge: str
) -> str:
    query = urllib.parse.urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(requested_scopes(config)),
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
        quote_via=urllib.parse.quote,
    )
    return f"{authorize_url(config)}?{query}"


def _await_consent(
    config: Mapping[str, Any],
    client_id: str,
    opener: Callable[[str], object] | None,
    timeout: float,
) -> _Grant:
    """Open the consent page and wait for its redirect to the localhost listener."""
    redirect = _redirect_of(config)
    callback = _Callback(redirect.path or "/")
    server = _listen(callback, redirect)
    port = int(server.server_address[1])
    redirect_uri = urllib.parse.urlunsplit(
        (redirect.scheme, f"{redirect.hostname}:{port}", redirect.path or "/", "", "")
    )
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(24)
    url = _consent_url(config, client_id, redirect_uri, state, challenge)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        (opener or webbrowser.open)(url)
        if not callback.done.wait(timeout):
            msg = (
                f"no answer on {redirect_uri} within {timeout:.0f} s: open the printed URL in "
                "a browser on this machine, approve, and let it redirect back"
            )
            raise XeroAuthError(msg)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    return _Grant(_code_of(callback.params, state), redirect_uri, verifier)


def _code_of(params: Mapping[str, str], state: str) -> str:
    """The authorization code of a redirect, or the error that says what went wrong."""
    if params.get("error"):
        msg = (
            f"Xero did not authorise the app ({params['error']}): run `tap-xero auth login` "
            "again and choose 'Allow access' for the organisations to read"
        )
        raise XeroAuthError(msg)
    if not secrets.compare_digest(params.get("state", ""), state):
        msg = (
            "the redirect's state did not match this login (a stale or forged redirect): "
            "run `tap-xero auth login` again"
        )
        raise XeroAuthError(msg)
    code = params.get("code", "")
    if not code:
        msg = "the redirect carried no authorization code: run `tap-xero auth login` again"
        raise XeroAuthError(msg)
    return code


def _exchange(
    config: Mapping[str, Any], session: requests.Session, grant: _Grant
) -> dict[str, Any]:
    """The token response for an authorization code (it must carry a refresh token)."""
    try:
        payload = _IdentityClient(config, session).post(
            {
                "grant_type": "authorization_code",
                "code": grant.code,
                "redirect_uri": grant.redirect_uri,
                "code_verifier": grant.verifier,
            }
        )
    except _InvalidGrantError:
        msg = (
            "Xero refused the authorization code (invalid_grant): it expired or was already "
            "used; run `tap-xero auth login` again"
        )
        raise XeroAuthError(msg) from None
    if not payload.get("refresh_token"):
        msg = (
            "Xero returned no refresh token: the offline_access scope was not granted; "
            "run `tap-xero auth login` again"
        )
        raise XeroAuthError(msg)
    return payload


def _store_login(
    config: Mapping[str, Any], client_id: str, payload: Mapping[str, Any]
) -> TokenState:
    """Persist the new tokens durably; the config's seed and the old chain are superseded."""
    store = TokenStore(str(config.get("token_store_path") or DEFAULT_TOKEN_STORE_PATH))
    lifetime = _lifetime(payload)
    try:
        with store.locked():
            previous = store.load(client_id)
            new_state = TokenState(
                client_id=client_id,
                refresh_token=str(payload["refresh_token"]),
                access_token=str(payload["access_token"]),
                expires_at=time.time() + lifetime,
                lifetime=lifetime,
                scope=str(payload.get("scope") or " ".join(requested_scopes(config))),
                seen=list(previous.seen) if previous else [],
            )
            new_state.remember(
                previous.refresh_token if previous else None,
                str(config.get("refresh_token") or "") or None,
            )
            store.save(new_state)
    except TokenStoreError as exc:
        raise XeroAuthError(str(exc)) from None
    return new_state


def login(
    config: Mapping[str, Any],
    logger: logging.Logger,
    *,
    opener: Callable[[str], object] | None = None,
    timeout: float = 300.0,
    session: requests.Session | None = None,
) -> LoginResult:
    """Authorise in a browser, store the tokens durably, and list the organisations.

    `opener` receives the consent URL (default: the system browser); a test passes an
    HTTP client that follows the consent page's redirect to the localhost listener.
    """
    client_id = str(config.get("client_id") or "")
    if not client_id:
        msg = "client_id is not set: copy it from the app in https://developer.xero.com/app/manage"
        raise XeroAuthError(msg)
    requested_scopes(config)  # refuse writable scopes before opening any page
    grant = _await_consent(config, client_id, opener, timeout)
    session = session or requests.Session()
    new_state = _store_login(config, client_id, _exchange(config, session, grant))
    store_path = TokenStore(str(config.get("token_store_path") or DEFAULT_TOKEN_STORE_PATH)).path
    logger.info("Stored the new Xero tokens in %s", store_path)
    manager = XeroTokenManager(config, logger, session=session)
    return LoginResult(str(store_path), new_state.scope, manager.connections())


def describe_connections(connections: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per organisation: tenant id, type and name."""
    return [
        f"{c.get('tenantId', '?')}  {c.get('tenantType', '')}  {c.get('tenantName', '')}".rstrip()
        for c in connections
    ]
