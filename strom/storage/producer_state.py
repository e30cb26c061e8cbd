"""Idempotent-producer state of one partition, derived from its log.

For every producer id: its current epoch and the last five batches it
wrote (first and last sequence, first and last offset): the window the
Java and librdkafka producers may have in flight (max.in.flight <= 5).
A batch is checked before it is appended:

- a producer unknown here (new, or expired: `expire`) may start at any
  sequence, as in Kafka (its state may have expired while it was idle);
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

Transactions (KIP-98): an entry also keeps the producer's last timestamp,
the coordinator epoch of its last marker, and the first offset of its
transaction open in this partition (-1 if none). A transactional data
batch opens one at its base offset when none is open, also a batch with no
sequence (base_sequence -1: the group coordinator's TxnOffsetCommit
records); a COMMIT or ABORT marker (`end_txn`) closes it, and its epoch
becomes the producer's. `ongoing` maps producer id -> first offset of the
open transactions in offset order (they open in log order), so its first
value is the first unstable offset: the last stable offset is that, or the
log end when nothing is open.

Snapshots: besides the newest, the newest one at or below the active
segment's base is kept: a crash's rebuild of that segment's `.txnindex`
(transactions.rebuild) starts from it instead of the log start.

Snapshot format (checkpoint.dump_lines, so checksummed): `offset <n> v2`,
then one line per producer: `producer <id> <epoch> <last_timestamp>
<coordinator_epoch> <current_txn_first_offset>` followed by its batches as
`first_seq,last_seq,base_offset,last_offset`, oldest first. A snapshot that
fails its checksum or its shape (the format before transactions, `offset
<n>` alone, included), or whose offset is past the log end (the log was
cut back: checked at load, and whenever the log is cut), is derived data:
it is deleted and not used; the state is rebuilt from the log.
"""

import logging

from collections import deque
from dataclasses import dataclass, field

from strom.storage import checkpoint, files
from strom.storage.errors import StorageError

log = logging.getLogger(__name__)

WINDOW = 5
# Far above any real snapshot (about 150 bytes a producer): a larger file
# is damage, and is not read into memory.
MAX_SNAPSHOT_BYTES = 256 * 1024 * 1024
INT32_MAX = 2**31 - 1


class OutOfOrderSequenceError(StorageError):
    pass


class InvalidProducerEpochError(StorageError):
    pass


class InvalidTxnStateError(StorageError):
    """A non-transactional batch from a producer whose transaction is open here."""


class CoordinatorFencedError(InvalidProducerEpochError):
    """A marker from a coordinator epoch older than the last one seen
    (Kafka's TransactionCoordinatorFencedException). A kind of stale
    epoch: a coordinator that drops a refused marker drops this one too."""


@dataclass
class ProducerEntry:
    epoch: int
    batches: deque = field(default_factory=lambda: deque(maxlen=WINDOW))
    last_timestamp: int = -1
    coordinator_epoch: int = -1
    current_txn_first_offset: int = -1

    @property
    def last_sequence(self) -> int:
        return self.batches[-1][1] if self.batches else -1


def _last_sequence(header) -> int:
    last = header.base_sequence + header.last_offset_delta
    return last - INT32_MAX - 1 if last > INT32_MAX else last


class ProducerStateTable:
    def __init__(self):
        self.producers: dict[int, ProducerEntry] = {}
        self.ongoing: dict[int, int] = {}  # producer id -> first offset, in offset order

    @property
    def first_unstable_offset(self) -> int | None:
        for first in self.ongoing.values():
            return first
        return None

    def check(self, header) -> tuple[int, int] | None:
        """Validate a batch about to be appended. Returns the (base, last)
        offsets of the original if it is a duplicate, else None."""
        entry = self.producers.get(header.producer_id)
        seq = header.base_sequence
        if seq < 0:
            # No sequence (a coordinator's transactional write): the epoch only.
            if entry is not None and header.producer_epoch < entry.epoch:
                raise InvalidProducerEpochError(
                    f"producer {header.producer_id} epoch {header.producer_epoch} is older "
                    f"than {entry.epoch}")
            return None
        if entry is not None and entry.current_txn_first_offset >= 0 \
                and not header.is_transactional and header.producer_epoch >= entry.epoch:
            raise InvalidTxnStateError(
                f"producer {header.producer_id} wrote a non-transactional batch inside its "
                "transaction")
        if entry is None:
            # Any sequence, as in Kafka: the producer may be new, or known
            # once and expired (producer.id.expiration.ms) while idle.
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
        """Record an appended data batch (also used to replay the log)."""
        pid = header.producer_id
        entry = self.producers.get(pid)
        if entry is None:
            entry = self.producers[pid] = ProducerEntry(header.producer_epoch)
        elif header.producer_epoch != entry.epoch:
            # A new epoch forgets the old one's batches (Kafka's maybeUpdateProducerEpoch).
            entry.epoch = header.producer_epoch
            entry.batches.clear()
        if header.base_sequence >= 0:
            entry.batches.append(
                (header.base_sequence, _last_sequence(header), header.base_offset, header.last_offset)
            )
        entry.last_timestamp = header.max_timestamp
        if header.is_transactional and entry.current_txn_first_offset < 0:
            entry.current_txn_first_offset = header.base_offset
            self.ongoing[pid] = header.base_offset

    def check_marker(self, producer_id: int, producer_epoch: int, coordinator_epoch: int) -> None:
        """Before a COMMIT/ABORT marker is written: a fenced producer epoch
        or an older coordinator epoch is refused (Kafka's appendEndTxnMarker)."""
        entry = self.producers.get(producer_id)
        if entry is None:
            return
        if producer_epoch < entry.epoch:
            raise InvalidProducerEpochError(
                f"marker for producer {producer_id} has epoch {producer_epoch}, older than "
                f"{entry.epoch}")
        if coordinator_epoch < entry.coordinator_epoch:
            raise CoordinatorFencedError(
                f"marker for producer {producer_id} from coordinator epoch {coordinator_epoch}, "
                f"older than {entry.coordinator_epoch}")

    def end_txn(self, producer_id: int, producer_epoch: int, coordinator_epoch: int,
                timestamp: int) -> int:
        """Record a marker (also used to replay the log); return the first
        offset of the transaction it ends, -1 when none was open."""
        entry = self.producers.get(producer_id)
        if entry is None:
            entry = self.producers[producer_id] = ProducerEntry(producer_epoch)
        elif producer_epoch != entry.epoch:
            entry.epoch = producer_epoch
            entry.batches.clear()
        first = entry.current_txn_first_offset
        entry.current_txn_first_offset = -1
        entry.coordinator_epoch = coordinator_epoch
        entry.last_timestamp = timestamp
        if first >= 0:
            self.ongoing.pop(producer_id, None)
        return first

    def expire(self, now: int, expiration_ms: int) -> int:
        """Forget producers idle for `expiration_ms` with no open transaction
        (Kafka's removeExpiredProducers). Returns how many went."""
        doomed = [pid for pid, e in self.producers.items()
                  if e.current_txn_first_offset < 0 and now - e.last_timestamp >= expiration_ms]
        for pid in doomed:
            del self.producers[pid]
        return len(doomed)


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


def write_snapshot(medium, directory: str, offset: int, table: ProducerStateTable,
                   keep_at_most: int | list[int] | None = None) -> None:
    """The state of every batch below `offset`; older snapshots go, but for
    the newest at or below each offset of `keep_at_most` (the bases of the
    last few segments: what rebuilding the `.txnindex` from one of them
    after a crash starts from, when the checkpointed recovery point lags a
    recent roll; Kafka keeps one snapshot per segment)."""
    lines = [f"offset {offset} v2"]
    for pid, e in sorted(table.producers.items()):
        batches = " ".join(",".join(map(str, b)) for b in e.batches)
        lines.append(f"producer {pid} {e.epoch} {e.last_timestamp} {e.coordinator_epoch} "
                     f"{e.current_txn_first_offset} {batches}".rstrip())
    medium.write_atomic(_path(directory, offset), checkpoint.dump_lines(lines))
    if keep_at_most is None:
        bounds = []
    elif isinstance(keep_at_most, int):
        bounds = [keep_at_most]
    else:
        bounds = sorted(keep_at_most, reverse=True)
    for older in _snapshots(medium, directory):  # newest first
        if older == offset:
            continue
        if bounds and older <= bounds[0]:  # the newest at or below the next bound
            while bounds and older <= bounds[0]:
                bounds.pop(0)
            continue
        medium.remove(_path(directory, older))


def _parse(lines: list[str] | None, offset: int) -> ProducerStateTable | None:
    if not lines or lines[0] != f"offset {offset} v2":
        return None
    table = ProducerStateTable()
    ongoing = []
    try:
        for line in lines[1:]:
            kind, pid, epoch, last_ts, coord_epoch, txn_first, *batches = line.split(" ")
            pid, txn_first = int(pid), int(txn_first)
            if kind != "producer" or len(batches) > WINDOW or pid in table.producers \
                    or not -1 <= txn_first < offset:
                return None
            entry = table.producers[pid] = ProducerEntry(
                int(epoch), last_timestamp=int(last_ts), coordinator_epoch=int(coord_epoch),
                current_txn_first_offset=txn_first)
            for b in batches:
                first_seq, last_seq, base, last = (int(v) for v in b.split(","))
                entry.batches.append((first_seq, last_seq, base, last))
            if txn_first >= 0:
                ongoing.append((txn_first, pid))
    except ValueError:
        return None
    for first, pid in sorted(ongoing):
        table.ongoing[pid] = first
    return table


def _size(medium, path: str) -> int:
    f = medium.open(path)
    try:
        return f.size
    finally:
        f.close()


def load_snapshot(medium, directory: str, log_end_offset: int,
                  at_most: int | None = None) -> tuple[int, ProducerStateTable] | None:
    """(offset, state) of the newest usable snapshot, else None. Unusable
    ones are deleted; those past `at_most` are passed over, not deleted."""
    for offset in _snapshots(medium, directory):
        if at_most is not None and offset > at_most:
            continue
        path = _path(directory, offset)
        table = None
        if offset <= log_end_offset:
            lines = None
            if _size(medium, path) <= MAX_SNAPSHOT_BYTES:  # a hostile file is not read whole
                lines = checkpoint.load_lines(medium.read(path), legacy=False)
            table = _parse(lines, offset)
            if table is None and lines and lines[0] == f"offset {offset}":
                log.info("%s: producer state snapshot %d is of the format before "
                         "transactions: rebuilt from the log instead", directory, offset)
            elif table is None:
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
