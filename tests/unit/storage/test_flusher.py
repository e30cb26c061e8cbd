import threading

from strom.storage import LogConfig, PartitionLog
from strom.storage.files import DiskMedium
from strom.storage.errors import LogWriteError
from strom.storage.flusher import Flusher

from .helpers import batch


def test_group_commit_shares_fsyncs_between_writers(tmp_path):
    plog = PartitionLog(DiskMedium(str(tmp_path)), "g-0", LogConfig())
    flusher = Flusher()
    lock = threading.Lock()
    acked = []

    def writer(n):
        for _ in range(n):
            with lock:
                result = plog.append(batch([b"x" * 1000]))
            flusher.flush_sync(plog, result.last_offset + 1, timeout=30)
            assert plog.recovery_point > result.last_offset
            acked.append(result.last_offset)

    threads = [threading.Thread(target=writer, args=(25,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flusher.close()
    assert sorted(acked) == list(range(200))
    assert flusher.fsyncs < 200  # several appends shared one fsync


def test_callback_fires_immediately_when_already_durable(tmp_path):
    plog = PartitionLog(DiskMedium(str(tmp_path)), "g-0", LogConfig())
    flusher = Flusher()
    plog.append(batch([b"a"]))
    plog.flush()
    calls = []
    flusher.request(plog, 1, calls.append)
    assert calls == [None]
    flusher.close()


def test_flush_messages_triggers_background_fsync(tmp_path):
    import time

    plog = PartitionLog(DiskMedium(str(tmp_path)), "g-0", LogConfig({"flush.messages": "5"}))
    flusher = Flusher()
    flusher.watch(plog)
    for _ in range(5):
        plog.append(batch([b"a"]))
    deadline = time.monotonic() + 10
    while plog.recovery_point < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert plog.recovery_point == 5
    flusher.close()


def test_loop_waits_share_one_fsync_per_loop_pass(tmp_path):
    """Writers woken together append, then one fsync covers all of them:
    the waits of one loop pass go to the flusher together."""
    import asyncio

    from strom.storage.flusher import LoopWaits

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
    import asyncio
    import os

    from strom.storage.files import MemoryMedium
    from strom.storage.flusher import LoopWaits

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
