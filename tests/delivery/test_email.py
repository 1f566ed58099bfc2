"""Email through a real SMTP server on loopback (aiosmtpd): STARTTLS, implicit TLS,
AUTH, plain-text and escaped HTML parts, Message-ID from the alert id, RFC 5321 codes."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest

aiosmtpd = pytest.importorskip("aiosmtpd")
from aiosmtpd.controller import Controller  # noqa: E402
from aiosmtpd.smtp import AuthResult  # noqa: E402

from tests.delivery.conftest import free_port, grow, make_alert, save_alerts  # noqa: E402
from tests.delivery.destinations import LONG, deliveries, destination, hostile_alert, run  # noqa: E402

PASSWORD = "smtp-password-very-secret"


class Mailbox:
    """Records messages; answers from `script` (e.g. ["451 4.3.0 try later"]) first."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.envelopes: list[Any] = []
        self.script: list[str] = []

    async def handle_DATA(self, server, session, envelope):
        if self.script:
            return self.script.pop(0)
        self.envelopes.append(envelope)
        self.messages.append(message_from_bytes(envelope.original_content, policy=policy.default))
        return "250 OK"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = auth_data.login == b"detect" and auth_data.password == PASSWORD.encode()
    return AuthResult(success=ok, handled=False)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def server_context(certificate) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


@pytest.fixture
def smtp_server(certificate):
    started = []

    def start(mode: str = "starttls", auth: bool = True) -> tuple[Mailbox, int]:
        box = Mailbox()
        port = free_port()
        options: dict[str, Any] = {"hostname": "127.0.0.1", "port": port}
        if mode == "starttls":
            options.update(tls_context=server_context(certificate), require_starttls=True)
        elif mode == "tls":
            options.update(ssl_context=server_context(certificate))
        if auth:
            options.update(authenticator=authenticator, auth_require_tls=mode == "starttls")
            # (aiosmtpd counts only STARTTLS as TLS for AUTH; implicit TLS is TLS too)
        controller = Controller(box, **options)
        controller.start()
        started.append(controller)
        return box, port

    yield start
    for controller in started:
        controller.stop()


def mail(port: int, certificate, security: str = "starttls", auth: bool = True, **options):
    smtp = {
        "host": "127.0.0.1",
        "port": port,
        "security": security,
        "from": "detect@example.com",
        "to": ["secops@example.com", "oncall@example.com"],
        "ca_file": str(certificate[0]),
    }
    if auth:
        smtp.update(username="detect", password=PASSWORD)
    return destination("email", smtp=smtp, **options)


@pytest.mark.parametrize("mode", ["starttls", "tls"])
def test_one_message_per_alert_over_tls_with_auth(db, clock, smtp_server, certificate, mode):
    box, port = smtp_server(mode)
    alert = make_alert(1, reference="https://example.com/rb")
    save_alerts(db, [alert])
    assert run(db, clock, {"mail": mail(port, certificate, mode)}).sent == 1
    (message,) = box.messages
    assert box.envelopes[0].rcpt_tos == ["secops@example.com", "oncall@example.com"]
    assert message["Message-ID"] == f"<{alert.alert_id}_mail@detect.invalid>"
    assert message["Subject"] == f"[HIGH] {alert.title}"
    assert message["From"] == "detect@example.com"
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "ana1@example.com" in text and "1. Ask the admin why." in text
    assert "Reference: https://example.com/rb" in text
    assert '<a href="https://example.com/rb">' in html


def test_hostile_values_are_escaped_in_html_and_headers(db, clock, smtp_server, certificate):
    box, port = smtp_server()
    save_alerts(db, [hostile_alert(1, title="Evil\r\nBcc: victim@example.com <b>x</b> Zoë 😀")])
    assert run(db, clock, {"mail": mail(port, certificate)}).sent == 1
    (message,) = box.messages
    assert message["Bcc"] is None
    assert "\n" not in message["Subject"] and "Zoë 😀" in message["Subject"]
    html = message.get_body(("html",)).get_content()
    for raw in ("<!channel>", "<b>bold", "<a href='http", "<img", "<script>", "<at>"):
        assert raw not in html
    assert "&lt;!channel&gt;" in html and "&lt;a href=&#x27;http" in html
    text = message.get_body(("plain",)).get_content()
    assert "Zoë 😀 名前" in text and LONG not in text


def test_4xx_is_retried_under_the_same_message_id_5xx_is_a_dead_letter(
    db, clock, smtp_server, certificate
):
    box, port = smtp_server()
    box.script = ["451 4.3.0 Try again later", "452 4.3.1 Insufficient storage"]
    save_alerts(db, [make_alert(1)])
    report = run(db, clock, {"mail": mail(port, certificate)})
    assert report.sent == 1 and report.retried == 2 and len(box.messages) == 1
    box.script = ["554 5.7.1 Message rejected as spam"]
    save_alerts(db, [make_alert(2)])
    report = run(db, clock, {"mail": mail(port, certificate)})
    assert report.dead == 1
    assert deliveries(db)[-1][3:] == ("dead", "SMTP 554: 5.7.1 Message rejected as spam")


def test_bad_password_is_a_dead_letter_that_never_shows_it(db, clock, smtp_server, certificate):
    _box, port = smtp_server()
    config = mail(port, certificate)
    config.smtp.password = type(config.smtp.password)("wrong-" + PASSWORD)
    save_alerts(db, [make_alert(1)])
    assert run(db, clock, {"mail": config}).dead == 1
    reason = deliveries(db)[0][4]
    assert reason.startswith("SMTP 535") and PASSWORD not in reason


def test_a_server_without_starttls_is_never_used_in_clear(db, clock, smtp_server, certificate):
    box, port = smtp_server("none", auth=False)
    save_alerts(db, [make_alert(1)])
    assert run(db, clock, {"mail": mail(port, certificate, auth=False)}).dead == 1
    assert "STARTTLS" in deliveries(db)[0][4] and not box.messages


def test_closing_summary_threads_under_the_first_and_digests_are_one_message(
    db, clock, smtp_server, certificate
):
    box, port = smtp_server()
    alert = make_alert(1)
    save_alerts(db, [alert])
    config = mail(port, certificate, summary_on_close=True)
    run(db, clock, {"mail": config})
    grow(db, alert, 4, watermark="2026-05-07T12:00:00.000000Z")
    run(db, clock, {"mail": config})
    first, final = box.messages
    assert final["In-Reply-To"] == first["Message-ID"]
    assert final["Message-ID"] == f"<{alert.alert_id}_mail_closed@detect.invalid>"
    lows = [make_alert(i, severity="low") for i in range(10, 40)]
    save_alerts(db, lows)
    digest = mail(port, certificate, digest={"below": "medium", "every": "1h"})
    from engine.delivery.dispatcher import Dispatcher

    with Dispatcher(db, {"mail": digest}, clock=clock, sleep=clock.sleep) as d:
        d.dispatch_pending(flush_digests=True)
    message = box.messages[-1]
    assert len(box.messages) == 3 and "Digest: 30 alerts below MEDIUM" in message["Subject"]
    assert message["Message-ID"].endswith("_mail_digest@detect.invalid>")
    text = message.get_body(("plain",)).get_content()
    assert all(a.alert_id in text for a in lows)


def test_plain_smtp_is_refused_off_loopback():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="in clear"):
        destination(
            "email",
            smtp={"host": "mail.example.com", "security": "none", "from": "a@b.c", "to": ["d@e.f"]},
        )
    config = destination(
        "email", smtp={"host": "mail.example.com", "from": "a@b.c", "to": ["d@e.f"]}
    )
    assert config.smtp.port == 587
