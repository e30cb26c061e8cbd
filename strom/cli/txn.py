"""`strom txn list|describe|describe-producers|abort|find-hanging`: the
counterpart of Kafka's `kafka-transactions.sh`, for any Kafka cluster.

Built on kafka-python's KafkaAdminClient: confluent-kafka's AdminClient
(librdkafka) has no ListTransactions, DescribeTransactions,
DescribeProducers or WriteTxnMarkers call, and kafka-python has all four.
It is imported only when a `txn` command runs (it costs ~0.3 s), so no
other command, `strom serve` least of all, pays for it.

find-hanging follows Kafka's tool, not kafka-python's shortcut: a hanging
transaction is one a partition still holds open (DescribeProducers: a
current transaction start offset, last written longer ago than the maximum
transaction timeout) while its coordinator does not list that partition in
a transaction it will finish. `abort` clears one by writing an ABORT marker
to that partition (WriteTxnMarkers), which moves the partition's last stable
offset on, so read_committed consumers are no longer held back.
"""

import json
import logging
import time

from strom.cli.common import command, command_group, fail, print_table


def register(subparsers) -> None:
    sub = command_group(subparsers, "txn", "List, inspect and abort transactions "
                        "(as Kafka's kafka-transactions.sh).")
    p = command(sub, "list", list_, "List the transactions the transaction coordinators know.")
    p.add_argument("--duration-filter", type=int, metavar="MS",
                   help="only transactions running longer than this many ms")
    p.add_argument("--state", action="append", metavar="STATE",
                   help="only this state (Ongoing, PrepareCommit, CompleteAbort ...), repeatable")
    p.add_argument("--producer-id", type=int, action="append", help="only this producer, repeatable")
    _json_option(p)
    p = command(sub, "describe", describe, "State, producer, timeout and partitions of "
                "transactional ids.")
    p.add_argument("transactional_ids", nargs="*", metavar="ID")
    p.add_argument("--transactional-id", action="append", dest="more_ids", metavar="ID",
                   help="as kafka-transactions.sh spells it, repeatable")
    _json_option(p)
    p = command(sub, "describe-producers", describe_producers,
                "The producers a partition knows, with their open transaction's start offset.")
    _partition_options(p)
    p.add_argument("--broker-id", type=int, help="ask this broker instead of the leader")
    _json_option(p)
    p = command(sub, "abort", abort, "Abort a hanging transaction on one partition: write an "
                "ABORT marker there (needs the broker's WriteTxnMarkers).")
    _partition_options(p)
    p.add_argument("--start-offset", type=int,
                   help="first offset of the open transaction to abort (found with find-hanging)")
    p.add_argument("--producer-id", type=int, help="instead of --start-offset: the producer ...")
    p.add_argument("--producer-epoch", type=int, help="... its epoch ...")
    p.add_argument("--coordinator-epoch", type=int, help="... and its coordinator epoch")
    p = command(sub, "find-hanging", find_hanging,
                "Open transactions on partitions that their coordinator will never finish.")
    p.add_argument("--topic", "-t", help="search only this topic")
    p.add_argument("--partition", "-p", type=int, help="only this partition (with --topic)")
    p.add_argument("--broker-id", type=int, help="search the partitions of this broker")
    p.add_argument("--max-transaction-timeout", type=int, default=15, metavar="MINUTES",
                   help="older than this counts as hanging [15, the broker's "
                        "transaction.max.timeout.ms]")
    _json_option(p)


def _json_option(p) -> None:
    p.add_argument("--json", dest="json_output", action="store_true", help="one JSON object per row")


def _partition_options(p) -> None:
    p.add_argument("--topic", "-t", required=True)
    p.add_argument("--partition", "-p", type=int, required=True)


# -- the admin client -----------------------------------------------------------


def _admin(bootstrap: str):
    for name in ("kafka", "kafka.conn", "kafka.client"):  # its warnings are not the CLI's output
        logging.getLogger(name).addHandler(logging.NullHandler())
        logging.getLogger(name).propagate = False
    try:
        from kafka.admin import KafkaAdminClient
    except ImportError:
        fail("`strom txn` needs kafka-python >= 3.0 (pip install 'kafka-python>=3.0')")
    from kafka.errors import KafkaError

    try:
        return KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="strom-cli",
                                bootstrap_timeout_ms=5000, request_timeout_ms=15000)
    except KafkaError as e:
        fail(f"cannot reach a Kafka broker at {bootstrap}: {_message(e)}")


def _message(e: Exception) -> str:
    from kafka.errors import UnsupportedVersionError

    if isinstance(e, UnsupportedVersionError):
        return "the broker does not support this request (UNSUPPORTED_VERSION)"
    description = getattr(e, "description", None)
    name = getattr(e, "message", None)
    if description and name:
        return f"{description.rstrip('.')} ({name})"
    return str(e) or type(e).__name__


def _call(what: str, fn, *args, **kwargs):
    from kafka.errors import KafkaError

    try:
        return fn(*args, **kwargs)
    except KafkaError as e:
        fail(f"{what}: {_message(e)}")


def _output(args, headers: list[str], rows: list[list], keys: list[str]) -> None:
    if args.json_output:
        for row in rows:
            print(json.dumps(dict(zip(keys, row))))
    else:
        print_table(headers, [["-" if c is None else c for c in row] for row in rows])


def _now_ms() -> int:
    return int(time.time() * 1000)


# -- commands ---------------------------------------------------------------------


def list_(args) -> None:
    admin = _admin(args.bootstrap)
    try:
        by_broker = _call("list transactions", admin.list_transactions,
                          state_filters=args.state, producer_id_filters=args.producer_id,
                          duration_filter_ms=args.duration_filter)
    finally:
        admin.close()
    rows = sorted([t.transactional_id, coordinator, t.producer_id, _state(t.state)]
                  for coordinator, listings in by_broker.items() for t in listings)
    _output(args, ["transactional id", "coordinator", "producer id", "state"], rows,
            ["transactional_id", "coordinator", "producer_id", "state"])


def describe(args) -> None:
    from kafka.errors import KafkaError, TransactionalIdNotFoundError

    wanted = list(dict.fromkeys(args.transactional_ids + (args.more_ids or [])))
    if not wanted:
        fail("name at least one transactional id")
    admin = _admin(args.bootstrap)
    rows, errors = [], []
    now = _now_ms()
    try:
        for txn_id in wanted:
            try:  # one at a time: kafka-python raises for the whole batch on one unknown id
                d = admin.describe_transactions([txn_id])[txn_id]
            except TransactionalIdNotFoundError:
                errors.append(f"unknown transactional id {txn_id!r}")
                continue
            except KafkaError as e:
                errors.append(f"describe {txn_id!r}: {_message(e)}")
                continue
            started = d.transaction_start_time_ms if d.transaction_start_time_ms >= 0 else None
            partitions = sorted((tp.topic, tp.partition) for tp in d.topic_partitions)
            rows.append([txn_id, d.coordinator_id, d.producer_id, d.producer_epoch, _state(d.state),
                         d.transaction_timeout_ms, started,
                         None if started is None else max(now - started, 0),
                         ",".join(f"{t}-{p}" for t, p in partitions) or None])
    finally:
        admin.close()
    if rows:
        _output(args, ["transactional id", "coordinator", "producer id", "epoch", "state",
                       "timeout ms", "started ms", "duration ms", "partitions"], rows,
                ["transactional_id", "coordinator", "producer_id", "producer_epoch", "state",
                 "transaction_timeout_ms", "transaction_start_time_ms", "duration_ms",
                 "partitions"])
    if errors:
        fail("; ".join(errors))


def _producers(admin, tps: list, broker_id=None) -> dict:
    return _call(f"describe producers of {', '.join(f'{tp.topic}-{tp.partition}' for tp in tps)}",
                 admin.describe_producers, tps, broker_id=broker_id)


def _check_partition(admin, topic: str, partition: int) -> None:
    """A clear error for a typo, before a request that would only say
    UNKNOWN_TOPIC_OR_PARTITION (or wait for metadata that never comes)."""
    partitions = _call(f"describe topic {topic!r}", admin.describe_topics, [topic])
    known = {p["partition_index"] for t in partitions if t.get("error_code", 0) == 0
             for p in t.get("partitions", [])}
    if not known:
        fail(f"unknown topic {topic!r}")
    if partition not in known:
        fail(f"topic {topic!r} has no partition {partition}")


def describe_producers(args) -> None:
    from kafka import TopicPartition

    admin = _admin(args.bootstrap)
    try:
        _check_partition(admin, args.topic, args.partition)
        tp = TopicPartition(args.topic, args.partition)
        state = _producers(admin, [tp], args.broker_id)[tp]
    finally:
        admin.close()
    rows = [[p.producer_id, p.producer_epoch, p.coordinator_epoch, p.last_sequence,
             p.last_timestamp, p.current_transaction_start_offset
             if p.current_transaction_start_offset >= 0 else None]
            for p in sorted(state.active_producers, key=lambda p: p.producer_id)]
    _output(args, ["producer id", "epoch", "coordinator epoch", "last sequence", "last timestamp",
                   "open txn start offset"], rows,
            ["producer_id", "producer_epoch", "coordinator_epoch", "last_sequence",
             "last_timestamp", "current_txn_start_offset"])


def abort(args) -> None:
    from kafka import TopicPartition
    from kafka.admin import AbortTransactionSpec

    if args.start_offset is None and args.producer_id is None:
        fail("name the transaction to abort with --start-offset, or with --producer-id, "
             "--producer-epoch and --coordinator-epoch")
    if args.start_offset is None and (args.producer_epoch is None or args.coordinator_epoch is None):
        fail("--producer-id needs --producer-epoch and --coordinator-epoch")
    tp = TopicPartition(args.topic, args.partition)
    admin = _admin(args.bootstrap)
    try:
        _check_partition(admin, args.topic, args.partition)
        if args.start_offset is not None:
            open_txns = [p for p in _producers(admin, [tp])[tp].active_producers
                         if p.current_transaction_start_offset == args.start_offset]
            if not open_txns:
                fail(f"no open transaction starts at offset {args.start_offset} "
                     f"on {args.topic}-{args.partition}")
            p = open_txns[0]
            producer_id, producer_epoch, coordinator_epoch = (
                p.producer_id, p.producer_epoch, p.coordinator_epoch)
        else:
            producer_id, producer_epoch = args.producer_id, args.producer_epoch
            coordinator_epoch = args.coordinator_epoch
        # As Kafka's tool: a transaction that hung before its first marker has
        # coordinator epoch -1; 0 is at most any epoch a coordinator had.
        spec = AbortTransactionSpec(tp, producer_id, producer_epoch, max(coordinator_epoch, 0))
        _call(f"abort the transaction of producer {producer_id} on {args.topic}-{args.partition}",
              admin.abort_transaction, spec)
    finally:
        admin.close()
    print(f"aborted the transaction of producer {producer_id} (epoch {producer_epoch}) "
          f"on {args.topic}-{args.partition}")


def find_hanging(args) -> None:
    from kafka import TopicPartition
    from kafka.errors import KafkaError, TransactionalIdNotFoundError

    if args.partition is not None and args.topic is None:
        fail("--partition needs --topic")
    if args.topic is None and args.broker_id is None:
        fail("find-hanging needs --topic or --broker-id to limit the search")
    max_age_ms = args.max_transaction_timeout * 60_000
    admin = _admin(args.bootstrap)
    try:
        if args.topic is not None and args.partition is not None:
            _check_partition(admin, args.topic, args.partition)
            tps = [TopicPartition(args.topic, args.partition)]
        else:
            tps = _partitions(admin, args.topic, args.broker_id)
        now = _now_ms()
        candidates = []  # (tp, ProducerState)
        for i in range(0, len(tps), 500):  # bounded requests, as Kafka's tool
            for tp, state in _producers(admin, tps[i:i + 500], args.broker_id).items():
                candidates += [(tp, p) for p in state.active_producers
                               if p.current_transaction_start_offset >= 0
                               and now - p.last_timestamp > max_age_ms]
        hanging = []
        if candidates:
            producer_ids = sorted({p.producer_id for _, p in candidates})
            listed = _call("list transactions", admin.list_transactions,
                           producer_id_filters=producer_ids)
            txn_ids = {t.producer_id: t.transactional_id for ts in listed.values() for t in ts}
            described = {}
            for txn_id in set(txn_ids.values()):
                try:
                    described[txn_id] = admin.describe_transactions([txn_id])[txn_id]
                except TransactionalIdNotFoundError:
                    pass
                except KafkaError as e:
                    fail(f"describe {txn_id!r}: {_message(e)}")
            for tp, p in candidates:
                d = described.get(txn_ids.get(p.producer_id))
                # The coordinator lists the partitions it will still write a
                # marker to; an open transaction anywhere else is hanging.
                if d is None or d.producer_id != p.producer_id or tp not in d.topic_partitions:
                    hanging.append((tp, p))
    finally:
        admin.close()
    rows = [[tp.topic, tp.partition, p.producer_id, p.producer_epoch, p.coordinator_epoch,
             p.current_transaction_start_offset, p.last_timestamp,
             (now - p.last_timestamp) // 60_000]
            for tp, p in sorted(hanging, key=lambda h: (h[0].topic, h[0].partition, h[1].producer_id))]
    _output(args, ["topic", "partition", "producer id", "epoch", "coordinator epoch",
                   "start offset", "last timestamp", "duration min"], rows,
            ["topic", "partition", "producer_id", "producer_epoch", "coordinator_epoch",
             "start_offset", "last_timestamp", "duration_min"])


def _partitions(admin, topic: str | None, broker_id: int | None) -> list:
    """Every partition of `topic` (or of every topic, internal ones too),
    those with a replica on `broker_id` if given."""
    from kafka import TopicPartition

    described = _call("describe topics", admin.describe_topics,
                      [topic] if topic is not None else None)  # None: all, internal ones too
    if topic is not None and not any(t.get("error_code", 0) == 0 for t in described):
        fail(f"unknown topic {topic!r}")
    return [TopicPartition(t["name"], p["partition_index"])
            for t in sorted(described, key=lambda t: t["name"]) if t.get("error_code", 0) == 0
            for p in sorted(t["partitions"], key=lambda p: p["partition_index"])
            if broker_id is None or broker_id in p.get("replica_nodes", [])]


def _state(state) -> str:
    return getattr(state, "value", state)
