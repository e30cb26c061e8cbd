"""Named crash points for fault tests: the process SIGKILLs itself when it
reaches the point named by `STROM_CRASH_AT` (read once, at import).

A crash test starts a real broker process with `STROM_CRASH_AT=<name>`,
drives it to the point, and restarts it on the same data directory: the
crash is a real SIGKILL at an exact moment, which a kill from outside
cannot time. Unset (always, outside such tests), `reached` is one
comparison.
"""

import logging
import os
import signal

log = logging.getLogger(__name__)

_ARMED = os.environ.get("STROM_CRASH_AT") or None


def armed(name: str) -> bool:
    """Whether this run crashes at `name` (for code that orders its work
    so that the point can be reached at all)."""
    return _ARMED == name


def reached(name: str) -> None:
    if _ARMED is not None and name == _ARMED:
        log.warning("crash point %s reached: SIGKILL (STROM_CRASH_AT)", name)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os.kill(os.getpid(), signal.SIGKILL)
