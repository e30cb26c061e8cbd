"""Exactly-once end to end, in the style of Kafka's transactions_test.py: a
transactional copier process (tests/integration/txn_copier.py) copies a
numbered input topic to an output topic while the test SIGKILLs and
restarts the broker and the copier. Afterwards the committed output is the
input exactly once, in order per partition, and a read_committed consumer
that ran through all of it saw exactly that: no duplicate, no record of an
aborted transaction."""

import os
import signal
import subprocess
import sys
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.integration.conftest import wait_for
from tests.integration.txn_copier import NO_REBOOTSTRAP

PARTITIONS = 3


def wait_until(predicate, timeout):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def group_offsets(broker):
    """The copier group's offsets as OffsetFetch require_stable answers them
    (a failure message: which partitions hang on pending offsets)."""
    from tests.faults.txn_raw import RawClient

    with RawClient(broker.port) as raw:
        return raw.offset_fetch("copier", [("input", p) for p in range(PARTITIONS)])


def create_topics(bs, *names):
    admin = AdminClient({"bootstrap.servers": bs})
    for f in admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names]).values():
        f.result(10)


def seed(bs, topic, per_partition):
    """Numbered records `p-i` on every partition: {partition: [value, ...]}."""
    p = Producer({"bootstrap.servers": bs, "enable.idempotence": True, "linger.ms": 5})
    sent = {}
    for part in range(PARTITIONS):
        sent[part] = [b"%d-%06d" % (part, i) for i in range(per_partition)]
        for value in sent[part]:
            p.produce(topic, key=value, value=value, partition=part)
            p.poll(0)
    assert p.flush(30) == 0
    return sent


class CopierProcess:
    """One run of txn_copier.py; its output is read on a thread so the
    test can wait for its progress (`committed N`) and its end."""

    def __init__(self, bs, client, transaction_size, total, tag, open_pause_ms=100):
        self.args = [sys.executable, "-m", "tests.integration.txn_copier", "--client", client,
                     "--bootstrap", bs, "--input", "input", "--output", "output",
                     "--group", "copier", "--transactional-id", f"copier-{tag}",
                     "--transaction-size", str(transaction_size), "--open-pause-ms", str(open_pause_ms)]
        self.total = total
        self.lines = []
        self.progress = 0
        self.in_txn = False  # its last line said a transaction holds records
        self.proc = None

    def start(self):
        self.in_txn = False
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        return self

    def _read(self, proc):
        log = open(os.environ["COPIER_LOG"], "a") if os.environ.get("COPIER_LOG") else None
        for line in proc.stdout:
            self.lines.append(line)
            if log:
                log.write(line)
            if line.startswith("committed "):
                self.progress = max(self.progress, int(line.split()[1]))
                self.in_txn = False
            elif line.startswith("open"):
                self.in_txn = True

    def kill(self):
        self.proc.kill()
        self.proc.wait(10)

    def exited(self):
        return self.proc.poll() is not None

    def output(self):
        if not self.exited():  # a stalled copier: where is it?
            self.proc.send_signal(signal.SIGUSR1)
            time.sleep(0.5)  # for its stack dump to arrive, diagnostics only
        return "".join(line for line in self.lines[-60:] if not line.startswith("%"))


class CommittedReader:
    """A read_committed consumer on every output partition from offset 0,
    running on a thread through broker restarts: every record it is handed,
    as {partition: [(offset, value)]}."""

    def __init__(self, bs, topic):
        self.got = {p: [] for p in range(PARTITIONS)}
        self.errors = []
        self._stop = threading.Event()
        self._consumer = Consumer({
            "bootstrap.servers": bs, "group.id": "reader", "enable.auto.commit": False,
            "isolation.level": "read_committed", "reconnect.backoff.max.ms": 500,
            **NO_REBOOTSTRAP,
        })
        self._consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            m = self._consumer.poll(0.1)
            if m is None:
                continue
            if m.error():
                if m.error().fatal():  # not the broker's restarts, which it rides out
                    self.errors.append(m.error())
                continue
            self.got[m.partition()].append((m.offset(), m.value()))

    def count(self):
        return sum(len(v) for v in self.got.values())

    def stop(self):
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()


def read_to_end(bs, topic, isolation):
    """Every record of every partition up to its end for `isolation`
    (the LSO for read_committed): {partition: [(offset, value)]}."""
    c = Consumer({"bootstrap.servers": bs, "group.id": "final", "enable.auto.commit": False,
                  "enable.partition.eof": True, "isolation.level": isolation})
    c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    got = {p: [] for p in range(PARTITIONS)}
    at_end = set()
    deadline = time.monotonic() + 15
    try:
        while len(at_end) < PARTITIONS:
            assert time.monotonic() < deadline, f"no end of {topic} in 15 s (ends at {at_end})"
            m = c.poll(1)
            if m is None:
                continue
            if m.error():
                assert m.error().code() == -191, m.error()  # _PARTITION_EOF
                at_end.add(m.partition())
                continue
            got[m.partition()].append((m.offset(), m.value()))
    finally:
        c.close()
    return got


def run_copy(broker_process, client, per_partition, transaction_size, schedule,
             open_pause_ms=100):
    """Seed, copy with `client` while doing `schedule` [(fraction copied,
    action)], and check exactly-once. Returns how many records the
    read_uncommitted output holds beyond the input (aborted copies)."""
    broker = broker_process()
    broker.start()
    bs = broker.bootstrap_servers
    create_topics(bs, "input", "output")
    sent = seed(bs, "input", per_partition)
    total = PARTITIONS * per_partition
    reader = CommittedReader(bs, "output")
    copier = CopierProcess(bs, client, transaction_size, total, client, open_pause_ms).start()
    try:
        for fraction, action in schedule:
            # Kill mid-transaction: past the mark, with records in an open one.
            reached = wait_until(lambda: (copier.progress >= fraction * total and copier.in_txn)
                                 or copier.exited(), timeout=20)
            assert reached and not copier.exited(), (
                f"copier at {copier.progress} of {total}, exited {copier.exited()}, before "
                f"{action} at {fraction:.0%}:\n{copier.output()}\n"
                f"broker:\n{''.join(broker.output[-30:])}\n{group_offsets(broker)}")
            if action == "kill broker":
                broker.kill()
                broker.start()
            elif action == "stop broker":
                assert broker.stop() == 0
                broker.start()
            elif action == "kill copier":
                copier.kill()
                copier.start()
        try:
            copier.proc.wait(30)
        except subprocess.TimeoutExpired:
            pass
        assert copier.proc.returncode == 0 and "done\n" in copier.lines, (
            f"copier at {copier.progress} of {total}, exit {copier.proc.returncode}:\n"
            f"{copier.output()}\nbroker:\n{''.join(broker.output[-30:])}")
        wait_for(lambda: reader.count() >= total, timeout=20,
                 message=f"the read_committed reader to get {total} records (has {reader.count()})")
    finally:
        if not copier.exited():
            copier.kill()
        reader.stop()

    final = read_to_end(bs, "output", "read_committed")
    for part in range(PARTITIONS):
        values = [v for _, v in final[part]]
        assert values == sent[part], (
            f"partition {part}: {len(values)} committed records, {len(set(values))} distinct, "
            f"{len(sent[part])} sent; first difference at "
            f"{next((i for i, (a, b) in enumerate(zip(values, sent[part])) if a != b), None)}")
        # The concurrent reader saw exactly the committed records, no more.
        seen = reader.got[part]
        assert seen == final[part], (
            f"partition {part}: the running read_committed reader saw {len(seen)} records "
            f"({len(set(v for _, v in seen))} distinct), {len(final[part])} are committed")
    assert not reader.errors, reader.errors
    everything = read_to_end(bs, "output", "read_uncommitted")
    assert broker.stop() == 0
    return sum(len(v) for v in everything.values()) - total


def test_confluent_copier_survives_broker_and_copier_sigkills(broker_process):
    extra = run_copy(broker_process, "confluent", per_partition=2000, transaction_size=300,
                     schedule=[(0.10, "kill copier"), (0.20, "kill broker"),
                               (0.35, "kill copier"), (0.50, "stop broker"),
                               (0.65, "kill broker"), (0.80, "kill copier")])
    # The copier kills landed mid-transaction: their records are in the
    # log, aborted, and the read_committed checks above left them out.
    assert extra > 0


def test_kafka_python_copier_survives_sigkills(broker_process):
    # kafka-python 3.0.12 loses an AddOffsetsToTxn that met the broker down
    # (it finds the coordinator again and never resends it, so
    # send_offsets_to_transaction waits forever). The copier pauses long
    # enough after writing records for the broker to be back first: the
    # kill still lands mid-transaction.
    assert run_copy(broker_process, "kafka-python", per_partition=500, transaction_size=200,
                    schedule=[(0.2, "kill copier"), (0.5, "kill broker")],
                    open_pause_ms=2000) > 0


def test_aiokafka_copier_survives_sigkills(broker_process):
    assert run_copy(broker_process, "aiokafka", per_partition=500, transaction_size=200,
                    schedule=[(0.2, "kill copier"), (0.5, "kill broker")]) > 0
