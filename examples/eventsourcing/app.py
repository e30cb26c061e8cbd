"""Event sourcing: account state is rebuilt from its events.

`account-events` holds AccountOpened / MoneyDeposited / MoneyWithdrawn,
keyed by account id (so one account's events stay in order in one
partition). State is a fold over the events, replayed from offset 0.
Snapshots go to the compacted topic `account-snapshots`, keyed by account
id, each carrying the event offset it covers: a reader takes the latest
snapshot and replays only the tail after it, which gives the same state
as a full replay. Compaction keeps only the latest snapshot per account.
"""

import random
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from examples.common import arguments, broker, ensure_topics, envelope, parse, producer, wait_until

EVENTS, SNAPSHOTS = "account-events", "account-snapshots"


def apply(state: dict, event: dict) -> dict:
    kind, p = event["event_type"], event["payload"]
    account = state.setdefault(p["account"], {"owner": None, "balance": 0, "version": 0})
    if kind == "AccountOpened":
        account["owner"] = p["owner"]
    elif kind == "MoneyDeposited":
        account["balance"] += p["amount"]
    elif kind == "MoneyWithdrawn":
        account["balance"] -= p["amount"]
    account["version"] += 1
    return state


def read_all(bootstrap: str, topic: str, start: dict[int, int] | None = None):
    """Every record of `topic` up to its current end: (partition, offset, key, value)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{time.time_ns()}",
                  "enable.auto.commit": False})
    partitions = sorted(c.list_topics(topic, timeout=10).topics[topic].partitions)
    ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
    begin = {p: (start or {}).get(p, OFFSET_BEGINNING) for p in partitions}
    c.assign([TopicPartition(topic, p, begin[p]) for p in partitions])
    out, done = [], {p for p in partitions if ends[p] == 0 or begin[p] == ends[p]}
    while len(done) < len(partitions):
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        out.append((m.partition(), m.offset(), m.key(), m.value()))
        if m.offset() + 1 >= ends[m.partition()]:
            done.add(m.partition())
    c.close()
    return out


def full_replay(bootstrap: str) -> dict:
    state: dict = {}
    for _, _, _, value in sorted(read_all(bootstrap, EVENTS), key=lambda r: (r[0], r[1])):
        apply(state, parse(value))
    return state


def take_snapshots(bootstrap: str) -> int:
    """Fold the events and publish one snapshot per account, recording the
    next event offset of its partition."""
    state, covered = {}, {}
    for partition, offset, key, value in read_all(bootstrap, EVENTS):
        apply(state, parse(value))
        covered[key.decode()] = (partition, offset + 1)
    out = producer(bootstrap)
    for account, data in state.items():
        partition, next_offset = covered[account]
        out.produce(SNAPSHOTS, key=account, value=envelope("AccountSnapshot", {
            "account": account, "state": data, "partition": partition, "next_offset": next_offset}))
    out.flush(30)
    return len(state)


def snapshot_and_tail(bootstrap: str) -> dict:
    latest = {}
    for _, _, key, value in read_all(bootstrap, SNAPSHOTS):
        if value is not None:
            latest[key.decode()] = parse(value)["payload"]
    state = {a: dict(s["state"]) for a, s in latest.items()}
    for partition, offset, key, value in read_all(bootstrap, EVENTS):
        snap = latest.get(key.decode())
        if snap is None or offset >= snap["next_offset"]:
            apply(state, parse(value))
    return state


def snapshots_per_account(bootstrap: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, _, key, value in read_all(bootstrap, SNAPSHOTS):
        if value is not None:  # a tombstone is no snapshot
            counts[key.decode()] = counts.get(key.decode(), 0) + 1
    return counts


def emit_events(bootstrap: str, n: int, accounts: int, rng: random.Random, opened: set) -> None:
    out = producer(bootstrap)
    for _ in range(n):
        account = f"acct-{rng.randrange(accounts):03d}"
        if account not in opened:
            opened.add(account)
            event = envelope("AccountOpened", {"account": account, "owner": f"owner of {account}"})
        elif rng.random() < 0.6:
            event = envelope("MoneyDeposited", {"account": account, "amount": rng.randrange(1, 500)})
        else:
            event = envelope("MoneyWithdrawn", {"account": account, "amount": rng.randrange(1, 200)})
        out.produce(EVENTS, key=account, value=event)
    out.flush(30)


def run(bootstrap: str, events: int = 600, accounts: int = 20, compaction_timeout: float = 90,
        say=print) -> dict:
    ensure_topics(bootstrap, {
        EVENTS: (3, {}),
        # Small, short segments and an eager cleaner so the demo sees
        # compaction within seconds (Kafka's defaults are a week and 50%).
        SNAPSHOTS: (1, {"cleanup.policy": "compact", "segment.ms": "500",
                        "min.cleanable.dirty.ratio": "0.01", "min.compaction.lag.ms": "0",
                        "delete.retention.ms": "1000"}),
    })
    rng, opened = random.Random(42), set()
    for round_ in range(3):  # events, then a snapshot, three times
        emit_events(bootstrap, events // 3, accounts, rng, opened)
        taken = take_snapshots(bootstrap)
        say(f"round {round_ + 1}: {events // 3} more events, {taken} snapshots published")
        time.sleep(0.6)  # let the snapshot segment age past segment.ms
    emit_events(bootstrap, 30, accounts, rng, opened)  # a tail after the last snapshot
    full = full_replay(bootstrap)
    fast = snapshot_and_tail(bootstrap)
    say(f"full replay == latest snapshot + tail replay: {full == fast} ({len(full)} accounts)")
    # Publish once more, then roll the segment holding those snapshots with
    # one more record past segment.ms: as in Kafka, the cleaner compacts
    # against records below the active segment only. The roll record is a
    # tombstone of a key no account has, so it is no snapshot.
    take_snapshots(bootstrap)
    time.sleep(0.6)
    out = producer(bootstrap)
    out.produce(SNAPSHOTS, key="segment-roll", value=None)
    out.flush(30)
    compacted = wait_until(lambda: max(snapshots_per_account(bootstrap).values()) == 1,
                           compaction_timeout)
    counts = snapshots_per_account(bootstrap)
    say(f"after compaction: {max(counts.values())} snapshot record per account, the latest "
        f"(compacted={compacted}, {sum(counts.values())} records for {len(counts)} accounts)")
    return {"full": full, "fast": fast, "snapshots": counts}


def main() -> None:
    args = arguments("Event sourcing with replay, snapshots and compaction").parse_args()
    with broker(args.bootstrap_server) as bootstrap:
        run(bootstrap)


if __name__ == "__main__":
    main()
