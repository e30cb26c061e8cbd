"""Append notifications for long-polling fetches, on the broker's loop.

A Fetch that has fewer than `min_bytes` parks on the partitions it reads;
Produce calls `notify(log)` after each append, which wakes them.
"""

import asyncio


class AppendNotifier:
    def __init__(self):
        self._waiters: dict[object, set[asyncio.Future]] = {}

    def notify(self, key) -> None:
        waiters = self._waiters.pop(key, None)
        if waiters:
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    async def wait_any(self, keys, timeout: float) -> bool:
        """Wait until one of `keys` is notified or `timeout` passes."""
        fut = asyncio.get_running_loop().create_future()
        for key in keys:
            self._waiters.setdefault(key, set()).add(fut)
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            for key in keys:
                s = self._waiters.get(key)
                if s is not None:
                    s.discard(fut)
                    if not s:
                        del self._waiters[key]
