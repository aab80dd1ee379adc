"""The backend's event loop for `async def` active methods: one thread, started on first use.
A call's thread waits for its coroutine there, in the call's own context (request scope)."""
from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any, Coroutine


def in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class EventLoop:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._creation = threading.Lock()  # one loop, made by whichever call needs it first

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            with self._creation:
                if self._loop is None:
                    loop = asyncio.new_event_loop()
                    threading.Thread(target=loop.run_forever, name="dataclay-async", daemon=True).start()
                    self._loop = loop
        return self._loop

    def run(self, coro: Coroutine) -> Any:
        """Run `coro` on the loop thread, in the caller's context, and wait for its result.
        Unbounded like any active method: it runs as long as user code runs."""
        loop = self._running_loop()
        context = contextvars.copy_context()
        done = threading.Event()
        outcome: list[Any] = []

        def start() -> None:
            task = loop.create_task(coro, context=context)
            task.add_done_callback(lambda t: (outcome.append(t), done.set()))

        loop.call_soon_threadsafe(start)
        done.wait()
        return outcome[0].result()
