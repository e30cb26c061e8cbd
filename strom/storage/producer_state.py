"""Idempotent-producer state of one partition, derived from its log.

For every producer id: its current epoch and the last five batches it
wrote (first and last sequence, first and last offset): the window the
Java and librdkafka producers may have in flight (max.in.flight <= 5).
A batch is checked before it is appended:

- epoch below the current one: InvalidProducerEpoch (a zombie);
- a newer epoch must start again at sequence 0;
- the same (first, last) sequence as a cached batch: a duplicate, answered
  with that batch's offsets and not written again;
- otherwise the first sequence must follow the last one (wrapping at
  2**31 - 1 to 0): else OutOfOrderSequence.

The state is rebuilt the first time a producer batch arrives after
start-up: from the newest `<offset>.snapshot` in the partition directory
(the state of every batch below `offset`, written at a clean close and by
the maintenance pass after a roll, once `offset` is durable), then
by replaying the headers of the batches from `offset` on; without a usable
snapshot, from every batch header in the log. Compaction keeps the headers
of each producer's last five batches (cleaner.py), so the log alone gives
the same state; the snapshot saves the scan and remembers producers whose
segments retention has since deleted.

Snapshot format (checkpoint.dump_lines, so checksummed): `offset <n>`, then
one line per producer: `producer <id> <epoch>` followed by its batches as
`first_seq,last_seq,base_offset,last_offset`, oldest first. A snapshot that
fails its checksum or its shape, or whose offset is past the log end (the
log was cut back: checked at load, and whenever the log is cut), is
derived data: it is deleted and not used.
"""

import logging

from collections import deque
from dataclasses import dataclass, field

from strom.storage import checkpoint, files
from strom.storage.errors import StorageError

log = logging.getLogger(__name__)

WINDOW = 5
INT32_MAX = 2**31 - 1


class OutOfOrderSequenceError(StorageError):
    pass


class InvalidProducerEpochError(StorageError):
    pass


@dataclass
class ProducerEntry:
    epoch: int
    batches: deque = field(default_factory=lambda: deque(maxlen=WINDOW))

    @property
    def last_sequence(self) -> int:
        return self.batches[-1][1] if self.batches else -1


def _last_sequence(header) -> int:
    last = header.base_sequence + header.last_offset_delta
    return last - INT32_MAX - 1 if last > INT32_MAX else last


class ProducerStateTable:
    def __init__(self):
        self.producers: dict[int, ProducerEntry] = {}

    def check(self, header) -> tuple[int, int] | None:
        """Validate a batch about to be appended. Returns the (base, last)
        offsets of the original if it is a duplicate, else None."""
        entry = self.producers.get(header.producer_id)
        seq = header.base_sequence
        if entry is None:
            if seq != 0:
                raise OutOfOrderSequenceError(
                    f"producer {header.producer_id} is unknown here and starts at sequence {seq}, not 0"
                )
            return None
        if header.producer_epoch < entry.epoch:
            raise InvalidProducerEpochError(
                f"producer {header.producer_id} epoch {header.producer_epoch} is older than {entry.epoch}"
            )
        if header.producer_epoch > entry.epoch:
            if seq != 0:
                raise OutOfOrderSequenceError(f"a new epoch must start at sequence 0, not {seq}")
            return None
        last = _last_sequence(header)
        for first_seq, last_seq, base, last_offset in entry.batches:
            if first_seq == seq and last_seq == last:
                return base, last_offset
        expected = 0 if entry.last_sequence == INT32_MAX else entry.last_sequence + 1
        if seq != expected:
            raise OutOfOrderSequenceError(
                f"producer {header.producer_id} sent sequence {seq}, expected {expected}"
            )
        return None

    def update(self, header) -> None:
        """Record an appended batch (also used to replay the log)."""
        entry = self.producers.get(header.producer_id)
        if entry is None or header.producer_epoch > entry.epoch:
            entry = self.producers[header.producer_id] = ProducerEntry(header.producer_epoch)
        entry.batches.append(
            (header.base_sequence, _last_sequence(header), header.base_offset, header.last_offset)
        )


# -- snapshots -----------------------------------------------------------------


def _snapshots(medium, directory: str) -> list[int]:
    """Offsets of the snapshot files in `directory`, newest first."""
    out = []
    for name in medium.listdir(directory):
        parsed = files.parse_segment_name(name)
        if parsed and parsed[1] == files.SNAPSHOT_SUFFIX:
            out.append(parsed[0])
    return sorted(out, reverse=True)


def _path(directory: str, offset: int) -> str:
    return f"{directory}/{files.segment_name(offset, files.SNAPSHOT_SUFFIX)}"


def write_snapshot(medium, directory: str, offset: int, table: ProducerStateTable) -> None:
    """The state of every batch below `offset`; older snapshots go."""
    lines = [f"offset {offset}"]
    for pid, entry in sorted(table.producers.items()):
        batches = " ".join(",".join(map(str, b)) for b in entry.batches)
        lines.append(f"producer {pid} {entry.epoch} {batches}".rstrip())
    medium.write_atomic(_path(directory, offset), checkpoint.dump_lines(lines))
    for older in _snapshots(medium, directory):
        if older != offset:
            medium.remove(_path(directory, older))


def _parse(lines: list[str] | None, offset: int) -> ProducerStateTable | None:
    if not lines or lines[0] != f"offset {offset}":
        return None
    table = ProducerStateTable()
    try:
        for line in lines[1:]:
            kind, pid, epoch, *batches = line.split(" ")
            if kind != "producer" or len(batches) > WINDOW or int(pid) in table.producers:
                return None
            entry = table.producers[int(pid)] = ProducerEntry(int(epoch))
            for b in batches:
                first_seq, last_seq, base, last = (int(v) for v in b.split(","))
                entry.batches.append((first_seq, last_seq, base, last))
    except ValueError:
        return None
    return table


def load_snapshot(medium, directory: str, log_end_offset: int) -> tuple[int, ProducerStateTable] | None:
    """(offset, state) of the newest usable snapshot, else None. Unusable
    ones are deleted."""
    for offset in _snapshots(medium, directory):
        path = _path(directory, offset)
        table = None
        if offset <= log_end_offset:
            table = _parse(checkpoint.load_lines(medium.read(path), legacy=False), offset)
            if table is None:
                log.warning("%s: producer state snapshot %d is damaged: rebuilt from the log "
                            "instead", directory, offset)
        if table is not None:
            return offset, table
        medium.remove(path)
    return None


def delete_snapshots_after(medium, directory: str, offset: int) -> None:
    """The log was cut back to end at `offset`: later snapshots are wrong."""
    for found in _snapshots(medium, directory):
        if found > offset:
            medium.remove(_path(directory, found))
