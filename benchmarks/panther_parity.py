"""Does `detect test` give the same verdict as `panther_analysis_tool test`, test by test?

Runs both tools, as whole processes, on the same Panther-format directories and compares
the pass/fail of every test:

- fixtures/panther (the pack of Panther-format rules kept in this repository);
- an "edge cases" pack written to a temporary folder: tests that fail or pass in the ways
  panther_analysis_tool decides (a function raising on a positive or a negative test, a
  rule returning a non-bool, a mock of a missing name, mocks restored between tests,
  destinations, case-insensitive keys, read-only lists...);
- an "invalid" pack: files both tools must reject.

panther_analysis_tool is not a dependency of detect. Point at it with `--pat PATH` (or the
PANTHER_ANALYSIS_TOOL variable), or let this script install it into a separate virtual
environment with `--install DIR` (needs network the first time).

Simple detections are not run by panther_analysis_tool without a Panther backend (it asks
the backend to translate them into Python); those tests are listed as "not run by PAT".

    python benchmarks/panther_parity.py --pat /tmp/pat-venv/bin/panther_analysis_tool
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures" / "panther"
ANSI = re.compile(r"\x1b\[[0-9;]*m")

# -- the edge-case pack -----------------------------------------------------------------

ACTIVITY = """
      id: activity_01
      created_at: "2026-05-04T08:00:00Z"
      type: {type}
      actor:
        type: user_actor
        email_address: ana@example.com
        ip_address: 198.51.100.7
"""


def _rule(rule_id: str, module: str, tests: str, extra: str = "") -> dict[str, str]:
    stem = rule_id.lower().replace(".", "_")
    yml = textwrap.dedent(
        f"""\
        AnalysisType: rule
        RuleID: {rule_id}
        Enabled: true
        Filename: {stem}.py
        LogTypes: [Anthropic.Activity]
        Severity: Medium
        """
    )
    yml += textwrap.dedent(extra) + "Tests:\n" + textwrap.dedent(tests)
    return {f"rules/{stem}.yml": yml, f"rules/{stem}.py": textwrap.dedent(module)}


def _test(name: str, expected: bool, activity_type: str = "hit", extra: str = "") -> str:
    body = f"  - Name: {name}\n    ExpectedResult: {str(expected).lower()}\n"
    body += textwrap.indent(textwrap.dedent(extra), "    ") if extra else ""
    return body + "    Log:" + ACTIVITY.format(type=activity_type)


EDGE_CASES: dict[str, str] = {
    "global_helpers/edge_helpers.py": "def lookup(x):\n    return 'real'\n",
    "global_helpers/edge_helpers.yml": (
        "AnalysisType: global\nGlobalID: edge_helpers\nFilename: edge_helpers.py\n"
    ),
}
EDGE_CASES |= _rule(
    "Edge.TitleRaises",
    """
    def rule(event):
        return event.get("type") == "hit"

    def title(event):
        raise KeyError("no such field")
    """,
    _test("title raises on a positive test", True)
    + _test("title raises on a negative test", False, "miss"),
)
EDGE_CASES |= _rule(
    "Edge.RuleNotBool",
    """
    def rule(event):
        return event.get("no_such_field")
    """,
    _test("rule returns None on a negative test", False)
    + _test("rule returns None on a positive test", True),
)
EDGE_CASES |= _rule(
    "Edge.RuleRaises",
    """
    def rule(event):
        return event["no_such_field"] == 1
    """,
    _test("rule raises on a negative test", False),
)
EDGE_CASES |= _rule(
    "Edge.Mocks",
    """
    from edge_helpers import lookup

    def rule(event):
        return lookup(event.get("type")) == "mocked"
    """,
    _test(
        "the helper is mocked",
        True,
        extra="Mocks:\n  - objectName: lookup\n    returnValue: mocked\n",
    )
    + _test("the mock is gone in the next test", False)
    + _test(
        "a mock of a name the module lacks fails",
        True,
        extra="Mocks:\n  - objectName: not_there\n    returnValue: mocked\n",
    )
    + _test(
        "a boolean mock",
        False,
        extra="Mocks:\n  - objectName: lookup\n    returnValue: true\n",
    ),
)
EDGE_CASES |= _rule(
    "Edge.WrongExpectation",
    """
    def rule(event):
        return event.get("type") == "hit"
    """,
    _test("expects false but matches", False) + _test("expects true but misses", True, "miss"),
)
EDGE_CASES |= _rule(
    "Edge.Outputs",
    """
    def rule(event):
        return event.get("type") in ("hit", "context", "severity", "dedup", "describe")

    def alert_context(event):
        if event.get("type") == "context":
            return ["not", "a", "mapping"]
        return {"actor": event.get("actor"), "seen": event.deep_get("actor", "EMAIL_ADDRESS")}

    def severity(event):
        return {"severity": "urgent", "hit": "default"}.get(event.get("type"), "high")

    def dedup(event):
        return None if event.get("type") == "dedup" else "same"

    def description(event):
        return None if event.get("type") == "describe" else "fine"
    """,
    _test("all outputs fine, severity DEFAULT", True)
    + _test("alert_context returns a list", True, "context")
    + _test("severity returns an unknown level", True, "severity")
    + _test("dedup returns None", True, "dedup")
    + _test("description returns None", True, "describe")
    + _test("output errors do not matter on a negative test", False, "context_miss"),
)
EDGE_CASES |= _rule(
    "Edge.Destinations",
    """
    def rule(event):
        return True

    def destinations(event):
        return {"page": ["pager"], "quiet": [], "none": None}.get(event.get("type"), ["pager"])
    """,
    _test("named destination expected", True, "page", "ExpectedDestinations: [pager]\n")
    + _test("suppressed, none expected", True, "quiet", "ExpectedDestinations: []\n")
    + _test("default routing, none expected", True, "none", "ExpectedDestinations: []\n")
    + _test("another destination than expected", True, "page", "ExpectedDestinations: [slack]\n")
    + _test("no expectation, unknown name is ignored", True, "page"),
)
EDGE_CASES |= _rule(
    "Edge.EventView",
    """
    def rule(event):
        return (
            event.get("TYPE") == "hit"
            and event.deep_get("Actor", "Email_Address") == "ana@example.com"
            and not isinstance(event.get("tags"), list)
            and event.get("tags") == ["a", "b"]
            and event.deep_walk("items", "name") == ["x", "y"]
            and event.deep_walk("items", "only") == "z"
            and event.deep_get("actor", "missing", default="d") == "d"
        )

    def title(event):
        return str(event.deep_walk("items", "name", return_val="last"))
    """,
    _test(
        "case-insensitive keys, read-only lists, deep_walk",
        True,
        extra="",
    ).replace(
        "    Log:\n",
        "    Log:\n      tags: [a, b]\n      items:\n        - name: x\n        - name: y\n"
        "          only: z\n",
    ),
)

INVALID: dict[str, str] = {
    "rules/unknown_key.yml": textwrap.dedent(
        """\
        AnalysisType: rule
        RuleID: Invalid.UnknownKey
        Enabled: true
        Filename: unknown_key.py
        LogTypes: [Anthropic.Activity]
        Severity: Medium
        Colour: blue
        """
    ),
    "rules/unknown_key.py": "def rule(event):\n    return True\n",
}


def write_pack(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return folder


# -- running the tools ------------------------------------------------------------------


def pat_verdicts(pat: str, folder: Path, cwd: Path) -> tuple[dict[tuple[str, str], str], bool]:
    """{(rule id, test name): PASS|FAIL} from panther_analysis_tool's output, and whether it
    reported an invalid file."""
    done = subprocess.run(
        [pat, "test", "--path", str(folder)],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )
    text = ANSI.sub("", done.stdout + "\n" + done.stderr)
    verdicts: dict[tuple[str, str], str] = {}
    current = None
    failed_summary: dict[str, list[str]] = {}
    lines = text.splitlines()
    section = None
    for index, line in enumerate(lines):
        if line.startswith("--------------------------"):
            section = lines[index + 1].strip() if index + 1 < len(lines) else None
            continue
        if (
            section == "Failed Tests Summary"
            and line.startswith("\t")
            and not line.startswith("\t\t")
        ):
            with contextlib.suppress(SyntaxError, ValueError, IndexError):
                failed_summary[line.strip()] = ast.literal_eval(lines[index + 1].strip())
            continue
        if section is not None:
            continue
        match = re.match(r"^\t\[(PASS|FAIL)\] (.*)$", line)
        if match and current is not None:
            verdicts[(current, match.group(2))] = match.group(1)
        elif line and not line.startswith(("\t", "INFO", "WARNING", "ERROR", " ")):
            current = line.strip()
    for rule_id, entries in failed_summary.items():
        known = sorted((k[1] for k in verdicts if k[0] == rule_id), key=len, reverse=True)
        for entry in entries:
            # "name" (the test errored out) or "name:function" (a function failed)
            name = next((n for n in known if entry == n or entry.startswith(n + ":")), entry)
            verdicts[(rule_id, name)] = "FAIL"
    invalid = "Invalid Tests Summary" in text or re.search(r"^ERROR: \S+\.ya?ml ", text, re.M)
    return verdicts, bool(invalid)


def detect_verdicts(folder: Path, cwd: Path) -> tuple[dict[tuple[str, str], str], int]:
    done = subprocess.run(
        [sys.executable, "-m", "engine", "test", str(folder), "--format", "json"],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode == 2:
        return {}, 2
    results = json.loads(done.stdout)["results"]
    return {
        (r["rule_id"], r["test"]): "PASS" if r["passed"] else "FAIL" for r in results
    }, done.returncode


def compare(pat: str, name: str, folder: Path, cwd: Path) -> tuple[list[str], bool]:
    ours, code = detect_verdicts(folder, cwd)
    theirs, invalid = pat_verdicts(pat, folder, cwd)
    lines = [f"== {name}: {folder}"]
    if code == 2 or invalid:
        agree = code == 2 and invalid
        lines.append(
            f"   invalid pack: detect {'rejects' if code == 2 else 'accepts'} it,"
            f" panther_analysis_tool {'rejects' if invalid else 'accepts'} it"
            f" -> {'same' if agree else 'DIFFERENT'}"
        )
        return lines, bool(agree)
    same = True
    for key in sorted(ours):
        mine = ours[key]
        other = theirs.get(key)
        if other is None:
            verdict = "not run by PAT (simple detection)"
        elif other == mine:
            verdict = "same"
        else:
            verdict = "DIFFERENT"
            same = False
        lines.append(f"   {mine:4}  {other or '-':4}  {key[0]} :: {key[1]}  [{verdict}]")
    for key in sorted(set(theirs) - set(ours)):
        same = False
        lines.append(f"   -     {theirs[key]:4}  {key[0]} :: {key[1]}  [missing in detect]")
    return lines, same


def install(folder: Path) -> str:
    executable = folder / "bin" / "panther_analysis_tool"
    if not executable.exists():
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
        subprocess.run(
            [str(folder / "bin" / "pip"), "install", "-q", "panther-analysis-tool"], check=True
        )
    return str(executable)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pat", default=os.environ.get("PANTHER_ANALYSIS_TOOL"))
    parser.add_argument("--install", metavar="DIR", help="install PAT into this new venv")
    args = parser.parse_args(argv)
    pat = (
        install(Path(args.install))
        if args.install
        else (args.pat or shutil.which("panther_analysis_tool"))
    )
    if not pat:
        print("panther_analysis_tool not found: pass --pat PATH or --install DIR", file=sys.stderr)
        return 2
    all_same = True
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cwd = work / "cwd"
        cwd.mkdir()
        packs = [
            ("fixtures", FIXTURES),
            ("edge cases", write_pack(work / "edge", EDGE_CASES)),
            ("invalid", write_pack(work / "invalid", INVALID)),
        ]
        for name, folder in packs:
            lines, same = compare(pat, name, folder, cwd)
            all_same &= same
            print("\n".join(lines))
    print("verdicts agree" if all_same else "verdicts DIFFER")
    return 0 if all_same else 1


if __name__ == "__main__":
    sys.exit(main())
