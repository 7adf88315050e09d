"""Delivering the outbox over SMTP (smtplib): `SMTP_URL` says where and how.

    smtp://[user:password@]host[:25]            plain (a relay on localhost)
    smtp+starttls://user:password@host[:587]    STARTTLS, then authenticate
    smtps://user:password@host[:465]            TLS from the first byte

`MAIL_FROM` is the sender (default `no-reply@<BASE_URL's host>`); `SMTP_CA_FILE` names a private CA
to trust besides the system's. A mail is claimed, sent outside any transaction (SMTP can be
slow), then marked sent or failed in a transaction of its own: a failure stays in the outbox and
is retried by `identity mail retry` and by the next delivery (then as the service's act, whoever's
request it rode on). Without SMTP_URL the outbox is the delivery: admins list it. Nothing here logs
a mail's body or link.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Protocol
from urllib.parse import urlsplit

from audit import Actor, clock
from audit.actor import system_actor
from identity import config, outbox
from identity.db import Database
from identity.models import OutboxMail

log = logging.getLogger("identity.mail")
TIMEOUT_SECONDS = 10.0


class Transport(Protocol):
    def send(self, message: EmailMessage) -> None: ...


@dataclass(frozen=True)
class SmtpTransport:
    """Send with smtplib as SMTP_URL says."""

    scheme: str
    host: str
    port: int
    user: str | None
    password: str | None = field(repr=False)
    sender: str
    ca_file: str | None = None

    @classmethod
    def from_url(cls, url: str, sender: str, ca_file: str | None = None) -> SmtpTransport:
        server = config.smtp_server(url)  # ValueError naming SMTP_URL when it is malformed
        return cls(server.scheme, server.host, server.port, server.user, server.password, sender, ca_file)

    def _tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)

    def send(self, message: EmailMessage) -> None:
        message["From"] = self.sender
        client: smtplib.SMTP
        if self.scheme == "smtps":
            client = smtplib.SMTP_SSL(self.host, self.port, timeout=TIMEOUT_SECONDS, context=self._tls())
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=TIMEOUT_SECONDS)
        with client:
            if self.scheme == "smtp+starttls":
                client.starttls(context=self._tls())
            if self.user:
                client.login(self.user, self.password or "")
            client.send_message(message)


def transport(url: str | None, sender: str, ca_file: str | None = None) -> Transport | None:
    """Return the transport of SMTP_URL, or None when mail is kept in the outbox only."""
    return SmtpTransport.from_url(url, sender, ca_file) if url else None


def configured(settings: Mapping[str, Any], base_url: str) -> Transport | None:
    """Return the transport that settings (Flask config or the environment) name, or None."""
    host = urlsplit(base_url).hostname or "localhost"
    return transport(settings.get("SMTP_URL") or None, settings.get("MAIL_FROM") or f"no-reply@{host}",
                     settings.get("SMTP_CA_FILE") or None)


def message_of(mail: OutboxMail) -> EmailMessage:
    message = EmailMessage()
    message["To"] = mail.recipient
    message["Subject"] = mail.subject
    message["Message-ID"] = f"<{mail.id}@identity>"
    message.set_content(mail.body)
    return message


@dataclass
class Report:
    sent: int = 0
    failed: int = 0
    expired: int = 0


def deliver(db: Database, sender: Transport | None, actor: Actor, *, ids: list[str] | None = None,
            org_id: str | None = None, limit: int = 20) -> Report:
    """Deliver `ids` first, then the oldest other undelivered mails (up to `limit`); report what happened.

    `ids` are the caller's own mails, recorded as `actor`'s. The backlog may be any org's, so it is
    recorded as the service's act (a system actor carrying the request id), never as the caller's:
    one org's key or member must not appear in another org's audit log (DESIGN.md 6).
    """
    report = Report()
    if sender is None:
        return report
    with db.reading() as session:
        backlog = outbox.undelivered_ids(session, org_id=org_id, limit=limit)
    own = list(dict.fromkeys(ids or []))
    service = actor if actor.type == "system" else system_actor("mail backlog", request_id=actor.request_id)
    for mail_id in own:
        _deliver_one(db, sender, actor, mail_id, report)
    for mail_id in dict.fromkeys(backlog):
        if mail_id not in own:
            _deliver_one(db, sender, service, mail_id, report)
    return report


def _deliver_one(db: Database, sender: Transport, actor: Actor, mail_id: str, report: Report) -> None:
    with db.transaction() as session:
        mail = outbox.claim(session, mail_id)
        if mail is None:
            return
        if mail.expires_at <= clock.now():
            outbox.record_expired(session, actor, mail_id)
            report.expired += 1
            return
        try:
            message = message_of(mail)
        except ValueError as error:  # a header the email package refuses (a line break in it): never sendable
            outbox.record_failure(session, actor, mail_id, f"ValueError: {error}")
            report.failed += 1
            return
    try:
        sender.send(message)
    except (OSError, smtplib.SMTPException) as error:  # refused, unreachable, TLS, authentication
        reason = f"{type(error).__name__}: {error}"[:300]
        log.warning("mail delivery failed", extra={"mail_id": mail_id, "error": type(error).__name__})
        with db.transaction() as session:
            outbox.record_failure(session, actor, mail_id, reason)
        report.failed += 1
        return
    with db.transaction() as session:
        outbox.record_sent(session, actor, mail_id)
    report.sent += 1
