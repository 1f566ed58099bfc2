"""Email over SMTP (stdlib `smtplib`): one message per alert, or one per digest.

Transport security: `security: starttls` (submission, port 587: the connection is
upgraded before anything else is said, and a server that does not offer STARTTLS is a
dead letter, never a fallback to plain text), `tls` (implicit TLS, port 465), or `none`
(loopback relays only, or with `allow_insecure_smtp: true`). Certificates are verified
against the system store, or `ca_file`. `username`/`password` log in after TLS.

Each message is `multipart/alternative`: plain text, and HTML where every value is
escaped with `html.escape`. Header values are stripped of line breaks. `Message-ID` is
derived from the alert id (`<al_…_destination@detect.invalid>`, `_closed` for a closing
summary, which also names the first as `In-Reply-To`), so a message sent once more after
a crash carries the same id and mail clients and archives fold it into the first.

Outcomes follow RFC 5321: a 4yz reply or a dropped connection is transient (retried
with backoff), a 5yz reply is permanent (a dead letter with the server's answer). When
the server refuses some recipients but takes the message for others, the message counts
as sent (resending would duplicate it for the others) and the refusals are logged.
"""

from __future__ import annotations

import html
import logging
import smtplib
import socket
import ssl
from collections.abc import Mapping
from email import message_from_string, policy
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

from engine import __version__
from engine.config import DestinationConfig
from engine.delivery.alert_text import (
    context_facts,
    facts,
    period,
    printable,
    runbook_steps,
    safe_url,
    severity_word,
    title_of,
)
from engine.delivery.digest import DigestInfo, plural
from engine.delivery.text import clean_text
from engine.delivery.transport import REDACTOR, Outcome

log = logging.getLogger("engine.delivery")

ID_DOMAIN = "detect.invalid"
MAX_SUBJECT = 200
MAX_VALUE = 2000
DIGEST_ALERTS_PER_MESSAGE = 500


def message_id_for(msg_id: str) -> str:
    """The `Message-ID` of a delivery: its (alert- or digest-derived) message id."""
    return f"<{msg_id}@{ID_DOMAIN}>"


def _clip(value: Any, limit: int = MAX_VALUE, single_line: bool = True) -> str:
    text = printable(value, single_line)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _subject(text: str) -> str:
    return _clip(text, MAX_SUBJECT)


def _alert_bodies(alert: Mapping[str, Any], purpose: str, notice: str) -> tuple[str, str]:
    closing = purpose == "closed"
    title = _clip(title_of(alert), 1000)
    lines = [f"{severity_word(alert)} alert" + (" - final count" if closing else ""), title, ""]
    parts = [
        f"<p><strong>{html.escape(severity_word(alert))} alert"
        + (" - final count" if closing else "")
        + f"</strong></p><h2>{html.escape(title)}</h2>"
    ]
    if closing:
        text = "This alert kept growing after its notification; its dedup window has now closed."
        lines += [text, ""]
        parts.append(f"<p>{html.escape(text)}</p>")
    if alert.get("description"):
        description = _clip(alert["description"], 4000, single_line=False)
        lines += [description, ""]
        parts.append(f"<p>{html.escape(description).replace(chr(10), '<br>')}</p>")
    rows = [(label, _clip(value)) for label, value in facts(alert)]
    if not closing:
        rows += [(_clip(k, 200), _clip(v)) for k, v in context_facts(alert, limit=30)]
    width = max(len(label) for label, _ in rows)
    lines += [f"{label.ljust(width)}  {value}" for label, value in rows] + [""]
    parts.append(
        "<table>"
        + "".join(
            f"<tr><th align='left'>{html.escape(label)}</th><td>{html.escape(value)}</td></tr>"
            for label, value in rows
        )
        + "</table>"
    )
    steps = runbook_steps(alert, steps=5)
    if steps and not closing:
        lines += ["First steps:", *[f"  {_clip(s, 500)}" for s in steps], ""]
        items = "".join(f"<li>{html.escape(_clip(s, 500))}</li>" for s in steps)
        parts.append(f"<p><strong>First steps</strong></p><ul>{items}</ul>")
    link = safe_url(alert.get("reference"))
    if link:
        lines += [f"Reference: {link}", ""]
        parts.append(f'<p><a href="{html.escape(link)}">Rule reference</a></p>')
    if notice:
        lines += [f"Note: {_clip(notice, 500)}", ""]
        parts.append(f"<p><em>{html.escape(_clip(notice, 500))}</em></p>")
    alert_id = _clip(alert.get("alert_id", "-"), 80)
    footer = f"Alert {alert_id} - details: detect alerts show {alert_id}"
    lines.append(footer)
    parts.append(f"<p><small>{html.escape(footer)}</small></p>")
    return "\n".join(lines) + "\n", "<html><body>" + "".join(parts) + "</body></html>\n"


def _message(subject: str, text: str, html_body: str, msg_id: str) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = _subject(subject)
    message["Message-ID"] = message_id_for(msg_id)
    message["X-Mailer"] = f"detect/{__version__}"
    message.set_content(text)
    message.add_alternative(html_body, subtype="html")
    return message


def build_alert_message(
    alert: Mapping[str, Any], purpose: str, notice: str, msg_id: str, opened_id: str | None
) -> EmailMessage:
    """The message without From/To/Date (added when it is sent)."""
    prefix = "[final count] " if purpose == "closed" else ""
    subject = f"[{severity_word(alert)}] {prefix}{title_of(alert)}"
    text, html_body = _alert_bodies(alert, purpose, notice)
    message = _message(subject, text, html_body, msg_id)
    if opened_id is not None:
        message["In-Reply-To"] = message_id_for(opened_id)
        message["References"] = message_id_for(opened_id)
    return message


def build_digest_message(
    alerts: list[Mapping[str, Any]], info: DigestInfo, msg_id: str, number: int, parts: int
) -> EmailMessage:
    part = f" {number}/{parts}" if parts > 1 else ""
    head = f"Digest{part}: {plural(len(alerts), 'alert')} below {info.below.upper()}"
    span = f"{period(info)}"
    lines = [head, f"Period {span}", ""]
    rows = []
    for alert in alerts:
        count = int(alert.get("event_count") or 0)
        cells = (
            severity_word(alert),
            _clip(title_of(alert), 300),
            plural(count, "event"),
            _clip(alert.get("alert_id", "-"), 80),
        )
        lines.append(" - ".join(cells))
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    note = "Details: detect alerts show ALERT_ID"
    if info.early:
        note = "Sent before the period ended (shutdown or end of a replay). " + note
    lines += ["", note]
    html_body = (
        f"<html><body><h2>{html.escape(head)}</h2><p>Period {html.escape(span)}</p>"
        f"<table>{''.join(rows)}</table><p><small>{html.escape(note)}</small></p></body></html>\n"
    )
    return _message(f"[detect] {head}", "\n".join(lines) + "\n", html_body, msg_id)


def _payload(message: EmailMessage) -> str:
    return message.as_string()


class EmailChannel:
    """SMTP: a connection per message (alerts are rare; a relay's idle timeout would
    break a kept one), never raising for anything the network or the server does."""

    def __init__(self, name: str, config: DestinationConfig) -> None:
        assert config.smtp is not None
        self.name = name
        self.config = config
        self.smtp = config.smtp
        if self.smtp.password is not None:
            REDACTOR.add(self.smtp.password.get_secret_value())

    def render(self, alert: Mapping[str, Any], purpose: str, notice: str) -> str:
        from engine.delivery.webhook import message_id

        alert_id = str(alert.get("alert_id", ""))
        msg_id = message_id(alert_id, self.name, purpose)
        opened = message_id(alert_id, self.name) if purpose != "opened" else None
        return _payload(build_alert_message(alert, purpose, notice, msg_id, opened))

    def render_digest(
        self, alerts: list[Mapping[str, Any]], info: DigestInfo
    ) -> list[tuple[str, list[str]]]:
        from engine.delivery.digest import part_key
        from engine.delivery.webhook import message_id

        size = DIGEST_ALERTS_PER_MESSAGE
        chunks = [alerts[i : i + size] for i in range(0, len(alerts), size)] or [[]]
        out = []
        for number, chunk in enumerate(chunks, start=1):
            key = part_key(info.digest_id, number, len(chunks))
            msg_id = message_id(key, self.name, "digest")
            message = build_digest_message(chunk, info, msg_id, number, len(chunks))
            out.append((_payload(message), [str(a.get("alert_id", "")) for a in chunk]))
        return out

    def _connect(self) -> smtplib.SMTP:
        timeout = self.config.timeout.total_seconds()
        context = ssl.create_default_context(cafile=self.smtp.ca_file)
        if self.smtp.security == "tls":
            return smtplib.SMTP_SSL(
                self.smtp.host, self.smtp.port, timeout=timeout, context=context
            )
        client = smtplib.SMTP(self.smtp.host, self.smtp.port, timeout=timeout)
        try:
            client.ehlo()
            if self.smtp.security == "starttls":
                client.starttls(context=context)
                client.ehlo()
        except BaseException:
            client.close()
            raise
        return client

    def send(self, payload: str, msg_id: str, timestamp: int, purpose: str) -> Outcome:
        message = message_from_string(payload, policy=policy.default)
        message["From"] = self.smtp.from_address
        message["To"] = ", ".join(self.smtp.to)
        message["Date"] = formatdate(timestamp, usegmt=True)
        try:
            client = self._connect()
        except Exception as error:  # noqa: BLE001 - classified below, never raised
            return _failure(error, self.config.timeout.total_seconds())
        try:
            if self.smtp.username is not None and self.smtp.password is not None:
                client.login(self.smtp.username, self.smtp.password.get_secret_value())
            refused = client.send_message(message)
        except Exception as error:  # noqa: BLE001 - classified below, never raised
            return _failure(error, self.config.timeout.total_seconds())
        finally:
            try:
                client.quit()
            except Exception:  # noqa: BLE001 - the message's fate is already known
                client.close()
        if refused:
            codes = ", ".join(sorted({str(code) for code, _ in refused.values()}))
            log.warning(
                "email %s to %s: %d recipient(s) refused (%s), the others accepted it",
                msg_id,
                self.name,
                len(refused),
                codes,
            )
        return Outcome("sent", status=250)

    def close(self) -> None:
        """Nothing kept open between messages."""


def _answer(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return REDACTOR.redact(clean_text(f"SMTP {code}: {text}"))


def _failure(error: Exception, timeout: float) -> Outcome:
    """RFC 5321: 4yz transient, 5yz permanent; connection trouble transient."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        answers = list(error.recipients.values())
        code, text = answers[0] if answers else (550, b"all recipients refused")
        kind = "retry" if all(400 <= c < 500 for c, _ in answers) else "dead"
        return Outcome(kind, _answer(code, text), code)
    if isinstance(error, smtplib.SMTPResponseException):
        code = error.smtp_code
        kind = "retry" if 400 <= code < 500 else "dead" if 500 <= code < 600 else "retry"
        return Outcome(kind, _answer(code, error.smtp_error), code)
    if isinstance(error, smtplib.SMTPNotSupportedError):
        return Outcome(
            "dead", "the SMTP server does not offer STARTTLS (or AUTH); not sending in clear"
        )
    if isinstance(error, ssl.SSLCertVerificationError):
        return Outcome("retry", "TLS certificate verification failed")
    if isinstance(error, ssl.SSLError):
        return Outcome("retry", "TLS handshake failed (certificate or protocol error)")
    if isinstance(error, TimeoutError | socket.timeout):
        return Outcome("retry", f"no answer from the SMTP server within {timeout:g}s")
    if isinstance(error, ConnectionRefusedError):
        return Outcome("retry", "connection refused")
    if isinstance(error, smtplib.SMTPServerDisconnected | ConnectionError):
        return Outcome("retry", "the SMTP server closed the connection")
    if isinstance(error, socket.gaierror):
        return Outcome("retry", "DNS lookup failed")
    return Outcome("retry", f"sending failed ({type(error).__name__})")
