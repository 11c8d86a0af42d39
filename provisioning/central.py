"""Talking to central's HTTP API: register a gateway, read when it was last seen.

The bearer token is sent in the Authorization header and nowhere else; it never
appears in output or in error messages (response bodies are scrubbed of it too).
"""

import datetime as dt
from dataclasses import dataclass

import httpx

from provisioning.errors import CentralError
from provisioning.gateways import GatewaySpec

TIMEOUT = 15.0


@dataclass(frozen=True)
class Central:
    url: str
    token: str
    timeout: float = TIMEOUT

    def _client(self) -> httpx.Client:
        if not self.url.startswith(("http://", "https://")):
            raise CentralError(f"--central must be an http:// or https:// URL, not {self.url!r}")
        return httpx.Client(
            base_url=self.url.rstrip("/"),
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=self.timeout,
        )

    def _fail(self, what: str, resp: httpx.Response) -> CentralError:
        body = resp.text.strip().replace(self.token, "**redacted**") if self.token else resp.text
        hint = {401: " (is the token right?)", 403: " (the token may be read-only)"}.get(
            resp.status_code, ""
        )
        return CentralError(
            f"central {what}: HTTP {resp.status_code}{hint}: {body[:300] or resp.reason_phrase}"
        )

    def _request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        try:
            with self._client() as client:
                return client.request(method, path, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            raise CentralError(f"cannot reach central at {self.url}: {exc}") from None

    def register(self, spec: GatewaySpec) -> str:
        """``created`` or ``exists`` (409: registered before, which is fine)."""
        resp = self._request("POST", "/api/v1/gateways", json=spec.central_payload())
        if resp.status_code == 409:
            return "exists"
        if resp.is_success:
            return "created"
        raise self._fail(f"refused to register {spec.id}", resp)

    def last_seen(self, gateway_id: str) -> float | None:
        """When central last heard from the gateway (Unix seconds), None if never."""
        resp = self._request("GET", f"/api/v1/gateways/{gateway_id}")
        if resp.status_code == 404:
            raise CentralError(f"central does not know gateway {gateway_id}: register it first")
        if not resp.is_success:
            raise self._fail(f"could not show gateway {gateway_id}", resp)
        try:
            data = resp.json()
        except ValueError:
            raise CentralError("central answered with something that is not JSON") from None
        return parse_time(data.get("last_seen") if isinstance(data, dict) else None)


def parse_time(value: object) -> float | None:
    """ISO 8601 text, Unix seconds or Unix milliseconds → Unix seconds."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value / 1000.0 if value > 1e11 else float(value)
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise CentralError(f"central's last_seen {value!r} is not a time") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed.timestamp()
    raise CentralError(f"central's last_seen {value!r} is not a time")
