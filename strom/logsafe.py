"""Client-supplied text in log lines: escaped, so that a client_id, topic,
group or member id holding a newline or a terminal escape cannot write a
line that looks like the broker's own.

`printable(s)` escapes what `str.isprintable` refuses (newlines, control
characters, Unicode line separators) the way `repr` does, and leaves
ordinary text alone. `EscapingFormatter` applies it to every message the
`strom serve` log writes, as a backstop for log calls that pass a client
string with %s; a traceback appended after the message is not touched.
"""

import logging


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
