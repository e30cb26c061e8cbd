"""Damaged metadata never deletes data; interrupted deletes and failed
creates are cleaned by their markers; maintenance survives a failing log."""

import json
import logging
import os

import pytest

from strom.records import Record, build_batch
from strom.records.batch import crc32c
from strom.storage import InvalidPartitionsError, LogManager, LogWriteError, files

from .helpers import batch, read_all


def fill(tmp_path, **configs):
    mgr = LogManager(str(tmp_path))
    mgr.create_topic("keep", 3, {"retention.ms": "-1", **configs})
    for p in range(3):
        mgr.get_log("keep", p).append(batch([b"v%d-%d" % (p, i) for i in range(5)]))
    mgr.close()


def values(mgr, topic="keep"):
    return [[r.value for r in read_all(plog)] for plog in mgr.get_topic(topic).logs]


EXPECTED = [[b"v%d-%d" % (p, i) for i in range(5)] for p in range(3)]


@pytest.mark.parametrize("damage", ["deleted", "cut", "zeroed", "garbage", "not-an-object",
                                    "bad-entry", "flipped"])
def test_damaged_topics_json_rebuilds_from_directories(tmp_path, damage, caplog):
    fill(tmp_path)
    path = tmp_path / "topics.json"
    raw = path.read_bytes()
    if damage == "deleted":
        path.unlink()
    elif damage == "cut":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "zeroed":
        path.write_bytes(bytes(len(raw)))
    elif damage == "garbage":
        path.write_bytes(raw + b"\x00garbage")
    elif damage == "not-an-object":
        path.write_bytes(b"[1, 2]")
    elif damage == "bad-entry":
        path.write_bytes(json.dumps({"keep": {"id": "nope", "partitions": "3"}}).encode())
    elif damage == "flipped":  # a digit of retention.ms: only the checksum sees it
        path.write_bytes(raw.replace(b'"-1"', b'"91"', 1))
    with caplog.at_level(logging.WARNING):
        mgr = LogManager(str(tmp_path))
    try:
        assert values(mgr) == EXPECTED
        topic = mgr.get_topic("keep")
        assert topic.config.retention_ms == -1 and topic.config.retention_bytes == -1
        assert "ADOPTED topic keep (3 partitions)" in caplog.text
        mgr.run_maintenance(now=2**62)  # retention far in the future deletes nothing
        assert values(mgr) == EXPECTED
    finally:
        mgr.close()
    assert "removing" not in caplog.text
    mgr = LogManager(str(tmp_path))  # the rebuilt registry is valid: no warning again
    assert values(mgr) == EXPECTED
    mgr.close()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".damaged")] or damage == "deleted"


def test_fewer_partitions_in_topics_json_than_directories(tmp_path):
    fill(tmp_path)
    path = tmp_path / "topics.json"
    doc = json.loads(path.read_bytes())
    doc["data"]["keep"]["partitions"] = 1
    path.write_bytes(json.dumps(doc).encode())  # checksum now wrong as well
    mgr = LogManager(str(tmp_path))
    assert values(mgr) == EXPECTED
    mgr.close()


def test_a_partition_directory_past_the_partition_limit_is_left_alone(tmp_path, caplog):
    fill(tmp_path)
    stray = tmp_path / "keep-99999999"
    stray.mkdir()
    (stray / "00000000000000000000.log").write_bytes(b"")
    os.remove(tmp_path / "topics.json")
    mgr = LogManager(str(tmp_path))
    assert mgr.get_topic("keep").partitions == 3
    assert values(mgr) == EXPECTED
    mgr.close()
    assert stray.exists() and "ignoring the directories of partitions [99999999]" in caplog.text


def test_legacy_topics_json_with_a_low_partition_count_is_raised(tmp_path):
    fill(tmp_path)
    doc = json.loads((tmp_path / "topics.json").read_bytes())["data"]
    doc["keep"]["partitions"] = 2
    (tmp_path / "topics.json").write_bytes(json.dumps(doc).encode())  # the old, unchecked format
    mgr = LogManager(str(tmp_path))
    assert mgr.get_topic("keep").config.retention_ms == -1  # its configs were valid: kept
    assert values(mgr) == EXPECTED
    mgr.close()


@pytest.mark.parametrize("damage", ["deleted", "cut", "garbage"])
def test_damaged_meta_json_is_rebuilt_past_every_producer_id(tmp_path, damage, caplog):
    mgr = LogManager(str(tmp_path))
    mgr.create_topic("t", 1)
    pid = 0
    for _ in range(3):
        pid = mgr.allocate_producer_id()
    mgr.get_log("t", 0).append(build_batch([Record(None, b"x", 1)], producer_id=pid,
                                           producer_epoch=0, base_sequence=0))
    mgr.close()
    path = tmp_path / "meta.json"
    raw = path.read_bytes()
    if damage == "deleted":
        path.unlink()
    elif damage == "cut":
        path.write_bytes(raw[:10])
    else:
        path.write_bytes(b"\xff" + raw)
    with caplog.at_level(logging.WARNING):
        mgr = LogManager(str(tmp_path))
    try:
        assert "the cluster id changes" in caplog.text
        assert mgr.allocate_producer_id() > pid
        assert [r.value for r in read_all(mgr.get_log("t", 0))] == [b"x"]
    finally:
        mgr.close()
    mgr = LogManager(str(tmp_path))
    assert mgr.allocate_producer_id() > pid + 1
    mgr.close()


@pytest.mark.parametrize("content", [b"", b"\x00" * 40, b"keep-0 3\nkeep-1 x\n", b"garbage",
                                     b"keep-0 999999999999\n"])
def test_damaged_recovery_point_checkpoint_recovers_everything(tmp_path, content):
    fill(tmp_path)
    (tmp_path / ".strom_cleanshutdown").unlink()  # as after a crash
    (tmp_path / "recovery-point-offset-checkpoint").write_bytes(content)
    mgr = LogManager(str(tmp_path))
    assert values(mgr) == EXPECTED
    mgr.close()


@pytest.mark.parametrize("content", [b"999999999", b"3garbage", b"\x00\x00", b"",
                                     b"4\ncrc32c 00000000\n"])
def test_damaged_log_start_offset_never_deletes(tmp_path, content):
    fill(tmp_path)
    (tmp_path / "keep-0" / "log-start-offset").write_bytes(content)
    mgr = LogManager(str(tmp_path))
    try:
        plog = mgr.get_log("keep", 0)
        assert plog.log_start_offset == 0
        mgr.run_maintenance()
        assert values(mgr) == EXPECTED
    finally:
        mgr.close()


def test_delete_records_start_survives_and_is_checksummed(tmp_path):
    fill(tmp_path)
    mgr = LogManager(str(tmp_path))
    assert mgr.get_log("keep", 0).delete_records_before(3) == 3
    mgr.close()
    mgr = LogManager(str(tmp_path))
    assert mgr.get_log("keep", 0).log_start_offset == 3
    mgr.close()


def test_only_marked_directories_are_removed_at_load(tmp_path, caplog):
    fill(tmp_path)
    marker = tmp_path / files.delete_dir_name("gone", 0, "ab" * 16)
    marker.mkdir()
    (marker / "00000000000000000000.log").write_bytes(b"old")
    (tmp_path / "orphan-0").mkdir()  # no segment file: nothing to keep
    with caplog.at_level(logging.INFO):
        mgr = LogManager(str(tmp_path))
    mgr.close()
    assert not marker.exists() and not (tmp_path / "orphan-0").exists()
    assert caplog.text.count("removed 2 directories") == 1


def test_an_interrupted_delete_is_finished_at_load(tmp_path):
    fill(tmp_path)
    for p in range(3):  # crashed after marking, before writing topics.json
        os.rename(tmp_path / f"keep-{p}", tmp_path / files.delete_dir_name("keep", p, "cd" * 16))
    mgr = LogManager(str(tmp_path))
    assert "keep" not in mgr.topics
    mgr.close()
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == []


def test_delete_topic_leaves_nothing_and_survives_restart(tmp_path):
    fill(tmp_path)
    mgr = LogManager(str(tmp_path))
    mgr.delete_topic("keep")
    mgr.close()
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]
    mgr = LogManager(str(tmp_path))
    assert "keep" not in mgr.topics
    mgr.close()


def test_a_create_that_fails_midway_is_rolled_back(tmp_path):
    mgr = LogManager(str(tmp_path))
    (tmp_path / "half-3").write_bytes(b"in the way")  # partition 3 cannot be made
    with pytest.raises(LogWriteError, match="nothing was kept"):
        mgr.create_topic("half", 5)
    assert "half" not in mgr.topics
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("half")) == ["half-3"]
    mgr.create_topic("t", 1)
    (tmp_path / "t-2").write_bytes(b"in the way")
    with pytest.raises(LogWriteError, match="nothing was kept"):
        mgr.create_partitions("t", 4)
    assert mgr.get_topic("t").partitions == 1 and not (tmp_path / "t-1").exists()
    mgr.close()
    mgr = LogManager(str(tmp_path))
    assert set(mgr.topics) == {"t"} and mgr.get_topic("t").partitions == 1
    mgr.close()


def test_partition_cap(tmp_path):
    mgr = LogManager(str(tmp_path))
    with pytest.raises(InvalidPartitionsError, match="more than the 10000"):
        mgr.create_topic("huge", 100_000)
    mgr.create_topic("t", 1)
    with pytest.raises(InvalidPartitionsError, match="more than the 10000"):
        mgr.create_partitions("t", 20_000)
    assert "huge" not in mgr.topics and mgr.get_topic("t").partitions == 1
    mgr.close()
    assert not (tmp_path / "huge-0").exists()


def undecodable_batch() -> bytes:
    """CRC-valid, but its records are garbage."""
    raw = bytearray(build_batch([Record(b"k", b"v" * 20, 1)]))
    raw[61:] = b"\xff" * (len(raw) - 61)
    raw[17:21] = crc32c(bytes(raw[21:])).to_bytes(4, "big")
    return bytes(raw)


def test_maintenance_survives_a_failing_log(tmp_path, caplog):
    """Item 8: a compacted log whose records do not decode fails its
    compaction every pass; retention of the other topic and the
    recovery-point checkpoint go on, and the failure is logged once."""
    import time

    mgr = LogManager(str(tmp_path), maintenance_interval_s=0.02, checkpoint_interval_s=0.05)
    try:
        mgr.create_topic("table", 1, {"cleanup.policy": "compact", "segment.bytes": "200"})
        mgr.create_topic("big", 1, {"retention.bytes": "300", "segment.bytes": "200"})
        table, big = mgr.get_log("table", 0), mgr.get_log("big", 0)
        with caplog.at_level(logging.ERROR):
            table.append(undecodable_batch(), validate=False)
            for i in range(10):
                table.append(build_batch([Record(b"k", b"x" * 50, i)]))
                big.append(batch([b"y" * 100]))
            big.flush()
            checkpoint = tmp_path / "recovery-point-offset-checkpoint"
            deadline = time.monotonic() + 10
            while not (big.log_start_offset > 0 and mgr.maintenance_failures.get("compaction", 0) >= 3
                       and checkpoint.exists() and b"big-0 10" in checkpoint.read_bytes()):
                assert time.monotonic() < deadline, (
                    "retention of big", big.log_start_offset, "checkpoint", checkpoint.exists())
                time.sleep(0.02)
        assert caplog.text.count("compaction of table-0 failed") == 1
    finally:
        mgr.close()
