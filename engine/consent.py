"""Klaviyo calling back about consent: what an unsubscribe webhook says, and whether to believe it.

Two ways Klaviyo can call ``POST /webhooks/klaviyo/{retailer}``:

- a system webhook (topics ``event:klaviyo.unsubscribed_from_email_marketing`` and
  ``event:klaviyo.manually_suppressed_from_email_marketing``). ``Klaviyo-Signature`` is the hex HMAC-SHA256,
  keyed by the webhook's secret, of the raw body followed by the ``Klaviyo-Timestamp`` header; the timestamp
  (ISO 8601 or HTTP-date) must be within 5 minutes of now, and ``meta.klaviyo_webhook_id`` must equal the
  ``Klaviyo-Webhook-Id`` header. Each of up to 1,000 ``data[]`` entries is one unsubscribe, named by its
  ``external_id``; its ``payload`` is a Get Event response whose profile is only a relationship id.
- a flow webhook action ("Unsubscribed from Email Marketing" trigger) with ``X-Action: customer/unsubscribe``,
  the shared secret in ``X-Webhook-Secret``, and the JSON body ``{"email": "...", "storis_customer_id": "..."}``
  (``storis_customer_id`` optional: the profile's external id when Klaviyo knows it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

from engine.profile import normalize_email
from engine.store import NewUnsubscribe

TOPICS = frozenset({"event:klaviyo.unsubscribed_from_email_marketing",
                    "event:klaviyo.manually_suppressed_from_email_marketing"})
MAX_ENTRIES = 1000
TOLERANCE_SECONDS = 300
FLOW_ACTION = "customer/unsubscribe"


class Refused(Exception):
    """A request to refuse: ``status`` 401 (not from Klaviyo) or 400 (not understood)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


def is_system_webhook(headers: Mapping[str, str]) -> bool:
    return "klaviyo-signature" in {name.lower() for name in headers}


def verify_system(body: bytes, headers: Mapping[str, str], secret: str | None, *, now: float) -> list[NewUnsubscribe]:
    """The unsubscribes of a genuine system webhook; Refused for anything forged, stale or malformed."""
    signature = headers.get("klaviyo-signature", "")
    timestamp = headers.get("klaviyo-timestamp", "")
    if not secret or not timestamp:
        raise Refused(401, "unauthorized", "missing Klaviyo-Timestamp, or no signing secret configured")
    expected = hmac.new(secret.encode(), body + timestamp.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(signature.strip().lower().encode(), expected.encode()):
        raise Refused(401, "bad_signature", "Klaviyo-Signature does not match the body and timestamp")
    moment = parse_timestamp(timestamp)
    if moment is None or abs(now - moment) > TOLERANCE_SECONDS:
        raise Refused(401, "stale_timestamp", "Klaviyo-Timestamp is missing, unreadable or more than 5 minutes off")
    document = _json(body)
    meta = document.get("meta") if isinstance(document, dict) else None
    webhook_id = meta.get("klaviyo_webhook_id") if isinstance(meta, dict) else None
    if not webhook_id or not hmac.compare_digest(str(webhook_id).encode(),
                                                 headers.get("klaviyo-webhook-id", "").encode()):
        raise Refused(401, "webhook_id_mismatch", "meta.klaviyo_webhook_id does not match Klaviyo-Webhook-Id")
    entries = document.get("data")
    if not isinstance(entries, list) or len(entries) > MAX_ENTRIES:
        raise Refused(400, "invalid_payload", f"data must be a list of at most {MAX_ENTRIES} entries")
    out = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or entry.get("topic") not in TOPICS:
            continue
        key = entry.get("external_id")
        profile_id = _dig(entry, "payload", "data", "relationships", "profile", "data", "id")
        if not key or not profile_id:
            raise Refused(400, "invalid_payload", f"data[{i}] needs external_id and a profile relationship")
        out.append(NewUnsubscribe(key=f"system:{key}", email=None, profile_id=str(profile_id), customer_id=None))
    return out


def verify_flow(body: bytes, headers: Mapping[str, str], secret: str | None) -> list[NewUnsubscribe]:
    """The unsubscribe a flow webhook action reports; Refused unless its secret and action are right."""
    presented = headers.get("x-webhook-secret", "")
    if not secret or not hmac.compare_digest(presented.encode(), secret.encode()):
        raise Refused(401, "unauthorized", "missing or wrong X-Webhook-Secret")
    if headers.get("x-action", "").strip().lower() != FLOW_ACTION:
        raise Refused(400, "unknown_action", f"X-Action must be {FLOW_ACTION}")
    document = _json(body)
    email = normalize_email(document.get("email")) if isinstance(document, dict) else None
    customer = document.get("storis_customer_id") if isinstance(document, dict) else None
    if email is None and not customer:
        raise Refused(400, "invalid_payload", "the body needs an email or a storis_customer_id")
    # A flow fires once per unsubscribe; the body identifies it, so a retried delivery is the same key.
    key = "flow:" + hashlib.sha256(body).hexdigest()
    return [NewUnsubscribe(key=key, email=email, profile_id=None, customer_id=str(customer) if customer else None)]


def parse_timestamp(text: str) -> float | None:
    """Klaviyo-Timestamp as epoch seconds: ISO 8601 (``2026-12-04T10:00:00Z``), HTTP-date, or epoch."""
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Refused(400, "malformed_json", f"body is not JSON: {exc}") from exc


def _dig(value: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value
