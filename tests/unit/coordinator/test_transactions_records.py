"""Records of `__transaction_state`: what the coordinator writes reads back
the same, and anything else is a BadRecordError, never another exception."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strom.coordinator import txn_records as rec
from strom.coordinator.records import BadRecordError
from strom.coordinator.txn_state import TxnMetadata

META = TxnMetadata("app", 7, -1, 3, 2, 60000, rec.ONGOING, frozenset({("t", 1), ("a", 0)}), 5, 6)


def test_round_trip():
    key = rec.decode_key(rec.encode_key(rec.TxnKey("app")))
    assert key == rec.TxnKey("app")
    value = rec.decode_value(rec.encode_value(META.value()))
    assert TxnMetadata.from_value("app", value) == META
    assert value["partitions"] == [("a", 0), ("t", 1)]  # sorted: equal states, equal bytes
    assert rec.decode_value(None) is None


@pytest.mark.parametrize("raw, kind", [
    (b"not json", "key is not JSON"),
    (b"\xff", "key is not JSON"),
    (b"[]", "key is not a JSON object"),
    (b'{"type": "offset", "group": "g"}', "key of an unknown type"),
    (b'{"type": "txn"}', "txn key with"),
    (b'{"type": "txn", "transactional_id": ""}', "txn key with"),
    (b'{"type": "txn", "transactional_id": 5}', "txn key with"),
])
def test_bad_keys(raw, kind):
    with pytest.raises(BadRecordError) as e:
        rec.decode_key(raw)
    assert e.value.kind.startswith(kind)


@pytest.mark.parametrize("change, kind", [
    ({"state": "Dead"}, "txn value with a state that is never stored"),
    ({"state": "PrepareEpochFence"}, "txn value with a state that is never stored"),
    ({"state": 1}, "txn value with a missing or mistyped field"),
    ({"producer_epoch": True}, "txn value with a missing or mistyped field"),
    ({"producer_epoch": 40000}, "txn value with a field out of range"),
    ({"producer_id": -1}, "txn value with a field out of range"),
    ({"timeout_ms": 0}, "txn value with a field out of range"),
    ({"partitions": [["t"]]}, "txn value with a malformed partition"),
    ({"partitions": [["t", -1]]}, "txn value with a malformed partition"),
    ({"partitions": [["", 0]]}, "txn value with a malformed partition"),
    ({"partitions": "t"}, "txn value with a missing or mistyped field"),
    ({"timeout_ms": None}, "txn value with a missing or mistyped field"),
])
def test_bad_values(change, kind):
    raw = json.dumps({**META.value(), **change}).encode()
    with pytest.raises(BadRecordError) as e:
        rec.decode_value(raw)
    assert e.value.kind == kind


def test_a_missing_field_is_refused():
    value = META.value()
    del value["last_producer_epoch"]
    with pytest.raises(BadRecordError):
        rec.decode_value(json.dumps(value).encode())


@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_bad_record(raw):
    for decode in (rec.decode_key, rec.decode_value):
        try:
            decode(raw)
        except BadRecordError:
            pass


@given(st.dictionaries(st.sampled_from(sorted(META.value())), st.none() | st.integers()
                       | st.text(max_size=5) | st.lists(st.integers(), max_size=3)))
def test_arbitrary_values_raise_only_bad_record(change):
    raw = json.dumps({**META.value(), **change}).encode()
    try:
        value = rec.decode_value(raw)
    except BadRecordError:
        return
    TxnMetadata.from_value("app", value)  # whatever decodes can be replayed
