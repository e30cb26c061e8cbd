"""Replay of an internal topic's records at start-up, damage-tolerant.

`replay_log(plog, apply)` reads a coordinator's partition from its start
and calls `apply(key_bytes, value_bytes)` for every record of every data
batch, in offset order. Damage is skipped and counted by kind, with the
first offset of each: a batch that fails its CRC or does not decode, a
record `apply` rejects with BadRecordError (its `kind`), or one whose
replay raises anything else. It costs the state those records held,
never the start. Control batches (transaction markers) are passed over.
"""

from strom.coordinator.records import BadRecordError
from strom.records.batch import batch_records, iter_batches, validate_batch


def replay_log(plog, apply) -> tuple[int, dict[str, tuple[int, int]]]:
    """(records replayed, {kind: (count, first offset)} of what was skipped)."""
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
                records = [] if header.is_control else batch_records(data, pos)
            except Exception:  # noqa: BLE001 (any failure to decode is damage)
                skip("a batch that does not decode", header.base_offset,
                     max(header.records_count, 1))
                # Its header may be damaged too: move on, but not past the log end.
                offset = max(offset + 1, min(header.next_offset, plog.log_end_offset))
                continue
            for r in records:
                if r.offset < offset:
                    continue
                try:
                    if r.key is None:
                        raise BadRecordError("a record without a key", "")
                    apply(r.key, r.value)
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
