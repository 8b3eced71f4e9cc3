"""A small client of the ops api for the CLI, on the standard library (`urllib.request`).

No aiohttp here (its client lives in `gslb.probe` only). Finds the api (`--api`, else
`$GSLB_API_URL`, else http://127.0.0.1:8053) and the token (`--token-file`, else
`$GSLB_API_TOKEN`, else the per-user file that `gslb serve` creates in embedded mode; see
`gslb.api.tokens.find_client_token`). Path parts are percent-encoded, slashes included, so
endpoint ids travel intact. Errors become `ApiError` with the api's message worded for the
CLI: a 401 names the token source used and the alternatives, a 409 says `--force` where the
api says `force: true`. The token itself is never part of one.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from gslb.api.tokens import ENV_TOKEN, ClientToken, TokenOrigin, display_path, find_client_token
from gslb.errors import GslbError

DEFAULT_URL = "http://127.0.0.1:8053"
ENV_URL = "GSLB_API_URL"
TIMEOUT_S = 10.0


class ApiError(GslbError):
    """The api refused a request or could not be reached."""

    def __init__(self, message: str, status: int = 0, body: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = dict(body or {})


def api_url(explicit: str | None, env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return (explicit or env.get(ENV_URL) or DEFAULT_URL).rstrip("/")


def find_token(token_file: str | None, env: Mapping[str, str] | None = None) -> str | None:
    """The token to send: --token-file, $GSLB_API_TOKEN, else the embedded per-user file."""
    return find_client_token(token_file, env).secret


def refused_token_text(url: str, token: ClientToken, message: str) -> str:
    """What the CLI says when the api answers 401: which token source it used, and the others.

    The tokens the api accepts are in its `api.tokens_file` (hashes) and `$GSLB_API_TOKENS`,
    or, with neither, its per-user file; the CLI cannot read a secret from any of them.
    """
    if token.origin is TokenOrigin.NONE:
        return (
            f"the api at {url} needs a token and the CLI found none: no --token-file, {ENV_TOKEN} "
            f"unset, no {display_path(token.path)} (401 {message}); pass --token-file FILE or set "
            f"{ENV_TOKEN} to a token of the api's api.tokens_file (gslb token create prints one)"
        )
    others = {
        TokenOrigin.FLAG: f"pass another --token-file FILE (it wins over {ENV_TOKEN})",
        TokenOrigin.ENV: f"set {ENV_TOKEN} to another token or pass --token-file FILE",
    }.get(token.origin, f"pass --token-file FILE or set {ENV_TOKEN}")
    return (
        f"the api refused the token from {token.where()} (401 {message}); {others}, "
        f"or check api.tokens_file of the api you reach ({url})"
    )


def cli_wording(error: str, message: str) -> str:
    """The api's message as the CLI words it: the api says `force: true` (a JSON field),
    the CLI `--force` (its flag)."""
    if error == "would_drain_everything":
        return message.removeprefix("refused: ").replace("repeat with force: true", "repeat with --force")
    return message


def quote(part: str) -> str:
    """One path segment, with '/' encoded too (endpoint ids contain slashes)."""
    return urllib.parse.quote(part, safe="")


class ApiClient:
    def __init__(self, url: str, token: str | ClientToken | None, *, timeout_s: float = TIMEOUT_S) -> None:
        self.url = url
        if not isinstance(token, ClientToken):
            token = ClientToken(token, TokenOrigin.NONE if token is None else TokenOrigin.GIVEN)
        self.token = token
        self._token = token.secret
        self.timeout_s = timeout_s

    def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        query: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self._token:
            request.add_header("Authorization", f"Bearer {self._token}")
        try:
            with _OPENER.open(request, timeout=self.timeout_s) as response:
                return _decode(response.read())
        except urllib.error.HTTPError as e:
            payload = _decode(e.read())
            message = str(payload.get("message") or e.reason)
            if e.code == 401:
                raise ApiError(refused_token_text(self.url, self.token, message), e.code, payload) from None
            message = cli_wording(str(payload.get("error", "")), message)
            raise ApiError(f"{e.code}: {message}", e.code, payload) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ApiError(
                f"cannot reach the api at {self.url}: {reason} (is gslb serve or gslb api running?)"
            ) from None

    def drain(
        self, kind: str, name: str, *, reason: str, expires_in_s: float | None = None, force: bool = False
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"reason": reason}
        if expires_in_s is not None:
            body["expires_in_s"] = expires_in_s
        if force:
            body["force"] = True
        return self.request("POST", f"/v1/{_plural(kind)}/{quote(name)}/drain", body)

    def undrain(self, kind: str, name: str, *, reason: str = "") -> dict[str, Any]:
        body = {"reason": reason} if reason else {}
        return self.request("POST", f"/v1/{_plural(kind)}/{quote(name)}/undrain", body)

    def state(self) -> dict[str, Any]:
        return self.request("GET", "/v1/state")

    def audit(self, limit: int = 20) -> dict[str, Any]:
        return self.request("GET", "/v1/audit", query={"limit": str(limit)})


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Never follow a redirect: the token must not travel to another place."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


# No proxies from the environment either: the api is usually on this host, and a bearer
# token must not go through an HTTP proxy.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def _plural(kind: str) -> str:
    return {"region": "regions", "datacenter": "datacenters", "endpoint": "endpoints"}[kind]


def _decode(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {"message": raw[:200].decode(errors="replace")}
    return value if isinstance(value, dict) else {"value": value}
