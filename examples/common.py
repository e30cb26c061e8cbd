"""What every example shares: the event envelope, topic creation, a
consumer-service loop, and how an example finds its broker.

Only confluent-kafka is used to talk to the broker, so every example runs
unchanged against Apache Kafka or Redpanda: pass --bootstrap-server.
Without it, an embedded Strom broker is started for the run.
"""

import argparse
import contextlib
import json
import threading
import time
import uuid
from datetime import datetime, timezone

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic


def envelope(event_type: str, payload: dict) -> bytes:
    """The one JSON envelope all examples use."""
    return json.dumps({
        "event_type": event_type,
        "event_id": str(uuid.uuid4()),
        "timestamp": datetime.now(timezone.utc).isoformat(),
        "payload": payload,
    }).encode()


def parse(value: bytes) -> dict:
    return json.loads(value)


def ensure_topics(bootstrap: str, topics: dict[str, tuple[int, dict]]) -> None:
    """Create topics {name: (partitions, configs)} that do not exist yet."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = admin.list_topics(timeout=10).topics
    new = [NewTopic(name, parts, 1, config=configs)
           for name, (parts, configs) in topics.items() if name not in existing]
    for fut in (admin.create_topics(new).values() if new else []):
        fut.result(15)


def producer(bootstrap: str, **extra) -> Producer:
    return Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                     "enable.idempotence": True, **extra})


class Service:
    """A consumer-group member that handles each event, then commits it
    (at-least-once), on its own thread, like one instance of a service."""

    def __init__(self, bootstrap: str, group: str, topics: list[str], handle,
                 offset_reset: str = "earliest", **extra):
        self.bootstrap, self.group, self.topics, self.handle = bootstrap, group, topics, handle
        self.offset_reset = offset_reset
        self.extra = extra
        self.handled = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "Service":
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.group, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.group,
                             "auto.offset.reset": self.offset_reset, "enable.auto.commit": False,
                             **self.extra})
        consumer.subscribe(self.topics)
        try:
            while not self._stop.is_set():
                msg = consumer.poll(0.1)
                if msg is None or msg.error():
                    continue
                self.handle(msg)
                self.handled += 1
                consumer.commit(msg, asynchronous=False)
        finally:
            consumer.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(30)


def wait_until(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def arguments(description: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--bootstrap-server", "-b", default=None,
                    help="a Kafka-compatible cluster; default: start an embedded Strom broker")
    return ap


@contextlib.contextmanager
def broker(bootstrap: str | None):
    """Yield a bootstrap address: the one given, or an embedded Strom's."""
    if bootstrap:
        yield bootstrap
        return
    from strom import EmbeddedBroker

    with EmbeddedBroker(storage="memory") as embedded:
        yield embedded.bootstrap_servers
