"""`detect alerts` on a configuration whose state is on Redis: it reads and changes the
outbox every worker shares, not a state file."""

from __future__ import annotations

import random
import time

from engine.config import load_config
from engine.delivery.backend import open_outbox
from engine.delivery.dispatcher import Dispatcher
from engine.delivery.redis_outbox import RedisOutbox
from tests.delivery.conftest import SECRET, make_alert
from tests.delivery.redis_backends import save_redis_alerts


def test_list_retry_send_and_silences_on_the_shared_outbox(
    tmp_path, cli, clock, receivers, redis_server, redis_prefix
):
    answer = {"status": 410}
    hook = receivers(lambda r: (answer["status"], "gone" if answer["status"] != 200 else "ok", {}))
    config_path = tmp_path / "detect.yaml"
    config_path.write_text(
        "state:\n"
        "  backend: redis\n"
        f"  redis: {{url: '{redis_server}', key_prefix: '{redis_prefix}'}}\n"
        "destinations:\n"
        f"  soar: {{type: webhook, url: '{hook.url}', secret: '{SECRET}'}}\n"
    )
    config = load_config(config_path)
    outbox = open_outbox(config)
    assert isinstance(outbox, RedisOutbox)
    alerts = [make_alert(i) for i in range(3)]
    save_redis_alerts(redis_server, redis_prefix, alerts)
    options = dict(clock=clock, sleep=clock.sleep, rng=random.Random(1))
    with Dispatcher(outbox, config, **options) as dispatcher:
        assert dispatcher.dispatch_pending().dead == 3

    code, out, _ = cli("alerts", "list", "--config", str(config_path))
    assert code == 0 and out.count("soar dead") == 3 and "outbox: 3 dead" in out
    code, out, _ = cli("alerts", "list", "--dead", "--config", str(config_path))
    assert code == 0 and all(a.alert_id in out for a in alerts)
    answer["status"] = 200
    code, out, _ = cli("alerts", "retry", "--dead", "--send", "--config", str(config_path))
    assert code == 0 and "re-queued 3 delivery(ies)" in out and "3 sent" in out
    assert len(hook.requests) == 6

    code, out, _ = cli(
        "alerts", "silence", "--rule", "anthropic.sso.*", "--for", "1h", "--reason", "upgrade",
        "--config", str(config_path),
    )  # fmt: skip
    assert code == 0
    silence_id = out.split(":", 1)[0]
    code, out, _ = cli("alerts", "silences", "--config", str(config_path))
    assert code == 0 and silence_id in out
    shared = open_outbox(config)
    try:
        assert [s.silence_id for s in shared.silences(time.time())] == [silence_id]
    finally:
        shared.close()
    code, out, _ = cli("alerts", "unsilence", silence_id, "--config", str(config_path))
    assert code == 0
    code, out, _ = cli("alerts", "silences", "--config", str(config_path))
    assert silence_id not in out


def test_status_figures_need_only_read_access(redis_server, redis_prefix):
    """`detect status` may run as an ACL user that can only read."""
    import redis

    from tests.delivery.redis_backends import open_redis_outbox, redis_client

    alerts = [make_alert(i) for i in range(3)]
    save_redis_alerts(redis_server, redis_prefix, alerts)
    admin = redis_client(redis_server)
    admin.execute_command(
        "ACL", "SETUSER", "outbox-reader", "on", ">reader-pw", "~*", "+@read", "+@connection"
    )
    reader = redis.Redis.from_url(redis_server, username="outbox-reader", password="reader-pw")
    writer = open_redis_outbox(redis_server, redis_prefix)
    try:
        assert RedisOutbox(reader, redis_prefix).figures() == (3, {})
        writer.record_routes([(alerts[0].to_state(), "note", [])], time.time())
        # The first alert is routed: reading past it is no reason to write.
        assert RedisOutbox(reader, redis_prefix).figures() == (2, {})
        assert len(writer.unrouted_alerts()) == 2
    finally:
        writer.close()
        reader.close()
        admin.execute_command("ACL", "DELUSER", "outbox-reader")
        admin.close()
