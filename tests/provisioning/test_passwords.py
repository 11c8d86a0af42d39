import re
import shutil
import subprocess
from pathlib import Path

import pytest

from provisioning.passwords import (
    ITERATIONS,
    check_password,
    hash_ok,
    hash_password,
    new_password,
    password_line,
)

LINE = re.compile(r"^([^:]+):\$7\$(\d+)\$([A-Za-z0-9+/=]{16})\$([A-Za-z0-9+/=]{88})$")


def mosquitto_passwd_line(tmp_path: Path, user: str, password: str) -> str:
    binary = shutil.which("mosquitto_passwd")
    if binary is None:
        pytest.skip("mosquitto_passwd not installed (apt-get install mosquitto)")
    path = tmp_path / "pw"
    subprocess.run([binary, "-c", "-b", str(path), user, password], check=True)
    return path.read_text().strip()


def test_our_line_has_the_shape_mosquitto_passwd_writes(tmp_path: Path) -> None:
    theirs = LINE.match(mosquitto_passwd_line(tmp_path, "gw-1", "hunter22"))
    ours = LINE.match(password_line("gw-1", hash_password("hunter22")).strip())
    assert theirs and ours
    assert ours.group(2) == theirs.group(2) == str(ITERATIONS)


def test_mosquitto_passwd_hashes_check_with_our_code(tmp_path: Path) -> None:
    line = mosquitto_passwd_line(tmp_path, "gw-1", "s3cret pass")
    hashed = line.split(":", 1)[1]
    assert hash_ok(hashed)
    assert check_password("s3cret pass", hashed)
    assert not check_password("s3cret pasS", hashed)


def test_known_vector_from_mosquitto_passwd() -> None:
    # Written by mosquitto_passwd 2.0.11 for password "secret".
    hashed = (
        "$7$101$lae23TTiZP7Dzifd$UcWE+uLjgrkM7zbEWGBcWr4esn9tefRIdNxCTC2NSQh1cQtjSQI4FS9nedh76"
        "oESADvx1s+q0BnC1uS5Cyqx1A=="
    )
    assert check_password("secret", hashed)
    salt = __import__("base64").b64decode("lae23TTiZP7Dzifd")
    assert hash_password("secret", salt=salt) == hashed


def test_each_hash_has_a_fresh_salt_and_passwords_are_long() -> None:
    assert hash_password("x") != hash_password("x")
    passwords = {new_password() for _ in range(50)}
    assert len(passwords) == 50
    assert all(len(p) >= 32 for p in passwords)


def test_a_username_with_a_colon_cannot_be_written() -> None:
    with pytest.raises(ValueError):
        password_line("a:b", hash_password("x"))


def test_malformed_hashes_are_rejected() -> None:
    assert not hash_ok("$6$abc$def")
    assert not check_password("x", "$7$101$!!!$???")
    assert not check_password("x", "plaintext")
