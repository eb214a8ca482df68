"""Webhooks accepted per second, with the durable commit, against a bare endpoint that only answers 202.

Both run as their own uvicorn processes on loopback, one after the other in the same run, under the same
load from wrk (a separate process; `apt-get install wrk`): every request a distinct OrderWrittenSale
envelope (bench/webhooks.lua), so none is a duplicate. The service runs `engine serve --no-worker`
(receiving only) with a fresh SQLite store: each 202 it answers means the webhook is committed.
Reports both rates, their ratio, and p50/p99 latency.
Run: `python -m bench.server [--seconds S] [--connections C]` from the project folder.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bench.common import ROOT, free_port, process

SECRET = "bench-secret"


async def _accepted(request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse({"status": "accepted"}, status_code=202)


async def _healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


bare = Starlette(routes=[Route("/webhooks/storis/{retailer}", _accepted, methods=["POST"]),
                         Route("/healthz", _healthz)])


def wrk(url: str, seconds: int, connections: int) -> tuple[float, float, float, int]:
    """(requests/s, p50 ms, p99 ms, non-2xx count) from one wrk run."""
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
                          "-s", str(ROOT / "bench" / "webhooks.lua"), url],
                         capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])
    p50, p99 = (_ms(re.search(rf"\s{p}%\s+([\d.]+\w+)", out)[1]) for p in ("50", "99"))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rate, p50, p99, int(errors[1]) if errors else 0


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def measure(name: str, args: list[str], env: dict[str, str], seconds: int, connections: int) -> float:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with process([*args, "--port", str(port)], health_url=f"{base}/healthz", env=env):
        wrk(f"{base}/webhooks/storis/demo", 2, connections)
        rate, p50, p99, errors = wrk(f"{base}/webhooks/storis/demo", seconds, connections)
    print(f"{name:<36} {rate:8,.0f} webhooks/s   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms   non-202: {errors}")
    return rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("this benchmark needs wrk on the PATH (apt-get install wrk)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        bare_rate = measure("bare Starlette endpoint (202 only)",
                            ["-m", "uvicorn", "bench.server:bare", "--log-level", "warning"], {},
                            args.seconds, args.connections)
        service_rate = measure("engine serve (durable commit)",
                               ["-m", "engine.cli", "serve", "--no-worker", "--db", str(Path(tmp) / "b.sqlite3")],
                               {"DEMO_WEBHOOK_SECRET": SECRET}, args.seconds, args.connections)
    print(f"service / bare: {service_rate / bare_rate:.2f} (target at least 0.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
