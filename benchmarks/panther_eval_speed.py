"""How detect's speed on Panther-format rules compares with Panther's own engine as the
number of rules grows.

`detect bench --panther DIR` measures one directory; this script makes packs of several
sizes from one (its Python rules copied under new RuleIDs and module names, `--copies`
times each) and runs `detect bench --panther` on each, over the same generated activities,
then prints one line per pack: activities/s of detect's full pipeline, of its evaluator
alone, and of panther_core's `Rule.run` (batch mode, events already decoded), with the
ratios. panther_core's cost grows with every rule it runs on every event; detect's, with
the rules indexed by activity type, hardly does, so the ratios grow with the pack.

panther_core is not a dependency of detect: pass an interpreter that has it.

    python benchmarks/panther_eval_speed.py /path/to/panther-analysis/rules/anthropic_rules \\
        --panther-python /tmp/pat-venv/bin/python --copies 1 4 16
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def scaled_pack(source: Path, target: Path, copies: int) -> Path:
    """`source` (a rules folder) and its nearest global_helpers/ copied under `target`, each
    Python rule present `copies` times under new ids. Returns the folder to pass to detect
    (the helpers' `AnalysisType: global` specs included)."""
    helpers = next(
        (
            p / "global_helpers"
            for p in (source, *source.parents)
            if (p / "global_helpers").is_dir()
        ),
        None,
    )
    if helpers is not None:
        shutil.copytree(helpers, target / "global_helpers")
    rules = target / "rules"
    shutil.copytree(source, rules / "original")
    for spec in sorted(source.rglob("*.yml")):
        text = spec.read_text(encoding="utf-8")
        found = re.search(r"^Filename: *(\S+)", text, flags=re.M)
        if "AnalysisType: rule" not in text or found is None:
            continue
        module = found.group(1)
        for copy in range(1, copies):
            new_text = re.sub(r"^RuleID: *(.+?)\s*$", rf"RuleID: \1.Copy{copy}", text, flags=re.M)
            new_module = f"{Path(module).stem}_copy{copy}.py"
            new_text = new_text.replace(found.group(0), f"Filename: {new_module}")
            folder = rules / f"copy{copy}" / spec.parent.relative_to(source)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{spec.stem}_copy{copy}.yml").write_text(new_text, encoding="utf-8")
            shutil.copyfile(spec.parent / module, folder / new_module)
    return target


def bench(rules: Path, args: argparse.Namespace) -> dict:
    command = [
        sys.executable, "-m", "engine", "bench", "--panther", str(rules), "--json",
        "--generate", str(args.generate), "--seed", str(args.seed), "--repeat", str(args.repeat),
    ]  # fmt: skip
    if args.panther_python:
        command += ["--panther-python", args.panther_python]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    if done.returncode != 0:
        raise SystemExit(f"detect bench failed:\n{done.stderr}")
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rules", type=Path, help="a Panther-format rules folder")
    parser.add_argument("--panther-python", help="a Python interpreter with panther_core")
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--generate", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    header = (
        f"{'rules':>6}{'pinned':>8}{'json.loads':>12}{'pipeline':>11}{'evaluator':>12}"
        f"{'panther_core':>14}{'pipeline/PC':>13}{'evaluator/PC':>14}"
    )
    print(header)
    with tempfile.TemporaryDirectory(prefix="panther-eval-speed-") as tmp:
        for copies in args.copies:
            rules = scaled_pack(args.rules.resolve(), Path(tmp) / f"x{copies}", copies)
            f = bench(rules, args)
            p = f["panther"]
            core = p["panther_core_per_s"]

            def ratio(rate: float, core: float | None = core) -> str:
                return f"{rate / core:.1f}x" if core else "-"

            print(
                f"{p['python_rules']:>6}{p['pinned_rules']:>8}{f['json_loads_per_s']:>12,.0f}"
                f"{p['pipeline_per_s']:>11,.0f}{p['evaluation_python_per_s']:>12,.0f}"
                f"{core or 0:>14,.0f}{ratio(p['pipeline_per_s']):>13}"
                f"{ratio(p['evaluation_python_per_s']):>14}",
                flush=True,
            )
    print(
        f"activities/s, medians of {args.repeat}; {args.generate:,} generated activities"
        f" (seed {args.seed}); PC = panther_core Rule.run, batch mode"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
