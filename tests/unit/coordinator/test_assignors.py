"""The KIP-848 server-side assignors, checked as Kafka's group coordinator
tests check theirs: every partition owned once, balanced, and sticky as
far as balance allows (so a newcomer gets its share and nothing else
moves)."""

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from strom.coordinator.assignors import assign


@dataclass
class M:
    subscribed: list[str]
    target: dict[str, set[int]] = field(default_factory=dict)
    instance_id: str | None = None


def flat(assignment: dict[str, set[int]]) -> set[tuple[str, int]]:
    return {(t, p) for t, ps in assignment.items() for p in ps}


def check_partition(out, members, partitions):
    owned = [(m, tp) for m, a in out.items() for tp in flat(a)]
    tps = [tp for _, tp in owned]
    assert len(tps) == len(set(tps)), "a partition owned twice"
    wanted = {(t, p) for t, n in partitions.items()
              if any(t in mem.subscribed for mem in members.values()) for p in range(n)}
    assert set(tps) == wanted
    for m, (t, _) in owned:
        assert t in members[m].subscribed


def test_a_newcomer_gets_a_share_from_members_within_the_old_quota():
    # The case: [0, 1] and [2, 3] held, a third member joins.
    members = {"a": M(["t"], {"t": {0, 1}}), "b": M(["t"], {"t": {2, 3}}), "c": M(["t"])}
    out = assign("uniform", members, {"t": 4})
    check_partition(out, members, {"t": 4})
    assert sorted(len(flat(a)) for a in out.values()) == [1, 1, 2]
    assert out["c"]["t"] and flat(out["a"]) | flat(out["b"]) <= {("t", p) for p in range(4)}
    assert flat(out["a"]) <= {("t", 0), ("t", 1)} and flat(out["b"]) <= {("t", 2), ("t", 3)}


def test_an_eleventh_member_gets_four_of_fifty():
    members = {f"m{i:02}": M(["t"], {"t": set(range(5 * i, 5 * i + 5))}) for i in range(10)}
    members["new"] = M(["t"])
    out = assign("uniform", members, {"t": 50})
    check_partition(out, members, {"t": 50})
    assert len(flat(out["new"])) == 4
    moved = sum(len(members[m].target["t"] - out[m].get("t", set())) for m in members if m != "new")
    assert moved == 4  # only what the newcomer needs


def test_range_is_per_topic_and_static_members_first():
    members = {m: M(["t", "u"]) for m in ("m1", "m2", "m3")}
    out = assign("range", members, {"t": 4, "u": 2})
    check_partition(out, members, {"t": 4, "u": 2})
    assert [sorted(out[m].get("t", ())) for m in ("m1", "m2", "m3")] == [[0, 1], [2], [3]]
    assert [sorted(out[m].get("u", ())) for m in ("m1", "m2", "m3")] == [[0], [1], []]
    members["m3"].instance_id = "i0"  # sorts before the dynamic members, as Kafka's
    out = assign("range", members, {"t": 4, "u": 2})
    assert sorted(out["m3"]["t"]) == [0, 1]


@st.composite
def groups(draw, homogeneous: bool):
    topics = draw(st.dictionaries(st.sampled_from("abcd"), st.integers(1, 12), min_size=1))
    names = sorted(topics)
    n = draw(st.integers(1, 9))
    members = {}
    for i in range(n):
        subscribed = names if homogeneous else draw(
            st.lists(st.sampled_from(names + ["missing"]), min_size=1, unique=True))
        members[f"m{i}"] = M(list(subscribed))
    # A previous target from an arbitrary earlier state: any partition may
    # have been any member's, including topics it no longer subscribes to
    # and partitions beyond today's count.
    for t, count in topics.items():
        for p in range(count + draw(st.integers(0, 2))):
            owner = draw(st.sampled_from([None, *members]))
            if owner is not None:
                members[owner].target.setdefault(t, set()).add(p)
    return members, topics


@settings(max_examples=100, deadline=None)
@given(groups(homogeneous=True))
def test_uniform_homogeneous_is_balanced_and_sticky(group):
    members, partitions = group
    out = assign("uniform", members, partitions)
    check_partition(out, members, partitions)
    sizes = [len(flat(a)) for a in out.values()]
    assert max(sizes) - min(sizes) <= 1
    total = sum(partitions.values())
    minimum, extra = divmod(total, len(members))
    valid = {m: {(t, p) for t, p in flat(mem.target) if p < partitions.get(t, 0)}
             for m, mem in members.items()}
    kept = {m: len(valid[m] & flat(out[m])) for m in members}
    for m in members:
        # Nobody gains new partitions while losing its own (no churn), and
        # everyone keeps its previous partitions up to the minimum quota.
        assert valid[m] <= flat(out[m]) or flat(out[m]) <= valid[m]
        assert kept[m] >= min(len(valid[m]), minimum)
    # As many stay as balance allows: the extra slots went to the largest holders.
    over = sorted((len(v) - minimum for v in valid.values() if len(v) > minimum), reverse=True)
    best = sum(min(len(v), minimum) for v in valid.values()) + min(extra, len(over))
    assert sum(kept.values()) == best


@settings(max_examples=100, deadline=None)
@given(groups(homogeneous=False))
def test_uniform_heterogeneous_is_a_valid_locally_balanced_partition(group):
    members, partitions = group
    out = assign("uniform", members, partitions)
    check_partition(out, members, partitions)
    load = {m: len(flat(a)) for m, a in out.items()}
    for m, a in out.items():
        for t, _ in flat(a):
            for other, mem in members.items():
                assert not (t in mem.subscribed and load[other] + 1 < load[m]), \
                    f"{t} could move from {m} ({load[m]}) to {other} ({load[other]})"


@settings(max_examples=60, deadline=None)
@given(groups(homogeneous=False))
def test_range_is_a_valid_partition(group):
    members, partitions = group
    check_partition(assign("range", members, partitions), members, partitions)


def test_repeated_assignment_is_stable():
    members = {f"m{i}": M(["t", "u"]) for i in range(4)}
    partitions = {"t": 7, "u": 3}
    first = assign("uniform", members, partitions)
    for m, a in first.items():
        members[m].target = a
    assert assign("uniform", members, partitions) == first
