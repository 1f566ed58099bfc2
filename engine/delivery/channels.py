"""A channel turns an alert into one message for one destination and sends it.

`render` runs once per delivery, in the dispatcher, and its result is stored: every retry
sends the same message (a webhook receiver may dedupe on `webhook-id`, so the body under
an id must not change between attempts). `render_digest` runs once when a digest is
sealed and returns its messages (one, or numbered parts), each with the alerts it lists.
`send` runs on a worker thread, must not raise for anything the network or the receiver
does, and is the only place that touches it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import IO, Any, Protocol

from engine.alerts import Alert
from engine.config import DestinationConfig
from engine.delivery.console import format_alert, format_digest, use_colour
from engine.delivery.digest import DigestInfo
from engine.delivery.slack import build_digest, build_message
from engine.delivery.transport import USER_AGENT, HttpPoster, Outcome, signed_endpoint
from engine.delivery.webhook import EVENT_HEADER, body_for, digest_bodies, signature_headers

# One digest message: its payload, and the ids of the alerts it lists.
DigestPart = tuple[str, list[str]]

# Messages per second when `max_messages_per_second` is not set: Slack allows about one
# per second per webhook; the others are unlimited.
DEFAULT_RATES: dict[str, float | None] = {"slack": 1.0, "webhook": None, "console": None}
# The other types (module, class), imported when configured. Teams: 4 a second at most
# and far fewer over an hour; Google Chat: 1 a second per space; PagerDuty: 120 a minute.
NEW_CHANNELS = {
    "teams": ("engine.delivery.teams", "TeamsChannel"),
    "google_chat": ("engine.delivery.google_chat", "GoogleChatChannel"),
    "pagerduty": ("engine.delivery.pagerduty", "PagerDutyChannel"),
    "email": ("engine.delivery.email", "EmailChannel"),
    "templated_webhook": ("engine.delivery.templated", "TemplatedWebhookChannel"),
}
DEFAULT_RATES.update(
    {"teams": 1.0, "google_chat": 1.0, "pagerduty": 2.0, "email": None, "templated_webhook": None}
)


class Channel(Protocol):
    name: str
    config: DestinationConfig

    def render(self, alert: Mapping[str, Any], purpose: str, notice: str) -> str: ...

    def render_digest(
        self, alerts: list[Mapping[str, Any]], info: DigestInfo
    ) -> list[DigestPart]: ...

    def send(self, payload: str, msg_id: str, timestamp: int, purpose: str) -> Outcome: ...

    def close(self) -> None: ...


class SlackChannel:
    def __init__(self, name: str, config: DestinationConfig) -> None:
        assert config.url is not None
        self.name = name
        self.config = config
        self._poster = HttpPoster(config.url.get_secret_value(), config.timeout.total_seconds())

    def render(self, alert: Mapping[str, Any], purpose: str, notice: str) -> str:
        return json.dumps(build_message(alert, purpose, notice), separators=(",", ":"))

    def render_digest(self, alerts: list[Mapping[str, Any]], info: DigestInfo) -> list[DigestPart]:
        return [
            (json.dumps(message, separators=(",", ":")), ids)
            for message, ids in build_digest(alerts, info)
        ]

    def send(self, payload: str, msg_id: str, timestamp: int, purpose: str) -> Outcome:
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT}
        return self._poster.post(payload.encode("utf-8"), headers, float(timestamp))

    def close(self) -> None:
        self._poster.close()


class WebhookChannel:
    def __init__(self, name: str, config: DestinationConfig) -> None:
        assert config.url is not None and config.secret is not None
        self.name = name
        self.config = config
        self._secrets, self._headers, self._poster = signed_endpoint(config)

    def render(self, alert: Mapping[str, Any], purpose: str, notice: str) -> str:
        return body_for(alert)

    def render_digest(self, alerts: list[Mapping[str, Any]], info: DigestInfo) -> list[DigestPart]:
        return digest_bodies(alerts, info)

    def send(self, payload: str, msg_id: str, timestamp: int, purpose: str) -> Outcome:
        body = payload.encode("utf-8")
        headers = {
            **self._headers,
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            EVENT_HEADER: f"alert.{purpose}",
            **signature_headers(self._secrets, msg_id, timestamp, body),
        }
        return self._poster.post(body, headers, float(timestamp))

    def close(self) -> None:
        self._poster.close()


class ConsoleChannel:
    """The terminal as a destination: the readable summary, through the same outbox."""

    def __init__(self, name: str, config: DestinationConfig, stream: IO[str] | None = None):
        self.name = name
        self.config = config
        self.stream = stream

    def render(self, alert: Mapping[str, Any], purpose: str, notice: str) -> str:
        stream = self.stream or sys.stdout
        text = format_alert(Alert.from_state(dict(alert)), use_colour(stream))
        if purpose == "closed":
            text = "final count:\n" + text
        if notice:
            text += f"\n    note     {notice}"
        return text

    def render_digest(self, alerts: list[Mapping[str, Any]], info: DigestInfo) -> list[DigestPart]:
        text = format_digest(alerts, info, use_colour(self.stream or sys.stdout))
        return [(text, [str(a.get("alert_id", "")) for a in alerts])]

    def send(self, payload: str, msg_id: str, timestamp: int, purpose: str) -> Outcome:
        stream = self.stream or sys.stdout
        try:
            print(payload, file=stream, flush=True)
        except (OSError, ValueError) as error:
            return Outcome("retry", f"cannot write to the terminal ({type(error).__name__})")
        return Outcome("sent")

    def close(self) -> None:
        """Nothing to release: the stream belongs to the caller."""


def build_channel(name: str, config: DestinationConfig, stream: IO[str] | None = None) -> Channel:
    if config.type == "slack":
        return SlackChannel(name, config)
    if config.type == "webhook":
        return WebhookChannel(name, config)
    if config.type in NEW_CHANNELS:
        import importlib

        module, cls = NEW_CHANNELS[config.type]
        return getattr(importlib.import_module(module), cls)(name, config)
    return ConsoleChannel(name, config, stream)


def rate_of(config: DestinationConfig) -> float | None:
    if config.max_messages_per_second is not None:
        return config.max_messages_per_second
    return DEFAULT_RATES[config.type]
