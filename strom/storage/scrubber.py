"""The background scrub: CRC-check, once, every batch no check covered since
the logs were opened, so that damage is found (and quarantined, see
strom.storage.segment) before a reader asks for it.

After a clean stop nothing is re-validated at start-up (that is what makes
start-up fast); this thread does that work afterwards, at a bounded rate, a
step of at most `step_bytes` at a time under each log's lock. Batches
appended since start-up were checked by the append, so once a pass is done
the thread sleeps until a log is watched again.
"""

import logging
import threading
import time

from strom.storage.errors import LogWriteError

log = logging.getLogger(__name__)

DEFAULT_SCRUB_BYTES_PER_S = 32 * 1024 * 1024
_STEP_BYTES = 1024 * 1024


class Scrubber:
    def __init__(self, bytes_per_s: int = DEFAULT_SCRUB_BYTES_PER_S, step_bytes: int = _STEP_BYTES):
        self.bytes_per_s = max(1, bytes_per_s)
        self.step_bytes = max(1, step_bytes)
        self._cond = threading.Condition()
        self._logs: list = []
        self._running = True
        self.checked_bytes = 0  # a metric
        self._thread = threading.Thread(target=self._run, name="strom-scrubber", daemon=True)
        self._thread.start()

    def watch(self, plog) -> None:
        with self._cond:
            if plog not in self._logs:
                self._logs.append(plog)
            self._cond.notify()

    def unwatch(self, plog) -> None:
        with self._cond:
            if plog in self._logs:
                self._logs.remove(plog)

    def _next(self):
        """A watched log with unchecked bytes, else None (and forget the rest)."""
        with self._cond:
            while self._logs:
                plog = self._logs[0]
                if plog.unverified_bytes and not plog.failed:
                    self._logs.append(self._logs.pop(0))  # round-robin
                    return plog
                self._logs.pop(0)
            return None

    def _run(self) -> None:
        started = time.monotonic()
        done = 0
        while True:
            with self._cond:
                if not self._running:
                    return
            plog = self._next()
            if plog is None:
                with self._cond:
                    if self._running and not self._logs:
                        self._cond.wait()
                started, done = time.monotonic(), 0
                continue
            try:
                n = plog.scrub(self.step_bytes)
            except LogWriteError:
                n = 0  # the log is offline now; reported by the log
            except Exception:
                log.exception("scrubbing %s failed; skipping it", plog.directory)
                self.unwatch(plog)
                n = 0
            done += n
            self.checked_bytes += n
            # Hold the average at bytes_per_s since the pass started.
            delay = started + done / self.bytes_per_s - time.monotonic()
            if delay > 0:
                with self._cond:
                    if self._running:
                        self._cond.wait(delay)

    def close(self) -> None:
        with self._cond:
            self._running = False
            self._cond.notify()
        self._thread.join()
