"""Peer servers that the benchmarks run beside Skyrelay, each on loopback only.

- ``socketio_server``: python-socketio on aiohttp; room "bench", ``POST /publish``.
- ``pushpin``: helpers to run Debian's Pushpin with an SSE origin and to build publish bodies.
- ``selfcheck``: starts each peer on free loopback ports and checks deliveries end to end.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
from collections.abc import Callable, Coroutine
from typing import Any


def run_async(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on uvloop when it is installed (as Skyrelay does), else on asyncio's loop.

    Ctrl-C ends quietly; SIGTERM keeps its default action (exit at once), which is all a
    benchmark peer needs.
    """
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if importlib.util.find_spec("uvloop") is not None:
        factory = importlib.import_module("uvloop").new_event_loop
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(main)
    except KeyboardInterrupt:
        pass
