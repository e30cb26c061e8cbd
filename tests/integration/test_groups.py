"""Consumer groups with real clients: partition sharing and rebalances,
fan-out, commits that survive restarts, mixed clients, static membership."""

import asyncio
import threading
import time
from collections import Counter

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from strom.embedded import EmbeddedBroker

from .conftest import wait_for


def create(bs, name, partitions):
    admin = AdminClient({"bootstrap.servers": bs})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(10)


def fill(bs, topic, n, partitions, start=0):
    p = Producer({"bootstrap.servers": bs, "acks": "all", "linger.ms": 2})
    for i in range(start, start + n):
        p.produce(topic, key=b"%d" % i, value=b"%d" % i, partition=i % partitions)
    assert p.flush(30) == 0


class Member:
    """A confluent-kafka consumer polled on its own thread, committing after
    processing, like a service instance."""

    def __init__(self, bs, group, topic, **extra):
        timeouts = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
        if extra.get("group.protocol") == "consumer":
            timeouts = {}  # KIP-848: the broker sets them
        self.consumer = Consumer({"bootstrap.servers": bs, "group.id": group,
                                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                                  **timeouts, **extra})
        self.consumer.subscribe([topic])
        self.seen: list[bytes] = []
        self.assignment: set[int] = set()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop.is_set():
            msg = self.consumer.poll(0.1)
            self.assignment = {tp.partition for tp in self.consumer.assignment()}
            if msg is None or msg.error():
                continue
            self.seen.append(msg.value())
            self.consumer.commit(msg, asynchronous=False)
        self.consumer.close()

    def stop(self):
        self._stop.set()
        self.thread.join(30)


def test_three_members_share_six_partitions_and_rebalance(broker):
    bs = broker.bootstrap_servers
    create(bs, "orders", 6)
    fill(bs, "orders", 600, 6)
    members = [Member(bs, "billing", "orders") for _ in range(3)]
    try:
        wait_for(lambda: sorted(len(m.assignment) for m in members) == [2, 2, 2],
                 message="two partitions each")
        wait_for(lambda: sum(len(m.seen) for m in members) >= 600, message="600 records")
        fourth = Member(bs, "billing", "orders")
        members.append(fourth)
        wait_for(lambda: sorted(len(m.assignment) for m in members) == [1, 1, 2, 2],
                 message="rebalance to four members")
        first = members.pop(0)
        first.stop()
        wait_for(lambda: sorted(len(m.assignment) for m in members) == [2, 2, 2],
                 message="rebalance after a member left")
        fill(bs, "orders", 60, 6, start=600)
        wait_for(lambda: len({v for m in members for v in m.seen} | set(first.seen)) == 660,
                 message="new records")
    finally:
        for m in members:
            m.stop()
    every = Counter(v for m in members + [first] for v in m.seen)
    assert set(every) == {b"%d" % i for i in range(660)}  # at least once


def test_fan_out_three_groups_each_get_everything(broker):
    bs = broker.bootstrap_servers
    create(bs, "events", 3)
    fill(bs, "events", 300, 3)
    groups = [Member(bs, g, "events") for g in ("payment", "inventory", "notification")]
    try:
        wait_for(lambda: all(len(m.seen) >= 300 for m in groups), message="every group reads all")
    finally:
        for m in groups:
            m.stop()
    for m in groups:
        assert sorted(m.seen, key=int) == [b"%d" % i for i in range(300)]  # exactly once each


def test_commits_survive_restart_and_consumer_resumes(tmp_path):
    data = str(tmp_path / "d")
    with EmbeddedBroker(data_dir=data, storage="disk") as b:
        create(b.bootstrap_servers, "ledger", 1)
        fill(b.bootstrap_servers, "ledger", 100, 1)
        c = Consumer({"bootstrap.servers": b.bootstrap_servers, "group.id": "writer",
                      "auto.offset.reset": "earliest", "enable.auto.commit": False})
        c.subscribe(["ledger"])
        got = []
        while len(got) < 40:
            m = c.poll(0.2)
            if m and not m.error():
                got.append(m)
        c.commit(got[-1], asynchronous=False)
        c.close()
    with EmbeddedBroker(data_dir=data, storage="disk") as b:
        admin = AdminClient({"bootstrap.servers": b.bootstrap_servers})
        listed = admin.list_consumer_groups().result(10)
        assert "writer" in {g.group_id for g in listed.valid}
        c = Consumer({"bootstrap.servers": b.bootstrap_servers, "group.id": "writer",
                      "auto.offset.reset": "earliest"})
        c.subscribe(["ledger"])
        first = wait_for(lambda: next((m for m in [c.poll(0.2)] if m and not m.error()), None),
                         message="first record after restart")
        assert first.offset() == 40  # right after the last commit
        c.close()


def test_lone_consumer_gets_records_quickly(broker):
    bs = broker.bootstrap_servers
    create(bs, "quick", 1)
    fill(bs, "quick", 1, 1)
    c = Consumer({"bootstrap.servers": bs, "group.id": "q", "auto.offset.reset": "earliest"})
    started = time.monotonic()
    c.subscribe(["quick"])
    wait_for(lambda: (lambda m: m is not None and not m.error())(c.poll(0.1)), message="record")
    assert time.monotonic() - started < 2.0  # no initial rebalance delay for a lone member
    c.close()


def test_static_member_restart_causes_no_rebalance(broker):
    bs = broker.bootstrap_servers
    create(bs, "static", 4)
    a = Member(bs, "st", "static", **{"group.instance.id": "a", "session.timeout.ms": 10000})
    b = Member(bs, "st", "static", **{"group.instance.id": "b", "session.timeout.ms": 10000})
    try:
        wait_for(lambda: sorted(len(m.assignment) for m in (a, b)) == [2, 2], message="2 + 2")
        generation = broker.broker.groups.groups["st"].generation
        before = set(a.assignment)
        # A static member's close does not leave the group; restart it at once.
        a.stop()
        a = Member(bs, "st", "static", **{"group.instance.id": "a", "session.timeout.ms": 10000})
        wait_for(lambda: a.assignment == before, message="same partitions back")
        assert broker.broker.groups.groups["st"].generation == generation
    finally:
        a.stop()
        b.stop()


def test_kafka_python_and_aiokafka_groups(broker):
    from kafka import KafkaConsumer

    bs = broker.bootstrap_servers
    create(bs, "py", 4)
    fill(bs, "py", 200, 4)
    c = KafkaConsumer("py", bootstrap_servers=bs, group_id="kp", auto_offset_reset="earliest",
                      enable_auto_commit=False)
    wait_for(lambda: c.partitions_for_topic("py"), message="kafka-python metadata")  # see above
    seen = []
    deadline = time.monotonic() + 30
    while len(seen) < 200 and time.monotonic() < deadline:
        for msgs in c.poll(timeout_ms=200).values():
            seen += [m.value for m in msgs]
    c.commit()
    c.close()
    assert sorted(seen, key=int) == [b"%d" % i for i in range(200)]

    async def aio():
        from aiokafka import AIOKafkaConsumer

        ac = AIOKafkaConsumer("py", bootstrap_servers=bs, group_id="aio",
                              auto_offset_reset="earliest", enable_auto_commit=False)
        await ac.start()
        got = []
        try:
            end = time.monotonic() + 30
            while len(got) < 200 and time.monotonic() < end:
                for msgs in (await ac.getmany(timeout_ms=200)).values():
                    got += [m.value for m in msgs]
            await ac.commit()
        finally:
            await ac.stop()
        return got

    got = asyncio.run(aio())
    assert sorted(got, key=int) == [b"%d" % i for i in range(200)]
    committed = broker.broker.groups.committed("aio")
    assert sum(v["offset"] for v in committed.values()) == 200


def test_mixed_clients_in_one_group_with_range_assignor(broker):
    from kafka import KafkaConsumer

    bs = broker.bootstrap_servers
    create(bs, "mixed", 6)
    confluent = Member(bs, "mix", "mixed", **{"partition.assignment.strategy": "range"})
    kp = KafkaConsumer("mixed", bootstrap_servers=bs, group_id="mix", auto_offset_reset="earliest",
                       session_timeout_ms=6000, heartbeat_interval_ms=500)
    wait_for(lambda: kp.partitions_for_topic("mixed"), message="kafka-python metadata")
    stop = threading.Event()

    def poll_kp():
        while not stop.is_set():
            kp.poll(timeout_ms=100)

    t = threading.Thread(target=poll_kp, daemon=True)
    t.start()
    try:
        wait_for(lambda: len(confluent.assignment) == 3 and len(kp.assignment()) == 3,
                 timeout=30, message="3 + 3 across two client libraries")
        assert confluent.assignment | {tp.partition for tp in kp.assignment()} == set(range(6))
    finally:
        stop.set()
        t.join(10)
        kp.close()
        confluent.stop()


def test_bad_commits_get_errors_and_change_nothing(broker):
    from kio.schema.errors import ErrorCode

    coordinator = broker.broker.groups
    create(broker.bootstrap_servers, "bc", 1)
    m = Member(broker.bootstrap_servers, "bcg", "bc")
    try:
        wait_for(lambda: m.assignment == {0}, message="assignment")
        gen = coordinator.groups["bcg"].generation
        member_id = next(iter(coordinator.groups["bcg"].members))
        assert coordinator.check_commit("bcg", gen, "nobody", None) == ErrorCode.unknown_member_id
        assert coordinator.check_commit("bcg", gen + 5, member_id, None) == ErrorCode.illegal_generation
        assert coordinator.check_commit("bcg", -1, "", None) == ErrorCode.unknown_member_id
        assert coordinator.committed("bcg") == {}
    finally:
        m.stop()


MEMBER_SCRIPT = """
import sys
from confluent_kafka import Consumer
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2],
              "auto.offset.reset": "earliest", "enable.auto.commit": False,
              "session.timeout.ms": 3000, "heartbeat.interval.ms": 300})
c.subscribe([sys.argv[3]])
while True:
    m = c.poll(0.1)
    if m is not None and not m.error():
        print(m.value().decode(), flush=True)
        c.commit(m, asynchronous=False)
"""


def test_sigkilled_member_partitions_move_after_session_timeout(broker, tmp_path):
    import subprocess
    import sys

    bs = broker.bootstrap_servers
    create(bs, "work", 4)
    fill(bs, "work", 400, 4)
    script = tmp_path / "member.py"
    script.write_text(MEMBER_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), bs, "workers", "work"],
                            stdout=subprocess.PIPE, text=True)
    survivor = Member(bs, "workers", "work")
    try:
        wait_for(lambda: len(survivor.assignment) == 2, timeout=30, message="2 + 2 split")
        killed_at = time.monotonic()
        proc.kill()  # SIGKILL: no LeaveGroup, only the session timeout tells
        proc.wait(10)
        wait_for(lambda: len(survivor.assignment) == 4, timeout=30, message="all 4 partitions")
        moved_after = time.monotonic() - killed_at
        fill(bs, "work", 40, 4, start=400)
        killed_seen = set(proc.stdout.read().split())
        wait_for(lambda: {v.decode() for v in survivor.seen} | killed_seen >= {str(i) for i in range(440)},
                 timeout=30, message="every record processed at least once")
    finally:
        survivor.stop()
        if proc.poll() is None:
            proc.kill()
    assert 2.5 < moved_after < 15  # the 3 s session timeout, not before


def test_kip848_consumer_protocol_join_rebalance_commit(broker):
    bs = broker.bootstrap_servers
    create(bs, "k848", 6)
    fill(bs, "k848", 600, 6)
    new = {"group.protocol": "consumer"}
    a = Member(bs, "g848", "k848", **new)
    b = None
    try:
        wait_for(lambda: len(a.assignment) == 6, message="a lone member owns all 6")
        b = Member(bs, "g848", "k848", **new)
        wait_for(lambda: len(a.assignment) == 3 and len(b.assignment) == 3, message="3 + 3")
        assert not a.assignment & b.assignment  # never owned twice
        wait_for(lambda: len({v for m in (a, b) for v in m.seen}) == 600, message="all records")
        group = broker.broker.groups.consumer_groups.groups["g848"]
        assert group.state == "Stable" and group.assignor == "uniform"
        b.stop()
        wait_for(lambda: len(a.assignment) == 6, message="a owns all 6 again")
        committed = broker.broker.groups.committed("g848")
        assert sum(v["offset"] for v in committed.values()) == 600  # every commit landed
    finally:
        a.stop()
        if b:
            b.stop()


def _kip848_scale_out(tmp_path, members: int, partitions: int, heartbeat_ms: int = 250) -> float:
    """`members` consumer-protocol members share `partitions`, then one more
    joins: seconds until every member holds partitions (and together they
    hold each partition once)."""
    with EmbeddedBroker(data_dir=str(tmp_path / "data"), storage="disk",
                        **{"group.consumer.heartbeat.interval.ms": heartbeat_ms}) as broker:
        bs = broker.bootstrap_servers
        create(bs, "scale", partitions)
        new = {"group.protocol": "consumer"}
        group = [Member(bs, "gscale", "scale", **new) for _ in range(members)]
        def settled():
            sizes = [len(m.assignment) for m in group]
            return (sum(sizes) == partitions and max(sizes) - min(sizes) <= 1
                    and broker.broker.groups.consumer_groups.groups["gscale"].state == "Stable")

        try:
            wait_for(settled, message=f"{members} members share {partitions} partitions")
            before = [set(m.assignment) for m in group]
            started = time.monotonic()
            group.append(Member(bs, "gscale", "scale", **new))
            wait_for(lambda: all(m.assignment for m in group), timeout=30,
                     message="the newcomer holds partitions")
            took = time.monotonic() - started
            wait_for(settled, message="the group settles")
            held = [p for m in group for p in m.assignment]
            assert sorted(held) == list(range(partitions))  # each partition once
            # Sticky: the old members gave up only what the newcomer took.
            assert sum(len(b - m.assignment) for b, m in zip(before, group)) == len(group[-1].assignment)
            return took
        finally:
            for m in group:
                m.stop()


def test_kip848_third_member_gets_partitions_from_two(tmp_path):
    # Today the third member of [0, 1] + [2, 3] holds nothing, for good.
    took = _kip848_scale_out(tmp_path, 2, 4)
    assert took < 3.0, f"{took:.1f} s: more than a few 250 ms heartbeats"


def test_kip848_eleventh_member_gets_partitions_from_ten(tmp_path):
    took = _kip848_scale_out(tmp_path, 10, 50)
    print(f"11th member of a KIP-848 group on 50 partitions held partitions after {took:.2f} s")
    assert took < 5.0, f"{took:.1f} s: more than a few 250 ms heartbeats"


def test_kip848_static_member_restart_moves_no_partition(tmp_path):
    with EmbeddedBroker(data_dir=str(tmp_path / "data"), storage="disk",
                        **{"group.consumer.heartbeat.interval.ms": 250}) as broker:
        bs = broker.bootstrap_servers
        create(bs, "st", 6)
        static = [{"group.protocol": "consumer", "group.instance.id": f"i{i}"} for i in range(3)]
        members = [Member(bs, "gst", "st", **s) for s in static]
        group = broker.broker.groups.consumer_groups.groups
        try:
            wait_for(lambda: sorted(len(m.assignment) for m in members) == [2, 2, 2]
                     and group["gst"].state == "Stable", message="three static members share six")
            held = [set(m.assignment) for m in members]
            members[0].stop()  # close() sends the static leave (epoch -2)
            left_at = time.monotonic()
            # Three heartbeats of each of the others: nobody takes its partitions.
            wait_for(lambda: all(m.last_heartbeat > left_at + 0.75
                                 for m in group["gst"].members.values() if m.instance_id != "i0"),
                     message="three more heartbeats from the others")
            assert [set(m.assignment) for m in members[1:]] == held[1:]
            members[0] = Member(bs, "gst", "st", **static[0])  # the restart
            wait_for(lambda: members[0].assignment, message="the restarted member holds partitions")
            assert [set(m.assignment) for m in members] == held
        finally:
            for m in members:
                m.stop()


def _kafka_python_member(bs, group, topic, seen, stop):
    from kafka import KafkaConsumer

    c = KafkaConsumer(topic, bootstrap_servers=bs, group_id=group, auto_offset_reset="earliest",
                      enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=300)
    # kafka-python's leader assigns from its own metadata: make sure it has
    # the new topic's partitions first, or it hands out nothing (a client
    # race, the same with Kafka).
    wait_for(lambda: c.partitions_for_topic(topic), message=f"kafka-python metadata for {topic}")
    state = {"assignment": set()}

    def run():
        while not stop.is_set():
            for msgs in c.poll(timeout_ms=100).values():
                seen.extend(m.value for m in msgs)
                c.commit()
            state["assignment"] = {tp.partition for tp in c.assignment()}
        c.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return state, t


def test_kafka_python_members_share_and_rebalance(broker):
    bs = broker.bootstrap_servers
    create(bs, "kp4", 4)
    fill(bs, "kp4", 400, 4)
    seen_a, seen_b = [], []
    stop_a, stop_b = threading.Event(), threading.Event()
    a, ta = _kafka_python_member(bs, "kpg", "kp4", seen_a, stop_a)
    b, tb = _kafka_python_member(bs, "kpg", "kp4", seen_b, stop_b)
    try:
        wait_for(lambda: len(a["assignment"]) == 2 and len(b["assignment"]) == 2, timeout=30,
                 message="2 + 2 with kafka-python")
        wait_for(lambda: len(seen_a) + len(seen_b) >= 400, timeout=30, message="all records")
        stop_b.set()
        tb.join(10)
        wait_for(lambda: len(a["assignment"]) == 4, timeout=30, message="survivor takes all 4")
        fill(bs, "kp4", 40, 4, start=400)
        wait_for(lambda: len(seen_a) + len(seen_b) >= 440, timeout=30, message="new records")
    finally:
        stop_a.set()
        stop_b.set()
        ta.join(10)
    # nothing crashed and every batch was committed after processing: exactly once
    assert sorted(seen_a + seen_b, key=int) == [b"%d" % i for i in range(440)]


def test_aiokafka_members_share_and_rebalance(broker):
    from aiokafka import AIOKafkaConsumer

    bs = broker.bootstrap_servers
    create(bs, "aio4", 4)
    fill(bs, "aio4", 400, 4)

    async def run():
        seen = []

        async def member(stop_after=None):
            c = AIOKafkaConsumer("aio4", bootstrap_servers=bs, group_id="aiog",
                                 auto_offset_reset="earliest", enable_auto_commit=False,
                                 session_timeout_ms=6000, heartbeat_interval_ms=300)
            await c.start()
            try:
                while True:
                    for msgs in (await c.getmany(timeout_ms=100)).values():
                        seen.extend(m.value for m in msgs)
                        await c.commit()
                    yield {tp.partition for tp in c.assignment()}
            finally:
                await c.stop()

        ma, mb = member(), member()
        sa = sb = set()
        deadline = time.monotonic() + 30
        while not (len(sa) == 2 and len(sb) == 2) and time.monotonic() < deadline:
            sa, sb = await ma.__anext__(), await mb.__anext__()
        assert len(sa) == 2 and len(sb) == 2, (sa, sb)
        await mb.aclose()  # leaves the group
        deadline = time.monotonic() + 30
        while len(sa) < 4 and time.monotonic() < deadline:
            sa = await ma.__anext__()
        assert sa == {0, 1, 2, 3}
        while len(seen) < 400 and time.monotonic() < deadline + 30:
            await ma.__anext__()
        await ma.aclose()
        return seen

    seen = asyncio.run(run())
    assert sorted(seen, key=int) == [b"%d" % i for i in range(400)]


def test_offsets_expire_for_empty_groups_and_topic_stays_compact(broker):
    coordinator = broker.broker.groups
    create(broker.bootstrap_servers, "exp", 1)

    async def scenario():
        for i in range(300):
            await coordinator.commit("old-group", [("exp", 0, i, -1, "")])
        await coordinator.commit("other", [("exp", 0, 5, -1, "")])
        assert await coordinator.expire_offsets() == 0  # fresh commits stay
        far_future = int(time.time() * 1000) + coordinator.offsets_retention_ms + 1000
        return await coordinator.expire_offsets(now_ms=far_future)

    future = asyncio.run_coroutine_threadsafe(scenario(), broker._loop)
    assert future.result(30) == 2
    assert coordinator.committed("old-group") == {}
    plog = broker.broker.logs.get_log("__consumer_offsets", 0)
    assert plog.log_end_offset >= 302
    plog.roll()
    from strom.storage import cleaner

    cleaner.clean(plog, int(time.time() * 1000) + 1000)
    live = 0
    from strom.records.batch import batch_records, iter_batches

    data = plog.read(plog.log_start_offset, 1 << 24)
    for pos, _ in iter_batches(data):
        live += len(batch_records(data, pos))
    assert live <= 4  # one record per key survives compaction (tombstones for a day)
