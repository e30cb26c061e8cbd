"""Capture real request frames from confluent-kafka, kafka-python and
aiokafka for the fuzzer's corpus (tests/faults/corpus/<client>.bin).

    .venv/bin/python -m bench.fuzz_capture

Each client produces, consumes in a group, commits and lists topics
through a recording proxy in front of an embedded broker (advertised as
the proxy, so every connection goes through it). A corpus file is the
client's request frames, concatenated as they were sent (size prefix
included).
"""

import asyncio
import os
import socket
import struct
import threading
import time
from pathlib import Path

from strom.embedded import EmbeddedBroker

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "faults" / "corpus"


class RecordingProxy:
    def __init__(self):
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.target_port = 0
        self.frames: list[bytes] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src, dst, record):
        pending = b""
        try:
            while data := src.recv(65536):
                dst.sendall(data)
                if record:
                    pending += data
                    while len(pending) >= 4:
                        size = struct.unpack(">i", pending[:4])[0]
                        if len(pending) < 4 + size:
                            break
                        with self._lock:
                            self.frames.append(pending[:4 + size])
                        pending = pending[4 + size:]
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def take(self) -> list[bytes]:
        with self._lock:
            frames, self.frames = self.frames, []
        return frames


def _confluent(bootstrap):
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic("cap-c", 2)])[ "cap-c"].result(10)
    for idempotent in (False, True):
        p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": idempotent,
                      "compression.type": "lz4" if idempotent else "none", "linger.ms": 5})
        for i in range(200):
            p.produce("cap-c", key=str(i % 7).encode(), value=b"v" * 100, headers={"h": b"1"})
        p.flush(10)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "cap-gc",
                  "auto.offset.reset": "earliest"})
    c.subscribe(["cap-c"])
    got, deadline = 0, time.monotonic() + 20
    while got < 400 and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is not None and not m.error():
            got += 1
    c.commit(asynchronous=False)
    c.close()


def _kafka_python(bootstrap):
    from kafka import KafkaConsumer, KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, compression_type="gzip")
    for i in range(100):
        p.send("cap-k", key=b"k%d" % i, value=b"v" * 100)
    p.flush(10)
    p.close()
    c = KafkaConsumer("cap-k", bootstrap_servers=bootstrap, group_id="cap-gk",
                      auto_offset_reset="earliest", consumer_timeout_ms=3000)
    for n, _ in enumerate(c):
        if n >= 99:
            break
    c.commit()
    c.close()


def _aiokafka(bootstrap):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    async def run():
        p = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
        await p.start()
        for i in range(100):
            await p.send("cap-a", key=b"k%d" % i, value=b"v" * 100)
        await p.stop()
        c = AIOKafkaConsumer("cap-a", bootstrap_servers=bootstrap, group_id="cap-ga",
                             auto_offset_reset="earliest")
        await c.start()
        got = 0
        deadline = time.monotonic() + 20
        while got < 100 and time.monotonic() < deadline:
            batch = await c.getmany(timeout_ms=500)
            got += sum(len(v) for v in batch.values())
        await c.commit()
        await c.stop()

    asyncio.run(run())


def main():
    CORPUS.mkdir(parents=True, exist_ok=True)
    proxy = RecordingProxy()
    with EmbeddedBroker(advertised_port=proxy.port) as broker:
        proxy.target_port = broker.port
        bootstrap = f"127.0.0.1:{proxy.port}"
        for name, run in (("confluent-kafka", _confluent), ("kafka-python", _kafka_python),
                          ("aiokafka", _aiokafka)):
            run(bootstrap)
            time.sleep(0.5)  # let the last frames through the proxy
            frames = proxy.take()
            (CORPUS / f"{name}.bin").write_bytes(b"".join(frames))
            keys = sorted({struct.unpack(">h", f[4:6])[0] for f in frames})
            print(f"{name}: {len(frames)} frames, api keys {keys}")
    os._exit(0)  # client threads may linger


if __name__ == "__main__":
    main()
