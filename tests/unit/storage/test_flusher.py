import threading

from strom.storage import LogConfig, PartitionLog
from strom.storage.files import DiskMedium
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
