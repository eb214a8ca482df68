"""Assembling the running service: mappings, connections, store, worker, app; and the demo wiring.

``engine serve --demo`` mounts a fake STORIS and a fake Klaviyo in the same process and points the ``demo``
retailer at them by setting its environment variables (only those not already set), so a fresh clone works
end to end with no credentials.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette

import server
from engine import loader
from engine.compile import Retailer
from engine.connections import Connections, resolve
from engine.paths import ROOT
from engine.sqlite_store import SqliteStore
from engine.store import Store
from engine.worker import Worker, WorkerSettings

DEFAULT_DB = Path(os.environ.get("ENGINE_DB", "var/engine.sqlite3"))
DEMO_RECORDS = ROOT / "demo" / "records"
DEMO_SECRET = "demo-secret"


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


def demo_environment(base_url: str) -> dict[str, str]:
    """The demo retailer's variables, pointing at the fakes mounted under ``base_url``."""
    return {
        "DEMO_WEBHOOK_SECRET": DEMO_SECRET,
        "DEMO_STORIS_URL": f"{base_url}/fake/storis",
        "DEMO_STORIS_CLIENT_ID": "demo",
        "DEMO_STORIS_CLIENT_SECRET": "demo-secret",
        "DEMO_KLAVIYO_URL": f"{base_url}/fake/klaviyo",
        "DEMO_KLAVIYO_API_KEY": "pk_demo",
    }


def build_app(service: Service, *, run_worker: bool = True, demo_records: Path | None = None,
              settings: WorkerSettings | None = None) -> Starlette:
    worker = Worker(store=service.store, retailers=service.retailers, connections=service.connections,
                    settings=settings) if run_worker else None
    extra = server.mount_demo_fakes(demo_records) if demo_records is not None else None
    return server.create_app(store=service.store, retailers=service.retailers, connections=service.connections,
                             worker=worker, extra_routes=extra)
