"""Reading activities from files and stdin, streaming, in constant memory.

Accepted: JSON Lines, a JSON array (read element by element, never whole), a single JSON
object (an activity, or an API response page with `data`), each optionally gzipped; `-`
is stdin. A line or element that is not JSON, or not a valid activity, becomes a
`Rejected` record with its line number and reason, and reading goes on.
"""

from __future__ import annotations

import gzip
import io
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from pydantic import ValidationError

from engine.activity import Activity, describe_validation_error, parse_activity
from engine.errors import InputError

CHUNK = 1 << 16
_DECODER = json.JSONDecoder()
_WHITESPACE = " \t\r\n"


@dataclass(frozen=True)
class Rejected:
    """An input record that could not become an activity."""

    source: str
    line: int
    reason: str
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "line": self.line,
            "reason": self.reason,
            "raw": self.text[:65536],
        }


Record = Activity | Rejected


def _open_binary(path: str) -> IO[bytes]:
    if path == "-":
        raw: IO[bytes] = sys.stdin.buffer
    else:
        try:
            raw = open(path, "rb")  # noqa: SIM115 - closed by the caller's iteration
        except OSError as exc:
            raise InputError(f"{path}: cannot open: {exc.strerror or exc}") from exc
    buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)
    if buffered.peek(2)[:2] == b"\x1f\x8b":
        return gzip.open(buffered, "rb")  # type: ignore[return-value]
    return buffered


def _activity_or_rejected(value: Any, source: str, line: int, text: str) -> Record:
    try:
        return parse_activity(value)
    except ValidationError as exc:
        return Rejected(source, line, describe_validation_error(exc), text)
    except TypeError as exc:
        return Rejected(source, line, str(exc), text)


def _lines(stream: IO[bytes], source: str, first_line: int = 1) -> Iterator[Record]:
    for number, raw_line in enumerate(stream, start=first_line):
        try:
            text = raw_line.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            yield Rejected(source, number, f"not UTF-8: {exc}", raw_line.decode("latin-1"))
            continue
        if not text:
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            yield Rejected(source, number, f"invalid JSON: {exc.msg} at column {exc.colno}", text)
            continue
        yield _activity_or_rejected(value, source, number, text)


def _array(stream: IO[bytes], source: str) -> Iterator[Record]:
    """Decode a JSON array element by element; a syntax error ends the file (after it,
    element boundaries cannot be trusted) and is reported as one rejected record."""
    reader = io.TextIOWrapper(stream, encoding="utf-8")
    buffer = reader.read(CHUNK)
    line = 1
    pos = buffer.index("[") + 1
    line += buffer.count("\n", 0, pos)
    eof = False
    expecting_value = True
    while True:
        while pos < len(buffer) and buffer[pos] in _WHITESPACE:
            if buffer[pos] == "\n":
                line += 1
            pos += 1
        if pos >= len(buffer):
            if eof:
                yield Rejected(source, line, "unexpected end of file inside the array", "")
                return
            more = reader.read(CHUNK)
            eof = not more
            buffer = buffer[pos:] + more
            pos = 0
            continue
        char = buffer[pos]
        if char == "]":
            return
        if char == "," and not expecting_value:
            pos += 1
            expecting_value = True
            continue
        try:
            value, end = _DECODER.raw_decode(buffer, pos)
        except json.JSONDecodeError as exc:
            if not eof:
                more = reader.read(CHUNK)
                if more:
                    buffer = buffer[pos:] + more
                    pos = 0
                    continue
                eof = True
                continue
            yield Rejected(
                source, line + exc.lineno - 1, f"invalid JSON: {exc.msg}", buffer[pos : pos + 200]
            )
            return
        if end == len(buffer) and not eof:
            # A number or literal may continue in the next chunk: decode it again whole.
            more = reader.read(CHUNK)
            if more:
                buffer = buffer[pos:] + more
                pos = 0
                continue
            eof = True
        text = buffer[pos:end]
        yield _activity_or_rejected(value, source, line, text)
        line += text.count("\n")
        pos = end
        expecting_value = False


def read_source(path: str) -> Iterator[Record]:
    """Every record of one file (or `-`); raises `InputError` only when the input cannot
    be read at all."""
    stream = _open_binary(path)
    source = "<stdin>" if path == "-" else path
    try:
        head = stream.peek(CHUNK) if hasattr(stream, "peek") else b""
        stripped = head.lstrip()
        if stripped.startswith(b"["):
            yield from _array(stream, source)
            return
        if stripped.startswith(b"{"):
            first = head.split(b"\n", 1)[0]
            try:
                json.loads(first)
            except json.JSONDecodeError:
                # One pretty-printed document: an activity or an API page.
                text = stream.read().decode("utf-8")
                try:
                    value = json.loads(text)
                except json.JSONDecodeError as exc:
                    yield Rejected(source, exc.lineno, f"invalid JSON: {exc.msg}", text[:200])
                    return
                items = value.get("data") if isinstance(value, dict) else None
                if isinstance(items, list):
                    for item in items:
                        yield _activity_or_rejected(item, source, 1, json.dumps(item))
                else:
                    yield _activity_or_rejected(value, source, 1, text)
                return
        yield from _lines(stream, source)
    except OSError as exc:  # gzip corruption and the like
        raise InputError(f"{source}: cannot read: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{source}: not UTF-8 text: {exc}") from exc
    finally:
        if path != "-":
            stream.close()


def read_sources(paths: Iterable[str]) -> Iterator[Record]:
    for path in paths:
        yield from read_source(str(path))
