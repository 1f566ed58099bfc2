"""Replaying on two processes: a child reads and evaluates, this process correlates.

A replay spends about half its time reading, parsing, validating and evaluating each
activity, and half correlating the matches into state and alerts. The first half needs
no state, so a child forked from this process does it while this process correlates
what the child has finished: on two cores a replay takes about the time of the slower
half, and gives the alerts, state and outbox a single process gives (the tests compare
them).

What crosses the pipe is what correlation needs, in batches of plain tuples (encoded
with marshal; with pickle when one holds an object: a rejected record, a rule failure,
eagerly rendered outputs). A thread here reads them ahead into a bounded queue, so the
child does not stall while this process folds its journal or waits for the disk. An item
is:

- a `Rejected` record, as it was read;
- an activity nothing matched and no rule failed on: `(epoch, learned)`;
- any other: `(epoch, learned, id, text, matches, failures)`, where a match is
  `(rule index, distinct value, new value, its key, sequence steps, dedup key, outputs)`
  and a failure `(rule index, RuleFailure)`.

`learned` is `Evaluator.learned`'s list, or None. The dedup key of a threshold rule
without Python code, which the parent needs for every match, is rendered in the child (or
its failure sent, to be raised where the key is needed); a Panther rule's outputs cross
as it rendered them. Everything else a match renders is rendered here when an alert
needs it, as with one process, from a `ForwardedRecord`: the activity's JSON line (or,
from a JSON array, its mapping), decoded only if something reads it (an alert's events,
a title, a sequence's steps). So a rule's Python hooks run here, as often as with one
process, and only `rule()` runs in the child: hooks are functions of the event, and one
that reads what `rule()` left in its module would not find it here. What rules write to
stdout and stderr in the child crosses as text (items of their own: a str, a 1-tuple)
and is written here after the alerts the activity's time closes and before its own, as
with one process.

The child dies with this process (Linux's parent-death signal) and closes its copy of
the state store's lock, so an orphan can neither read on nor hold the store.
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import dataclasses
import fcntl
import io
import marshal
import os
import pickle
import queue
import signal
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO, Any

from pydantic_core import from_json, to_json

from engine.activity import ActivityRecord, Event, parse_timestamp
from engine.detection.failures import RuleFailure
from engine.detection.rule import Match, Rendered
from engine.pipeline import Pipeline, learn_lists
from engine.sources.files import Rejected

# Activities per batch: big enough to amortize, small to stream, and a divisor of the
# pipeline's 1,000 between commits, so batches end on commits, where the parent may do
# the store's housekeeping while it waits for the next (`Pipeline.idle`).
BATCH = 500
# The pipe holds a few batches, so the child can run ahead of a slow stretch here (and
# this process ahead of the child) instead of the two taking turns; each end buffers
# less than that, so data moves as it is made.
PIPE_SIZE = 1 << 20
_BUFFER = 1 << 16
QUEUED = 24  # batches read ahead of correlation (about 8 MB)
MAX_SLACK = 0.5  # seconds of waiting the parent may spend on chores later
# A message: kind and length, then the payload: a batch (marshal or pickle), or the last.
_HEADER = struct.Struct("<cI")
_MARSHAL, _PICKLE, _LAST = b"M", b"P", b"L"
_BROKEN = b"!"  # not sent: the receiving thread's own failure
_PR_SET_PDEATHSIG = 1
_NONE: tuple[()] = ()
_RAW = ActivityRecord.raw  # the slots a forwarded record fills on first use
_CREATED_AT = ActivityRecord.created_at
Records = Iterable[ActivityRecord | Rejected]


class EvaluatorFailed(RuntimeError):
    """The evaluating child process stopped without finishing its input."""


class ForwardedRecord(ActivityRecord):
    """An activity the child evaluated: its id, time and JSON text; the mapping (and
    what else is read from it: `created_at`, exact to the microsecond, the type, the
    organization) decoded from the text on first use."""

    __slots__ = ()

    def __init__(self, epoch: float, ident: str, text: bytes | dict[str, Any]) -> None:
        self.epoch = epoch
        self.id = ident
        if type(text) is dict:  # an activity read without a line of its own
            self.text = None
            _RAW.__set__(self, text)
        else:
            self.text = text

    @property  # type: ignore[override]
    def raw(self) -> dict[str, Any]:
        try:
            return _RAW.__get__(self, ActivityRecord)
        except AttributeError:
            value = from_json(self.text)
            _RAW.__set__(self, value)
            return value

    @property  # type: ignore[override]
    def created_at(self) -> Any:
        try:
            return _CREATED_AT.__get__(self, ActivityRecord)
        except AttributeError:
            value = parse_timestamp(self.raw["created_at"])
            _CREATED_AT.__set__(self, value)
            return value

    @property  # type: ignore[override]
    def organization_id(self) -> str | None:
        return self.raw.get("organization_id")

    @property  # type: ignore[override]
    def type(self) -> str:
        return self.raw["type"]


@dataclass(frozen=True)
class ChildReport:
    """What the child finished with: `finish()`'s value, and its peak RSS."""

    result: Any
    peak_rss_mb: float


def run_forked(
    pipeline: Pipeline,
    records: Callable[[], Records],
    finish: Callable[[], Any] | None = None,
    started: Callable[[int], None] | None = None,
) -> ChildReport:
    """Run `records()` through `pipeline` on two processes: a forked child calls
    `records()`, evaluates each activity and sends what correlation needs; this process
    correlates it, as `pipeline.run` would (commits included; `pipeline.finish()` is the
    caller's). `finish`, if given, runs in the child at the end and its (picklable)
    value comes back; `started`, if given, is called here with the child's pid. An
    exception in the child (an unreadable input) is raised here; if this process stops
    early, the child is stopped too."""
    read_end, write_end = os.pipe()
    with contextlib.suppress(AttributeError, OSError):  # Linux only; a default pipe works
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    _flush_output()  # what is buffered now is this process's to write, not the child's too
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: whatever happens, it never returns into the caller's code
        try:
            os.close(read_end)
            _evaluate(pipeline, records, finish, write_end, parent)
        finally:
            os._exit(1)
    os.close(write_end)
    receiver: _Receiver | None = None
    outcome: tuple[str, Any] | None = None
    try:
        if started is not None:
            started(pid)
        receiver = _Receiver(read_end)
        outcome = _correlate(pipeline, receiver)
        if outcome[0] == "done":
            pipeline.commit()
    finally:
        if outcome is None:  # stopped early: the child may be blocked writing
            os.kill(pid, signal.SIGKILL)
        if receiver is not None:
            receiver.close()
        else:
            os.close(read_end)
        _, status, usage = os.wait4(pid, 0)
    kind, value = outcome
    if kind == "failed":
        raise value
    if kind == "ended":
        raise EvaluatorFailed(f"the evaluating process ended early ({_describe(status)})")
    return ChildReport(value, usage.ru_maxrss / 1024)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


class _Receiver:
    """Reads the child's messages on a thread of its own, into a bounded queue: while
    this process folds its journal or waits for the disk (the GIL released), the child
    goes on for up to `QUEUED` more batches instead of stalling on a full pipe."""

    def __init__(self, read_end: int) -> None:
        self._stream = os.fdopen(read_end, "rb", buffering=_BUFFER)
        self._queue: queue.Queue[tuple[bytes, Any] | None] = queue.Queue(QUEUED)
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="detect-receive", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        message: tuple[bytes, Any] | None = None
        try:
            message = self._read()
            while message is not None:
                self._put(message)
                if self._closing:
                    return
                message = self._read()
        except BaseException as error:  # noqa: BLE001 - handed to the correlating thread
            message = _BROKEN, error
        self._put(message)  # the last: None at the end of the pipe, or what broke

    def _read(self) -> tuple[bytes, bytes] | None:
        header = self._stream.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return None
        kind, size = _HEADER.unpack(header)
        payload = self._stream.read(size)
        return (kind, payload) if len(payload) == size else None

    def _put(self, message: tuple[bytes, Any] | None) -> None:
        while not self._closing:
            try:
                self._queue.put(message, timeout=0.1)
                return
            except queue.Full:
                continue

    def get(self) -> tuple[tuple[bytes, Any] | None, float]:
        """The next (kind, payload), None once the pipe has closed without more; and the
        seconds spent waiting for it."""
        waited = 0.0
        try:
            message = self._queue.get_nowait()
        except queue.Empty:
            started = time.perf_counter()
            message = self._queue.get()
            waited = time.perf_counter() - started
        if message is not None and message[0] == _BROKEN:
            raise EvaluatorFailed("reading from the evaluating process failed") from message[1]
        return message, waited

    def close(self) -> None:
        self._closing = True
        self._thread.join()
        self._stream.close()


def _correlate(pipeline: Pipeline, receiver: _Receiver) -> tuple[str, Any]:
    """Correlate the child's batches until its last message: ("done", value),
    ("failed", exception), or ("ended", None) when the pipe closed without one."""
    rules = pipeline.ruleset.rules
    options = pipeline.ruleset.options
    correlate = pipeline.correlate
    reject = pipeline.reject
    advance = pipeline.advance
    printed: list[Any] = []  # what the next activity's rules wrote (str: stdout, (str,): stderr)
    # Seconds this side has waited for the child lately: time its store's chores may
    # take now without slowing the replay (the queue covers the while).
    slack = 0.0
    while True:
        message, waited = receiver.get()
        slack = min(slack + waited, MAX_SLACK)
        if message is None:
            _write(printed)
            return "ended", None
        kind, payload = message
        if kind == _LAST:
            _write(printed)  # what the rules wrote before the child stopped
            try:
                return pickle.loads(payload)
            except Exception as error:  # noqa: BLE001 - an exception that does not unpickle
                return "failed", EvaluatorFailed(f"its last message is unreadable: {error}")
        batch = marshal.loads(payload) if kind == _MARSHAL else pickle.loads(payload)
        for item in batch:
            kind_of = type(item)
            if kind_of is str or (kind_of is tuple and len(item) == 1):
                printed.append(item)  # by the next activity's rules: written in its place
                continue
            if kind_of is not tuple:
                reject(item)
                continue
            if printed:  # as with one process: the alerts its time closes, then what its
                advance(item[0])  # rules wrote, then its own alerts
                _write(printed)
            if len(item) == 2:
                correlate(item[0], None, _NONE, _NONE, item[1] or _NONE)
                continue
            epoch, learned, ident, text, sent, failed = item
            record = ForwardedRecord(epoch, ident, text)
            matches = []
            for fields in sent:
                rule = rules[fields[0]]
                event = Event.of(record, options) if rule.needs_event else None
                matches.append(Match.from_wire(rule, record, event, fields))
            failures = [(rules[number], failure) for number, failure in failed]
            correlate(epoch, record, matches, failures, learned or _NONE)
        if slack:
            slack = max(0.0, slack - pipeline.idle(slack))


def _evaluate(
    pipeline: Pipeline,
    records: Callable[[], Records],
    finish: Callable[[], Any] | None,
    write_end: int,
    parent: int,
) -> None:
    """The child: evaluate every record and send the batches, then its last message.
    Leaves with `os._exit`, so nothing of the parent's (its store, its buffered output)
    is flushed or closed twice. What rules write to stdout and stderr goes to the parent
    with the batches (`_Written`), which writes it in its place among its own output."""
    _end_with(parent)
    pipeline.store.after_fork()
    written = _Written()
    code = 1
    stream = os.fdopen(write_end, "wb", buffering=_BUFFER)
    try:
        _evaluate_all(pipeline, records(), stream, written)
        last: tuple[str, Any] = ("done", finish() if finish is not None else None)
        code = 0
    except BaseException as error:  # noqa: BLE001 - reported to the parent, which raises it
        error.add_note("(in the evaluating process)\n" + "".join(traceback.format_exception(error)))
        last = ("failed", error)
    try:
        payload = pickle.dumps(last, pickle.HIGHEST_PROTOCOL)
        pickle.loads(payload)  # what the parent will do
    except Exception:  # noqa: BLE001 - a value or exception that does not (un)pickle
        kind, value = last
        error = EvaluatorFailed(f"{type(value).__name__}: {value}")
        if kind == "failed":
            error.add_note("".join(traceback.format_exception(value)))
        payload = pickle.dumps(("failed", error), pickle.HIGHEST_PROTOCOL)
    _send(stream, _LAST, payload)
    stream.flush()
    _flush_output()
    os._exit(code)


def _end_with(parent: int) -> None:
    """Have the kernel kill this child when the parent ends (Linux), so an orphan does
    not read on after a `kill -9` of the parent."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it ended before that took effect
        os._exit(1)


def _flush_output() -> None:
    for output in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            output.flush()  # type: ignore[union-attr]


class _Written:
    """What the rules write to stdout and stderr in the child, taken as text to be
    written by the parent in its place. Each stream is encoded as the parent's would
    encode it (a character it cannot take fails the write, in the rule, as with one
    process) and decoded back, so the parent writes the same text through its own."""

    def __init__(self) -> None:
        self._streams = []
        for name in ("stdout", "stderr"):
            real = getattr(sys, name)
            encoding = getattr(real, "encoding", None) or "utf-8"
            errors = getattr(real, "errors", None) or "strict"
            buffer = io.BytesIO()
            wrapper = io.TextIOWrapper(buffer, encoding=encoding, errors=errors, write_through=True)
            setattr(sys, name, wrapper)
            decoder = codecs.getincrementaldecoder(encoding)(errors)
            self._streams.append((buffer, decoder))
        (out, _), (err, _) = self._streams
        self.tells = out.tell, err.tell  # nonzero: something was written to that stream

    def take(self) -> list[Any]:
        """What was written since the last call: stdout as a str, stderr as a (str,)."""
        taken: list[Any] = []
        for (buffer, decoder), wrap in zip(self._streams, (str, _one), strict=True):
            if buffer.tell():
                text = decoder.decode(buffer.getvalue())
                buffer.seek(0)
                buffer.truncate()
                if text:
                    taken.append(wrap(text))
        return taken


def _one(text: str) -> tuple[str]:
    return (text,)


def _write(written: list[Any]) -> None:
    """Write what rules wrote in the child (`_Written.take`), in its place among this
    process's output, and forget it."""
    for item in written:
        if type(item) is str:
            sys.stdout.write(item)
        else:
            sys.stderr.write(item[0])
    written.clear()


def _send(stream: IO[bytes], kind: bytes, payload: bytes) -> None:
    stream.write(_HEADER.pack(kind, len(payload)))
    stream.write(payload)


def _send_batch(stream: IO[bytes], batch: list[Any]) -> None:
    """marshal when the batch is plain data (it nearly always is: twice as fast as
    pickle), pickle when it holds a rejected record, a rule failure or a Panther rule's
    outputs; outputs that do not pickle (a context() value of some odd class) cross as
    the JSON the outbox would store them as."""
    try:
        _send(stream, _MARSHAL, marshal.dumps(batch, 4))
        return
    except ValueError:
        pass
    try:
        payload = pickle.dumps(batch, pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - some rendered output does not pickle
        payload = pickle.dumps([_picklable(item) for item in batch], pickle.HIGHEST_PROTOCOL)
    _send(stream, _PICKLE, payload)


def _picklable(item: Any) -> Any:
    if type(item) is not tuple or len(item) != 6:  # not an activity with matches
        return item
    *head, sent, failures = item
    sent = [(*match[:6], _plain(match[6])) for match in sent]
    return (*head, sent, failures)


def _plain(rendered: Rendered | None) -> Rendered | None:
    if rendered is None:
        return None
    try:
        pickle.dumps(rendered, pickle.HIGHEST_PROTOCOL)
        return rendered
    except Exception:  # noqa: BLE001
        context = from_json(to_json(rendered.context, fallback=str))
        return dataclasses.replace(rendered, context=context)


def _evaluate_all(
    pipeline: Pipeline, records: Records, stream: IO[bytes], written: _Written
) -> None:
    """Evaluate and send, a batch every `BATCH` activities; what is evaluated is sent
    even when reading fails half-way, so the parent keeps all it would have kept. What
    the rules write goes in the batch before the activity's item."""
    lists = pipeline.ruleset.lists
    lists.keep_in_memory()  # learned here to evaluate with; the parent stores them
    evaluate = pipeline.evaluator.evaluate
    learned_from = pipeline.evaluator.learned
    # Per rule: its number, and whether its dedup key is worked out here: a threshold
    # rule's without Python code (the parent needs it for every match; a template cannot
    # print, nor depend on anything but the activity). Everything else renders in the
    # parent, when an alert needs it, as with one process.
    about = {
        id(rule): (
            number,
            rule.alert
            and rule.module is None
            and rule.threshold is not None
            and not rule.threshold.anchored,
        )
        for number, rule in enumerate(pipeline.ruleset.rules)
    }
    out_written, err_written = written.tells
    batch: list[Any] = []
    append = batch.append
    activities = 0  # in the batch: rejected records are not counted (nor by commits)
    try:
        for record in records:
            if type(record) is not ActivityRecord:
                append(record)
                continue
            matches, errors = evaluate(record)
            learned = learned_from(record, matches) or None
            # A failed `learn_from` path is a 2-tuple; with it, the parent needs the record.
            if not (matches or errors or (learned and (len(learned) > 1 or len(learned[0]) == 2))):
                item: tuple[Any, ...] = (record.epoch, learned)
            else:
                sent = []
                for match in matches:
                    rule = match.rule
                    number, keyed = about[id(rule)]
                    sent.append(match.to_wire(number, keyed))
                    if rule.learn:
                        learn_lists(lists, rule, record)  # its failures are the parent's to report
                failures = (
                    [(about[id(rule)][0], RuleFailure.of(error)) for rule, error in errors]
                    if errors
                    else _NONE
                )
                # The line as read; an activity from a JSON array has none, and goes as
                # its mapping (re-encoding it could fail where the reading did not).
                text = record.text if record.text is not None else record.raw
                item = (record.epoch, learned, record.id, text, sent, failures)
            if out_written() or err_written():  # what its rules wrote, before its alerts
                batch.extend(written.take())
            append(item)
            activities += 1
            if activities == BATCH:
                _send_batch(stream, batch)
                batch.clear()
                activities = 0
    finally:
        batch.extend(written.take())  # and what a rule that stopped it all wrote
        _send_batch(stream, batch)
