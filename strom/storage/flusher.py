"""Group commit: one fsync covers every append made before it.

Callers append, then `request(log, offset, callback)`. The flusher thread
takes all pending requests at once, fsyncs each log involved once, and
calls back every waiter whose offset is now below the log's recovery
point. While one fsync runs, new requests queue up and share the next one,
so the cost is per fsync, not per append. Callbacks run on the flusher
thread and must only hand off (e.g. `loop.call_soon_threadsafe`).

The same thread honours `flush.messages` and `flush.ms` for logs that
nobody waits on (`watch`).
"""

import logging
import threading


from strom.storage.log import PartitionLog, now_ms

log = logging.getLogger(__name__)

_IDLE_WAIT_S = 0.1


class Flusher:
    def __init__(self):
        self._cond = threading.Condition()
        self._pending: dict[PartitionLog, list] = {}
        self._watched: set[PartitionLog] = set()
        self._running = True
        self.fsyncs = 0
        self._thread = threading.Thread(target=self._run, name="strom-flusher", daemon=True)
        self._thread.start()

    def request(self, plog: PartitionLog, offset: int, callback) -> None:
        """Call `callback(error_or_None)` once `offset` - 1 is durable."""
        if plog.recovery_point >= offset:
            callback(None)
            return
        with self._cond:
            self._pending.setdefault(plog, []).append((offset, callback))
            self._cond.notify()

    def flush_sync(self, plog: PartitionLog, offset: int, timeout: float | None = None) -> None:
        """Block until everything below `offset` is durable (for threads)."""
        done = threading.Event()
        error: list = []
        self.request(plog, offset, lambda e: (error.append(e), done.set()))
        if not done.wait(timeout):
            raise TimeoutError("flush did not complete in time")
        if error[0]:
            raise error[0]

    def watch(self, plog: PartitionLog) -> None:
        with self._cond:
            self._watched.add(plog)

    def unwatch(self, plog: PartitionLog) -> None:
        with self._cond:
            self._watched.discard(plog)
            waiters = self._pending.pop(plog, [])
        for _, cb in waiters:
            cb(None)

    def _run(self) -> None:
        # No commit delay: a round starts as soon as the previous fsync is
        # done, with whatever arrived meanwhile. Measured with 8 producers
        # on an event loop, waiting for stragglers made rounds longer
        # without making them fuller (bench/storage.py).
        while True:
            with self._cond:
                if not self._pending and self._running:
                    self._cond.wait(_IDLE_WAIT_S)
                if not self._running and not self._pending:
                    return
                batch, self._pending = self._pending, {}
                watched = list(self._watched)
            now = now_ms()
            for plog in watched:
                if plog not in batch and plog.needs_flush(now):
                    batch[plog] = []
            for plog, waiters in batch.items():
                error = None
                try:
                    plog.flush()
                    self.fsyncs += 1
                except Exception as e:  # sticky in the log; report to waiters
                    error = e
                requeue = []
                for offset, cb in waiters:
                    if error or plog.recovery_point >= offset:
                        cb(error)
                    else:
                        requeue.append((offset, cb))
                if requeue:
                    with self._cond:
                        self._pending.setdefault(plog, []).extend(requeue)

    def close(self) -> None:
        with self._cond:
            self._running = False
            self._cond.notify()
        self._thread.join()


