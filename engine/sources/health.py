"""Source health: `source_health` alerts when the feed goes quiet or polling keeps failing.

A detection engine that stopped seeing activity looks exactly like a quiet day, so both
conditions raise an alert through the same outbox as detections. Each is one episode: one
alert when it starts (its id is stable for the episode, kept in the store with the same
commit as the alert, so a restart never sends a second one), nothing while it lasts, and a
log line when it clears. Silence is measured on event time (the newest activity's
`created_at`): an organization whose Compliance API logging was switched off goes silent
exactly like one whose poller broke, and both deserve a look.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from engine.activity import format_timestamp
from engine.alerts import Alert
from engine.correlation.correlator import AlertChange, Correlator
from engine.durations import describe
from engine.secrets import redact, redact_value
from engine.sources.compliance_api import ComplianceAPIError
from engine.state.store import StateStore

log = logging.getLogger(__name__)

HEALTH_KEY = "source_health"
SILENCE_RULE = "source_health.silence"
FAILING_RULE = "source_health.polling_failed"
STALLED_RULE = "source_health.stalled"


class SourceHealth:
    """Opens and clears the two health episodes; writes go to the store's pending
    transaction (alerts through the correlator's `raise_alert`), and opened alerts also
    go to `emit` (the pipeline's sinks)."""

    def __init__(
        self,
        store: StateStore,
        correlator: Correlator,
        *,
        source: str,
        silence_after: timedelta,
        failure_after: timedelta,
        emit: Callable[[AlertChange], None] | None = None,
    ) -> None:
        self.store = store
        self.correlator = correlator
        self.source = source
        self.silence_after = silence_after
        self.failure_after = failure_after
        self.emit = emit

    def _episodes(self) -> dict[str, Any]:
        value = self.store.get_meta(HEALTH_KEY)
        return dict(value) if isinstance(value, dict) else {}

    def succeeded(
        self, now: datetime, newest_activity: datetime | None, watching_since: datetime
    ) -> None:
        """After a pass that reached the present: clear a failure episode; open or clear
        the silence episode."""
        episodes = self._episodes()
        changed = False
        failing = episodes.pop("failing", None)
        if failing is not None:
            changed = True
            log.info(
                "source health: polling works again (it failed since %s); alert %s is resolved",
                failing.get("since"),
                failing.get("alert_id"),
            )
        reference = newest_activity or watching_since
        quiet = now - reference
        silence = episodes.get("silence")
        if quiet >= self.silence_after and silence is None:
            what = (
                f"newest activity at {format_timestamp(newest_activity)}"
                if newest_activity is not None
                else f"no activity at all since watching began at {format_timestamp(reference)}"
            )
            alert = self._alert(
                rule_id=SILENCE_RULE,
                name="Compliance API source silent",
                severity="medium",
                title=f"No activity from the Compliance API for {describe(quiet)} ({what})",
                description=(
                    "The Compliance API has delivered no activity for longer than "
                    "source.silence_alert_after while polling succeeds. Either the "
                    "organization is truly idle, or activity stopped being recorded (Compliance "
                    "API logging disabled, the organization filter excludes everything), and "
                    "every detection is blind until it resumes."
                ),
                runbook=(
                    "1. Check in the Claude admin console that Compliance API logging is still "
                    "enabled (a change to it is itself an activity: look for "
                    "org_compliance_api_settings_updated).\n"
                    "2. Run `detect check-connection`: it lists the organizations the key sees "
                    "and the newest activity.\n"
                    "3. If source.organization_ids is set, check the ids still exist.\n"
                    "4. If the organization is simply idle (a holiday), raise "
                    "source.silence_alert_after."
                ),
                context={
                    "source": self.source,
                    "newest_activity_at": format_timestamp(newest_activity)
                    if newest_activity
                    else None,
                    "silent_for": describe(quiet),
                    "silence_alert_after": describe(self.silence_after),
                },
                now=now,
            )
            episodes["silence"] = {
                "alert_id": alert.alert_id,
                "since": format_timestamp(reference),
                "opened_at": format_timestamp(now),
            }
            changed = True
            log.warning("source health: %s (alert %s)", alert.title, alert.alert_id)
        elif quiet < self.silence_after and silence is not None:
            episodes.pop("silence")
            changed = True
            log.info(
                "source health: activity is flowing again (newest at %s); silence alert %s "
                "is resolved",
                format_timestamp(reference),
                silence.get("alert_id"),
            )
        if changed:
            self.store.set_meta(HEALTH_KEY, episodes)

    def failed(
        self,
        now: datetime,
        failing_since: datetime,
        error: ComplianceAPIError,
        *,
        alert_now: bool = False,
    ) -> None:
        """After a failed pass: open the failure episode once polling has failed for
        `failure_after` (or at once, with `alert_now`, when it cannot recover by itself)."""
        episodes = self._episodes()
        if "failing" in episodes:
            return
        duration = now - failing_since
        if duration < self.failure_after and not alert_now:
            return
        stopped = error.fatal
        title = (
            f"Polling the Compliance API stopped: {error.label}"
            if stopped
            else f"Polling the Compliance API has failed for {describe(duration)}: {error.label}"
        )
        alert = self._alert(
            rule_id=FAILING_RULE,
            name="Compliance API polling failing",
            severity="high",
            title=title,
            description=(
                "The engine cannot read the Compliance API, so no detection runs on new "
                "activity. Activity is not lost while the key stays valid: polling resumes "
                "from its checkpoint, within the API's 6-year retention, once the cause is "
                "fixed."
            ),
            runbook=(
                "1. Read the error type and request-id in this alert's context.\n"
                "2. authentication_error: the key was revoked or is wrong; permission_error: "
                "it lacks read:compliance_activities. A key revoked by someone you cannot "
                "name is itself an incident.\n"
                "3. rate_limit_error: another integration spends the organization's 600 "
                "requests a minute; lower source.max_requests_per_minute here or there.\n"
                "4. 5xx and connection errors: check https://status.anthropic.com and this "
                "host's network; `detect check-connection` shows the current state."
            ),
            context={
                "source": self.source,
                "error_type": error.label,
                "status": error.status,
                "request_id": error.request_id,
                "error": str(error)[:500],
                "failing_since": format_timestamp(failing_since),
                "polling_stopped": stopped,
            },
            now=now,
        )
        episodes["failing"] = {
            "alert_id": alert.alert_id,
            "since": format_timestamp(failing_since),
            "opened_at": format_timestamp(now),
        }
        self.store.set_meta(HEALTH_KEY, episodes)
        log.error("source health: %s (alert %s)", title, alert.alert_id)

    def stalled(self, now: datetime, since: datetime, pending: int, after: timedelta) -> None:
        """The pipeline has made no progress since `since` while `pending` activities wait
        (called by the live run's watchdog thread): open the `stalled` episode once. The
        alert joins the store's pending transaction, so it reaches the outbox with the
        commit of the page in hand, when the pipeline moves again."""
        episodes = self._episodes()
        if "stalled" in episodes:
            return
        title = (
            f"The detection pipeline has made no progress for {describe(now - since)}, "
            f"{pending} activities pending"
        )
        alert = self._alert(
            rule_id=STALLED_RULE,
            name="Detection pipeline stalled",
            severity="high",
            title=title,
            description=(
                "Activities were read from the Compliance API but the pipeline has neither "
                "evaluated one nor committed for longer than source.stall_alert_after: a rule "
                "is stuck past its time budget where the budget cannot interrupt it (native "
                "code), or the state store hangs. No detection runs until it moves again."
            ),
            runbook=(
                "1. `detect status` shows how long and how many activities wait.\n"
                "2. Find the stuck call: `py-spy dump --pid <pid>` on the `detect run` "
                "process, or its log's last rule_error lines.\n"
                "3. Stop it (SIGTERM; a second one stops at once): the page in hand is read "
                "again on the next start. Disable or fix the rule first if it is the cause."
            ),
            context={
                "source": self.source,
                "no_progress_since": format_timestamp(since),
                "pending_activities": pending,
                "stall_alert_after": describe(after),
            },
            now=now,
        )
        episodes["stalled"] = {
            "alert_id": alert.alert_id,
            "since": format_timestamp(since),
            "opened_at": format_timestamp(now),
            "pending": pending,
        }
        self.store.set_meta(HEALTH_KEY, episodes)
        log.error("source health: %s (alert %s)", title, alert.alert_id)

    def progressing(self, now: datetime) -> None:
        """The pipeline moves again: close the `stalled` episode."""
        episodes = self._episodes()
        stalled = episodes.pop("stalled", None)
        if stalled is None:
            return
        self.store.set_meta(HEALTH_KEY, episodes)
        log.info(
            "source health: the pipeline moves again (stalled since %s); alert %s is resolved",
            stalled.get("since"),
            stalled.get("alert_id"),
        )

    def _alert(
        self,
        *,
        rule_id: str,
        name: str,
        severity: str,
        title: str,
        description: str,
        runbook: str,
        context: dict[str, Any],
        now: datetime,
    ) -> Alert:
        change = self.correlator.raise_alert(
            kind="source_health",
            rule_id=rule_id,
            name=name,
            severity=severity,
            title=redact(title),
            dedup_key=self.source,
            at=now,
            description=redact(description),
            runbook=runbook,
            tags=["source-health"],
            context=redact_value(context),
        )
        if self.emit is not None:
            self.emit(change)
        return change.alert
