"""Downlink commands on ``pantau/v1/<gw>/cmd``, answered on ``cmd/reply``.

``ping``, ``poll-now`` (``{"device": ID}`` or every device), ``reload-config``
(re-read agent.yaml; on a bad file the running config stays and the reply lists
the problems), ``get-config`` (secrets redacted) and ``apply-config``
(``{"devices": [...], "profiles": {name: profile}}``: a new device list from central,
validated completely before it replaces the running one; see agent.remote). A malformed payload, an
unknown name, bad arguments or a failing command get ``ok: false`` with the
reason; nothing a command does can stop the agent.
"""

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

import wire

log = logging.getLogger(__name__)


class CommandError(Exception):
    """A command that cannot run as asked; the message goes into the reply."""


class CommandTarget(Protocol):
    """What commands act on: the running agent."""

    async def poll_now(self, device: str | None) -> dict[str, Any]: ...
    async def reload_config(self) -> dict[str, Any]: ...
    async def apply_config(self, command_id: str, args: dict[str, Any]) -> dict[str, Any]: ...
    def config_view(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Reply:
    id: str
    ok: bool
    result: Any = None
    error: str | None = None


Handler = Callable[[CommandTarget, dict[str, Any], str], Awaitable[Any]]


async def _ping(target: CommandTarget, args: dict[str, Any], command_id: str) -> Any:
    return {"pong": True, "ts": round(time.time() * 1000)}


async def _poll_now(target: CommandTarget, args: dict[str, Any], command_id: str) -> Any:
    unknown = set(args) - {"device"}
    if unknown:
        raise CommandError(f"poll-now: unknown argument(s) {', '.join(sorted(unknown))}")
    device = args.get("device")
    if device is not None and not isinstance(device, str):
        raise CommandError("poll-now: device must be a device id (a string)")
    return await target.poll_now(device)


async def _reload_config(target: CommandTarget, args: dict[str, Any], command_id: str) -> Any:
    return await target.reload_config()


async def _get_config(target: CommandTarget, args: dict[str, Any], command_id: str) -> Any:
    return target.config_view()


async def _apply_config(target: CommandTarget, args: dict[str, Any], command_id: str) -> Any:
    return await target.apply_config(command_id, args)


HANDLERS: dict[str, Handler] = {
    "ping": _ping,
    "poll-now": _poll_now,
    "reload-config": _reload_config,
    "get-config": _get_config,
    "apply-config": _apply_config,
}


def _guess_id(payload: bytes) -> str:
    """The command id from a payload that failed validation, so the sender can match it."""
    try:
        doc = msgspec.json.decode(payload)
    except msgspec.DecodeError:
        return "?"
    if isinstance(doc, dict) and isinstance(doc.get("id"), str) and doc["id"]:
        return str(doc["id"])[:128]
    return "?"


async def run_command(target: CommandTarget, payload: bytes) -> Reply:
    """Validate and run one command payload; always returns a reply, never raises."""
    try:
        command = wire.decode("cmd", payload)
    except wire.WireError as exc:
        log.warning("malformed command: %s", exc)
        return Reply(_guess_id(payload), False, error=f"malformed command: {exc}")
    handler = HANDLERS.get(command.name)
    if handler is None:
        known = ", ".join(sorted(HANDLERS))
        return Reply(command.id, False, error=f"unknown command {command.name!r} (known: {known})")
    log.info("command %s (%s)", command.name, command.id)
    try:
        result = await handler(target, dict(command.args), command.id)
    except CommandError as exc:
        return Reply(command.id, False, error=str(exc))
    except Exception as exc:
        log.exception("command %s (%s) failed", command.name, command.id)
        return Reply(command.id, False, error=f"{command.name} failed: {type(exc).__name__}")
    return Reply(command.id, True, result=result)
