"""A produced batch is accepted only when every record in it is well formed
(Kafka's LogValidator rules, plus dense offset deltas); a CRC-valid batch
of garbage is INVALID_RECORD, not stored."""

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strom.records import (
    Compression,
    CorruptRecordError,
    Header,
    InvalidRecordError,
    Record,
    build_batch,
    validate_batch,
)
from strom.records.batch import BATCH_HEADER_SIZE, batch_records
from strom.records.codecs import compress
from strom.records.varint import read_varint
from tests.unit.records.helpers import fields, raw_batch, record, resign, varint


def refused(batch: bytes) -> InvalidRecordError:
    with pytest.raises(InvalidRecordError) as e:
        validate_batch(batch, strict=True)
    assert not isinstance(e.value, CorruptRecordError), "the CRC is right: not CORRUPT_MESSAGE"
    return e.value


def test_garbage_records_with_a_valid_crc_are_refused():
    rng = random.Random(12)
    batch = raw_batch(bytes(rng.randrange(256) for _ in range(300)), count=5)
    validate_batch(batch)  # CRC and header alone pass: only the records are wrong
    refused(batch)


def test_an_absurd_last_offset_delta_with_a_matching_count_is_refused():
    # 70 bytes that claim 2**31 - 1 records: would move the high watermark
    # by two billion per produce.
    batch = raw_batch(record(fields(0))[:9].ljust(9, b"\x00"), count=2**31 - 1)
    assert len(batch) == 70
    assert "cannot fit" in str(refused(batch))


def _two(first: bytes, second: bytes, count: int = 2, **kw) -> bytes:
    return raw_batch(first + second, count=count, **kw)


@pytest.mark.parametrize("batch", [
    pytest.param(_two(record(fields(0)), record(fields(1), length=len(fields(1)) + 1)),
                 id="length-beyond-fields"),
    pytest.param(_two(record(fields(0), length=len(fields(0)) - 1) + b"\x00", record(fields(1))),
                 id="length-short-of-fields"),
    pytest.param(_two(record(fields(0)), record(fields(2))), id="offset-delta-gap"),
    pytest.param(_two(record(fields(1)), record(fields(2))), id="offset-delta-not-from-0"),
    pytest.param(_two(record(fields(0)), record(fields(1)) + b"\x00"), id="trailing-byte"),
    pytest.param(_two(record(fields(0)), record(fields(1)) + record(fields(2))),
                 id="more-records-than-count"),
    pytest.param(_two(record(fields(0)), record(fields(1)), count=3), id="fewer-records-than-count"),
    pytest.param(_two(record(fields(0)), record(fields(1, header_count=-1))),
                 id="negative-header-count"),
    pytest.param(_two(record(fields(0)), record(fields(1, header_count=50))),
                 id="header-count-beyond-record"),
    pytest.param(_two(record(fields(0)), record(fields(1, headers=[(b"h", b"x")]).replace(
        b"\x02h", varint(-3) + b"h"))), id="negative-header-key-length"),
    pytest.param(_two(record(fields(0)), record(b"\x00\x00" + b"\x82\x80\x80\x80\x80\x00" + b"\x01\x02v\x00")),
                 id="offset-delta-varint-too-long"),
    pytest.param(_two(record(fields(0)), varint(-8) + fields(1)), id="negative-record-length"),
    pytest.param(_two(record(fields(0)), record(fields(1, value=b"v" * 40), length=300)),
                 id="length-past-batch-end"),
    pytest.param(raw_batch(record(fields(0)) + record(fields(1)), count=2, attributes=0x20),
                 id="control-batch"),
    pytest.param(raw_batch(record(fields(0)), count=1, producer_id=7, base_sequence=-1),
                 id="producer-id-without-sequence"),
    pytest.param(raw_batch(b"", count=0, last_delta=0), id="no-records"),
])
def test_malformed_records_are_invalid_record(batch):
    refused(batch)


def test_well_formed_edge_cases_are_accepted():
    body = (record(fields(0, key=None, value=None))
            + record(fields(1, key=b"", value=b"", timestamp_delta=-5))
            + record(fields(2, key=b"k", headers=[(b"h", None), (b"", b"x")]))
            + record(fields(3, value=b"v" * 300, timestamp_delta=2**40)))
    header = validate_batch(raw_batch(body, count=4), strict=True)
    assert header.records_count == 4


@pytest.mark.parametrize("count", [1, 63, 64, 65, 8191, 8192, 8193, 20_000])
def test_uniform_batches_across_varint_widths_are_accepted(count):
    # Offset deltas take 1, 2 and 3 bytes at 64 and 8192: the run checks
    # must follow each width.
    batch = build_batch([Record(None, b"x" * 100, 1_700_000_000_000 + i // 7)
                         for i in range(count)])
    assert validate_batch(batch, strict=True).records_count == count


@pytest.mark.parametrize("where", ["key_length", "value_length", "header_count", "offset_delta",
                                   "timestamp_width"])
def test_one_bad_record_deep_in_a_uniform_run_is_found(where):
    # 5,000 records of one layout, checked by strided slices; record 4,321
    # alone is wrong in one field, with its size unchanged.
    good = [record(fields(i, key=b"key", value=b"v" * 90, timestamp_delta=1)) for i in range(5000)]
    i = 4321
    right = fields(i, key=b"key", value=b"v" * 90, timestamp_delta=1)
    bad = {
        "key_length": right.replace(b"\x06key", b"\x08key"),
        "value_length": fields(i, key=b"key", value=b"v" * 89, timestamp_delta=1) + b"\x00",
        "header_count": right[:-1] + varint(1),
        "offset_delta": fields(i + 1, key=b"key", value=b"v" * 90, timestamp_delta=1),
        "timestamp_width": right[:1] + bytes([right[1] | 0x80]) + right[2:],
    }[where]
    assert len(record(bad)) == len(good[i])
    good[i] = record(bad)
    batch = raw_batch(b"".join(good), count=5000)
    refused(batch)


def test_compressed_garbage_records_are_refused():
    rng = random.Random(3)
    garbage = bytes(rng.randrange(256) for _ in range(2000))
    for codec in (1, 2, 3, 4):
        refused(raw_batch(compress(codec, garbage), count=10, codec=codec))


# -- properties: a mutated batch is accepted exactly when a plain parser of
# the Kafka rules accepts it, and is then decodable; nothing else is raised.

def reference_accepts(body, count: int) -> bool:
    """The rules, one record at a time, with no fast path."""
    pos = 0
    try:
        for index in range(count):
            length, pos = read_varint(body, pos)
            end = pos + length
            if length < 6 or end > len(body):
                return False
            p = pos + 1
            start = p
            _, p = read_varint(body, p)
            if p - start > 10:
                return False
            start = p
            delta, p = read_varint(body, p)
            if delta != index or p - start > 5:
                return False
            for _ in range(2):
                start = p
                n, p = read_varint(body, p)
                if p - start > 5:
                    return False
                p += max(n, 0)
            if p >= end:
                return False
            headers, p = read_varint(body, p)
            if headers < 0 or headers * 2 > end - p:
                return False
            for _ in range(headers):
                n, p = read_varint(body, p)
                if n < 0:
                    return False
                p += n
                n, p = read_varint(body, p)
                p += max(n, 0)
                if p > end:
                    return False
            if p != end:
                return False
            pos = end
    except InvalidRecordError:
        return False
    return pos == len(body)


def _accepts(batch: bytes) -> bool:
    try:
        validate_batch(batch, strict=True)
    except InvalidRecordError as e:
        assert not isinstance(e, CorruptRecordError)
        return False
    return True


def _check_mutant(batch: bytes) -> None:
    body = memoryview(batch)[BATCH_HEADER_SIZE:]
    count = int.from_bytes(batch[57:61], "big", signed=True)
    accepted = _accepts(batch)
    assert accepted == reference_accepts(body, count)
    if accepted:
        decoded = batch_records(batch)
        assert [r.offset for r in decoded] == list(range(count))


uniform = st.builds(
    lambda n, key, value, headers, spread: [
        Record(key, value, 1_700_000_000_000 + (i * spread) // 100, headers) for i in range(n)],
    n=st.integers(2, 300),
    key=st.none() | st.binary(max_size=4),
    value=st.none() | st.binary(max_size=150),
    headers=st.lists(st.builds(Header, key=st.text(max_size=2), value=st.none() | st.binary(max_size=2)),
                     max_size=2).map(tuple),
    spread=st.integers(0, 20_000),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=uniform, data=st.data())
def test_mutated_uniform_batches_are_accepted_only_when_well_formed(records, data):
    batch = bytearray(build_batch(records))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(BATCH_HEADER_SIZE, len(batch) - 1))
        batch[at] = data.draw(st.integers(0, 255))
    _check_mutant(resign(batch))


varied = st.lists(
    st.builds(Record, key=st.none() | st.binary(max_size=6), value=st.none() | st.binary(max_size=40),
              timestamp=st.integers(0, 2**41),
              headers=st.lists(st.builds(Header, key=st.text(max_size=3),
                                         value=st.none() | st.binary(max_size=3)),
                               max_size=2).map(tuple)),
    min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(records=varied, data=st.data())
def test_mutated_varied_batches_are_accepted_only_when_well_formed(records, data):
    batch = bytearray(build_batch(records))
    op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
    at = data.draw(st.integers(BATCH_HEADER_SIZE, len(batch) - 1))
    if op == "flip":
        batch[at] = data.draw(st.integers(0, 255))
    elif op == "cut":
        del batch[at : at + data.draw(st.integers(1, 5))]
    else:
        batch[at:at] = data.draw(st.binary(min_size=1, max_size=5))
    if len(batch) >= BATCH_HEADER_SIZE:
        struct_len = len(batch) - 12
        batch[8:12] = struct_len.to_bytes(4, "big")
    _check_mutant(resign(batch))


@settings(max_examples=60, deadline=None)
@given(records=varied, codec=st.sampled_from([1, 2, 3, 4]), data=st.data())
def test_mutated_compressed_batches_never_raise_anything_else(records, codec, data):
    batch = bytearray(build_batch(records, compression=codec))
    at = data.draw(st.integers(BATCH_HEADER_SIZE, len(batch) - 1))
    batch[at] = data.draw(st.integers(0, 255))
    try:
        validate_batch(resign(batch), strict=True)
    except InvalidRecordError:
        pass
