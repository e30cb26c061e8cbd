"""A transactional copier, run as its own process (in the style of Kafka's
TransactionalMessageCopier, which kafkatest's transactions_test.py drives):
it reads every partition of an input topic in a consumer group, with
read_committed, and copies each record to the same partition of an output
topic in transactions of `--transaction-size` records, committing the
consumed offsets with send_offsets_to_transaction in the same transaction.

    python -m tests.integration.txn_copier --client confluent --bootstrap H:P \\
        --input in --output out --group g --transactional-id t

The input is static: the copier reads its end offsets once and exits 0
when its committed position has reached them. It prints one line per
commit, `committed <records copied so far>`, then `done`; an error it
cannot recover from is printed as `fatal ...` and exits 3. A test SIGKILLs
it at any moment and starts it again: the new instance's InitProducerId
fences the old one and aborts its open transaction, and the group's
committed offsets say where to go on.

Clients: confluent-kafka (librdkafka), kafka-python, aiokafka.

Diagnosing a stall: SIGUSR1 dumps its stacks; COPIER_DEBUG=<librdkafka
debug contexts> turns on the clients' debug logs (DEBUG logging for
kafka-python and aiokafka); test_txn_copier.py appends every copier line to
the file COPIER_LOG names.
"""

import argparse
import asyncio
import faulthandler
import os
import signal
import sys
import time


def say(*words):
    print(*words, flush=True)


def end_offsets(bootstrap, topic):
    """{partition: high watermark} of the (static) input topic."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "copier-probe"})
    try:
        meta = c.list_topics(topic, timeout=20).topics[topic]
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=20)[1]
                for p in meta.partitions}
    finally:
        c.close()


# -- confluent-kafka -----------------------------------------------------------------

# librdkafka 2.16 re-bootstraps when its only broker is gone, and then waits
# forever on the decommissioned broker handle its coordinator cache still
# holds (send_offsets_to_transaction hung past its timeout after a broker
# restart). A one-broker test loses every broker on each restart.
NO_REBOOTSTRAP = {"metadata.recovery.strategy": "none"}
DEBUG = {"debug": os.environ["COPIER_DEBUG"]} if os.environ.get("COPIER_DEBUG") else {}


def copy_confluent(args, ends):
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

    producer = Producer({
        "bootstrap.servers": args.bootstrap, "transactional.id": args.transactional_id,
        "transaction.timeout.ms": args.transaction_timeout_ms, "linger.ms": 5,
        "reconnect.backoff.max.ms": 500, "retry.backoff.max.ms": 500, **NO_REBOOTSTRAP,
    })
    retrying(lambda: producer.init_transactions(10), "init_transactions")
    revoked = []
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap, "group.id": args.group,
        "group.instance.id": f"{args.group}-copier", "session.timeout.ms": 10000,
        "isolation.level": "read_committed", "enable.auto.commit": False,
        "auto.offset.reset": "earliest", "reconnect.backoff.max.ms": 500,
        "retry.backoff.max.ms": 500, **NO_REBOOTSTRAP, **DEBUG,
    })
    consumer.subscribe([args.input], on_revoke=lambda c, parts: revoked.append(parts))
    in_txn = False
    count = 0  # records in the open transaction

    def rewind():
        """After an abort: back to the committed offsets (what the aborted
        transaction consumed is consumed again)."""
        assigned = consumer.assignment()
        if not assigned:
            return
        for tp in consumer.committed(assigned, timeout=20):
            offset = tp.offset if tp.offset >= 0 else 0
            consumer.seek(TopicPartition(tp.topic, tp.partition, offset))

    def abort():
        nonlocal in_txn, count
        retrying(lambda: producer.abort_transaction(20), "abort_transaction")
        in_txn, count = False, 0
        rewind()

    idle_since = time.monotonic()
    next_done_check = 0.0
    known = {}  # partition -> committed offset, for the progress line
    while True:
        msgs = consumer.consume(args.transaction_size - count, 0.1)
        if msgs:
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since > 2:
            idle_since = time.monotonic()
            say("idle: assignment", [tp.partition for tp in consumer.assignment()], "positions",
                [tp.offset for tp in consumer.position(consumer.assignment())], "in_txn", in_txn,
                "count", count)
        if revoked:
            # A rebalance: the generation the offsets carry is gone; start over.
            revoked.clear()
            known.clear()
            if in_txn:
                abort()
            continue
        opened = bool(msgs) and not in_txn
        for m in msgs:
            if m.error():
                raise KafkaException(m.error())
            if not in_txn:
                producer.begin_transaction()
                in_txn = True
            producer.produce(args.output, key=m.key(), value=m.value(), partition=m.partition())
            count += 1
            producer.poll(0)
        if opened:
            announce_open(producer, args.open_pause_ms)
        assigned = consumer.assignment()
        if assigned and not known:  # where the group's committed offsets stand
            known.update({tp.partition: max(tp.offset, 0)
                          for tp in consumer.committed(assigned, timeout=20)})
        if not in_txn:
            if not msgs and time.monotonic() > next_done_check:
                next_done_check = time.monotonic() + 0.5
                if committed_all(consumer, ends, args.input):
                    say("done")
                    consumer.close()
                    return
            continue
        # Commit a full transaction, or what there is once the input runs dry.
        if count < args.transaction_size and msgs:
            continue
        # librdkafka has no position for a partition it handed nothing from.
        positions = [tp for tp in consumer.position(assigned) if tp.offset >= 0]
        try:
            retrying(lambda: producer.send_offsets_to_transaction(
                positions, consumer.consumer_group_metadata(), 20), "send_offsets_to_transaction")
            retrying(lambda: producer.commit_transaction(20), "commit_transaction")
            in_txn, count = False, 0
            known.update({tp.partition: tp.offset for tp in positions})
            say("committed", sum(known.values()))
        except KafkaException as e:
            err = e.args[0]
            if err.txn_requires_abort():
                say("aborting after", err)
                abort()
            else:
                raise


def announce_open(producer, pause_ms):
    """The open transaction's first records are in the log: a test that
    kills now kills mid-transaction (it waits for this line; the pause,
    the copier's "processing time", gives it the moment to)."""
    producer.flush()
    say("open")
    time.sleep(pause_ms / 1000)


def committed_all(consumer, ends, topic):
    from confluent_kafka import TopicPartition

    got = consumer.committed([TopicPartition(topic, p) for p in ends], timeout=20)
    return all(tp.offset >= ends[tp.partition] for tp in got)


def retrying(call, what, deadline_s=60):
    """Repeat a transactional call while librdkafka says it is retriable
    (the broker restarting, CONCURRENT_TRANSACTIONS ...)."""
    from confluent_kafka import KafkaException

    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return call()
        except KafkaException as e:
            err = e.args[0]
            if not err.retriable() or time.monotonic() > deadline:
                raise
            say("retrying", what, err)


# -- kafka-python ----------------------------------------------------------------------

def copy_kafka_python(args, ends):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.errors import KafkaError
    from kafka.structs import OffsetAndMetadata

    producer = KafkaProducer(bootstrap_servers=args.bootstrap,
                             transactional_id=args.transactional_id,
                             transaction_timeout_ms=args.transaction_timeout_ms, linger_ms=5,
                             reconnect_backoff_max_ms=500)
    producer.init_transactions()
    consumer = KafkaConsumer(bootstrap_servers=args.bootstrap, group_id=args.group,
                             group_instance_id=f"{args.group}-copier",
                             isolation_level="read_committed", enable_auto_commit=False,
                             auto_offset_reset="earliest", session_timeout_ms=10000,
                             reconnect_backoff_max_ms=500)
    consumer.subscribe([args.input])
    parts = [TopicPartition(args.input, p) for p in ends]
    while True:
        batch = []
        deadline = time.monotonic() + 0.5
        while len(batch) < args.transaction_size and time.monotonic() < deadline:
            for msgs in consumer.poll(timeout_ms=100,
                                      max_records=args.transaction_size - len(batch)).values():
                batch += msgs
            if consumer.assignment() and all(consumer.position(tp) >= ends[tp.partition]
                                             for tp in parts if tp in consumer.assignment()):
                break
        assigned = consumer.assignment()
        if not batch:
            if len(assigned) == len(ends) and all(
                    (consumer.committed(tp) or 0) >= ends[tp.partition] for tp in parts):
                say("done")
                consumer.close()
                producer.close()
                return
            continue
        try:
            producer.begin_transaction()
            for m in batch:
                producer.send(args.output, key=m.key, value=m.value, partition=m.partition)
            announce_open(producer, args.open_pause_ms)
            offsets = {tp: OffsetAndMetadata(consumer.position(tp), "", -1) for tp in assigned}
            producer.send_offsets_to_transaction(offsets, consumer.group_metadata())
            producer.commit_transaction()
            say("committed", sum(o.offset for o in offsets.values()))
        except KafkaError as e:
            say("aborting after", repr(e))
            producer.abort_transaction()
            for tp in consumer.assignment():
                committed = consumer.committed(tp)
                consumer.seek(tp, committed if committed is not None else 0)


# -- aiokafka --------------------------------------------------------------------------

def copy_aiokafka(args, ends):
    asyncio.run(_copy_aiokafka(args, ends))


async def _copy_aiokafka(args, ends):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.errors import KafkaError

    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap,
                                transactional_id=args.transactional_id,
                                transaction_timeout_ms=args.transaction_timeout_ms, linger_ms=5)
    await producer.start()
    consumer = AIOKafkaConsumer(args.input, bootstrap_servers=args.bootstrap, group_id=args.group,
                                group_instance_id=f"{args.group}-copier",
                                isolation_level="read_committed", enable_auto_commit=False,
                                auto_offset_reset="earliest", session_timeout_ms=10000)
    await consumer.start()
    parts = [TopicPartition(args.input, p) for p in ends]
    try:
        while True:
            got = await consumer.getmany(timeout_ms=200, max_records=args.transaction_size)
            batch = [m for msgs in got.values() for m in msgs]
            assigned = consumer.assignment()
            if not batch:
                if len(assigned) == len(ends):
                    committed = [await consumer.committed(tp) for tp in parts]
                    if all((c or 0) >= ends[tp.partition] for c, tp in zip(committed, parts)):
                        say("done")
                        return
                continue
            try:
                async with producer.transaction():
                    for m in batch:
                        await producer.send(args.output, key=m.key, value=m.value,
                                            partition=m.partition)
                    await producer.flush()
                    say("open")
                    await asyncio.sleep(args.open_pause_ms / 1000)
                    offsets = {tp: await consumer.position(tp) for tp in assigned}
                    await producer.send_offsets_to_transaction(offsets, args.group)
                say("committed", sum(offsets.values()))
            except KafkaError as e:  # the context manager aborted the transaction
                say("aborting after", repr(e))
                for tp in consumer.assignment():
                    committed = await consumer.committed(tp)
                    consumer.seek(tp, committed if committed is not None else 0)
    finally:
        await consumer.stop()
        await producer.stop()


COPIERS = {"confluent": copy_confluent, "kafka-python": copy_kafka_python,
           "aiokafka": copy_aiokafka}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--client", choices=sorted(COPIERS), default="confluent")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--transactional-id", required=True)
    p.add_argument("--transaction-size", type=int, default=300)
    p.add_argument("--transaction-timeout-ms", type=int, default=20000)
    p.add_argument("--open-pause-ms", type=int, default=0,
                   help="pause after a transaction's first records are written")
    args = p.parse_args(argv)
    faulthandler.register(signal.SIGUSR1)  # the test asks where a stalled copier is
    if DEBUG and args.client != "confluent":
        import logging
        logging.basicConfig(level=logging.DEBUG, stream=sys.stdout,
                            format="%(asctime)s %(name)s %(message)s")
    try:
        COPIERS[args.client](args, end_offsets(args.bootstrap, args.input))
    except Exception as e:  # the test prints this line when the copier exits early
        say("fatal", repr(e))
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
