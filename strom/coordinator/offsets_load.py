"""Start-up: replay `__consumer_offsets` from its log start into the group
coordinator, in log order, the same replay that serving uses: offset and
group records, transactional batches (their offsets pending for the
batch's producer) and the COMMIT / ABORT control batches that end them.
"""

from strom.coordinator import records as rec
from strom.records.batch import batch_records, iter_batches, validate_batch
from strom.records.control import COMMIT, marker_of


def load_offsets_topic(plog, replay, replay_marker) -> tuple[int, dict[str, tuple[int, int]]]:
    """Replay the offsets topic through `replay(key, value, loading=True,
    producer_id=, record_offset=)` (the producer id of a transactional
    batch, else -1) and `replay_marker(producer_id, commit)` for each
    control batch; returns (records replayed, damage skipped). Damage (a
    batch that fails its CRC or does not decode, a record that is not ours)
    is skipped and counted by kind, with the first offset of each: it costs
    the state those records held, never the start."""
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
                if header.is_control:
                    records, marker = [], marker_of(data, pos)
                else:
                    records, marker = batch_records(data, pos), None
            except Exception:  # noqa: BLE001 (any failure to decode is damage)
                skip("a batch that does not decode", header.base_offset,
                     max(header.records_count, 1))
                # Its header may be damaged too: move on, but not past the log end.
                offset = max(offset + 1, min(header.next_offset, plog.log_end_offset))
                continue
            if marker is not None:
                replay_marker(header.producer_id, marker[0] == COMMIT)
                count += 1
            txn_producer = header.producer_id if header.is_transactional else -1
            for r in records:
                if r.offset < offset:
                    continue
                try:
                    if r.key is None:
                        raise rec.BadRecordError("a record without a key", "")
                    key = rec.decode_key(r.key)
                    replay(key, rec.decode_value(key, r.value), loading=True,
                                producer_id=txn_producer, record_offset=r.offset)
                    count += 1
                except rec.BadRecordError as e:
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
