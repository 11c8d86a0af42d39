"""Log output for the agent and central: ``log.format`` text or JSON, journald-aware.

* ``text``: ``2026-12-04 17:40:01,123 WARNING central.ingest: message``;
* ``json``: one object per line, ``{"ts": "2026-12-04T17:40:01.123Z", "level": "WARNING",
  "logger": "central.ingest", "message": "...", "exc": "Traceback ..."}`` (``exc`` only
  with a traceback), for log pipelines (Loki, Elasticsearch, Vector).

Under systemd, when standard error *is* the journal (``JOURNAL_STREAM`` names its
device and inode, as systemd.exec(5) says to check), journald stamps each line
itself, so neither format carries a timestamp there; the level is also given as a
``<N>`` syslog priority prefix, which journald turns into the entry's PRIORITY
(``journalctl -p warning`` works) and strips from the message.
"""

import logging
import os
import sys
import time
from typing import IO, Literal

import msgspec

__all__ = ["JsonFormatter", "journal_stream", "setup_logging"]

LogFormat = Literal["text", "json"]

# sd-daemon(3) priorities: <3> err, <4> warning, <6> info, <7> debug
_PRIORITY = {"CRITICAL": 2, "ERROR": 3, "WARNING": 4, "INFO": 6, "DEBUG": 7}


def journal_stream(stream: IO[str] | None = None, environ: dict[str, str] | None = None) -> bool:
    """True when ``stream`` (standard error) is connected to journald."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    device, sep, inode = value.partition(":")
    if not sep or not device.isdigit() or not inode.isdigit():
        return False
    try:
        st = os.fstat((stream or sys.stderr).fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (int(device), int(inode))


class JsonFormatter(logging.Formatter):
    """One JSON object per record; ``ts`` (UTC, ms) unless ``timestamps`` is off."""

    def __init__(self, timestamps: bool = True) -> None:
        super().__init__()
        self.timestamps = timestamps
        self._encode = msgspec.json.Encoder().encode

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, str] = {}
        if self.timestamps:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            doc["ts"] = f"{stamp}.{int(record.msecs):03d}Z"
        doc["level"] = record.levelname
        doc["logger"] = record.name
        doc["message"] = record.getMessage()
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exc"] = record.exc_text
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return self._encode(doc).decode()


class _Journal(logging.Formatter):
    """Prefixes ``<N>`` (the syslog priority) to what ``inner`` formats."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        priority = _PRIORITY.get(record.levelname, 6)
        text = self.inner.format(record)
        # a multi-line message (a traceback) is one journal entry per line: prefix each
        return "\n".join(f"<{priority}>{line}" for line in text.split("\n"))


def setup_logging(
    level: str = "INFO",
    fmt: LogFormat = "text",
    stream: IO[str] | None = None,
    environ: dict[str, str] | None = None,
) -> None:
    """(Re)configure the root logger: one handler on ``stream`` (standard error)."""
    stream = stream or sys.stderr
    journal = journal_stream(stream, environ)
    formatter: logging.Formatter
    if fmt == "json":
        formatter = JsonFormatter(timestamps=not journal)
    else:
        stamp = "" if journal else "%(asctime)s "
        formatter = logging.Formatter(stamp + "%(levelname)s %(name)s: %(message)s")
    if journal:
        formatter = _Journal(formatter)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
        old.close()  # a StreamHandler leaves its stream open
    root.addHandler(handler)
    root.setLevel(level)
