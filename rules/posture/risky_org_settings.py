"""Organization settings changed in a direction that weakens the organization's posture.

`claude_organization_settings_updated` carries an `updates` list, one entry per changed
setting: `{"type": <setting>, "previous_value": ..., "current_value": ...}`. Most changes
are routine (the name, a members limit, web search for everyone), so alerting on the type
alone drowns responders. This rule knows which settings matter and which direction is the
risky one (public sharing turned on, code execution allowed to reach the whole internet,
retention shortened, ...), and rates each one; the alert takes the worst rating.

Values come from the read-only event, so lists arrive as tuples and objects as read-only
mappings: the helpers below accept any sequence or mapping.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

_RANK = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}


def _turned_on(previous: Any, current: Any) -> bool:
    return current is True and previous is not True


def _turned_off(previous: Any, current: Any) -> bool:
    return current is False and previous is not False


def _became(value: str) -> Callable[[Any, Any], bool]:
    def check(previous: Any, current: Any) -> bool:
        return current == value and previous != value

    return check


def _strings(value: Any) -> set[str]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        return set()
    return {str(v).lower() for v in value}


def _grew(previous: Any, current: Any) -> bool:
    """A list setting gained entries (domains allowed, connections added)."""
    return bool(_strings(current) - _strings(previous))


def _increased(previous: Any, current: Any) -> bool:
    numbers = (int, float)
    return (
        isinstance(current, numbers)
        and not isinstance(current, bool)
        and (not isinstance(previous, numbers) or current > previous)
    )


def _object_flag_on(flag: str) -> Callable[[Any, Any], bool]:
    """For settings whose value is an object: `flag` went to true."""

    def check(previous: Any, current: Any) -> bool:
        now = current.get(flag) if isinstance(current, Mapping) else None
        before = previous.get(flag) if isinstance(previous, Mapping) else None
        return now is True and before is not True

    return check


def _web_tool_opened(previous: Any, current: Any) -> bool:
    """web_search / web_fetch API settings: turned on, or blocked domains removed."""
    if _object_flag_on("is_enabled")(previous, current):
        return True

    def blocked(value: Any) -> set[str]:
        filters = value.get("domain_filters") if isinstance(value, Mapping) else None
        if not isinstance(filters, Mapping):
            return set()
        return _strings(filters.get("blocked_domains"))

    return bool(blocked(previous) - blocked(current))


_DAYS = {"day": 1, "month": 30}


def _shortest_retention(value: Any) -> float | None:
    """Shortest retention in days across the entries; `indefinite` counts as forever."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        return None
    days: list[float] = []
    for entry in value:
        if not isinstance(entry, Mapping):
            continue
        scale = entry.get("timescale")
        duration = entry.get("duration")
        if scale == "indefinite":
            days.append(float("inf"))
        elif scale in _DAYS and isinstance(duration, int | float):
            days.append(duration * _DAYS[scale])
    return min(days) if days else None


def _retention_shortened(previous: Any, current: Any) -> bool:
    """Shorter retention deletes history sooner: what an intruder wants after the fact."""
    before, after = _shortest_retention(previous), _shortest_retention(current)
    if after is None:
        return False
    return before is None or after < before


# setting type -> (is this change risky?, severity, why it matters)
RISKY_SETTINGS: dict[str, tuple[Callable[[Any, Any], bool], str, str]] = {
    "code_execution_domain_allowlist_template_changed": (
        _became("full_egress"),
        "high",
        "code execution can now reach any host on the internet",
    ),
    "code_execution_network_egress_enabled": (
        _turned_on,
        "medium",
        "code execution sandboxes can now make network requests",
    ),
    "code_execution_domain_allowlist_changed": (
        _grew,
        "low",
        "more domains are reachable from code execution",
    ),
    "redact_content": (
        _turned_off,
        "high",
        "content redaction was turned off",
    ),
    "public_projects_enabled": (
        _turned_on,
        "medium",
        "projects can now be shared publicly, outside the organization",
    ),
    "allowed_invite_domains": (
        _grew,
        "medium",
        "members can now invite people from more email domains",
    ),
    "default_workspace_settings": (
        _object_flag_on("enable_api_keys"),
        "medium",
        "new workspaces now allow API keys by default",
    ),
    "is_desktop_extension_allowlist_enabled": (
        _turned_off,
        "medium",
        "any desktop extension can now be installed, not only allowlisted ones",
    ),
    "data_retention_periods": (
        _retention_shortened,
        "medium",
        "data retention was shortened, so history is deleted sooner",
    ),
    "frontier_services_data_use_enabled": (
        _turned_on,
        "medium",
        "organization data may now be used for frontier services",
    ),
    "claude_ai_chat_sharing_enabled": (
        _turned_on,
        "low",
        "members can now share chats by link",
    ),
    "claude_ai_integration_sharing_enabled": (
        _turned_on,
        "low",
        "members can now share integrations",
    ),
    "web_fetch_api_settings": (
        _web_tool_opened,
        "low",
        "web fetch was enabled or its blocked domains were reduced",
    ),
    "web_search_api_settings": (
        _web_tool_opened,
        "low",
        "web search was enabled or its blocked domains were reduced",
    ),
    "account_session_duration_seconds": (
        _increased,
        "low",
        "sessions now last longer before members must sign in again",
    ),
}


def _updates(event: Any) -> list[Mapping[str, Any]]:
    updates = event.get("updates")
    if isinstance(updates, Mapping):
        return [updates]
    if isinstance(updates, str) or not isinstance(updates, Sequence):
        return []
    return [u for u in updates if isinstance(u, Mapping)]


def risky_changes(event: Any) -> list[tuple[str, str, str]]:
    """(setting, severity, why) for each change that moved a setting the risky way."""
    found = []
    for update in _updates(event):
        setting = update.get("type")
        known = RISKY_SETTINGS.get(setting) if isinstance(setting, str) else None
        if known is None:
            continue
        is_risky, severity, why = known
        if is_risky(update.get("previous_value"), update.get("current_value")):
            found.append((setting, severity, why))
    return found


def rule(event: Any) -> bool:
    return event.get("type") == "claude_organization_settings_updated" and bool(
        risky_changes(event)
    )


def severity(event: Any) -> str:
    return max((s for _, s, _ in risky_changes(event)), key=_RANK.__getitem__, default="medium")


def _who(event: Any) -> str:
    return event.deep_get("actor", "email_address") or event.deep_get("actor", "type") or "?"


def title(event: Any) -> str:
    settings = ", ".join(setting for setting, _, _ in risky_changes(event))
    return f"Risky organization setting changed by {_who(event)}: {settings}"


def dedup(event: Any) -> str:
    settings = ",".join(sorted(setting for setting, _, _ in risky_changes(event)))
    return f"{event.get('organization_id')}:{settings}"


def context(event: Any) -> dict[str, Any]:
    return {
        "actor.email_address": event.deep_get("actor", "email_address"),
        "actor.ip_address": event.deep_get("actor", "ip_address"),
        "organization_id": event.get("organization_id"),
        "risky_changes": [
            {"setting": setting, "severity": sev, "why": why}
            for setting, sev, why in risky_changes(event)
        ],
    }
