"""The broker-wide budget of request bytes held in memory
(`queued.max.request.bytes`, as Kafka names it).

A connection takes a frame's size from the budget when it reads the
frame's 4-byte length, before the body arrives, and gives it back once
the request has been answered (or the connection is gone). A connection
whose next frame does not fit stops reading and waits in line; bytes
given back wake the waiters. So partial frames and requests in flight
cost at most the budget in total, whatever the clients send.

Large frames (over LARGE_FRAME bytes) may hold at most half of it: a
client that announces big frames and sends them slowly, or never, can
make other big frames wait but not the small requests every client
lives on (metadata, heartbeats, commits, ordinary produce). One frame
may always be taken when nothing else of its kind is held, so a limit
set below `socket.request.max.bytes` cannot wedge a connection for good.
"""

from collections import deque

LARGE_FRAME = 1 << 20


class RequestBudget:
    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0
        self.large_used = 0
        self._waiting: deque = deque()  # callbacks of connections waiting for room

    def try_take(self, n: int) -> bool:
        if n > LARGE_FRAME:
            if self.large_used and (self.large_used + n > self.limit // 2
                                    or self.used + n > self.limit):
                return False
            self.large_used += n
        else:
            small = self.used - self.large_used
            if small and small + n + min(self.large_used, self.limit // 2) > self.limit:
                return False
        self.used += n
        return True

    def give(self, n: int) -> None:
        self.used -= n
        if n > LARGE_FRAME:
            self.large_used -= n
        if self._waiting:
            waiting, self._waiting = self._waiting, deque()
            for callback in waiting:  # each tries again, later, and may wait again
                callback()

    def wait(self, callback) -> None:
        """Call `callback` when bytes are given back."""
        self._waiting.append(callback)
