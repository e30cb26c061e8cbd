"""Control batches (COMMIT/ABORT markers) in Kafka's layout."""

import struct

import pytest

from strom.records.batch import BatchHeader, batch_records, validate_batch
from strom.records.control import ABORT, COMMIT, build_control_batch, control_type, marker_of
from strom.records.errors import InvalidRecordError


@pytest.mark.parametrize("commit", [True, False])
def test_a_marker_has_kafkas_header_and_record(commit):
    raw = build_control_batch(7, 3, commit, 11, 1234, base_offset=40)
    header = validate_batch(raw)
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (7, 3, -1)
    assert header.is_control and header.is_transactional
    assert header.base_offset == 40 and header.records_count == 1
    (record,) = batch_records(raw, 0)
    # key: version 0, type; value: version 0, coordinator epoch (Kafka's EndTransactionMarker)
    assert record.key == struct.pack(">hh", 0, COMMIT if commit else ABORT)
    assert record.value == struct.pack(">hi", 0, 11)
    assert record.timestamp == 1234
    assert marker_of(raw) == (COMMIT if commit else ABORT, 11)


def test_clients_may_not_write_control_batches():
    with pytest.raises(InvalidRecordError):
        validate_batch(build_control_batch(1, 0, True, 0, 0), strict=True)


@pytest.mark.parametrize("key", [None, b"", b"\x00", b"\x00\x00\x00\x05", b"\xff\xff\x00\x01"])
def test_unknown_or_short_control_keys_are_refused(key):
    with pytest.raises(InvalidRecordError):
        control_type(key)


def test_a_marker_at_a_position_inside_a_buffer():
    raw = build_control_batch(1, 0, True, 2, 0) + build_control_batch(2, 5, False, 9, 0)
    first = BatchHeader.parse(raw)
    assert marker_of(raw, first.size) == (ABORT, 9)
