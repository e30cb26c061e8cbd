"""File descriptors: the soft limit is raised at start-up, and a create
that would not fit is refused whole, leaving the broker serving (item 3)."""

import os
import resource

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

from tests.integration import clients


def limit(soft, hard):
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def create(bs, name, partitions):
    admin = AdminClient({"bootstrap.servers": bs})
    try:
        admin.create_topics([NewTopic(name, partitions, 1)], operation_timeout=30)[name].result(60)
    except KafkaException as e:
        return e.args[0]
    return None


def test_a_create_that_does_not_fit_is_refused_whole(broker_process):
    broker = broker_process()
    broker.preexec_fn = limit(512, 512)
    broker.start()
    bs = broker.bootstrap_servers
    err = create(bs, "wide", 400)
    assert err is not None and err.name() == "INVALID_PARTITIONS", err
    assert "file descriptors" in err.str() and "ulimit -n" in err.str()
    err = create(bs, "huge", 100_000)
    assert err is not None and "more than the 10000" in err.str()
    assert not [d for d in os.listdir(broker.data_dir) if d.startswith(("wide-", "huge-"))]
    assert create(bs, "fits", 100) is None
    admin = AdminClient({"bootstrap.servers": bs})
    f = admin.create_partitions([NewPartitions("fits", 400)])["fits"]
    try:
        f.result(30)
        raise AssertionError("400 partitions cannot fit in 512 descriptors")
    except KafkaException as e:
        assert e.args[0].name() == "INVALID_PARTITIONS"
    assert sorted(d for d in os.listdir(broker.data_dir) if d.startswith("fits-")) == sorted(
        f"fits-{p}" for p in range(100))
    clients.produce_confluent(bs, "fits", [(None, b"still serving", None)], "all", "none")
    got = clients.consume_confluent(bs, "fits", 1)
    assert [v for _, _, v, _ in got] == [b"still serving"]
    assert broker.stop() == 0
    restarted = broker.start()  # the refused creates left nothing to clean
    assert "removed" not in "".join(restarted.output)
    assert broker.stop() == 0


def test_the_soft_limit_is_raised_to_the_hard_one(broker_process):
    broker = broker_process()
    broker.preexec_fn = limit(128, 512)
    broker.start()
    assert "open files limit 512" in "".join(broker.output)
    assert create(broker.bootstrap_servers, "wide", 100) is None  # no room under 128
    assert broker.stop() == 0


def test_auto_create_stops_at_the_budget_and_the_broker_keeps_serving(broker_process):
    from confluent_kafka import Producer

    broker = broker_process()
    broker.preexec_fn = limit(160, 160)
    broker.start()
    p = Producer({"bootstrap.servers": broker.bootstrap_servers, "allow.auto.create.topics": True})
    errors = {}
    for i in range(80):
        name = f"auto-{i}"
        md = p.list_topics(topic=name, timeout=10).topics[name]
        if md.error is not None:
            errors[name] = md.error
    assert errors, "160 descriptors cannot hold 80 partitions"
    assert all(e.name() == "INVALID_PARTITIONS" for e in errors.values()), errors
    created = {d.rsplit("-", 1)[0] for d in os.listdir(broker.data_dir) if d.startswith("auto-")}
    assert created and not created & set(errors)
    clients.produce_confluent(broker.bootstrap_servers, "auto-0", [(None, b"ok", None)], "all", "none")
    assert [v for _, _, v, _ in clients.consume_confluent(broker.bootstrap_servers, "auto-0", 1)] == [b"ok"]
    assert broker.stop() == 0
