"""One segment of a partition log: `.log` + `.index` + `.timeindex` + `.txnindex`.

The `.log` holds whole RecordBatch v2 batches back to back, exactly as
Kafka stores them (see strom.records.batch for the layout); every batch's
base_offset is absolute. The segment's base offset is the first offset it
may hold and names its files. The indexes (see strom.storage.index) are
rebuilt from the `.log` whenever they fail their sanity checks, and always
by `recover()`. The `.txnindex` (strom.storage.txn_index) needs the
producers' transaction state to rebuild, so the owning log rebuilds it
(transactions.rebuild); the segment only holds, truncates and deletes it.

Damage (see strom.storage.damage): batches read from disk are trusted only
once checked. Recovery checks every batch; after a clean load nothing below
`unverified_end` was checked since the segment was opened, so a read that
returns batches in [verified_to, unverified_end) checks their CRCs first
and the scrub (`scrub`) walks that range in the background, moving
`verified_to` up; appended batches were checked by the append. A damaged
range is quarantined in `damaged`: readers skip to the next intact batch,
as if its offsets had been compacted away. Damage that reaches the end of
the active segment is cut off instead, as crash recovery does, so the log
ends at its last intact batch and no reader waits below the log end for
batches that cannot come (`cuts` counts those).

Concurrency: the owning PartitionLog serialises appends, truncation and
recovery under its lock, which it gives the segment (`lock`): a reader
without it (the cleaner) takes it to rescan a segment it finds damaged.
`sync()` may run at the same time from the flusher thread (fdatasync on an
fd that is being appended to is safe).
"""

import logging
import struct
import threading
from bisect import bisect_left

from strom.records import batch as _batch
from strom.records.batch import (
    BATCH_HEADER_SIZE,
    BatchHeader,
    iter_batches,
    offset_for_timestamp,
    validate_batch,
)
from strom.records.errors import InvalidRecordError
from strom.storage import files
from strom.storage.damage import Damage, SegmentDamage, find_intact, plausible
from strom.storage.errors import SuspectIndexError
from strom.storage.index import OffsetIndex, TimeIndex
from strom.storage.txn_index import TxnIndex

log = logging.getLogger(__name__)

# Reads scan forward from an index entry in chunks of this many bytes.
_SCAN_CHUNK = 64 * 1024
# The tail positions cache holds at most this many batches (it normally
# holds those since the last index entry, fewer than index.interval.bytes).
_TAIL_MAX = 1024
_RECOVER_CHUNK = 1024 * 1024
# A read gives up after this many damaged ranges in a row (each is skipped).
_MAX_DAMAGE_STEPS = 64
_TROUBLE = object()
_LENGTH = struct.Struct(">i")
_HEAD = struct.Struct(">qiibI")  # base_offset, batch_length, leader epoch, magic, crc
_DELTA = struct.Struct(">i")  # last_offset_delta, at 23


class Segment(SegmentDamage):
    def __init__(self, medium, directory: str, base_offset: int, index_interval_bytes: int,
                 lock=None):
        self.medium = medium
        self.lock = lock or threading.RLock()
        self.active = False  # the log's last segment: damage at its end is cut, not skipped
        # Rolled, its indexes not fsynced since: the log's flush syncs them even
        # when the recovery point is already at its end (the last flush before
        # the roll ran while it was active, and skipped them).
        self.indexes_unsynced = False
        self.damaged: list[Damage] = []  # sorted; replaced, never changed in place
        self.damage_found = 0  # ranges quarantined since open (a metric)
        self.cuts = 0  # damaged tails cut off since open
        self.on_cut = None  # called (under the lock) after a cut: the log ends earlier
        self.verified_to = 0
        self.unverified_end = 0
        self.directory = directory
        self.base_offset = base_offset
        self.index_interval_bytes = index_interval_bytes
        self.log_file = medium.open(self.path(files.LOG_SUFFIX))
        self.offset_index = OffsetIndex(medium.open(self.path(files.INDEX_SUFFIX)))
        self.time_index = TimeIndex(medium.open(self.path(files.TIME_INDEX_SUFFIX)))
        txn_path = self.path(files.TXN_INDEX_SUFFIX)
        self.txn_index = TxnIndex(medium.open(txn_path), medium, txn_path)
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
            self.verified_to, self.unverified_end = 0, self.size
        except SuspectIndexError as e:
            log.warning("%s: %s; rebuilding indexes, checking every batch",
                        self.path(files.LOG_SUFFIX), e)
            self.recover(truncate_tail=self.active)

    def _scan_tail(self) -> None:
        """Find next_offset and the max timestamp by reading headers from the
        last index entry on: cheap, as the tail is < index.interval.bytes."""
        pos = self.offset_index.positions[-1] if len(self.offset_index) else 0
        if len(self.offset_index) and pos >= self.size:
            raise SuspectIndexError("offset index points past the log")
        self.max_timestamp = self.time_index.last_timestamp or -1
        data = self.log_file.pread(pos, self.size - pos)
        end = pos
        min_base = self.base_offset + (self.offset_index.relative_offsets[-1]
                                       if len(self.offset_index) else 0)
        size = self.size
        for p, header in iter_batches(data):
            # The tail is small: check its CRCs now, as the end of the log is
            # what producers extend and readers at the end read first.
            if not plausible(header, pos + p, size, min_base, self.base_offset):
                raise SuspectIndexError(f"implausible batch header at position {pos + p}")
            try:
                validate_batch(data, p)
            except InvalidRecordError as e:
                raise SuspectIndexError(f"damaged batch at position {pos + p}: {e}") from None
            min_base = header.next_offset
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
        """From the batch headers, skipping known damage (no CRC checks)."""
        self.recover(validate=False)

    def recover(self, validate: bool = True, truncate_tail: bool = True) -> int:
        """Re-read every batch (checking CRCs when `validate`) and rebuild
        both indexes. A bad batch followed by intact ones is quarantined; one
        followed by none is cut off when `truncate_tail` (the active segment:
        a crash tears its end), else quarantined to the end. Returns the
        bytes cut off."""
        self.offset_index.reset()
        self.time_index.reset()
        self.next_offset = self.base_offset
        self.max_timestamp = -1
        self.first_batch_timestamp = None
        self._bytes_since_index_entry = 0
        self._reset_tail(None)
        size = self.size
        if validate:
            self.damaged = []
        else:
            self.damaged = [d for d in self.damaged if d.position < size]
        known = list(self.damaged)
        pos = cut = 0
        while pos < size:
            if known and known[0].position <= pos:
                pos = max(pos, known.pop(0).end)
                continue
            limit = known[0].position if known else size
            advanced = self._recover_chunk(pos, limit, validate)
            pos += advanced
            if advanced or pos >= size or pos == limit:
                continue
            intact = find_intact(self.log_file, pos, size, self.next_offset, self.base_offset)
            if intact is None and truncate_tail:
                cut = size - pos
                self.log_file.truncate(pos)
                break
            self._quarantine(pos, size if intact is None else intact, "found by a scan")
            pos = size if intact is None else intact
        if validate:
            self.verified_to = self.unverified_end = self.size
        else:
            self.verified_to = min(self.verified_to, self.size)
            self.unverified_end = min(self.unverified_end, self.size)
        # Rewritten indexes of a segment that may be trusted below the
        # recovery point from now on: the next flush fsyncs them.
        self.indexes_unsynced = True
        self.offset_index.write_pending()
        self.time_index.write_pending()
        return cut

    def _recover_chunk(self, pos: int, size: int, validate: bool) -> int:
        """Index the valid batches in one chunk read at `pos`; return the
        bytes they span (0 when the batch at `pos` is bad or incomplete).
        `size`: where to stop (the segment's end, or known damage)."""
        chunk = self.log_file.pread(pos, min(size - pos, _RECOVER_CHUNK))
        p = 0
        while (header := _header_or_none(chunk, p)) is not None:
            if header.size > size - pos - p:
                break  # truncated by a crash
            if header.magic != 2:
                break
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
        """Byte position of the first intact batch whose last offset is >= offset."""
        if self._tail_base is not None and offset >= self._tail_base:
            i = bisect_left(self._tail_last_offsets, offset)
            positions = self._tail_positions
            while i < len(positions):
                if not self.damaged or self._damage_at(positions[i]) is None:
                    return positions[i]
                i += 1
            return None
        pos = self._walk_to(offset)
        if pos is _TROUBLE:
            self._found_damage(None, "found walking batch headers")
            pos = self._walk_to(offset)
        return None if pos is _TROUBLE else pos

    def _walk_to(self, offset: int):
        """find_position from the offset index on; _TROUBLE when a header
        on the way does not hold up (damage, or an index that is wrong)."""
        entry = self.offset_index.lookup_entry(max(offset - self.base_offset, 0))
        pos, expect = (entry[1], self.base_offset + entry[0]) if entry else (0, None)
        size = self.size
        base = self.base_offset
        while pos < size:
            if self.damaged and (d := self._damage_at(pos)) is not None:
                pos = d.end
                expect = None
                continue
            limit = self._next_damage(pos) if self.damaged else size
            chunk = self.log_file.pread(pos, min(_SCAN_CHUNK, limit - pos))
            p = 0
            while len(chunk) - p >= BATCH_HEADER_SIZE:
                header = BatchHeader.parse(chunk, p)
                if not plausible(header, pos + p, limit, base, base):
                    return _TROUBLE
                if expect is not None:
                    # An index entry names the first offset of the batch it
                    # points at: one that does not is wrong (rebuild it).
                    if header.base_offset != expect:
                        return _TROUBLE
                    expect = None
                if header.last_offset >= offset:
                    return pos + p
                p += header.size
            if p == 0:
                return _TROUBLE if chunk else None  # bytes too few for a header
            pos += p
        return None

    def read(self, offset: int, max_bytes: int, min_one: bool = True) -> bytes:
        """Whole intact batches from the one holding `offset` (or the first
        intact one after it), up to `max_bytes` (at least one batch when
        `min_one`, however large)."""
        for _ in range(_MAX_DAMAGE_STEPS):
            pos = self.find_position(offset)
            if pos is None:
                return b""
            limit = self._next_damage(pos) if self.damaged else self.size
            data = self.log_file.pread(pos, min(max(max_bytes, BATCH_HEADER_SIZE), limit - pos))
            end, bad = self._check_batches(data, pos, limit)
            if bad == pos:
                self._found_damage(pos, "found by a read")
                continue  # the next intact batch
            if end == 0:  # the first batch is larger than max_bytes
                if not min_one:
                    return b""
                data = self.log_file.pread(pos, BatchHeader.parse(data).size)
                end, bad = self._check_batches(data, pos, limit)
                if bad is not None or end == 0:
                    self._found_damage(pos, "found by a read")
                    continue
                return data
            if bad is not None:
                self._found_damage(bad, "found by a read")
            return data[:end] if end < len(data) else data
        return b""

    def _check_batches(self, data, pos: int, limit: int) -> tuple[int, int | None]:
        """(bytes of whole intact batches at the start of `data`, read at
        `pos`; position of a bad batch that ends them, else None). CRCs are
        checked only where no check ran since open; `limit` is where the
        segment or the next known damage begins."""
        n = len(data)
        p = end = 0
        check_from, check_to = self.verified_to, self.unverified_end
        if pos >= check_to or pos + n <= check_from:
            # All checked before (by recovery, the scrub, an earlier read or
            # the append): only the lengths are needed to find whole batches.
            unpack = _LENGTH.unpack_from
            while n - p >= BATCH_HEADER_SIZE:
                size = unpack(data, p + 8)[0] + 12
                if size < BATCH_HEADER_SIZE:
                    return end, pos + p
                if p + size > n:
                    break
                p = end = p + size
            if 0 < n - p < BATCH_HEADER_SIZE and pos + n == limit:
                return end, pos + p
            return end, None
        # Never checked since open: the framing (as damage.plausible, inline:
        # this runs per batch) and the CRC.
        base = self.base_offset
        view = memoryview(data)
        head, delta = _HEAD.unpack_from, _DELTA.unpack_from
        crc32c = _batch.crc32c
        while n - p >= BATCH_HEADER_SIZE:
            at = pos + p
            first, length, _, magic, crc = head(data, p)
            size = length + 12
            last = first + delta(data, p + 23)[0]
            if (size < BATCH_HEADER_SIZE or at + size > limit or magic != 2 or first < base
                    or last < first or last - base > 0xFFFFFFFF):
                return end, at
            if p + size > n:
                break
            if check_from <= at < check_to and crc32c(view[p + 21 : p + size]) != crc:
                return end, at
            p = end = p + size
        if 0 < n - p < BATCH_HEADER_SIZE and pos + n == limit:
            return end, pos + p  # bytes at the end too few to be a batch
        if end and pos == check_from:
            self.verified_to = max(self.verified_to, pos + end)
        return end, None

    # -- whole-segment iteration --------------------------------------------

    def headers(self):
        """Yield (position, header) for every intact batch, reading headers
        only (no CRC checks)."""
        for pos, header, _ in self._iter_intact(False):
            yield pos, header

    def batches(self):
        """Yield (position, header, raw bytes) for every intact batch; the
        CRCs of batches not checked since open are checked on the way."""
        yield from self._iter_intact(True)

    def _iter_intact(self, with_data: bool):
        pos = 0
        base = self.base_offset
        while pos < self.size:
            if self.damaged and (d := self._damage_at(pos)) is not None:
                pos = d.end
                continue
            head = self.log_file.pread(pos, BATCH_HEADER_SIZE)
            limit = self._next_damage(pos) if self.damaged else self.size
            header = BatchHeader.parse(head) if len(head) == BATCH_HEADER_SIZE else None
            raw = None
            if header is not None and plausible(header, pos, limit, base, base):
                if not with_data:
                    yield pos, header, None
                    pos += header.size
                    continue
                raw = self.log_file.pread(pos, header.size)
                if not self.verified_to <= pos < self.unverified_end:
                    yield pos, header, raw
                    pos += header.size
                    continue
                try:
                    validate_batch(raw)
                    yield pos, header, raw
                    pos += header.size
                    continue
                except InvalidRecordError:
                    pass
            if self._found_damage(pos, "found by a scan"):
                continue  # whole now: read it again
            if pos < self.size and self._damage_at(pos) is None:
                log.error("%s: no batch starts at position %d after a rescan; stopping there",
                          self.path(files.LOG_SUFFIX), pos)
                return

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
            if self.damaged and (d := self._damage_at(pos)) is not None:
                pos = d.end
                continue
            header = self._intact_header(pos, "found by a time lookup")
            if header is None:
                if self._damage_at(pos) is None:
                    return None
                continue
            if header.max_timestamp >= timestamp:
                if header.timestamp_type == 1:  # LogAppendTime: one time for all
                    return header.base_offset, header.max_timestamp
                found = self.offset_in_batch(self.log_file.pread(pos, header.size), timestamp)
                if found:
                    return found
            pos += header.size
        return None

    def offset_in_batch(self, raw, timestamp: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record at or after `timestamp`
        in one batch. One whose records cannot be read (damaged, or over
        the decompression limit) answers with its first offset: a reader
        then starts at that batch, which is never after the one it wants."""
        try:
            return offset_for_timestamp(raw, 0, timestamp)
        except InvalidRecordError as e:
            header = BatchHeader.parse(raw)
            log.warning("%s: batch at offset %d: %s; answering with its base offset",
                        self.path(files.LOG_SUFFIX), header.base_offset, e)
            return header.base_offset, header.max_timestamp

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
        self.txn_index.truncate_to(self.next_offset)
        return removed

    def sync(self, indexes: bool = False) -> None:
        """fsync the `.log`. The indexes only when asked (a segment leaving
        the active role): below the recovery point they are trusted after a
        sanity check, above it they are rebuilt, so their fsync does not
        stand between a producer and its acknowledgement."""
        self.log_file.sync()
        if indexes:
            self._write_indexes(sync=True)
            self.txn_index.sync()  # a failure removes it: the next start rebuilds it

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
        if self.txn_index.failed:  # whole again, or (failing again) removed
            self.txn_index.reset(self.txn_index.entries)
        self.txn_index.sync()
        self.log_file.close()
        self.offset_index.close()
        self.time_index.close()
        self.txn_index.close()

    def delete(self) -> None:
        self.close()
        for suffix in (files.LOG_SUFFIX, files.INDEX_SUFFIX, files.TIME_INDEX_SUFFIX,
                       files.TXN_INDEX_SUFFIX):
            self.medium.remove(self.path(suffix))


def _header_or_none(chunk, pos: int = 0) -> BatchHeader | None:
    if len(chunk) - pos < BATCH_HEADER_SIZE:
        return None
    header = BatchHeader.parse(chunk, pos)
    if header.batch_length < BATCH_HEADER_SIZE - 12:
        return None
    return header


def chain_end(file) -> int:
    """The offset after the last batch of the chain of batch headers from
    the start of `file` (headers only, no CRC checks), or -1 if none."""
    pos, end, size = 0, -1, file.size
    while size - pos >= BATCH_HEADER_SIZE:
        header = _header_or_none(file.pread(pos, BATCH_HEADER_SIZE))
        if header is None or header.magic != 2 or pos + header.size > size:
            break
        end = header.next_offset
        pos += header.size
    return end
