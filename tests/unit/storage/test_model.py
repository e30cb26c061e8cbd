"""PartitionLog against a plain list of (offset, value), for both backends,
through appends, reads, rolls, flushes, retention, DeleteRecords,
truncation, close and reopen, and crashes."""

import shutil
import tempfile

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from strom.records.batch import batch_records, iter_batches
from strom.storage import LogConfig, PartitionLog
from strom.storage.files import DiskMedium, MemoryMedium

from .helpers import batch, read_all

CONFIG = {"segment.bytes": "400", "index.interval.bytes": "150", "retention.ms": "-1"}


class LogModel(RuleBasedStateMachine):
    backend = "disk"

    def __init__(self):
        super().__init__()
        if self.backend == "disk":
            self.tmp = tempfile.mkdtemp()
            self.medium = DiskMedium(self.tmp)
        else:
            self.tmp = None
            self.medium = MemoryMedium()
        self.config = LogConfig(CONFIG)
        self.log = PartitionLog(self.medium, "m-0", self.config)
        self.model: list[tuple[int, bytes]] = []  # (offset, value) of live records
        self.batches: list[tuple[int, int]] = []  # (base, last) per batch
        self.start = 0
        self.end = 0

    def teardown(self):
        self.log.close()
        if self.tmp:
            shutil.rmtree(self.tmp)

    @rule(values=st.lists(st.binary(min_size=1, max_size=60), min_size=1, max_size=5))
    def append(self, values):
        result = self.log.append(batch(values))
        assert result.base_offset == self.end
        self.model += [(self.end + i, v) for i, v in enumerate(values)]
        self.batches.append((self.end, self.end + len(values) - 1))
        self.end += len(values)

    @rule()
    def roll(self):
        self.log.roll()

    @rule()
    def flush(self):
        assert self.log.flush() == self.end

    @rule(data=st.data())
    def read(self, data):
        offset = data.draw(st.integers(self.start, self.end))
        max_bytes = data.draw(st.integers(1, 2000))
        got = self.log.read(offset, max_bytes)
        if offset == self.end:
            assert got == b""
            return
        values = []
        for pos, header in iter_batches(got):
            # Whole batches come back; like a client, skip what is below
            # the log start (DeleteRecords may cut a batch in two).
            values += [(r.offset, r.value) for r in batch_records(got, pos) if r.offset >= self.start]
        assert got, "a read below the log end returns at least one batch"
        expected = [(o, v) for o, v in self.model if o >= values[0][0]][: len(values)]
        assert values == expected
        assert values[0][0] <= offset <= values[-1][0]

    @precondition(lambda self: self.end > self.start)
    @rule(data=st.data())
    def delete_records(self, data):
        offset = data.draw(st.integers(self.start, self.end))
        assert self.log.delete_records_before(offset) == offset
        self.start = offset
        self.model = [(o, v) for o, v in self.model if o >= offset]

    @precondition(lambda self: self.batches)
    @rule(data=st.data())
    def truncate(self, data):
        base, _ = data.draw(st.sampled_from([b for b in self.batches if b[0] >= self.start]
                                            or [self.batches[-1]]))
        if base < self.start:
            return
        self.log.truncate_to(base)
        self.batches = [b for b in self.batches if b[0] < base]
        self.model = [(o, v) for o, v in self.model if o < base]
        self.end = base

    @rule(retention_bytes=st.integers(0, 1500))
    def retention(self, retention_bytes):
        self.log.config = LogConfig({**CONFIG, "retention.bytes": str(retention_bytes)})
        self.log.apply_retention()
        self.log.config = self.config
        self.start = self.log.log_start_offset
        self.model = [(o, v) for o, v in self.model if o >= self.start]

    @rule()
    def reopen(self):
        self.log.close()
        self.log = PartitionLog(self.medium, "m-0", self.config, clean=True)

    @rule()
    def crash_and_recover(self):
        # No close: the next open recovers every segment from scratch, and
        # finds every record written (a process crash loses nothing).
        self.log = PartitionLog(self.medium, "m-0", self.config, recovery_point=0)
        assert [(r.offset, r.value) for r in read_all(self.log)] == self.model

    @invariant()
    def offsets_match(self):
        assert self.log.log_end_offset == self.end
        assert self.log.log_start_offset == self.start


class DiskLogModel(LogModel):
    backend = "disk"


class MemoryLogModel(LogModel):
    backend = "memory"


_settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestDiskLog = DiskLogModel.TestCase
TestDiskLog.settings = _settings
TestMemoryLog = MemoryLogModel.TestCase
TestMemoryLog.settings = _settings
