"""The sending half shared by the JSON-over-HTTPS destinations (Teams, Google Chat,
PagerDuty): one keep-alive POST of the stored payload, classified like Slack's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine import __version__
from engine.config import DestinationConfig
from engine.delivery.digest import DigestInfo
from engine.delivery.transport import HttpPoster, Outcome

USER_AGENT = f"detect/{__version__}"


class JsonChannel:
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

    def render(self, alert: Mapping[str, Any], purpose: str, notice: str) -> str:
        raise NotImplementedError

    def render_digest(
        self, alerts: list[Mapping[str, Any]], info: DigestInfo
    ) -> list[tuple[str, list[str]]]:
        raise NotImplementedError

    def body(self, payload: str) -> bytes:
        return payload.encode("utf-8")

    def send(self, payload: str, msg_id: str, timestamp: int, purpose: str) -> Outcome:
        headers = {"Content-Type": self.content_type, "User-Agent": USER_AGENT}
        return self._poster.post(self.body(payload), headers, float(timestamp))

    def close(self) -> None:
        self._poster.close()
