"""Every client library produces and consumes exactly what was sent: keys,
headers, null values, a 1 MiB value, every codec, acks 0/1/all, in order,
with dense offsets."""

import shutil

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from . import clients

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
MIB = 1024 * 1024


def make_records(n=200, big=True):
    records = [(b"key-%d" % i, b"value-%d" % i * (1 + i % 5), [("seq", b"%d" % i)]) for i in range(n)]
    records[7] = (None, b"no key here", [("seq", b"7")])
    records[11] = (b"tombstone", None, [("seq", b"11")])
    records[12] = (b"multi", b"headers", [("a", b"1"), ("b", b"")])
    if big:
        records.append((b"big", bytes(range(256)) * (MIB // 256), [("seq", b"big")]))
    return records


def create_topic(bootstrap, name, **configs):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    configs.setdefault("max.message.bytes", str(4 * MIB))
    admin.create_topics([NewTopic(name, 1, 1, config=configs)])[name].result(10)


def check(got, records):
    assert [o for o, *_ in got] == list(range(len(records))), "dense offsets from 0, in order"
    assert [(k, v, h) for _, k, v, h in got] == [(k, v, h) for k, v, h in records]


CASES = [(c, a, "none") for c in ("confluent", "kafka_python", "aiokafka") for a in ("0", "1", "all")]
CASES += [(c, "all", codec) for c in ("confluent", "kafka_python", "aiokafka") for codec in CODECS[1:]]
CASES += [("confluent", a, codec) for a in ("0", "1") for codec in CODECS[1:]]


@pytest.mark.parametrize("client,acks,codec", CASES)
def test_produce_and_consume(broker, client, acks, codec):
    topic = f"t-{client}-{acks}-{codec}"
    create_topic(broker.bootstrap_servers, topic)
    records = make_records()
    getattr(clients, f"produce_{client}")(broker.bootstrap_servers, topic, records, acks, codec)
    got = getattr(clients, f"consume_{client}")(broker.bootstrap_servers, topic, len(records))
    check(got, records)


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed: `apt-get install "
                    "kcat` (make test and .ci/run install it when run as root)")
@pytest.mark.parametrize("acks", ["0", "1", "all"])
@pytest.mark.parametrize("codec", CODECS)
def test_kcat(broker, tmp_path, acks, codec):
    """Debian's kcat links an old librdkafka (2.0.2): the handshake and
    every codec must work with it too."""
    topic = f"kcat-{acks}-{codec}"
    create_topic(broker.bootstrap_servers, topic)
    records = [(b"k%d" % i, b"v%d" % i * (i % 7 + 1), [("src", b"kcat")]) for i in range(100)]
    records[5] = (b"nullvalue", None, [("src", b"kcat")])
    records.append((b"big", b"x" * MIB, [("src", b"kcat")]))
    clients.produce_kcat(broker.bootstrap_servers, topic, records, acks, codec, tmp_path)
    got = clients.consume_kcat(broker.bootstrap_servers, topic, len(records))
    check(got, records)


@pytest.mark.parametrize("producer,consumer", [
    ("confluent", "kafka_python"), ("kafka_python", "aiokafka"), ("aiokafka", "confluent"),
])
def test_clients_read_each_others_records(broker, producer, consumer):
    topic = f"x-{producer}-{consumer}"
    create_topic(broker.bootstrap_servers, topic)
    records = make_records(100, big=False)
    getattr(clients, f"produce_{producer}")(broker.bootstrap_servers, topic, records, "all", "lz4")
    check(getattr(clients, f"consume_{consumer}")(broker.bootstrap_servers, topic, len(records)), records)
