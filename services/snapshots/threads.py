"""Thread pools for blocking calls made from the asyncio workers.

Event-store and view-database calls block (SQLite, psycopg); made on the event loop, a slow
write stalls the consumer's heartbeats and can cost the group membership. They run in a
pool of their own, apart from asyncio's default pool (which the snapshot copies use), so
that long copies never queue a store call and store calls never stall the loop."""

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class ThreadPool:
    """`await pool.run(fn, *args)` runs `fn` in one of this pool's threads."""

    def __init__(self, threads: int, name: str):
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)

    async def run(self, fn: Callable[..., T], *args, **kwargs) -> T:
        call = functools.partial(fn, *args, **kwargs) if kwargs else functools.partial(fn, *args)
        # In the caller's context, as asyncio.to_thread does: log lines keep its command.
        in_context = functools.partial(contextvars.copy_context().run, call)
        return await asyncio.get_running_loop().run_in_executor(self._executor, in_context)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class Wakeup:
    """An asyncio.Event that any thread may set: the store saves in its own threads and
    wakes the relay, whose loop runs in the main thread."""

    def __init__(self):
        self._event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def set(self) -> None:
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._event.set)
            except RuntimeError:  # the loop has closed: the worker is stopping
                pass

    async def wait(self, timeout: float) -> None:
        """Until set or `timeout` seconds; then cleared for the next wait."""
        self._loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            pass
        self._event.clear()
