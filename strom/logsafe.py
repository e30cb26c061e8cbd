"""Client-supplied text in log lines: escaped, so that a client_id, topic,
group or member id holding a newline or a terminal escape cannot write a
line that looks like the broker's own.

`printable(s)` escapes what `str.isprintable` refuses (newlines, control
characters, Unicode line separators) the way `repr` does, and leaves
ordinary text alone. `EscapingFormatter` applies it to every message the
`strom serve` log writes, as a backstop for log calls that pass a client
string with %s; a traceback appended after the message is not touched.

`LogLimiter` bounds how many lines of one kind clients can make the broker
write (a client that opens connections only to send garbage would
otherwise fill the disk with warnings): the lines over its rate are
counted, and the count is written with the next line let through.
"""

import logging
import time


def printable(value) -> str:
    """`value` as text that stays on one line and writes no control codes."""
    s = value if isinstance(value, str) else str(value)
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)


class EscapingFormatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)


class LogLimiter:
    """At most `per_second` lines a second (bursts of that many) through
    `log(level, msg, *args)`; the rest are counted and reported later."""

    def __init__(self, logger: logging.Logger, per_second: float = 10.0):
        self.logger = logger
        self.rate = per_second
        self._tokens = per_second
        self._last = time.monotonic()
        self.suppressed = 0

    def log(self, level: int, msg: str, *args) -> None:
        now = time.monotonic()
        self._tokens = min(self.rate, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens < 1:
            self.suppressed += 1
            return
        self._tokens -= 1
        if self.suppressed:
            msg += " (%d similar lines suppressed)"
            args += (self.suppressed,)
            self.suppressed = 0
        self.logger.log(level, msg, *args)
