"""KIP-848 reconciliation, driven heartbeat by heartbeat: a partition moves
to its new owner only after the old owner has acknowledged revoking it, and
members take the new epoch once they hold nothing that is someone else's."""

import time

from strom.coordinator.consumer_group import ConsumerGroups


class Client:
    """What a consumer sends: its epoch, and what it owns after each change."""

    def __init__(self, groups: ConsumerGroups, rebalance_timeout_ms: int = 1000,
                 instance_id: str | None = None):
        self.groups, self.member_id, self.epoch, self.owned = groups, "", 0, None
        self.rebalance_timeout_ms, self.instance_id = rebalance_timeout_ms, instance_id

    def heartbeat(self, ack: bool = True) -> dict:
        r = self.groups.heartbeat("g", self.member_id, self.epoch, self.instance_id, None,
                                  self.rebalance_timeout_ms,
                                  ["t"] if self.epoch == 0 else None, None,
                                  self.owned if ack else None, "client", "host")
        assert r["error_code"] == 0, r
        self.member_id, self.epoch = r["member_id"], r["member_epoch"]
        if r["assignment"] is not None:
            self.owned = {t: set(ps) for t, ps in r["assignment"].items()}
        return r

    def holds(self) -> set[int]:
        return set((self.owned or {}).get("t", ()))


def no_partition_owned_twice(groups: ConsumerGroups) -> None:
    seen = set()
    for m in groups.groups["g"].members.values():
        assert not (m.owns() & seen), "a partition given to a member before its owner let go"
        seen |= m.owns()


def test_a_newcomer_waits_for_the_revocation_then_gets_its_share():
    groups = ConsumerGroups(lambda names: {"t": 4})
    a, b = Client(groups), Client(groups)
    a.heartbeat()
    assert a.holds() == {0, 1, 2, 3}
    b.heartbeat()  # joins: its share is still a's
    assert b.holds() == set()
    no_partition_owned_twice(groups)
    epoch_before = a.epoch
    a.heartbeat()  # told to revoke two
    assert len(a.holds()) == 2 and a.epoch == epoch_before  # keeps its epoch until it acks
    b.heartbeat()
    assert b.holds() == set()  # a has not acknowledged yet
    no_partition_owned_twice(groups)
    a.heartbeat(ack=True)  # reports the smaller assignment
    assert a.epoch == groups.groups["g"].assignment_epoch
    b.heartbeat()
    assert len(b.holds()) == 2 and not a.holds() & b.holds()

    c = Client(groups)  # the case: [0, 1] + [2, 3], then a third
    c.heartbeat()
    for _ in range(3):
        for client in (a, b, c):
            client.heartbeat()
            no_partition_owned_twice(groups)
    assert sorted(len(x.holds()) for x in (a, b, c)) == [1, 1, 2]
    assert a.holds() | b.holds() | c.holds() == {0, 1, 2, 3}
    group = groups.groups["g"]
    assert group.state == "Stable"
    assert {m.member_epoch for m in group.members.values()} == {group.assignment_epoch}


def test_a_member_that_never_acknowledges_keeps_the_partitions_from_the_newcomer():
    groups = ConsumerGroups(lambda names: {"t": 2})
    a, b = Client(groups), Client(groups)
    a.heartbeat()
    b.heartbeat()
    for _ in range(3):
        a.heartbeat(ack=False)  # revocation told, never confirmed
        b.heartbeat()
        no_partition_owned_twice(groups)
    assert b.holds() == set()


def test_a_member_that_does_not_revoke_within_its_rebalance_timeout_is_removed():
    groups = ConsumerGroups(lambda names: {"t": 2})
    a, b = Client(groups, rebalance_timeout_ms=50), Client(groups)
    a.heartbeat()
    b.heartbeat()
    a.heartbeat(ack=False)  # told to revoke one; never does
    assert groups.expire() == []
    deadline = time.monotonic() + 5
    while not (gone := groups.expire()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [(g, m) for g, m, _ in gone] == [("g", a.member_id)]
    b.heartbeat()
    assert b.holds() == {0, 1}


def settle(groups, clients, rounds=4):
    for _ in range(rounds):
        for client in clients:
            client.heartbeat()
            no_partition_owned_twice(groups)


def test_a_static_member_restart_moves_no_partition():
    groups = ConsumerGroups(lambda names: {"t": 5}, session_timeout_ms=60_000)
    a, b, c = (Client(groups, instance_id=i) for i in ("ia", "ib", "ic"))
    for client in (a, b, c):
        client.heartbeat()
        settle(groups, [a, b, c])
    held = {x.instance_id: x.holds() for x in (a, b, c)}
    assert sorted(len(h) for h in held.values()) == [1, 2, 2]
    a.epoch = -2  # a static leave: the client restarts
    a.heartbeat()
    settle(groups, [b, c])
    assert (b.holds(), c.holds()) == (held["ib"], held["ic"])  # a's partitions wait for it
    restarted = Client(groups, instance_id="ia")
    restarted.heartbeat()
    settle(groups, [restarted, b, c])
    assert restarted.member_id != a.member_id
    assert restarted.holds() == held["ia"]
    assert (b.holds(), c.holds()) == (held["ib"], held["ic"])
    assert groups.groups["g"].state == "Stable"
