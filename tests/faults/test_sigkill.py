"""The durability contract: with acks=all, every acknowledged record is
there, byte for byte, after the broker process is SIGKILLed mid-load."""

import threading

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from tests.integration import clients
from tests.integration.conftest import wait_for


def test_acked_records_survive_sigkill(broker_process):
    first = broker_process().start()
    bs = first.bootstrap_servers
    admin = AdminClient({"bootstrap.servers": bs})
    admin.create_topics([NewTopic("durable", 1, 1)])["durable"].result(10)
    acked: dict[int, bytes] = {}
    stop = threading.Event()

    def on_delivery(err, msg):
        if err is None:
            acked[msg.offset()] = msg.value()

    def load():
        p = Producer({"bootstrap.servers": bs, "acks": "all", "linger.ms": 1,
                      "message.timeout.ms": 3000, "retries": 0})
        i = 0
        while not stop.is_set():
            try:
                p.produce("durable", value=b"payload-%08d-" % i + bytes([i % 251]) * 200,
                          partition=0, on_delivery=on_delivery)
                i += 1
            except BufferError:
                pass
            p.poll(0.0005)
        p.flush(5)

    thread = threading.Thread(target=load)
    thread.start()
    wait_for(lambda: len(acked) > 2000, timeout=30, message="2000 acknowledged records")
    first.kill()  # SIGKILL while the producer is still sending
    stop.set()
    thread.join(30)
    killed_with = len(acked)

    second = broker_process().start()
    end = max(acked) + 1
    got = clients.consume_confluent(second.bootstrap_servers, "durable", end)
    stored = {offset: value for offset, _, value, _ in got}
    missing = [o for o in acked if stored.get(o) != acked[o]]
    assert not missing, f"{len(missing)} acknowledged records lost or changed, e.g. offset {missing[0]}"
    assert killed_with > 2000
    assert second.stop() == 0
