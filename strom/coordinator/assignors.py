"""Server-side assignors of KIP-848 consumer groups: `uniform` and `range`.

`assign` computes a group's target assignment (member id -> topic ->
partitions) from the members' subscriptions, the subscribed topics'
partition counts and each member's previous target, with Kafka's
semantics (group-coordinator's UniformAssignor and RangeAssignor):

uniform, every member subscribed to the same topics: balance first (each
    member holds floor(P/N) or floor(P/N) + 1 of the P partitions), then
    stickiness: a member keeps as many of its previous partitions as its
    quota allows, and the floor(P/N) + 1 quotas go to the members that held
    the most, so no more partitions move than balance needs. A newcomer's
    share is freed from the members above their new quota; reconciliation
    (consumer_group.py) hands it over once they have revoked.
uniform, subscriptions differ: previous partitions are kept, free ones go
    to the least loaded subscriber, then a partition moves from a member
    to a subscriber of its topic holding two or more fewer, until none can.
range: per topic, contiguous ranges over its subscribers, the first
    `partitions % subscribers` getting one more; members with an instance
    id first (by instance id), so static members keep their ranges.
"""

import heapq

ASSIGNORS = ("uniform", "range")

Partition = tuple[str, int]


def assign(assignor: str, members: dict, partitions: dict[str, int]) -> dict[str, dict[str, set[int]]]:
    """`members`: id -> object with `subscribed` (topic names), `target`
    (topic -> partitions, the previous target) and `instance_id`;
    `partitions`: topic -> partition count of the existing subscribed
    topics."""
    if assignor == "range":
        return _range(members, partitions)
    subscriptions = {m: frozenset(t for t in mem.subscribed if t in partitions)
                     for m, mem in members.items()}
    previous = _previous(members, subscriptions, partitions)
    if len(set(subscriptions.values())) <= 1:
        flat = _uniform_homogeneous(sorted(members), previous, partitions,
                                    next(iter(subscriptions.values()), frozenset()))
    else:
        flat = _uniform_heterogeneous(subscriptions, previous, partitions)
    out: dict[str, dict[str, set[int]]] = {m: {} for m in members}
    for m, owned in flat.items():
        for t, p in owned:
            out[m].setdefault(t, set()).add(p)
    return out


def _previous(members, subscriptions, partitions) -> dict[str, list[Partition]]:
    """Each member's previous partitions that it may still hold: its topic
    is still subscribed and the partition still exists. Owned once only."""
    seen: set[Partition] = set()
    out = {}
    for m in sorted(members):
        kept = []
        for t, ps in sorted(members[m].target.items()):
            if t not in subscriptions[m]:
                continue
            for p in sorted(ps):
                if p < partitions[t] and (t, p) not in seen:
                    seen.add((t, p))
                    kept.append((t, p))
        out[m] = kept
    return out


def _uniform_homogeneous(member_ids: list[str], previous: dict[str, list[Partition]],
                         partitions: dict[str, int], topics: frozenset) -> dict[str, list[Partition]]:
    all_parts = [(t, p) for t in sorted(topics) for p in range(partitions[t])]
    if not member_ids:
        return {}
    minimum, extra = divmod(len(all_parts), len(member_ids))
    # The extra slots go to the members that held the most: they keep one more.
    by_holding = sorted(member_ids, key=lambda m: (-len(previous[m]), m))
    quota = {m: minimum + (1 if i < extra else 0) for i, m in enumerate(by_holding)}
    out = {m: previous[m][:quota[m]] for m in member_ids}
    taken = {tp for owned in out.values() for tp in owned}
    free = iter([tp for tp in all_parts if tp not in taken])
    for m in member_ids:
        while len(out[m]) < quota[m]:
            out[m].append(next(free))
    return out


def _uniform_heterogeneous(subscriptions: dict[str, frozenset], previous: dict[str, list[Partition]],
                           partitions: dict[str, int]) -> dict[str, list[Partition]]:
    subscribers = {t: sorted(m for m, s in subscriptions.items() if t in s) for t in partitions}
    out = {m: set(previous[m]) for m in subscriptions}
    owned = {tp for tps in out.values() for tp in tps}
    # Free partitions, the most constrained topics (fewest subscribers)
    # first, each to the least loaded subscriber: a heap per topic, exact
    # because only this topic's placements change loads meanwhile.
    for t in sorted(partitions, key=lambda t: (len(subscribers[t]), t)):
        heap = [(len(out[m]), m) for m in subscribers[t]]
        heapq.heapify(heap)
        for p in range(partitions[t]):
            if heap and (t, p) not in owned:
                load, m = heapq.heappop(heap)
                out[m].add((t, p))
                heapq.heappush(heap, (load + 1, m))
    # Balance: move a partition to a subscriber of its topic holding two or
    # more fewer. Each move narrows such a gap, so the sum of squared loads
    # falls and the loop ends; a pass without a move (its per-topic least
    # loaded members computed fresh) means none is left.
    def least(t):
        return min(subscribers[t], key=lambda x: (len(out[x]), x))

    moved = True
    while moved:
        moved = False
        lightest = {t: least(t) for t in partitions if subscribers[t]}
        for m in sorted(out, key=lambda x: (-len(out[x]), x)):
            for t, p in sorted(out[m]):
                if len(out[lightest[t]]) + 1 < len(out[m]):
                    out[m].discard((t, p))
                    out[lightest[t]].add((t, p))
                    lightest[t] = least(t)
                    moved = True
    return {m: sorted(tps) for m, tps in out.items()}


def _range(members: dict, partitions: dict[str, int]) -> dict[str, dict[str, set[int]]]:
    out: dict[str, dict[str, set[int]]] = {m: {} for m in members}
    order = sorted(members, key=lambda m: (members[m].instance_id is None,
                                           members[m].instance_id or "", m))
    for topic in sorted(partitions):
        subs = [m for m in order if topic in members[m].subscribed]
        if not subs:
            continue
        per, extra = divmod(partitions[topic], len(subs))
        start = 0
        for i, m in enumerate(subs):
            count = per + (1 if i < extra else 0)
            if count:
                out[m][topic] = set(range(start, start + count))
            start += count
    return out
