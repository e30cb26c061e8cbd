"""Banking transaction stream: exactly-once fraud check, exactly-once
ledger, notifications.

    transactions --> fraud check   (fraud.py, group "fraud",   --> fraud-alerts
                                    Kafka transactions)        --> fraud-state
                 --> ledger writer (ledger.py, SQLite, exactly once)
                 --> notification  (group "notification", read_committed) <-- fraud-alerts

The fraud check flags a single amount above a threshold, and a user making
more than `velocity_limit` transactions within a sliding window of event
time; its windows live in the `fraud-state` changelog, written in the same
Kafka transaction as its alerts and consumed offsets. The demo kills both
the fraud check and the ledger writer with SIGKILL in the middle of the
stream, restarts them, and checks every balance against the expected sum
and every alert and window update against the rules: each exactly once.
"""

import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict

from confluent_kafka import Consumer, KafkaError, TopicPartition

from examples.banking.fraud import expected_alerts
from examples.banking.ledger import balances
from examples.common import Service, arguments, broker, ensure_topics, envelope, parse, producer, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def transactions(n: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    t = 1_700_000_000_000
    out = []
    for i in range(n):
        account = f"acct-{rng.randrange(8):02d}"
        amount = 9_000 if rng.random() < 0.02 else rng.randrange(-300, 800)
        t += rng.randrange(50, 3000)
        out.append({"txn_id": f"txn-{i:06d}", "account": account, "amount": amount, "at_ms": t})
    if n > 20:  # a burst from one account: the velocity rule must fire
        out[10:18] = [{**txn, "account": "acct-burst", "at_ms": out[10]["at_ms"] + k}
                      for k, txn in enumerate(out[10:18])]
    return out


def ledger_rows(db: str) -> int:
    import sqlite3

    if not os.path.exists(db):
        return 0
    try:
        with sqlite3.connect(db) as conn:
            return conn.execute("SELECT count(*) FROM ledger").fetchone()[0]
    except sqlite3.OperationalError:  # the writer has not created its tables yet
        return 0


def start_ledger(bootstrap: str, db: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "examples.banking.ledger", "-b", bootstrap,
                             "--db", db, "--idle-exit", "3"], cwd=ROOT)


class FraudProcess:
    """The exactly-once fraud check as its own process; `committed` follows
    the input records it reports committed."""

    def __init__(self, bootstrap: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "examples.banking.fraud", "-b", bootstrap,
                                      "--idle-exit", "3"], cwd=ROOT, stdout=subprocess.PIPE,
                                     text=True)
        self.committed = 0
        threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self) -> None:
        for line in self.proc.stdout:
            if line.startswith("committed "):
                self.committed = int(line.split()[1])

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def kill_mid_transaction(self, watch: "OpenTransactions", timeout: float = 30) -> bool:
        """SIGKILL while a transaction of it is open with records in the
        log: freeze it (SIGSTOP), look, and kill it frozen, or let it run on
        a moment and look again. Returns whether it found one (it kills
        the process either way, after at most `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            self.proc.send_signal(signal.SIGSTOP)
            found = watch.records() > 0
            if found or time.monotonic() > deadline:
                break
            self.proc.send_signal(signal.SIGCONT)
            time.sleep(0.005)
        self.kill()
        return found


class OpenTransactions:
    """How many records of a topic are in open transactions: the high
    watermarks minus the last stable offsets (the end read_committed
    readers are told), from two consumers that stay connected."""

    def __init__(self, bootstrap: str, topic: str):
        self.consumers = [Consumer({"bootstrap.servers": bootstrap, "group.id": "ends",
                                    "isolation.level": level})
                          for level in ("read_uncommitted", "read_committed")]
        partitions = self.consumers[0].list_topics(topic, timeout=10).topics[topic].partitions
        self.partitions = [TopicPartition(topic, p) for p in partitions]

    def records(self) -> int:
        high, stable = (sum(c.get_watermark_offsets(tp, timeout=10)[1] for tp in self.partitions)
                        for c in self.consumers)
        return high - stable

    def close(self) -> None:
        for c in self.consumers:
            c.close()


def read_topic(bootstrap: str, topic: str, isolation: str = "read_committed") -> list:
    """Every record of `topic` a reader with this isolation level gets, to
    the end of each partition (the last stable offset for read_committed)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{os.getpid()}",
                  "enable.auto.commit": False, "isolation.level": isolation,
                  "enable.partition.eof": True})
    partitions = c.list_topics(topic, timeout=10).topics[topic].partitions
    c.assign([TopicPartition(topic, p, 0) for p in partitions])
    pending, out = set(partitions), []
    try:
        while pending:
            msg = c.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    raise RuntimeError(msg.error().str())
                pending.discard(msg.partition())
                continue
            out.append(parse(msg.value()))
    finally:
        c.close()
    return out


def run(bootstrap: str, n: int = 2000, db: str | None = None, say=print) -> dict:
    ensure_topics(bootstrap, {"transactions": (3, {}), "fraud-alerts": (1, {}),
                              "fraud-state": (3, {"cleanup.policy": "compact"})})
    db = db or os.path.join(tempfile.mkdtemp(), "ledger.db")
    notified = []
    lock = threading.Lock()

    def notify(msg):
        with lock:
            notified.append(parse(msg.value())["payload"]["txn_id"])

    # read_committed: alerts of an aborted transaction never reach a customer
    notification = Service(bootstrap, "notification", ["fraud-alerts"], notify,
                           **{"isolation.level": "read_committed"}).start()
    ledger = start_ledger(bootstrap, db)
    fraud = FraudProcess(bootstrap)
    watch = OpenTransactions(bootstrap, "fraud-state")
    bank = producer(bootstrap)
    txns = transactions(n)
    for i, txn in enumerate(txns):
        bank.produce("transactions", key=txn["account"], value=envelope("TransactionPosted", txn))
        if i == n // 2:
            bank.flush(30)
            # kill each while it works through the backlog: the fraud check
            # then has a transaction open, with alerts and windows written
            wait_until(lambda: fraud.committed >= n // 4, 60)
            in_txn = fraud.kill_mid_transaction(watch)
            fraud_killed_at = fraud.committed
            say(f"fraud check killed with SIGKILL after committing {fraud_killed_at} of {n} "
                f"transactions" + ("" if in_txn else " (between two of its transactions)"))
            fraud = FraudProcess(bootstrap)
            say("fraud check restarted; its open transaction is aborted, it resumes from the "
                "committed offsets and windows")
            wait_until(lambda: ledger_rows(db) >= n // 4, 60)
            ledger.send_signal(signal.SIGKILL)  # mid-stream: it is still writing
            ledger.wait(10)
            say(f"ledger writer killed with SIGKILL after {ledger_rows(db)} of {n} transactions")
            ledger = start_ledger(bootstrap, db)
            say("ledger writer restarted; it resumes from the offsets stored in SQLite")
    bank.flush(30)
    ledger.wait(120)  # exits after 3 idle seconds
    fraud.proc.wait(120)
    watch.close()
    expected = defaultdict(int)
    for txn in txns:
        expected[txn["account"]] += txn["amount"]
    got = balances(db)
    alerts = [a["payload"] for a in read_topic(bootstrap, "fraud-alerts")]
    state = read_topic(bootstrap, "fraud-state")
    in_log = len(read_topic(bootstrap, "fraud-state", "read_uncommitted"))
    want = expected_alerts(txns)
    wait_until(lambda: len(notified) >= len(want), 30)
    notification.stop()
    exact = got == dict(expected)
    once = (Counter(a["txn_id"] for a in alerts) == Counter(a["txn_id"] for a in want)
            and sorted(s["txn_id"] for s in state) == [t["txn_id"] for t in txns])
    say(f"{n} transactions; balances exact after the crash: {exact}; "
        f"{len(alerts)} fraud alerts (each exactly once: {once}), {len(notified)} notifications; "
        f"{in_log - len(state)} window updates of the killed transaction were aborted")
    return {"expected": dict(expected), "balances": got, "alerts": alerts,
            "expected_alerts": want, "state": state, "state_in_log": in_log,
            "notified": notified, "db": db, "fraud_killed_at": fraud_killed_at}


def main() -> None:
    args = arguments("Banking stream: exactly-once fraud check and ledger").parse_args()
    with broker(args.bootstrap_server) as bootstrap:
        run(bootstrap)


if __name__ == "__main__":
    main()
