"""One thread for every store call made from the event loop.

SQLite serialises writes anyway (the store holds one connection behind a lock), so more threads only
contend; and every extra thread that decodes JSON gets its own malloc arena, which made a long drain's
resident memory creep up with the backlog. One thread keeps both flat.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

_EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")


async def run(function: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``await run(store.method, ...)``: call it on the store thread without blocking the loop."""
    return await asyncio.get_running_loop().run_in_executor(_EXECUTOR, functools.partial(function, *args, **kwargs))
