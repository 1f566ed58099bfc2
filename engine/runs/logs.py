"""Log lines on stderr at a level, as text or as JSON (one object a line: time, level,
logger, message), every one redacted by `engine/secrets.py`'s filter.

`detect --log-level LEVEL --log-format text|json COMMAND`, or `DETECT_LOG_LEVEL` and
`DETECT_LOG_FORMAT` in the environment (the flags win).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import IO

from engine.errors import ConfigError
from engine.secrets import install_log_redaction

LEVEL_ENV, FORMAT_ENV = "DETECT_LOG_LEVEL", "DETECT_LOG_FORMAT"
LEVELS = ("debug", "info", "warning", "error", "critical")
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object a line; the traceback, when there is one, as `exception`."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        entry = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler `setup` installs (and replaces when called again)."""


def wanted(level: str | None, fmt: str | None) -> tuple[str, str] | None:
    """The level and format asked for by the flags or the environment; None when
    neither asks (logging is then left as the command sets it up)."""
    level = level or os.environ.get(LEVEL_ENV) or None
    fmt = fmt or os.environ.get(FORMAT_ENV) or None
    if level is None and fmt is None:
        return None
    level, fmt = (level or "info").lower(), (fmt or "text").lower()
    if level not in LEVELS:
        raise ConfigError(f"{LEVEL_ENV}: {level[:20]!r} is not one of {', '.join(LEVELS)}")
    if fmt not in FORMATS:
        raise ConfigError(f"{FORMAT_ENV}: {fmt[:20]!r} is not one of {', '.join(FORMATS)}")
    return level, fmt


def setup(level: str = "info", fmt: str = "text", stream: IO[str] | None = None) -> None:
    """Log at `level` in `fmt` on `stream` (stderr), through the redacting filter."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    handler = _Handler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT, "%Y-%m-%dT%H:%M:%S%z"))
    root.addHandler(handler)
    root.setLevel(level.upper())
    install_log_redaction(root)
