"""What a notification says: the email (plain text + HTML with the triplet PNG inline) and
the webhook JSON (Slack-compatible ``text`` + ``blocks``, plus the raw ``astrid`` facts).

Everything user-written (comments, names) is escaped in HTML: nothing in a message is markup
that came from a person.
"""

from __future__ import annotations

import hashlib
import hmac
import html
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

__all__ = [
    "describe",
    "render_email",
    "render_webhook",
    "sign_unsubscribe",
    "subject_for",
    "verify_unsubscribe",
]

_FIELDS = (
    ("detection_id", "Detection"),
    ("object_id", "Object"),
    ("classification", "Classification"),
    ("score", "Score P(real)"),
    ("snr", "S/N"),
    ("mag", "Magnitude"),
    ("ra", "RA (deg)"),
    ("dec", "Dec (deg)"),
    ("status", "Status"),
    ("text", "Comment"),
)


def _fmt(key: str, value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6f}" if key in ("ra", "dec") else f"{value:.3g}"
    return str(value)


def subject_for(context: dict[str, Any]) -> str:
    """One-line subject of a single-event notification."""
    kind = context.get("kind", "event")
    if kind == "detection":
        score = context.get("score")
        what = f"score {score:.2f}" if isinstance(score, float) else "new detection"
        return f"[AstrID] Detection {context.get('detection_id')}: {what}"
    if kind == "new_object":
        return f"[AstrID] New object {context.get('object_id')}"
    if kind == "classification":
        det, cls = context.get("detection_id"), context.get("classification")
        return f"[AstrID] Detection {det} classified {cls}"
    if kind == "discovery":
        return f"[AstrID] Discovery {context.get('object_id')}: {context.get('status')}"
    if kind == "mention":
        return "[AstrID] You were mentioned in a comment"
    if kind == "digest":
        return f"[AstrID] Daily digest: {len(context.get('items', []))} notifications"
    return f"[AstrID] {kind}"


def describe(context: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) lines of one event's context, in a fixed order."""
    return [
        (label, _fmt(key, context[key])) for key, label in _FIELDS if context.get(key) is not None
    ]


def _plain(context: dict[str, Any], unsubscribe_url: str) -> str:
    lines = [subject_for(context), ""]
    items = context.get("items") if context.get("kind") == "digest" else [context]
    for item in items or []:
        if context.get("kind") == "digest":
            lines.append(f"* {subject_for(item)}")
        lines += [f"  {label}: {value}" for label, value in describe(item)]
        if item.get("url"):
            lines.append(f"  {item['url']}")
        lines.append("")
    lines.append(f"Unsubscribe: {unsubscribe_url}")
    return "\n".join(lines)


def _html(context: dict[str, Any], unsubscribe_url: str, image_cid: str | None) -> str:
    e = html.escape
    parts = [f"<html><body><h2>{e(subject_for(context))}</h2>"]
    items = context.get("items") if context.get("kind") == "digest" else [context]
    for item in items or []:
        if context.get("kind") == "digest":
            parts.append(f"<h3>{e(subject_for(item))}</h3>")
        rows = "".join(
            f"<tr><th align='left'>{e(label)}</th><td>{e(value)}</td></tr>"
            for label, value in describe(item)
        )
        parts.append(f"<table>{rows}</table>")
        if item.get("url"):
            parts.append(f'<p><a href="{e(item["url"])}">{e(item["url"])}</a></p>')
    if image_cid:
        parts.append(
            f'<p><img src="cid:{e(image_cid[1:-1])}" alt="new | reference | difference"></p>'
        )
    parts.append(
        f'<p style="font-size:small"><a href="{e(unsubscribe_url)}">Unsubscribe</a></p>'
        "</body></html>"
    )
    return "".join(parts)


def render_email(
    context: dict[str, Any],
    *,
    sender: str,
    to: str,
    unsubscribe_url: str,
    png: bytes | None = None,
) -> EmailMessage:
    """A multipart email: plain text, HTML alternative with the triplet ``png`` inline."""
    msg = EmailMessage()
    msg["Subject"] = subject_for(context)
    msg["From"] = sender
    msg["To"] = to
    msg["List-Unsubscribe"] = f"<{unsubscribe_url}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(_plain(context, unsubscribe_url))
    cid = make_msgid(domain="astrid") if png else None
    msg.add_alternative(_html(context, unsubscribe_url, cid), subtype="html")
    if png and cid:
        html_part = msg.get_payload()[1]  # type: ignore[index]
        assert isinstance(html_part, EmailMessage)
        html_part.add_related(png, maintype="image", subtype="png", cid=cid, filename="triplet.png")
    return msg


def render_webhook(context: dict[str, Any], unsubscribe_url: str) -> dict[str, Any]:
    """JSON for a webhook: Slack's ``text`` and ``blocks`` plus the raw context as ``astrid``."""
    subject = subject_for(context)
    items = context.get("items") if context.get("kind") == "digest" else [context]
    lines = []
    for item in items or []:
        facts = ", ".join(f"{label}: {value}" for label, value in describe(item))
        link = f" <{item['url']}|open>" if item.get("url") else ""
        lines.append(f"• {subject_for(item)} — {facts}{link}")
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{subject}*"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:2900]}},
    ]
    if context.get("image_url"):
        blocks.append({"type": "image", "image_url": context["image_url"], "alt_text": "triplet"})
    return {
        "text": subject,
        "blocks": blocks,
        "astrid": {**context, "unsubscribe_url": unsubscribe_url},
    }


def _mac(secret: str, rule_id: int) -> str:
    msg = f"astrid-unsubscribe:{rule_id}".encode()
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()[:32]


def sign_unsubscribe(secret: str, rule_id: int) -> str:
    """An unguessable token that unsubscribes rule ``rule_id`` (HMAC-SHA256 of the id)."""
    return f"{rule_id}.{_mac(secret, rule_id)}"


def verify_unsubscribe(secret: str, token: str) -> int | None:
    """The rule id of a valid token, else None."""
    rule, _, mac = token.partition(".")
    if not rule.isdigit() or len(rule) > 12:
        return None
    return int(rule) if hmac.compare_digest(mac, _mac(secret, int(rule))) else None
