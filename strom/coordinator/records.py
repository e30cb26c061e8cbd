"""Records of the internal, compacted `__consumer_offsets` topic.

Keys and values are JSON objects with sorted keys, so equal keys are equal
bytes and compaction keeps the latest per key:

    offset commit   key   {"group", "partition", "topic", "type": "offset"}
                    value {"commit_timestamp", "leader_epoch", "metadata", "offset"}
    group metadata  key   {"group", "type": "group"}
                    value {"generation", "leader", "members": [...], "protocol",
                           "protocol_type"}; member: {"assignment" (base64),
                           "client_host", "client_id", "group_instance_id",
                           "member_id", "rebalance_timeout_ms",
                           "session_timeout_ms", "subscription" (base64)}

A null value (tombstone) deletes the key: an offset (OffsetDelete, expiry)
or a whole group (DeleteGroups).

Transactional offset commits (TxnOffsetCommit) are offset records like the
others, in a transactional batch with the producer's id and epoch (base
sequence -1); the COMMIT or ABORT control batch (strom.records.control)
that the transaction coordinator writes for that producer decides them.
Replay keeps them pending until then (txn_offsets.py).

Decoding checks every field's type, so replay meets only well-formed
records: anything else (not JSON, a missing or mistyped field, a key type
this version does not know, as Kafka's loader skips unknown record types)
raises BadRecordError, whose `kind` names the problem for the one summary
line start-up logs.
"""

import base64
import binascii
import json
from dataclasses import dataclass

OFFSETS_TOPIC = "__consumer_offsets"


@dataclass(frozen=True)
class OffsetKey:
    group: str
    topic: str
    partition: int


@dataclass(frozen=True)
class GroupKey:
    group: str


def dump_json(obj: dict) -> bytes:
    """JSON with sorted keys: equal keys are equal bytes (compaction)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def encode_key(key) -> bytes:
    if isinstance(key, OffsetKey):
        return dump_json({"type": "offset", "group": key.group, "topic": key.topic,
                      "partition": key.partition})
    return dump_json({"type": "group", "group": key.group})


class BadRecordError(ValueError):
    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


_OPTIONAL_STR = (str, type(None))
_OFFSET_KEY = {"group": str, "topic": str, "partition": int}
_GROUP_KEY = {"group": str}
_OFFSET_VALUE = {"offset": int, "leader_epoch": int, "metadata": str, "commit_timestamp": int}
_GROUP_VALUE = {"generation": int, "leader": _OPTIONAL_STR, "members": list,
                "protocol": _OPTIONAL_STR, "protocol_type": _OPTIONAL_STR}
_MEMBER = {"assignment": str, "client_host": str, "client_id": str,
           "group_instance_id": _OPTIONAL_STR, "member_id": str, "rebalance_timeout_ms": int,
           "session_timeout_ms": int, "subscription": str}


def load_object(raw: bytes, what: str) -> dict:
    """A JSON object, or BadRecordError naming `what` is wrong."""
    try:
        obj = json.loads(raw)
    except (ValueError, TypeError) as e:  # UnicodeDecodeError is a ValueError
        raise BadRecordError(f"{what} is not JSON", str(e)) from None
    if not isinstance(obj, dict):
        raise BadRecordError(f"{what} is not a JSON object", repr(obj)[:80])
    return obj


def _check(obj: dict, schema: dict, what: str) -> dict:
    for name, types in schema.items():
        value = obj.get(name, ...)
        # bool is an int to isinstance; no field here is a boolean
        if not isinstance(value, types) or isinstance(value, bool):
            raise BadRecordError(f"{what} with a missing or mistyped field",
                                 f"{name}={value!r}"[:120])
    return obj


def decode_key(raw: bytes):
    obj = load_object(raw, "key")
    kind = obj.get("type")
    if kind == "offset":
        _check(obj, _OFFSET_KEY, "offset key")
        return OffsetKey(obj["group"], obj["topic"], obj["partition"])
    if kind == "group":
        _check(obj, _GROUP_KEY, "group key")
        return GroupKey(obj["group"])
    raise BadRecordError("key of an unknown type", repr(kind)[:80])


def encode_value(value: dict | None) -> bytes | None:
    return None if value is None else dump_json(value)


def decode_value(key, raw: bytes | None) -> dict | None:
    """The value of `key`'s record, checked against its schema."""
    if raw is None:
        return None
    obj = load_object(raw, "value")
    if isinstance(key, OffsetKey):
        return _check(obj, _OFFSET_VALUE, "offset value")
    _check(obj, _GROUP_VALUE, "group value")
    for member in obj["members"]:
        if not isinstance(member, dict):
            raise BadRecordError("group value with a malformed member", repr(member)[:80])
        _check(member, _MEMBER, "group member")
        for name in ("assignment", "subscription"):
            try:
                base64.b64decode(member[name], validate=True)
            except binascii.Error as e:
                raise BadRecordError("group member with bad base64", f"{name}: {e}") from None
    return obj


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)
