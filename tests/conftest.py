from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


@pytest.fixture
def anyio_backend() -> str:
    """The async tests (``pytest.mark.anyio``) run on asyncio, as the service does."""
    return "asyncio"


@pytest.fixture
def shared() -> Path:
    """The read-only shared folder beside the project's clone; tests that need it skip without it."""
    if not (SHARED / "storis").is_dir():
        pytest.skip(f"the shared folder is not beside this clone ({SHARED})")
    return SHARED


@pytest.fixture(scope="session")
def serve() -> Callable[[ASGIApp], contextlib.AbstractContextManager[str]]:
    """``with serve(app) as base_url:`` runs the app on a real server (test modules cannot import conftest).

    Session-scoped because it is only a function: fixtures of any scope can start servers with it.
    """
    return _serve


@contextlib.contextmanager
def _serve(app: ASGIApp) -> Iterator[str]:
    """Run ``app`` under a real uvicorn server on an ephemeral loopback port; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           lifespan="off", ws="none"))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        # Any answer (a 404 included) shows the app is serving, whatever routes it has.
        httpx.get(f"{base}/", timeout=5)
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)
