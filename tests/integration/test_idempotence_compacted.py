"""An idempotent producer keeps producing, unharmed, to a compacted topic
whose broker restarts (clean stop and SIGKILL) after compaction has removed
its older batches, tombstones included (issue 12, item 7)."""

import os

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from strom.records.batch import iter_batches
from tests.integration.clients import consume_to_end
from tests.integration.conftest import wait_for


def records_on_disk(data_dir, directory="table-0"):
    """Records in the non-active segments, read from the files."""
    d = os.path.join(data_dir, directory)
    logs = sorted(n for n in os.listdir(d) if n.endswith(".log"))
    total = 0
    for name in logs[:-1]:
        try:
            with open(os.path.join(d, name), "rb") as f:
                data = f.read()
        except FileNotFoundError:  # a compaction swap removed it since the listing
            return float("inf"), len(logs)
        total += sum(h.records_count for _, h in iter_batches(data))
    return total, len(logs)


def test_idempotent_producer_across_restarts_on_a_compacted_topic(broker_process, monkeypatch):
    monkeypatch.setenv("STROM_LOG_RETENTION_CHECK_INTERVAL_MS", "100")
    broker = broker_process().start()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
    admin.create_topics([NewTopic("table", 1, 1, config={
        "cleanup.policy": "compact", "segment.bytes": "1024", "delete.retention.ms": "0",
        "min.cleanable.dirty.ratio": "0.01", "min.compaction.lag.ms": "0",
    })])["table"].result(10)
    errors, latest, sent = [], {}, [0]
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers, "enable.idempotence": True,
                         "acks": "all", "linger.ms": 0, "message.timeout.ms": 60000,
                         "retry.backoff.ms": 50, "reconnect.backoff.ms": 50})

    def send(count, flush_each=True):
        for _ in range(count):
            i = sent[0]
            key = b"k%d" % (i % 3)
            value = None if i % 4 == 3 else b"v%04d" % i + b"." * 150  # every 4th a tombstone
            producer.produce("table", key=key, value=value, partition=0,
                             on_delivery=lambda err, msg: err and errors.append(err))
            latest[key] = value
            sent[0] += 1
            if flush_each:
                assert producer.flush(30) == 0
        assert not errors, errors[:3]

    def filler(count):
        """Another (plain) producer's records roll segments, so the idempotent
        producer's last batches are in cleanable ones and get removed."""
        plain = Producer({"bootstrap.servers": broker.bootstrap_servers, "linger.ms": 0})
        for j in range(count):
            key = b"f%d" % (j % 2)
            plain.produce("table", key=key, value=b"f" * 150, partition=0)
            latest[key] = b"f" * 150
            plain.flush(10)

    send(40)
    filler(20)
    wait_for(lambda: records_on_disk(broker.data_dir)[0] < 20, timeout=20,
             message="compaction removing superseded records and tombstones")
    assert broker.stop() == 0
    broker.start()
    send(20)  # the first sends after a clean restart
    filler(20)

    wait_for(lambda: records_on_disk(broker.data_dir)[0] < 20, timeout=20, message="compaction again")
    send(30, flush_each=False)  # a burst in flight ...
    broker.kill()  # ... when the broker dies: the producer retries what was not answered
    broker.start()
    assert producer.flush(60) == 0
    assert not errors, errors[:3]
    send(10)

    values = {}
    for _, key, value in consume_to_end(broker.bootstrap_servers, "table"):
        values[key] = value
    assert values == latest
    assert broker.stop() == 0
