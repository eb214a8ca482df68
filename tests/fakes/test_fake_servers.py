"""Both fakes behind real uvicorn servers on loopback, as the engine meets them: in a thread and as commands."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from engine.fakes import klaviyo, storis

REPO = Path(__file__).resolve().parents[2]
HEADERS = {"Authorization": "Klaviyo-API-Key pk_live_wxyz", "revision": "2026-07-15"}
EVENT = {"data": {"type": "event", "attributes": {
    "properties": {}, "unique_id": "order:2001001",
    "metric": {"data": {"type": "metric", "attributes": {"name": "Completed Purchase"}}},
    "profile": {"data": {"type": "profile", "attributes": {"email": "ada@example.com"}}}}}}
Serve = Callable[..., contextlib.AbstractContextManager[str]]


def test_klaviyo_over_http(serve: Serve) -> None:
    with serve(klaviyo.create_app(limits=klaviyo.Limits(create_event=(1, 10)))) as base, httpx.Client(
            base_url=base) as client:
        assert client.post("/api/events", json=EVENT, headers=HEADERS).status_code == 202
        throttled = client.post("/api/events", json=EVENT, headers=HEADERS)
        assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "1")
        assert client.get("/_received").json() == [EVENT]
        assert [(r["status"], r["key"]) for r in client.get("/_requests").json()] == [(202, "wxyz"), (429, "wxyz")]


def test_klaviyo_timeout_mode_makes_the_client_time_out(serve: Serve) -> None:
    with serve(klaviyo.create_app()) as base, httpx.Client(base_url=base) as client:
        client.post("/_fail", json={"mode": "timeout", "seconds": 0.5, "count": 1})
        with pytest.raises(httpx.ReadTimeout):
            client.post("/api/events", json=EVENT, headers=HEADERS, timeout=0.1)
        # The slow request still lands, as it would at Klaviyo: the retry is then deduplicated.
        assert client.post("/api/events", json=EVENT, headers=HEADERS).status_code == 202
        deadline = time.monotonic() + 2
        while len(client.get("/_requests").json()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(client.get("/_received").json()) == 1


def test_klaviyo_html_failure_over_http(serve: Serve) -> None:
    with serve(klaviyo.create_app()) as base, httpx.Client(base_url=base) as client:
        client.post("/_fail", json={"mode": "html", "status": 503, "count": 1})
        response = client.get("/api/accounts", headers=HEADERS)
        assert response.status_code == 503
        assert response.headers["content-type"].startswith("text/html")


def test_storis_over_http(serve: Serve, records_dir: Path) -> None:
    with serve(storis.create_app(records_dir=records_dir)) as base, httpx.Client(base_url=base) as client:
        token = client.post("/api/authenticate", auth=("demo", "demo-secret")).json()["token"]["access_token"]
        orders = client.get("/api/Orders/Detail", params={"OrderIds": ["S-1", "Q-1"]},
                            headers={"Authorization": f"Bearer {token}"})
        assert [o["id"] for o in orders.json()["data"]["orders"]] == ["S-1", "Q-1"]


@contextlib.contextmanager
def command(*args: str) -> Iterator[str]:
    """Start ``python -m <args>`` on port 0; yields the base URL uvicorn reports."""
    with subprocess.Popen([sys.executable, "-m", *args, "--port", "0"], cwd=REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as process:
        try:
            assert process.stderr is not None
            for line in process.stderr:
                found = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", line)
                if found:
                    yield found.group(1)
                    break
            else:
                pytest.fail(f"{' '.join(args)} exited with {process.wait()} before serving")
        finally:
            process.terminate()
            process.wait(timeout=10)


def test_klaviyo_runs_standalone() -> None:
    with command("engine.fakes.klaviyo", "--host", "127.0.0.1") as base:
        assert httpx.post(f"{base}/api/events", json=EVENT, headers=HEADERS).status_code == 202


def test_storis_runs_standalone() -> None:
    with command("engine.fakes.storis", "--records", str(REPO / "demo" / "records")) as base:
        assert httpx.post(f"{base}/api/authenticate", auth=("demo", "demo-secret")).status_code == 200


def test_storis_command_reports_bad_records(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("{", encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "engine.fakes.storis", "--records", str(tmp_path)], cwd=REPO,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "broken.json: not readable JSON" in result.stderr
