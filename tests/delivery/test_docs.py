"""The receiver code in docs/delivery.md works on a real signed request."""

from __future__ import annotations

import base64
import random
import re
from pathlib import Path

from engine.delivery.dispatcher import Dispatcher
from tests.delivery.conftest import SECRET, FakeClock, make_alert, save_alerts, webhook

DOC = Path(__file__).resolve().parents[2] / "docs" / "delivery.md"


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
