"""Progress on a terminal: one status line redrawn in place (the live run's catch-up bar,
a long `detect replay`'s counts).

Only a terminal gets it: logs and CI read stderr as lines, and a line rewritten with
carriage returns is noise there. A replay's progress costs its loop nothing: a thread of
this process reads the counts the pipeline keeps anyway (activities, the event time
reached) a few times a second, and how far the input files have been read from Linux's
`/proc` (the reader's file offset), so the reader needs no hook and it is the same
whether this process reads the inputs or a forked child does (`engine/runs/forked.py`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any

from engine.activity import format_timestamp
from engine.pipeline import Pipeline

_ERASE = "\r\x1b[K"  # to the start of the line, and clear it


def is_terminal(stream: Any) -> bool:
    """Whether `stream` is a terminal (a closed or odd stream is not)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class StatusLine:
    """One line of a terminal, redrawn in place: each `draw` returns to the start of the
    line, writes the text cut to the terminal's width (a wrapped line could no longer be
    redrawn) and clears what a longer text left; `erase` leaves the line empty for what
    comes next, `end` keeps the last text and moves on."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.drawn = False

    def draw(self, text: str) -> None:
        width = self._width()
        if width:
            text = text[: width - 1]
        self.stream.write(f"\r{text}\x1b[K")
        self.stream.flush()
        self.drawn = True

    def erase(self) -> None:
        if self.drawn:
            self.stream.write(_ERASE)
            self.stream.flush()
            self.drawn = False

    def end(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False

    def _width(self) -> int:
        """The terminal's columns, 0 when unknown (a new pseudo-terminal says 0)."""
        try:
            return os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, ValueError, OSError):
            return 0


class InputPosition:
    """How far the reading process is through the input files, as a fraction of their
    total size: the offset of the input it has open (Linux's `/proc/PID/fdinfo`), plus
    the sizes of the inputs before it. None where that cannot be known: stdin, an input
    that is not a regular file, no `/proc`. (A `.gz` input counts its compressed bytes,
    which are what its size is.)"""

    def __init__(self, paths: Sequence[str]) -> None:
        self._files: list[tuple[str, int]] = []
        self._total = 0
        self._at = -1  # the last input seen open: the ones before it are read
        try:
            for path in paths:
                if str(path) == "-" or not os.path.isfile(path):
                    self._files = []
                    return
                self._files.append((os.path.realpath(path), os.path.getsize(path)))
        except OSError:
            self._files = []
            return
        self._total = sum(size for _, size in self._files)

    def fraction(self, pid: int) -> float | None:
        """The fraction of the inputs process `pid` has read, or None if unknown."""
        if not self._files or not self._total:
            return None
        folder = f"/proc/{pid}/fd"
        try:
            descriptors = os.listdir(folder)
        except OSError:
            return None
        found: tuple[int, int] | None = None  # (input, offset) of the first input open
        for fd in descriptors:
            try:
                target = os.readlink(f"{folder}/{fd}")
            except OSError:
                continue  # closed since the listing
            index = self._open_input(target)
            if index is None or (found is not None and found[0] <= index):
                continue
            offset = _offset(pid, fd)
            if offset is not None:
                found = (index, offset)
        if found is None:  # between two inputs, or past the last one seen
            done = sum(size for _, size in self._files[: self._at + 1])
        else:
            self._at = found[0]
            done = sum(size for _, size in self._files[: found[0]]) + found[1]
        return min(1.0, done / self._total)

    def _open_input(self, target: str) -> int | None:
        """Which input (not before the last seen: a file given twice) `target` is."""
        for index in range(max(self._at, 0), len(self._files)):
            if self._files[index][0] == target:
                return index
        return None


def _offset(pid: int, fd: str) -> int | None:
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}", encoding="ascii") as info:
            for line in info:
                if line.startswith("pos:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


class ReplayProgress:
    """A long replay's status line on a terminal: activities read, their rate, the event
    time reached and, when it can be known, the fraction of the input read. Drawn only
    once the replay has run `delay` seconds (a short one stays silent), then at most
    once every `interval` seconds, by a thread polling `tick` (the replay loop itself
    checks no clock); erased at the end, before the summary. What the replay writes to
    the same terminal goes through `share`, which erases the line first."""

    def __init__(
        self,
        stream: IO[str],
        paths: Sequence[str],
        *,
        clock: Callable[[], float] = time.monotonic,
        delay: float = 1.0,
        interval: float = 0.5,
    ) -> None:
        self.line = StatusLine(stream)
        self.clock = clock
        self.delay = delay
        self.interval = interval
        self.position = InputPosition(paths)
        self._lock = threading.RLock()  # the status line against the replay's writes
        self._pipeline: Pipeline | None = None
        self._reader = os.getpid()
        self._began = 0.0
        self._drawn_at: float | None = None
        self._mid_line = False  # a shared stream is in the middle of a line
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, pipeline: Pipeline) -> None:
        """Count what `pipeline` correlates, from now on."""
        self._pipeline = pipeline
        self._began = self.clock()

    def reading(self, pid: int) -> None:
        """The inputs are read by process `pid` (the forked child), not this one."""
        self._reader = pid

    def tick(self) -> bool:
        """Redraw the line if it is time to; whether it was redrawn."""
        pipeline = self._pipeline
        if pipeline is None:
            return False
        with self._lock:
            now = self.clock()
            elapsed = now - self._began
            if elapsed < self.delay or self._mid_line:
                return False
            if self._drawn_at is not None and now - self._drawn_at < self.interval:
                return False
            self._drawn_at = now
            self.line.draw(self.describe(pipeline, elapsed))
            return True

    def describe(self, pipeline: Pipeline, elapsed: float) -> str:
        activities = pipeline.stats.activities
        parts = [f"{activities:,} activities", f"{activities / elapsed:,.0f}/s"]
        reached = pipeline.correlator.watermark
        if reached is not None:
            parts.append(f"at {format_timestamp(reached, 'seconds')}")
        fraction = self.position.fraction(self._reader)
        if fraction is not None:
            parts.insert(0, f"{fraction:.0%}")
        return "replay: " + " · ".join(parts)

    def start(self, period: float = 0.1) -> None:
        """Tick every `period` seconds on a thread of its own, until `stop`. (Started
        after a fork, never before: a forked child must not inherit a lock it holds.)"""
        self._thread = threading.Thread(
            target=self._run, args=(period,), name="detect-progress", daemon=True
        )
        self._thread.start()

    def _run(self, period: float) -> None:
        while not self._stop.wait(period):
            self.tick()

    def stop(self) -> None:
        """No more ticks, and the line erased (the summary takes its place)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            self.line.erase()

    def share(self, stream: IO[str]) -> IO[str]:
        """`stream` as the replay should write to it: through `SharedStream` when it is
        this line's stream or another terminal, else as it is."""
        if stream is self.line.stream or is_terminal(stream):
            return SharedStream(stream, self)  # type: ignore[return-value]
        return stream

    @contextlib.contextmanager
    def logs_shared(self) -> Iterator[None]:
        """Meanwhile, the log handlers that write to this line's stream write through
        `share` (a rule quarantined mid-replay logs a warning)."""
        stream = self.line.stream
        handlers = [
            handler
            for handler in logging.getLogger().handlers
            if isinstance(handler, logging.StreamHandler) and handler.stream is stream
        ]
        for handler in handlers:
            handler.setStream(self.share(stream))
        try:
            yield
        finally:
            for handler in handlers:
                handler.setStream(stream)

    def written(self, stream: IO[str], text: str) -> int:
        """Write `text` to `stream`, the line erased first (`SharedStream`)."""
        with self._lock:
            self.line.erase()
            count = stream.write(text)
            if text:
                self._mid_line = not text.endswith("\n")
            return count


class SharedStream:
    """A stream that shares the terminal with a status line: each write erases the line
    first, and the line is not drawn again while a line of text is half written (print
    writes its text, then the newline). Everything else is the stream's own."""

    def __init__(self, stream: IO[str], progress: ReplayProgress) -> None:
        self._stream = stream
        self._progress = progress

    def write(self, text: str) -> int:
        return self._progress.written(self._stream, text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
