"""Group commit: one fsync covers every append made before it.

Callers append, then ask to hear when an offset is durable. The flusher
thread takes all pending requests at once, fsyncs each log involved once,
and reports every request whose offset is now below the log's recovery
point. While one fsync runs, new requests queue up and share the next one,
so the cost is per fsync, not per append.

Two ways to ask: `request(log, offset, callback)` for one offset, and
`submit(requests, sink)` for many at once, whose results come back in one
call per log and round (the broker hands over the waits of a whole loop
pass this way: strom.broker.waits). Callbacks and sinks run on the flusher
thread and must only hand off (e.g. `loop.call_soon_threadsafe`).

The same thread honours `flush.messages` and `flush.ms` for logs that
nobody waits on (`watch`).
"""

import logging
import threading
import time

from strom.storage.log import PartitionLog, now_ms

log = logging.getLogger(__name__)

# flush.messages and flush.ms are honoured within this many seconds.
_SCAN_S = 0.1


def _call_each(results) -> None:
    for callback, error in results:
        callback(error)


class Flusher:
    def __init__(self):
        self._cond = threading.Condition()
        # log -> [(offset, token, sink)]: `sink([(token, error), ...])` is
        # called once per log and round with the requests that round settled.
        self._pending: dict[PartitionLog, list] = {}
        self._watched: set[PartitionLog] = set()
        self._running = True
        self.fsyncs = 0
        self._thread = threading.Thread(target=self._run, name="strom-flusher", daemon=True)
        self._thread.start()

    def submit(self, requests, sink) -> None:
        """Queue `(log, offset, token)` requests; `sink` hears of each."""
        with self._cond:
            pending = self._pending
            for plog, offset, token in requests:
                waiters = pending.get(plog)
                if waiters is None:
                    waiters = pending[plog] = []
                waiters.append((offset, token, sink))
            self._cond.notify()

    def request(self, plog: PartitionLog, offset: int, callback) -> None:
        """Call `callback(error_or_None)` once `offset` - 1 is durable."""
        if plog.recovery_point >= offset:
            callback(None)
        else:
            self.submit([(plog, offset, callback)], _call_each)

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
        _settle(waiters, None)

    def _run(self) -> None:
        # No commit delay here: a round starts as soon as the previous fsync
        # is done, with whatever arrived meanwhile. Batching belongs to the
        # callers (the broker hands over a whole loop pass at once). The
        # watched logs are looked at every _SCAN_S only: with thousands of
        # partitions, a scan per round would hold the GIL for longer than
        # the fsync itself.
        next_scan = 0.0
        while True:
            with self._cond:
                if not self._pending and self._running:
                    self._cond.wait(max(next_scan - time.monotonic(), 0.0))
                if not self._running and not self._pending:
                    return
                batch, self._pending = self._pending, {}
                scan = time.monotonic() >= next_scan
                watched = list(self._watched) if scan else ()
            if scan:
                next_scan = time.monotonic() + _SCAN_S
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
                if error is None:
                    point = plog.recovery_point
                    requeue = [w for w in waiters if w[0] > point]
                    if requeue:
                        waiters = [w for w in waiters if w[0] <= point]
                        with self._cond:
                            self._pending.setdefault(plog, []).extend(requeue)
                _settle(waiters, error)

    def close(self) -> None:
        with self._cond:
            self._running = False
            self._cond.notify()
        self._thread.join()


def _settle(waiters, error) -> None:
    """Report `error` (None: durable) to every waiter, one call per sink."""
    by_sink: dict = {}
    for _, token, sink in waiters:
        by_sink.setdefault(sink, []).append((token, error))
    for sink, results in by_sink.items():
        sink(results)

