"""Restart, ListOffsets, DeleteRecords, auto-create, admin APIs."""

import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from strom.embedded import EmbeddedBroker

from . import clients
from .conftest import wait_for


def create(bootstrap, name, partitions=1):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(10)


def produce(bootstrap, topic, values, partition=0, timestamps=None):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i, v in enumerate(values):
        kwargs = {"timestamp": timestamps[i]} if timestamps else {}
        p.produce(topic, value=v, partition=partition, **kwargs)
    assert p.flush(30) == 0


def test_data_survives_restart(tmp_path):
    data = str(tmp_path / "d")
    with EmbeddedBroker(data_dir=data, storage="disk") as b:
        create(b.bootstrap_servers, "keep", 2)
        produce(b.bootstrap_servers, "keep", [b"r%d" % i for i in range(300)], partition=1)
    with EmbeddedBroker(data_dir=data, storage="disk") as b:
        got = clients.consume_confluent(b.bootstrap_servers, "keep", 0)
        c = Consumer({"bootstrap.servers": b.bootstrap_servers, "group.id": "g"})
        c.assign([TopicPartition("keep", 1, 0)])
        values = []
        wait_for(lambda: values.extend(m.value() for m in c.consume(100, 0.2) if not m.error())
                 or len(values) >= 300, message="300 records after restart")
        c.close()
        assert values == [b"r%d" % i for i in range(300)]
        assert got == []  # partition 0 stayed empty


def test_list_offsets_by_timestamp_and_ends(broker):
    bs = broker.bootstrap_servers
    create(bs, "times")
    base = 1_700_000_000_000
    produce(bs, "times", [b"v%d" % i for i in range(50)], timestamps=[base + 10 * i for i in range(50)])
    c = Consumer({"bootstrap.servers": bs, "group.id": "g"})
    found = c.offsets_for_times([TopicPartition("times", 0, base + 105)], timeout=10)
    assert found[0].offset == 11  # first record at or after base+105 is base+110
    found = c.offsets_for_times([TopicPartition("times", 0, base + 10 * 49 + 1)], timeout=10)
    assert found[0].offset == -1  # none: the end
    assert c.get_watermark_offsets(TopicPartition("times", 0), timeout=10) == (0, 50)
    c.close()


def test_delete_records_moves_the_start_offset(broker):
    from confluent_kafka import TopicPartition as TP

    bs = broker.bootstrap_servers
    admin = AdminClient({"bootstrap.servers": bs})
    admin.create_topics([NewTopic("trim", 1, 1)])["trim"].result(10)
    produce(bs, "trim", [b"x%d" % i for i in range(40)])
    result = admin.delete_records([TP("trim", 0, 25)])
    deleted = list(result.values())[0].result(10)
    assert deleted.low_watermark == 25
    c = Consumer({"bootstrap.servers": bs, "group.id": "g", "auto.offset.reset": "earliest"})
    assert c.get_watermark_offsets(TP("trim", 0), timeout=10) == (25, 40)
    c.assign([TP("trim", 0, 0)])  # below the start: reset to earliest
    first = wait_for(lambda: next((m for m in c.consume(10, 0.2) if not m.error()), None),
                     message="a record after DeleteRecords")
    assert first.offset() == 25 and first.value() == b"x25"
    c.close()


def test_auto_create_on_and_off(tmp_path):
    with EmbeddedBroker(data_dir=str(tmp_path / "on"), storage="disk") as b:
        produce(b.bootstrap_servers, "auto-made", [b"hello"])
        admin = AdminClient({"bootstrap.servers": b.bootstrap_servers})
        md = admin.list_topics(timeout=10)
        assert len(md.topics["auto-made"].partitions) == 1
    with EmbeddedBroker(storage="memory", **{"auto.create.topics.enable": "false"}) as b:
        p = Producer({"bootstrap.servers": b.bootstrap_servers, "message.timeout.ms": 1500})
        errors = []
        p.produce("not-there", value=b"x", on_delivery=lambda err, msg: errors.append(err))
        p.flush(10)
        assert errors and errors[0] is not None
        admin = AdminClient({"bootstrap.servers": b.bootstrap_servers})
        md = admin.list_topics(timeout=10)
        assert "not-there" not in md.topics


def test_admin_topic_lifecycle_and_configs(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
    admin.create_topics([NewTopic("cfg", 2, 1, config={"retention.ms": "60000"})])["cfg"].result(10)
    with pytest.raises(KafkaException, match="TOPIC_ALREADY_EXISTS|already exists"):
        admin.create_topics([NewTopic("cfg", 2, 1)])["cfg"].result(10)
    with pytest.raises(KafkaException, match="INVALID_REPLICATION_FACTOR|[Rr]eplication"):
        admin.create_topics([NewTopic("rf3", 1, 3)])["rf3"].result(10)
    with pytest.raises(KafkaException, match="INVALID_CONFIG|[Uu]nknown topic config"):
        admin.create_topics([NewTopic("badcfg", 1, 1, config={"no.such": "1"})])["badcfg"].result(10)
    with pytest.raises(KafkaException, match="INVALID_TOPIC|illegal"):
        admin.create_topics([NewTopic("bad name!", 1, 1)])["bad name!"].result(10)
    res = ConfigResource(ResourceType.TOPIC, "cfg")
    configs = admin.describe_configs([res])[res].result(10)
    assert configs["retention.ms"].value == "60000" and not configs["retention.ms"].is_default
    assert configs["segment.bytes"].is_default
    inc = ConfigResource(ResourceType.TOPIC, "cfg", incremental_configs=[
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)])
    admin.incremental_alter_configs([inc])[inc].result(10)
    configs = admin.describe_configs([res])[res].result(10)
    assert configs["cleanup.policy"].value == "compact" and configs["retention.ms"].is_default
    admin.create_partitions([NewPartitions("cfg", 5)])["cfg"].result(10)
    wait_for(lambda: len(admin.list_topics(timeout=10).topics["cfg"].partitions) == 5,
             message="5 partitions")
    broker_res = ConfigResource(ResourceType.BROKER, "0")
    assert "num.partitions" in admin.describe_configs([broker_res])[broker_res].result(10)
    admin.delete_topics(["cfg"])["cfg"].result(10)
    wait_for(lambda: "cfg" not in admin.list_topics(timeout=10).topics, message="topic gone")
    cluster = admin.describe_cluster().result(10).controller
    assert cluster.id == 0


def test_long_poll_fetch_wakes_on_append(broker):
    """A consumer waiting at the end gets a new record long before
    fetch.wait.max.ms runs out."""
    bs = broker.bootstrap_servers
    create(bs, "wake")
    c = Consumer({"bootstrap.servers": bs, "group.id": "g", "fetch.wait.max.ms": 5000})
    c.assign([TopicPartition("wake", 0, 0)])
    assert c.poll(1.0) is None  # parked at the end
    produce(bs, "wake", [b"now"])
    started = time.monotonic()
    msg = wait_for(lambda: c.poll(0.1), timeout=10, message="the new record")
    assert msg.value() == b"now"
    assert time.monotonic() - started < 3.0  # woken by the append, not by the 5 s timeout
    c.close()
