"""A webhook whose JSON body is a template over the alert: Jira, ServiceNow, Opsgenie,
Mattermost, Discord or an in-house receiver.

`template` is YAML (a mapping or a list) whose string values may hold the `{path}`
holes rules use in titles (JMESPath over the alert JSON of docs/delivery.md):

- a string that is exactly one hole (`"{event_count}"`, `"{tags}"`) becomes that value
  with its JSON type: a number stays a number, a list a list, a missing value `null`;
- any other string with holes (`"[{severity}] {title}"`) becomes a JSON string;
- keys and text outside holes are used as written.

The body is built as a tree and serialized once, so a value is always a JSON string,
number, boolean, null or a structure taken from the alert: an event field of
`", "admin": true` or `</script>` stays text inside its string and can never change the
shape of the body. Values that are text are stripped of control characters.

Besides the alert's fields the template can use `event` (`alert.opened`,
`alert.closed`, `alert.digest`) and `destination`. A digest is one request, the same
template rendered over a digest record that has the alert fields a template is likely
to use (`alert_id` = the digest id, `title`, `severity` = the highest, `event_count`,
`description` listing the alerts) plus `alerts`, the full list.

`headers` (e.g. `Authorization`) are sent as given; with a `secret`, the request is
signed with Standard Webhooks headers like `type: webhook`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import jmespath

from engine.activity import format_timestamp
from engine.config import DestinationConfig
from engine.delivery.alert_text import printable, title_of
from engine.delivery.digest import DigestInfo, event_total, plural
from engine.delivery.transport import USER_AGENT, Outcome, signed_endpoint
from engine.delivery.webhook import EVENT_HEADER, public_alert, signature_headers

Render = Callable[[Mapping[str, Any]], Any]
_OPTIONS = jmespath.Options()
_RANK = ("info", "low", "medium", "high", "critical")
MAX_BODY_BYTES = 1_000_000


def _clean(value: Any) -> Any:
    """Alert values as JSON values: text without control characters (newlines kept)."""
    if isinstance(value, str):
        return printable(value, single_line=False)
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return printable(str(value))


def _leaf(text: str) -> Render:
    from engine.detection.operators import compile_path
    from engine.detection.templates import render_value, split_template

    parts = split_template(text)
    if len(parts) == 1 and isinstance(parts[0], tuple):
        getter = compile_path(parts[0][0], _OPTIONS)
        return lambda data: _clean(getter(data))
    pieces: list[Any] = [p if isinstance(p, str) else compile_path(p[0], _OPTIONS) for p in parts]

    def render(data: Mapping[str, Any]) -> str:
        out = []
        for piece in pieces:
            if isinstance(piece, str):
                out.append(piece)
            else:
                value = piece(data)
                out.append("" if value is None else render_value(value))
        return printable("".join(out), single_line=False)

    return render


def compile_body(template: Any) -> Render:
    """A function from the template data to the body tree; raises `ValueError` (with the
    place) for a malformed hole."""
    from engine.detection.operators import MatchError

    def build(node: Any, where: str) -> Render:
        if isinstance(node, Mapping):
            items = [(str(k), build(v, f"{where}.{k}")) for k, v in node.items()]
            return lambda data: {k: render(data) for k, render in items}
        if isinstance(node, list):
            renders = [build(v, f"{where}[{i}]") for i, v in enumerate(node)]
            return lambda data: [render(data) for render in renders]
        if isinstance(node, str):
            try:
                return _leaf(node)
            except MatchError as error:
                raise ValueError(f"template{where}: {error}") from None
        return lambda data, constant=node: constant

    return build(template, "")


def alert_data(alert: Mapping[str, Any], purpose: str, destination: str) -> dict[str, Any]:
    data = public_alert(alert)
    data["event"] = f"alert.{purpose}"
    data["destination"] = destination
    return data


def digest_data(
    alerts: list[Mapping[str, Any]], info: DigestInfo, destination: str
) -> dict[str, Any]:
    worst = max((str(a.get("severity", "info")) for a in alerts), key=_rank, default="info")
    lines = [
        f"{str(a.get('severity', '')).upper()} {title_of(a)} ({a.get('alert_id', '')})"
        for a in alerts
    ]
    return {
        "schema": "detect.digest/v1",
        "event": "alert.digest",
        "destination": destination,
        "alert_id": info.digest_id,
        "digest_id": info.digest_id,
        "kind": "digest",
        "rule_id": "detect.digest",
        "rule_name": "Digest",
        "severity": worst,
        "title": f"Digest: {plural(len(alerts), 'alert')} below {info.below.upper()}",
        "description": "\n".join(lines),
        "event_count": event_total(alerts),
        "alert_count": len(alerts),
        "period_start": format_timestamp(info.period_start, "seconds"),
        "period_end": format_timestamp(info.period_end, "seconds"),
        "early": info.early,
        "below": info.below,
        "tags": [],
        "alerts": [public_alert(a) for a in alerts],
    }


def _rank(severity: str) -> int:
    return _RANK.index(severity) if severity in _RANK else 0


def _dump(tree: Any) -> str:
    text = json.dumps(tree, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    if len(text.encode("utf-8")) > MAX_BODY_BYTES:
        raise ValueError("the rendered body is over 1 MB")
    return text


class TemplatedWebhookChannel:
    def __init__(self, name: str, config: DestinationConfig) -> None:
        assert config.url is not None and config.template is not None
        self.name = name
        self.config = config
        self._render = compile_body(config.template)
        self._secrets, self._headers, self._poster = signed_endpoint(config)

    def render(self, alert: Mapping[str, Any], purpose: str, notice: str) -> str:
        data = alert_data(alert, purpose, self.name)
        if notice:
            data["notice"] = notice
        return _dump(self._render(data))

    def render_digest(
        self, alerts: list[Mapping[str, Any]], info: DigestInfo
    ) -> list[tuple[str, list[str]]]:
        body = _dump(self._render(digest_data(alerts, info, self.name)))
        return [(body, [str(a.get("alert_id", "")) for a in alerts])]

    def send(self, payload: str, msg_id: str, timestamp: int, purpose: str) -> Outcome:
        body = payload.encode("utf-8")
        headers = {
            **self._headers,
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            EVENT_HEADER: f"alert.{purpose}",
        }
        if self._secrets:
            headers.update(signature_headers(self._secrets, msg_id, timestamp, body))
        return self._poster.post(body, headers, float(timestamp))

    def close(self) -> None:
        self._poster.close()
