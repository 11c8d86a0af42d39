"""``pantau-central gateway push-config ID FILE``: send a gateway a new device list
through central's admin API (``POST /api/v1/gateways/<id>/config``).

FILE holds ``devices:`` (entries as in agent.yaml) and, optionally, ``profiles:``
(name → profile). A device's profile found in a ``--profiles-dir`` is sent along too;
one neither there nor shipped gets a warning (the gateway may have it in its own
``profiles_dir``; if not, it refuses the list and says so).
"""

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import httpx

from wire.configfile import ConfigError, read_yaml

ENV_TOKEN = "PANTAU_CENTRAL_TOKEN"


def read_push(path: Path, profile_dirs: list[Path]) -> tuple[dict[str, Any], list[str]]:
    """The request body from FILE (+ profiles from the folders), and warnings."""
    from agent.profiles import default_profiles_dir, profile_path

    data = read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("devices"), list):
        raise ConfigError([f"{path}: expected a mapping with a 'devices' list"])
    unknown = sorted(set(data) - {"devices", "profiles"})
    if unknown:
        raise ConfigError([f"{path}: {key}: unknown key" for key in unknown])
    profiles = data.get("profiles") or {}
    if not isinstance(profiles, dict):
        raise ConfigError([f"{path}: profiles: expected a mapping of name to profile"])
    warnings: list[str] = []
    for index, device in enumerate(data["devices"]):
        name = device.get("profile") if isinstance(device, dict) else None
        if not isinstance(name, str) or name in profiles:
            continue  # the gateway names what is wrong with it
        try:
            found = [profile_path(d, name) for d in profile_dirs]
            shipped = profile_path(default_profiles_dir(), name).is_file()
        except ConfigError as exc:
            raise ConfigError([f"{path}: devices[{index}].profile: {exc}"]) from None
        given = next((p for p in found if p.is_file()), None)
        if given is not None:
            document = read_yaml(given)
            if not isinstance(document, dict):
                raise ConfigError([f"{given}: expected a mapping with a 'driver' key"])
            profiles[name] = document
        elif not shipped:
            warnings.append(
                f"devices[{index}].profile: {name!r} is not shipped and not in --profiles-dir"
            )
    return {"devices": data["devices"], "profiles": profiles}, warnings


def _token(args: argparse.Namespace) -> str:
    if args.token_file:
        try:
            return Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SystemExit(f"error: --token-file {args.token_file}: {exc.strerror}") from None
    token = os.environ.get(ENV_TOKEN)
    if not token:
        raise SystemExit(f"error: an admin API token is needed: --token-file FILE or ${ENV_TOKEN}")
    return token


def _central_url(args: argparse.Namespace) -> str:
    if args.central:
        return str(args.central).rstrip("/")
    from central.config import load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        exc.report()
        raise SystemExit(2) from None
    if config.api.external_url:
        return config.api.external_url.rstrip("/")
    host = config.api.host
    host = "127.0.0.1" if host in ("", "0.0.0.0") else ("[::1]" if host == "::" else host)
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{host}:{config.api.port}"


def push_config(args: argparse.Namespace) -> int:
    try:
        body, warnings = read_push(args.file, args.profiles_dir or [])
    except ConfigError as exc:
        exc.report()
        return 2
    for warning in warnings:
        print(f"warning: {warning}")
    body["timeout"] = args.timeout
    url = f"{_central_url(args)}/api/v1/gateways/{args.id}/config"
    token = _token(args)
    try:
        response = httpx.post(
            url,
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=args.timeout + 10,
        )
    except httpx.HTTPError as exc:
        print(f"error: cannot reach central at {url}: {exc}", file=sys.stderr)
        return 1
    try:
        answer = response.json()
    except ValueError:
        answer = {"detail": response.text[:300]}
    if response.status_code == 200:
        devices = answer.get("devices", [])
        print(
            f"{args.id}: applied ({answer.get('command_id')}): {len(devices)} device(s) running: "
            f"{', '.join(devices) or '-'}"
        )
        print(
            f"{args.id}: it rolls back by itself unless the broker confirms within "
            f"{answer.get('rollback_after', 0):g}s"
        )
        return 0
    detail = answer.get("detail") if isinstance(answer, dict) else answer
    what = "refused" if response.status_code == 422 else f"HTTP {response.status_code}"
    print(f"error: {args.id}: {what}: {detail}", file=sys.stderr)
    return 1
