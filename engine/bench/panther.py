"""Panther-format rules in `detect bench`: our evaluator next to panther_core's
`Rule.run` (engine/bench/core_bench.py, run by the interpreter that has panther_core)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.bench.harness import peak_rss_mb

# -- Panther-format rules: our evaluator next to panther_core's Rule.run ----------------

PANTHER_CHUNK = 20_000  # activities decoded (untimed) before each timed evaluation pass


def _python_rule_spec(rule: Any) -> dict[str, Any]:
    """What engine/bench/core_bench.py needs to load the same rule with panther_core."""
    doc = rule.document
    return {
        "id": rule.rule_id,
        "path": str((rule.path.parent / doc["Filename"]).resolve()),
        "severity": str(doc["Severity"]),
        "dedup_minutes": doc.get("DedupPeriodMinutes") or 60,
        "helper_dirs": sorted({str(p.parent) for p in rule.helper_files.values()}),
    }


def measure_panther_eval(path: Path, rules: Sequence[Path]) -> dict[str, Any]:
    """The evaluator alone over decoded activities: what panther_core's `Rule.run` is
    compared with. Activities are read and validated a chunk at a time before the clock
    starts; only `Evaluator.evaluate` is timed, on each chunk, for each set of rules:

    - `all`: every active rule of the directory;
    - `python`: its Python rules alone, the rules panther_core runs too (the same set as
      `all` unless the directory has simple detections or native rules);
    - `unindexed`: those Python rules on every activity, without the type index their code
      earns them (see engine/panther/pinning.py): the per-call cost of a rule that cannot
      be pinned.
    """
    import dataclasses
    import itertools

    from engine.detection.evaluator import Evaluator
    from engine.panther.rule import PantherRule
    from engine.rule_formats import load_rules
    from engine.sources.files import Rejected, read_source

    ruleset = load_rules(list(rules))
    python = [r for r in ruleset.rules if isinstance(r, PantherRule) and r.module is not None]
    sets = {"all": ruleset.rules}
    if len(python) != len(ruleset.rules):
        sets["python"] = python
    sets["unindexed"] = [dataclasses.replace(r, types=None) for r in python]
    result: dict[str, Any] = {
        "rules": len(ruleset.rules),
        "python_rules": [_python_rule_spec(r) for r in python],
        "pinned_rules": sum(1 for r in python if r.types is not None),
        "simple_rules": sum(
            1 for r in ruleset.rules if isinstance(r, PantherRule) and r.module is None
        ),
        "native_rules": sum(1 for r in ruleset.rules if not isinstance(r, PantherRule)),
    }
    names = list(sets)
    evaluators = {
        name: Evaluator(dataclasses.replace(ruleset, rules=list(chosen)))
        for name, chosen in sets.items()
    }
    matches = {name: dict.fromkeys((r.id for r in sets[name]), 0) for name in names}
    errors = {name: dict.fromkeys((r.id for r in sets[name]), 0) for name in names}
    seconds = dict.fromkeys(names, 0.0)
    clock = time.perf_counter
    count = 0
    source = read_source(str(path))
    for turn in itertools.count():
        chunk = [r for r in itertools.islice(source, PANTHER_CHUNK) if type(r) is not Rejected]
        if not chunk:
            break
        count += len(chunk)
        shift = turn % len(names)  # each set goes first in turn
        for name in names[shift:] + names[:shift]:
            evaluate = evaluators[name].evaluate
            found_by, failed_by = matches[name], errors[name]
            started = clock()
            for activity in chunk:
                found, failed = evaluate(activity)
                if found:
                    for match in found:
                        found_by[match.rule.id] += 1
                if failed:
                    for rule, _ in failed:
                        failed_by[rule.id] += 1
            seconds[name] += clock() - started
    for name in names:
        result[name] = {
            "activities": count,
            "seconds": seconds[name],
            "rules": len(sets[name]),
            "matches": matches[name],
            "errors": errors[name],
        }
    result.setdefault("python", result["all"])
    result["peak_rss_mb"] = peak_rss_mb()
    return result


CORE_BENCH = Path(__file__).resolve().parent / "core_bench.py"


def panther_interpreter(option: str | None) -> tuple[str | None, str]:
    """The interpreter that runs panther_core's side, and a note saying which (or why
    none). Raises ValueError when `--panther-python` names one that cannot import it."""
    if option:
        try:
            done = subprocess.run(
                [option, "-c", "import panther_core"], capture_output=True, check=False
            )
        except OSError as exc:
            raise ValueError(f"--panther-python {option}: cannot be run ({exc})") from exc
        if done.returncode != 0:
            raise ValueError(f"--panther-python {option}: cannot import panther_core")
        return option, f"--panther-python {option}"
    import importlib.util

    if importlib.util.find_spec("panther_core") is not None:
        return sys.executable, f"this interpreter ({sys.executable})"
    return None, (
        f"not measured: panther_core is not importable by {sys.executable}; install"
        " panther-analysis-tool in a separate venv and pass --panther-python"
        " /that/venv/bin/python"
    )


def panther_core_child(python: str, path: Path, specs: Path) -> dict[str, Any]:
    done = subprocess.run(
        [python, str(CORE_BENCH), str(path), str(specs)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"panther_core measurement failed:\n{done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])
