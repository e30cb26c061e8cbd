import pytest

from strom.storage import (
    InvalidConfigError,
    InvalidPartitionsError,
    LogManager,
    TopicExistsError,
    UnknownTopicError,
)

from .helpers import batch, read_all


@pytest.fixture(params=["disk", "memory"])
def manager(request, tmp_path):
    mgr = LogManager(str(tmp_path), storage=request.param)
    yield mgr
    mgr.close()


def test_create_list_delete(manager):
    t = manager.create_topic("payments", 3, {"cleanup.policy": "compact"})
    assert t.partitions == 3 and t.config.compact
    with pytest.raises(TopicExistsError):
        manager.create_topic("payments", 1)
    manager.get_log("payments", 2).append(batch([b"x"]))
    manager.delete_topic("payments")
    with pytest.raises(UnknownTopicError):
        manager.get_log("payments", 0)
    t2 = manager.create_topic("payments", 1)
    assert t2.topic_id != t.topic_id
    assert manager.get_log("payments", 0).log_end_offset == 0


def test_invalid_configs_and_partitions(manager):
    with pytest.raises(InvalidConfigError, match="Unknown"):
        manager.create_topic("x", 1, {"no.such.config": "1"})
    with pytest.raises(InvalidConfigError, match="retention.ms"):
        manager.create_topic("x", 1, {"retention.ms": "soon"})
    with pytest.raises(InvalidConfigError):
        manager.create_topic("x", 1, {"cleanup.policy": "shred"})
    with pytest.raises(InvalidPartitionsError):
        manager.create_topic("x", 0)
    assert "x" not in manager.topics


def test_add_partitions_and_alter_config(manager):
    manager.create_topic("t", 1)
    manager.create_partitions("t", 4)
    assert manager.get_topic("t").partitions == 4
    with pytest.raises(InvalidPartitionsError):
        manager.create_partitions("t", 2)
    manager.alter_topic_config("t", {"retention.ms": "1000"})
    assert manager.get_log("t", 3).config.retention_ms == 1000


def test_topics_survive_restart(tmp_path):
    mgr = LogManager(str(tmp_path))
    t = mgr.create_topic("orders", 2, {"segment.bytes": "1000"})
    cluster_id = mgr.cluster_id
    mgr.create_partitions("orders", 3)
    mgr.get_log("orders", 2).append(batch([b"hello"]))
    mgr.close()
    mgr = LogManager(str(tmp_path))
    again = mgr.get_topic("orders")
    assert (again.topic_id, again.partitions) == (t.topic_id, 3)
    assert again.config.segment_bytes == 1000
    assert mgr.cluster_id == cluster_id
    assert [r.value for r in read_all(mgr.get_log("orders", 2))] == [b"hello"]
    mgr.close()


def test_maintenance_applies_retention(manager):
    t = manager.create_topic("r", 1, {"segment.bytes": "300", "retention.bytes": "300"})
    for _ in range(30):
        t.logs[0].append(batch([b"z" * 60]))
    manager.run_maintenance()
    assert t.logs[0].log_start_offset > 0
