"""The provisioning state directory: every gateway provisioned so far, and the CA.

Layout (``--state``, ``$PANTAU_PROVISION_STATE``, default ``./pantau-provisioning``)::

    settings.json          broker URL, central URL and username remembered between runs
    central.json           central's broker username and password hash
    gateways/<id>.json     one record per gateway: site, location, auth, password hash,
                           revoked (when), revoked_serials (certificates in the CRL)
    ca/ca.key, ca/ca.crt   the certificate authority, after ``ca init``

Plaintext passwords never live here: only the gateway's own bundle holds its password.
Every file is mode 600 and the directory 700.
"""

import json
import os
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from provisioning.errors import ProvisionError
from provisioning.files import write_secret
from provisioning.gateways import GatewaySpec
from provisioning.passwords import hash_ok
from wire import gateway_id_ok
from wire.configfile import validation_problems

ENV_STATE = "PANTAU_PROVISION_STATE"
DEFAULT_STATE = Path("pantau-provisioning")


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GatewayRecord(_Record):
    id: str
    site: str
    name: str | None = None
    lat: float | None = None
    lon: float | None = None
    timezone: str | None = None
    auth: Literal["password", "cert"]
    password_hash: str | None = None
    cert_serial: str | None = None
    broker_url: str
    bundle: str
    created: float
    rotated: float | None = None  # when its credentials were last replaced
    revoked: float | None = None  # when it was revoked: left out of the broker config
    revoked_serials: list[str] = []  # its client certificates no longer valid (the CRL)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not gateway_id_ok(value):
            raise ValueError(f"invalid gateway id {value!r}")
        return value

    @field_validator("password_hash")
    @classmethod
    def _hash(cls, value: str | None) -> str | None:
        if value is not None and not hash_ok(value):
            raise ValueError("not a mosquitto $7$ password hash")
        return value

    @property
    def spec(self) -> GatewaySpec:
        return GatewaySpec(self.id, self.site, self.name, self.lat, self.lon, self.timezone)


class CentralRecord(_Record):
    username: str
    password_hash: str
    workers: int = 1  # `pantau-central run --workers N`: a broker user per worker

    def users(self) -> list[str]:
        """Central's broker usernames, one per worker (the broker makes each username
        that client's id): ``pantau-central``, ``pantau-central-1`` ..., and with several
        workers ``pantau-central-alerts``, the alert leader's own feed (central.alerts.feed,
        named after the default shared group)."""
        workers = [f"{self.username}-{i}" for i in range(1, max(1, self.workers))]
        feed = [f"{self.username}-alerts"] if self.workers > 1 else []
        return [self.username, *workers, *feed]


class Settings(_Record):
    broker_url: str | None = None
    central_url: str | None = None


class ProvisionState:
    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def locate(cls, given: Path | None, environ: dict[str, str] | None = None) -> "ProvisionState":
        env = os.environ if environ is None else environ
        root = given or (Path(env[ENV_STATE]) if env.get(ENV_STATE) else DEFAULT_STATE)
        return cls(root)

    @property
    def ca_dir(self) -> Path:
        return self.root / "ca"

    @property
    def has_ca(self) -> bool:
        return (self.ca_dir / "ca.crt").exists() and (self.ca_dir / "ca.key").exists()

    def ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "gateways").mkdir(exist_ok=True)
        os.chmod(self.root, 0o700)

    def _load(self, model: type[_Record], path: Path) -> _Record:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return model.model_validate(data)
        except OSError as exc:
            raise ProvisionError(f"{path}: cannot read: {exc.strerror or exc}") from None
        except json.JSONDecodeError as exc:
            raise ProvisionError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
        except ValidationError as exc:
            raise ProvisionError("\n".join(validation_problems(str(path), exc))) from None

    def _save(self, path: Path, record: BaseModel) -> None:
        self.ensure()
        write_secret(path, record.model_dump_json(indent=2) + "\n")

    # gateways
    def gateway_path(self, gateway_id: str) -> Path:
        return self.root / "gateways" / f"{gateway_id}.json"

    def gateway(self, gateway_id: str) -> GatewayRecord:
        path = self.gateway_path(gateway_id)
        if not path.exists():
            raise ProvisionError(
                f"gateway {gateway_id!r} is not in the provisioning state at {self.root} "
                "(check --state or $PANTAU_PROVISION_STATE)"
            )
        record = self._load(GatewayRecord, path)
        assert isinstance(record, GatewayRecord)
        return record

    def has_gateway(self, gateway_id: str) -> bool:
        return self.gateway_path(gateway_id).exists()

    def gateways(self) -> list[GatewayRecord]:
        folder = self.root / "gateways"
        if not folder.is_dir():
            return []
        return [self.gateway(p.stem) for p in sorted(folder.glob("*.json"))]

    def save_gateway(self, record: GatewayRecord) -> None:
        self._save(self.gateway_path(record.id), record)

    # central
    def central(self) -> CentralRecord | None:
        path = self.root / "central.json"
        if not path.exists():
            return None
        record = self._load(CentralRecord, path)
        assert isinstance(record, CentralRecord)
        return record

    def save_central(self, record: CentralRecord) -> None:
        self._save(self.root / "central.json", record)

    # settings
    def settings(self) -> Settings:
        path = self.root / "settings.json"
        if not path.exists():
            return Settings()
        record = self._load(Settings, path)
        assert isinstance(record, Settings)
        return record

    def remember(self, **changes: str | None) -> None:
        current = self.settings()
        updated = current.model_copy(update={k: v for k, v in changes.items() if v})
        if updated != current or not (self.root / "settings.json").exists():
            self._save(self.root / "settings.json", updated)


def now() -> float:
    return time.time()
