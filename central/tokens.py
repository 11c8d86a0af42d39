"""API bearer tokens: ``admin`` (read and write) and ``read`` roles, stored hashed.

A token is shown once, when created; the registry keeps only its SHA-256.
"""

import hashlib
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Role = Literal["admin", "read"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'read')),
    hash TEXT NOT NULL UNIQUE,
    created REAL NOT NULL,
    last_used REAL
);
"""

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
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def create(self, role: Role, name: str = "") -> tuple[TokenInfo, str]:
        """A new token; the secret is returned here and never again."""
        token = PREFIX + secrets.token_urlsafe(32)
        now = time.time()
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO tokens (name, role, hash, created) VALUES (?, ?, ?, ?)",
                (name or role, role, _hash(token), now),
            )
        return TokenInfo(int(cur.lastrowid or 0), name or role, role, now, None), token

    def verify(self, token: str) -> TokenInfo | None:
        if not token.startswith(PREFIX):
            return None
        with self._lock:
            row = self._db.execute(
                "SELECT id, name, role, created, last_used FROM tokens WHERE hash = ?",
                (_hash(token),),
            ).fetchone()
            if row is None:
                return None
            self._db.execute("UPDATE tokens SET last_used = ? WHERE id = ?", (time.time(), row[0]))
        return TokenInfo(*row)

    def list(self) -> list[TokenInfo]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, name, role, created, last_used FROM tokens ORDER BY id"
            ).fetchall()
        return [TokenInfo(*r) for r in rows]

    def revoke(self, token_id: int) -> bool:
        with self._lock:
            cur = self._db.execute("DELETE FROM tokens WHERE id = ?", (token_id,))
        return cur.rowcount > 0

    def close(self) -> None:
        with self._lock:
            self._db.close()


def token_store(data_dir: Path) -> TokenStore:
    return TokenStore(data_dir / "registry.db")
