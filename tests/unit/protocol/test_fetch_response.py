"""The hand-written FetchResponse encoder is byte-identical to kio's."""

import uuid

import pytest

from strom.protocol.build import build
from strom.protocol.fetch_response import FetchPartition, FetchTopic, encode_fetch_response
from strom.protocol.schemas import encode, response_class
from strom.records import Record, build_batch

TOPIC_ID = uuid.UUID("12345678-1234-5678-1234-567812345678")


def sample():
    batch = build_batch([Record(b"k", b"v" * 300, 5)]) + build_batch([Record(None, None, 6)])
    return [
        FetchTopic("orders", TOPIC_ID, [
            FetchPartition(0, 0, 10, 10, 0, None, batch),
            FetchPartition(1, 1, 5, 5, 2, None, b""),
            FetchPartition(2, 0, 7, 7, 0, [(42, 3)], None),
        ]),
        FetchTopic("empty", uuid.UUID(int=9), []),
    ]


def as_kio(version, topics):
    return build(response_class(1, version), {
        "throttle_time": 0, "error_code": 0, "session_id": 0,
        "responses": [{
            "topic": t.name, "topic_id": t.topic_id,
            "partitions": [{
                "partition_index": p.partition_index, "error_code": p.error_code,
                "high_watermark": p.high_watermark, "last_stable_offset": p.last_stable_offset,
                "log_start_offset": p.log_start_offset,
                "aborted_transactions": None if p.aborted_transactions is None else [
                    {"producer_id": a, "first_offset": b} for a, b in p.aborted_transactions],
                "preferred_read_replica": -1, "records": p.records,
            } for p in t.partitions],
        } for t in topics],
    })


@pytest.mark.parametrize("version", range(4, 19))
def test_byte_identical_to_kio(version):
    topics = sample()
    ours = b"".join(bytes(b) for b in encode_fetch_response(version, topics))
    assert ours == encode(as_kio(version, topics))


def test_record_data_is_passed_through_not_copied():
    data = memoryview(bytearray(b"x" * 1000))
    topics = [FetchTopic("t", TOPIC_ID, [FetchPartition(0, records=data)])]
    buffers = encode_fetch_response(12, topics)
    assert any(b is data for b in buffers)


@pytest.mark.parametrize("version", range(3, 14))
def test_produce_response_byte_identical_to_kio(version):
    from strom.protocol.produce_response import encode_produce_response

    topics = [
        {"name": "orders", "topic_id": TOPIC_ID, "partition_responses": [
            {"index": 0, "error_code": 0, "base_offset": 42, "log_append_time": -1,
             "log_start_offset": 0, "error_message": None},
            {"index": 3, "error_code": 2, "base_offset": -1, "log_append_time": 1_700_000_000_123,
             "log_start_offset": 7, "error_message": "CRC-32C mismatch"},
        ]},
        {"name": "empty", "topic_id": uuid.UUID(int=5), "partition_responses": []},
    ]
    expected = build(response_class(0, version), {
        "throttle_time": 0,
        "responses": [{**t, "partition_responses": [{**p, "record_errors": []}
                                                    for p in t["partition_responses"]]}
                      for t in topics]})
    assert encode_produce_response(version, topics) == encode(expected)
