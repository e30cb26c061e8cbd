"""One segment of a partition log: `.log` + `.index` + `.timeindex`.

The `.log` holds whole RecordBatch v2 batches back to back, exactly as
Kafka stores them (see strom.records.batch for the layout); every batch's
base_offset is absolute. The segment's base offset is the first offset it
may hold and names its files. The indexes (see strom.storage.index) are
rebuilt from the `.log` whenever they fail their sanity checks, and always
by `recover()`.

Concurrency: the owning PartitionLog serialises appends, truncation and
recovery under its lock; `sync()` may run at the same time from the flusher
thread (fdatasync on an fd that is being appended to is safe).
"""

import logging
from bisect import bisect_left

from strom.records.batch import (
    BATCH_HEADER_SIZE,
    BatchHeader,
    batch_records,
    iter_batches,
    validate_batch,
)
from strom.records.errors import InvalidRecordError
from strom.storage import files
from strom.storage.errors import SuspectIndexError
from strom.storage.index import OffsetIndex, TimeIndex

log = logging.getLogger(__name__)

# Reads scan forward from an index entry in chunks of this many bytes.
_SCAN_CHUNK = 64 * 1024
# The tail positions cache holds at most this many batches (it normally
# holds those since the last index entry, fewer than index.interval.bytes).
_TAIL_MAX = 1024
_RECOVER_CHUNK = 1024 * 1024


class Segment:
    def __init__(self, medium, directory: str, base_offset: int, index_interval_bytes: int):
        self.medium = medium
        self.directory = directory
        self.base_offset = base_offset
        self.index_interval_bytes = index_interval_bytes
        self.log_file = medium.open(self.path(files.LOG_SUFFIX))
        self.offset_index = OffsetIndex(medium.open(self.path(files.INDEX_SUFFIX)))
        self.time_index = TimeIndex(medium.open(self.path(files.TIME_INDEX_SUFFIX)))
        self.next_offset = base_offset
        self.max_timestamp = -1
        self.first_batch_timestamp: int | None = None
        self._bytes_since_index_entry = 0
        self._reset_tail(None)

    def path(self, suffix: str) -> str:
        return f"{self.directory}/{files.segment_name(self.base_offset, suffix)}"

    @property
    def size(self) -> int:
        return self.log_file.size

    @property
    def is_empty(self) -> bool:
        return self.log_file.size == 0

    # -- loading -----------------------------------------------------------

    def load(self) -> None:
        """Trust the `.log` (it was cleanly closed or already recovered),
        load the indexes if they look right, else rebuild them."""
        try:
            self.offset_index.load(self.size)
            self.time_index.load(0xFFFFFFFF)
            self._scan_tail()
        except SuspectIndexError as e:
            log.warning("%s: %s; rebuilding indexes", self.path(files.LOG_SUFFIX), e)
            self.rebuild_indexes()

    def _scan_tail(self) -> None:
        """Find next_offset and the max timestamp by reading headers from the
        last index entry on: cheap, as the tail is < index.interval.bytes."""
        pos = self.offset_index.positions[-1] if len(self.offset_index) else 0
        if len(self.offset_index) and pos >= self.size:
            raise SuspectIndexError("offset index points past the log")
        self.max_timestamp = self.time_index.last_timestamp or -1
        data = self.log_file.pread(pos, self.size - pos)
        end = pos
        for p, header in iter_batches(data):
            if p == 0:
                self._reset_tail(header.base_offset)
            self._note_batch(header, pos + p, index=False)
            end = pos + p + header.size
        if end != self.size:
            raise SuspectIndexError("log does not end on a batch boundary")
        if self.size and self.first_batch_timestamp is None:
            first = BatchHeader.parse(self.log_file.pread(0, BATCH_HEADER_SIZE))
            self.first_batch_timestamp = first.max_timestamp

    def rebuild_indexes(self) -> None:
        self.recover(validate=False)

    def recover(self, validate: bool = True) -> int:
        """Re-read every batch (checking CRCs when `validate`), truncate at the
        first bad one, rebuild both indexes. Returns the bytes cut off."""
        self.offset_index.reset()
        self.time_index.reset()
        self.next_offset = self.base_offset
        self.max_timestamp = -1
        self.first_batch_timestamp = None
        self._bytes_since_index_entry = 0
        self._reset_tail(None)
        size = self.size
        pos = 0
        while pos < size:
            advanced = self._recover_chunk(pos, size, validate)
            if not advanced:
                break
            pos += advanced
        cut = size - pos
        if cut:
            self.log_file.truncate(pos)
        self.offset_index.write_pending()
        self.time_index.write_pending()
        return cut

    def _recover_chunk(self, pos: int, size: int, validate: bool) -> int:
        """Index the valid batches in one chunk read at `pos`; return the
        bytes they span (0 when the batch at `pos` is bad or incomplete)."""
        chunk = self.log_file.pread(pos, min(size - pos, _RECOVER_CHUNK))
        p = 0
        while (header := _header_or_none(chunk, p)) is not None:
            if header.size > size - pos - p:
                break  # truncated by a crash
            if header.size > len(chunk) - p:
                if p:
                    break  # read it whole with the next chunk
                chunk = self.log_file.pread(pos, header.size)
            try:
                if validate:
                    validate_batch(chunk, p)
            except InvalidRecordError as e:
                log.warning("%s: invalid batch at position %d: %s",
                            self.path(files.LOG_SUFFIX), pos + p, e)
                break
            if header.base_offset < self.next_offset or (
                header.last_offset - self.base_offset > 0xFFFFFFFF
            ):
                log.warning("%s: batch at position %d goes back in offsets",
                            self.path(files.LOG_SUFFIX), pos + p)
                break
            self._note_batch(header, pos + p)
            p += header.size
        return p

    # -- appending ---------------------------------------------------------

    def append(self, buffers: list, total: int, headers: list[tuple[int, BatchHeader]]) -> None:
        """Append batches already validated and given offsets, as a list of
        buffers of `total` bytes. `headers` are (position relative to the
        start of this append, header) for each batch."""
        start = self.log_file.size
        self.log_file.append(buffers, total)
        for pos, header in headers:
            self._note_batch(header, start + pos)

    def _note_batch(self, header: BatchHeader, position: int, index: bool = True) -> None:
        # On the append path: fields unpacked once, attributes read once.
        base, length, _, _, _, _, last_delta, _, max_ts = header[:9]
        if self.first_batch_timestamp is None:
            self.first_batch_timestamp = max_ts
        if index and (
            self._bytes_since_index_entry >= self.index_interval_bytes or not self.offset_index.positions
        ):
            rel = base - self.base_offset
            rels = self.offset_index.relative_offsets
            if not rels or rel > rels[-1]:
                self.offset_index.append(rel, position)
                if max_ts > self.max_timestamp:
                    self.time_index.maybe_append(max_ts, rel)
            self._bytes_since_index_entry = 0
            self._reset_tail(base)
        self._bytes_since_index_entry += length + 12
        if self._tail_base is not None:
            positions = self._tail_positions
            self._tail_last_offsets.append(base + last_delta)
            positions.append(position)
            if len(positions) > _TAIL_MAX:
                self._reset_tail(None)
        if max_ts > self.max_timestamp:
            self.max_timestamp = max_ts
        self.next_offset = base + last_delta + 1

    # -- reading -----------------------------------------------------------

    def _reset_tail(self, base_offset: int | None) -> None:
        """Start the tail cache at the batch with this base offset (None:
        no cache until the next index entry). It lists (last offset,
        position) of consecutive batches from there to the end, so a
        consumer reading at the end finds its batch without scanning."""
        self._tail_base = base_offset
        self._tail_last_offsets: list[int] = []
        self._tail_positions: list[int] = []

    def find_position(self, offset: int) -> int | None:
        """Byte position of the first batch whose last offset is >= offset."""
        if self._tail_base is not None and offset >= self._tail_base:
            i = bisect_left(self._tail_last_offsets, offset)
            return self._tail_positions[i] if i < len(self._tail_positions) else None
        pos = self.offset_index.lookup(max(offset - self.base_offset, 0))
        size = self.size
        while pos < size:
            chunk = self.log_file.pread(pos, min(_SCAN_CHUNK, size - pos))
            p = 0
            while len(chunk) - p >= BATCH_HEADER_SIZE:
                header = BatchHeader.parse(chunk, p)
                if header.last_offset >= offset:
                    return pos + p
                p += header.size
            if p == 0:
                return None
            pos += p
        return None

    def read(self, offset: int, max_bytes: int, min_one: bool = True) -> bytes:
        """Whole batches from the one holding `offset`, up to `max_bytes`
        (at least one batch when `min_one`, however large)."""
        pos = self.find_position(offset)
        if pos is None:
            return b""
        data = self.log_file.pread(pos, min(max(max_bytes, BATCH_HEADER_SIZE), self.size - pos))
        end = 0
        for p, header in iter_batches(data):
            end = p + header.size
        if end == 0:
            if not min_one:
                return b""
            header = BatchHeader.parse(data)
            return self.log_file.pread(pos, header.size)
        return data[:end] if end < len(data) else data

    def headers(self):
        """Yield (position, header) for every batch, reading headers only."""
        pos, size = 0, self.size
        while pos < size:
            header = BatchHeader.parse(self.log_file.pread(pos, BATCH_HEADER_SIZE))
            yield pos, header
            pos += header.size

    def batches(self):
        """Yield (position, header, raw bytes) for every batch in the segment."""
        pos, size = 0, self.size
        while pos < size:
            header = BatchHeader.parse(self.log_file.pread(pos, BATCH_HEADER_SIZE))
            yield pos, header, self.log_file.pread(pos, header.size)
            pos += header.size

    def offset_for_timestamp(self, timestamp: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record with timestamp >= target."""
        if self.max_timestamp < timestamp:
            return None
        start = self.base_offset + self.time_index.lookup(timestamp)
        pos = self.find_position(start)
        if pos is None:
            return None
        size = self.size
        while pos < size:
            header = BatchHeader.parse(self.log_file.pread(pos, BATCH_HEADER_SIZE))
            if header.max_timestamp >= timestamp:
                raw = self.log_file.pread(pos, header.size)
                if header.timestamp_type == 1:  # LogAppendTime: one time for all
                    return header.base_offset, header.max_timestamp
                for record in batch_records(raw):
                    if record.timestamp >= timestamp:
                        return record.offset, record.timestamp
            pos += header.size
        return None

    # -- truncation and lifecycle -------------------------------------------

    def truncate_to(self, offset: int) -> int:
        """Remove batches holding any offset >= `offset`; return bytes removed.
        Batches are whole: one that straddles `offset` goes entirely."""
        pos = self.find_position(offset)
        if pos is None:
            return 0
        removed = self.size - pos
        self.log_file.truncate(pos)
        self.rebuild_indexes()
        return removed

    def sync(self, indexes: bool = False) -> None:
        """fsync the `.log`. The indexes only when asked (a segment leaving
        the active role): below the recovery point they are trusted after a
        sanity check, above it they are rebuilt, so their fsync does not
        stand between a producer and its acknowledgement."""
        self.log_file.sync()
        if indexes:
            self._write_indexes(sync=True)

    def _write_indexes(self, sync: bool = False) -> None:
        """Write (and fsync) the pending index entries. A failure (a full
        disk) empties both files instead of failing the log: they are
        derived, an empty index makes the next load rescan the `.log`, and
        the entries stay in memory to be written again by the next call."""
        try:
            for index in (self.offset_index, self.time_index):
                index.sync() if sync else index.write_pending()
        except OSError as e:
            log.warning("%s: writing its indexes failed (%s); they will be rebuilt from the log",
                        self.path(files.LOG_SUFFIX), e)
            for index in (self.offset_index, self.time_index):
                index.forget_written()

    def close(self) -> None:
        self._write_indexes()
        self.log_file.close()
        self.offset_index.close()
        self.time_index.close()

    def delete(self) -> None:
        self.close()
        for suffix in (files.LOG_SUFFIX, files.INDEX_SUFFIX, files.TIME_INDEX_SUFFIX):
            self.medium.remove(self.path(suffix))


def _header_or_none(chunk, pos: int = 0) -> BatchHeader | None:
    if len(chunk) - pos < BATCH_HEADER_SIZE:
        return None
    header = BatchHeader.parse(chunk, pos)
    if header.batch_length < BATCH_HEADER_SIZE - 12:
        return None
    return header
