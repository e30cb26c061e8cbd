"""The aborted-transaction index of one segment: `.txnindex`, Kafka's layout.

One entry per transaction aborted by an ABORT marker in this segment, in
the order the markers were written (so `last_offset` only grows). Each
entry is 34 bytes, big-endian, as Kafka's AbortedTxn:

    version            int16   0
    producer_id        int64
    first_offset       int64   the transaction's first offset in this partition
    last_offset        int64   the offset of its ABORT marker
    last_stable_offset int64   the LSO right after the marker was written

read_committed fetches use it to tell the client which producers' batches
to drop (PartitionLog.aborted_transactions): an entry concerns a fetch of
[start, end) when `last_offset >= start and first_offset < end`, and
`last_stable_offset >= end` says no later entry can (every transaction
still open then started at or after it).

Derived data, like the other indexes: kept in memory, written (one entry
at a time: one per ABORT marker) to the file, fsynced with the segment's
other indexes when the segment leaves the active role, after a rebuild or
a compaction rewrote it, and at a clean close (a clean stop's segments are
trusted at the next start, their indexes included), rebuilt by the
log's recovery (transactions.rebuild) after an unclean stop, or when the
file is missing or fails `load`'s checks. A file is never a reason to
change the log. Written only under the log's lock.

A failed write or fsync removes the file at once: a file short of entries
passes every check `load` can make, and a segment below the recovery point
is trusted after an unclean stop too, so only a missing file is sure to be
rebuilt. The entries in memory keep serving; a clean close writes the file
whole again.
"""

import logging
import struct
from typing import NamedTuple

from strom.storage.errors import SuspectIndexError

log = logging.getLogger(__name__)

ENTRY = struct.Struct(">hqqqq")
ENTRY_SIZE = ENTRY.size  # 34
VERSION = 0
# The smallest batch a marker can be (header + one record): bounds how many
# entries a segment of a given size can hold, so a hostile file is refused
# before it is read, not after.
_MIN_MARKER_BYTES = 61 + 8
_CHUNK = ENTRY_SIZE * 2048


class AbortedTxn(NamedTuple):
    producer_id: int
    first_offset: int
    last_offset: int
    last_stable_offset: int


class TxnIndex:
    def __init__(self, file, medium=None, path: str = ""):
        self._file = file
        self._medium = medium  # with `path`: where the file is, to remove it
        self._path = path
        self.entries: list[AbortedTxn] = []
        # A write failed: the file is gone (or may lack entries, if even the
        # removal failed); the segment writes it whole at close.
        self.failed = False
        self.dirty = False  # written since the last fsync

    def load(self, base_offset: int, next_offset: int, log_size: int) -> None:
        """Read and check the file against the segment it indexes; raise
        SuspectIndexError if it cannot be right (the caller rebuilds it)."""
        size = self._file.size
        if size % ENTRY_SIZE:
            raise SuspectIndexError(f"transaction index size {size} is not a multiple of {ENTRY_SIZE}")
        if size // ENTRY_SIZE > min(log_size // _MIN_MARKER_BYTES, next_offset - base_offset):
            raise SuspectIndexError("transaction index has more entries than the log has markers")
        entries, last = [], base_offset - 1
        for pos in range(0, size, _CHUNK):  # a bad entry stops the read where it is
            for version, pid, first, last_offset, lso in ENTRY.iter_unpack(
                    self._file.pread(pos, min(_CHUNK, size - pos))):
                if (version != VERSION or pid < 0 or first < 0 or first > last_offset
                        or last_offset <= last or last_offset >= next_offset
                        or not 0 <= lso <= last_offset + 1):
                    raise SuspectIndexError(f"transaction index entry ({pid}, {first}, "
                                            f"{last_offset}) does not fit the segment")
                entries.append(AbortedTxn(pid, first, last_offset, lso))
                last = last_offset
        self.entries = entries

    def append(self, entry: AbortedTxn) -> None:
        self.entries.append(entry)
        if self.failed:
            return
        data = ENTRY.pack(VERSION, *entry)
        self.dirty = True
        try:
            self._file.append([data], len(data))
        except OSError as e:
            self.write_failed(e)

    def reset(self, entries: list[AbortedTxn] = ()) -> None:
        """Replace every entry (a rebuild, or a cleaned segment's survivors).
        A failed write removes the file (`write_failed`), it does not raise."""
        self.entries = list(entries)
        if not self.entries and not self._file.size and not self.failed:
            return  # already so: nothing to write or fsync
        self.dirty = True
        try:
            self._file.truncate(0)
            if self.entries:
                data = b"".join(ENTRY.pack(VERSION, *e) for e in self.entries)
                self._file.append([data], len(data))
        except OSError as e:
            self.write_failed(e)
            return
        self.failed = False

    def truncate_to(self, offset: int) -> None:
        """Drop the entries whose marker is at or past `offset`."""
        kept = [e for e in self.entries if e.last_offset < offset]
        if len(kept) != len(self.entries):
            self.reset(kept)

    def sync(self) -> None:
        """fsync if written since the last one. A failure removes the file
        (`write_failed`), it does not raise."""
        if self.dirty and not self.failed:
            try:
                self._file.sync()
            except OSError as e:
                self.write_failed(e)
                return
            self.dirty = False

    def write_failed(self, error: OSError) -> None:
        """A write or fsync of the file failed: it may lack entries, so it
        goes now (a missing file is rebuilt at load; a short one would be
        trusted). The entries in memory stay and serve."""
        self.failed = True
        self.dirty = False  # nothing left to fsync (a sync would recreate the file)
        if self._medium is None:
            return
        try:
            self._medium.remove(self._path)
            self._medium.sync_dir(self._path.rpartition("/")[0])
        except OSError as e:
            log.error("%s: writing the transaction index failed (%s), and removing it failed "
                      "too (%s): after an unclean stop it may be trusted short", self._path,
                      error, e)
            return
        log.warning("%s: writing the transaction index failed (%s): removed; the next start "
                    "rebuilds it", self._path, error)

    def close(self) -> None:
        self._file.close()
