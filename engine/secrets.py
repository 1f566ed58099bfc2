"""The configured secrets, and the one redaction every recorded error text goes through.

`detect.yaml`'s secrets (the API key, webhook URLs and signing secrets, header values,
routing keys, the SMTP password) are registered when the configuration is loaded.
`redact(text)` replaces each of them in a text, in every form a library is known to
quote them: as they are, escaped as `repr` or JSON escape them (`\\n` for a line
break), each line of a value with a line break, and the path and query of a URL (what a
connection error quotes of the URL it could not reach). The source's last error, the
source-health alerts, delivery failure reasons and every log record (`RedactingFilter`)
pass through it.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

REDACTED = "[redacted]"
# Shorter fragments are not redacted on their own: "abc" would blank ordinary words.
_MIN_FRAGMENT = 8
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

_lock = threading.Lock()
_fragments: list[str] = []  # longest first
_pattern: re.Pattern[str] | None = None


def has_control_characters(value: str) -> bool:
    """Whether `value` holds a control character (a line break, a tab, NUL, DEL...)."""
    return _CONTROL.search(value) is not None


def _forms(secret: str) -> set[str]:
    forms = {secret, secret.strip(), repr(secret)[1:-1], json.dumps(secret)[1:-1]}
    forms.update(part for part in _CONTROL.split(secret))
    try:
        parts = urlsplit(secret.strip())
    except ValueError:
        parts = None
    if parts is not None and parts.scheme in ("http", "https") and parts.netloc:
        tail = parts.path + (f"?{parts.query}" if parts.query else "")
        forms.update({tail, parts.path, parts.query})
        if parts.password:
            forms.add(parts.password)
    return {form for form in forms if len(form) >= _MIN_FRAGMENT}


def register(secrets: Iterable[str]) -> None:
    """Remember secrets to redact (kept for the life of the process)."""
    global _pattern
    with _lock:
        known = set(_fragments)
        for secret in secrets:
            if isinstance(secret, str) and secret:
                known.update(_forms(secret))
        if len(known) == len(_fragments):
            return
        _fragments[:] = sorted(known, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(f) for f in _fragments))


def forget_all() -> None:
    """Drop every registered secret (for tests)."""
    global _pattern
    with _lock:
        _fragments.clear()
        _pattern = None


def redact(text: str) -> str:
    """`text` with every registered secret replaced by `[redacted]`."""
    pattern = _pattern
    if pattern is None or not text:
        return text
    return pattern.sub(REDACTED, text)


def redact_value(value: Any) -> Any:
    """Strings redacted throughout a JSON-like value (an alert's context)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(item) for item in value]
    return value


class RedactingFilter(logging.Filter):
    """A handler filter: the record's message and traceback text, redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _pattern is None:
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):  # malformed: the handler reports it
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Put a `RedactingFilter` on every handler of `logger` (the root logger by default)
    that lacks one."""
    logger = logger or logging.getLogger()
    for handler in logger.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
