"""`__consumer_offsets` belongs to the broker: clients may not write, trim,
grow, create or delete it, and damage inside it (records a client could
once write, or a disk could garble) is skipped at start-up, never fatal."""

import glob
import json
import os
import struct
import time

import pytest
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from strom.records import Record, build_batch
from strom.records.batch import BATCH_HEADER_SIZE, crc32c, iter_batches

OFFSETS = "__consumer_offsets"


def _commit(bs, group, topic, offset):
    c = Consumer({"bootstrap.servers": bs, "group.id": group, "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
    c.close()


def _committed(bs, group, topic):
    c = Consumer({"bootstrap.servers": bs, "group.id": group, "enable.auto.commit": False})
    try:
        return c.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
    finally:
        c.close()


def _produce_error(bs, topic):
    p = Producer({"bootstrap.servers": bs, "message.timeout.ms": 5000, "retries": 0})
    errors = []
    p.produce(topic, value=b"not json", key=b"not json", partition=0,
              on_delivery=lambda err, msg: errors.append(err))
    p.flush(10)
    assert len(errors) == 1
    return errors[0]


def test_clients_cannot_change_the_offsets_topic(broker):
    bs = broker.bootstrap_servers
    admin = AdminClient({"bootstrap.servers": bs})
    admin.create_topics([NewTopic("t", 1, 1)])["t"].result(10)
    _commit(bs, "g", "t", 5)  # creates __consumer_offsets
    plog = broker.broker.logs.get_log(OFFSETS, 0)
    end = plog.log_end_offset

    err = _produce_error(bs, OFFSETS)
    assert err is not None and err.code() == KafkaError.TOPIC_EXCEPTION, err

    deleted = admin.delete_records([TopicPartition(OFFSETS, 0, -1)])
    [f] = deleted.values()
    assert f.exception(10).args[0].code() == KafkaError.TOPIC_EXCEPTION

    f = admin.delete_topics([OFFSETS])[OFFSETS]
    assert f.exception(10).args[0].code() == KafkaError.TOPIC_EXCEPTION
    f = admin.create_partitions([NewPartitions(OFFSETS, 3)])[OFFSETS]
    assert f.exception(10).args[0].code() == KafkaError.TOPIC_EXCEPTION

    logs = broker.broker.logs
    assert OFFSETS in logs.topics and logs.topics[OFFSETS].partitions == 1
    assert plog.log_start_offset == 0 and plog.log_end_offset == end  # nothing written or cut
    assert _committed(bs, "g", "t") == 5


def test_internal_topics_cannot_be_created_by_clients(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
    for name in (OFFSETS, "__transaction_state"):
        f = admin.create_topics([NewTopic(name, 1, 1, config={"cleanup.policy": "delete"})])[name]
        assert f.exception(10).args[0].code() == KafkaError.INVALID_REQUEST
        assert name not in broker.broker.logs.topics
    # A user topic that merely starts with "__" is the user's (Kafka's
    # internal topics are a fixed list).
    admin.create_topics([NewTopic("__mine", 1, 1)])["__mine"].result(10)
    assert _produce_error(broker.bootstrap_servers, "__mine") is None
    _commit(broker.bootstrap_servers, "g", "__mine", 1)  # creates __consumer_offsets
    described = admin.describe_topics(TopicCollection(["__mine", OFFSETS]))
    assert not described["__mine"].result(10).is_internal
    assert described[OFFSETS].result(10).is_internal


def _record(key: dict, value) -> Record:
    raw_value = value if isinstance(value, bytes | None) else json.dumps(value).encode()
    return Record(json.dumps(key).encode(), raw_value, int(time.time() * 1000))


def _undecodable_batch(base_offset: int) -> bytes:
    """A batch whose header and CRC are right but whose records are noise."""
    good = bytearray(build_batch([Record(b"k", b"v", 0)] * 3, base_offset=base_offset))
    good[BATCH_HEADER_SIZE:] = b"\xff" * (len(good) - BATCH_HEADER_SIZE)
    struct.pack_into(">I", good, 17, crc32c(memoryview(good)[21:]))
    return bytes(good)


def test_damaged_offsets_topic_is_skipped_at_start(broker_process):
    first = broker_process().start()
    bs = first.bootstrap_servers
    admin = AdminClient({"bootstrap.servers": bs})
    admin.create_topics([NewTopic("t", 1, 1)])["t"].result(10)
    _commit(bs, "good", "t", 42)
    _commit(bs, "other", "t", 11)
    assert first.stop() == 0

    [segment] = sorted(glob.glob(os.path.join(first.data_dir, f"{OFFSETS}-0", "*.log")))[-1:]
    with open(segment, "rb") as f:
        data = f.read()
    end = max(h.next_offset for _, h in iter_batches(data))
    offset_key = {"type": "offset", "group": "other", "topic": "t", "partition": 0}
    good_value = {"offset": 99, "leader_epoch": -1, "metadata": "",
                  "commit_timestamp": int(time.time() * 1000)}
    garbage = [
        Record(b"not json", b"{}", 0),  # what a client's Produce once wrote
        Record(b'{"type": "txn", "id": 1}', b"{}", 0),  # a key type this version does not know
        Record(b"\xff\xfe", None, 0),  # not even UTF-8
        _record(offset_key, b"Expecting value"),  # a good key, a value that is not JSON
        _record(offset_key, {"offset": "ten"}),  # the wrong fields
        _record({"type": "group", "group": 7}, None),  # a mistyped key field
        _record({"type": "group", "group": "other"}, {"generation": 1, "members": [1]}),
        Record(None, b"{}", 0),
    ]
    batches = build_batch(garbage, base_offset=end)
    end += len(garbage)
    batches += _undecodable_batch(end)
    end += 3
    # A batch whose CRC no longer matches (a flipped bit on disk).
    flipped = bytearray(build_batch([_record({**offset_key, "group": "flipped"}, good_value)],
                                    base_offset=end))
    flipped[-3] ^= 0x01
    batches += flipped
    end += 1
    # Good records after the damage still load: "other" ends at 99.
    batches += build_batch([_record(offset_key, good_value)], base_offset=end)
    with open(segment, "ab") as f:
        f.write(batches)

    second = broker_process().start()  # today: "error: Expecting value: line 1 column 1"
    output = "".join(second.output)
    skipped = [line for line in second.output if "skipped" in line]
    assert skipped, output
    assert len(skipped) <= 8, output  # a summary per kind, not a line per record
    # 8 records, 3 in the batch that does not decode; the flipped batch is
    # skipped here or never served by storage (which logs it itself).
    assert sum(int(line.split("skipped ")[1].split()[0]) for line in skipped) in (11, 12), output
    assert _committed(second.bootstrap_servers, "flipped", "t") < 0
    assert _committed(second.bootstrap_servers, "good", "t") == 42
    assert _committed(second.bootstrap_servers, "other", "t") == 99
    assert second.stop() == 0


def test_a_commit_the_offsets_topic_cannot_store_gets_an_error_not_a_closed_connection(broker):
    # Kafka lets an admin alter __consumer_offsets' configs; one that makes
    # the coordinator's own writes fail must cost the commit, not the broker.
    bs = broker.bootstrap_servers
    admin = AdminClient({"bootstrap.servers": bs})
    admin.create_topics([NewTopic("t", 1, 1)])["t"].result(10)
    _commit(bs, "g", "t", 5)
    def alter(op, value=None):
        entry = ConfigEntry("max.message.bytes", value, incremental_operation=op)
        resource = ConfigResource("topic", OFFSETS, incremental_configs=[entry])
        admin.incremental_alter_configs([resource])[resource].result(10)

    alter(AlterConfigOpType.SET, "80")
    c = Consumer({"bootstrap.servers": bs, "group.id": "g", "enable.auto.commit": False})
    try:
        with pytest.raises(KafkaException) as e:
            c.commit(offsets=[TopicPartition("t", 0, 6)], asynchronous=False)
        assert e.value.args[0].code() == KafkaError.UNKNOWN
    finally:
        c.close()
    alter(AlterConfigOpType.DELETE)
    _commit(bs, "g", "t", 7)
    assert _committed(bs, "g", "t") == 7


def test_the_offsets_topic_is_compacted_again_after_its_registry_entry_is_lost(broker_process):
    """A topics.json lost to damage is rebuilt from the directories with
    configs that delete nothing; the coordinator puts its topic's back."""
    first = broker_process().start()
    bs = first.bootstrap_servers
    admin = AdminClient({"bootstrap.servers": bs})
    admin.create_topics([NewTopic("t", 1, 1)])["t"].result(10)
    _commit(bs, "g", "t", 42)
    assert first.stop() == 0
    os.remove(os.path.join(first.data_dir, "topics.json"))

    second = broker_process().start()
    admin = AdminClient({"bootstrap.servers": second.bootstrap_servers})
    resource = ConfigResource(ConfigResource.Type.TOPIC, OFFSETS)
    configs = admin.describe_configs([resource])[resource].result(10)
    assert configs["cleanup.policy"].value == "compact"
    assert _committed(second.bootstrap_servers, "g", "t") == 42
    assert second.stop() == 0
