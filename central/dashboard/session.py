"""Dashboard sign-in: a signed session cookie, never the API token itself.

Signing in with an API token sets ``pantau_session`` = ``<token id>.<expiry>.<nonce>.<mac>``,
HMAC-SHA256 under a key kept in ``data_dir/dashboard.key`` (created once, mode 0600,
shared by every central worker on the machine). The cookie is HttpOnly,
SameSite=Strict, and Secure when the dashboard is reached over HTTPS. Each request
checks the MAC, the expiry and that the token still exists: revoking a token
signs out every session made with it.

Forms that change something (acknowledge, silence, sign out) carry a CSRF token
derived from the session (HMAC of its nonce), checked on top of SameSite=Strict.
"""

import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from central.tokens import Role, TokenStore

COOKIE = "pantau_session"


@dataclass(frozen=True)
class Session:
    token_id: int
    name: str
    role: Role
    expires: int
    nonce: str
    csrf: str

    @property
    def admin(self) -> bool:
        return self.role == "admin"


def load_key(data_dir: Path) -> bytes:
    """The signing key, created (0600) on first use."""
    path = data_dir / "dashboard.key"
    try:
        return bytes.fromhex(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key.hex())
    try:
        os.link(tmp, path)  # another worker may have won the race: use its key
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return bytes.fromhex(path.read_text().strip())


class Sessions:
    def __init__(self, key: bytes, tokens: TokenStore, max_age: float) -> None:
        self.key = key
        self.tokens = tokens
        self.max_age = max_age

    def _mac(self, text: str) -> str:
        return hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()

    def issue(self, token_id: int, now: float | None = None) -> str:
        """A cookie value for a session of ``token_id``."""
        now = time.time() if now is None else now
        body = f"{token_id}.{int(now + self.max_age)}.{secrets.token_urlsafe(16)}"
        return f"{body}.{self._mac(body)}"

    def read(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session the cookie stands for, or None (bad, expired, token revoked)."""
        if not cookie or cookie.count(".") != 3:
            return None
        body, _, mac = cookie.rpartition(".")
        if not hmac.compare_digest(mac, self._mac(body)):
            return None
        token_id, expires, nonce = body.split(".")
        if not token_id.isdigit() or not expires.isdigit():
            return None
        if int(expires) < (time.time() if now is None else now):
            return None
        info = self.tokens.get(int(token_id))
        if info is None:
            return None
        csrf = self._mac("csrf:" + nonce)
        return Session(info.id, info.name, info.role, int(expires), nonce, csrf)

    @staticmethod
    def csrf_ok(session: Session, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(session.csrf, given or "")
