"""The destination examples in README.md and docs/delivery.md load, and the templated
webhook example sends what the docs say it sends."""

from __future__ import annotations

import json
import re
from pathlib import Path

from engine.config import load_config
from engine.delivery.templated import alert_data, compile_body
from tests.delivery.conftest import make_alert

ROOT = Path(__file__).resolve().parents[2]
ENV = {
    "TEAMS_WORKFLOW_URL": "https://prod-01.westeurope.logic.azure.com/workflows/x/triggers",
    "GOOGLE_CHAT_WEBHOOK_URL": "https://chat.googleapis.com/v1/spaces/AAA/messages?key=k&token=t",
    "PAGERDUTY_ROUTING_KEY": "R0UTINGKEY0123456789abcdefABCDEF",
    "SMTP_PASSWORD": "an-smtp-password",
    "JIRA_BASIC_AUTH": "dXNlcjp0b2tlbg==",
}
TYPES = {"teams", "google_chat", "pagerduty", "email", "templated_webhook"}


def _block(path: Path, after: str, language: str) -> str:
    text = path.read_text(encoding="utf-8")
    match = re.compile(rf"```{language}\n(.*?)```", re.S).search(text, text.index(after))
    assert match is not None
    return match.group(1)


def _load(tmp_path: Path, text: str):
    path = tmp_path / "detect.yaml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, environ=ENV)


def test_the_readme_example_has_every_new_type_and_loads(tmp_path):
    text = _block(ROOT / "README.md", "Alerts can also go where other teams already work", "yaml")
    config = _load(tmp_path, text)
    assert {d.type for d in config.destinations.values()} == TYPES


def test_the_delivery_doc_example_loads_and_its_jira_body_is_what_it_shows(tmp_path):
    doc = ROOT / "docs" / "delivery.md"
    heading = "## Teams, Google Chat, PagerDuty, email and templated webhooks"
    config = _load(tmp_path, _block(doc, heading, "yaml"))
    assert {d.type for d in config.destinations.values()} == TYPES
    jira = config.destinations["jira"]
    body = compile_body(jira.template)(alert_data(make_alert(1).to_state(), "opened", "jira"))
    shown = json.loads(_block(doc, "The example above sends:", "json"))
    assert body == shown
    for name in ("teams", "google_chat", "pagerduty", "email", "templated_webhook"):
        assert f"`type: {name}`" in doc.read_text(encoding="utf-8")
