"""``engine subscribe`` against the fake STORIS served by uvicorn on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import replace

import httpx
import pytest

from engine import loader, onboarding
from engine.cli import main
from engine.connections import resolve
from engine.errors import ConfigError
from engine.fakes import storis as fake_storis
from engine.service import DEMO_RECORDS
from engine.templates import compile_template

# Subscribing never calls the service itself: its URL is only handed to STORIS.
SERVICE_URL = "https://engine.example.test"
TARGET = f"{SERVICE_URL}/webhooks/storis/demo"
TYPES = ["FulfillmentCompleted", "FulfillmentScheduledDelivery", "OrderWrittenQuote", "OrderWrittenSale"]
STORIS_SECRET = "storis-secret-5678"


@pytest.fixture
def storis(serve: Callable, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    app = fake_storis.create_app(records_dir=DEMO_RECORDS, client_id="demo", client_secret=STORIS_SECRET)
    with serve(app) as base:
        monkeypatch.setenv("DEMO_STORIS_URL", base)
        monkeypatch.setenv("DEMO_STORIS_CLIENT_ID", "demo")
        monkeypatch.setenv("DEMO_STORIS_CLIENT_SECRET", STORIS_SECRET)
        yield base


def _api(storis: str) -> httpx.Client:
    token = httpx.post(f"{storis}/api/authenticate", auth=("demo", STORIS_SECRET)).json()["token"]["access_token"]
    return httpx.Client(base_url=storis, headers={"Authorization": f"Bearer {token}"})


def _subscribed(storis: str) -> set[tuple[str, str]]:
    with _api(storis) as api:
        listed = api.get("/api/Webhooks/Subscriptions").json()["data"]["subscriptions"]
    return {(s["eventType"], s["url"]) for s in listed}


def _creates(storis: str) -> int:
    return sum(r["method"] == "POST" and r["path"] == "/api/Webhooks/Subscriptions"
               for r in httpx.get(f"{storis}/_requests").json())


def _table(out: str) -> dict[str, tuple[str, str]]:
    lines = out.splitlines()
    assert lines[0].split() == ["type", "state", "action"]
    return {name: (state, action) for name, state, action in (line.split(maxsplit=2) for line in lines[1:])}


def _subscribe(*extra: str) -> int:
    return main(["subscribe", "--retailer", "demo", "--url", SERVICE_URL, *extra])


def test_subscribe_creates_only_what_is_missing(storis: str, capsys: pytest.CaptureFixture[str]) -> None:
    with _api(storis) as api:
        api.post("/api/Webhooks/Subscriptions", json={"eventType": "OrderWrittenSale", "url": TARGET})

    assert _subscribe() == 0
    out, err = capsys.readouterr()
    assert _table(out) == {**dict.fromkeys(TYPES, ("missing", "created")), "OrderWrittenSale": ("exists", "none")}
    assert _subscribed(storis) == {(t, TARGET) for t in TYPES}
    assert f"subscriptions point at {TARGET}" in err

    creates = _creates(storis)
    assert _subscribe() == 0
    assert _table(capsys.readouterr().out) == dict.fromkeys(TYPES, ("exists", "none"))
    assert _creates(storis) == creates


def test_dry_run_creates_nothing(storis: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _subscribe("--dry-run") == 0
    out, err = capsys.readouterr()
    assert _table(out) == dict.fromkeys(TYPES, ("missing", "would create"))
    assert f"dry run, nothing created; subscriptions would point at {TARGET}" in err
    assert _creates(storis) == 0
    assert _subscribed(storis) == set()


def test_a_subscription_elsewhere_is_kept_and_reported(storis: str, capsys: pytest.CaptureFixture[str]) -> None:
    old = "https://old-engine.example.test/webhooks/storis/demo"
    with _api(storis) as api:
        api.post("/api/Webhooks/Subscriptions", json={"eventType": "OrderWrittenQuote", "url": old})

    assert _subscribe() == 0
    out, err = capsys.readouterr()
    assert _table(out)["OrderWrittenQuote"] == ("elsewhere", "created")
    assert f"OrderWrittenQuote is also subscribed at {old}" in err
    assert {("OrderWrittenQuote", old), ("OrderWrittenQuote", TARGET)} <= _subscribed(storis)


def test_events_not_enabled_says_what_to_ask_storis_for(storis: str, capsys: pytest.CaptureFixture[str]) -> None:
    httpx.post(f"{storis}/_control", json={"events_enabled": False}).raise_for_status()

    assert _subscribe() == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "webhook events are not enabled for this account" in err
    assert "Ask STORIS support to enable webhook events" in err
    assert all(t in err for t in TYPES)
    assert _creates(storis) == 0


def test_wrong_credentials_fail_without_showing_the_secret(storis: str, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DEMO_STORIS_CLIENT_SECRET", "not-the-secret")

    assert _subscribe() == 1
    err = capsys.readouterr().err
    assert "STORIS rejected the client id/secret (client id 'demo', answer 401)" in err
    assert "not-the-secret" not in err


def test_a_failed_create_is_reported_and_the_others_still_made(storis: str) -> None:
    retailer = loader.load_retailer("demo")
    spec = retailer.subscriptions
    assert spec is not None
    # This tenant's create path is wrong for one type only, so that create gets a 404 and the rest succeed.
    path = compile_template("/api/Webhooks/{{ 'Nowhere' if event_type == 'OrderWrittenQuote' else 'Subscriptions' }}")
    retailer = replace(retailer, subscriptions=replace(spec, create=replace(spec.create, path=path)))

    rows = asyncio.run(onboarding.subscribe(retailer, resolve(retailer), SERVICE_URL, dry_run=False))

    assert _table(onboarding.table(rows)) == {**dict.fromkeys(TYPES, ("missing", "created")),
                                              "OrderWrittenQuote": ("missing", "failed")}
    assert onboarding.notes(rows) == ["OrderWrittenQuote: STORIS POST /api/Webhooks/Nowhere answered 404: Not Found"]
    assert _subscribed(storis) == {(t, TARGET) for t in TYPES if t != "OrderWrittenQuote"}


def test_webhook_url_is_the_service_route() -> None:
    assert onboarding.webhook_url("https://engine.example.test/", "demo") == TARGET
    with pytest.raises(ConfigError, match="must start with http:// or https://"):
        onboarding.webhook_url("engine.example.test", "demo")
