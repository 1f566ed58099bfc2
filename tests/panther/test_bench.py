"""`detect bench --panther`: it runs and prints its columns (speeds are not asserted:
machines differ). Panther's own engine is measured only where panther_core is installed;
set PANTHER_PYTHON to an interpreter that has it to run that side here too."""

from __future__ import annotations

import importlib.util
import os
import sys
from datetime import UTC, datetime

import pytest

from engine.activity import parse_activity
from engine.bench import core_bench
from engine.feedgen import generate
from engine.panther.event import with_p_fields

PANTHER_PYTHON = os.environ.get("PANTHER_PYTHON")
HERE_HAS_CORE = importlib.util.find_spec("panther_core") is not None
COLUMNS = (
    "detect, full pipeline (5 rules)",
    "detect, evaluation only (5 rules)",
    "detect, evaluation only (3 Python rules)",
    "the same, without the type index",
    "panther_core Rule.run (3 Python rules)",
    "type index    3 of 3 Python rules pinned",
)


def test_bench_panther_prints_our_columns_and_panthers_or_a_note(cli_in_repo) -> None:
    code, out, err = cli_in_repo(
        "bench", "--panther", "fixtures/panther", "--generate", "2000", "--repeat", "1"
    )
    assert code == 0, err
    for column in COLUMNS:
        assert column in out, out
    if HERE_HAS_CORE:
        assert "vs panther_core" in out and "the same per rule" in out
    else:
        assert "panther_core  not measured: panther_core is not importable" in out, out
        assert "--panther-python" in out


@pytest.mark.skipif(not PANTHER_PYTHON, reason="set PANTHER_PYTHON to a Python with panther_core")
def test_bench_panther_with_panthers_engine_in_another_interpreter(cli_in_repo) -> None:
    code, out, err = cli_in_repo(
        "bench",
        "--panther",
        "fixtures/panther",
        "--generate",
        "2000",
        "--repeat",
        "1",
        "--panther-python",
        str(PANTHER_PYTHON),
    )
    assert code == 0, err
    assert "x\n" in out  # the ratios
    assert "matches       the same per rule on both sides" in out, out


@pytest.mark.skipif(HERE_HAS_CORE, reason="this interpreter has panther_core")
def test_a_panther_python_without_panther_core_is_an_error(cli_in_repo) -> None:
    code, _, err = cli_in_repo(
        "bench",
        "--panther",
        "fixtures/panther",
        "--generate",
        "10",
        "--panther-python",
        sys.executable,
    )
    assert code == 2
    assert "cannot import panther_core" in err


def test_panther_python_needs_panther(cli_in_repo) -> None:
    code, _, err = cli_in_repo("bench", "--generate", "10", "--panther-python", sys.executable)
    assert code == 2 and "--panther-python needs --panther" in err


def test_panthers_side_gets_the_p_fields_our_live_events_carry() -> None:
    """core_bench.py cannot import the engine, so it has its own copy of the p_ fields."""
    for raw in generate(500, seed=3):
        record = parse_activity(raw)
        assert core_bench.panther_fields(raw) == with_p_fields(raw, record.created_at)
    odd = {"created_at": "2026-05-04T08:00:01.123456789+02:00", "actor": {"type": "x"}}
    moment = datetime(2026, 5, 4, 6, 0, 1, 123456, tzinfo=UTC)
    assert core_bench.panther_fields(odd) == with_p_fields(odd, moment)
