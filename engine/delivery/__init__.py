"""Delivery: the outbox, routing, and the dispatcher that sends alerts to Slack, signed
webhooks and the console (docs/delivery.md).

Names are imported on first use so that `engine.delivery.console` (used by every replay)
does not pay for the HTTP stack.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DispatchReport", "Dispatcher", "deliver_pending", "unknown_rule_destinations"]


def __getattr__(name: str) -> Any:
    if name in ("DispatchReport", "Dispatcher", "deliver_pending"):
        from engine.delivery import dispatcher

        return getattr(dispatcher, name)
    if name == "unknown_rule_destinations":
        from engine.delivery.routing import unknown_rule_destinations

        return unknown_rule_destinations
    raise AttributeError(name)
