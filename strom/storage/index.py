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

_OFFSET_ENTRY = struct.Struct(">II")
_TIME_ENTRY = struct.Struct(">qI")


class OffsetIndex:
    def __init__(self, file):
        self._file = file
        self.relative_offsets = array("I")
        self.positions = array("I")
        self._written = 0  # entries already in the file; the rest go at sync

    def load(self, log_size: int) -> None:
        data = self._file.pread(0, self._file.size)
        if len(data) % _OFFSET_ENTRY.size:
            raise SuspectIndexError("offset index size is not a multiple of 8")
        last_rel, last_pos = -1, -1
        for rel, pos in _OFFSET_ENTRY.iter_unpack(data):
            if rel <= last_rel or pos <= last_pos or pos >= log_size:
                raise SuspectIndexError("offset index entries are out of order or past the log")
            self.relative_offsets.append(rel)
            self.positions.append(pos)
            last_rel, last_pos = rel, pos
        self._written = len(self.positions)

    def append(self, relative_offset: int, position: int) -> None:
        self.relative_offsets.append(relative_offset)
        self.positions.append(position)

    def lookup(self, relative_offset: int) -> int:
        """Position of the last indexed batch starting at or before the offset."""
        i = bisect_right(self.relative_offsets, relative_offset)
        return self.positions[i - 1] if i else 0

    def reset(self) -> None:
        self.relative_offsets = array("I")
        self.positions = array("I")
        self._file.truncate(0)
        self._written = 0

    def __len__(self) -> int:
        return len(self.positions)

    def write_pending(self) -> None:
        """Append entries added since the last call to the file (one write:
        per-entry writes would cost a syscall per produce)."""
        n = len(self.positions)
        if n > self._written:
            self._file.append([b"".join(
                _OFFSET_ENTRY.pack(self.relative_offsets[i], self.positions[i])
                for i in range(self._written, n)
            )])
            self._written = n

    def sync(self) -> None:
        self.write_pending()
        self._file.sync()

    def close(self) -> None:
        self.write_pending()
        self._file.close()


class TimeIndex:
    def __init__(self, file):
        self._file = file
        self.timestamps = array("q")
        self.relative_offsets = array("I")
        self._written = 0

    def load(self, max_relative_offset: int) -> None:
        data = self._file.pread(0, self._file.size)
        if len(data) % _TIME_ENTRY.size:
            raise SuspectIndexError("time index size is not a multiple of 12")
        last_ts, last_rel = None, -1
        for ts, rel in _TIME_ENTRY.iter_unpack(data):
            if (last_ts is not None and ts <= last_ts) or rel < last_rel or rel > max_relative_offset:
                raise SuspectIndexError("time index entries are out of order or past the log")
            self.timestamps.append(ts)
            self.relative_offsets.append(rel)
            last_ts, last_rel = ts, rel
        self._written = len(self.timestamps)

    @property
    def last_timestamp(self) -> int | None:
        return self.timestamps[-1] if self.timestamps else None

    def maybe_append(self, timestamp: int, relative_offset: int) -> None:
        if self.timestamps and timestamp <= self.timestamps[-1]:
            return
        self.timestamps.append(timestamp)
        self.relative_offsets.append(relative_offset)

    def lookup(self, timestamp: int) -> int:
        """Relative offset of the last entry with a timestamp below `timestamp`,
        from where a scan finds the first record at or after it; 0 if none."""
        i = bisect_right(self.timestamps, timestamp - 1)
        return self.relative_offsets[i - 1] if i else 0

    def reset(self) -> None:
        self.timestamps = array("q")
        self.relative_offsets = array("I")
        self._file.truncate(0)
        self._written = 0

    def write_pending(self) -> None:
        n = len(self.timestamps)
        if n > self._written:
            self._file.append([b"".join(
                _TIME_ENTRY.pack(self.timestamps[i], self.relative_offsets[i])
                for i in range(self._written, n)
            )])
            self._written = n

    def sync(self) -> None:
        self.write_pending()
        self._file.sync()

    def close(self) -> None:
        self.write_pending()
        self._file.close()
