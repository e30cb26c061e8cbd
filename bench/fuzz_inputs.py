"""Inputs for the fuzzer (bench/fuzz.py) and the request-bounds tests.

Everything here is pure and seeded: random requests of every API and
version the broker serves (random values for every field, composed from
kio's schemas), mutations of real frames, random bytes, crafted record
batches and decompression bombs. Nothing here talks to a broker.
"""

import datetime
import random
import struct
import uuid
from dataclasses import fields
from functools import cache
from types import UnionType
from typing import get_origin

from kio.schema.errors import ErrorCode
from kio.serial._introspect import (
    EntityField,
    EntityTupleField,
    PrimitiveTupleField,
    classify_field,
    get_field_tag,
    get_schema_field_type,
    is_optional,
)

from strom.protocol.schemas import encode, request_class

# Names the random requests use, so that handlers reach past "unknown
# topic": a small pool, so a long run creates a bounded number of topics.
TOPICS = ("fuzz-0", "fuzz-1", "fuzz-2", "fuzz-3")
GROUPS = ("fuzz-g0", "fuzz-g1")
TOPIC_IDS: list[uuid.UUID] = []  # the pool's ids on the broker under test, when known
_STRINGS = ("", "x", "fuzz", "a\nb", "\x00\x1b[31m", "é" * 3, "." * 300, "range")

_INT_BITS = {"int8": 8, "int16": 16, "int32": 32, "int64": 64}


def _int(rng: random.Random, bits: int, signed: bool = True) -> int:
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    r = rng.random()
    if r < 0.4:
        return rng.randint(max(lo, -1), min(hi, 3))
    if r < 0.7:
        return rng.randint(max(lo, 0), min(hi, 1000))
    if r < 0.8:
        return rng.choice((lo, hi))
    return rng.randint(lo, hi)


def _string(rng: random.Random, field_name: str, type_name: str) -> str:
    if type_name == "TopicName" or "topic" in field_name:
        return rng.choice(TOPICS)
    if type_name == "GroupId" or "group" in field_name:
        return rng.choice(GROUPS)
    r = rng.random()
    if r < 0.6:
        return rng.choice(_STRINGS)
    return "".join(chr(rng.randint(0, 0x24F)) for _ in range(rng.randint(0, 40)))


def _primitive(rng, kafka_type: str, field_name: str, type_name: str, optional: bool):
    if optional and rng.random() < 0.2:
        return None
    if kafka_type in _INT_BITS:
        if kafka_type == "int32" and "partition" in field_name and rng.random() < 0.8:
            return rng.randint(-1, 3)
        if "count" in field_name or "partitions" in field_name:  # CreateTopics, CreatePartitions
            return rng.randint(-1, 4)  # descriptor limits are not what this fuzzes
        return _int(rng, _INT_BITS[kafka_type])
    if kafka_type == "uint16":
        return _int(rng, 16, signed=False)
    if kafka_type == "bool":
        return rng.random() < 0.5
    if kafka_type == "float64":
        return rng.choice((0.0, 1.5, -1e300, float("inf")))
    if kafka_type in ("timedelta_i32", "timedelta_i64"):
        # short: a long poll would hold the pipelined probe behind it
        return datetime.timedelta(milliseconds=rng.choice((-1, 0, 0, 1, 10, 50)))
    if kafka_type == "datetime_i64":
        return datetime.datetime.fromtimestamp(rng.randint(0, 2**31), datetime.timezone.utc)
    if kafka_type == "uuid":
        if TOPIC_IDS and "topic" in field_name and rng.random() < 0.6:
            return rng.choice(TOPIC_IDS)
        return uuid.UUID(int=0) if rng.random() < 0.3 else uuid.UUID(int=rng.getrandbits(128))
    if kafka_type == "error_code":
        return rng.choice(list(ErrorCode))
    if kafka_type == "string":
        return _string(rng, field_name, type_name)
    if kafka_type == "bytes":
        return rng.randbytes(rng.choice((0, 1, 8, 64)))
    if kafka_type == "records":
        return random_batch(rng) if rng.random() < 0.7 else rng.randbytes(rng.randint(0, 80))
    raise TypeError(kafka_type)


@cache
def _plan(cls):
    plan = []
    for f in fields(cls):
        kind = classify_field(f)
        tagged = get_field_tag(f) is not None
        if isinstance(kind, (EntityField, EntityTupleField)):
            plan.append((f.name, kind, None, is_optional(f), get_origin(f.type) is UnionType,
                         tagged))
        else:
            plan.append((f.name, kind, get_schema_field_type(f), is_optional(f),
                         get_origin(f.type) is UnionType, tagged))
    return plan


def random_entity(cls, rng: random.Random, depth: int = 0):
    values = {}
    for name, kind, kafka_type, optional, nullable_array, tagged in _plan(cls):
        if isinstance(kind, EntityField):
            if optional and rng.random() < 0.3:
                values[name] = None
            else:
                values[name] = random_entity(kind.type_, rng, depth + 1)
        elif kind.is_array:
            if nullable_array and rng.random() < 0.2:
                values[name] = None
                continue
            n = rng.choice((0, 1, 1, 2, 3)) if depth < 3 else 0
            if isinstance(kind, EntityTupleField):
                values[name] = tuple(random_entity(kind.type_, rng, depth + 1) for _ in range(n))
            else:
                assert isinstance(kind, PrimitiveTupleField)
                type_name = getattr(kind.type_, "__name__", "")
                values[name] = tuple(_primitive(rng, kafka_type, name, type_name, False)
                                     for _ in range(n))
        else:
            type_name = getattr(kind.type_, "__name__", "")
            values[name] = _primitive(rng, kafka_type, name, type_name, optional)
    return cls(**values)


def frame(api_key: int, version: int, body: bytes, correlation_id: int, client_id="fuzz",
          flexible=None) -> bytes:
    """A whole request frame (size prefix included)."""
    cid = client_id.encode()
    header = struct.pack(">hhih", api_key, version, correlation_id, len(cid)) + cid
    if flexible is None:
        flexible = request_class(api_key, version).__flexible__
    if flexible:
        header += b"\x00"
    data = header + body
    return struct.pack(">i", len(data)) + data


def random_request(rng: random.Random, api_key: int, version: int) -> bytes:
    """A well-formed random request body of that API and version."""
    cls = request_class(api_key, version)
    for _ in range(5):
        try:
            return encode(random_entity(cls, rng))
        except (ValueError, TypeError, OverflowError, struct.error):
            continue  # a value kio cannot encode (range, type): draw again
    return encode(random_entity(cls, random.Random(0)))


# -- record batches ---------------------------------------------------------------------


def random_batch(rng: random.Random) -> bytes:
    """A CRC-valid RecordBatch v2, sometimes with crafted header fields."""
    from strom.records import Record, build_batch

    records = [Record(key=rng.randbytes(rng.randint(0, 8)) or None,
                      value=rng.randbytes(rng.randint(0, 64)))
               for _ in range(rng.randint(1, 4))]
    data = bytearray(build_batch(records, base_offset=0))
    r = rng.random()
    if r < 0.5:
        return bytes(data)
    # crafted: change a header field and fix the CRC so only the field is wrong
    spot, fmt = rng.choice(((23, ">i"), (27, ">q"), (35, ">q"), (43, ">q"), (51, ">h"),
                            (53, ">i"), (57, ">i"), (21, ">h"), (8, ">i"), (16, ">b")))
    width = struct.calcsize(fmt)
    bits = width * 8
    value = rng.choice((0, -1, 1 << (bits - 1) - 1, rng.getrandbits(bits - 1)))
    struct.pack_into(fmt, data, spot, value)
    if rng.random() < 0.5:  # records garbage, header valid
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(61, len(data))
            data[i] = rng.getrandbits(8)
    return fix_crc(bytes(data))


def fix_crc(batch: bytes) -> bytes:
    import crc32c

    if len(batch) < 61:
        return batch
    return batch[:17] + struct.pack(">I", crc32c.crc32c(batch[21:])) + batch[21:]


@cache
def bomb(codec: str, size: int = 256 << 20) -> bytes:
    """A CRC-valid batch of one record whose value is `size` zero bytes,
    compressed with `codec` (gzip or zstd): a few KB on the wire."""
    import cramjam

    from strom.records import Record, build_batch

    plain = build_batch([Record(key=None, value=b"")], base_offset=0)
    # the records section of a one-record batch: length varint, attrs, deltas, key, value
    value_len = size
    rec_body = b"\x00" + _varint(0) + _varint(0) + _varint(-1) + _varint(value_len)
    tail = _varint(0)  # headers count
    rec_len = len(rec_body) + value_len + len(tail)
    codec_id = {"gzip": 1, "zstd": 4}[codec]
    compress = {"gzip": lambda b: bytes(cramjam.gzip.compress(b, level=1)),
                "zstd": lambda b: bytes(cramjam.zstd.compress(b, level=1))}[codec]
    payload = compress(_varint(rec_len) + rec_body + bytes(value_len) + tail)
    header = bytearray(plain[:61])
    struct.pack_into(">i", header, 8, 49 + len(payload))  # batch_length
    struct.pack_into(">h", header, 21, codec_id)  # attributes: compression
    struct.pack_into(">i", header, 57, 1)  # record count
    return fix_crc(bytes(header) + payload)


def _varint(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        b = z & 0x7F
        z >>= 7
        if z:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def produce_body(topic: str, batch: bytes, version: int = 9, acks: int = 1) -> bytes:
    from strom.protocol.build import build

    cls = request_class(0, version)
    return encode(build(cls, {"acks": acks, "timeout": 5000, "topic_data": [
        {"name": topic, "partition_data": [{"index": 0, "records": batch}]}]}))


# -- mutations --------------------------------------------------------------------------

_LENGTHS = (b"\x7f\xff\xff\xff", b"\xff\xff\xff\xff", b"\xff\xff\xff\xfe", b"\x80\x00\x00\x00",
            b"\x00\x0f\x42\x41", b"\xff\xff", b"\x7f\xff", b"\xff\xff\xff\xff\x7f", b"\x00",
            b"\x01", b"\xff\x7f")


def mutate(rng: random.Random, data: bytes, keep: int = 0) -> bytes:
    """A few random edits of `data`, leaving the first `keep` bytes alone."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if len(b) <= keep:
            b += rng.randbytes(4)
        op = rng.random()
        i = rng.randrange(keep, len(b))
        if op < 0.3:
            b[i] ^= 1 << rng.randrange(8)
        elif op < 0.5:
            b[i] = rng.choice((0, 0xFF, 0x7F, 0x80))
        elif op < 0.75:
            v = rng.choice(_LENGTHS)
            b[i:i + len(v)] = v
        elif op < 0.85:
            del b[i:i + rng.randint(1, 8)]
        elif op < 0.95:
            b[i:i] = rng.randbytes(rng.randint(1, 8))
        else:
            del b[i:]
    return bytes(b)


def reframe(data: bytes) -> bytes:
    """Give a mutated frame body its true size prefix back."""
    return struct.pack(">i", len(data)) + data
