"""The coordinators' internal topics: replay of their records at start-up,
damage-tolerant (the one loop both coordinators load their state with),
and the upkeep both need (created on first use, their configs restored).

`replay_log(plog, apply, apply_marker=None)` reads a coordinator's
partition from its start, in offset order, and calls
`apply(key, value, producer_id, offset)` for every record of every data
batch (`producer_id` is the batch's for a transactional batch, else -1)
and `apply_marker(producer_id, commit)` for every control batch (passed
over without it). Damage is skipped and counted by kind, with the first
offset of each: a batch that fails its CRC or does not decode, a record
`apply` rejects with BadRecordError (its `kind`), or one whose replay
raises anything else. It costs the state those records held, never the
start.
"""

import logging

from strom.coordinator.records import BadRecordError
from strom.records.batch import batch_records, iter_batches, validate_batch
from strom.records.control import COMMIT, marker_of

log = logging.getLogger(__name__)


def internal_log(logs, topic: str, config: dict[str, str]):
    """Partition 0 of an internal topic, created on first use: a broker
    that never needs it does not pay for it (fsyncs at start-up)."""
    if topic not in logs.topics:
        logs.create_topic(topic, 1, dict(config))
    return logs.get_log(topic, 0)


def restore_config(logs, topic: str, config: dict[str, str]) -> None:
    """A topic registry rebuilt from the partition directories (after
    damage) knows no configs: an internal topic must be compacted again,
    or it grows without bound."""
    current = logs.get_topic(topic).config.overrides
    if current.get("cleanup.policy") == "compact":
        return
    log.warning("%s: restoring its configs %s (were %s)", topic, config, current)
    logs.alter_topic_config(topic, dict(config))


def log_skipped(topic: str, skipped: dict[str, tuple[int, int]]) -> None:
    """One line per kind of damage replay_log skipped."""
    for kind, (n, example) in sorted(skipped.items()):
        log.error("%s: skipped %d record(s) that cannot be loaded (%s), e.g. at offset %d; "
                  "the state they held is lost, the rest is loaded", topic, n, kind, example)


def replay_log(plog, apply, apply_marker=None) -> tuple[int, dict[str, tuple[int, int]]]:
    """(records and markers replayed, {kind: (count, first offset)} of what
    was skipped)."""
    skipped: dict[str, tuple[int, int]] = {}

    def skip(kind: str, offset: int, n: int = 1) -> None:
        count, first = skipped.get(kind, (0, offset))
        skipped[kind] = (count + n, first)

    offset, count = plog.log_start_offset, 0
    while offset < plog.log_end_offset:
        data = plog.read(offset, 1 << 20)
        if not data:
            break
        start = offset
        for pos, header in iter_batches(data):
            if header.next_offset <= offset:
                continue  # a compacted remnant before `offset`, or a bogus header
            try:
                validate_batch(data, pos)
                marker = None
                if not header.is_control:
                    records = batch_records(data, pos)
                elif apply_marker is not None:
                    records, marker = [], marker_of(data, pos)
                else:
                    records = []
            except Exception:  # noqa: BLE001 (any failure to decode is damage)
                skip("a batch that does not decode", header.base_offset,
                     max(header.records_count, 1))
                # Its header may be damaged too: move on, but not past the log end.
                offset = max(offset + 1, min(header.next_offset, plog.log_end_offset))
                continue
            if marker is not None:
                apply_marker(header.producer_id, marker[0] == COMMIT)
                count += 1
            producer_id = header.producer_id if header.is_transactional else -1
            for r in records:
                if r.offset < offset:
                    continue
                try:
                    if r.key is None:
                        raise BadRecordError("a record without a key", "")
                    apply(r.key, r.value, producer_id, r.offset)
                    count += 1
                except BadRecordError as e:
                    skip(e.kind, r.offset)
                except Exception as e:  # noqa: BLE001 (a bug must not stop the start either)
                    skip(f"a record whose replay failed with {type(e).__name__}", r.offset)
            offset = header.next_offset
        if offset == start:
            # Nothing readable at `offset` (storage serves whole batches
            # only): stop here rather than loop; later records are lost.
            skip("unreadable data where a batch should start", offset,
                 plog.log_end_offset - offset)
            break
    return count, skipped
