"""Topic creation and deletion of many partitions do not stop the broker.

Each partition costs a directory, fsyncs and a topics.json write; done on
the event loop, a CreateTopics of 2,000 partitions stopped every other
client for ~5 s (seen by the fuzz canary as 1 s stalls at 1,026). The
tests are structural, not timed: a request on another connection must be
answered while the partition directories are observably half made (or
half removed), which cannot happen while the loop is blocked by the work.
"""

import os
import socket
import struct
import threading
import time

from confluent_kafka.admin import AdminClient, NewTopic

PARTITIONS = 600


def _api_versions_frame(correlation_id: int) -> bytes:
    client = b"probe"
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client)) + client
    return struct.pack(">i", len(body)) + body


def _round_trip(sock: socket.socket, correlation_id: int) -> None:
    sock.sendall(_api_versions_frame(correlation_id))
    buf = b""
    while len(buf) < 8 or len(buf) < 4 + struct.unpack_from(">i", buf)[0]:
        chunk = sock.recv(65536)
        assert chunk, "the broker closed the probe connection"
        buf += chunk
    assert struct.unpack_from(">i", buf, 4)[0] == correlation_id


def _partition_dirs(data_dir: str, topic: str) -> int:
    prefix = topic + "-"
    return sum(1 for n in os.listdir(data_dir)
               if n.startswith(prefix) and n[len(prefix):].isdigit())


def _served_while(broker, admin_call, in_progress) -> int:
    """Run `admin_call` in a thread; count ApiVersions answered on another
    connection between two moments at which `in_progress()` held."""
    done = threading.Event()
    errors = []

    def run():
        try:
            admin_call()
        except Exception as e:  # noqa: BLE001  reported below
            errors.append(e)
        finally:
            done.set()

    served = 0
    with socket.create_connection(("127.0.0.1", broker.port), timeout=60) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _round_trip(sock, 1)
        t = threading.Thread(target=run)
        t.start()
        n = 1
        while not done.is_set() and served < 3:
            if not in_progress():
                time.sleep(0.002)  # polling the directory, not waiting for luck
                continue
            n += 1
            _round_trip(sock, n)
            if in_progress():
                served += 1  # answered while the work was half done
        t.join(120)
    assert not errors, errors
    return served


def test_create_topics_of_many_partitions_keeps_serving_others(broker):
    data_dir = broker.broker.config.data_dir
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})

    def create():
        fs = admin.create_topics([NewTopic("wide", PARTITIONS)], request_timeout=120,
                                 operation_timeout=120)
        fs["wide"].result(120)

    served = _served_while(broker, create,
                           lambda: 0 < _partition_dirs(data_dir, "wide") < PARTITIONS)
    assert served >= 1, "no request was answered while the partitions were being made"
    assert _partition_dirs(data_dir, "wide") == PARTITIONS
    assert len(broker.broker.logs.get_topic("wide").logs) == PARTITIONS


def test_delete_topics_of_many_partitions_keeps_serving_others(broker):
    data_dir = broker.broker.config.data_dir
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
    admin.create_topics([NewTopic("wide", PARTITIONS)], request_timeout=120,
                        operation_timeout=120)["wide"].result(120)

    def delete():
        admin.delete_topics(["wide"], request_timeout=120, operation_timeout=120)["wide"].result(120)

    # A directory still named wide-N (not yet marked for deletion) while
    # others are already gone or marked.
    served = _served_while(broker, delete,
                           lambda: 0 < _partition_dirs(data_dir, "wide") < PARTITIONS)
    assert served >= 1, "no request was answered while the partitions were being removed"
    assert _partition_dirs(data_dir, "wide") == 0


def test_delete_records_of_many_partitions_keeps_serving_others(broker):
    from confluent_kafka import Producer, TopicPartition

    data_dir = broker.broker.config.data_dir
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
    admin.create_topics([NewTopic("trim", PARTITIONS)], request_timeout=120,
                        operation_timeout=120)["trim"].result(120)
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers, "linger.ms": 5})
    for p in range(PARTITIONS):
        producer.produce("trim", b"x", partition=p)
    assert producer.flush(60) == 0

    def checkpoints() -> int:  # each DeleteRecords of a partition writes (and fsyncs) one
        return sum(os.path.exists(os.path.join(data_dir, f"trim-{p}", "log-start-offset"))
                   for p in range(PARTITIONS))

    assert checkpoints() == 0

    def delete():
        futures = admin.delete_records([TopicPartition("trim", p, 1) for p in range(PARTITIONS)],
                                       request_timeout=120, operation_timeout=120)
        for f in futures.values():
            assert f.result(120).low_watermark == 1

    served = _served_while(broker, delete, lambda: 0 < checkpoints() < PARTITIONS)
    assert served >= 1, "no request was answered while the records were being deleted"
    assert checkpoints() == PARTITIONS
