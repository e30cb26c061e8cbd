"""Embedded mode, the pytest plugin, and connection limits."""

import socket
import struct
import time

from confluent_kafka import Producer

from strom.embedded import EmbeddedBroker



def test_strom_broker_fixture(strom_broker):
    p = Producer({"bootstrap.servers": strom_broker.bootstrap_servers})
    p.produce("fixture", b"hello")
    assert p.flush(10) == 0
    assert strom_broker.broker.logs.get_log("fixture", 0).log_end_offset == 1


def test_embedded_starts_fast_and_memory_storage_keeps_nothing(tmp_path):
    started = time.perf_counter()
    with EmbeddedBroker(storage="memory") as b:
        elapsed = time.perf_counter() - started
        assert b.port > 0
    assert elapsed < 1.0  # measured ~15 ms; generous for a loaded CI machine
    with EmbeddedBroker(storage="disk", data_dir=str(tmp_path / "d")) as b:
        pass
    assert (tmp_path / "d" / "meta.json").exists()


def test_idle_connections_are_closed_and_limits_apply():
    with EmbeddedBroker(**{"connections.max.idle.ms": "300", "socket.request.max.bytes": "1000"}) as b:
        idle = socket.create_connection(("127.0.0.1", b.port))
        idle.settimeout(10)
        assert idle.recv(1) == b""  # closed by the broker after 300 ms of silence
        big = socket.create_connection(("127.0.0.1", b.port))
        big.sendall(struct.pack(">i", 1001))  # only the length: refused before the body
        big.settimeout(10)
        assert big.recv(1) == b""
        p = Producer({"bootstrap.servers": b.bootstrap_servers})
        p.produce("still-up", b"x")
        assert p.flush(10) == 0


def test_sigterm_shutdown_is_clean(broker_process):
    first = broker_process().start()
    p = Producer({"bootstrap.servers": first.bootstrap_servers, "acks": "all"})
    for i in range(100):
        p.produce("clean", b"%d" % i)
    assert p.flush(10) == 0
    assert first.stop() == 0
    import os

    assert os.path.exists(os.path.join(first.data_dir, ".strom_cleanshutdown"))
    second = broker_process().start()
    from . import clients

    got = clients.consume_confluent(second.bootstrap_servers, "clean", 100)
    assert [v for _, _, v, _ in got] == [b"%d" % i for i in range(100)]
    assert second.stop() == 0
