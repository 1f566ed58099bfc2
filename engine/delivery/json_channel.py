"""The sending half shared by the JSON-over-HTTPS destinations (Teams, Google Chat,
PagerDuty): one keep-alive POST of the stored payload, classified like Slack's."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

from engine.config import DestinationConfig
from engine.delivery.digest import DigestInfo
from engine.delivery.transport import USER_AGENT, HttpPoster, Outcome


class JsonChannel(ABC):
    """Subclasses give `render`, `render_digest` and, when the URL needs more than the
    configured one, `target_url`."""

    content_type = "application/json; charset=utf-8"

    def __init__(self, name: str, config: DestinationConfig) -> None:
        assert config.url is not None
        self.name = name
        self.config = config
        self._poster = HttpPoster(self.target_url(config), config.timeout.total_seconds())

    def target_url(self, config: DestinationConfig) -> str:
        assert config.url is not None
        return config.url.get_secret_value()

    @abstractmethod
    def render(self, alert: Mapping[str, Any], purpose: str, notice: str) -> str:
        """The stored payload of one alert (or its closing summary)."""

    @abstractmethod
    def render_digest(
        self, alerts: list[Mapping[str, Any]], info: DigestInfo
    ) -> list[tuple[str, list[str]]]:
        """A digest's messages: each payload with the alert ids it lists."""

    def body(self, payload: str) -> bytes:
        return payload.encode("utf-8")

    def send(self, payload: str, msg_id: str, timestamp: int, purpose: str) -> Outcome:
        headers = {"Content-Type": self.content_type, "User-Agent": USER_AGENT}
        return self._poster.post(self.body(payload), headers, float(timestamp))

    def close(self) -> None:
        self._poster.close()
