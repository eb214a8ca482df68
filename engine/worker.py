"""The worker: fetch each stored webhook's entities from STORIS, map them, and deliver the events to Klaviyo.

Runs inside the server process by default (``engine serve``) or alone (``engine worker``); several workers
may share one store, since jobs and events are leased, not taken. Every step is stored before the next
begins, so a crash at any point loses nothing: a leased job or event whose worker died is claimed again
when its lease runs out, and Klaviyo drops a re-sent event by its ``unique_id``.

Delivery uses Create Event for live traffic and Bulk Create Events when a retailer has a backlog
(``bulk_threshold`` events or more waiting). A bulk job that Klaviyo refuses as invalid is re-sent event by
event, so one bad event dead-letters alone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from engine import store_thread
from engine.apply import map_record
from engine.compile import Retailer
from engine.connections import Connections
from engine.consent_worker import ConsentWork
from engine.errors import DeliveryError, MappingError, RetryableDeliveryError
from engine.event_json import EventJson
from engine.klaviyo import KlaviyoClient, plan_bulk_jobs
from engine.metrics import Metrics
from engine.retry import RetryPolicy
from engine.store import EventRow, Job, NewEvent, NewSkip, Store
from engine.storis import StorisClient

log = logging.getLogger("engine.worker")
BATCHES_OUT = 4


@dataclass(frozen=True)
class WorkerSettings:
    """How the worker paces itself. The defaults suit production; tests shorten the waits."""

    poll_seconds: float = 1.0
    lease_seconds: float = 120.0
    batch: int = 2000
    deliver_seconds: float = 5.0
    bulk_threshold: int = 50
    concurrency: int = 8
    retry: RetryPolicy = RetryPolicy()


class Worker:
    def __init__(self, *, store: Store, retailers: dict[str, Retailer], connections: dict[str, Connections],
                 settings: WorkerSettings | None = None, metrics: Metrics | None = None,
                 transport: httpx.AsyncBaseTransport | None = None, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.retailers = retailers
        self.connections = connections
        self.settings = settings or WorkerSettings()
        self.metrics = metrics or Metrics()
        self._transport = transport
        self._clock = clock
        self._wake = asyncio.Event()
        self._storis: dict[str, StorisClient] = {}
        self._klaviyo: dict[str, KlaviyoClient] = {}
        self.consent = ConsentWork(store=store, retailers=retailers, connections=connections,
                                   storis=self._storis_client, klaviyo=self._klaviyo_client,
                                   retry=self.settings.retry, lease_seconds=self.settings.lease_seconds, clock=clock)

    def wake(self) -> None:
        """New work was stored: look now rather than at the next poll."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set; a failing round is logged and retried, never fatal."""
        try:
            while not stop.is_set():
                try:
                    busy = await self.run_once()
                except Exception:  # noqa: BLE001 - the loop must outlive any one bad round
                    log.exception("worker round failed; retrying after a pause")
                    busy = False
                if not busy:
                    self._wake.clear()
                    waiters = [asyncio.create_task(self._wake.wait()), asyncio.create_task(stop.wait())]
                    await asyncio.wait(waiters, timeout=self.settings.poll_seconds,
                                       return_when=asyncio.FIRST_COMPLETED)
                    for waiter in waiters:
                        waiter.cancel()
        finally:
            await self.close()

    async def run_once(self) -> bool:
        """One round of each duty (fetch and map, deliver, unsubscribe, subscribe); True when any had work."""
        jobs = await self.process_jobs()
        events = await self.deliver()
        unsubscribes = await self.consent.process_unsubscribes()
        subscriptions = await self.consent.deliver_subscriptions()
        return bool(jobs or events or unsubscribes or subscriptions)

    async def close(self) -> None:
        for client in [*self._storis.values(), *self._klaviyo.values()]:
            await client.aclose()
        self._storis.clear()
        self._klaviyo.clear()

    # -- fetch and map ---------------------------------------------------------------------------------

    async def process_jobs(self) -> int:
        jobs = await store_thread.run(self.store.claim_jobs, limit=self.settings.batch, now=self._clock(),
                                       lease_seconds=self.settings.lease_seconds)
        semaphore = asyncio.Semaphore(self.settings.concurrency)

        async def one(job: Job) -> None:
            async with semaphore:
                await self._process(job)

        await asyncio.gather(*(one(job) for job in jobs))
        return len(jobs)

    async def _process(self, job: Job) -> None:
        try:
            events, skipped = await self._map(job)
        except RetryableDeliveryError as exc:
            retry_at = self.settings.retry.retry_at(job.attempts, exc, now=self._clock())
            await store_thread.run(self.store.fail_job, job.id, error=str(exc), retry_at=retry_at, now=self._clock())
            log.warning("job %s (%s %s %s): %s; %s", job.id, job.retailer, job.event_type, job.entity_id, exc,
                        "will retry" if retry_at else "dead-lettered")
            return
        except (DeliveryError, MappingError) as exc:
            await store_thread.run(self.store.fail_job, job.id, error=str(exc), retry_at=None, now=self._clock())
            log.error("job %s (%s %s %s) dead-lettered: %s", job.id, job.retailer, job.event_type, job.entity_id, exc)
            return
        await store_thread.run(self.store.complete_job, job.id, events=events, skipped=skipped, now=self._clock())
        if events:
            self.wake()

    async def _map(self, job: Job) -> tuple[list[NewEvent], list[NewSkip]]:
        retailer = self.retailers.get(job.retailer)
        plan = retailer.webhooks.get(job.event_type) if retailer else None
        if retailer is None or plan is None or not plan.enabled or plan.fetch is None:
            raise MappingError("this retailer no longer maps this webhook type", retailer=job.retailer,
                               webhook=job.event_type)
        path, params = plan.fetch.request(job.entity_id)
        response = await self._storis_client(job.retailer).get(path, params)
        record = plan.fetch.record(response)
        if not isinstance(record, dict):
            # STORIS can announce an entity a moment before its API serves it.
            raise RetryableDeliveryError(f"STORIS returned no record for {job.entity_id} at {path}")
        result = map_record(retailer, job.event_type, record)
        # Before the job completes: if we crash in between, the job runs again and queueing is idempotent.
        await self.consent.after_mapping(retailer, record, result)
        dry_run = self.connections[job.retailer].dry_run
        events = [NewEvent(job.retailer, e.metric, e.unique_id, e.body, dry_run) for e in result.events]
        skipped = [NewSkip(s.metric, s.unique_id, s.reason) for s in result.skipped]
        return events, skipped

    def _storis_client(self, retailer: str) -> StorisClient:
        client = self._storis.get(retailer)
        if client is None:
            conn = self.connections[retailer]
            if not (conn.storis_base_url and conn.storis_client_id and conn.storis_client_secret):
                raise DeliveryError(f"{retailer}: STORIS base URL or credentials are not configured")
            client = StorisClient(base_url=conn.storis_base_url, client_id=conn.storis_client_id,
                                  client_secret=conn.storis_client_secret, transport=self._transport)
            self._storis[retailer] = client
        return client

    # -- deliver ---------------------------------------------------------------------------------------

    async def deliver(self) -> int:
        """Deliver due events a batch at a time, claiming the next batch while earlier ones are out.

        At most ``BATCHES_OUT`` batches are out at once, so memory stays bounded whatever the backlog, and no
        batch is claimed after ``deliver_seconds``, so a large backlog never holds up new webhooks for long."""
        started = time.monotonic()
        delivered = 0
        out: deque[asyncio.Task[None]] = deque()
        rows = await self._claim_events()
        while rows:
            out.append(asyncio.create_task(self._deliver_batch(rows)))
            delivered += len(rows)
            more = len(rows) == self.settings.batch and time.monotonic() - started < self.settings.deliver_seconds
            rows = await self._claim_events() if more else []
            if len(out) == BATCHES_OUT:
                await out.popleft()
        await asyncio.gather(*out)
        return delivered

    async def _claim_events(self) -> list[EventRow]:
        return await store_thread.run(self.store.claim_events, limit=self.settings.batch, now=self._clock(),
                                       lease_seconds=self.settings.lease_seconds)

    async def _deliver_batch(self, rows: list[EventRow]) -> None:
        by_retailer: dict[str, list[EventRow]] = defaultdict(list)
        for row in rows:
            by_retailer[row.retailer].append(row)
        await asyncio.gather(*(self._deliver_for(retailer, group) for retailer, group in by_retailer.items()))

    async def _deliver_for(self, retailer: str, rows: list[EventRow]) -> None:
        client = self._klaviyo_client(retailer)
        if len(rows) < self.settings.bulk_threshold:
            await self._send_each(client, rows)
            return
        by_event = {id(row.event): row for row in rows}
        semaphore = asyncio.Semaphore(self.settings.concurrency)

        # Jobs go out concurrently (the limiter still paces them): encoding one while Klaviyo reads another.
        async def send(job: list[EventJson]) -> None:
            batch = [by_event[id(event)] for event in job]
            async with semaphore:
                try:
                    await client.bulk_create_events(job)
                except RetryableDeliveryError as exc:
                    await self._failed(batch, exc)
                    return
                except DeliveryError:
                    await self._send_each(client, batch)
                    return
            await self._delivered(batch, 202)

        jobs = plan_bulk_jobs([row.event for row in rows])
        await asyncio.gather(*(send(job) for job in jobs))

    async def _send_each(self, client: KlaviyoClient, rows: list[EventRow]) -> None:
        semaphore = asyncio.Semaphore(self.settings.concurrency)

        async def one(row: EventRow) -> None:
            async with semaphore:
                try:
                    await client.create_event(row.event)
                except DeliveryError as exc:
                    await self._failed([row], exc)
                else:
                    await self._delivered([row], 202)

        await asyncio.gather(*(one(row) for row in rows))

    async def _delivered(self, rows: list[EventRow], status: int) -> None:
        now = self._clock()
        await store_thread.run(self.store.mark_delivered, [row.id for row in rows], now=now, status=status)
        for row in rows:
            self.metrics.delivered.labels(row.retailer).inc()
            self.metrics.latency.observe(max(now - row.created_at, 0.0))

    async def _failed(self, rows: list[EventRow], exc: DeliveryError) -> None:
        now = self._clock()
        for row in rows:
            retry_at = self.settings.retry.retry_at(row.attempts, exc, now=now)
            await store_thread.run(self.store.record_failure, [row.id], now=now, status=exc.status,
                                    body=exc.body or str(exc), retry_at=retry_at)
            (self.metrics.retried if retry_at else self.metrics.dead).labels(row.retailer).inc()
            if retry_at is None:
                log.error("event %s (%s %s %s) dead-lettered: %s", row.id, row.retailer, row.metric, row.unique_id,
                          exc)

    def _klaviyo_client(self, retailer: str) -> KlaviyoClient:
        client = self._klaviyo.get(retailer)
        if client is None:
            conn = self.connections[retailer]
            client = KlaviyoClient(api_key=conn.klaviyo_api_key or "", base_url=conn.klaviyo_base_url,
                                   revision=conn.klaviyo_revision, transport=self._transport)
            self._klaviyo[retailer] = client
        return client
