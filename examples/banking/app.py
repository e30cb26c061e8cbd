"""Banking transaction stream: fraud check, exactly-once ledger, notifications.

    transactions --> fraud check   (group "fraud")        --> fraud-alerts
                 --> ledger writer (SQLite, exactly once, see ledger.py)
                 --> notification  (group "notification") <-- fraud-alerts

The fraud check flags a single amount above a threshold, and a user making
more than `velocity_limit` transactions within a sliding window of event
time. The demo kills the ledger writer process with SIGKILL in the middle
of the stream, restarts it, and checks every balance against the expected
sum.
"""

import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
from collections import defaultdict, deque

from examples.banking.ledger import balances
from examples.common import Service, arguments, broker, ensure_topics, envelope, parse, producer, wait_until

THRESHOLD = 5_000
VELOCITY_LIMIT = 5
VELOCITY_WINDOW_MS = 10_000


class FraudCheck:
    def __init__(self, out):
        self.out = out
        self.recent: dict[str, deque] = defaultdict(deque)  # account -> event times (ms)
        self.alerts: list[dict] = []

    def __call__(self, msg):
        txn = parse(msg.value())["payload"]
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
            alert = {"txn_id": txn["txn_id"], "account": txn["account"], "reasons": reasons}
            self.alerts.append(alert)
            self.out.produce("fraud-alerts", key=txn["account"], value=envelope("FraudSuspected", alert))
            self.out.poll(0)


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
                             "--db", db, "--idle-exit", "3"],
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))


def run(bootstrap: str, n: int = 2000, db: str | None = None, say=print) -> dict:
    ensure_topics(bootstrap, {"transactions": (3, {}), "fraud-alerts": (1, {})})
    db = db or os.path.join(tempfile.mkdtemp(), "ledger.db")
    out = producer(bootstrap)
    fraud = FraudCheck(out)
    notified = []
    lock = threading.Lock()

    def notify(msg):
        with lock:
            notified.append(parse(msg.value())["payload"]["txn_id"])

    services = [Service(bootstrap, "fraud", ["transactions"], fraud).start(),
                Service(bootstrap, "notification", ["fraud-alerts"], notify).start()]
    ledger = start_ledger(bootstrap, db)
    bank = producer(bootstrap)
    txns = transactions(n)
    for i, txn in enumerate(txns):
        bank.produce("transactions", key=txn["account"], value=envelope("TransactionPosted", txn))
        if i == n // 2:
            bank.flush(30)
            wait_until(lambda: ledger_rows(db) >= n // 4, 60)
            ledger.send_signal(signal.SIGKILL)  # mid-stream: it is still writing
            ledger.wait(10)
            say(f"ledger writer killed with SIGKILL after {ledger_rows(db)} of {n} transactions")
            ledger = start_ledger(bootstrap, db)
            say("ledger writer restarted; it resumes from the offsets stored in SQLite")
    bank.flush(30)
    ledger.wait(120)  # exits after 3 idle seconds
    expected = defaultdict(int)
    for txn in txns:
        expected[txn["account"]] += txn["amount"]
    got = balances(db)
    wait_until(lambda: len(notified) >= len(fraud.alerts) and services[0].handled >= n, 30)
    for s in services:
        s.stop()
    out.flush(30)
    exact = got == dict(expected)
    say(f"{n} transactions; balances exact after the crash: {exact}; "
        f"{len(fraud.alerts)} fraud alerts, {len(notified)} notifications")
    return {"expected": dict(expected), "balances": got, "alerts": fraud.alerts,
            "notified": notified, "db": db}


def main() -> None:
    args = arguments("Banking stream: fraud check, exactly-once ledger").parse_args()
    with broker(args.bootstrap_server) as bootstrap:
        run(bootstrap)


if __name__ == "__main__":
    main()
