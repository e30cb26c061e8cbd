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
"""

import base64
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


def _dump(obj: dict) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def encode_key(key) -> bytes:
    if isinstance(key, OffsetKey):
        return _dump({"type": "offset", "group": key.group, "topic": key.topic,
                      "partition": key.partition})
    return _dump({"type": "group", "group": key.group})


def decode_key(raw: bytes):
    obj = json.loads(raw)
    if obj["type"] == "offset":
        return OffsetKey(obj["group"], obj["topic"], obj["partition"])
    return GroupKey(obj["group"])


def encode_value(value: dict | None) -> bytes | None:
    return None if value is None else _dump(value)


def decode_value(raw: bytes | None) -> dict | None:
    return None if raw is None else json.loads(raw)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)
