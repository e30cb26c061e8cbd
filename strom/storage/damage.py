"""Telling damaged bytes in a segment's `.log` from intact batches.

A batch is intact when its header is plausible where it stands (length
within the segment, magic 2, offsets after the batch before it and within
the segment's 32-bit relative range) and its CRC-32C matches. The CRC does
not cover `base_offset`, `batch_length` or `partition_leader_epoch`, so the
plausibility rules are what catch damage there; a flip that keeps the
offsets in order goes unnoticed (Kafka has the same blind spot).

Damaged bytes are quarantined, not cut (except at the very end of the
active segment): a `Damage` is the byte range from the first bad byte to
the next intact batch, found by `find_intact`. Readers skip it as if its
offsets had been compacted away. `SegmentDamage`, a base of Segment, holds
a segment's quarantine and its never-checked range, and decides between
quarantine, rescan and cut when a reader or the scrub finds a bad batch.
"""

import logging
from typing import NamedTuple

from strom.records.batch import BATCH_HEADER_SIZE, LOG_OVERHEAD, MAGIC, BatchHeader, validate_batch
from strom.records.errors import InvalidRecordError
from strom.storage import files

log = logging.getLogger(__name__)

_MIN_LENGTH = BATCH_HEADER_SIZE - LOG_OVERHEAD
_SCAN_CHUNK = 1024 * 1024
_MAGIC_AT = 16  # byte of the magic within a batch


class Damage(NamedTuple):
    position: int  # first damaged byte in the `.log`
    end: int  # first byte of the next intact batch, or the segment's size


def plausible(header: BatchHeader, pos: int, size: int, min_base: int, base_offset: int) -> bool:
    """Whether a header at `pos` could start a batch of this segment."""
    return (
        header.batch_length >= _MIN_LENGTH
        and pos + header.batch_length + LOG_OVERHEAD <= size
        and header.magic == MAGIC
        and header.base_offset >= min_base
        and header.last_offset_delta >= 0
        and header.base_offset + header.last_offset_delta - base_offset <= 0xFFFFFFFF
    )


def intact_at(file, pos: int, size: int, min_base: int, base_offset: int) -> BatchHeader | None:
    """The header of the batch at `pos` if it is intact (CRC included), else None."""
    head = file.pread(pos, BATCH_HEADER_SIZE)
    if len(head) < BATCH_HEADER_SIZE:
        return None
    header = BatchHeader.parse(head)
    if not plausible(header, pos, size, min_base, base_offset):
        return None
    raw = file.pread(pos, header.size)
    try:
        validate_batch(raw)
    except InvalidRecordError:
        return None
    return header


def _confirmed(file, pos: int, size: int, min_base: int, base_offset: int) -> bool:
    """An intact batch at `pos`, followed by the segment's end or by another
    intact batch: a batch embedded in a record's value, or CRC-valid by
    chance, is not followed by one."""
    header = intact_at(file, pos, size, min_base, base_offset)
    if header is None:
        return False
    after = pos + header.size
    return after == size or intact_at(file, after, size, header.next_offset, base_offset) is not None


def find_intact(file, pos: int, size: int, min_base: int, base_offset: int) -> int | None:
    """Position of the first intact batch after a bad one at `pos`, or None.

    First where the bad batch's own length points (a flipped byte in the
    records leaves it right), then every place a magic byte could be."""
    head = file.pread(pos, BATCH_HEADER_SIZE)
    if len(head) == BATCH_HEADER_SIZE:
        header = BatchHeader.parse(head)
        nxt = pos + header.size
        if header.batch_length >= _MIN_LENGTH and pos < nxt < size and \
                _confirmed(file, nxt, size, min_base, base_offset):
            return nxt
    start = pos + 1
    while start + BATCH_HEADER_SIZE <= size:
        chunk = file.pread(start + _MAGIC_AT, min(_SCAN_CHUNK, size - start - _MAGIC_AT))
        if not chunk:
            return None
        i = chunk.find(MAGIC.to_bytes(1, "big"))
        while i >= 0:
            if _confirmed(file, start + i, size, min_base, base_offset):
                return start + i
            i = chunk.find(MAGIC.to_bytes(1, "big"), i + 1)
        start += len(chunk)
    return None


class SegmentDamage:
    """Segment's bookkeeping of damage (a base class of Segment, kept here
    with the rules it applies): `damaged`, the quarantined ranges, sorted,
    replaced and never changed in place so readers on other threads may
    iterate them; `verified_to` / `unverified_end`, the range no check has
    covered since open; `damage_found` and `cuts`, counters for metrics."""

    def _damage_at(self, pos: int) -> Damage | None:
        for d in self.damaged:
            if d.position <= pos < d.end:
                return d
            if d.position > pos:
                break
        return None

    def _next_damage(self, pos: int) -> int:
        """Where the first damage at or after `pos` starts, else the size."""
        for d in self.damaged:
            if d.position >= pos:
                return d.position
        return self.size

    def _found_damage(self, pos: int | None, how: str) -> None:
        """A reader (or the scrub) found the batch at `pos` bad (None: the
        chain of batch headers broke somewhere). A batch whose framing holds
        is quarantined up to the next intact batch; a broken chain (or an
        offset index pointing into the middle of a batch) makes the whole
        segment rescanned; damage up to the end of the active segment is cut."""
        with self.lock:
            if pos is not None and self._damage_at(pos) is not None:
                return
            header = None
            if pos is not None:
                head = self.log_file.pread(pos, BATCH_HEADER_SIZE)
                if len(head) == BATCH_HEADER_SIZE:
                    header = BatchHeader.parse(head)
            base = self.base_offset
            if header is None or not plausible(header, pos, self.size, base, base):
                self._rescan(how)
                return
            intact = find_intact(self.log_file, pos, self.size, base, base)
            if intact is None and self.active:
                self._cut(pos, how)
            else:
                self._quarantine(pos, self.size if intact is None else intact, how)

    def _rescan(self, how: str) -> None:
        log.error("%s: a batch header or an index entry does not hold up (%s): checking "
                  "every batch, rebuilding the indexes", self.path(files.LOG_SUFFIX), how)
        cut = self.recover(validate=True, truncate_tail=self.active)
        if cut:
            self.cuts += 1
            log.error("%s: cut %d damaged bytes off its end; it now ends at offset %d",
                      self.path(files.LOG_SUFFIX), cut, self.next_offset)

    def _cut(self, pos: int, how: str) -> None:
        size = self.size
        self.log_file.truncate(pos)
        self.rebuild_indexes()
        self.cuts += 1
        log.error("%s: damaged batch at position %d (%s), nothing intact after it: cut %d "
                  "bytes off its end; it now ends at offset %d",
                  self.path(files.LOG_SUFFIX), pos, how, size - pos, self.next_offset)

    def _quarantine(self, pos: int, end: int, how: str) -> None:
        self.damaged = sorted([*self.damaged, Damage(pos, end)])
        self.damage_found += 1
        log.error("%s: damaged batch data at bytes %d-%d (%s): quarantined, readers skip "
                  "to the next intact batch", self.path(files.LOG_SUFFIX), pos, end, how)

    def scrub(self, budget: int) -> int:
        """CRC-check about `budget` bytes of batches not checked since open,
        from `verified_to` on. Returns the bytes covered; 0 when none are left.
        The caller holds the log's lock."""
        pos = self.verified_to
        if pos >= self.unverified_end:
            return 0
        if self.damaged and (d := self._damage_at(pos)) is not None:
            self.verified_to = d.end
            return d.end - pos
        limit = self._next_damage(pos) if self.damaged else self.size
        data = self.log_file.pread(pos, min(max(budget, BATCH_HEADER_SIZE),
                                            min(limit, self.unverified_end) - pos))
        end, bad = self._check_batches(data, pos, limit)
        if bad is None and end == 0 and len(data) >= BATCH_HEADER_SIZE:  # one large batch
            data = self.log_file.pread(pos, BatchHeader.parse(data).size)
            end, bad = self._check_batches(data, pos, limit)
        if bad is not None:
            self._found_damage(bad, "found by the scrub")
        elif end == 0:
            self._found_damage(pos, "found by the scrub")
        return max(end, 1)

    def _intact_header(self, pos: int, how: str) -> BatchHeader | None:
        """The header of the batch at `pos` when it is intact (its CRC
        checked unless a check ran since open), else None after reporting
        the damage (quarantined or rescanned: see _found_damage)."""
        head = self.log_file.pread(pos, BATCH_HEADER_SIZE)
        if len(head) == BATCH_HEADER_SIZE:
            header = BatchHeader.parse(head)
            limit = self._next_damage(pos) if self.damaged else self.size
            base = self.base_offset
            if plausible(header, pos, limit, base, base):
                if not self.verified_to <= pos < self.unverified_end:
                    return header
                if intact_at(self.log_file, pos, limit, base, base) is not None:
                    return header
        self._found_damage(pos, how)
        return None

