"""How much faster is `detect test` than `panther_analysis_tool test` on the same rules?

Both run as whole processes (interpreter start, imports, loading, tests, report), the way
a developer or CI runs them, alternately, several times each; the script prints the median
wall-clock time of each and the ratio. Two directories are measured:

- fixtures/panther as it is (6 rules, 25 tests, global helpers, mocks);
- a larger pack made from it: the Python rules copied under new RuleIDs until there are
  N of each (default 4: 18 rules, 70 tests), closer to a real rules repository.

panther_analysis_tool is not a dependency of detect: pass `--pat PATH` (or set
PANTHER_ANALYSIS_TOOL), e.g. from `python -m venv /tmp/pat && /tmp/pat/bin/pip install
panther-analysis-tool`. Machines are noisy: compare the ratio, not the absolute times.

    python benchmarks/panther_test_speed.py --pat /tmp/pat-venv/bin/panther_analysis_tool
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures" / "panther"


def scaled_pack(target: Path, copies: int) -> Path:
    """fixtures/panther with its Python rules copied `copies` times under new ids."""
    shutil.copytree(FIXTURES, target)
    rules = sorted((FIXTURES / "rules").glob("*.yml"))
    for copy in range(1, copies):
        for spec in rules:
            text = spec.read_text(encoding="utf-8")
            if "Filename:" not in text:
                continue
            text = re.sub(r"^RuleID: (.+)$", rf"RuleID: \1.Copy{copy}", text, flags=re.M)
            module = re.search(r"^Filename: (.+)$", text, flags=re.M).group(1).strip()
            new_module = f"{Path(module).stem}_copy{copy}.py"
            text = text.replace(f"Filename: {module}", f"Filename: {new_module}")
            folder = target / "rules" / f"copy{copy}"
            folder.mkdir(exist_ok=True)
            (folder / f"{spec.stem}_copy{copy}.yml").write_text(text, encoding="utf-8")
            shutil.copyfile(spec.parent / module, folder / new_module)
    return target


def count_tests(folder: Path) -> tuple[int, int]:
    rules = tests = 0
    for spec in folder.rglob("*.yml"):
        text = spec.read_text(encoding="utf-8")
        if "AnalysisType: rule" in text:
            rules += 1
            tests += len(re.findall(r"^\s+- Name:", text, flags=re.M))
    return rules, tests


def timed(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def measure(pat: str, folder: Path, runs: int, cwd: Path) -> tuple[float, float]:
    detect = [sys.executable, "-m", "engine", "test", str(folder)]
    panther = [pat, "test", "--path", str(folder)]
    timed(detect, cwd)  # warm the file cache and bytecode once for each
    timed(panther, cwd)
    ours, theirs = [], []
    for _ in range(runs):
        ours.append(timed(detect, cwd))
        theirs.append(timed(panther, cwd))
    return statistics.median(ours), statistics.median(theirs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pat", default=os.environ.get("PANTHER_ANALYSIS_TOOL"))
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--copies", type=int, default=4)
    args = parser.parse_args(argv)
    pat = args.pat or shutil.which("panther_analysis_tool")
    if not pat:
        print("panther_analysis_tool not found: pass --pat PATH", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cwd = work / "cwd"
        cwd.mkdir()
        packs = [
            ("fixtures/panther", FIXTURES),
            (f"fixtures x{args.copies}", scaled_pack(work / "scaled", args.copies)),
        ]
        print(f"{'directory':<22}{'rules':>6}{'tests':>7}{'detect':>10}{'PAT':>10}{'ratio':>8}")
        worst = float("inf")
        for name, folder in packs:
            rules, tests = count_tests(folder)
            ours, theirs = measure(pat, folder, args.runs, cwd)
            ratio = theirs / ours
            worst = min(worst, ratio)
            print(f"{name:<22}{rules:>6}{tests:>7}{ours:>9.2f}s{theirs:>9.2f}s{ratio:>7.1f}x")
    print(f"medians of {args.runs} runs each; detect is {worst:.1f}x faster at worst")
    return 0 if worst >= 3 else 1


if __name__ == "__main__":
    sys.exit(main())
