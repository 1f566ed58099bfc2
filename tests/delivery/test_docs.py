"""The receiver code in docs/delivery.md works on a real signed request; the delivery
promise the docs make on Redis is the one the code keeps (at least once), and the line
they quote for a stalled dispatcher is the one it logs."""

from __future__ import annotations

import base64
import random
import re
from pathlib import Path

from engine.delivery.dispatcher import Dispatcher, _not_recorded
from engine.delivery.outbox import Delivery
from tests.delivery.conftest import SECRET, FakeClock, make_alert, save_alerts, webhook

DOC = Path(__file__).resolve().parents[2] / "docs" / "delivery.md"
README = DOC.parents[1] / "README.md"


def documented_verifier():
    text = DOC.read_text(encoding="utf-8")
    block = re.search(r"```python\n(import base64.*?)```", text, re.S)
    assert block, "docs/delivery.md lost its verification sample"
    namespace: dict = {}
    exec(compile(block.group(1), str(DOC), "exec"), namespace)
    return namespace["verify_webhook"]


def test_the_documented_verifier_accepts_ours_and_rejects_forgeries(db, receivers):
    import time

    clock = FakeClock(time.time())
    hook = receivers()
    save_alerts(db, [make_alert(1)])
    with Dispatcher(
        db, {"soar": webhook(hook.url)}, clock=clock, sleep=clock.sleep, rng=random.Random(2)
    ) as d:
        d.dispatch_pending()
    (request,) = hook.requests
    verify_webhook = documented_verifier()
    assert verify_webhook(SECRET, request.headers, request.body)
    assert not verify_webhook(SECRET, request.headers, request.body.replace(b"high", b"low!"))
    other = "whsec_" + base64.b64encode(b"another key of thirty-two bytes!").decode()
    assert not verify_webhook(other, request.headers, request.body)


def _section(path: Path, heading: str) -> str:
    text = path.read_text(encoding="utf-8")
    start = text.index(heading + "\n")
    end = text.find("\n## ", start + len(heading))
    return " ".join(text[start : end if end > 0 else None].split())


def test_the_docs_promise_at_least_once_on_redis_and_say_who_drops_a_repeat():
    readme = _section(README, "## Several workers on Redis")
    assert "delivered once" not in readme
    for needed in ("at least once", "killed or stalled", "webhook-id", "email show it twice"):
        assert needed in readme, needed
    redis = _section(DOC, "## Several workers: the outbox on Redis")
    assert "exactly one does" not in redis and "exactly one sends it" not in redis
    assert "at-least-once" in redis and "killed or stalled" in redis


def test_the_documented_line_is_what_a_stalled_dispatcher_logs(caplog):
    text = " ".join(DOC.read_text(encoding="utf-8").split())
    found = re.search(r"`(delivery N \(alert .*?is not recorded)`", text)
    assert found, "docs/delivery.md lost the stalled dispatcher's line"
    parts = re.split(r"N|…", found.group(1))
    pattern = r"\d+".join([re.escape(parts[0]), ".+?".join(re.escape(p) for p in parts[1:])])
    late = Delivery(
        7, "al_1", "soar", "opened", "pending", 1.0, 1.0, 1, 1.0, 50.0, None, None, "", "", "{}", 1
    )
    _not_recorded("soar", late, "sent")
    (record,) = [r for r in caplog.records if r.name == "engine.delivery"]
    assert re.fullmatch(pattern, record.getMessage()), (pattern, record.getMessage())
