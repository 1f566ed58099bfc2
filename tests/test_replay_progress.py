"""The progress line of a long `detect replay`: drawn in place on a terminal (a real
pseudo-terminal, one and two processes), throttled exactly (a fake terminal and clock),
and absent where stderr is not a terminal or `--no-progress` is given."""

from __future__ import annotations

import fcntl
import io
import logging
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest

from engine.feedgen.writer import generate
from engine.feedgen.writer import write_jsonl as write_feed
from engine.runs import build
from engine.runs.progress import InputPosition, ReplayProgress, StatusLine
from engine.sources.files import read_sources
from tests.conftest import at, run_detect, write_jsonl

FEED_LINES = 20_000
# A rule that sleeps 10 ms every 100 activities: 20,000 activities take about two
# seconds more than they would, long enough for a few redraws on any machine.
SLOW_RULE = (
    "import time\n\nseen = 0\n\n\ndef rule(event):\n    global seen\n    seen += 1\n"
    "    if seen % 100 == 0:\n        time.sleep(0.01)\n    return False\n"
)
DRAWN = re.compile(
    r"replay: (\d+)% · ([\d,]+) activities · ([\d,]+)/s(?: · at (\d{4}-\d\d-\d\dT[\d:]{8}Z))?$"
)


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _drawn_lines(text: str) -> list[str]:
    return [
        part.removesuffix("\x1b[K")
        for part in text.split("\r")
        if part.endswith("\x1b[K") and part != "\x1b[K"
    ]


# -- the command, under a pseudo-terminal ---------------------------------------------


def _run(args: list[str], cwd: Path, terminal: bool) -> tuple[str, float, int]:
    """`detect ARGS` with stderr on a new pseudo-terminal (or a pipe): what it wrote
    there, its wall time, its exit code."""
    env = {**os.environ, "NO_COLOR": "1"}
    command = [sys.executable, "-m", "engine", *args]
    started = time.monotonic()
    if not terminal:
        done = subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        return done.stderr, time.monotonic() - started, done.returncode
    master, slave = pty.openpty()
    try:
        child = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=slave,
        )
    finally:
        os.close(slave)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the last holder of the terminal closed it
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = child.wait(timeout=120)
    finally:
        os.close(master)
    return b"".join(chunks).decode(), time.monotonic() - started, code


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[str, float, int]]:
    """Three replays of one 20,000-line feed with a slow rule, run side by side (they
    mostly sleep): on a terminal with one and with two processes, and on a pipe."""
    folder = tmp_path_factory.mktemp("progress")
    write_feed(folder / "feed.jsonl", generate(FEED_LINES, seed=7))
    rules = folder / "rules"
    rules.mkdir()
    (rules / "slow.py").write_text(SLOW_RULE, encoding="utf-8")
    (rules / "slow.yml").write_text(
        "id: t.slow\nname: slow\nseverity: low\npython: slow.py\n", encoding="utf-8"
    )
    common = ["replay", "feed.jsonl", "--rules", str(rules), "--no-quarantine"]
    plans = {
        "one": ([*common, "--processes", "1"], True),
        "two": ([*common, "--processes", "2"], True),
        "pipe": ([*common, "--processes", "2"], False),
    }
    results: dict[str, tuple[str, float, int]] = {}

    def one(name: str) -> None:
        args, terminal = plans[name]
        results[name] = _run(args, folder, terminal)

    threads = [threading.Thread(target=one, args=(name,)) for name in plans]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.parametrize("mode", ["one", "two"])
def test_a_long_replay_on_a_terminal_redraws_its_progress_in_place(runs, mode):
    text, seconds, code = runs[mode]
    assert code == 0, text
    first, rest = text.split("\r\n", 1)
    assert first.startswith("rules: ") and "1 active" in first  # the packs' line first
    draws = _drawn_lines(rest)
    assert len(draws) >= 2, text
    assert len(draws) <= 2 * seconds + 1  # at most two redraws a second
    shown = [DRAWN.match(draw) for draw in draws]
    assert all(shown), draws
    counts = [int(m[2].replace(",", "")) for m in shown]
    fractions = [int(m[1]) for m in shown]
    times = [m[4] for m in shown if m[4]]  # from the first activity evaluated on
    assert counts == sorted(counts) and counts[0] < counts[-1] <= FEED_LINES
    assert fractions == sorted(fractions) and fractions[0] >= 0 and fractions[-1] <= 100
    assert times == sorted(times)
    # Erased before the summary, which is the last line.
    assert rest.endswith(
        f"\r\x1b[K{FEED_LINES} activities read · 0 rejected · 1 rules · 0 matches · 0 alerts\r\n"
    ), rest[-300:]


def test_nothing_is_drawn_when_stderr_is_not_a_terminal(runs):
    text, _, code = runs["pipe"]
    assert code == 0, text
    assert "\r" not in text and "\x1b" not in text
    assert len(text.splitlines()) == 2  # the packs' line and the summary


class Recorded(ReplayProgress):
    made: ClassVar[list[Recorded]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.made.append(self)


@pytest.mark.parametrize(
    "stderr, flags, drawn",
    [(FakeTerminal, [], True), (FakeTerminal, ["--no-progress"], False), (io.StringIO, [], False)],
)
def test_the_line_is_for_a_terminal_unless_switched_off(
    tmp_path, monkeypatch, rules_dir, make_activity, stderr, flags, drawn
):
    from engine.cli import main

    rules_dir.write("login.yml", "id: t.login\nname: login\nseverity: low\nmatch: {type: login}\n")
    write_jsonl(tmp_path / "feed.jsonl", [make_activity()])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("engine.runs.progress.ReplayProgress", Recorded)
    monkeypatch.setattr(sys, "stderr", stderr())
    Recorded.made.clear()
    arguments = ["replay", "feed.jsonl", "--rules", str(rules_dir.path), "--processes", "1"]
    assert main([*arguments, "--no-quarantine", *flags]) == 0
    assert len(Recorded.made) == (1 if drawn else 0)
    if drawn:
        assert Recorded.made[0].line.stream is sys.stderr


# -- in this process: a fake terminal and clock -----------------------------------------


@pytest.fixture
def feed(tmp_path, make_activity):
    raws = [make_activity(created_at=at(minutes=m)) for m in range(40)]
    return write_jsonl(tmp_path / "feed.jsonl", raws)


def _pipeline(rules_dir):
    rules_dir.write("login.yml", "id: t.login\nname: login\nseverity: low\nmatch: {type: login}\n")
    return build.pipeline(rules_dir.load(), None, [])


def test_redraws_start_after_a_second_and_come_at_most_every_half_second(rules_dir, feed):
    terminal, clock = FakeTerminal(), FakeClock()
    run = _pipeline(rules_dir)
    progress = ReplayProgress(terminal, [str(feed)], clock=clock)
    progress.watch(run)
    drawn_after = []
    for number, record in enumerate(read_sources([str(feed)]), start=1):
        run.process(record)
        clock.now += 0.125  # exact in binary: the throttle's arithmetic is exact too
        if progress.tick():
            drawn_after.append(number)
        assert not progress.tick()  # twice at one instant: once at most
    # First at 1 s (8 activities in), then every 0.5 s (4 activities).
    assert drawn_after == list(range(8, 41, 4))
    draws = _drawn_lines(terminal.getvalue())
    assert [int(DRAWN.match(d)[2]) for d in draws] == drawn_after
    fractions = [int(DRAWN.match(d)[1]) for d in draws]  # the file read as it is parsed
    assert fractions == sorted(fractions) and fractions[0] > 0 and fractions[-1] == 100
    assert DRAWN.match(draws[0])[3] == "8"  # 8 activities in 1 s
    progress.stop()
    assert terminal.getvalue().endswith("\r\x1b[K")  # erased, for the summary


def test_a_replay_shorter_than_a_second_draws_nothing(rules_dir, feed):
    terminal, clock = FakeTerminal(), FakeClock()
    run = _pipeline(rules_dir)
    progress = ReplayProgress(terminal, [str(feed)], clock=clock)
    progress.watch(run)
    for record in read_sources([str(feed)]):
        run.process(record)
        clock.now += 0.02
        assert not progress.tick()
    progress.stop()
    assert terminal.getvalue() == ""


def test_what_the_replay_writes_erases_the_line_and_is_not_drawn_over(rules_dir, feed):
    terminal, clock = FakeTerminal(), FakeClock()
    progress = ReplayProgress(terminal, [str(feed)], clock=clock)
    progress.watch(_pipeline(rules_dir))
    shared = progress.share(terminal)
    assert progress.share(io.StringIO()).__class__ is io.StringIO  # a file: as it is
    clock.now += 2
    assert progress.tick()
    shared.write("an alert")  # print's first write: the text
    clock.now += 2
    assert not progress.tick()  # not over a half-written line
    shared.write("\n")
    assert progress.tick()
    assert terminal.getvalue() == (
        "\rreplay: 0% · 0 activities · 0/s\x1b[K"
        "\r\x1b[Kan alert\n"
        "\rreplay: 0% · 0 activities · 0/s\x1b[K"
    )


def test_the_fraction_read_counts_the_inputs_before_the_open_one(tmp_path):
    first = tmp_path / "a.jsonl"
    second = tmp_path / "b.jsonl"
    first.write_bytes(b"x" * 300)
    second.write_bytes(b"y" * 100)
    position = InputPosition([str(first), str(second)])
    assert position.fraction(os.getpid()) == 0.0  # nothing open yet
    with open(second, "rb", buffering=0) as reading:
        reading.read(60)
        assert position.fraction(os.getpid()) == pytest.approx(360 / 400)
    assert position.fraction(os.getpid()) == 1.0  # closed: read to its end
    assert InputPosition(["-"]).fraction(os.getpid()) is None  # stdin: unknown
    assert InputPosition([str(first), "-"]).fraction(os.getpid()) is None


def test_the_status_line_fits_the_terminal_width():
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 20, 0, 0))
    with os.fdopen(slave, "w") as stream:
        line = StatusLine(stream)
        line.draw("0123456789" * 5)
        line.end()
    drawn = os.read(master, 1024).decode()
    os.close(master)
    assert drawn.startswith("\r0123456789012345678\x1b[K")  # 19 of 20 columns


def test_log_lines_erase_the_line_too(rules_dir, feed):
    terminal, clock = FakeTerminal(), FakeClock()
    progress = ReplayProgress(terminal, [str(feed)], clock=clock)
    progress.watch(_pipeline(rules_dir))
    handler = logging.StreamHandler(terminal)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with progress.logs_shared():
            clock.now += 2
            assert progress.tick()
            logging.getLogger("engine.detection").warning("rule t.login quarantined")
        assert handler.stream is terminal
    finally:
        root.removeHandler(handler)
    assert terminal.getvalue().endswith("\x1b[K\r\x1b[Krule t.login quarantined\n")


# -- the packs' line -------------------------------------------------------------------


def test_the_first_line_names_the_packs_once_the_setup_checks_pass(
    tmp_path, rules_dir, make_activity
):
    rules_dir.write("login.yml", "id: t.login\nname: login\nseverity: low\nmatch: {type: login}\n")
    write_jsonl(tmp_path / "feed.jsonl", [make_activity()])
    packs = ("--rules", "builtin", "--rules", str(rules_dir.path))
    done = run_detect("replay", "feed.jsonl", *packs, "--no-quarantine", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    first, summary = done.stderr.splitlines()
    assert first.startswith("rules: builtin (") and f"{rules_dir.path} (1)" in first
    assert summary.startswith("1 activities read")
    # A setup error is the only line: a missing input, a state file that is a folder.
    mine = ("--rules", str(rules_dir.path))
    missing = run_detect("replay", "absent.jsonl", *mine, cwd=tmp_path)
    (tmp_path / "folder").mkdir()
    broken = run_detect("replay", "feed.jsonl", *mine, "--state", "folder", cwd=tmp_path)
    for failed in (missing, broken):
        assert failed.returncode in (1, 2) and failed.stderr.count("\n") == 1, failed.stderr
        assert failed.stderr.startswith("error: ")
