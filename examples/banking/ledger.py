"""Ledger writer: every transaction into SQLite exactly once.

The consumed offset of each partition is stored in the same SQLite
transaction as the ledger row and the balance update. On start the writer
assigns itself every partition of the topic at the offsets stored in the
database (not Kafka's committed offsets, and without a consumer group, so
a restart never waits for a rebalance), so a crash at any point either
loses the whole database transaction (and the record is read again) or
keeps it (and the record is skipped): never half, never twice.

    python -m examples.banking.ledger --bootstrap-server HOST:PORT --db ledger.db
"""

import argparse
import sqlite3
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from examples.common import parse

SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (txn_id TEXT PRIMARY KEY, account TEXT, amount INTEGER,
                                   topic TEXT, partition INTEGER, offset INTEGER);
CREATE TABLE IF NOT EXISTS balances (account TEXT PRIMARY KEY, balance INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS consumed (topic TEXT, partition INTEGER, next_offset INTEGER,
                                     PRIMARY KEY (topic, partition));
"""


def open_db(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(SCHEMA)
    return db


def balances(path: str) -> dict[str, int]:
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT account, balance FROM balances"))


def run(bootstrap: str, db_path: str, idle_exit_s: float | None = None, topic: str = "transactions"):
    db = open_db(db_path)

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "ledger-writer",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    stored = {(t, p): o for t, p, o in db.execute("SELECT topic, partition, next_offset FROM consumed")}
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, stored.get((topic, p), OFFSET_BEGINNING))
                     for p in sorted(partitions)])
    last = time.monotonic()
    try:
        while idle_exit_s is None or time.monotonic() - last < idle_exit_s:
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            last = time.monotonic()
            txn = parse(msg.value())["payload"]
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO ledger VALUES (?, ?, ?, ?, ?, ?)",
                       (txn["txn_id"], txn["account"], txn["amount"], msg.topic(), msg.partition(),
                        msg.offset()))
            db.execute("INSERT INTO balances VALUES (?, ?) ON CONFLICT(account) "
                       "DO UPDATE SET balance = balance + excluded.balance",
                       (txn["account"], txn["amount"]))
            db.execute("INSERT INTO consumed VALUES (?, ?, ?) ON CONFLICT(topic, partition) "
                       "DO UPDATE SET next_offset = excluded.next_offset",
                       (msg.topic(), msg.partition(), msg.offset() + 1))
            db.execute("COMMIT")
    finally:
        consumer.close()
        db.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap-server", "-b", required=True)
    ap.add_argument("--db", default="ledger.db")
    ap.add_argument("--idle-exit", type=float, default=None, help="stop after this many idle seconds")
    args = ap.parse_args()
    run(args.bootstrap_server, args.db, args.idle_exit)


if __name__ == "__main__":
    main()
