"""Writing files safely: secrets get mode 600 from the first byte, every write is atomic."""

import os
import tempfile
from pathlib import Path

SECRET_MODE = 0o600
PUBLIC_MODE = 0o644


def write_file(path: Path, data: bytes | str, mode: int = PUBLIC_MODE) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + rename) with ``mode``.

    The temp file is created with mode 600, so a secret is never readable by others,
    not even for a moment."""
    raw = data.encode() if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_secret(path: Path, data: bytes | str) -> Path:
    return write_file(path, data, SECRET_MODE)
