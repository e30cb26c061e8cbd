"""build(): plain values into kio entities that encode."""

from strom.protocol.build import build
from strom.protocol.schemas import encode, response_class


def test_a_non_nullable_datetime_of_minus_one_encodes_as_minus_one():
    """DescribeTransactions' start time is not nullable but is -1 for an
    Empty or unknown transactional id; it used to encode as None and fail,
    which closed the client's connection."""
    cls = response_class(65, 0)
    values = {"transaction_states": [{"transactional_id": "t", "error_code": 105,
                                      "transaction_state": "", "producer_id": 7,
                                      "transaction_start_time": -1, "topics": []}]}
    data = encode(build(cls, values))
    assert b"\xff" * 8 + (7).to_bytes(8, "big") in data  # start time -1, then producer id
