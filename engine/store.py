"""The durable store: what every backend offers (the ``Store`` protocol) and the values it hands out.

Three queues live in a store, each row moving through fixed statuses:

    webhook   accepted | ignored | test            (as received; never changes)
    job       pending -> leased -> done | pending (retry) | dead -> replayed (a replay superseded it)
    event     pending -> leased -> delivered | pending (retry) | dead     or dry-run (never claimed)

A job fetches and maps one STORIS entity of an accepted webhook; its events are then delivered to Klaviyo.
Claiming leases a row: it is ``leased`` until the worker completes or fails it, or until the lease runs out,
when it is claimable again (the worker crashed). Every claim counts as an attempt, so ``attempts`` on a
claimed row is the number of the attempt now running (1 for the first): pass it straight to
``RetryPolicy.retry_at``.

An event is unique per (retailer, metric, unique_id). Storing it again changes nothing, unless the stored
one is dead: then the new body replaces it and it is delivered afresh (a replay after a mapping fix).

Times are float epoch seconds passed in by the caller; a store never reads the clock. Methods are
synchronous and short; the asyncio server runs them on one thread of their own (engine/store_thread.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from engine.errors import EngineError
from engine.event_json import EventJson

WEBHOOK_STATUSES = ("accepted", "ignored", "test")
JOB_STATUSES = ("pending", "leased", "done", "dead", "replayed")
EVENT_STATUSES = ("pending", "leased", "delivered", "dead", "dry-run")
SOURCES = ("storis", "klaviyo")
ATTEMPT_BODY_LIMIT = 10 * 1024
"""Response bodies kept per delivery attempt are cut to this many bytes of UTF-8."""


class StoreError(EngineError):
    """The store could not be read or written (disk full, read-only file, locked too long)."""


@dataclass(frozen=True)
class IncomingWebhook:
    """A webhook to store; ``status`` is "accepted" (one job per entity), "ignored" or "test" (no jobs)."""

    retailer: str
    source: str
    event_type: str
    body: bytes
    entity_ids: tuple[str, ...]
    status: str


@dataclass(frozen=True)
class NewUnsubscribe:
    """Someone Klaviyo reports unsubscribed; ``key`` names the report so a repeat is skipped."""

    key: str
    email: str | None
    profile_id: str | None
    customer_id: str | None


@dataclass(frozen=True)
class UnsubscribeTask:
    """A claimed unsubscribe: find the STORIS customer and mark them not OK to solicit."""

    id: int
    retailer: str
    key: str
    email: str | None
    profile_id: str | None
    customer_id: str | None
    attempts: int


@dataclass(frozen=True)
class SubscriptionTask:
    """A claimed purchase subscription to a Klaviyo list."""

    id: int
    retailer: str
    list_id: str
    email: str
    phone_number: str | None
    customer_id: str | None
    attempts: int


@dataclass(frozen=True)
class WebhookReceipt:
    id: int
    duplicate: bool
    """True when the same webhook (retailer, source, type and body) was already stored; nothing was added."""


@dataclass(frozen=True)
class Webhook:
    id: int
    retailer: str
    source: str
    event_type: str
    entity_ids: tuple[str, ...]
    status: str
    received_at: float


@dataclass(frozen=True)
class Job:
    """Fetch one STORIS entity and map it into events."""

    id: int
    webhook_id: int
    retailer: str
    event_type: str
    entity_id: str
    attempts: int
    status: str


@dataclass(frozen=True)
class NewEvent:
    """An event a job produced; ``body`` is a Klaviyo Create Event request body."""

    retailer: str
    metric: str
    unique_id: str
    body: dict[str, Any]
    dry_run: bool = False


@dataclass(frozen=True)
class NewSkip:
    """An event a job did not produce, and why; kept for the record."""

    metric: str
    unique_id: str | None
    reason: str


@dataclass(frozen=True)
class EventRow:
    """A claimed event, ready to send."""

    id: int
    retailer: str
    metric: str
    unique_id: str
    event: EventJson
    attempts: int
    """The number of this attempt: 1 on the first claim."""
    created_at: float


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt: ``status`` is None when no HTTP answer came back."""

    event_id: int
    at: float
    status: int | None
    body: str


@dataclass(frozen=True)
class EventView:
    """An event with where it came from and how its delivery went, for the CLI."""

    id: int
    retailer: str
    metric: str
    unique_id: str
    status: str
    attempts: int
    webhook_id: int | None
    event_type: str | None
    entity_id: str | None
    last_status: int | None
    last_error: str | None
    created_at: float
    updated_at: float
    next_attempt_at: float | None
    delivered_at: float | None


@dataclass(frozen=True)
class DeadLetter:
    """A dead job (``metric`` None), event, unsubscribe or list subscription; ``dead_at`` is when it was given up."""

    kind: Literal["job", "event", "unsubscribe", "subscription"]
    id: int
    retailer: str
    webhook_id: int | None
    entity_id: str | None
    metric: str | None
    error: str | None
    dead_at: float


class Store(Protocol):
    """What the server, the workers and the CLI need from a store. Unknown ids raise KeyError."""

    def record_webhook(self, *, retailer: str, source: str, event_type: str, body: bytes,
                       entity_ids: list[str], status: str, now: float) -> WebhookReceipt:
        """Store a webhook (and, if accepted, one pending job per distinct entity id) durably, in one commit.

        A re-delivery (same retailer, source, type and body) adds nothing and returns the first one's id.
        """

    def record_webhooks(self, webhooks: list[IncomingWebhook], *, now: float) -> list[WebhookReceipt]:
        """``record_webhook`` for several webhooks in ONE durable commit (group commit under load)."""

    def requeue_webhook(self, webhook_id: int, *, now: float) -> list[Job]:
        """Fresh pending jobs for a stored webhook's entities (replay); its dead jobs become "replayed"."""

    def claim_jobs(self, *, limit: int, now: float, lease_seconds: float) -> list[Job]:
        """Lease up to ``limit`` due jobs until ``now + lease_seconds``."""

    def complete_job(self, job_id: int, *, events: list[NewEvent], skipped: list[NewSkip], now: float) -> None:
        """Store the job's events and skips and mark it done, all or nothing."""

    def fail_job(self, job_id: int, *, error: str, retry_at: float | None, now: float) -> None:
        """Retry the job at ``retry_at``, or dead-letter it when that is None."""

    def claim_events(self, *, limit: int, now: float, lease_seconds: float,
                     retailer: str | None = None) -> list[EventRow]:
        """Lease up to ``limit`` due events, oldest first, until ``now + lease_seconds``."""

    def mark_delivered(self, ids: list[int], *, now: float, status: int) -> None:
        """Record a successful attempt (HTTP ``status``) for each event."""

    def record_failure(self, ids: list[int], *, now: float, status: int | None, body: str,
                       retry_at: float | None) -> None:
        """Record a failed attempt for each event; retry at ``retry_at``, or dead-letter when that is None."""

    def attempts(self, event_id: int) -> list[Attempt]:
        """The event's delivery attempts, oldest first (an empty list for an unknown id)."""

    def list_events(self, *, retailer: str | None = None, status: str | None = None,
                    entity_id: str | None = None, limit: int = 200) -> list[EventView]:
        """Newest first."""

    def list_webhooks(self, *, retailer: str | None = None, since: float | None = None,
                      until: float | None = None, event_type: str | None = None,
                      status: str | None = None) -> list[Webhook]:
        """Oldest first, ``since <= received_at < until``; status "dead": a dead job or a dead event."""

    def counts(self) -> dict[str, dict[str, int]]:
        """``{"webhooks": {status: n}, "jobs": {...}, "events": {...}}`` with every known status present."""

    def dead_letters_older_than(self, seconds: float, *, now: float) -> list[DeadLetter]:
        """Jobs and events given up at least ``seconds`` before ``now``, oldest first."""

    def is_writable(self) -> bool:
        """Whether a write would succeed now (for /readyz); never raises."""

    def record_unsubscribes(self, *, retailer: str, event_type: str, body: bytes,
                            unsubscribes: list[NewUnsubscribe], now: float) -> tuple[WebhookReceipt, int]:
        """Store a Klaviyo webhook and its unsubscribes durably, in one commit; (receipt, how many were new).
        An unsubscribe whose key was stored before is skipped."""

    def claim_unsubscribes(self, *, limit: int, now: float, lease_seconds: float) -> list[UnsubscribeTask]:
        """Lease up to ``limit`` due unsubscribes."""

    def complete_unsubscribe(self, task_id: int, *, email: str | None, customer_id: str | None, note: str,
                             now: float) -> None:
        """Mark done and add the person to the retailer's suppression list."""

    def fail_unsubscribe(self, task_id: int, *, error: str, retry_at: float | None, now: float) -> None:
        """Schedule a retry at ``retry_at``, or dead-letter when it is None."""

    def is_suppressed(self, retailer: str, *, email: str | None, customer_id: str | None) -> bool:
        """Whether the retailer's suppression list holds this email or STORIS customer."""

    def queue_subscription(self, *, retailer: str, list_id: str, email: str, phone_number: str | None,
                           customer_id: str | None, now: float) -> bool:
        """Queue a list subscription; False when one for this list and email exists already."""

    def claim_subscriptions(self, *, limit: int, now: float, lease_seconds: float) -> list[SubscriptionTask]:
        """Lease up to ``limit`` due subscriptions."""

    def finish_subscriptions(self, ids: list[int], *, status: str, now: float) -> None:
        """``status`` "done" (Klaviyo accepted) or "suppressed" (not sent: the person may not be contacted)."""

    def fail_subscriptions(self, ids: list[int], *, status: int | None, error: str, retry_at: float | None,
                           now: float) -> None:
        """Schedule a retry at ``retry_at``, or dead-letter when it is None."""

    def requeue_dead_consent(self, retailer: str, *, now: float) -> tuple[int, int]:
        """Dead unsubscribes and subscriptions of ``retailer`` become due again; (unsubscribes, subscriptions)."""

    def consent_counts(self) -> dict[str, dict[str, int]]:
        """``{"unsubscribes": {status: n}, "subscriptions": {...}, "suppressions": {"total": n}}``."""

    def close(self) -> None:
        """Release the store; it cannot be used afterwards."""
