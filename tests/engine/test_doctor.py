"""``engine doctor`` against the fake STORIS, the fake Klaviyo and the real service, each served by uvicorn."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest

from engine import doctor, loader, service
from engine.cli import main
from engine.compile import Retailer
from engine.connections import Connections, resolve
from engine.fakes import klaviyo as fake_klaviyo
from engine.fakes import storis as fake_storis
from engine.onboarding import webhook_url
from engine.paths import ROOT
from engine.ratelimit import LimiterRegistry
from engine.sqlite_store import SqliteStore

STORIS_SECRET = "storis-secret-5678"
WEBHOOK_SECRET = "webhook-secret-1234"
KLAVIYO_WEBHOOK_SECRET = "doctor-klaviyo-secret"
KEYS = {"pk_full": set(fake_klaviyo.ALL_SCOPES), "pk_events_only": {"accounts:read", "events:write"},
        "pk_no_events": set(fake_klaviyo.ALL_SCOPES) - {"events:write"}}
SECRETS = (STORIS_SECRET, WEBHOOK_SECRET, KLAVIYO_WEBHOOK_SECRET, "pk_full")
TYPES = ["FulfillmentCompleted", "FulfillmentScheduledDelivery", "OrderWrittenQuote", "OrderWrittenSale"]
# The demo subscribes buyers to a list, so the key needs the subscription scopes too.
SCOPES = ["klaviyo-scope events:write", "klaviyo-scope profiles:read", "klaviyo-scope lists:write",
          "klaviyo-scope profiles:write", "klaviyo-scope subscriptions:write"]
CHECKS = ["mapping", "environment", "storis-credentials", "storis-subscriptions", "klaviyo-key", *SCOPES,
          "endpoint-health", "test-webhook", "dead-letters"]


@dataclass
class Systems:
    storis: str
    klaviyo: str
    engine: str
    db: Path
    store: SqliteStore


@pytest.fixture(scope="module")
def fakes(serve: Callable) -> Iterator[tuple[str, str]]:
    """The fake STORIS and fake Klaviyo, shared by the module's tests (``systems`` resets them)."""
    storis_app = fake_storis.create_app(records_dir=service.DEMO_RECORDS, client_id="demo",
                                        client_secret=STORIS_SECRET)
    with serve(storis_app) as storis, serve(fake_klaviyo.create_app(keys=KEYS)) as klaviyo:
        yield storis, klaviyo


@pytest.fixture
def systems(fakes: tuple[str, str], serve: Callable, monkeypatch: pytest.MonkeyPatch,
            tmp_path: Path) -> Iterator[Systems]:
    """A healthy setup: both fakes, the service with its store, the demo retailer's environment, subscriptions."""
    storis, klaviyo = fakes
    # Each test is a fresh `engine doctor` process as far as Klaviyo's client-side rate limits go.
    monkeypatch.setattr("engine.klaviyo.SHARED_LIMITERS", LimiterRegistry())
    for fake in fakes:
        httpx.post(f"{fake}/_reset").raise_for_status()
    for name, value in {"DEMO_STORIS_URL": storis, "DEMO_STORIS_CLIENT_ID": "demo",
                        "DEMO_STORIS_CLIENT_SECRET": STORIS_SECRET, "DEMO_KLAVIYO_URL": klaviyo,
                        "DEMO_KLAVIYO_API_KEY": "pk_full", "DEMO_WEBHOOK_SECRET": WEBHOOK_SECRET,
                        "DEMO_KLAVIYO_WEBHOOK_SECRET": KLAVIYO_WEBHOOK_SECRET}.items():
        monkeypatch.setenv(name, value)
    db = tmp_path / "engine.sqlite3"
    store = SqliteStore.open(db)
    try:
        retailer = loader.load_retailer("demo")
        running = service.Service(store=store, retailers={"demo": retailer}, connections={"demo": resolve(retailer)})
        with serve(service.build_app(running, run_worker=False)) as engine:
            _subscribe(storis, engine, TYPES)
            yield Systems(storis=storis, klaviyo=klaviyo, engine=engine, db=db, store=store)
    finally:
        store.close()


def _subscribe(storis: str, base_url: str, types: list[str]) -> None:
    auth = httpx.post(f"{storis}/api/authenticate", auth=("demo", STORIS_SECRET)).json()
    headers = {"Authorization": f"Bearer {auth['token']['access_token']}"}
    for event_type in types:
        httpx.post(f"{storis}/api/Webhooks/Subscriptions", headers=headers,
                   json={"eventType": event_type, "url": webhook_url(base_url, "demo")}).raise_for_status()


def _doctor(systems: Systems, capsys: pytest.CaptureFixture[str], *, url: str | None = None) -> tuple[int, list]:
    args = ["doctor", "--retailer", "demo", "--db", str(systems.db), "--json"]
    code = main([*args, "--url", url or systems.engine])
    return code, json.loads(capsys.readouterr().out)


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_healthy_setup_passes_every_check(systems: Systems, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["doctor", "--retailer", "demo", "--db", str(systems.db), "--url", systems.engine])
    out, err = capsys.readouterr()

    assert code == 0, out
    lines = out.splitlines()
    assert len(lines) == len(CHECKS)
    assert all(line.startswith(f"PASS  {check} ") for line, check in zip(lines, CHECKS)), out
    assert f"all {len(CHECKS)} checks passed" in err
    assert not any(secret in out + err for secret in SECRETS)
    # The test webhook is on record as a test, and nothing came of it.
    tests = systems.store.list_webhooks(retailer="demo", status="test")
    assert [(w.event_type, w.source) for w in tests] == [("FulfillmentCompleted", "storis")]
    assert systems.store.counts()["jobs"] == dict.fromkeys(("pending", "leased", "done", "dead", "replayed"), 0)
    assert httpx.get(f"{systems.klaviyo}/_received").json() == []


def test_json_lists_each_check_with_its_fix(systems: Systems, capsys: pytest.CaptureFixture[str]) -> None:
    code, results = _doctor(systems, capsys)
    assert code == 0
    assert [r["check"] for r in results] == CHECKS
    assert all(set(r) == {"check", "ok", "detail", "fix"} and r["ok"] and r["fix"] == "" for r in results)
    assert results[3]["detail"] == (f"4 type(s) subscribed at {systems.engine}/webhooks/storis/demo: "
                                    + ", ".join(TYPES))


def _events_disabled(systems: Systems, monkeypatch: pytest.MonkeyPatch) -> str | None:
    httpx.post(f"{systems.storis}/_control", json={"events_enabled": False}).raise_for_status()
    return None


def _subscription_missing(systems: Systems, monkeypatch: pytest.MonkeyPatch) -> str | None:
    httpx.post(f"{systems.storis}/_reset").raise_for_status()
    _subscribe(systems.storis, systems.engine, [t for t in TYPES if t != "OrderWrittenQuote"])
    return None


def _wrong_storis_secret(systems: Systems, monkeypatch: pytest.MonkeyPatch) -> str | None:
    monkeypatch.setenv("DEMO_STORIS_CLIENT_SECRET", "not-the-secret")
    return None


def _key_rejected(systems: Systems, monkeypatch: pytest.MonkeyPatch) -> str | None:
    monkeypatch.setenv("DEMO_KLAVIYO_API_KEY", "pk_revoked")
    return None


def _key_without_events_write(systems: Systems, monkeypatch: pytest.MonkeyPatch) -> str | None:
    monkeypatch.setenv("DEMO_KLAVIYO_API_KEY", "pk_no_events")
    return None


def _endpoint_down(systems: Systems, monkeypatch: pytest.MonkeyPatch) -> str | None:
    url = f"http://127.0.0.1:{_unused_port()}"
    _subscribe(systems.storis, url, TYPES)  # so that only the endpoint is wrong
    return url


def _webhook_secret_differs(systems: Systems, monkeypatch: pytest.MonkeyPatch) -> str | None:
    # The running service keeps the secret it started with; this shell has another.
    monkeypatch.setenv("DEMO_WEBHOOK_SECRET", "another-secret")
    return None


def _old_dead_letter(systems: Systems, monkeypatch: pytest.MonkeyPatch) -> str | None:
    then = time.time() - 2 * doctor.DAY
    systems.store.record_webhook(retailer="demo", source="storis", event_type="OrderWrittenSale",
                                 body=b'{"eventType": "OrderWrittenSale", "data": [{"entityId": "S-9"}]}',
                                 entity_ids=["S-9"], status="accepted", now=then)
    (job,) = systems.store.claim_jobs(limit=1, now=then, lease_seconds=60)
    systems.store.fail_job(job.id, error="STORIS answered 500", retry_at=None, now=then)
    return None


@pytest.mark.parametrize(("breakage", "failed", "fix"), [
    pytest.param(_events_disabled, "storis-subscriptions", "ask STORIS support to enable webhook events",
                 id="events-not-enabled"),
    pytest.param(_subscription_missing, "storis-subscriptions",
                 "run `engine subscribe --retailer demo --url http://127.0.0.1:", id="subscription-missing"),
    pytest.param(_wrong_storis_secret, "storis-credentials",
                 "set DEMO_STORIS_CLIENT_ID and DEMO_STORIS_CLIENT_SECRET to", id="wrong-storis-credentials"),
    pytest.param(_key_rejected, "klaviyo-key", "set DEMO_KLAVIYO_API_KEY to a private API key", id="key-rejected"),
    pytest.param(_key_without_events_write, "klaviyo-scope events:write", "grant events:write to the key",
                 id="scope-missing"),
    pytest.param(_endpoint_down, "endpoint-health", "start the service (`engine serve`), or correct --url",
                 id="endpoint-down"),
    pytest.param(_webhook_secret_differs, "test-webhook", "give the running service the same DEMO_WEBHOOK_SECRET",
                 id="webhook-secret-differs"),
    pytest.param(_old_dead_letter, "dead-letters", "`engine replay --retailer demo --status dead`",
                 id="old-dead-letter"),
])
def test_each_failure_fails_its_own_line(systems: Systems, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch, breakage: Callable, failed: str,
                                         fix: str) -> None:
    url = breakage(systems, monkeypatch)
    code, results = _doctor(systems, capsys, url=url)

    assert code == 1
    assert [r["check"] for r in results if not r["ok"]] == [failed]
    (result,) = [r for r in results if r["check"] == failed]
    assert fix in result["fix"]
    # A check that depends on the failed one is not run; every other check still is.
    dependents = {"storis-credentials": {"storis-subscriptions"}, "klaviyo-key": set(SCOPES),
                  "endpoint-health": {"test-webhook"}}.get(failed, set())
    assert [r["check"] for r in results] == [c for c in CHECKS if c not in dependents]
    assert not any(secret in json.dumps(results) for secret in (*SECRETS, "not-the-secret", "another-secret"))


def test_a_missing_subscription_is_named(systems: Systems, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    _subscription_missing(systems, monkeypatch)
    _, results = _doctor(systems, capsys)
    (result,) = [r for r in results if r["check"] == "storis-subscriptions"]
    assert result["detail"] == f"not subscribed at {systems.engine}/webhooks/storis/demo: OrderWrittenQuote"


def test_without_url_subscriptions_need_only_exist(systems: Systems, capsys: pytest.CaptureFixture[str]) -> None:
    httpx.post(f"{systems.storis}/_reset").raise_for_status()
    _subscribe(systems.storis, "https://elsewhere.example.test", TYPES)

    code = main(["doctor", "--retailer", "demo", "--db", str(systems.db), "--json"])
    results = json.loads(capsys.readouterr().out)

    assert code == 0
    assert [r["check"] for r in results] == [c for c in CHECKS if c not in ("endpoint-health", "test-webhook")]


def test_a_recent_dead_letter_is_not_yet_a_failure(systems: Systems, capsys: pytest.CaptureFixture[str]) -> None:
    now = time.time()
    systems.store.record_webhook(retailer="demo", source="storis", event_type="OrderWrittenSale", body=b"{}",
                                 entity_ids=["S-9"], status="accepted", now=now)
    (job,) = systems.store.claim_jobs(limit=1, now=now, lease_seconds=60)
    systems.store.fail_job(job.id, error="boom", retry_at=None, now=now)

    code, results = _doctor(systems, capsys)
    assert code == 0
    assert results[-1]["detail"] == "none older than a day (1 from the last day)"


@pytest.fixture
def mappings(tmp_path: Path) -> Path:
    """A copy of the demo retailer's mapping and catalog, to change."""
    folder = tmp_path / "mappings"
    folder.mkdir()
    for name in ("base.yaml", "demo.yaml"):
        shutil.copy(ROOT / "mappings" / name, folder / name)
    (tmp_path / "catalogs").mkdir()
    shutil.copy(ROOT / "catalogs" / "demo.csv", tmp_path / "catalogs" / "demo.csv")
    return folder


def test_purchase_subscriptions_need_the_subscription_scopes(systems: Systems, mappings: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_KLAVIYO_API_KEY", "pk_events_only")

    results = doctor.run("demo", url=None, db=systems.db, folder=mappings)

    # The key also lacks profiles:read, which the demo's system unsubscribe webhooks need.
    missing = ["profiles:read", "lists:write", "profiles:write", "subscriptions:write"]
    assert [r.check for r in results if not r.ok] == [f"klaviyo-scope {scope}" for scope in missing]
    assert results[-2].detail == "the API key lacks subscriptions:write, needed to subscribe buyers to list LDEMO01"

    # Without purchase subscriptions, the subscription scopes are not needed.
    demo = mappings / "demo.yaml"
    text = demo.read_text(encoding="utf-8")
    start = text.index("  subscribe_on_purchase:")
    demo.write_text(text[:start] + "\n".join(text[start:].splitlines()[3:]) + "\n", encoding="utf-8")
    results = doctor.run("demo", url=None, db=systems.db, folder=mappings)
    assert [r.check for r in results if not r.ok] == ["klaviyo-scope profiles:read"]

    monkeypatch.setenv("DEMO_KLAVIYO_API_KEY", "pk_full")
    assert all(r.ok for r in doctor.run("demo", url=None, db=systems.db, folder=mappings))
    # Probing created nothing.
    assert httpx.get(f"{systems.klaviyo}/_received").json() == []
    assert httpx.get(f"{systems.klaviyo}/_subscriptions").json() == []


def test_plugin_data_that_does_not_load_fails_the_mapping(systems: Systems, mappings: Path) -> None:
    (mappings.parent / "catalogs" / "demo.csv").unlink()

    results = doctor.run("demo", url=systems.engine, db=systems.db, folder=mappings)

    assert [(r.check, r.ok) for r in results] == [("mapping", False), ("dead-letters", True)]
    assert "plugin catalog: file:" in results[0].detail and "cannot read" in results[0].detail


@pytest.mark.parametrize("service_mode", ["hmac_sha256", "shared_secret"])
def test_the_test_webhook_is_signed_as_the_retailer_expects(serve: Callable, tmp_path: Path,
                                                            service_mode: str) -> None:
    """The doctor signs with HMAC-SHA256 for a retailer so configured, and the service checks it the same way."""
    retailer = loader.load_retailer("demo")
    doctor_conn = Connections(retailer="demo", webhook_mode="hmac_sha256", webhook_header="X-Webhook-Signature",
                              webhook_secret=WEBHOOK_SECRET, storis_base_url=None, storis_client_id=None,
                              storis_client_secret=None, klaviyo_base_url="http://127.0.0.1:9",
                              klaviyo_api_key=None, klaviyo_revision="2026-07-15")
    header = "X-Webhook-Signature" if service_mode == "hmac_sha256" else "X-Webhook-Secret"
    service_conn = replace(doctor_conn, webhook_mode=service_mode, webhook_header=header)
    store = SqliteStore.open(tmp_path / "engine.sqlite3")
    try:
        app = service.build_app(service.Service(store=store, retailers={"demo": retailer},
                                                connections={"demo": service_conn}), run_worker=False)
        with serve(app) as base:
            result = asyncio.run(_test_webhook(retailer, doctor_conn, base))
        stored = store.list_webhooks(status="test")
    finally:
        store.close()

    if service_mode == "hmac_sha256":
        assert result.ok, result
        assert len(stored) == 1
    else:
        assert not result.ok
        assert result.detail.endswith("refused the X-Webhook-Signature header (hmac_sha256)")
        assert stored == []


async def _test_webhook(retailer: Retailer, conn: Connections, base: str) -> doctor.Result:
    async with httpx.AsyncClient() as http:
        return await doctor.check_test_webhook(http, retailer, conn, base)
