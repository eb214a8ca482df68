"""End-to-end fixtures: the service (``engine serve``), a fake STORIS and a fake Klaviyo, as real processes on
127.0.0.1 with free ports.

Each test gets its own service process and SQLite file in ``tmp_path``; the two fakes run once per session
in processes of their own and are reset (``POST /_reset``, which also clears their failure switches) before
every test. The service runs without ``--demo``: the demo retailer's variables point it at the fakes, and
``ENGINE_POLL_SECONDS`` / ``ENGINE_RETRY_BASE`` shorten the worker's waits from seconds to a tenth.

Every process is stopped at teardown, failed test or not, and the tail of its log printed (pytest shows it
for failed tests). Test modules cannot import this file, so the helpers come as fixtures.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.sqlite_store import SqliteStore

ROOT = Path(__file__).resolve().parents[2]
DEMO_RECORDS = ROOT / "demo" / "records"
SECRET = "e2e-webhook-secret"
API_KEY = "pk_e2e_account"
STARTUP_SECONDS = 20.0
# Orders the fake STORIS serves besides the demo records: copies of the demo sale, for webhooks with many entities.
MANY_ORDERS = tuple(f"30000{n:02d}" for n in range(1, 11))
# A copy of the demo sale whose customer STORIS says is not OK to solicit.
NOT_OK_ORDER = "3100001"
# A copy of the demo sale whose soft kit is malformed (quantityPerKit 0): the soft_kits plugin fails on it.
BROKEN_KIT_ORDER = "3200001"
KLAVIYO_WEBHOOK_SECRET = "e2e-klaviyo-secret"

T = TypeVar("T")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    """One child process serving HTTP on 127.0.0.1, its output in a log file; ``start`` waits until it answers."""

    def __init__(self, name: str, argv: list[str], *, env: dict[str, str], log: Path, ready_path: str,
                 port: int | None = None) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log = log
        self.ready_path = ready_path
        self.port = port or _free_port()
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Process:
        with self.log.open("ab") as log:
            log.write(f"--- start {self.name}: {' '.join(self.argv)}\n".encode())
            self.popen = subprocess.Popen([*self.argv, "--host", "127.0.0.1", "--port", str(self.port)],
                                          cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.url + self.ready_path, timeout=1).status_code == 200:
                    return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not answer {self.ready_path} in {STARTUP_SECONDS} s:\n"
                                   f"{self.tail()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, as in a crash or an OOM kill."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait()

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()

    def tail(self, lines: int = 60) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _child_env(**extra: str) -> dict[str, str]:
    # The caller's own engine or demo settings must not leak into the processes under test.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENGINE_", "DEMO_"))}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class FakeKlaviyo:
    def __init__(self, process: Process) -> None:
        self.process = process
        self.url = process.url

    def fail(self, **spec: Any) -> None:
        """Set the failure switch (see engine.fakes.common); ``fail(mode="ok")`` clears it."""
        httpx.post(f"{self.url}/_fail", json=spec, timeout=5).raise_for_status()

    def received(self) -> list[dict[str, Any]]:
        """Accepted events as Create Event bodies, after Klaviyo's dedup by unique_id."""
        return httpx.get(f"{self.url}/_received", timeout=5).json()

    def requests(self) -> list[dict[str, Any]]:
        """Every API request in arrival order: t, method, path, status, key (last 4 characters)."""
        return httpx.get(f"{self.url}/_requests", timeout=5).json()

    def subscriptions(self) -> list[dict[str, Any]]:
        """Every profile subscribed to a list: t, list_id, email, phone_number, consent."""
        return httpx.get(f"{self.url}/_subscriptions", timeout=5).json()

    def profiles(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.url}/_profiles", timeout=5).json()

    def event_posts(self) -> list[dict[str, Any]]:
        return [r for r in self.requests() if r["method"] == "POST" and r["path"].rstrip("/") == "/api/events"]

    def received_ids(self) -> list[tuple[str, str]]:
        """(metric, unique_id) of every accepted event, in arrival order."""
        return [(e["data"]["attributes"]["metric"]["data"]["attributes"]["name"], e["data"]["attributes"]["unique_id"])
                for e in self.received()]


class FakeStoris:
    def __init__(self, process: Process) -> None:
        self.process = process
        self.url = process.url

    def fail(self, **spec: Any) -> None:
        httpx.post(f"{self.url}/_fail", json=spec, timeout=5).raise_for_status()

    def writes(self) -> list[dict[str, Any]]:
        """Every write request received: t, method, path, body."""
        return httpx.get(f"{self.url}/_requests", timeout=5).json()


class Fakes:
    def __init__(self, klaviyo: FakeKlaviyo, storis: FakeStoris) -> None:
        self.klaviyo = klaviyo
        self.storis = storis

    def reset(self) -> None:
        for url in (self.klaviyo.url, self.storis.url):
            httpx.post(f"{url}/_reset", timeout=5).raise_for_status()

    def demo_env(self) -> dict[str, str]:
        """The demo retailer's variables, pointing at these fakes."""
        return {
            "DEMO_WEBHOOK_SECRET": SECRET,
            "DEMO_STORIS_URL": self.storis.url,
            "DEMO_STORIS_CLIENT_ID": "e2e-client",
            "DEMO_STORIS_CLIENT_SECRET": "e2e-client-secret",
            "DEMO_KLAVIYO_URL": self.klaviyo.url,
            "DEMO_KLAVIYO_API_KEY": API_KEY,
            "DEMO_KLAVIYO_WEBHOOK_SECRET": KLAVIYO_WEBHOOK_SECRET,
        }


class Service:
    """``engine serve`` on its own SQLite file, plus the CLI and store views of that file."""

    def __init__(self, process: Process, db: Path) -> None:
        self.process = process
        self.db = db
        self.url = process.url

    def post(self, body: bytes | Iterator[bytes] | dict[str, Any], *, retailer: str = "demo",
             secret: str | None = SECRET, content_type: str = "application/json") -> httpx.Response:
        """POST a webhook; a dict is sent as JSON, an iterator chunked. An empty ``content_type`` sends none."""
        content = json.dumps(body).encode() if isinstance(body, dict) else body
        sent = {"Content-Type": content_type} if content_type else {}
        if secret is not None:
            sent["X-Webhook-Secret"] = secret
        return httpx.post(f"{self.url}/webhooks/storis/{retailer}", content=content, headers=sent, timeout=10)

    def post_klaviyo(self, body: bytes, headers: dict[str, str], *, retailer: str = "demo") -> httpx.Response:
        """POST to the Klaviyo webhook route with exactly ``headers`` (plus the JSON content type)."""
        return httpx.post(f"{self.url}/webhooks/klaviyo/{retailer}", content=body,
                          headers={"Content-Type": "application/json", **headers}, timeout=10)

    def consent_counts(self) -> dict[str, dict[str, int]]:
        with SqliteStore.open(self.db) as store:
            return store.consent_counts()

    def kill(self) -> None:
        self.process.kill()

    def stop(self) -> None:
        self.process.stop()

    def restart(self) -> None:
        """Start again on the same port and the same SQLite file."""
        self.process.start()

    def counts(self) -> dict[str, dict[str, int]]:
        """Rows per status in the store: webhooks, jobs and events."""
        with SqliteStore.open(self.db) as store:
            return store.counts()

    def attempts(self, event_id: int) -> list[Any]:
        with SqliteStore.open(self.db) as store:
            return store.attempts(event_id)

    def engine(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run an ``engine`` command on this service's store, with the service's environment."""
        result = subprocess.run([sys.executable, "-m", "engine.cli", *args, "--db", str(self.db)], cwd=ROOT,
                                env=self.process.env, capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"engine {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
        return result

    def events(self) -> list[dict[str, Any]]:
        """``engine events --json``: every stored event with its delivery status, newest first."""
        return json.loads(self.engine("events", "--json").stdout)

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """GET /metrics as {(sample name, labels): value}."""
        response = httpx.get(f"{self.url}/metrics", timeout=5)
        response.raise_for_status()
        return {(s.name, frozenset(s.labels.items())): s.value
                for family in text_string_to_metric_families(response.text) for s in family.samples}

    def metric(self, name: str, **labels: str) -> float:
        """One sample of GET /metrics; 0 when the counter has no sample for these labels yet."""
        return self.metrics().get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="session")
def records_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo records, plus MANY_ORDERS: copies of the demo sale under other order ids."""
    folder = tmp_path_factory.mktemp("records")
    for path in DEMO_RECORDS.glob("*.json"):
        shutil.copy(path, folder / path.name)
    sale = json.loads((DEMO_RECORDS / "orders-detail.sale.json").read_text(encoding="utf-8"))["data"]["orders"][0]
    orders = [{**sale, "id": order_id} for order_id in MANY_ORDERS]
    broken = [dict(line) for line in sale["lines"]]
    broken[0] = {**broken[0], "softKit": {**broken[0]["softKit"], "quantityPerKit": 0}}
    orders.append({**sale, "id": BROKEN_KIT_ORDER, "lines": broken})
    orders.append({**sale, "id": NOT_OK_ORDER, "customer": {**sale["customer"], "id": "0000509999",
                                                              "emailAddress": "no.thanks@example.com",
                                                              "okToSolicit": False}})
    document = {"success": True, "message": None, "data": {"orders": orders}}
    (folder / "orders-detail.many.json").write_text(json.dumps(document), encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def _fake_processes(records_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fakes]:
    logs = tmp_path_factory.mktemp("fake-logs")
    klaviyo = Process("fake Klaviyo", [sys.executable, "-m", "engine.fakes.klaviyo"], env=_child_env(),
                      log=logs / "klaviyo.log", ready_path="/_received")
    storis = Process("fake STORIS", [sys.executable, "-m", "engine.fakes.storis", "--records", str(records_dir),
                                     "--client-id", "e2e-client", "--client-secret", "e2e-client-secret"],
                     env=_child_env(), log=logs / "storis.log", ready_path="/_requests")
    try:
        klaviyo.start()
        storis.start()
        yield Fakes(FakeKlaviyo(klaviyo), FakeStoris(storis))
    finally:
        klaviyo.stop()
        storis.stop()


@pytest.fixture
def fakes(_fake_processes: Fakes) -> Fakes:
    """The session's fakes, reset: nothing received, no failure switch set, fresh STORIS tokens."""
    _fake_processes.reset()
    return _fake_processes


@pytest.fixture
def many_orders() -> tuple[str, ...]:
    """Order ids the fake STORIS serves as copies of the demo sale (2001001), for webhooks with many entities."""
    return MANY_ORDERS


@pytest.fixture
def klaviyo(fakes: Fakes) -> FakeKlaviyo:
    return fakes.klaviyo


@pytest.fixture
def storis(fakes: Fakes) -> FakeStoris:
    return fakes.storis


@pytest.fixture
def start_service(fakes: Fakes, tmp_path: Path) -> Iterator[Callable[..., Service]]:
    """``start_service(**env)`` starts ``engine serve`` on a new SQLite file; ``env`` adds or overrides variables."""
    started: list[Process] = []

    def start(**env: str) -> Service:
        index = len(started)
        process = Process("engine serve", [sys.executable, "-m", "engine.cli", "serve", "--db",
                                           str(tmp_path / f"engine-{index}.sqlite3")],
                          env=_child_env(**{**fakes.demo_env(), "ENGINE_POLL_SECONDS": "0.1",
                                            "ENGINE_RETRY_BASE": "0.1", **env}),
                          log=tmp_path / f"serve-{index}.log", ready_path="/healthz")
        started.append(process)
        process.start()
        return Service(process, tmp_path / f"engine-{index}.sqlite3")

    try:
        yield start
    finally:
        for process in started:
            process.stop()
        for process in [*started, fakes.klaviyo.process, fakes.storis.process]:
            print(f"=== {process.name} log ({process.log}) ===\n{process.tail()}")


@pytest.fixture
def wait_for() -> Callable[..., Any]:
    """``wait_for(check, what, timeout=10)``: poll ``check()`` until it returns something truthy, and return it."""

    def wait(check: Callable[[], T], what: str, timeout: float = 10.0) -> T:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {value!r}")
            time.sleep(0.05)

    return wait
