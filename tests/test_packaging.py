"""What the wheel carries: every file the shipped rules' tests read is force-included under
`engine/_bundled/` where the test runner finds it from the bundled rule upwards; the
version; the LICENSE; the pre-commit hooks. (.ci/run builds the wheel and runs `detect
test` from it outside the checkout.)"""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import yaml

from engine import __version__
from engine.cli import main

ROOT = Path(__file__).resolve().parent.parent


def _force_include() -> dict[str, str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]


def _bundled_layout(into: Path) -> Path:
    """The `engine/_bundled` tree a wheel holds, as copies of the mapped sources."""
    for source, target in _force_include().items():
        src, dst = ROOT / source, into / target
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy(src, dst)
    return into / "engine" / "_bundled"


def _test_files() -> list[tuple[Path, str]]:
    found = []
    for rule in sorted((ROOT / "rules").rglob("*.y*ml")):
        document = yaml.safe_load(rule.read_text())
        if not isinstance(document, dict):  # a named list, not a rule
            continue
        for test in document.get("tests") or []:
            relative = test.get("events_file") or test.get("event_file")
            if relative:
                found.append((rule, relative))
    return found


def test_every_rule_test_file_resolves_from_the_bundled_rules(tmp_path: Path) -> None:
    mapping = _force_include()
    assert "fixtures/anthropic" in mapping
    assert mapping["rules"] == "engine/_bundled/rules"
    files = _test_files()
    assert len(files) > 40
    missing = []
    for rule, relative in files:
        # Where the rule sits in the wheel, and the folders the runner searches from it.
        bundled = Path(mapping["rules"]) / rule.relative_to(ROOT / "rules")
        folders = [bundled.parent, *bundled.parent.parents]
        shipped = {Path(target): ROOT / source for source, target in mapping.items()}
        if not any(_shipped(shipped, folder / relative) for folder in folders):
            missing.append(f"{rule.name}: {relative}")
    assert missing == []


def _shipped(shipped: dict[Path, Path], path: Path) -> bool:
    for target, source in shipped.items():
        if path == target or target in path.parents:
            return (source / path.relative_to(target)).exists()
    return False


def test_bundled_rules_find_their_files_under_engine_bundled(tmp_path: Path, capsys) -> None:
    bundled = _bundled_layout(tmp_path)
    assert (bundled / "fixtures" / "anthropic" / "scim_bulk_delete.jsonl").is_file()
    code = main(["test", str(bundled / "rules" / "identity" / "scim_bulk_delete.yml")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "0 failed" in out and "not found" not in out


def test_version(capsys) -> None:
    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert capsys.readouterr().out.strip() == f"detect {__version__}"
    assert 'dynamic = ["version"]' in (ROOT / "pyproject.toml").read_text()


def test_license_is_apache_2() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_panther_extra_brings_dateutil() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extra = pyproject["project"]["optional-dependencies"]["panther"]
    assert any(d.startswith("python-dateutil") for d in extra)


def test_pre_commit_hooks() -> None:
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    by_id = {hook["id"]: hook for hook in hooks}
    assert set(by_id) == {"detect-validate", "detect-test"}
    assert by_id["detect-validate"]["entry"].startswith("detect validate")
    assert by_id["detect-test"]["entry"].startswith("detect test")
    for hook in hooks:
        assert hook["pass_filenames"] is False


def test_deploy_files() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    # Numeric and not 0: a platform enforcing non-root can only check a numeric user.
    assert "USER 10001:10001" in dockerfile and 'VOLUME ["/var/lib/detect"]' in dockerfile
    assert "--uid 10001" in dockerfile and "--gid 10001" in dockerfile
    assert '"run", "--config", "/etc/detect/detect.yaml"' in dockerfile
    unit = (ROOT / "docs" / "deploy" / "detect.service").read_text()
    assert "detect run --config /etc/detect/detect.yaml" in unit
    assert "docs/deploy/detect.service" in (ROOT / "docs" / "deploy.md").read_text()


def test_docs_link_only_to_the_repository() -> None:
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text()
        assert "../shared" not in text, doc
        assert "DESIGN §" not in text, doc
