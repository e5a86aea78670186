"""Sending a prepared email over SMTP (plain, STARTTLS or implicit TLS), with bounded retries.

Settings come from the environment (`SmtpSettings.from_env`) or from an Airflow connection that
the DAG layer turns into a plain dict (`SmtpSettings.from_connection`); this module never
imports Airflow. Error texts carry the SMTP status code and exception type only, never an
address or message content.
"""

from __future__ import annotations

import smtplib
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from pipelines.errors import AllianceWatchError
from pipelines.settings import smtp_values

ENV_PREFIX = "ALLIANCE_WATCH_SMTP_"
_TRUE = {"1", "true", "yes", "on"}


DEFAULT_SENDER = "alliance-watch@localhost"  # when no sender is configured


class SmtpConfigError(AllianceWatchError):
    """The SMTP settings are incomplete or malformed."""


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 587
    sender: str = DEFAULT_SENDER
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = True
    ssl: bool = False  # implicit TLS (port 465)
    timeout_s: float = 30.0
    cafile: str | None = None  # a private CA for an internal relay; None = system CAs
    attempts: int = 3  # per message, per run
    backoff_s: float = 2.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SmtpSettings | None:
        """Settings from ALLIANCE_WATCH_SMTP_HOST/PORT/USER/PASSWORD/STARTTLS/SSL/FROM/CAFILE, or
        None when no host is set (then digests are only written to the outbox)."""
        env = {ENV_PREFIX + k: v for k, v in smtp_values(environ).items()}
        host = env.get(ENV_PREFIX + "HOST", "").strip()
        if not host:
            return None
        port_text = env.get(ENV_PREFIX + "PORT", "587").strip()
        if not port_text.isdigit():
            raise SmtpConfigError(f"{ENV_PREFIX}PORT must be a port number, e.g. 587")
        use_ssl = env.get(ENV_PREFIX + "SSL", "false").strip().lower() in _TRUE
        return cls(
            host=host,
            port=int(port_text),
            sender=env.get(ENV_PREFIX + "FROM", DEFAULT_SENDER).strip(),
            user=env.get(ENV_PREFIX + "USER") or None,
            password=env.get(ENV_PREFIX + "PASSWORD") or None,
            starttls=(not use_ssl)
            and env.get(ENV_PREFIX + "STARTTLS", "true").strip().lower() in _TRUE,
            ssl=use_ssl,
            cafile=env.get(ENV_PREFIX + "CAFILE") or None,
        )

    @classmethod
    def from_connection(cls, conn: Mapping[str, Any]) -> SmtpSettings:
        """Settings from an Airflow connection given as a dict (host, port, login, password,
        extra: {from_email, disable_tls, disable_ssl, timeout}), as the SMTP provider names them."""
        host = str(conn.get("host") or "").strip()
        if not host:
            raise SmtpConfigError("the SMTP connection has no host")
        extra = conn.get("extra") or {}
        if isinstance(extra, str):
            import json

            extra = json.loads(extra) if extra.strip() else {}
        disable_tls = str(extra.get("disable_tls", False)).lower() in _TRUE
        # as the Airflow SMTP provider: implicit TLS unless disable_ssl
        use_ssl = str(extra.get("disable_ssl", False)).lower() not in _TRUE
        return cls(
            host=host,
            port=int(conn.get("port") or (465 if use_ssl else 587)),
            sender=str(extra.get("from_email") or DEFAULT_SENDER),
            user=conn.get("login") or None,
            password=conn.get("password") or None,
            starttls=not disable_tls and not use_ssl,
            ssl=use_ssl,
            timeout_s=float(extra.get("timeout", 30)),
        )


def smtp_settings_from_env(environ: Mapping[str, str] | None = None) -> SmtpSettings | None:
    """`SmtpSettings.from_env`, as a function for callers that want one (pipelines.jobs)."""
    return SmtpSettings.from_env(environ)


@dataclass(frozen=True)
class SendResult:
    ok: bool
    attempts: int
    error: str | None = None


def describe_error(exc: BaseException) -> str:
    """A short description of a send failure without addresses or content."""
    code = getattr(exc, "smtp_code", None)
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = sorted({c for c, _ in exc.recipients.values()})
        return f"SMTPRecipientsRefused {','.join(str(c) for c in codes)}"
    return f"{type(exc).__name__}{f' {code}' if code else ''}"


def _send_once(settings: SmtpSettings, msg: EmailMessage, recipients: list[str]) -> None:
    context = ssl.create_default_context(cafile=settings.cafile)
    smtp: smtplib.SMTP
    if settings.ssl:
        smtp = smtplib.SMTP_SSL(
            settings.host, settings.port, timeout=settings.timeout_s, context=context
        )
    else:
        smtp = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout_s)
    with smtp:
        smtp.ehlo()
        if settings.starttls:
            smtp.starttls(context=context)
            smtp.ehlo()
        if settings.user:
            smtp.login(settings.user, settings.password or "")
        smtp.send_message(msg, from_addr=settings.sender, to_addrs=recipients)


def send(settings: SmtpSettings, msg: EmailMessage, recipients: list[str]) -> SendResult:
    """Send one message, trying up to `settings.attempts` times on transient failures.

    A permanent refusal (5xx) is not retried. Never raises for SMTP or network errors: the
    result says what happened, for the delivery ledger.
    """
    error: str | None = None
    for attempt in range(1, settings.attempts + 1):
        try:
            _send_once(settings, msg, recipients)
            return SendResult(ok=True, attempts=attempt)
        except (smtplib.SMTPException, OSError) as exc:
            error = describe_error(exc)
            code = getattr(exc, "smtp_code", 0) or 0
            permanent = 500 <= int(code) < 600 or isinstance(exc, smtplib.SMTPRecipientsRefused)
            if permanent or attempt == settings.attempts:
                return SendResult(ok=False, attempts=attempt, error=error)
            time.sleep(settings.backoff_s * attempt)
    return SendResult(ok=False, attempts=settings.attempts, error=error)
