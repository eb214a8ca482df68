"""Group commit for incoming webhooks: durable acknowledgement without one disk flush per request.

A webhook is answered 202 only once it is committed with a full sync. Under load, the webhooks that arrive
while one commit is being flushed are committed together in the next one, so throughput grows with
concurrency while every acknowledgement still follows its own durable commit.
"""

from __future__ import annotations

import asyncio
import time

from engine import store_thread
from engine.store import IncomingWebhook, Store, WebhookReceipt

MAX_BATCH = 256


class Intake:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._waiting: list[tuple[IncomingWebhook, asyncio.Future[WebhookReceipt]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def record(self, webhook: IncomingWebhook) -> WebhookReceipt:
        """Return once ``webhook`` is durably stored (or raise what storing it raised)."""
        future: asyncio.Future[WebhookReceipt] = asyncio.get_running_loop().create_future()
        self._waiting.append((webhook, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            try:
                receipts = await store_thread.run(self.store.record_webhooks, [w for w, _ in batch],
                                                   now=time.time())
            except Exception as exc:  # noqa: BLE001 - every waiting request must hear of the failure
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), receipt in zip(batch, receipts):
                if not future.done():
                    future.set_result(receipt)
