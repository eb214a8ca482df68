"""Assembling the running service: mappings, connections, store, worker, app; and the demo wiring.

``engine serve --demo`` mounts a fake STORIS and a fake Klaviyo in the same process and points the ``demo``
retailer at them by setting its environment variables (only those not already set), so a fresh clone works
end to end with no credentials.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount

import server
from engine import loader
from engine.compile import Retailer
from engine.connections import Connections, resolve
from engine.errors import ConfigError
from engine.fakes import klaviyo as fake_klaviyo
from engine.fakes import storis as fake_storis
from engine.paths import ROOT
from engine.retry import RetryPolicy
from engine.sqlite_store import SqliteStore
from engine.store import Store
from engine.worker import Worker, WorkerSettings

DEFAULT_DB = Path(os.environ.get("ENGINE_DB", "var/engine.sqlite3"))
DEMO_RECORDS = ROOT / "demo" / "records"
DEMO_SECRET = "demo-secret"
WORKER_ENVIRONMENT = """\
worker pacing, for tests and drills that cannot wait minutes (leave unset in production):
  ENGINE_POLL_SECONDS   how often an idle worker looks for due work (default 1)
  ENGINE_LEASE_SECONDS  how long a claimed job or event stays with its worker before another may take
                        it, e.g. after a crash (default 120)
  ENGINE_RETRY_BASE     the longest wait before the first retry; each later one doubles, up to 600 s
                        (default 2)"""


@dataclass
class Service:
    store: Store
    retailers: dict[str, Retailer]
    connections: dict[str, Connections]


def open_service(db: Path) -> Service:
    retailers = loader.load_all()
    db.parent.mkdir(parents=True, exist_ok=True)
    return Service(store=SqliteStore.open(db), retailers=retailers,
                   connections={name: resolve(retailer) for name, retailer in retailers.items()})


def worker_settings(env: Mapping[str, str] | None = None) -> WorkerSettings:
    """The worker's pacing: the defaults, except what ``WORKER_ENVIRONMENT``'s variables set."""
    env = os.environ if env is None else env
    defaults = WorkerSettings()

    def seconds(name: str, default: float, *, most: float = math.inf) -> float:
        text = env.get(name)
        if not text:
            return default
        try:
            value = float(text)
        except ValueError as exc:
            raise ConfigError(f"{name}: expected a number of seconds, got {text!r}") from exc
        if not (math.isfinite(value) and 0 < value <= most):
            raise ConfigError(f"{name}: expected seconds above 0 and at most {most:g}, got {text!r}")
        return value

    cap = defaults.retry.cap
    return WorkerSettings(poll_seconds=seconds("ENGINE_POLL_SECONDS", defaults.poll_seconds),
                          lease_seconds=seconds("ENGINE_LEASE_SECONDS", defaults.lease_seconds),
                          retry=RetryPolicy(base=seconds("ENGINE_RETRY_BASE", defaults.retry.base, most=cap),
                                            cap=cap))


def demo_environment(base_url: str) -> dict[str, str]:
    """The demo retailer's variables, pointing at the fakes mounted under ``base_url``."""
    return {
        "DEMO_WEBHOOK_SECRET": DEMO_SECRET,
        "DEMO_STORIS_URL": f"{base_url}/fake/storis",
        "DEMO_STORIS_CLIENT_ID": "demo",
        "DEMO_STORIS_CLIENT_SECRET": "demo-secret",
        "DEMO_KLAVIYO_URL": f"{base_url}/fake/klaviyo",
        "DEMO_KLAVIYO_API_KEY": "pk_demo",
        "DEMO_KLAVIYO_WEBHOOK_SECRET": "demo-klaviyo-secret",
    }


def _demo_fakes(records_dir: Path) -> list[BaseRoute]:
    """The fake STORIS and fake Klaviyo that `engine serve --demo` mounts beside the service."""
    return [Mount("/fake/storis", app=fake_storis.create_app(records_dir=records_dir)),
            Mount("/fake/klaviyo", app=fake_klaviyo.create_app())]


def build_app(service: Service, *, run_worker: bool = True, demo_records: Path | None = None,
              settings: WorkerSettings | None = None) -> Starlette:
    worker = Worker(store=service.store, retailers=service.retailers, connections=service.connections,
                    settings=settings) if run_worker else None
    extra = _demo_fakes(demo_records) if demo_records is not None else None
    return server.create_app(store=service.store, retailers=service.retailers, connections=service.connections,
                             worker=worker, extra_routes=extra)
