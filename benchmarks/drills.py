"""Every drill of issue 18 (docs/reliability.md), rerun end to end, as one Markdown table.

Each drill writes its rules, feed and configuration into a temporary directory and runs
the real `detect` command in a subprocess; the drills that need a server (the Compliance
API, a webhook or Slack receiver) get a real one on loopback. No test-only setting of the
engine is used: the time budget is the rule's own `time_budget`, the slow receivers answer
later than the destination's `timeout` but well within the answer wait of the product.

    python benchmarks/drills.py            # the full drills (a 20,000-activity feed)
    python benchmarks/drills.py --quick    # small inputs (2,000 activities), the suite's

Columns: exit code; a traceback anywhere in the output; a secret seen in any output
(stdout, stderr, `detect status`, the state file's bytes, what a receiver got); alerts
printed or received; lost and duplicated against what the drill expects; the verdict.
The command exits 1 when a drill fails.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.feedgen import generate, write_jsonl  # noqa: E402
from engine.resources import bundled_rules_dir  # noqa: E402
from engine.sources.files import ReadReport, read_sources  # noqa: E402
from engine.tools.mock_api import MockComplianceAPI, ScriptedResponse  # noqa: E402

LEAK = "SECRETSECRET"
KEY = "sk-ant-api03-DRILLS-Zq8vN3xR7wP2mK9sL4tY6uB1cD5eF0gH"
HOOK_SECRET = "whsec_c2VjcmV0LWtleS1mb3ItZHJpbGxzLW9ubHktMzJieXRlcyE="
LOGIN = "2026-05-07T10:{:02d}:00Z"


@dataclass
class Row:
    drill: str
    input: str
    expected: str
    exit: str = ""
    traceback: bool = False
    leaked: bool | None = None
    alerts: str = ""
    lost: str = ""
    duplicated: str = ""
    passed: bool = False
    note: str = ""


def _detect_command() -> list[str]:
    script = Path(sys.executable).with_name("detect")
    if script.exists():
        return [str(script)]
    found = shutil.which("detect")
    return [found] if found else [sys.executable, "-m", "engine"]


DETECT = _detect_command()


@dataclass
class Result:
    code: int
    out: str
    err: str
    seconds: float

    @property
    def text(self) -> str:
        return self.out + self.err

    @property
    def traceback(self) -> bool:
        return "Traceback" in self.text


def detect(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300):
    environ = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT), **(env or {})}
    environ.pop("FORCE_COLOR", None)
    started = time.monotonic()
    done = subprocess.run(
        [*DETECT, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=environ,
        timeout=timeout,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def alerts_of(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def compare(observed: list[str], expected: list[str]) -> tuple[int, int]:
    """Lost and duplicated lines of `observed` against `expected` (multisets)."""
    seen, want = Counter(observed), Counter(expected)
    return sum((want - seen).values()), sum((seen - want).values())


def python_rule(rules: Path, name: str, code: str, extra: str = "") -> None:
    rules.mkdir(exist_ok=True)
    (rules / f"{name}.py").write_text(code)
    (rules / f"{name}.yml").write_text(
        f"id: t.{name}\nname: {name}\nseverity: low\nmatch: {{type: login}}\n"
        f"python: {name}.py\n{extra}"
    )


def logins(path: Path, count: int, **fields: Any) -> None:
    with path.open("w") as handle:
        for n in range(count):
            activity = {
                "id": f"act_{n:04d}",
                "created_at": LOGIN.format(n),
                "type": "login",
                "actor": {"type": "user_actor", "email_address": "ana@example.com"},
                "organization_id": "org_01",
                **fields,
            }
            handle.write(json.dumps(activity) + "\n")


REPLAY = ("--format", "jsonl", "--no-quarantine", "--processes", "1")

# -- a rule cannot stop the stream --------------------------------------------------------


def _contained(work: Path, code: str, extra: str, count: int, error_type: str, errors: int):
    rules = work / "rules"
    python_rule(rules, "bad", code, extra)
    python_rule(rules, "fine", "def rule(event):\n    return True\n")
    logins(work / "feed.jsonl", count)
    result = detect("replay", "feed.jsonl", "--rules", "rules", *REPLAY, cwd=work, timeout=60)
    found = alerts_of(result.out) if result.code == 0 else []
    failures = [a for a in found if a.get("kind") == "rule_error"]
    fine = sum(a["event_count"] for a in found if a.get("rule_id") == "t.fine")
    right = (
        len(failures) == 1
        and failures[0]["context"].get("error_type") == error_type
        and failures[0]["event_count"] == errors
    )
    return result, found, fine, right


def drill_exit(work: Path, quick: bool) -> Row:
    result, found, fine, right = _contained(
        work, "import sys\n\ndef rule(event):\n    sys.exit(3)\n", "", 5, "SystemExit", 5
    )
    return Row(
        "a rule calls `sys.exit(3)`",
        "5 logins, the rule and a rule matching all",
        "exit 0; a `SystemExit` rule_error of 5; the other rule sees 5",
        str(result.code),
        result.traceback,
        alerts=str(len(found)),
        lost=str(max(0, 5 - fine)),
        duplicated=str(max(0, fine - 5)),
        passed=result.code == 0 and right and fine == 5 and not result.traceback,
    )


def drill_loop(work: Path, quick: bool) -> Row:
    loop = "def rule(event):\n    while True:\n        try:\n            pass\n"
    loop += "        except Exception:\n            pass\n"
    result, found, fine, right = _contained(work, loop, "time_budget: 0.05\n", 6, "RuleTimeout", 3)
    said = "quarantined" in result.err
    return Row(
        "a rule loops forever",
        "6 logins, `time_budget: 0.05`",
        "exit 0; a `RuleTimeout` rule_error of 3, then quarantined; the other rule sees 6",
        str(result.code),
        result.traceback,
        alerts=str(len(found)),
        lost=str(max(0, 6 - fine)),
        duplicated=str(max(0, fine - 6)),
        passed=result.code == 0 and right and said and fine == 6 and result.seconds < 10,
        note=f"{result.seconds:.1f} s",
    )


def drill_redos_python(work: Path, quick: bool) -> Row:
    rules = work / "rules"
    python_rule(
        rules,
        "redos",
        "import re\n\nPATTERN = re.compile(r'^(a+)+$')\n\n"
        "def rule(event):\n    return PATTERN.match(event['actor']['user_agent']) is not None\n",
        "time_budget: 0.1\n",
    )
    actor = {"type": "user_actor", "user_agent": "a" * 29 + "!"}
    logins(work / "feed.jsonl", 1, actor=actor)
    result = detect("replay", "feed.jsonl", "--rules", "rules", *REPLAY, cwd=work, timeout=60)
    found = alerts_of(result.out) if result.code == 0 else []
    timed_out = [a for a in found if a["context"].get("error_type") == "RuleTimeout"]
    return Row(
        "`^(a+)+$` in a Python rule's `re`",
        "1 activity, a 29-character user agent, `time_budget: 0.1`",
        "exit 0 within seconds; a `RuleTimeout` rule_error",
        str(result.code),
        result.traceback,
        alerts=str(len(found)),
        lost="0" if timed_out else "1",
        duplicated="0",
        passed=result.code == 0 and len(timed_out) == 1 and result.seconds < 10,
        note=f"{result.seconds:.1f} s",
    )


def drill_redos_match(work: Path, quick: bool) -> Row:
    rules = work / "rules"
    rules.mkdir()
    (rules / "redos.yml").write_text(
        "id: t.redos\nname: redos\nseverity: low\n"
        "match: {type: login, actor.user_agent: {regex: '^(a+)+$'}}\n"
    )
    count = 20
    with (work / "feed.jsonl").open("w") as handle:
        for n in range(count):
            agent = "a" * 5000 + ("" if n == 0 else "!")  # only the first matches
            handle.write(
                json.dumps(
                    {
                        "id": f"act_{n:04d}",
                        "created_at": LOGIN.format(n),
                        "type": "login",
                        "actor": {"type": "user_actor", "user_agent": agent},
                    }
                )
                + "\n"
            )
    result = detect("replay", "feed.jsonl", "--rules", "rules", *REPLAY, cwd=work, timeout=60)
    found = alerts_of(result.out) if result.code == 0 else []
    matched = sum(a["event_count"] for a in found if a.get("rule_id") == "t.redos")
    return Row(
        "`regex: '^(a+)+$'` in a rule's `match`",
        f"{count} activities, 5,000-character user agents, 1 matching",
        "exit 0 within seconds (RE2); 1 match",
        str(result.code),
        result.traceback,
        alerts=str(len(found)),
        lost=str(max(0, 1 - matched)),
        duplicated=str(max(0, matched - 1)),
        passed=result.code == 0 and matched == 1 and result.seconds < 10,
        note=f"{result.seconds:.1f} s",
    )


# -- secrets and rules paths --------------------------------------------------------------


def _files_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def drill_newline_key(work: Path, quick: bool) -> Row:
    state = work / "state" / "state.db"
    with MockComplianceAPI(list(generate(50, seed=3)), api_key=KEY) as mock:
        (work / "detect.yaml").write_text(
            f"source:\n  base_url: {mock.url}\n  api_key: ${{CKEY}}\n"
            f"rules: [{bundled_rules_dir()}]\nstate:\n  path: {state}\n"
            f"quarantine: {work / 'q.jsonl'}\n"
        )
        env = {"CKEY": f"sk-ant-api03-{LEAK}\nabc"}
        run = detect("run", "--once", "--config", "detect.yaml", cwd=work, env=env, timeout=60)
        status = detect("status", "--config", "detect.yaml", cwd=work, env=env, timeout=60)
        requests = len(mock.requests)
    state.parent.mkdir(exist_ok=True)
    leaked = LEAK in run.text + status.text or LEAK.encode() in _files_bytes(work / "state")
    one_line = len(run.err.strip().splitlines()) == 1 and "CKEY" in run.err
    return Row(
        "API key with a line break",
        "`api_key: ${CKEY}`, CKEY = `sk-…SECRET\\nabc`; `run --once`, then `status`",
        "exit 2, one line naming CKEY, no request, the value nowhere",
        f"{run.code} (status {status.code})",
        run.traceback or status.traceback,
        leaked,
        alerts="0",
        passed=run.code == 2 and one_line and not leaked and requests == 0 and not run.traceback,
        note=f"{requests} requests",
    )


class Receiver:
    """An HTTP receiver on loopback: answers 200 (every `slow_every`th after `delay` s)
    and keeps each request's headers and body."""

    def __init__(self, slow_every: int = 0, delay: float = 0.0) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with lock:
                    receiver.requests.append((dict(self.headers), body))
                    slow = slow_every and len(receiver.requests) % slow_every == 0
                if slow:
                    time.sleep(delay)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def drill_quoted_key(work: Path, quick: bool) -> Row:
    receiver = Receiver()
    state = work / "state" / "state.db"
    env = {"CKEY": KEY, "HOOK_URL": receiver.url("/hooks/alerts"), "HOOK_SECRET": HOOK_SECRET}
    try:
        with MockComplianceAPI(api_key=KEY) as mock:
            (work / "detect.yaml").write_text(
                f"source:\n  base_url: {mock.url}\n  api_key: ${{CKEY}}\n  max_retries: 0\n"
                f"rules: [{bundled_rules_dir()}]\nstate:\n  path: {state}\n"
                f"quarantine: {work / 'q.jsonl'}\n"
                "destinations:\n  hook:\n    type: webhook\n    url: ${HOOK_URL}\n"
                "    secret: ${HOOK_SECRET}\n"
            )
            first = detect("run", "--once", "--config", "detect.yaml", cwd=work, env=env)
            mock.script(
                ScriptedResponse(
                    401,
                    "authentication_error",
                    message=f"invalid x-api-key {KEY} (hook {HOOK_SECRET})",
                )
            )
            second = detect(
                *("run", "--once", "--config", "detect.yaml", "--deliver-timeout", "10"),
                cwd=work,
                env=env,
            )
        status = detect("status", "--config", "detect.yaml", cwd=work, env=env)
    finally:
        receiver.close()
    bodies = b"".join(body for _, body in receiver.requests)
    texts = (first.text + second.text + status.text).encode() + _files_bytes(work / "state")
    leaked = any(s.encode() in texts + bodies for s in (KEY, HOOK_SECRET))
    health = [b for _, b in receiver.requests if b"source_health" in b]
    redacted = b"[redacted]" in second.err.encode() and "[redacted]" in status.out
    return Row(
        "the API's error quotes the key and a webhook secret",
        "a 401 after a success: `run --once` twice, `status`, state file, webhook",
        "`[redacted]` in log, status, state and the alert; the secrets nowhere",
        f"{first.code}, {second.code} (status {status.code})",
        second.traceback or status.traceback,
        leaked,
        alerts=f"{len(health)} source_health",
        passed=(first.code, second.code, status.code) == (0, 1, 0)
        and not leaked
        and redacted
        and len(health) >= 1,
    )


def drill_rulez(work: Path, quick: bool) -> Row:
    state = work / "state.db"
    with MockComplianceAPI(list(generate(50, seed=3)), api_key=KEY) as mock:
        (work / "detect.yaml").write_text(
            f"source:\n  base_url: {mock.url}\n  api_key: {KEY}\n"
            f"rules: [rulez]\nstate:\n  path: {state}\n"
        )
        result = detect("run", "--once", "--config", "detect.yaml", cwd=work)
        requests = len(mock.requests)
    lines = result.err.strip().splitlines()
    return Row(
        "`rules: [rulez]` (a typo)",
        "`detect run --once` against a loopback API with 50 activities",
        "exit 2, `rules path … does not exist`, no request, no state file",
        str(result.code),
        result.traceback,
        alerts="0",
        passed=result.code == 2
        and len(lines) == 1
        and "rulez does not exist" in lines[0]
        and requests == 0
        and not state.exists(),
        note=f"{requests} requests",
    )


def drill_nodir(work: Path, quick: bool) -> Row:
    (work / "feed.jsonl").write_text("")
    (work / "empty").mkdir()
    runs = [
        detect("replay", "--rules", "nodir", "feed.jsonl", cwd=work),
        detect("test", "empty", cwd=work),
    ]
    if not quick:
        runs += [
            detect("validate", "nodir", cwd=work),
            detect("bench", "--rules", "nodir", "--generate", "10", cwd=work),
        ]
    ok = all(r.code == 2 and len(r.err.strip().splitlines()) == 1 for r in runs)
    return Row(
        "`--rules nodir`, a folder without rules",
        "replay / test" + ("" if quick else " / validate / bench"),
        "exit 2, one line naming the path",
        ", ".join(str(r.code) for r in runs),
        any(r.traceback for r in runs),
        alerts="0",
        passed=ok and not any(r.traceback for r in runs),
    )


def drill_quarantine(work: Path, quick: bool) -> Row:
    (work / "file").write_text("")
    (work / "folder").mkdir()
    (work / "feed.jsonl").write_text('{"not": "an activity"}\n')
    rules = str(bundled_rules_dir())
    runs = [
        detect("replay", "--rules", rules, "--quarantine", q, "feed.jsonl", cwd=work)
        for q in ("file/q.jsonl", "folder")
    ]
    ok = all(
        r.code == 2
        and len(r.err.strip().splitlines()) == 1
        and r.err.startswith("error: cannot write the quarantine file")
        for r in runs
    )
    return Row(
        "an unwritable `--quarantine`",
        "under a file; a folder",
        "exit 2, one line, before reading",
        ", ".join(str(r.code) for r in runs),
        any(r.traceback for r in runs),
        alerts="0",
        passed=ok and not any(r.traceback for r in runs),
    )


# -- replays ------------------------------------------------------------------------------


def _feed(work: Path, count: int) -> list[str]:
    path = work / "feed.jsonl"
    write_jsonl(path, generate(count, seed=3))
    return path.read_text().splitlines(keepends=True)


def _write(path: Path, lines: list[str]) -> str:
    path.write_text("".join(lines))
    return path.name


def drill_truncated_gz(work: Path, quick: bool) -> Row:
    lines = _feed(work, 2000 if quick else 20_000)
    whole = gzip.compress("".join(lines).encode())
    (work / "cut.jsonl.gz").write_bytes(whole[: len(whole) * 3 // 4])
    # How many lines the engine's reader gets out of the cut file (it reads in chunks,
    # so a little less than what zlib could decompress).
    count = sum(1 for _ in read_sources([str(work / "cut.jsonl.gz")], ReadReport()))
    _write(work / "rest.jsonl", lines[count:])
    _write(work / "prefix.jsonl", lines[:count])
    result = detect("replay", "cut.jsonl.gz", "rest.jsonl", *REPLAY, cwd=work)
    expected = detect("replay", "prefix.jsonl", "rest.jsonl", *REPLAY, cwd=work)
    lost, duplicated = compare(result.out.splitlines(), expected.out.splitlines())
    said = f"cannot read past line {count} ({count} records" in result.err
    return Row(
        "a truncated `.gz`, then the rest of the feed",
        f"{len(lines):,} activities, gzipped and cut at 3/4 ({count:,} readable), "
        f"then a file of the other {len(lines) - count:,}",
        "exit 3; the line and the count; alerts = replaying the readable part plus the rest",
        str(result.code),
        result.traceback,
        alerts=f"{len(result.out.splitlines())} of {len(expected.out.splitlines())}",
        lost=str(lost),
        duplicated=str(duplicated),
        passed=result.code == 3 and said and result.out == expected.out and lost == 0,
    )


def drill_overlap(work: Path, quick: bool) -> Row:
    lines = _feed(work, 2000 if quick else 20_000)
    n = len(lines)
    early, late = (
        _write(work / "a.jsonl", lines[: n * 3 // 5]),
        _write(work / "b.jsonl", lines[n * 2 // 5 :]),
    )
    result = detect("replay", early, late, *REPLAY, cwd=work)
    one = detect("replay", "feed.jsonl", *REPLAY, cwd=work)
    lost, duplicated = compare(result.out.splitlines(), one.out.splitlines())
    dropped = n * 3 // 5 - n * 2 // 5
    return Row(
        "overlapping exports",
        f"lines 1–{n * 3 // 5:,} and {n * 2 // 5 + 1:,}–{n:,} of a {n:,}-activity feed",
        f"`{dropped} duplicates dropped`; alerts = one replay of the feed",
        str(result.code),
        result.traceback,
        alerts=f"{len(result.out.splitlines())} of {len(one.out.splitlines())}",
        lost=str(lost),
        duplicated=str(duplicated),
        passed=result.code == 0
        and f"{dropped} duplicates dropped" in result.err
        and result.out == one.out,
    )


def drill_newest_first(work: Path, quick: bool) -> Row:
    lines = _feed(work, 2000 if quick else 20_000)
    _write(work / "back.jsonl", lines[::-1])
    buffer = ("--reorder", "200") if quick else ()
    result = detect("replay", "back.jsonl", *REPLAY, *buffer, cwd=work)
    ordered = detect("replay", "back.jsonl", *REPLAY, "--sort", cwd=work)
    # Alerts of the late activities differ in content, not just in number: count them.
    got, want = len(result.out.splitlines()), len(ordered.out.splitlines())
    lost, duplicated = max(0, want - got), max(0, got - want)
    warned = [w for w in result.err.splitlines() if w.startswith("warning: ")]
    count = warned[0].split()[1] if warned else "?"
    said = bool(warned) and "replay with --sort" in warned[0]
    summed = f"{count} out of order past the reorder buffer" in result.err
    return Row(
        "newest-first input without `--sort`",
        f"{len(lines):,} activities reversed"
        + (", `--reorder 200`" if quick else ", reorder buffer 10,000"),
        "a warning with the count, in the summary too; `--sort` gives every alert",
        str(result.code),
        result.traceback,
        alerts=f"{len(result.out.splitlines())} of {len(ordered.out.splitlines())}",
        lost=f"{lost} (warned)",
        duplicated=str(duplicated),
        passed=result.code == 0 and said and summed and count.isdigit() and duplicated == 0,
        note=f"{count} counted",
    )


def drill_chunked(work: Path, quick: bool) -> Row:
    lines = _feed(work, 2000 if quick else 20_000)
    parts = 10
    size = len(lines) // parts
    out: list[str] = []
    codes = set()
    for number in range(parts):
        chunk = lines[number * size : (number + 1) * size if number < parts - 1 else None]
        name = _write(work / f"chunk{number}.jsonl", chunk)
        final = ("--final",) if number == parts - 1 else ()
        result = detect("replay", name, *REPLAY, "--state", "s.db", *final, cwd=work)
        codes.add(result.code)
        out += result.out.splitlines()
    one = detect("replay", "feed.jsonl", *REPLAY, cwd=work)
    lost, duplicated = compare(out, one.out.splitlines())
    return Row(
        "ten chunked `--state` replays",
        f"{len(lines):,} activities in {parts} replays against one state file, the last `--final`",
        "alerts = one replay (ids and content)",
        ", ".join(map(str, sorted(codes))),
        False,
        alerts=f"{len(out)} of {len(one.out.splitlines())}",
        lost=str(lost),
        duplicated=str(duplicated),
        passed=codes == {0} and lost == 0 and duplicated == 0,
    )


def drill_slow_receivers(work: Path, quick: bool) -> Row:
    _feed(work, 2000 if quick else 20_000)
    chat, hook = Receiver(slow_every=4, delay=1.5), Receiver(slow_every=4, delay=1.5)
    try:
        (work / "detect.yaml").write_text(
            f"rules: [{bundled_rules_dir()}]\nstate:\n  path: {work / 'state.db'}\n"
            "destinations:\n"
            f"  secops:\n    type: slack\n    url: {chat.url('/services/T0/B0/x')}\n"
            "    timeout: 1s\n"
            f"  soar:\n    type: webhook\n    url: {hook.url('/hooks/detect')}\n"
            f"    secret: {HOOK_SECRET}\n    timeout: 1s\n"
        )
        result = detect(
            *("replay", "feed.jsonl", "--config", "detect.yaml", "--deliver"),
            *("--format", "jsonl", "--no-quarantine", "--processes", "1"),
            cwd=work,
        )
    finally:
        chat.close()
        hook.close()
    said = re.search(r"· (\d+) alerts", result.err)
    alerts = int(said.group(1)) if said else 0
    ids = Counter(headers.get("webhook-id") for headers, _ in hook.requests)
    texts = Counter(json.loads(body).get("text") for _, body in chat.requests)
    lost = max(0, alerts - len(ids)) + max(0, alerts - len(texts))
    duplicated = (len(hook.requests) - len(ids)) + (len(chat.requests) - len(texts))
    return Row(
        "slow receivers",
        "Slack-like and webhook receivers on loopback, `timeout: 1s`, every 4th answer 1.5 s late",
        "each alert once to each destination",
        str(result.code),
        result.traceback,
        alerts=f"{alerts} → {len(chat.requests)} Slack, {len(hook.requests)} webhook",
        lost=str(lost),
        duplicated=str(duplicated),
        passed=result.code == 0 and alerts > 0 and lost == 0 and duplicated == 0,
    )


# -- state files --------------------------------------------------------------------------


def _healthy_state(work: Path) -> None:
    _feed(work, 500)
    detect("replay", "feed.jsonl", *REPLAY, "--state", "state.db", "--final", cwd=work)


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    damaged = {
        "empty": b"",
        "truncated": data[: len(data) // 2 + 100],
        "random": os.urandom(len(data)),
        "pages": data[:4096] + os.urandom(max(0, len(data) - 4096)),
    }[how]
    path.write_bytes(damaged)


def drill_damaged_state(work: Path, quick: bool) -> Row:
    _healthy_state(work)
    (work / "in.jsonl").write_text("")
    kinds = ("empty", "random") if quick else ("empty", "truncated", "random", "pages")
    commands = [["status"], ["replay"]] if quick else [["status"], ["alerts", "list"], ["replay"]]
    healthy = (work / "state.db").read_bytes()
    runs = []
    for how in kinds:
        for command in commands:
            target = work / f"{how}.db"
            target.write_bytes(healthy)
            _damage(target, how)
            runs.append(
                detect(
                    *command,
                    *(["in.jsonl"] if command == ["replay"] else []),
                    "--state",
                    target.name,
                    cwd=work,
                )
            )
    good = [
        r
        for r in runs
        if r.code == 2
        and len(r.err.strip().splitlines()) == 1
        and r.err.startswith("error: ")
        and "detect state rebuild" in r.err
        and not r.traceback
    ]
    return Row(
        "a damaged `state.db`",
        f"{' / '.join(kinds)} × {' / '.join(' '.join(c[:2]) for c in commands)}",
        "exit 2, one line with the way out, no traceback",
        f"2 in {sum(r.code == 2 for r in runs)} of {len(runs)}",
        any(r.traceback for r in runs),
        passed=len(good) == len(runs),
        note=f"{len(good)} of {len(runs)} one line",
    )


def drill_modes(work: Path, quick: bool) -> Row:
    _feed(work, 200)
    with (work / "feed.jsonl").open("a") as handle:
        handle.write('{"not": "an activity"}\n')
    old = os.umask(0o022)
    try:
        result = detect(
            *("replay", "feed.jsonl", "--format", "jsonl", "--processes", "1"),
            *("--state", "state.db", "--quarantine", "q.jsonl"),
            cwd=work,
        )
    finally:
        os.umask(old)
    files = [p for p in work.iterdir() if p.name.startswith(("state.db", "q.jsonl"))]
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    return Row(
        "state and quarantine file modes",
        "a replay with `--state` and a rejected record, umask 022",
        "0600",
        str(result.code),
        result.traceback,
        passed=result.code == 0
        and {"state.db", "q.jsonl"} <= set(modes)
        and set(modes.values()) == {"0o600"},
        note=", ".join(f"{k} {v[2:]}" for k, v in sorted(modes.items())),
    )


# -- hostile input ------------------------------------------------------------------------


def drill_end_of_time(work: Path, quick: bool) -> Row:
    rules = work / "rules"
    rules.mkdir()
    (rules / "all.yml").write_text("id: t.all\nname: all\nseverity: low\nmatch: {type: login}\n")
    logins(work / "feed.jsonl", 2)
    lines = (work / "feed.jsonl").read_text().splitlines()
    lines[0] = lines[0].replace(LOGIN.format(0), "9999-12-31T23:59:59Z")
    (work / "feed.jsonl").write_text("\n".join(lines) + "\n")
    result = detect(
        *("replay", "feed.jsonl", "--rules", "rules", "--format", "jsonl"),
        *("--processes", "1", "--quarantine", "q.jsonl"),
        cwd=work,
    )
    found = alerts_of(result.out) if result.code == 0 else []
    quarantined = (work / "q.jsonl").exists() and "out of range" in (work / "q.jsonl").read_text()
    return Row(
        "`created_at: 9999-12-31T23:59:59Z`",
        "that activity and an ordinary one",
        "exit 0; the first quarantined `out of range`; the other's alert",
        str(result.code),
        result.traceback,
        alerts=str(len(found)),
        lost=str(max(0, 1 - len(found))),
        duplicated=str(max(0, len(found) - 1)),
        passed=result.code == 0
        and "1 rejected" in result.err
        and quarantined
        and len(found) == 1
        and not result.traceback,
    )


def _refuse(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def drill_nan(work: Path, quick: bool) -> Row:
    rules = work / "rules"
    rules.mkdir()
    (rules / "all.yml").write_text(
        "id: t.all\nname: all\nseverity: low\nmatch: {type: login}\ncontext: [v, w]\n"
    )
    (work / "feed.jsonl").write_text(
        '{"id":"a1","created_at":"2026-05-07T10:00:00Z","type":"login",'
        '"actor":{"type":"user_actor"},"v":NaN,"w":[Infinity,-Infinity,1.5]}\n'
    )
    result = detect("replay", "feed.jsonl", "--rules", "rules", *REPLAY, cwd=work)
    try:
        found = [json.loads(line, parse_constant=_refuse) for line in result.out.splitlines()]
        strict = len(found) == 1 and found[0]["context"] == {"v": None, "w": [None, None, 1.5]}
    except ValueError:
        found, strict = [], False
    return Row(
        "NaN and Infinity in an activity",
        '`"v": NaN, "w": [Infinity, -Infinity, 1.5]`',
        "exit 0; strict JSON out (`null`)",
        str(result.code),
        result.traceback,
        alerts=str(len(found)),
        lost="0" if found else "1",
        duplicated="0",
        passed=result.code == 0 and strict,
    )


def _validate(work: Path, name: str, text: str, expected: str) -> tuple[Result, bool]:
    rules = work / "rules"
    rules.mkdir()
    (rules / name).write_text(text)
    result = detect("validate", "rules", cwd=work, timeout=120)
    return result, result.code == 2 and expected in result.text and not result.traceback


def drill_laughs(work: Path, quick: bool) -> Row:
    lines = ["id: t.bomb", "name: bomb", "severity: low"]
    lines.append("a: &a [" + ",".join(['"lol"'] * 9) + "]")
    previous = "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [{','.join(['*' + previous] * 9)}]")
        previous = name
    text = "\n".join(lines) + "\n"
    result, ok = _validate(work, "bomb.yml", text, "aliases expand this document past 100,000")
    return Row(
        "YAML billion laughs",
        f"a {len(text)}-byte rule file, 9 levels of 9 aliases",
        "`validate` exit 2 at once, the line",
        str(result.code),
        result.traceback,
        passed=ok and "bomb.yml:4:" in result.text and result.seconds < 10,
        note=f"{result.seconds:.1f} s",
    )


def drill_deep_yaml(work: Path, quick: bool) -> Row:
    result, ok = _validate(work, "deep.yml", "a: " + "[" * 5000 + "]" * 5000 + "\n", "nest")
    return Row(
        "YAML nested 5,000 deep",
        "`a: [[[…]]]` in a rule file",
        "`validate` exit 2, one line on the nesting (no `RecursionError`)",
        str(result.code),
        result.traceback,
        passed=ok and "deep.yml:1:" in result.text and "RecursionError" not in result.text,
    )


def drill_deep_when(work: Path, quick: bool) -> Row:
    deep = "(" * 500 + "type" + ")" * 500
    text = f"id: t.deep\nname: deep\nseverity: low\nwhen: \"{deep} == 'login'\"\n"
    result, ok = _validate(work, "deep.yml", text, "500 deep")
    return Row(
        "a `when` nested 500 deep",
        "500 nested parentheses",
        "`validate` exit 2: `nests brackets 500 deep`",
        str(result.code),
        result.traceback,
        passed=ok and "deep.yml:4: [when]" in result.text,
    )


DRILLS: list[tuple[Callable[[Path, bool], Row], bool]] = [
    # (drill, in the quick run)
    (drill_exit, True),
    (drill_loop, True),
    (drill_redos_python, True),
    (drill_redos_match, True),
    (drill_newline_key, True),
    (drill_quoted_key, False),
    (drill_rulez, True),
    (drill_nodir, True),
    (drill_truncated_gz, True),
    (drill_overlap, True),
    (drill_newest_first, True),
    (drill_chunked, False),
    (drill_slow_receivers, False),
    (drill_damaged_state, True),
    (drill_modes, True),
    (drill_end_of_time, True),
    (drill_nan, True),
    (drill_laughs, True),
    (drill_deep_yaml, True),
    (drill_deep_when, True),
    (drill_quarantine, True),
]


def run_one(drill: Callable[[Path, bool], Row], quick: bool) -> Row:
    with tempfile.TemporaryDirectory(prefix="drill-") as folder:
        try:
            return drill(Path(folder), quick)
        except Exception as error:  # noqa: BLE001 - the drill itself broke: a failing row, not a crash
            return Row(drill.__name__, "", "", note=f"drill error: {error!r}")


def yes_no(value: bool | None) -> str:
    return "–" if value is None else ("yes" if value else "no")


def table(rows: list[Row]) -> str:
    head = (
        "| drill | input | expected | exit | traceback | secret leaked | alerts | lost "
        "| duplicated | verdict |"
    )
    out = [head, "|" + "---|" * 10]
    for r in rows:
        verdict = ("pass" if r.passed else "**FAIL**") + (f" ({r.note})" if r.note else "")
        cells = [
            r.drill,
            r.input,
            r.expected,
            r.exit,
            yes_no(r.traceback),
            yes_no(r.leaked),
            r.alerts or "–",
            r.lost or "–",
            r.duplicated or "–",
            verdict,
        ]
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small inputs, the fast drills")
    parser.add_argument("--jobs", type=int, default=max(2, os.cpu_count() or 2))
    args = parser.parse_args(argv)
    chosen = [drill for drill, fast in DRILLS if fast or not args.quick]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        rows = list(pool.map(lambda d: run_one(d, args.quick), chosen))
    print(table(rows))
    failed = [r.drill for r in rows if not r.passed]
    print(
        f"\n{len(rows) - len(failed)} of {len(rows)} drills pass"
        f" ({time.monotonic() - started:.1f} s)",
        file=sys.stderr,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
