"""PartitionLog: one partition's ordered, offset-addressed log of batches.

Segments are kept sorted by base offset; the last one is active and the
only one appended to. Offsets: `log_start_offset` is the first offset a
reader may ask for (it moves with retention and DeleteRecords and is
persisted in `log-start-offset` when it points inside a segment);
`log_end_offset` is the next offset to assign; on a single node the
`high_watermark` equals the log end offset. `recovery_point` is the offset
below which everything is fsynced. `last_stable_offset` is the first offset
of the earliest transaction still open here, else the high watermark
(read_committed readers see nothing at or past it); ABORT markers add an
entry to their segment's `.txnindex` (txn_index.py), which
`aborted_transactions` answers from. The producer state, open
transactions included, is built on first use (transactions.py); the
`.txnindex` files are rebuilt at load where recovery re-read a segment or
the file is missing or suspect.

Threads: the broker's loop thread appends and reads; the flusher thread
calls `flush()`; the maintenance thread applies retention and swaps in
compacted segments. `_lock` guards the segment list and offsets and is held
only briefly; `_flush_lock` keeps segments from being closed under an
fsync in flight.
"""

import logging
import struct
import threading
import time
from bisect import bisect_left, bisect_right
from typing import NamedTuple

from strom.records.batch import (
    LOG_OVERHEAD,
    BatchHeader,
    batch_size_at,
    patch_base_offset,
    patch_max_timestamp,
    validate_batch,
)
from strom.records.codecs import MAX_DECOMPRESSED_BYTES
from strom.storage import checkpoint, files, producer_state, transactions
from strom.storage.config import LogConfig
from strom.storage.errors import LogWriteError, OffsetOutOfRangeError, RecordTooLargeError
from strom.storage.producer_state import ProducerStateTable
from strom.storage.segment import Segment, chain_end
from strom.storage.txn_index import AbortedTxn

log = logging.getLogger(__name__)


class AppendResult(NamedTuple):
    base_offset: int
    last_offset: int
    log_append_time: int  # -1 unless the topic uses LogAppendTime
    log_start_offset: int
    batches: list[tuple[int, BatchHeader]]  # (position in the input, header)
    duplicate: bool = False  # an idempotent retry: nothing was written


_OFFSET = struct.Struct(">q")
_INDEX_SUFFIXES = (files.INDEX_SUFFIX, files.TIME_INDEX_SUFFIX, files.TXN_INDEX_SUFFIX)
_SCRUB_STEP = 1024 * 1024  # bytes checked per hold of the log's lock
_SNAPSHOT_SEGMENTS = 3  # the last segments a producer snapshot is kept for


def now_ms() -> int:
    return int(time.time() * 1000)


class PartitionLog(transactions.PartitionTransactions):
    def __init__(self, medium, directory: str, config: LogConfig | None = None, *,
                 recovery_point: int | None = None, clean: bool = False,
                 topic: str = "", partition: int = 0):
        self.medium = medium
        self.directory = directory
        self.topic = topic
        self.partition = partition
        self.config = config or LogConfig()
        self._lock = threading.RLock()
        self._flush_lock = threading.Lock()
        self._werr: LogWriteError | None = None
        # (segment, good size) after a write that failed and can be undone
        self._undo: tuple[Segment, int] | None = None
        self._dir_dirty = False
        self.unflushed_messages = 0
        self.first_unflushed_ms: int | None = None
        if not medium.exists(directory):
            medium.makedirs(directory)
            medium.sync_dir()  # the new directory's entry must survive a machine crash
        self.segments: list[Segment] = []
        self.log_start_offset = 0
        self._producers: ProducerStateTable | None = None
        self._snapshot_offset = -1  # of the last snapshot this process wrote
        # Set by close(): the maintenance thread may still hold this log while
        # a create of the same name writes a new one in the same directory.
        self._closed = False
        self._cut_count = 0  # damaged tails cut off (Segment.on_cut)
        self._load(recovery_point, clean)

    # -- loading and recovery ------------------------------------------------

    def _load(self, recovery_point: int | None, clean: bool) -> None:
        names = self.medium.listdir(self.directory)
        bases, swapped = set(), set()
        for name in names:
            parsed = files.parse_segment_name(name)
            path = f"{self.directory}/{name}"
            if parsed is None:
                if name.endswith(files.TMP_SUFFIX):
                    self.medium.remove(path)
                continue
            base, suffix = parsed
            if suffix.endswith(files.CLEANED_SUFFIX) or suffix.endswith(files.TMP_SUFFIX):
                self.medium.remove(path)  # an interrupted clean: the originals stand
            elif suffix == files.LOG_SUFFIX + files.SWAP_SUFFIX:
                swapped.add(base)
            elif suffix == files.LOG_SUFFIX:
                bases.add(base)
        for base in sorted(swapped):
            # A complete cleaned replacement: delete the segments it covers,
            # then finish the swap (in this order: a crash in between leaves
            # the `.swap` to finish again, not an overlap the load refuses).
            swap_name = files.segment_name(base, files.LOG_SUFFIX + files.SWAP_SUFFIX)
            path = f"{self.directory}/{swap_name}"
            swap_file = self.medium.open(path)
            try:
                end = chain_end(swap_file)
            finally:
                swap_file.close()
            covered = [b for b in bases if base < b < end]
            for b in covered:
                log.info("%s: deleting segment %d, merged into %d by a compaction a crash "
                         "interrupted", self.directory, b, base)
                for s in (files.INDEX_SUFFIX, files.TIME_INDEX_SUFFIX, files.TXN_INDEX_SUFFIX,
                          files.LOG_SUFFIX):
                    self.medium.remove(f"{self.directory}/{files.segment_name(b, s)}")
                bases.discard(b)
            if covered:
                self.medium.sync_dir(self.directory)
            self.medium.rename(path, path[: -len(files.SWAP_SUFFIX)])
            for s in (files.INDEX_SUFFIX, files.TIME_INDEX_SUFFIX, files.TXN_INDEX_SUFFIX):
                self.medium.remove(f"{self.directory}/{files.segment_name(base, s)}")
            bases.add(base)
            clean = False
        for name in names:  # indexes whose log is gone are garbage
            parsed = files.parse_segment_name(name)
            if parsed and parsed[1] in _INDEX_SUFFIXES and parsed[0] not in bases:
                self.medium.remove(f"{self.directory}/{name}")
        # (a finished swap removed its own `.txnindex` above: rebuilt below)
        txn_indexed = {p[0] for p in map(files.parse_segment_name, names)
                       if p and p[1] == files.TXN_INDEX_SUFFIX and p[0] not in swapped}
        stored_start = self._read_log_start_offset()
        for base in sorted(bases):
            self.segments.append(self._new_segment(base))
        if not self.segments:
            self.segments.append(self._new_segment(stored_start))
            self._dir_dirty = True
        first_to_recover = 0
        if not clean and recovery_point is not None:
            first_to_recover = max(bisect_right(self.bases, recovery_point) - 1, 0)
        self.segments[-1].active = True
        txn_rebuild_from = None  # the first segment whose `.txnindex` is rebuilt
        for i, seg in enumerate(self.segments):
            if clean or i < first_to_recover:
                seg.load()
                # (from the first segment rebuilt on, all are: no need to read theirs)
                if txn_rebuild_from is not None or self._load_txn_index(
                        seg, seg.base_offset in txn_indexed):
                    continue
            else:
                # Only the active segment's end is cut: damage in an earlier one
                # is quarantined, and the intact segments after it stay.
                cut = seg.recover(truncate_tail=seg.active)
                if cut:
                    log.warning("%s: recovery truncated %d bytes of segment %d; now ends at "
                                "offset %d", self.directory, cut, seg.base_offset, seg.next_offset)
            if txn_rebuild_from is None:
                txn_rebuild_from = seg
        if self.log_end_offset < stored_start:
            # DeleteRecords fsyncs the data below the new start before it
            # writes the file, so only damage puts the start past the end:
            # the segments say more than the file (Kafka would delete them).
            log.warning("%s: %s says %d, past the log end offset %d: ignored, the log "
                        "starts at %d", self.directory, files.LOG_START_OFFSET_FILE, stored_start,
                        self.log_end_offset, self.segments[0].base_offset)
            stored_start = 0
        # A segment must start at or after the end of the one before it, but
        # for those a compacted group's interrupted swap covers (cleaner.py).
        kept = self.segments[:1]
        for seg in self.segments[1:]:
            if seg.base_offset < kept[-1].next_offset:
                if kept[-1].base_offset not in swapped:
                    raise LogWriteError(f"{self.directory}: segments overlap at {seg.base_offset}")
                log.info("%s: deleting segment %d, merged into %d by a compaction a crash "
                         "interrupted", self.directory, seg.base_offset, kept[-1].base_offset)
                seg.delete()
                continue
            kept.append(seg)
        self.segments = kept
        self.segments[-1].active = True
        self.active.log_file.pin()  # every produce writes it: outside the file cache
        self.log_start_offset = max(stored_start, self.segments[0].base_offset)
        self.recovery_point = self.log_end_offset
        # A snapshot past what recovery left describes lost batches.
        producer_state.delete_snapshots_after(self.medium, self.directory, self.log_end_offset)
        if txn_rebuild_from is not None:
            first = max(bisect_left(self.bases, txn_rebuild_from.base_offset), 0)
            self._producers = transactions.rebuild(self, min(first, len(self.segments) - 1))
        if not clean:
            self.flush()

    def _read_log_start_offset(self) -> int:
        path = f"{self.directory}/{files.LOG_START_OFFSET_FILE}"
        if not self.medium.exists(path):
            return 0
        offset = checkpoint.load_offset(self.medium.read(path))
        if offset is None:
            log.warning("%s: %s is damaged: ignored, the log starts at its first segment",
                        self.directory, files.LOG_START_OFFSET_FILE)
            return 0
        return offset

    def _new_segment(self, base_offset: int) -> Segment:
        seg = Segment(self.medium, self.directory, base_offset, self.config.index_interval_bytes,
                      lock=self._lock)
        # Whoever finds the damage (a read, ListOffsets, the scrub, the cleaner).
        seg.on_cut = self._after_cut
        return seg

    def segments_snapshot(self) -> list[Segment]:
        """The current segment list, for readers on other threads (cleaner)."""
        with self._lock:
            return list(self.segments)

    @property
    def failed(self) -> bool:
        """A write or fsync failed: the log refuses writes (sticky)."""
        return self._werr is not None

    @property
    def bases(self) -> list[int]:
        return [s.base_offset for s in self.segments]

    @property
    def active(self) -> Segment:
        return self.segments[-1]

    @property
    def log_end_offset(self) -> int:
        return self.segments[-1].next_offset

    @property
    def high_watermark(self) -> int:
        return self.log_end_offset

    @property
    def size(self) -> int:
        return sum(s.size for s in self.segments)

    # -- appending -------------------------------------------------------------

    def append(self, records, *, validate: bool = True, now: int | None = None) -> AppendResult:
        """Append the batches in `records` (bytes as a producer sent them),
        assigning offsets from the log end. Raises InvalidRecordError (the
        log is unchanged), RecordTooLargeError, or a sticky LogWriteError."""
        view = memoryview(records)
        end = len(view)
        config = self.config
        with self._lock:
            if self._werr:
                self._undo_failed_write()
            seg = self.segments[-1]
            offset = seg.next_offset
            buffers, positioned, pos = [], [], 0
            transactional = False
            log_append_time = now
            if now is None and (config.log_append_time or self.first_unflushed_ms is None):
                log_append_time = now_ms()  # only when used: time.time() is not free
            # Records may decompress beyond max.message.bytes (it bounds the
            # batch as stored), but not without bound.
            max_decompressed = max(MAX_DECOMPRESSED_BYTES, config.max_message_bytes)
            while pos < end:
                size = batch_size_at(view, pos)
                if size is not None and size > config.max_message_bytes:
                    # Before its CRC or records are read, as Kafka does.
                    raise RecordTooLargeError(
                        f"batch of {size} bytes exceeds max.message.bytes {config.max_message_bytes}"
                    )
                header = validate_batch(view, pos, strict=validate, base_offset=offset,
                                        max_decompressed=max_decompressed)
                size = header[1] + LOG_OVERHEAD
                if header.producer_id >= 0 and (header.base_sequence >= 0
                                                or header.is_transactional):
                    duplicate = self.producer_state.check(header)
                    if duplicate is not None:
                        return AppendResult(duplicate[0], duplicate[1], -1, self.log_start_offset,
                                            [], duplicate=True)
                    transactional = transactional or header.attributes & 0x30 == 0x10
                if config.log_append_time:
                    batch = bytearray(view[pos : pos + size])
                    patch_base_offset(batch, offset)
                    patch_max_timestamp(batch, log_append_time)
                    buffers.append(batch)
                    header = BatchHeader.parse(batch)
                else:
                    # Only base_offset changes, and the CRC does not cover it:
                    # write the new 8 bytes, then the rest of the producer's
                    # buffer as is (writev, no copy).
                    buffers += (_OFFSET.pack(offset), view[pos + 8 : pos + size])
                positioned.append((pos, header))
                offset += header.last_offset_delta + 1
                pos += size
            if not positioned:
                raise RecordTooLargeError("no record batch in the produce data")
            first = positioned[0][1]
            # Open transactions are registered before the log end moves past
            # their first batch: last_stable_offset reads without the lock.
            opened = self._open_transactions(positioned) if transactional else None
            try:
                seg_size = seg.log_file.size
                if seg_size and (
                    seg_size + pos > config.segment_bytes
                    or offset - 1 - seg.base_offset > 0x7FFFFFFF
                    or first.max_timestamp - seg.first_batch_timestamp > config.segment_ms
                ):
                    seg = self._roll()  # segment.bytes, segment.ms, or 31-bit relative offsets
                    seg_size = 0
                seg.append(buffers, pos, positioned)
            except OSError as e:
                for pid in opened or ():
                    self._producers.ongoing.pop(pid, None)
                self._write_failed(seg, seg_size, e)
            if self._undo is not None:
                log.warning("%s: writes succeed again; the partition takes produce again",
                            self.directory)
                self._undo = None
            if self._producers is not None:
                for _, h in positioned:
                    # idempotent, or transactional data (0x10 set, 0x20 control clear)
                    if h.producer_id >= 0 and (h.base_sequence >= 0 or h.attributes & 0x30 == 0x10):
                        self._producers.update(h)
            self.unflushed_messages += offset - first.base_offset
            if self.first_unflushed_ms is None:
                self.first_unflushed_ms = log_append_time
            # tuple.__new__: NamedTuple's generated __new__ is a Python call.
            return tuple.__new__(AppendResult, (
                first.base_offset, offset - 1,
                log_append_time if config.log_append_time else -1,
                self.log_start_offset, positioned, False,
            ))

    def _write_failed(self, seg: Segment, good_size: int, error: OSError) -> None:
        """A write failed part-way (ENOSPC, EIO): cut the segment back to
        its last good size at once, so readers never see the partial bytes,
        and refuse produce until a retry succeeds (`_undo_failed_write`)."""
        self._werr = LogWriteError(f"{self.directory}: write failed: {error}")
        self._undo = (seg, good_size)
        try:
            seg.log_file.truncate(good_size)
        except OSError as e:
            log.error("%s; cutting back the partial write failed too: %s", self._werr, e)
        else:
            log.error("%s; the partial write was cut back, produce is refused until a "
                      "write succeeds again", self._werr)
        raise self._werr from error

    def _undo_failed_write(self) -> None:
        """Before the next append after a failed write: make sure the partial
        write is gone, then let the append try. An error that cannot be
        undone (an fsync or a read failed, or no known good size) stays."""
        if self._undo is None:
            raise self._werr
        seg, good_size = self._undo
        if seg is not self.active:
            raise self._werr
        try:
            seg.log_file.truncate(good_size)
        except OSError as e:
            raise self._werr from e
        self._werr = None  # a failure of this append sets it again

    @property
    def producer_state(self) -> ProducerStateTable:
        """Built on first use: the newest snapshot, then the batch headers
        after it (producer_state.py)."""
        if self._producers is None:
            with self._lock:
                if self._producers is None:
                    self._producers = transactions.load_producers(self)
        return self._producers

    def _snapshot_bases(self) -> list[int]:
        """The segment bases a snapshot is kept at or below (write_snapshot):
        the active one's and the two before, so an unclean start whose
        checkpointed recovery point lags a roll or two rebuilds from near
        it, not from the log start."""
        return [s.base_offset for s in self.segments[-_SNAPSHOT_SEGMENTS:]]

    def snapshot_producers(self) -> bool:
        """Snapshot the producer state (maintenance thread, after a roll),
        at the log end if everything below it is fsynced. True if written.
        Under the lock (a small file, once a segment): a cut of the log in
        between would leave a snapshot of batches that are gone."""
        with self._lock:
            offset = self.log_end_offset
            if (self._closed or self._producers is None or offset <= self._snapshot_offset
                    or self.active.base_offset <= self._snapshot_offset
                    or offset > self.recovery_point or self._werr):
                return False
            producer_state.write_snapshot(self.medium, self.directory, offset, self._producers,
                                          keep_at_most=self._snapshot_bases())
            self._snapshot_offset = offset
            return True

    def _forget_producers(self) -> None:
        """The log was cut back: rebuild the state from what is left."""
        self._producers = None
        producer_state.delete_snapshots_after(self.medium, self.directory, self.log_end_offset)

    def roll(self) -> Segment:
        with self._lock:
            return self._roll()

    def _roll(self) -> Segment:
        if not self.active.is_empty:
            fresh = self._new_segment(self.log_end_offset)
            fresh.log_file.pin()
            old = self.active
            old.log_file.unpin()
            old.active, fresh.active = False, True
            old.indexes_unsynced = True  # until a flush syncs them (flush)
            self.segments.append(fresh)
            self._dir_dirty = True
        return self.active

    # -- reading ---------------------------------------------------------------

    def read(self, offset: int, max_bytes: int, *, min_one: bool = True) -> bytes:
        """Whole batches from the one holding `offset`, up to `max_bytes`
        (at least one when `min_one`). Empty at the log end."""
        with self._lock:
            end = self.log_end_offset
            if offset < self.log_start_offset or offset > end:
                raise OffsetOutOfRangeError(offset, self.log_start_offset, end)
            i = max(bisect_right(self.bases, offset) - 1, 0)
            try:
                for seg in self.segments[i:]:
                    data = seg.read(max(offset, seg.base_offset), max_bytes, min_one)
                    if data:
                        return data
            except OSError as e:  # a failing disk: Kafka takes the log offline too
                if not self._werr or self._undo is not None:
                    self._werr = LogWriteError(f"{self.directory}: {e}")
                    log.error("%s", self._werr)
                self._undo = None  # sticky: a later append must not clear it
                raise self._werr from e
            return b""

    def _after_cut(self) -> None:
        """Damage at the end of the log was cut off: it ends earlier now.
        (Segment.on_cut, under the lock.) A flush in flight must not raise
        the recovery point back over offsets that will be given again."""
        self._forget_producers()
        self.active.txn_index.truncate_to(self.log_end_offset)
        self.recovery_point = min(self.recovery_point, self.log_end_offset)
        self._cut_count += 1

    def scrub(self, budget_bytes: int) -> int:
        """CRC-check up to about `budget_bytes` of batches that no check
        covered since the log was opened (after a clean stop: all of it),
        quarantining damage as reads do. Returns the bytes checked; 0 when
        everything is checked. For a background thread: the lock is held
        for one step of at most _SCRUB_STEP bytes at a time."""
        done = 0
        for seg in self.segments_snapshot():
            while done < budget_bytes:
                with self._lock:
                    if self._werr or seg not in self.segments:
                        break
                    try:
                        n = seg.scrub(min(budget_bytes - done, _SCRUB_STEP))
                    except OSError as e:
                        self._werr = LogWriteError(f"{self.directory}: {e}")
                        self._undo = None  # sticky: a later append must not clear it
                        log.error("%s", self._werr)
                        raise self._werr from e
                if not n:
                    break
                done += n
        return done

    @property
    def unverified_bytes(self) -> int:
        """Bytes of batches not CRC-checked since open (what scrub has left)."""
        return sum(max(s.unverified_end - s.verified_to, 0) for s in self.segments)

    @property
    def damage_found(self) -> int:
        """Damaged ranges quarantined or cut since open (a metric)."""
        return sum(s.damage_found + s.cuts for s in self.segments)

    def offset_for_timestamp(self, timestamp: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record at or after `timestamp`."""
        with self._lock:
            for seg in self.segments:
                if seg.max_timestamp >= timestamp:
                    found = seg.offset_for_timestamp(timestamp)
                    if found and found[0] >= self.log_start_offset:
                        return found
                    if found:
                        return self.log_start_offset, found[1]
            return None

    def max_timestamp_offset(self) -> tuple[int, int] | None:
        """(offset, timestamp) of the record with the largest timestamp."""
        with self._lock:
            live = [s for s in self.segments if s.max_timestamp >= 0]
            if not live:
                return None
            seg = max(reversed(live), key=lambda s: s.max_timestamp)
            target = seg.max_timestamp
            for _, header, raw in seg.batches():
                if header.max_timestamp == target:
                    if header.timestamp_type == 1:
                        return header.last_offset, target
                    return seg.offset_in_batch(raw, target) or (header.base_offset, target)
            return None

    # -- durability --------------------------------------------------------------

    def flush(self) -> int:
        """fsync everything appended so far; return the new recovery point."""
        with self._flush_lock:
            with self._lock:
                target = self.log_end_offset
                # The rolled segments whose indexes no flush has synced yet, too,
                # as Kafka's LocalLog.flush: the recovery point may already be at
                # their end (flushed while active), and they are trusted below it.
                segs = [s for s in self.segments if s.next_offset > self.recovery_point
                        or s is self.active or s.indexes_unsynced]
                dir_dirty, self._dir_dirty = self._dir_dirty, False
                pending = self.unflushed_messages
                self.unflushed_messages = 0
                self.first_unflushed_ms = None
                cut_count = self._cut_count
            if (target <= self.recovery_point and not dir_dirty and not pending
                    and not any(s.indexes_unsynced for s in segs)):
                return self.recovery_point
            try:
                for s in segs:
                    rolled = s is not self.active
                    s.sync(indexes=rolled)
                    if rolled:
                        s.indexes_unsynced = False
                if dir_dirty:
                    self.medium.sync_dir(self.directory)
            except OSError as e:
                with self._lock:
                    self._werr = LogWriteError(f"{self.directory}: fsync failed: {e}")
                    self._undo = None  # sticky: a later append must not clear it
                log.error("%s", self._werr)
                raise self._werr from e
            with self._lock:
                if self._cut_count == cut_count:  # else the log was cut since `target`
                    self.recovery_point = max(self.recovery_point, target)
            return self.recovery_point

    def needs_flush(self, now: int) -> bool:
        """Whether flush.messages or flush.ms call for an fsync now."""
        if not self.unflushed_messages:
            return False
        if self.unflushed_messages >= self.config.flush_messages:
            return True
        started = self.first_unflushed_ms
        return started is not None and now - started >= self.config.flush_ms

    # -- retention, truncation -----------------------------------------------

    def _delete_prefix(self, doomed: list[Segment], reason: str) -> int:
        """Delete `doomed`, the first segments when they were chosen (never
        the active one). Those another thread deleted or swapped out while
        this one waited for the locks (retention runs on the maintenance
        thread and for DeleteRecords) are skipped, not made up for with the
        segments after them."""
        if not doomed:
            return 0
        with self._flush_lock, self._lock:
            if self._closed:
                return 0
            live = set(map(id, self.segments[:-1]))
            doomed = [s for s in doomed if id(s) in live]
            count = len(doomed)
            if not count or self.segments[:count] != doomed:
                return 0
            del self.segments[:count]
            self.log_start_offset = max(self.log_start_offset, self.segments[0].base_offset)
        for seg in doomed:
            log.info("%s: deleting segment %d (%s)", self.directory, seg.base_offset, reason)
            seg.delete()
        return count

    def apply_retention(self, now: int | None = None) -> int:
        """Delete whole old segments past retention.ms / retention.bytes, or
        wholly below log_start_offset. Returns how many were deleted."""
        now = now_ms() if now is None else now
        with self._lock:
            if self._closed:
                return 0
            if self.active.next_offset <= self.log_start_offset and not self.active.is_empty:
                self._roll()  # everything was deleted by DeleteRecords
            cfg = self.config
            total = self.size
            count = 0
            for seg in self.segments[:-1]:
                # (an empty segment at the start offset is not below it: deleting
                # it would move the start of a compacted log at every restart)
                below_start = seg.next_offset <= self.log_start_offset and not (
                    seg.is_empty and seg.base_offset >= self.log_start_offset)
                expired = cfg.delete and cfg.retention_ms >= 0 and 0 <= seg.max_timestamp < now - cfg.retention_ms
                oversized = cfg.delete and cfg.retention_bytes >= 0 and total - seg.size >= cfg.retention_bytes
                if not (below_start or expired or oversized):
                    break
                total -= seg.size
                count += 1
            doomed = self.segments[:count]
        return self._delete_prefix(doomed, "retention")

    def delete_records_before(self, offset: int) -> int:
        """DeleteRecords: move log_start_offset up to `offset` (at most the
        high watermark); whole segments below it go with the next retention
        pass. Returns the new log_start_offset."""
        if offset > self.recovery_point:
            self.flush()  # a start offset on disk is never past durable data
        with self._lock:
            if offset > self.high_watermark or offset < 0:
                raise OffsetOutOfRangeError(offset, self.log_start_offset, self.high_watermark)
        if offset > self.recovery_point:
            self.flush()  # appended between the check above and the first flush
        with self._lock:
            if offset > self.log_start_offset:
                self.log_start_offset = offset
                self.medium.write_atomic(
                    f"{self.directory}/{files.LOG_START_OFFSET_FILE}", checkpoint.dump_offset(offset)
                )
        self.apply_retention()
        return self.log_start_offset

    def truncate_to(self, offset: int) -> None:
        """Remove every batch holding an offset >= `offset` (whole batches, so
        the log may end below `offset`)."""
        with self._flush_lock, self._lock:
            while len(self.segments) > 1 and self.active.base_offset >= offset:
                self.segments.pop().delete()
            self.active.log_file.pin()
            self.active.active = True
            self.active.truncate_to(offset)
            self._forget_producers()
            self.recovery_point = min(self.recovery_point, self.log_end_offset)
            if self.log_start_offset > self.log_end_offset:
                self.log_start_offset = self.log_end_offset

    def replace_segment(self, old: Segment, cleaned_path: str) -> None:
        self.replace_segments([old], cleaned_path)

    def replace_segments(self, olds: list[Segment], cleaned_path: str,
                         aborted: list[AbortedTxn] | None = None) -> None:
        """Swap a compacted copy of the adjacent segments `olds` in for them:
        `.cleaned` -> `.swap`, the others deleted, `.swap` -> the first's `.log`.
        A crash after the first rename finishes the swap at load, deleting
        the segments the swapped one covers. `aborted`: the new segment's
        `.txnindex` entries (default: those of `olds`). The first's
        `.txnindex` goes before the swap begins, so a crash anywhere in it
        leaves that segment without one: rebuilt at load, never stale."""
        first = olds[0]
        if aborted is None:
            aborted = [e for seg in olds for e in seg.txn_index.entries]
        swap_path = first.path(files.LOG_SUFFIX + files.SWAP_SUFFIX)
        self.medium.remove(first.path(files.TXN_INDEX_SUFFIX))
        self.medium.rename(cleaned_path, swap_path)
        self.medium.sync_dir(self.directory)
        with self._flush_lock, self._lock:
            i = self.segments.index(first) if first in self.segments else -1
            if self._closed or i < 0 or self.segments[i : i + len(olds)] != olds:
                # (DeleteRecords' retention on a request thread, or a close.) A `.swap`
                # left here would be finished by the next load, over
                # segments compacted again since: it must go.
                self.medium.remove(swap_path)
                self.medium.sync_dir(self.directory)
                raise LogWriteError(f"{self.directory}: segments changed under the cleaner")
            for seg in olds[1:]:
                seg.delete()
            first.close()
            self.medium.rename(swap_path, first.path(files.LOG_SUFFIX))
            fresh = self._new_segment(first.base_offset)
            fresh.rebuild_indexes()
            fresh.next_offset = max(fresh.next_offset, olds[-1].next_offset)
            # Below the recovery point: trusted at load. A failed write
            # removes the file (rebuilt at load) and keeps `aborted` serving.
            fresh.txn_index.reset(aborted)
            fresh.txn_index.sync()
            self.segments[i : i + len(olds)] = [fresh]
        self.medium.sync_dir(self.directory)

    def close(self) -> None:
        if not self._werr:
            self.flush()
            if self._producers is not None:  # everything below the log end is fsynced
                try:
                    producer_state.write_snapshot(self.medium, self.directory,
                                                  self.log_end_offset, self._producers,
                                                  keep_at_most=self._snapshot_bases())
                except OSError as e:  # derived data: the next start scans the log instead
                    log.warning("%s: producer state snapshot not written: %s", self.directory, e)
        with self._flush_lock, self._lock:
            self._closed = True
            for seg in self.segments:
                seg.close()

    def delete(self) -> None:
        self.close()
        self.medium.rmtree(self.directory)
