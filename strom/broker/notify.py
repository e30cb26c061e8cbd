"""Append notifications for long-polling fetches, on the broker's loop.

A Fetch that has fewer than `min_bytes` parks on the partitions it reads;
Produce calls `notify(log)` after each append, which wakes them.
"""

import asyncio


class AppendNotifier:
    def __init__(self):
        self._waiters: dict[object, set[asyncio.Future]] = {}
        self.stopping = False  # set by wake_all: a woken fetch must not park again

    def notify(self, key) -> None:
        waiters = self._waiters.pop(key, None)
        if waiters:
            for fut in waiters:
                if not fut.done():
                    fut.set_result(True)

    def wake_all(self) -> None:
        """At shutdown: every parked fetch answers now with what it has."""
        self.stopping = True
        for key in list(self._waiters):
            self.notify(key)

    async def wait_any(self, keys, timeout: float) -> bool:
        """Wait until one of `keys` is notified (True) or `timeout` passes.

        A timer resolves the same future, rather than `asyncio.wait_for`,
        whose extra waiter costs the woken fetch one more loop iteration."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        for key in keys:
            self._waiters.setdefault(key, set()).add(fut)
        timer = loop.call_later(timeout, _expire, fut)
        try:
            return await fut
        finally:
            timer.cancel()
            for key in keys:
                s = self._waiters.get(key)
                if s is not None:
                    s.discard(fut)
                    if not s:
                        del self._waiters[key]


def _expire(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(False)
