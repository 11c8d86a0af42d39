"""mosquitto's password file format, ``user:$7$<iterations>$<salt>$<hash>``.

``$7$`` is PBKDF2-HMAC-SHA512 with a 12-byte random salt and a 64-byte hash, both
base64-encoded; 101 iterations is what ``mosquitto_passwd`` 2.0 writes by default,
and what mosquitto 2.0 checks any iteration count against.
"""

import base64
import hashlib
import hmac
import secrets

ITERATIONS = 101
SALT_BYTES = 12
HASH_BYTES = 64
PASSWORD_BYTES = 24  # 32 characters of URL-safe base64: ~192 bits


def new_password() -> str:
    return secrets.token_urlsafe(PASSWORD_BYTES)


def hash_password(password: str, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    """The ``$7$...`` field mosquitto checks ``password`` against."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, HASH_BYTES)
    b64 = base64.b64encode
    return f"$7${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, hashed: str) -> bool:
    """True when ``password`` matches a ``$7$`` field (ours or ``mosquitto_passwd``'s)."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[0] != "" or parts[1] != "7":
        return False
    try:
        iterations = int(parts[2])
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except ValueError:
        return False
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, len(expected))
    return hmac.compare_digest(digest, expected)


def hash_ok(hashed: str) -> bool:
    """The shape check for a stored hash (used when reading the state directory)."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[1] != "7" or not parts[2].isdigit():
        return False
    try:
        return (
            len(base64.b64decode(parts[3], validate=True)) == SALT_BYTES
            and len(base64.b64decode(parts[4], validate=True)) == HASH_BYTES
        )
    except ValueError:
        return False


def password_line(username: str, hashed: str) -> str:
    if ":" in username or "\n" in username:
        raise ValueError(f"username {username!r} cannot be written to a password file")
    return f"{username}:{hashed}\n"
