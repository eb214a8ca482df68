"""Group commit: webhooks arriving together share one durable commit, and each hears its own outcome."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from engine.intake import Intake
from engine.sqlite_store import SqliteStore
from engine.store import IncomingWebhook, StoreError, WebhookReceipt


class CountingStore:
    """The real store, with its batch writes counted."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.batches: list[int] = []

    def record_webhooks(self, webhooks: list[IncomingWebhook], *, now: float) -> list[WebhookReceipt]:
        self.batches.append(len(webhooks))
        return self.store.record_webhooks(webhooks, now=now)


def _webhook(n: int) -> IncomingWebhook:
    return IncomingWebhook("demo", "storis", "OrderWrittenSale", f'{{"n": {n}}}'.encode(), (str(n),), "accepted")


def test_concurrent_webhooks_share_commits_and_each_gets_its_receipt(tmp_path: Path) -> None:
    with SqliteStore.open(tmp_path / "intake.sqlite3") as store:
        counting = CountingStore(store)
        intake = Intake(counting)  # type: ignore[arg-type]

        async def arrive() -> list[WebhookReceipt]:
            return await asyncio.gather(*(intake.record(_webhook(n % 40)) for n in range(50)))

        receipts = asyncio.run(arrive())
        assert len(counting.batches) < 50 and sum(counting.batches) == 50
        assert [r.duplicate for r in receipts] == [False] * 40 + [True] * 10
        assert [r.id for r in receipts[40:]] == [r.id for r in receipts[:10]]
        assert store.counts()["jobs"]["pending"] == 40


def test_a_failed_commit_fails_every_webhook_in_it(tmp_path: Path) -> None:
    class Broken:
        def record_webhooks(self, webhooks: list[IncomingWebhook], *, now: float) -> list[WebhookReceipt]:
            raise StoreError("disk full")

    intake = Intake(Broken())  # type: ignore[arg-type]

    async def arrive() -> list[object]:
        return await asyncio.gather(*(intake.record(_webhook(n)) for n in range(5)), return_exceptions=True)

    outcomes = asyncio.run(arrive())
    assert all(isinstance(o, StoreError) for o in outcomes)
    with pytest.raises(StoreError):
        asyncio.run(intake.record(_webhook(9)))
