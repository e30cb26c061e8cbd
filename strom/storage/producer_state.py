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

There is no snapshot file: the state is rebuilt by scanning batch headers
of the log the first time a producer batch arrives after start-up.
"""

from collections import deque
from dataclasses import dataclass, field

from strom.storage.errors import StorageError

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
