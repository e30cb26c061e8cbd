import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strom.records import (
    Compression,
    CorruptRecordError,
    Header,
    InvalidRecordError,
    Record,
    build_batch,
    iter_batches,
    patch_base_offset,
    patch_max_timestamp,
    validate_batch,
)
from strom.records.batch import BatchHeader, batch_records
from strom.records.codecs import decompress

records_st = st.lists(
    st.builds(
        Record,
        key=st.none() | st.binary(max_size=20),
        value=st.none() | st.binary(max_size=200),
        timestamp=st.integers(0, 2**40),
        headers=st.lists(
            st.builds(Header, key=st.text(max_size=5), value=st.none() | st.binary(max_size=5)),
            max_size=3,
        ).map(tuple),
    ),
    min_size=1,
    max_size=20,
)


@pytest.mark.parametrize("codec", list(Compression))
@given(records=records_st, base=st.integers(0, 2**40))
def test_build_then_decode_round_trips(codec, records, base):
    raw = build_batch(records, base_offset=base, compression=codec)
    header = validate_batch(raw, strict=True)
    assert header.base_offset == base
    assert header.records_count == len(records)
    assert header.compression == codec
    decoded = batch_records(raw)
    assert [(r.key, r.value, r.timestamp, r.headers) for r in decoded] == [
        (r.key, r.value, r.timestamp, r.headers) for r in records
    ]
    assert [r.offset for r in decoded] == list(range(base, base + len(records)))


def _batch(n=3, **kw):
    return bytearray(build_batch([Record(b"k", b"v" * 10, 1000 + i) for i in range(n)], **kw))


def test_patching_base_offset_keeps_crc_valid():
    raw = _batch()
    patch_base_offset(raw, 12345)
    assert validate_batch(raw).base_offset == 12345


def test_validate_can_hand_back_the_assigned_base_offset():
    raw = _batch()
    plain = validate_batch(raw)
    assigned = validate_batch(raw, base_offset=777)
    assert assigned.base_offset == 777 and plain.base_offset == 0
    assert assigned[1:] == plain[1:]  # every other field as in the batch
    assert bytes(raw) == bytes(_batch())  # the input is left alone


def test_log_append_time_patch_resigns_the_batch():
    raw = _batch()
    patch_max_timestamp(raw, 99999)
    header = validate_batch(raw)
    assert header.max_timestamp == 99999
    assert header.timestamp_type == 1


def test_wrong_crc_is_corrupt():
    raw = _batch()
    raw[-1] ^= 0xFF
    with pytest.raises(CorruptRecordError, match="CRC"):
        validate_batch(raw)


def test_truncated_batch_is_corrupt():
    raw = _batch()
    with pytest.raises(CorruptRecordError, match="truncated"):
        validate_batch(raw[:-5])
    with pytest.raises(CorruptRecordError, match="header"):
        validate_batch(raw[:30])


def test_wrong_magic_is_invalid():
    raw = _batch()
    raw[16] = 1
    with pytest.raises(InvalidRecordError, match="magic"):
        validate_batch(raw)


def test_inconsistent_deltas_are_invalid():
    raw = _batch(3)
    struct.pack_into(">i", raw, 23, 7)  # last_offset_delta 7 for 3 records
    from crc32c import crc32c

    struct.pack_into(">I", raw, 17, crc32c(bytes(raw[21:])))
    validate_batch(raw)  # legal for a compacted batch...
    with pytest.raises(InvalidRecordError, match="does not match"):
        validate_batch(raw, strict=True)  # ...not from a producer


def test_iter_batches_stops_at_a_partial_tail():
    a, b = _batch(), _batch(base_offset=3)
    found = list(iter_batches(a + b + b[:20]))
    assert [h.base_offset for _, h in found] == [0, 3]


def test_xerial_snappy_and_raw_snappy_both_decompress():
    import cramjam

    data = b"hello world " * 5000
    raw = bytes(cramjam.snappy.compress_raw(data))
    assert decompress(Compression.SNAPPY, raw) == data
    from strom.records.codecs import compress

    framed = compress(Compression.SNAPPY, data)
    assert framed.startswith(b"\x82SNAPPY\x00")
    assert decompress(Compression.SNAPPY, framed) == data


def test_garbage_compressed_payload_is_corrupt():
    with pytest.raises(CorruptRecordError):
        decompress(Compression.LZ4, b"not lz4 at all")


def test_header_fields():
    raw = build_batch([Record(b"k", b"v", 5)], producer_id=7, producer_epoch=2, base_sequence=9,
                      is_transactional=True)
    h = BatchHeader.parse(raw)
    assert (h.producer_id, h.producer_epoch, h.base_sequence) == (7, 2, 9)
    assert h.is_transactional and not h.is_control


def test_transactional_producer_reads_one_batch_and_refuses_a_shared_one():
    from strom.records.batch import transactional_producer

    txn = build_batch([Record(b"k", b"v", 1)], producer_id=7, producer_epoch=2, base_sequence=0,
                      is_transactional=True)
    plain = build_batch([Record(b"k", b"v", 1)], producer_id=7, producer_epoch=2, base_sequence=0)
    assert transactional_producer(txn) == (7, 2)
    assert transactional_producer(plain) is None
    assert transactional_producer(plain + plain) is None
    assert transactional_producer(b"short") is None
    with pytest.raises(InvalidRecordError):
        transactional_producer(plain + txn)
    # a lying batch length only moves the walk forward
    lying = bytearray(plain + plain)
    lying[8:12] = (-5).to_bytes(4, "big", signed=True)
    assert transactional_producer(bytes(lying)) is None
