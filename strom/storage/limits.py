"""File descriptor budget: raise the soft limit at start-up, refuse what won't fit.

A partition costs descriptors for its open segment files; a create that
would take the process past its RLIMIT_NOFILE would fail midway (EMFILE)
and leave the broker unable to accept a connection or roll a segment. So
the soft limit is raised to the hard one when the log manager starts, and
every create (CreateTopics, CreatePartitions, auto-create) is checked
against what is open now plus what the new partitions will hold, keeping
a reserve for connections and segment rolls.
"""

import logging
import os

from strom.storage import files
from strom.storage.errors import TooManyPartitionsError

log = logging.getLogger(__name__)

# Descriptors one new partition holds: files.py states it once the open-file
# cache exists; until then an active segment holds its .log, .index and
# .timeindex open.
FDS_PER_PARTITION = getattr(files, "FDS_PER_PARTITION", 3)
# The most partitions one topic may have (Kafka has no hard cap; a create of
# 100,000 is a typo or an attack on a single node).
MAX_PARTITIONS = 10_000


def raise_nofile_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the soft limit
    now in force (0 where the platform has no such limit)."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as e:
            log.warning("could not raise the open files limit from %d to %d: %s", soft, hard, e)
    elif hard == resource.RLIM_INFINITY and soft != hard:
        try:  # Linux refuses an infinite nofile; ask for a large finite one
            resource.setrlimit(resource.RLIMIT_NOFILE, (1 << 20, hard))
            soft = 1 << 20
        except (ValueError, OSError):
            pass
    return soft


def reserve(limit: int) -> int:
    """Descriptors kept free for connections, segment rolls and the rest of
    the process."""
    return max(256, limit // 8)


def open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # no procfs: count nothing, the limit check stays honest on Linux
        return 0


def check_create(limit: int, partitions: int, existing: int = 0) -> None:
    """Raise TooManyPartitionsError unless a topic may grow from `existing`
    to `partitions` partitions within the cap and the descriptor budget."""
    if partitions > MAX_PARTITIONS:
        raise TooManyPartitionsError(
            f"{partitions} partitions is more than the {MAX_PARTITIONS} a topic may have"
        )
    new = partitions - existing
    if limit <= 0 or new <= 0:
        return
    used = open_fds()
    need = new * FDS_PER_PARTITION
    free = limit - reserve(limit) - used
    if need > free:
        raise TooManyPartitionsError(
            f"{new} new partitions need about {need} file descriptors, but only {max(free, 0)} "
            f"of the limit of {limit} are free ({used} open, {reserve(limit)} kept for "
            f"connections): raise `ulimit -n` (the hard limit) or create fewer partitions"
        )
