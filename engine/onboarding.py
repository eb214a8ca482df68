"""Onboarding a retailer's STORIS account: the webhook subscriptions its mapping needs (``engine subscribe``).

STORIS posts an event type only to the URLs subscribed to it. How subscriptions are listed and created is
the retailer's ``connections.storis.subscriptions`` (tenants differ). ``subscribe`` lists what exists and
creates only what is missing, so running it again changes nothing. Subscriptions point at the service's
webhook route, ``{url}/webhooks/storis/{retailer}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from engine import jmes
from engine.compile import Retailer, Subscriptions
from engine.connections import Connections
from engine.errors import ConfigError, DeliveryError
from engine.storis import StorisClient

WEBHOOK_ROUTE = "/webhooks/storis/{retailer}"
# STORIS's answer when the account's event publisher is off; nothing can be subscribed until support turns it on.
EVENTS_DISABLED = "events are not enabled"


@dataclass(frozen=True)
class Subscription:
    event_type: str
    url: str


@dataclass(frozen=True)
class Row:
    """One webhook type: ``state`` is missing, elsewhere (only other URLs) or exists; ``action`` what was done."""

    event_type: str
    state: str
    action: str
    others: tuple[str, ...] = ()
    error: str = ""


def webhook_url(base_url: str, retailer: str) -> str:
    """Where STORIS posts ``retailer``'s webhooks, given the service's public base URL."""
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"--url: {base_url!r} must start with http:// or https://")
    return base_url.rstrip("/") + WEBHOOK_ROUTE.format(retailer=quote(retailer, safe=""))


def expected_types(retailer: Retailer) -> list[str]:
    """The webhook types the mapping enables, which STORIS must therefore send."""
    return sorted(name for name, plan in retailer.webhooks.items() if plan.enabled)


def storis_client(conn: Connections) -> StorisClient:
    if not (conn.storis_base_url and conn.storis_client_id and conn.storis_client_secret):
        raise ConfigError(f"{conn.retailer}: STORIS base URL or credentials are not configured")
    return StorisClient(base_url=conn.storis_base_url, client_id=conn.storis_client_id,
                        client_secret=conn.storis_client_secret)


def subscription_spec(retailer: Retailer) -> Subscriptions:
    if retailer.subscriptions is None:
        raise ConfigError(f"{retailer.file}: connections.storis.subscriptions is not configured "
                          "(base.yaml has STORIS's modeled API)")
    return retailer.subscriptions


def events_disabled(exc: DeliveryError) -> bool:
    """Whether STORIS refused because the account's webhook events are off."""
    return EVENTS_DISABLED in f"{exc} {exc.body}".lower()


def events_disabled_request(retailer: Retailer, conn: Connections) -> str:
    """What to ask STORIS support for when ``events_disabled``: one clause, lower case."""
    return (f"ask STORIS support to enable webhook events (the event publisher) for the account of API client "
            f"{conn.storis_client_id!r}, for the event types {', '.join(expected_types(retailer))}")


def events_disabled_advice(retailer: Retailer, conn: Connections) -> str:
    request = events_disabled_request(retailer, conn)
    return (f"STORIS says webhook events are not enabled for this account ({conn.storis_base_url}), so no "
            f"subscription can be listed or created. {request[0].upper()}{request[1:]}; then run this again.")


async def list_subscriptions(client: StorisClient, spec: Subscriptions) -> list[Subscription]:
    method, path, body = spec.list.render()
    document = await client.request(method, path, json=body)
    try:
        items = jmes.search(spec.items, document)
        if items is None:
            return []
        if not isinstance(items, list):
            raise DeliveryError(f"STORIS {method} {path}: connections.storis.subscriptions.items does not select "
                                f"a list in the answer (got {type(items).__name__})")
        found = [(jmes.search(spec.event_type, item), jmes.search(spec.url, item)) for item in items]
    except jmes.ExpressionError as exc:
        raise DeliveryError(f"STORIS {method} {path}: connections.storis.subscriptions cannot read the answer: "
                            f"{exc}") from exc
    return [Subscription(event_type, url) for event_type, url in found
            if isinstance(event_type, str) and isinstance(url, str)]


async def subscribe(retailer: Retailer, conn: Connections, base_url: str, *, dry_run: bool) -> list[Row]:
    """Subscribe ``base_url``'s webhook route to every type the mapping enables that is not yet subscribed.

    Raises DeliveryError when the subscriptions cannot be listed (``events_disabled`` tells the commonest
    cause); a create that fails is reported in its row and the others are still tried.
    """
    spec = subscription_spec(retailer)
    target = webhook_url(base_url, retailer.name)
    async with storis_client(conn) as client:
        existing = await list_subscriptions(client, spec)
        rows = []
        for event_type in expected_types(retailer):
            urls = sorted({s.url for s in existing if s.event_type == event_type})
            if target in urls:
                rows.append(Row(event_type, "exists", "none"))
                continue
            state = "elsewhere" if urls else "missing"
            if dry_run:
                rows.append(Row(event_type, state, "would create", others=tuple(urls)))
                continue
            method, path, body = spec.create.render(event_type=event_type, url=target)
            try:
                await client.request(method, path, json=body)
            except DeliveryError as exc:
                if events_disabled(exc):
                    raise
                rows.append(Row(event_type, state, "failed", others=tuple(urls), error=str(exc)))
                continue
            rows.append(Row(event_type, state, "created", others=tuple(urls)))
    return rows


def table(rows: list[Row]) -> str:
    width = max([len("type"), *(len(row.event_type) for row in rows)]) + 2
    lines = [f"{'type':<{width}}{'state':<11}action"]
    lines += [f"{row.event_type:<{width}}{row.state:<11}{row.action}" for row in rows]
    return "\n".join(lines) + "\n"


def notes(rows: list[Row]) -> list[str]:
    """What the operator should know beyond the table: failures, and subscriptions to other URLs."""
    out = [f"{row.event_type}: {row.error}" for row in rows if row.error]
    out += [f"{row.event_type} is also subscribed at {', '.join(row.others)}; STORIS posts to every subscribed "
            "URL, so remove stale ones with STORIS" for row in rows if row.others]
    return out
