"""The worker's consent duties: Klaviyo unsubscribes reach STORIS, and purchases subscribe only who may be.

- An unsubscribe (stored by ``POST /webhooks/klaviyo/{retailer}``) is resolved to a person (a system
  webhook names only a Klaviyo profile id: its email and external id are fetched), then the STORIS customer
  is marked not OK to solicit with the retailer's configured request (by customer id when known, else found
  by email first), and the person joins the retailer's suppression list.
- A purchase that triggers ``consent.subscribe_on_purchase`` queues a list subscription only when STORIS
  says the customer is OK to solicit and the suppression list does not hold them: Klaviyo's Bulk Subscribe
  Profiles removes UNSUBSCRIBE suppressions, so sending it for someone who unsubscribed would opt them back
  in. The suppression list is checked again right before sending.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from engine import store_thread
from engine.apply import Result
from engine.compile import Retailer
from engine.connections import Connections
from engine.errors import DeliveryError
from engine.klaviyo import MAX_BULK_PROFILES, KlaviyoClient
from engine.profile import mask_email, normalize_email
from engine.retry import RetryPolicy
from engine.store import Store, SubscriptionTask, UnsubscribeTask
from engine.storis import StorisClient

log = logging.getLogger("engine.consent")
SUBSCRIBE_SCOPES = "lists:write, profiles:write, subscriptions:write"


class ConsentWork:
    def __init__(self, *, store: Store, retailers: dict[str, Retailer], connections: dict[str, Connections],
                 storis: Callable[[str], StorisClient], klaviyo: Callable[[str], KlaviyoClient],
                 retry: RetryPolicy, lease_seconds: float, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.retailers = retailers
        self.connections = connections
        self._storis = storis
        self._klaviyo = klaviyo
        self._retry = retry
        self._lease = lease_seconds
        self._clock = clock

    # -- subscribing on purchase -----------------------------------------------------------------------

    async def after_mapping(self, retailer: Retailer, record: dict, result: Result) -> None:
        """Queue the purchase subscription ``result`` calls for, if the customer may be subscribed."""
        consent = retailer.consent
        if consent is None or not consent.list_id or self.connections[retailer.name].dry_run:
            return
        trigger = next((e for e in result.events if e.key in consent.subscribe_events), None)
        if trigger is None:
            return
        profile = trigger.body["data"]["attributes"]["profile"]["data"]["attributes"]
        email, customer = profile.get("email"), profile.get("external_id")
        if not email:
            return
        who = f"{retailer.name} customer {customer or mask_email(email)}"
        if consent.ok_to_solicit is None or consent.ok_to_solicit(record) is not True:
            log.info("not subscribing %s: STORIS does not say OK to solicit", who)
            return
        if await store_thread.run(self.store.is_suppressed, retailer.name, email=email, customer_id=customer):
            log.info("not subscribing %s: unsubscribed before (suppression list)", who)
            return
        await store_thread.run(self.store.queue_subscription, retailer=retailer.name, list_id=consent.list_id,
                                email=email, phone_number=profile.get("phone_number"), customer_id=customer,
                                now=self._clock())

    async def deliver_subscriptions(self) -> int:
        tasks = await store_thread.run(self.store.claim_subscriptions, limit=MAX_BULK_PROFILES * 5,
                                        now=self._clock(), lease_seconds=self._lease)
        groups: dict[tuple[str, str], list[SubscriptionTask]] = defaultdict(list)
        for task in tasks:
            groups[task.retailer, task.list_id].append(task)
        for (retailer, list_id), group in groups.items():
            await self._subscribe(retailer, list_id, group)
        return len(tasks)

    async def _subscribe(self, retailer: str, list_id: str, tasks: list[SubscriptionTask]) -> None:
        allowed, suppressed = [], []
        for task in tasks:
            blocked = await store_thread.run(self.store.is_suppressed, retailer, email=task.email,
                                              customer_id=task.customer_id)
            (suppressed if blocked else allowed).append(task)
        if suppressed:
            await store_thread.run(self.store.finish_subscriptions, [t.id for t in suppressed], status="suppressed",
                                    now=self._clock())
        for start in range(0, len(allowed), MAX_BULK_PROFILES):
            chunk = allowed[start:start + MAX_BULK_PROFILES]
            try:
                await self._klaviyo(retailer).bulk_subscribe(list_id, [{"email": t.email} for t in chunk])
            except DeliveryError as exc:
                await self._subscription_failed(retailer, chunk, exc)
                continue
            await store_thread.run(self.store.finish_subscriptions, [t.id for t in chunk], status="done",
                                    now=self._clock())

    async def _subscription_failed(self, retailer: str, tasks: list[SubscriptionTask], exc: DeliveryError) -> None:
        retry_at = self._retry.retry_at(max(t.attempts for t in tasks), exc, now=self._clock())
        error = str(exc)
        if exc.status == 403:
            error = (f"Klaviyo refused the subscription (403): the {retailer} API key needs the scopes "
                     f"{SUBSCRIBE_SCOPES}; add them to the key, then replay. {exc}")
            log.error(error)
        elif retry_at is None:
            log.error("%s: %d subscription(s) dead-lettered: %s", retailer, len(tasks), exc)
        await store_thread.run(self.store.fail_subscriptions, [t.id for t in tasks], status=exc.status,
                                error=error, retry_at=retry_at, now=self._clock())

    # -- unsubscribes ------------------------------------------------------------------------------------

    async def process_unsubscribes(self) -> int:
        tasks = await store_thread.run(self.store.claim_unsubscribes, limit=200, now=self._clock(),
                                        lease_seconds=self._lease)
        for task in tasks:
            await self._unsubscribe(task)
        return len(tasks)

    async def _unsubscribe(self, task: UnsubscribeTask) -> None:
        try:
            email, customer, note = await self._mark_not_ok_to_solicit(task)
        except DeliveryError as exc:
            retry_at = self._retry.retry_at(task.attempts, exc, now=self._clock())
            await store_thread.run(self.store.fail_unsubscribe, task.id, error=str(exc), retry_at=retry_at,
                                    now=self._clock())
            log.warning("unsubscribe %s (%s): %s; %s", task.id, task.retailer, exc,
                        "will retry" if retry_at else "dead-lettered")
            return
        await store_thread.run(self.store.complete_unsubscribe, task.id, email=email, customer_id=customer,
                                note=note, now=self._clock())
        log.info("%s: %s unsubscribed in Klaviyo; STORIS customer %s marked not OK to solicit%s", task.retailer,
                 mask_email(email) if email else "someone", customer or "(none found)", f" ({note})" if note else "")

    async def _mark_not_ok_to_solicit(self, task: UnsubscribeTask) -> tuple[str | None, str | None, str]:
        retailer = self.retailers.get(task.retailer)
        consent = retailer.consent if retailer else None
        if consent is None:
            raise DeliveryError(f"{task.retailer}: no consent configuration (consent.unsubscribe)")
        email, customer = task.email, task.customer_id
        if task.profile_id and not (email or customer):
            profile: dict[str, Any] = await self._klaviyo(task.retailer).get_profile(task.profile_id)
            email = normalize_email(profile.get("email"))
            customer = str(profile["external_id"]) if profile.get("external_id") else None
        note = ""
        storis = self._storis(task.retailer)
        if customer is None and email and consent.find_by_email and consent.found_customer_id:
            method, path, body = consent.find_by_email.render(email=email, customer_id="")
            found = consent.found_customer_id(await storis.request(method, path, json=body))
            customer = str(found) if found else None
            if customer is None:
                note = "no STORIS customer has this email"
        if customer is not None and consent.update is not None:
            method, path, body = consent.update.render(customer_id=customer, email=email or "")
            await storis.request(method, path, json=body)
        return email, customer, note
