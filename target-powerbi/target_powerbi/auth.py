"""Entra ID client credentials through MSAL, whose own cache serves tokens until near expiry."""

from __future__ import annotations

import logging
import threading
from typing import Any
from urllib.parse import urlsplit

import requests
from msal.application import ConfidentialClientApplication
from msal.exceptions import MsalServiceError
from msal.token_cache import TokenCache

from target_powerbi import retry
from target_powerbi.errors import AuthenticationError, TokenServiceError, redact

# Entra ID hosts MSAL knows; any other host (the sandbox) skips instance discovery.
MICROSOFT_AUTHORITY_HOSTS = frozenset(
    {
        "login.microsoftonline.com",
        "login.windows.net",
        "login.microsoft.com",
        "sts.windows.net",
        "login.microsoftonline.us",
        "login.usgovcloudapi.net",
        "login.chinacloudapi.cn",
        "login.partner.microsoftonline.cn",
        "login.microsoftonline.de",
        "login.sovcloud-identity.fr",
        "login.sovcloud-identity.de",
        "login.sovcloud-identity.sg",
    }
)

# AADSTS codes that mean the configuration is wrong: retrying cannot help.
_CREDENTIAL_HINTS = {
    "AADSTS7000215": "the client secret is wrong: copy the secret's Value (not its ID) "
    "from the app registration's Certificates & secrets page",
    "AADSTS7000222": "the client secret has expired: create a new one in the app registration",
    "AADSTS700016": "no application with this client_id exists in the tenant: check "
    "client_id and tenant_id",
    "AADSTS90002": "the tenant does not exist: check tenant_id (the directory id)",
    "AADSTS900023": "tenant_id is not a valid tenant id or domain",
    "AADSTS500011": "the Power BI resource is not in the tenant: check the scope",
    "AADSTS70011": "the scope is invalid: it must end with /.default",
    "AADSTS50034": "the principal does not exist in the tenant",
}
_RETRYABLE_ERRORS = {"temporarily_unavailable", "server_error"}


def is_microsoft_authority(authority_url: str) -> bool:
    return (urlsplit(authority_url).hostname or "").lower() in MICROSOFT_AUTHORITY_HOSTS


class TokenProvider:
    """Hands out access tokens for one service principal and scope.

    `token()` calls `acquire_token_for_client` before every request: MSAL answers
    from its cache and only asks Entra ID for a new token when the cached one
    nears expiry. `invalidate()` drops the cached tokens (after a 401).
    """

    def __init__(
        self,
        *,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        authority_url: str,
        scope: str,
        session: requests.Session,
        logger: logging.Logger,
        max_retries: int,
        backoff_factor: float = 1.0,
        timeout: float,
    ) -> None:
        self._tenant_id = tenant_id
        self._client_id = client_id
        self._secret = client_secret
        self._authority = f"{authority_url.rstrip('/')}/{tenant_id}"
        self._scopes = [scope]
        self._session = session
        self._logger = logger
        self._max_retries = max_retries
        self._backoff_factor = backoff_factor
        self._timeout = timeout
        self._lock = threading.Lock()
        self._app: ConfidentialClientApplication | None = None
        self._instance_discovery = None if is_microsoft_authority(authority_url) else False

    def _application(self) -> ConfidentialClientApplication:
        if self._app is None:
            self._app = ConfidentialClientApplication(  # type: ignore[no-untyped-call]
                self._client_id,
                client_credential=self._secret,
                authority=self._authority,
                http_client=self._session,
                instance_discovery=self._instance_discovery,
                timeout=self._timeout,
            )
        return self._app

    def token(self) -> str:
        """A valid access token (MSAL's cache, or a new one from Entra ID), retried by `retry`."""
        with self._lock:
            attempts = [0]
            return retry.call(
                lambda: self._attempt(attempts),
                max_retries=self._max_retries,
                on_retry=self._log_retry,
                factor=self._backoff_factor,
                max_wait=30.0,
            )

    def _attempt(self, attempts: list[int]) -> str:
        attempts[0] += 1
        try:
            result = self._acquire()
        except (requests.ConnectionError, requests.Timeout) as exc:
            problem = f"the token service is unreachable ({type(exc).__name__})"
        except requests.HTTPError as exc:
            # MSAL's OpenID discovery raises it on a 5xx.
            problem = f"the authority's discovery failed ({type(exc).__name__})"
            self._app = None
        except MsalServiceError as exc:
            # MSAL raises on a 5xx and replays it for 5 seconds (its own throttling).
            problem = f"the token service failed ({self._clean(exc)})"
        except ValueError as exc:
            # MSAL's OpenID discovery got a 4xx: the tenant or the authority is wrong.
            self._app = None
            msg = (
                f"The authority {self._authority} does not know tenant "
                f"{self._tenant_id}: check tenant_id (the directory id) and "
                "authority_url (each sovereign cloud has its own). "
                f"({self._clean(exc)[:200]})"
            )
            raise AuthenticationError(msg, code="TenantNotFound") from None
        else:
            if "access_token" in result:
                return str(result["access_token"])
            error = str(result.get("error", "unknown_error"))
            description = self._clean(str(result.get("error_description", "")))
            if error not in _RETRYABLE_ERRORS:
                raise self._credential_error(error, description)
            problem = f"the token service answered {error}: {description}"
        msg = (
            f"Could not get a token from {self._authority} after {attempts[0]} "
            f"attempts: {problem}. Check authority_url, the network and "
            "ca_bundle, then run again."
        )
        raise retry.Retry(problem, final=TokenServiceError(msg))

    def _log_retry(self, signal: retry.Retry, seconds: float) -> None:
        self._logger.warning(
            "Token request failed (%s); retrying in %.1fs", signal.problem, seconds
        )

    def _acquire(self) -> dict[str, Any]:
        result = self._application().acquire_token_for_client(scopes=self._scopes)  # type: ignore[no-untyped-call]
        if result is None:
            return {"error": "server_error", "error_description": "empty answer"}
        return dict(result)

    def invalidate(self) -> None:
        """Forget cached access tokens so the next `token()` asks Entra ID for a new one."""
        with self._lock:
            if self._app is None:
                return
            cache = self._app.token_cache
            for item in list(cache.search(TokenCache.CredentialType.ACCESS_TOKEN)):
                cache.remove_at(item)

    def _clean(self, value: object) -> str:
        return redact(str(value), (self._secret,))[:500]

    def _credential_error(self, error: str, description: str) -> AuthenticationError:
        code = next((c for c in _CREDENTIAL_HINTS if c in description), None)
        hint = (
            _CREDENTIAL_HINTS[code]
            if code
            else "check tenant_id, client_id and client_secret of the service principal"
        )
        first_line = description.splitlines()[0] if description else ""
        msg = (
            f"Entra ID refused the service principal {self._client_id} of tenant "
            f"{self._tenant_id} ({error}{': ' + first_line if first_line else ''}): {hint}."
        )
        return AuthenticationError(msg, status=401, code=code or error)
