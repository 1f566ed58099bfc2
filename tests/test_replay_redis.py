"""`detect replay --deliver` on a Redis state says where its open alerts are kept: the
Redis (host:port/db and key prefix), not the SQLite path the configuration would have
used."""

from __future__ import annotations

import textwrap

from engine.state.redis_connect import server_of
from tests.conftest import at, write_jsonl
from tests.state.test_store_contract import DEDUP_RULE


def test_the_summary_names_the_redis_state_that_keeps_the_open_alerts(
    tmp_path, cli, rules_dir, make_activity, redis_server, redis_prefix
):
    rules_dir.write("dedup.yml", DEDUP_RULE)
    feed = write_jsonl(tmp_path / "feed.jsonl", [make_activity(created_at=at(0))])
    (tmp_path / "detect.yaml").write_text(
        textwrap.dedent(
            f"""
            rules: [rules]
            state:
              backend: redis
              path: kept/state.db
              redis:
                url: {redis_server}
                key_prefix: "{redis_prefix}"
            destinations:
              terminal: {{type: console}}
            """
        ),
        encoding="utf-8",
    )
    code, _, err = cli("replay", "--deliver", str(feed))
    assert code == 0, err
    where = f"the Redis state {server_of(redis_server)} (prefix {redis_prefix})"
    assert f"1 alert(s) still open in {where}:" in err
    assert "state.db" not in err
    assert not (tmp_path / "kept").exists()

    # --state FILE is a SQLite file as always, and the summary names it.
    code, _, err = cli("replay", "--deliver", "--state", "here.db", str(feed))
    assert code == 0, err
    assert "1 alert(s) still open in here.db:" in err
