"""Reading activities from files and stdin, streaming, in constant memory.

Accepted, each optionally gzipped, `-` for stdin, a UTF-8 byte-order mark ignored:
- JSON Lines: one activity per line; a bad line is rejected and the next one read.
- A JSON array, read element by element, never whole.
- Concatenated JSON documents (what `jq` prints): one or more pretty-printed objects.
- API response pages (`{"data": [...], "has_more": ...}`) in any of the forms above: their
  activities are read as if they stood alone.
A record that is not JSON, or not a valid activity, becomes a `Rejected` record with its
line number and reason, and reading goes on.

`read_sources` reads several inputs as one stream and, given a `ReadReport`, keeps
going past an input that breaks half-way (a truncated `.gz`): what was read of it stays
in the stream, and the report names the input, the line and the records read from it.
It also drops activities whose id it has already passed on (overlapping exports), as the
live poller does, remembering the last `SEEN_IDS` ids.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import re
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from pydantic import ValidationError
from pydantic_core import from_json

from engine.activity import (
    ActivityRecord,
    describe_validation_error,
    parse_activity,
    try_parse_activity,
)
from engine.errors import InputError

CHUNK = 1 << 16
_DECODER = json.JSONDecoder()
_WHITESPACE = " \t\r\n"
_BOM = b"\xef\xbb\xbf"
_LINE_ONE = re.compile(r" at line 1 column (\d+)$")
# Activity ids a replay remembers to drop duplicates (overlapping exports): about 30 MB.
SEEN_IDS = 250_000


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


Record = ActivityRecord | Rejected


@dataclass(frozen=True)
class ReadError:
    """An input that broke half-way: where, after how many of its records, and why."""

    source: str
    line: int
    records: int
    reason: str

    def describe(self) -> str:
        return (
            f"{self.source}: cannot read past line {self.line} ({self.records} record"
            f"{'s' if self.records != 1 else ''} read from it were evaluated): {self.reason}"
        )


@dataclass
class ReadReport:
    """What reading a finite source found besides records: inputs that broke, duplicate
    activities dropped, and activities that came later than the reorder buffer could
    hold them back for (`engine/sources/reorder.py`)."""

    errors: list[ReadError] = field(default_factory=list)
    duplicates: int = 0
    backwards: int = 0


class ReadFailed(InputError):
    """An input that could not be read to its end; `line`: the last line read whole."""

    def __init__(self, message: str, source: str, line: int, reason: str) -> None:
        super().__init__(message)
        self.source = source
        self.line = line
        self.reason = reason


class _Broken(Exception):
    """Reading stopped after `line` (the exception it carries is its cause)."""

    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


def _activities(value: Any, source: str, line: int, text: str) -> Iterator[Record]:
    """One decoded value as activities: an API page gives its `data`, anything else is
    one activity (or one rejected record)."""
    if isinstance(value, dict) and isinstance(value.get("data"), list) and "type" not in value:
        for item in value["data"]:
            yield from _activities(item, source, line, json.dumps(item))
        return
    try:
        yield parse_activity(value)
    except ValidationError as exc:
        yield Rejected(source, line, describe_validation_error(exc), text)
    except TypeError as exc:
        yield Rejected(source, line, str(exc), text)


def _lines(stream: IO[bytes], source: str) -> Iterator[Record]:
    # pydantic-core's JSON parser (already here through pydantic) decodes a line about
    # three times faster than json.loads, and checks UTF-8 on the way. Per line, the usual
    # case is one parse and one check, with everything rarer kept out of the loop.
    loads = from_json
    quick = try_parse_activity
    number = 0
    try:
        for number, raw_line in enumerate(stream, start=1):
            try:
                value = loads(raw_line)
            except ValueError as exc:
                yield from _unparsed(raw_line, source, number, exc)
                continue
            record = quick(value, raw_line)
            if record is None:  # an API page, or an activity only the model can judge
                yield from _activities(value, source, number, _text(raw_line))
            else:
                yield record
    except (OSError, EOFError, UnicodeDecodeError) as exc:  # the stream broke after `number`
        raise _Broken(number) from exc


def _unparsed(raw_line: bytes, source: str, number: int, error: ValueError) -> Iterator[Record]:
    """A line the parser refused: a first line behind a byte-order mark, a blank line
    (skipped), or one that is not JSON."""
    if number == 1 and raw_line.startswith(_BOM):
        raw_line = raw_line[len(_BOM) :]
        try:
            value = from_json(raw_line)
        except ValueError as exc:
            error = exc
        else:
            yield from _activities(value, source, number, _text(raw_line))
            return
    text = _text(raw_line)
    if text:
        yield Rejected(source, number, f"invalid JSON: {_json_error(text, error)}", text)


def _json_error(text: str, first: ValueError) -> str:
    """The parser's complaint about the stripped line, with its column (the line number
    in the message would be the line's own, not the file's)."""
    try:
        from_json(text)
    except ValueError as exc:
        return _LINE_ONE.sub(r" at column \1", str(exc))
    return str(first)


def _text(raw_line: bytes) -> str:
    return raw_line.decode("utf-8", errors="replace").strip()


def _documents(stream: IO[bytes], source: str, array: bool) -> Iterator[Record]:
    """Decode JSON values one at a time from a stream: the elements of one array, or a
    run of concatenated documents. A syntax error ends the input (value boundaries after
    it cannot be trusted) and is reported as one rejected record."""
    reader = io.TextIOWrapper(stream, encoding="utf-8-sig")
    try:
        yield from _decode(reader, source, array)
    finally:
        reader.detach()  # the caller closes the byte stream


def _decode(reader: io.TextIOWrapper, source: str, array: bool) -> Iterator[Record]:
    state = [1]  # the line reached, for the report when the stream breaks
    try:
        yield from _decode_values(reader, source, array, state)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise _Broken(state[0] - 1) from exc


def _decode_values(
    reader: io.TextIOWrapper, source: str, array: bool, state: list[int]
) -> Iterator[Record]:
    buffer = reader.read(CHUNK)
    pos = 0
    line = 1
    eof = not buffer
    if array:
        pos = buffer.index("[") + 1
        line += buffer.count("\n", 0, pos)
    expecting_value = True
    while True:
        while pos < len(buffer) and buffer[pos] in _WHITESPACE:
            if buffer[pos] == "\n":
                line += 1
            pos += 1
        if pos >= len(buffer):
            if eof:
                if array:
                    yield Rejected(source, line, "unexpected end of file inside the array", "")
                return
            more = reader.read(CHUNK)
            eof = not more
            buffer, pos = buffer[pos:] + more, 0
            continue
        char = buffer[pos]
        if array and char == "]":
            return
        if array and char == "," and not expecting_value:
            pos += 1
            expecting_value = True
            continue
        try:
            value, end = _DECODER.raw_decode(buffer, pos)
        except json.JSONDecodeError as exc:
            if not eof:
                more = reader.read(CHUNK)
                eof = not more
                buffer, pos = buffer[pos:] + more, 0
                continue
            yield Rejected(
                source, line + exc.lineno - 1, f"invalid JSON: {exc.msg}", buffer[pos : pos + 200]
            )
            return
        if end == len(buffer) and not eof:
            # A number or literal may continue in the next chunk: decode it again whole.
            more = reader.read(CHUNK)
            eof = not more
            buffer, pos = buffer[pos:] + more, 0
            continue
        text = buffer[pos:end]
        yield from _activities(value, source, line, text)
        line += text.count("\n")
        state[0] = line
        pos = end
        expecting_value = False


def _shape(head: bytes) -> str:
    """`array`, `documents` or `lines`, from the first bytes of the input."""
    stripped = head.removeprefix(_BOM).lstrip()
    if stripped.startswith(b"["):
        return "array"
    if not stripped.startswith(b"{"):
        return "lines"
    first_line = stripped.split(b"\n", 1)[0]
    try:
        json.loads(first_line)
        return "lines"
    except (json.JSONDecodeError, UnicodeDecodeError):
        pass
    # The first line is not a whole document: either a pretty-printed one, or JSON Lines
    # whose first line is broken. Decoding the first document from the start tells.
    text = stripped.decode("utf-8", errors="replace")
    try:
        _DECODER.raw_decode(text)
        return "documents"
    except json.JSONDecodeError as exc:
        incomplete = exc.pos >= len(text) - 1 and len(head) >= CHUNK
        return "documents" if incomplete else "lines"


def read_source(path: str) -> Iterator[Record]:
    """Every record of one file (or `-`); raises `InputError` only when the input cannot
    be read at all."""
    source = "<stdin>" if path == "-" else path
    with contextlib.ExitStack() as stack:
        if path == "-":
            raw: IO[bytes] = sys.stdin.buffer
        else:
            try:
                raw = stack.enter_context(open(path, "rb"))
            except OSError as exc:
                raise InputError(f"{path}: cannot open: {exc.strerror or exc}") from exc
        stream: io.BufferedReader = (
            raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)  # type: ignore[arg-type]
        )
        try:
            if stream.peek(2)[:2] == b"\x1f\x8b":
                stream = io.BufferedReader(stack.enter_context(gzip.open(stream, "rb")))
            shape = _shape(stream.peek(CHUNK)[:CHUNK])
            if shape == "lines":
                yield from _lines(stream, source)
            else:
                yield from _documents(stream, source, array=shape == "array")
        except _Broken as broken:  # gzip corruption, a truncated archive, not UTF-8
            cause = broken.__cause__
            what = "not UTF-8 text" if isinstance(cause, UnicodeDecodeError) else "cannot read"
            raise ReadFailed(
                f"{source}: {what}: {cause} (after line {broken.line})",
                source,
                broken.line,
                f"{what}: {cause}",
            ) from cause
        except (OSError, EOFError) as exc:  # gzip corruption, truncated archives
            raise InputError(f"{source}: cannot read: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise InputError(f"{source}: not UTF-8 text: {exc}") from exc


def check_readable(paths: Iterable[str]) -> None:
    """Raise `InputError` for the first path (not `-`) that cannot be opened: a mistyped
    name stops a replay before anything is evaluated."""
    for path in paths:
        if str(path) == "-":
            continue
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise InputError(f"{path}: cannot open: {exc.strerror or exc}") from exc


def read_sources(paths: Iterable[str], report: ReadReport | None = None) -> Iterator[Record]:
    """The records of every input in turn. Without a report, an input that cannot be read
    raises `InputError`. With one, an input that breaks is noted in it (with the records
    read from it, which stay in the stream) and the next input is read; and an activity
    whose id was among the last `SEEN_IDS` passed on is dropped and counted."""
    if report is None:
        for path in paths:
            yield from read_source(str(path))
        return
    seen: set[str] = set()
    order: deque[str] = deque()
    remember, forget = order.append, order.popleft
    for path in paths:
        records = 0
        source = "<stdin>" if str(path) == "-" else str(path)
        try:
            for record in read_source(str(path)):
                records += 1
                if type(record) is not Rejected:
                    ident = record.id
                    if ident in seen:
                        report.duplicates += 1
                        continue
                    seen.add(ident)
                    remember(ident)
                    if len(order) > SEEN_IDS:
                        seen.discard(forget())
                yield record
        except ReadFailed as failed:
            report.errors.append(ReadError(source, failed.line, records, failed.reason))
        except InputError as error:  # it could not be opened after all
            reason = str(error).removeprefix(f"{path}: ")
            report.errors.append(ReadError(source, 0, records, reason))
