"""A full disk: produce is refused cleanly, nothing acknowledged is lost, and
once space is freed the partition takes produce again without a restart.

Runs on a real, small filesystem (a 4 MiB tmpfs mounted for the test), so
the ENOSPC comes from the kernel, part-way through a write."""

import errno
import os
import subprocess

import pytest

from strom.storage import LogConfig, LogWriteError, PartitionLog
from strom.storage.files import DiskMedium
from tests.unit.storage.helpers import batch, read_all


@pytest.fixture
def small_disk(tmp_path):
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
                              capture_output=True, text=True, timeout=10)
    except (FileNotFoundError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"cannot mount a small tmpfs to fill: {e}")
    if done.returncode:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, timeout=10)


def _fill_up(path) -> None:
    """Take every free block but a few, so the log's next writes fail."""
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC


def test_a_full_disk_refuses_produce_then_recovers_when_space_is_freed(small_disk):
    medium = DiskMedium(str(small_disk))
    config = LogConfig({"segment.bytes": str(512 * 1024), "retention.ms": "-1"})
    plog = PartitionLog(medium, "t-0", config)
    acked: dict[int, bytes] = {}

    def produce(i: int) -> None:
        value = b"record-%06d-" % i + bytes([i % 251]) * 3000
        result = plog.append(batch([value]))
        acked[result.base_offset] = value

    for i in range(100):
        produce(i)
    plog.flush()
    _fill_up(small_disk / "filler")
    refused = 0
    for i in range(100, 400):
        try:
            produce(i)
        except LogWriteError:
            refused += 1
    assert refused > 250, "a full disk must refuse produce"
    assert plog.failed
    # Readers see every acknowledged record and nothing of the torn writes.
    assert {r.offset: r.value for r in read_all(plog)} == acked

    os.remove(small_disk / "filler")
    for i in range(400, 450):
        produce(i)  # no LogWriteError: the partition is healthy again
    assert not plog.failed
    plog.flush()
    assert {r.offset: r.value for r in read_all(plog)} == acked
    offsets = sorted(acked)
    assert offsets == list(range(len(offsets))), "offsets stay dense across the failure"
    plog.close()

    # And after a restart that recovers every segment from scratch.
    again = PartitionLog(DiskMedium(str(small_disk)), "t-0", config, recovery_point=0)
    assert {r.offset: r.value for r in read_all(again)} == acked
    again.close()


def test_a_broker_on_a_full_disk_refuses_produce_then_takes_it_again(small_disk):
    """The same through a real broker and client: KAFKA_STORAGE_ERROR while
    full, accepted again once space is freed, no restart."""
    from confluent_kafka import KafkaError, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    from strom.embedded import EmbeddedBroker
    from tests.integration import clients

    with EmbeddedBroker(data_dir=str(small_disk / "data"), storage="disk") as broker:
        bs = broker.bootstrap_servers
        admin = AdminClient({"bootstrap.servers": bs})
        admin.create_topics([NewTopic("full", 1, 1)])["full"].result(10)
        acked, refused = {}, []

        def on_delivery(err, msg):
            if err is None:
                acked[msg.offset()] = msg.value()
            else:
                refused.append(err.code())

        p = Producer({"bootstrap.servers": bs, "acks": "all", "linger.ms": 0, "retries": 0,
                      "message.timeout.ms": 5000})

        def produce(i):
            p.produce("full", value=b"value-%05d-" % i + b"z" * 3000, partition=0,
                      on_delivery=on_delivery)
            p.flush(10)

        for i in range(20):
            produce(i)
        assert len(acked) == 20
        _fill_up(small_disk / "filler")
        for i in range(20, 60):
            produce(i)
        assert refused and set(refused) == {KafkaError.KAFKA_STORAGE_ERROR}, refused
        os.remove(small_disk / "filler")
        before = len(acked)
        for i in range(60, 70):
            produce(i)
        assert len(acked) == before + 10, "produce is taken again once there is space"
        got = clients.consume_confluent(bs, "full", max(acked) + 1)
        stored = {offset: value for offset, _, value, _ in got}
        assert all(stored.get(o) == v for o, v in acked.items())
