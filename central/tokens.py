"""API bearer tokens: ``admin`` (read and write) and ``read`` roles, stored hashed.

A token is shown once, when created; the registry keeps only its SHA-256. Tokens
live with the registry (``registry.db``, or PostgreSQL when ``database.url`` is
set), so with shared PostgreSQL a token works on every worker.
"""

import hashlib
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from central.database import Database, Target, target

Role = Literal["admin", "read"]

MIGRATIONS: list[str] = [
    # 1: the schema as it shipped with SQLite only
    """
CREATE TABLE IF NOT EXISTS tokens (
    id {id},
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'read')),
    hash TEXT NOT NULL UNIQUE,
    created DOUBLE PRECISION NOT NULL,
    last_used DOUBLE PRECISION
)
""",
]

COLUMNS = "id, name, role, created, last_used"

PREFIX = "pt_"


@dataclass(frozen=True)
class TokenInfo:
    id: int
    name: str
    role: Role
    created: float
    last_used: float | None


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    def __init__(self, where: Target | Path) -> None:
        if isinstance(where, Path):
            where = Target("sqlite", str(where))
        self._db = Database(where, name="pantau-central tokens")
        self._db.migrate("tokens", MIGRATIONS)

    def create(self, role: Role, name: str = "") -> tuple[TokenInfo, str]:
        """A new token; the secret is returned here and never again."""
        token = PREFIX + secrets.token_urlsafe(32)
        now = time.time()
        row = self._db.rows(
            "INSERT INTO tokens (name, role, hash, created) VALUES (?, ?, ?, ?) RETURNING id",
            (name or role, role, _hash(token), now),
        )[0]
        return TokenInfo(int(row["id"]), name or role, role, now, None), token

    def verify(self, token: str) -> TokenInfo | None:
        if not token.startswith(PREFIX):
            return None
        with self._db.lock:
            row = self._db.one(f"SELECT {COLUMNS} FROM tokens WHERE hash = ?", (_hash(token),))
            if row is None:
                return None
            self._db.execute(
                "UPDATE tokens SET last_used = ? WHERE id = ?", (time.time(), row["id"])
            )
        return _info(row)

    def get(self, token_id: int) -> TokenInfo | None:
        """The token with this id (not its secret), or None when revoked / unknown."""
        row = self._db.one(f"SELECT {COLUMNS} FROM tokens WHERE id = ?", (token_id,))
        return _info(row) if row else None

    def list(self) -> list[TokenInfo]:
        return [_info(r) for r in self._db.rows(f"SELECT {COLUMNS} FROM tokens ORDER BY id")]

    def revoke(self, token_id: int) -> bool:
        return self._db.execute("DELETE FROM tokens WHERE id = ?", (token_id,)).rowcount > 0

    def close(self) -> None:
        self._db.close()


def _info(row: dict[str, Any]) -> TokenInfo:
    return TokenInfo(row["id"], row["name"], row["role"], row["created"], row["last_used"])


def token_store(data_dir: Path, url: str | None = None) -> TokenStore:
    """The tokens of this install: PostgreSQL at ``url`` (``database.url``), else
    ``<data_dir>/registry.db``."""
    return TokenStore(target(url, data_dir, "registry.db"))
