"""Sparse offset index and time index of one segment.

`.index`: entries of (relative offset u32, position u32), big-endian, 8
bytes each. Relative offset is `offset - segment.base_offset` of the first
offset of a batch; position is that batch's byte position in the `.log`.
An entry is added each time `index.interval.bytes` of log were appended
since the last one, so a lookup lands at most that many bytes before the
batch sought.

`.timeindex`: entries of (timestamp i64, relative offset u32), 12 bytes.
An entry is added together with an offset-index entry when the segment's
max timestamp grew, so timestamps in the file only increase.

Both are derived data: kept in memory for lookups, appended to their files
in bulk at flush, roll and close, never checksummed. `load` sanity-checks a file
against the log it indexes and raises SuspectIndexError so that the segment
rebuilds it by scanning batch headers. Only the thread appending to the
segment (or recovering it) writes an index.
"""

import struct
from array import array
from bisect import bisect_right

from strom.storage.errors import SuspectIndexError

class _Index:
    """Two parallel columns of entries, mirrored to an append-only file.
    Subclasses name the columns and the entry struct."""

    ENTRY: struct.Struct
    TYPES: tuple[str, str]

    def __init__(self, file):
        self._file = file
        self._written = 0  # entries already in the file; the rest go at sync
        self._clear()

    def _clear(self) -> None:
        self.first, self.second = array(self.TYPES[0]), array(self.TYPES[1])

    def _read_entries(self, what: str):
        data = self._file.pread(0, self._file.size)
        if len(data) % self.ENTRY.size:
            raise SuspectIndexError(f"{what} size is not a multiple of {self.ENTRY.size}")
        return self.ENTRY.iter_unpack(data)

    def _add(self, a: int, b: int) -> None:
        self.first.append(a)
        self.second.append(b)

    def __len__(self) -> int:
        return len(self.first)

    def reset(self) -> None:
        self._clear()
        self._file.truncate(0)
        self._written = 0

    def write_pending(self) -> None:
        """Append entries added since the last call to the file in one write
        (a write per entry would cost a syscall per produce)."""
        n = len(self.first)
        if n > self._written:
            pack = self.ENTRY.pack
            data = b"".join(pack(self.first[i], self.second[i]) for i in range(self._written, n))
            self._file.append([data], len(data))
            self._written = n

    def sync(self) -> None:
        self.write_pending()
        self._file.sync()

    def forget_written(self) -> None:
        """After a failed write: empty the file (best effort) so that no
        torn entry stays in it, and write every entry again next time."""
        self._written = 0
        try:
            self._file.truncate(0)
        except OSError:
            pass  # a torn file fails the size check at load and is rebuilt

    def close(self) -> None:
        self._file.close()


class OffsetIndex(_Index):
    ENTRY = struct.Struct(">II")
    TYPES = ("I", "I")

    @property
    def relative_offsets(self):
        return self.first

    @property
    def positions(self):
        return self.second

    def load(self, log_size: int) -> None:
        last_rel, last_pos = -1, -1
        for rel, pos in self._read_entries("offset index"):
            if rel <= last_rel or pos <= last_pos or pos >= log_size:
                raise SuspectIndexError("offset index entries are out of order or past the log")
            self._add(rel, pos)
            last_rel, last_pos = rel, pos
        self._written = len(self)

    def append(self, relative_offset: int, position: int) -> None:
        self._add(relative_offset, position)

    def lookup(self, relative_offset: int) -> int:
        """Position of the last indexed batch starting at or before the offset."""
        i = bisect_right(self.first, relative_offset)
        return self.second[i - 1] if i else 0

    def lookup_entry(self, relative_offset: int) -> tuple[int, int] | None:
        """(relative offset, position) of that entry, None before the first."""
        i = bisect_right(self.first, relative_offset)
        return (self.first[i - 1], self.second[i - 1]) if i else None


class TimeIndex(_Index):
    ENTRY = struct.Struct(">qI")
    TYPES = ("q", "I")

    @property
    def timestamps(self):
        return self.first

    @property
    def relative_offsets(self):
        return self.second

    def load(self, max_relative_offset: int) -> None:
        last_ts, last_rel = None, -1
        for ts, rel in self._read_entries("time index"):
            if (last_ts is not None and ts <= last_ts) or rel < last_rel or rel > max_relative_offset:
                raise SuspectIndexError("time index entries are out of order or past the log")
            self._add(ts, rel)
            last_ts, last_rel = ts, rel
        self._written = len(self)

    @property
    def last_timestamp(self) -> int | None:
        return self.first[-1] if self.first else None

    def maybe_append(self, timestamp: int, relative_offset: int) -> None:
        if not self.first or timestamp > self.first[-1]:
            self._add(timestamp, relative_offset)

    def lookup(self, timestamp: int) -> int:
        """Relative offset of the last entry with a timestamp below `timestamp`,
        from where a scan finds the first record at or after it; 0 if none."""
        i = bisect_right(self.first, timestamp - 1)
        return self.second[i - 1] if i else 0
