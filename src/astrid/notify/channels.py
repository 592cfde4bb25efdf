"""The two channels: email over SMTP (stdlib ``smtplib``; SendGrid through its SMTP relay)
and webhooks (an HTTP POST of JSON, as Slack incoming webhooks and others accept).

Each send either returns a short description of the server's answer or raises
:class:`DeliveryError` with a one-line reason; the dispatcher logs both and retries.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import httpx

from astrid.errors import AstridError
from astrid.settings import Settings

__all__ = ["DeliveryError", "SmtpConfig", "post_webhook", "send_email"]


class DeliveryError(AstridError):
    """A notification could not be delivered this time (the server is down or refused)."""


@dataclass(frozen=True)
class SmtpConfig:
    """Where and how to send email."""

    host: str | None
    port: int = 587
    user: str | None = None
    password: str | None = None
    sender: str = "AstrID <astrid@localhost>"
    tls: str = "starttls"
    timeout_s: float = 10.0

    @classmethod
    def from_settings(cls, s: Settings) -> SmtpConfig:
        return cls(
            host=s.smtp_host,
            port=s.smtp_port,
            user=s.smtp_user,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            sender=s.smtp_from,
            tls=s.smtp_tls,
            timeout_s=s.smtp_timeout_s,
        )


def send_email(config: SmtpConfig, message: EmailMessage) -> str:
    """Send ``message`` through the configured SMTP server; returns the server's reply."""
    if not config.host:
        raise DeliveryError("no SMTP server configured (set ASTRID_SMTP_HOST)")
    try:
        smtp: smtplib.SMTP
        if config.tls == "ssl":
            smtp = smtplib.SMTP_SSL(
                config.host,
                config.port,
                timeout=config.timeout_s,
                context=ssl.create_default_context(),
            )
        else:
            smtp = smtplib.SMTP(config.host, config.port, timeout=config.timeout_s)
        with smtp:
            smtp.ehlo()
            if config.tls == "starttls":
                if not smtp.has_extn("starttls"):
                    raise DeliveryError(
                        f"SMTP server {config.host}:{config.port} does not offer STARTTLS "
                        "(set ASTRID_SMTP_TLS=off only on a trusted network)"
                    )
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if config.user:
                smtp.login(config.user, config.password or "")
            refused = smtp.send_message(message)
            if refused:
                raise DeliveryError(f"SMTP server refused recipients: {sorted(refused)}")
            code, reply = smtp.noop()
            return f"{code} {reply.decode(errors='replace')[:200]}"
    except DeliveryError:
        raise
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(
            f"SMTP {config.host}:{config.port}: {type(exc).__name__}: {exc}"[:500]
        ) from exc


def post_webhook(url: str, payload: dict[str, Any], timeout_s: float = 10.0) -> str:
    """POST ``payload`` as JSON to ``url``; a non-2xx answer is a :class:`DeliveryError`."""
    try:
        response = httpx.post(url, json=payload, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"webhook {url}: {type(exc).__name__}: {exc}"[:500]) from exc
    if not 200 <= response.status_code < 300:
        raise DeliveryError(f"webhook {url} answered {response.status_code}: {response.text[:200]}")
    return f"HTTP {response.status_code}"
