"""ProduceResponse encoder, by hand: one per produce request, so its cost
is per request on the hottest path (kio's writer is pure Python, ~10x
slower). tests/unit/protocol proves it byte-identical to kio for v3-v13.

Layout (flexible, i.e. compact lengths and tagged fields, from v9):
    responses[]: name string (<13) or topic_id uuid (13+);
      partition_responses[]: index int32, error_code int16,
        base_offset int64, log_append_time_ms int64,
        log_start_offset int64 (5+), record_errors[] (8+) of
        (batch_index int32, message nullable string), error_message
        nullable string (8+)
    throttle_time_ms int32
"""

import struct

from strom.protocol.fetch_response import _uvarint

_PART = struct.Struct(">ihqq")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_ZERO_UUID = bytes(16)
_I64 = struct.Struct(">q")


def _string(value: str | None, flexible: bool) -> bytes:
    if value is None:
        return b"\x00" if flexible else b"\xff\xff"
    data = value.encode()
    return (_uvarint(len(data) + 1) if flexible else _I16.pack(len(data))) + data


def _count(n: int, flexible: bool) -> bytes:
    return _uvarint(n + 1) if flexible else _I32.pack(n)


def encode_produce_response(version: int, topics: list[dict], throttle_time_ms: int = 0) -> bytes:
    """`topics`: [{"name", "topic_id", "partition_responses": [{"index",
    "error_code", "base_offset", "log_append_time", "log_start_offset",
    "error_message"}]}], as the produce handler builds them."""
    flexible = version >= 9
    out = bytearray(_count(len(topics), flexible))
    for topic in topics:
        if version >= 13:  # kio reads the zero uuid as None
            out += topic["topic_id"].bytes if topic["topic_id"] else _ZERO_UUID
        else:
            out += _string(topic["name"], flexible)
        parts = topic["partition_responses"]
        out += _count(len(parts), flexible)
        for p in parts:
            out += _PART.pack(p["index"], p["error_code"], p["base_offset"], p["log_append_time"])
            if version >= 5:
                out += _I64.pack(p["log_start_offset"])
            if version >= 8:
                out += _count(0, flexible)  # record_errors: whole batches only
                out += _string(p.get("error_message"), flexible)
            if flexible:
                out += b"\x00"
        if flexible:
            out += b"\x00"
    out += _I32.pack(throttle_time_ms)
    if flexible:
        out += b"\x00"
    return bytes(out)
