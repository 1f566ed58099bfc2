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

`learned` is `Evaluator.learned`'s list, or None. The dedup key is worked out in the
child only for threshold rules, the ones that need it for every match; outputs only when
the rule rendered them eagerly (Panther rules). Everything else a match renders is
rendered here, on first use, from a `ForwardedRecord`: the activity's JSON text, decoded
only if something reads it (an alert's events, a title, a sequence's steps).

The child runs a rule's `rule()` and this process its `title()`, `dedup()` and other
hooks, so hooks must not depend on state a rule's code keeps for itself (module globals).
Lists learned from the feed are learned in both: in the child, to evaluate with them;
here, to store them.
"""

from __future__ import annotations

import contextlib
import fcntl
import marshal
import os
import pickle
import queue
import signal
import struct
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO, Any

from pydantic_core import from_json, to_json

from engine.activity import ActivityRecord, Event, parse_timestamp
from engine.detection.failures import RuleFailure
from engine.detection.rule import Match
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
# A message: kind and length, then the payload: a batch (marshal or pickle), or the last.
_HEADER = struct.Struct("<cI")
_MARSHAL, _PICKLE, _LAST = b"M", b"P", b"L"
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

    def __init__(self, epoch: float, ident: str, text: bytes) -> None:
        self.epoch = epoch
        self.id = ident
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
) -> ChildReport:
    """Run `records()` through `pipeline` on two processes: a forked child calls
    `records()`, evaluates each activity and sends what correlation needs; this process
    correlates it, as `pipeline.run` would (commits included; `pipeline.finish()` is the
    caller's). `finish`, if given, runs in the child at the end and its (picklable)
    value comes back. An exception in the child (an unreadable input) is raised here;
    if this process stops early, the child is stopped too."""
    read_end, write_end = os.pipe()
    with contextlib.suppress(AttributeError, OSError):  # Linux only; a default pipe works
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    _flush_output()  # what is buffered now is this process's to write, not the child's too
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_end)
        _evaluate(pipeline, records, finish, write_end)
    os.close(write_end)
    receiver = _Receiver(read_end)
    outcome: tuple[str, Any] | None = None
    try:
        outcome = _correlate(pipeline, receiver)
        if outcome[0] == "done":
            pipeline.commit()
    finally:
        if outcome is None:  # stopped early: the child may be blocked writing
            os.kill(pid, signal.SIGKILL)
        receiver.close()
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
        self._queue: queue.Queue[tuple[bytes, bytes] | None] = queue.Queue(QUEUED)
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="detect-receive", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        read = self._stream.read
        while True:
            header = read(_HEADER.size)
            message = None
            if len(header) == _HEADER.size:
                kind, size = _HEADER.unpack(header)
                payload = read(size)
                if len(payload) == size:
                    message = kind, payload
            while not self._closing:
                try:
                    self._queue.put(message, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if message is None or self._closing:
                return

    def get(self, idle: Callable[[], None]) -> tuple[bytes, bytes] | None:
        """The next (kind, payload); None once the pipe has closed without more. If none
        is waiting, `idle()` runs first."""
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            idle()
        return self._queue.get()

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
    while True:
        message = receiver.get(pipeline.idle)
        if message is None:
            return "ended", None
        kind, payload = message
        if kind == _LAST:
            return pickle.loads(payload)
        batch = marshal.loads(payload) if kind == _MARSHAL else pickle.loads(payload)
        for item in batch:
            if type(item) is not tuple:
                reject(item)
                continue
            if len(item) == 2:
                correlate(item[0], None, _NONE, _NONE, item[1] or _NONE)
                continue
            epoch, learned, ident, text, sent, failed = item
            record = ForwardedRecord(epoch, ident, text)
            matches = []
            for number, distinct, new_value, key, steps, dedup, rendered in sent:
                rule = rules[number]
                event = Event.of(record, options) if rule.needs_event else None
                match = Match(rule, record, event, distinct, new_value, key, steps)
                match._dedup = dedup
                match._rendered = rendered
                matches.append(match)
            failures = [(rules[number], failure) for number, failure in failed]
            correlate(epoch, record, matches, failures, learned or _NONE)


def _evaluate(
    pipeline: Pipeline,
    records: Callable[[], Records],
    finish: Callable[[], Any] | None,
    write_end: int,
) -> None:
    """The child: evaluate every record and send the batches, then its last message.
    Leaves with `os._exit`, so nothing of the parent's (its store, its buffered output)
    is flushed or closed twice."""
    code = 1
    stream = os.fdopen(write_end, "wb", buffering=_BUFFER)
    try:
        try:
            _evaluate_all(pipeline, records(), stream)
            last: tuple[str, Any] = ("done", finish() if finish is not None else None)
            code = 0
        except BaseException as error:  # noqa: BLE001 - reported to the parent, which raises it
            last = ("failed", error)
        try:
            payload = pickle.dumps(last, pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 - an exception that does not pickle
            error = EvaluatorFailed(f"{type(last[1]).__name__}: {last[1]}")
            payload = pickle.dumps(("failed", error), pickle.HIGHEST_PROTOCOL)
        _send(stream, _LAST, payload)
        stream.flush()
    finally:
        _flush_output()  # what a rule printed
        os._exit(code)


def _flush_output() -> None:
    for output in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            output.flush()


def _send(stream: IO[bytes], kind: bytes, payload: bytes) -> None:
    stream.write(_HEADER.pack(kind, len(payload)))
    stream.write(payload)


def _send_batch(stream: IO[bytes], batch: list[Any]) -> None:
    """marshal when the batch is plain data (it nearly always is: twice as fast as
    pickle), pickle when it holds a rejected record, a rule failure or outputs."""
    try:
        _send(stream, _MARSHAL, marshal.dumps(batch, 4))
    except ValueError:
        _send(stream, _PICKLE, pickle.dumps(batch, pickle.HIGHEST_PROTOCOL))


def _evaluate_all(pipeline: Pipeline, records: Records, stream: IO[bytes]) -> None:
    lists = pipeline.ruleset.lists
    lists.keep_in_memory()  # learned here to evaluate with; the parent stores them
    evaluate = pipeline.evaluator.evaluate
    learned_from = pipeline.evaluator.learned
    # Per rule: its number, and whether its dedup key is worked out here (threshold
    # rules count every match under it).
    about = {
        id(rule): (
            number,
            rule.alert and rule.threshold is not None and not rule.threshold.anchored,
        )
        for number, rule in enumerate(pipeline.ruleset.rules)
    }
    batch: list[Any] = []
    append = batch.append
    activities = 0  # in the batch: rejected records are not counted (nor by commits)
    for record in records:
        if type(record) is not ActivityRecord:
            append(record)
            continue
        matches, errors = evaluate(record)
        learned = learned_from(record, matches) or None
        # A failed `learn_from` path is a 2-tuple; with it, the parent needs the record.
        if not (matches or errors or (learned and (len(learned) > 1 or len(learned[0]) == 2))):
            append((record.epoch, learned))
        else:
            sent = []
            for match in matches:
                rule = match.rule
                number, keyed = about[id(rule)]
                dedup = None
                rendered = match._rendered
                if keyed and rendered is None:
                    try:  # noqa: SIM105 - suppress() is a context manager per match
                        dedup = rule.render_dedup(record, match._event)
                    except Exception:  # noqa: BLE001 - the parent renders it again, and reports
                        pass
                sent.append(
                    (
                        number,
                        match.distinct_value,
                        match.new_value,
                        match.new_value_key,
                        match.steps,
                        dedup,
                        rendered,
                    )
                )
                if rule.learn:
                    learn_lists(lists, rule, record)  # its failures are the parent's to report
            failures = (
                [(about[id(rule)][0], RuleFailure.of(error)) for rule, error in errors]
                if errors
                else _NONE
            )
            text = record.text or to_json(record.raw)
            append((record.epoch, learned, record.id, text, sent, failures))
        activities += 1
        if activities == BATCH:
            _send_batch(stream, batch)
            batch.clear()
            activities = 0
    _send_batch(stream, batch)
