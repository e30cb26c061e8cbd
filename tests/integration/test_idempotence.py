"""Idempotent produce through forced connection drops: no duplicates, no
gaps; producer state survives a restart."""

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from strom.embedded import EmbeddedBroker

from . import clients
from .proxy import ChaosProxy


def test_no_duplicates_and_no_gaps_through_connection_drops(tmp_path):
    with EmbeddedBroker(data_dir=str(tmp_path / "d"), storage="disk") as b:
        admin = AdminClient({"bootstrap.servers": b.bootstrap_servers})
        admin.create_topics([NewTopic("idem", 1, 1)])["idem"].result(10)
        # Advertise the proxy, so that the producer's leader connection (not
        # only its bootstrap one) goes through it and gets cut.
        proxy = ChaosProxy(b.port, cut_every=40_000)
        b.broker.config.advertised_port = proxy.port
        try:
            p = Producer({"bootstrap.servers": f"127.0.0.1:{proxy.port}", "enable.idempotence": True,
                          "acks": "all", "linger.ms": 2, "batch.num.messages": 50,
                          "message.timeout.ms": 60000, "retry.backoff.ms": 20})
            errors = []
            n = 3000
            for i in range(n):
                p.produce("idem", key=b"%d" % i, value=b"value-%06d" % i + b"." * 100, partition=0,
                          on_delivery=lambda err, msg: err and errors.append(err))
                p.poll(0)
            assert p.flush(60) == 0
            assert not errors, errors[:3]
            assert proxy.cuts >= 3, "the proxy must have cut connections mid-stream"
        finally:
            b.broker.config.advertised_port = b.port
            proxy.close()
        got = clients.consume_confluent(b.bootstrap_servers, "idem", n)
        assert [v[:12] for _, _, v, _ in got] == [b"value-%06d" % i for i in range(n)]
        plog = b.broker.logs.get_log("idem", 0)
        assert plog.log_end_offset == n  # nothing written twice


def test_producer_state_is_rebuilt_after_restart(tmp_path):
    """A duplicate of a batch written before a restart is still recognised."""
    from strom.records import Record, build_batch
    from strom.storage import LogManager

    mgr = LogManager(str(tmp_path))
    plog = mgr.create_topic("p", 1).logs[0]
    batch = build_batch([Record(b"k", b"v", 1)], producer_id=42, producer_epoch=0, base_sequence=0)
    assert plog.append(batch).base_offset == 0
    mgr.close()
    mgr = LogManager(str(tmp_path))
    plog = mgr.get_log("p", 0)
    again = plog.append(batch)
    assert again.duplicate and again.base_offset == 0
    assert plog.log_end_offset == 1
    from strom.storage.producer_state import OutOfOrderSequenceError

    gap = build_batch([Record(b"k", b"v", 1)], producer_id=42, producer_epoch=0, base_sequence=5)
    try:
        plog.append(gap)
        raise AssertionError("a sequence gap must be refused")
    except OutOfOrderSequenceError:
        pass
    mgr.close()


def test_init_producer_id_without_transactional_id_always_gives_a_fresh_id(broker):
    """As Kafka: naming an id and epoch (KIP-360, v3+) without a
    transactional id gets a new id at epoch 0, never a bump of the named
    id, which may be another producer's (a transactional one's)."""
    import socket

    from kio.serial import entity_reader

    from strom.protocol.build import build
    from strom.protocol.schemas import encode, request_class, response_class
    from tests.faults.test_all_versions import _frame
    from tests.faults.test_bad_input import read_frame

    def init(producer_id, epoch):
        request = build(request_class(22, 4), {"transactional_id": None, "transaction_timeout": 60_000,
                                                "producer_id": producer_id, "producer_epoch": epoch})
        with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as s:
            s.sendall(_frame(22, 4, encode(request), 3))
            frame = read_frame(s)
        response = entity_reader(response_class(22, 4))(frame, 5)[0]
        return response.error_code, response.producer_id, response.producer_epoch

    error, first, epoch = init(-1, -1)
    assert (error, epoch) == (0, 0)
    error, second, epoch = init(first, 0)
    assert (error, epoch) == (0, 0) and second != first
