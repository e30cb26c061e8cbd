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

# Descriptors one new partition holds for good (its active `.log`); every
# other file goes through the medium's bounded FileCache (files.py).
FDS_PER_PARTITION = files.FDS_PER_PARTITION
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
    return max(64, limit // 4)


def file_cache_size(limit: int) -> int:
    """How many files the medium's cache may keep open under `limit`."""
    if limit <= 0:
        return files.DEFAULT_MAX_OPEN_FILES
    return min(files.DEFAULT_MAX_OPEN_FILES, max(16, limit // 8))


def open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # no procfs: count nothing, the limit check stays honest on Linux
        return 0


def cache_headroom(medium) -> int:
    """Descriptors the medium's file cache may still open (it is counted in
    what is open now only as far as it is full)."""
    cache = getattr(medium, "file_cache", None)
    return max(cache.max_open_files - cache.open_files, 0) if cache is not None else 0


def check_create(limit: int, partitions: int, existing: int = 0, headroom: int = 0) -> None:
    """Raise TooManyPartitionsError unless a topic may grow from `existing`
    to `partitions` partitions within the cap and the descriptor budget
    (`headroom`: descriptors already promised elsewhere, the file cache's)."""
    if partitions > MAX_PARTITIONS:
        raise TooManyPartitionsError(
            f"{partitions} partitions is more than the {MAX_PARTITIONS} a topic may have"
        )
    new = partitions - existing
    if limit <= 0 or new <= 0:
        return
    used = open_fds() + headroom
    need = new * FDS_PER_PARTITION
    free = limit - reserve(limit) - used
    if need > free:
        raise TooManyPartitionsError(
            f"{new} new partitions need {need} file descriptors, but only {max(free, 0)} "
            f"of the limit of {limit} are free ({used} open or kept for the file cache, "
            f"{reserve(limit)} for connections): raise `ulimit -n` (the hard limit) or "
            f"create fewer partitions"
        )
