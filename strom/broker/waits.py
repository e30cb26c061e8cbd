"""Durability waits on the broker's event loop, handed to the storage
flusher (group commit) once per loop pass.

The waits made during one pass of the loop go to the flusher together at
the end of the pass, and each log's results come back in one
`call_soon_threadsafe`. Handing them over one by one let the first writer
that a finished fsync woke start the next fsync alone: 8 producers settled
into two cohorts of 4, two fsyncs per 8 appends (bench/storage.py).
"""

import asyncio

from strom.storage.flusher import Flusher
from strom.storage.log import PartitionLog


class LoopWaits:
    """Durability waits for one event loop (see the module docstring).
    Loop thread only, but `_sink`."""

    def __init__(self, flusher: Flusher, loop: asyncio.AbstractEventLoop):
        self._flusher = flusher
        self._loop = loop
        self._queued: list = []

    def wait(self, plog: PartitionLog, offset: int) -> asyncio.Future:
        """A future resolved with None once everything below `offset` is
        fsynced (at once for logs in memory), or with the write error that
        prevented it."""
        fut = self._loop.create_future()
        if not plog.medium.durable or plog.recovery_point >= offset:
            fut.set_result(None)
            return fut
        if not self._queued:
            # call_soon runs after every callback already scheduled for this
            # pass: the writers woken together have all appended by then.
            self._loop.call_soon(self._hand_over)
        self._queued.append((plog, offset, fut))
        return fut

    def _hand_over(self) -> None:
        queued, self._queued = self._queued, []
        self._flusher.submit(queued, self._sink)

    def _sink(self, results) -> None:  # on the flusher thread
        try:
            self._loop.call_soon_threadsafe(_resolve, results)
        except RuntimeError:  # the loop is closed: nobody is waiting
            pass


def _resolve(results) -> None:
    for fut, error in results:
        if not fut.done():
            fut.set_result(error)
