"""Log compaction: keep the latest record per key.

A pass over one PartitionLog whose topic has `cleanup.policy` containing
`compact`:
1. The cleanable range is every non-active segment whose newest record is
   older than `min.compaction.lag.ms`. The active segment is never cleaned.
2. Build the offset map: key -> latest offset, over the whole log (records
   in the active segment also supersede older ones).
3. Rewrite each cleanable segment one-to-one into `<base>.log.cleaned`,
   keeping a record if it is the latest for its key, or has no key (Kafka
   refuses keyless records on compacted topics; Strom keeps them), and
   dropping tombstones (null values) older than `delete.retention.ms`.
   Kept records keep their offsets (gaps are allowed) and each rewritten
   batch keeps its codec, producer fields and timestamp type. Control and
   transactional batches are copied unchanged.
4. Swap it in: `.cleaned` -> `.swap` -> `.log` (PartitionLog.replace_segment);
   a crash mid-way is finished or rolled back at load.

Runs on the maintenance thread; the log's lock is held only for the swap.
"""

import logging

from strom.records.batch import batch_records, build_batch
from strom.records.codecs import MAX_DECOMPRESSED_BYTES
from strom.storage import files
from strom.storage.log import PartitionLog, now_ms

log = logging.getLogger(__name__)


def clean(plog: PartitionLog, now: int | None = None) -> int:
    """Compact `plog` once; return the number of records removed."""
    now = now_ms() if now is None else now
    cfg = plog.config
    segments = plog.segments_snapshot()
    cleanable = [
        s for s in segments[:-1]
        if s.max_timestamp < now - cfg.min_compaction_lag_ms and not s.is_empty
    ]
    if not cleanable:
        return 0
    limit = max(MAX_DECOMPRESSED_BYTES, cfg.max_message_bytes)  # as append allowed
    latest: dict[bytes, int] = {}
    for seg in segments:
        for _, header, raw in seg.batches():
            if header.is_control:
                continue
            for r in batch_records(raw, 0, limit):
                if r.key is not None:
                    latest[r.key] = r.offset
    removed = 0
    for seg in cleanable:
        removed += _clean_segment(plog, seg, latest, now)
    return removed


def _clean_segment(plog: PartitionLog, seg, latest: dict[bytes, int], now: int) -> int:
    cfg = plog.config
    out: list[bytes] = []
    removed = 0
    for _, header, raw in seg.batches():
        if header.is_control or header.is_transactional:
            out.append(raw)
            continue
        records = batch_records(raw, 0, max(MAX_DECOMPRESSED_BYTES, cfg.max_message_bytes))
        kept = [
            r for r in records
            if (r.key is None or latest.get(r.key) == r.offset)
            and not (r.value is None and r.timestamp < now - cfg.delete_retention_ms)
        ]
        removed += len(records) - len(kept)
        if len(kept) == len(records):
            out.append(raw)
        elif kept:
            out.append(build_batch(
                kept, base_offset=header.base_offset, compression=header.compression,
                timestamp_type=header.timestamp_type, producer_id=header.producer_id,
                producer_epoch=header.producer_epoch, base_sequence=header.base_sequence,
                partition_leader_epoch=header.partition_leader_epoch,
                base_timestamp=header.base_timestamp,
            ))
    if not removed:
        return 0
    cleaned_path = seg.path(files.LOG_SUFFIX + files.CLEANED_SUFFIX)
    plog.medium.remove(cleaned_path)
    f = plog.medium.open(cleaned_path)
    try:
        if out:
            f.append(out, sum(len(b) for b in out))
        f.sync()
    finally:
        f.close()
    plog.replace_segment(seg, cleaned_path)
    log.info("%s: compacted segment %d, removed %d records", plog.directory, seg.base_offset, removed)
    return removed
