"""Global helpers: found, isolated from the engine and from each other, clear when missing."""

from __future__ import annotations

import sys

from engine.panther import PantherOptions

from .conftest import PantherDir, activity, opened, run

USES_HELPER = """
from shared import answer

def rule(event):
    return True

def title(event):
    return answer()
"""


def titles(ruleset) -> dict[str, str]:
    return {a.rule_id: a.title for a in opened(run(ruleset, [activity()]))}


def test_the_nearest_global_helpers_folder_is_found(panther_dir: PantherDir) -> None:
    panther_dir.helper("shared", "def answer():\n    return 'from helpers'\n")
    panther_dir.rule("Test.Deep", USES_HELPER, folder="rules/some/family")
    assert titles(panther_dir.load()) == {"Test.Deep": "from helpers"}


def test_helpers_may_import_each_other_and_third_party_packages(panther_dir) -> None:
    panther_dir.helper("base", "import dateutil.parser\n\ndef word():\n    return 'base'\n")
    panther_dir.helper(
        "shared", "from base import word\n\ndef answer():\n    return word() + '!'\n"
    )
    panther_dir.rule("Test.Chain", USES_HELPER)
    assert titles(panther_dir.load()) == {"Test.Chain": "base!"}


def test_a_global_id_can_name_a_module_differently_from_its_file(panther_dir) -> None:
    panther_dir.helper("file_name", "def answer():\n    return 'aliased'\n")
    panther_dir.write(
        "global_helpers/file_name.yml",
        "AnalysisType: global\nGlobalID: shared\nFilename: file_name.py\n",
    )
    panther_dir.rule("Test.Alias", USES_HELPER)
    assert titles(panther_dir.load()) == {"Test.Alias": "aliased"}


def test_helpers_given_on_the_command_line(panther_dir: PantherDir, tmp_path) -> None:
    elsewhere = PantherDir(tmp_path / "elsewhere")
    elsewhere.write("shared.py", "def answer():\n    return 'explicit'\n")
    panther_dir.rule("Test.Explicit", USES_HELPER)
    assert titles(panther_dir.load(helpers=(elsewhere.path,))) == {"Test.Explicit": "explicit"}


def test_a_helper_cannot_shadow_engine_or_library_modules(panther_dir: PantherDir) -> None:
    # Helpers named like the engine's own modules and its dependencies.
    panther_dir.helper("yaml", "NAME = 'helper yaml'\n")
    panther_dir.helper("engine", "NAME = 'helper engine'\n")
    panther_dir.rule(
        "Test.Shadow",
        "import yaml\nimport engine\n\ndef rule(event):\n    return True\n\n"
        "def title(event):\n    return yaml.NAME + ' / ' + engine.NAME\n",
    )
    ruleset = panther_dir.load()
    assert titles(ruleset) == {"Test.Shadow": "helper yaml / helper engine"}
    import yaml

    import engine

    assert not hasattr(yaml, "NAME") and hasattr(yaml, "safe_load")
    assert sys.modules["yaml"] is yaml and sys.modules["engine"] is engine
    assert "yaml" not in [m.split(".")[-1] for m in sys.modules if m.startswith("yaml.")]


def test_two_rules_directories_keep_their_own_helpers(tmp_path) -> None:
    from engine.rule_formats import load_rules

    first = PantherDir(tmp_path / "first")
    second = PantherDir(tmp_path / "second")
    first.helper("shared", "def answer():\n    return 'first'\n")
    second.helper("shared", "def answer():\n    return 'second'\n")
    first.rule("Test.First", USES_HELPER)
    second.rule("Test.Second", USES_HELPER)
    ruleset = load_rules([first.path, second.path], PantherOptions())
    assert titles(ruleset) == {"Test.First": "first", "Test.Second": "second"}


def test_two_packs_with_global_specs_keep_their_own_helpers(tmp_path) -> None:
    from engine.rule_formats import load_rules

    packs = []
    for name in ("first", "second"):
        pack = PantherDir(tmp_path / name)
        pack.helper("shared", f"def answer():\n    return {name!r}\n")
        pack.write(
            "global_helpers/shared.yml",
            "AnalysisType: global\nGlobalID: shared\nFilename: shared.py\n",
        )
        pack.rule(f"Test.{name.capitalize()}", USES_HELPER)
        packs.append(pack.path)
    ruleset = load_rules(packs, PantherOptions())
    assert titles(ruleset) == {"Test.First": "first", "Test.Second": "second"}


def test_global_specs_outside_a_helpers_folder_serve_every_rule(panther_dir) -> None:
    panther_dir.helper("shared_impl", "def answer():\n    return 'declared'\n", folder="lib")
    panther_dir.write(
        "lib/shared.yml", "AnalysisType: global\nGlobalID: shared\nFilename: shared_impl.py\n"
    )
    panther_dir.rule("Test.Declared", USES_HELPER)
    assert titles(panther_dir.load()) == {"Test.Declared": "declared"}


def test_one_module_name_from_two_folders_is_an_error(panther_dir, tmp_path) -> None:
    elsewhere = PantherDir(tmp_path / "elsewhere")
    elsewhere.write("shared.py", "def answer():\n    return 'explicit'\n")
    panther_dir.helper("shared", "def answer():\n    return 'local'\n")
    panther_dir.rule("Test.Clash", USES_HELPER)
    _, problems = panther_dir.check(helpers=(elsewhere.path,))
    (problem,) = problems
    assert problem.key == "Filename"
    assert "'shared' is defined twice" in problem.message
    assert str(elsewhere.path / "shared.py") in problem.message


def test_a_missing_third_party_package_is_named(panther_dir: PantherDir) -> None:
    panther_dir.helper("shared", "import policyuniverse_not_here\n\ndef answer():\n    return 1\n")
    panther_dir.helper("dates", "from dateutil_missing import parser\n")
    panther_dir.rule("Test.Package", USES_HELPER)
    _, problems = panther_dir.check()
    (problem,) = problems
    assert "shared.py line 1" in problem.message
    assert "'policyuniverse_not_here', a third-party package that is not installed" in (
        problem.message
    )
    assert "(pip install policyuniverse_not_here)" in problem.message  # not in the extra


def test_known_package_names_are_translated(panther_dir: PantherDir, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "dateutil", None)  # as if python-dateutil were missing
    panther_dir.helper("shared", "from dateutil import parser\n\ndef answer():\n    return 1\n")
    panther_dir.rule("Test.Dateutil", USES_HELPER)
    _, problems = panther_dir.check()
    (problem,) = problems
    assert "(pip install python-dateutil, or install detect with its [panther] extra)" in (
        problem.message
    )


def test_a_missing_helper_says_where_it_looked(panther_dir: PantherDir) -> None:
    panther_dir.rule("Test.NoHelper", USES_HELPER)
    _, problems = panther_dir.check()
    (problem,) = problems
    assert "imports 'shared', which is neither a global helper" in problem.message
    assert "--helpers" in problem.message


def test_a_missing_helpers_folder_is_reported(panther_dir: PantherDir, tmp_path) -> None:
    panther_dir.rule("Test.Fine", "def rule(event):\n    return True\n")
    _, problems = panther_dir.check(helpers=(tmp_path / "nowhere",))
    (problem,) = problems
    assert problem.key == "--helpers" and "no such helpers folder" in problem.message


def test_rules_print_to_stderr_not_stdout(panther_dir: PantherDir, capsys) -> None:
    panther_dir.rule(
        "Test.Print", "def rule(event):\n    print('looking at', event['type'])\n    return False\n"
    )
    run(panther_dir.load(), [activity()])
    captured = capsys.readouterr()
    assert captured.out == "" and "looking at org_sso_toggled" in captured.err
