"""`detect bench`'s pipeline measurement, on one process and on two."""

from __future__ import annotations

import os

import pytest

from engine.bench.harness import measure_pipeline
from engine.feedgen import generate, write_jsonl
from engine.resources import bundled_rules_dir


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_two_processes_measure_the_same_work_and_time_each_rule(tmp_path):
    feed = tmp_path / "feed.jsonl"
    write_jsonl(feed, generate(3000, seed=4))
    one, two = (measure_pipeline(feed, [bundled_rules_dir()], True, n) for n in (1, 2))
    for key in ("activities", "rejected", "matches", "alerts", "state_rows", "rules"):
        assert two[key] == one[key], key
    assert two["processes"] == 2 and one["processes"] == 1
    # Each rule was timed where it ran: in the child, on two processes.
    counts = {rule: (r["evaluations"], r["matches"]) for rule, r in one["per_rule"].items()}
    assert {rule: (r["evaluations"], r["matches"]) for rule, r in two["per_rule"].items()} == counts
    assert sum(r["seconds"] for r in two["per_rule"].values()) > 0
    # Shared pages are counted once by PSS, twice by the two peak RSS figures added up.
    assert 10 < two["peak_pss_mb"] < two["peak_rss_mb"]
    assert 10 < one["peak_pss_mb"] <= one["peak_rss_mb"] < two["peak_rss_mb"]
