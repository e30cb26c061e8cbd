"""Fraud check, exactly once, with Kafka transactions.

Reads `transactions` in consumer group `fraud` and, in one Kafka
transaction per batch of input records, writes

- an alert to `fraud-alerts` for each suspicious transaction, and
- the account's new sliding window to `fraud-state` (compacted, one
  partition per input partition: the check's changelog, as a Kafka Streams
  state store keeps one),

together with the group's consumed offsets (send_offsets_to_transaction).
Either all of a batch's effects become visible to read_committed readers,
or none do. After a crash (SIGKILL at any moment) the restarted process
fences its predecessor (same transactional.id: the open transaction is
aborted), rebuilds the windows of its partitions from `fraud-state` read
with read_committed, and resumes at the committed offsets, so every alert
and every window update is there exactly once.

Only confluent-kafka, nothing of Strom's: it runs unchanged on Kafka.

    python -m examples.banking.fraud --bootstrap-server HOST:PORT [--idle-exit 3]

It prints `committed N` (input records committed so far) after each
transaction, for whoever supervises it.
"""

import argparse
import json
import sys
import time
from collections import defaultdict, deque

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from examples.common import envelope, parse

THRESHOLD = 5_000
VELOCITY_LIMIT = 5
VELOCITY_WINDOW_MS = 10_000
TXN_RECORDS = 100  # input records per transaction at most
TXN_MS = 200  # ... and at most this long open


class FraudRules:
    """The rules and their state: per account, the event times (ms) of its
    transactions within the sliding window. Pure: the same input in the
    same order per account gives the same alerts."""

    def __init__(self):
        self.recent: dict[str, deque] = defaultdict(deque)

    def check(self, txn: dict) -> dict | None:
        reasons = []
        if abs(txn["amount"]) > THRESHOLD:
            reasons.append(f"amount {txn['amount']} above {THRESHOLD}")
        window = self.recent[txn["account"]]
        window.append(txn["at_ms"])
        while window and window[0] <= txn["at_ms"] - VELOCITY_WINDOW_MS:
            window.popleft()
        if len(window) > VELOCITY_LIMIT:
            reasons.append(f"{len(window)} transactions within {VELOCITY_WINDOW_MS // 1000} s")
        if reasons:
            return {"txn_id": txn["txn_id"], "account": txn["account"], "reasons": reasons}
        return None


def expected_alerts(txns: list[dict]) -> list[dict]:
    rules = FraudRules()
    return [a for a in map(rules.check, txns) if a is not None]


class ExactlyOnceFraudCheck:
    def __init__(self, bootstrap: str, instance: str = "1", idle_exit_s: float | None = None,
                 out=sys.stdout):
        self.bootstrap, self.idle_exit_s, self.out = bootstrap, idle_exit_s, out
        self.rules = FraudRules()
        self.committed = 0
        self.producer = Producer({"bootstrap.servers": bootstrap,
                                  "transactional.id": f"fraud-check-{instance}",
                                  "linger.ms": 5})
        # Fences an older instance with this id and waits until its open
        # transaction is aborted: only then is fraud-state stable to restore.
        self.producer.init_transactions(60)
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": "fraud",
            "group.instance.id": f"fraud-check-{instance}",  # a restart takes over at once
            "session.timeout.ms": 10_000, "auto.offset.reset": "earliest",
            "enable.auto.commit": False, "isolation.level": "read_committed",
        })
        self.in_txn = 0  # input records in the open transaction

    # -- state: restored from the changelog, read_committed ---------------------

    def _restore(self, partitions: list[TopicPartition]) -> None:
        reader = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "fraud-restore",
                           "enable.auto.commit": False, "isolation.level": "read_committed",
                           "enable.partition.eof": True})
        wanted = [TopicPartition("fraud-state", tp.partition, 0) for tp in partitions]
        reader.assign(wanted)
        pending = {tp.partition for tp in wanted}
        deadline = time.monotonic() + 60
        try:
            while pending and time.monotonic() < deadline:
                msg = reader.poll(0.2)
                if msg is None:
                    continue
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        pending.discard(msg.partition())
                        continue
                    raise KafkaException(msg.error())
                state = json.loads(msg.value())
                self.rules.recent[state["account"]] = deque(state["window"])
        finally:
            reader.close()
        if pending:
            raise RuntimeError(f"fraud-state partitions {sorted(pending)} did not load in 60 s")

    def _on_assign(self, consumer, partitions) -> None:
        self._restore(partitions)

    def _on_revoke(self, consumer, partitions) -> None:
        if self.in_txn:
            self._commit()

    # -- the loop ----------------------------------------------------------------

    def _commit(self) -> None:
        positions = [tp for tp in self.consumer.position(self.consumer.assignment())
                     if tp.offset >= 0]
        self.producer.send_offsets_to_transaction(positions, self.consumer.consumer_group_metadata(),
                                                  30)
        self.producer.commit_transaction(30)
        self.committed += self.in_txn
        self.in_txn = 0
        print(f"committed {self.committed}", file=self.out, flush=True)

    def _rewind(self) -> None:
        """After an aborted transaction: back to the committed offsets and
        the committed windows, as after a restart."""
        assignment = self.consumer.assignment()
        self.rules = FraudRules()
        self._restore(assignment)
        for tp in self.consumer.committed(assignment, timeout=30):
            self.consumer.seek(TopicPartition(tp.topic, tp.partition, max(tp.offset, 0)))
        self.in_txn = 0

    def _handle(self, msg) -> None:
        txn = parse(msg.value())["payload"]
        alert = self.rules.check(txn)
        if alert is not None:
            self.producer.produce("fraud-alerts", key=txn["account"],
                                  value=envelope("FraudSuspected", alert))
        window = list(self.rules.recent[txn["account"]])
        self.producer.produce("fraud-state", key=txn["account"], partition=msg.partition(),
                              value=json.dumps({"account": txn["account"], "window": window,
                                                "txn_id": txn["txn_id"]}).encode())
        self.producer.poll(0)

    def run(self) -> None:
        self.consumer.subscribe(["transactions"], on_assign=self._on_assign,
                                on_revoke=self._on_revoke)
        idle_since = opened = time.monotonic()
        try:
            while self.idle_exit_s is None or time.monotonic() - idle_since < self.idle_exit_s:
                msg = self.consumer.poll(0.05)
                if msg is not None and not msg.error():
                    idle_since = time.monotonic()
                    if not self.in_txn:
                        self.producer.begin_transaction()
                        opened = time.monotonic()
                    self._handle(msg)
                    self.in_txn += 1
                if self.in_txn and (self.in_txn >= TXN_RECORDS or msg is None
                                    or time.monotonic() - opened > TXN_MS / 1000):
                    try:
                        self._commit()
                    except KafkaException as e:
                        if not e.args[0].txn_requires_abort():
                            raise  # fenced or fatal: a newer instance owns the id
                        self.producer.abort_transaction(30)
                        self._rewind()
        finally:
            self.consumer.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap-server", "-b", required=True)
    ap.add_argument("--instance", default="1", help="instance name: its transactional.id")
    ap.add_argument("--idle-exit", type=float, default=None, help="stop after this many idle seconds")
    args = ap.parse_args()
    ExactlyOnceFraudCheck(args.bootstrap_server, args.instance, args.idle_exit).run()


if __name__ == "__main__":
    main()
