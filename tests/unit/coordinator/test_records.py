"""Records of `__consumer_offsets`: what the coordinator writes reads back
the same, and anything else is a BadRecordError, never another exception."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strom.coordinator import records as rec

OFFSET_VALUE = {"offset": 5, "leader_epoch": -1, "metadata": "", "commit_timestamp": 1}
GROUP_VALUE = {"generation": 3, "protocol_type": "consumer", "protocol": "range", "leader": "m",
               "members": [{"member_id": "m", "group_instance_id": None, "client_id": "c",
                            "client_host": "h", "session_timeout_ms": 1, "rebalance_timeout_ms": 2,
                            "subscription": rec.b64(b"\x00\x01"), "assignment": ""}]}


def test_round_trip():
    for key, value in [(rec.OffsetKey("g", "t", 0), OFFSET_VALUE),
                       (rec.GroupKey("g"), GROUP_VALUE), (rec.GroupKey("g"), None)]:
        decoded = rec.decode_key(rec.encode_key(key))
        assert decoded == key
        assert rec.decode_value(decoded, rec.encode_value(value)) == value


@pytest.mark.parametrize("raw, kind", [
    (b"not json", "key is not JSON"),
    (b"\xff\xfe", "key is not JSON"),
    (b"[1, 2]", "key is not a JSON object"),
    (b'{"type": "txn"}', "key of an unknown type"),
    (b'{"group": "g"}', "key of an unknown type"),
    (b'{"type": "offset", "group": "g", "topic": "t", "partition": "0"}', "offset key with"),
    (b'{"type": "offset", "group": "g", "topic": "t", "partition": true}', "offset key with"),
    (b'{"type": "group", "group": null}', "group key with"),
])
def test_bad_keys(raw, kind):
    with pytest.raises(rec.BadRecordError) as e:
        rec.decode_key(raw)
    assert e.value.kind.startswith(kind)


@pytest.mark.parametrize("key, value", [
    (rec.OffsetKey("g", "t", 0), {**OFFSET_VALUE, "offset": None}),
    (rec.OffsetKey("g", "t", 0), {"offset": 1}),
    (rec.GroupKey("g"), {**GROUP_VALUE, "members": [7]}),
    (rec.GroupKey("g"), {**GROUP_VALUE, "members": [{**GROUP_VALUE["members"][0], "client_id": 1}]}),
    (rec.GroupKey("g"), {**GROUP_VALUE, "members": [{**GROUP_VALUE["members"][0], "assignment": "@@"}]}),
    (rec.GroupKey("g"), {**GROUP_VALUE, "generation": "3"}),
])
def test_bad_values(key, value):
    with pytest.raises(rec.BadRecordError):
        rec.decode_value(key, json.dumps(value).encode())


@given(st.binary(max_size=200) | st.builds(lambda o: json.dumps(o).encode(), st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["type", "group", "topic", "partition", "offset", "members"]), inner,
        max_size=5))))
def test_anything_decodes_or_is_a_bad_record(raw):
    for decode in (rec.decode_key, lambda r: rec.decode_value(rec.GroupKey("g"), r),
                   lambda r: rec.decode_value(rec.OffsetKey("g", "t", 0), r)):
        try:
            decode(raw)
        except rec.BadRecordError:
            pass
