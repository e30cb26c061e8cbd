"""LoopWaits: the broker's durability waits, on real files with the real
flusher thread."""

import asyncio
import os

from strom.broker.waits import LoopWaits
from strom.storage import LogConfig, PartitionLog
from strom.storage.errors import LogWriteError
from strom.storage.files import DiskMedium, MemoryMedium
from strom.storage.flusher import Flusher
from tests.unit.storage.helpers import batch


def test_loop_waits_share_one_fsync_per_loop_pass(tmp_path):
    """Writers woken together append, then one fsync covers all of them:
    the waits of one loop pass go to the flusher together."""
    plog = PartitionLog(DiskMedium(str(tmp_path)), "g-0", LogConfig())
    flusher = Flusher()
    rounds, writers = 20, 8

    async def main():
        waits = LoopWaits(flusher, asyncio.get_running_loop())

        async def writer():
            for _ in range(rounds):
                result = plog.append(batch([b"x" * 100]))
                assert await waits.wait(plog, result.last_offset + 1) is None
                assert plog.recovery_point > result.last_offset

        await asyncio.gather(*(writer() for _ in range(writers)))

    asyncio.run(main())
    flusher.close()
    assert plog.log_end_offset == rounds * writers
    assert flusher.fsyncs == rounds  # not one per writer, nor two cohorts per round


def test_loop_waits_report_a_failed_fsync_and_skip_memory_logs(tmp_path):
    plog = PartitionLog(DiskMedium(str(tmp_path)), "g-0", LogConfig())
    mem = PartitionLog(MemoryMedium(), "m-0", LogConfig())
    flusher = Flusher()

    async def main():
        waits = LoopWaits(flusher, asyncio.get_running_loop())
        mem.append(batch([b"m"]))
        fut = waits.wait(mem, 1)
        assert fut.done() and fut.result() is None  # nothing to fsync in memory
        plog.append(batch([b"a"]))
        f = plog.active.log_file
        os.close(f._fd)
        f._fd = os.open("/dev/full", os.O_WRONLY)  # fdatasync fails here
        return await waits.wait(plog, 1)

    error = asyncio.run(main())
    flusher.close()
    assert isinstance(error, LogWriteError)
    assert plog.recovery_point == 0
