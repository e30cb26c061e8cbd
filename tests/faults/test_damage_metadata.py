"""Damage suite, metadata files: topics.json, meta.json, the recovery-point
checkpoint and a partition's log-start-offset, each cut, zeroed, flipped,
given garbage or deleted, after a clean stop and after SIGKILL of a real
broker. The broker must never delete data because of it: every record
produced before is still readable, and what is served passes its CRC.

A damaged producer-state snapshot must leave the state what the batch
headers say (snapshots are derived data).

The data directories come from a real broker subprocess (once per module);
each damaged copy is opened by the same LogManager start-up code the broker
runs, and two of them by a real broker and consumer end to end.
"""

import os
import shutil
import time

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from strom.records.batch import batch_records, iter_batches, validate_batch
from strom.storage import LogManager
from strom.storage.producer_state import ProducerStateTable
from tests.integration.clients import consume_to_end
from tests.integration.conftest import BrokerProcess

OLD = int(time.time() * 1000) - 30 * 86_400_000  # past the default retention.ms
N = 30
DELETED_BEFORE = 5  # DeleteRecords on keep-0


def produce(bs, topic, partition, values, idempotent=True):
    acked = {}
    p = Producer({"bootstrap.servers": bs, "acks": "all", "linger.ms": 2,
                  "enable.idempotence": idempotent})

    def done(err, msg):
        assert err is None, err
        acked[msg.offset()] = (msg.key(), msg.value())

    for key, value in values:
        p.produce(topic, key=key, value=value, partition=partition, timestamp=OLD, on_delivery=done)
    assert p.flush(30) == 0
    return acked


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    """{"clean" | "kill": (data dir, what was acknowledged per partition before)}."""
    root = tmp_path_factory.mktemp("golden")
    data = root / "data"
    broker = BrokerProcess(data).start()
    bs = broker.bootstrap_servers
    admin = AdminClient({"bootstrap.servers": bs})
    for f in admin.create_topics([
        NewTopic("keep", 2, 1, config={"retention.ms": "-1", "segment.bytes": "1500"}),
        NewTopic("table", 1, 1, config={"cleanup.policy": "compact", "retention.ms": "-1"}),
    ]).values():
        f.result(10)
    acked = {}
    for p in range(2):
        acked[("keep", p)] = produce(bs, "keep", p, [(None, b"keep-%d-%03d" % (p, i) + b"." * 50)
                                                     for i in range(N)])
    acked[("table", 0)] = produce(bs, "table", 0, [(b"k%d" % (i % 4), b"t%03d" % i) for i in range(N)])
    admin.delete_records([TopicPartition("keep", 0, DELETED_BEFORE)])[
        TopicPartition("keep", 0, DELETED_BEFORE)].result(10)
    assert broker.stop() == 0
    shutil.copytree(data, root / "clean")
    at_clean_stop = {tp: dict(records) for tp, records in acked.items()}
    broker.start()
    for p in range(2):
        acked[("keep", p)].update(produce(bs, "keep", p, [(None, b"more-%d-%03d" % (p, i))
                                                          for i in range(10)], idempotent=False))
    broker.kill()
    shutil.copytree(data, root / "kill")
    assert os.path.exists(root / "kill" / "recovery-point-offset-checkpoint")
    assert os.path.exists(root / "kill" / "keep-0" / "log-start-offset")
    assert list((root / "kill" / "keep-1").glob("*.snapshot"))
    return {"clean": (root / "clean", at_clean_stop), "kill": (root / "kill", acked)}


def damage(path, how):
    if "*" in path.name:
        (path,) = path.parent.glob(path.name)
    raw = path.read_bytes()
    if how == "deleted":
        path.unlink()
    elif how == "cut":
        path.write_bytes(raw[: len(raw) // 2])
    elif how == "zeroed":
        path.write_bytes(bytes(len(raw)))
    elif how == "flipped":
        i = len(raw) // 3
        path.write_bytes(raw[:i] + bytes([raw[i] ^ 0x04]) + raw[i + 1:])
    elif how == "garbage":
        path.write_bytes(raw + b"\x00\xffgarbage 12345\n")


def served(plog):
    """{offset: (key, value)} of everything readable, each batch CRC-checked."""
    out = {}
    offset = plog.log_start_offset
    while offset < plog.log_end_offset:
        data = plog.read(offset, 1 << 20)
        if not data:
            break
        for pos, header in iter_batches(data):
            validate_batch(data, pos)  # raises on a CRC that fails
            for r in batch_records(data, pos):
                if r.offset >= offset:
                    out[r.offset] = (r.key, r.value)
            offset = header.next_offset
    return out


def check(data_dir, acked):
    mgr = LogManager(str(data_dir), maintenance_interval_s=3600)
    try:
        for _ in range(2):
            for (topic, p), want in acked.items():
                plog = mgr.get_log(topic, p)
                got = served(plog)
                start = DELETED_BEFORE if (topic, p) == ("keep", 0) else 0
                assert plog.log_start_offset in (0, start)
                for offset, record in got.items():  # nothing served that was not produced
                    assert want[offset] == record, (topic, p, offset)
                if topic == "keep":  # every record at or past the start is there
                    missing = [o for o in want if o >= start and o not in got]
                    assert not missing, (topic, p, missing[:5])
                else:  # compacted: the latest value of every key
                    latest = {}
                    for o in sorted(want):
                        latest[want[o][0]] = want[o][1]
                    assert {k: v for k, v in got.values()} == latest
            mgr.run_maintenance(now=int(time.time() * 1000))  # retention deletes none of it
        for plog in mgr.all_logs():  # what the headers say, snapshot or not
            table = ProducerStateTable()
            for seg in plog.segments:
                for _, h in seg.headers():
                    if h.producer_id >= 0 and h.base_sequence >= 0:
                        table.update(h)
            state = {p: list(e.batches) for p, e in plog.producer_state.producers.items()}
            assert state == {p: list(e.batches) for p, e in table.producers.items() if p in state}
            # The records carry OLD timestamps: a maintenance pass may have
            # expired their producers (producer.id.expiration.ms, as Kafka).
            idle = int(time.time() * 1000) - mgr.producer_id_expiration_ms
            assert all(e.last_timestamp <= idle for p, e in table.producers.items()
                       if p not in state)
        pids = {pid for plog in mgr.all_logs() for pid in plog.producer_state.producers}
        assert mgr.allocate_producer_id() > max(pids, default=-1)
    finally:
        mgr.close()


FILES = ["topics.json", "meta.json", "recovery-point-offset-checkpoint", "keep-0/log-start-offset",
         "keep-1/*.snapshot"]
DAMAGES = ["cut", "zeroed", "flipped", "garbage", "deleted"]


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("stop", ["clean", "kill"])
def test_damaged_metadata_never_deletes_data(golden, tmp_path, stop, name, how):
    source, acked = golden[stop]
    data = tmp_path / "data"
    shutil.copytree(source, data)
    damage(data / name, how)
    check(data, acked)
    check(data, acked)  # and once more, from what the first start repaired


@pytest.mark.parametrize("stop, damages", [
    ("kill", [("topics.json", "deleted"), ("meta.json", "garbage")]),
    ("clean", [("topics.json", "cut"), ("keep-0/log-start-offset", "huge")]),
])
def test_a_real_broker_serves_everything_after_metadata_damage(golden, tmp_path, stop, damages):
    source, acked = golden[stop]
    data = tmp_path / "data"
    shutil.copytree(source, data)
    for name, how in damages:
        if how == "huge":
            (data / name).write_bytes(b"999999999")
        else:
            damage(data / name, how)
    broker = BrokerProcess(data).start()
    try:
        output = "".join(broker.output)
        assert "removing" not in output and "deleting" not in output
        for p in range(2):
            got = {o: (k, v) for o, k, v in consume_to_end(broker.bootstrap_servers, "keep", p)}
            want = {o: r for o, r in acked[("keep", p)].items() if p or o >= DELETED_BEFORE}
            assert {o: got.get(o) for o in want} == want
    finally:
        assert broker.stop() == 0
