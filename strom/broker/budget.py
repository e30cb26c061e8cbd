"""The broker-wide budget of request bytes held in memory
(`queued.max.request.bytes`, as Kafka names it).

A connection takes a frame's size from the budget when it reads the
frame's 4-byte length, before the body arrives, and gives it back once
the request has been answered (or the connection is gone). A connection
whose next frame does not fit stops reading and waits in line; bytes
given back wake the waiters in order. So partial frames and requests in
flight cost at most the budget in total, whatever the clients send.
One frame may always be taken when nothing else is held, so a limit set
below `socket.request.max.bytes` cannot wedge a connection for good.
"""

from collections import deque


class RequestBudget:
    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0
        self._waiting: deque = deque()  # callbacks of connections waiting for room

    def try_take(self, n: int) -> bool:
        if self.used + n <= self.limit or self.used == 0:
            self.used += n
            return True
        return False

    def give(self, n: int) -> None:
        self.used -= n
        if self._waiting:
            waiting, self._waiting = self._waiting, deque()
            for callback in waiting:  # each tries again, later, and may wait again
                callback()

    def wait(self, callback) -> None:
        """Call `callback` when bytes are given back."""
        self._waiting.append(callback)
