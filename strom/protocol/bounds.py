"""Request bounds: every length in a request body is checked against the
bytes left in the frame before kio's reader allocates anything for it.

kio's native reader trusts length prefixes: an array length of 0x7fffffff
in a 21-byte Metadata request makes it allocate 274 GB and abort the
process, and a null where the schema is not nullable decodes as None and
fails later, inside a handler. `check_request(api_key, version, buf, pos)`
walks the body as the request schema says, without building anything,
and raises MalformedFrameError at the first field that does not fit:

- an array, string or bytes length (legacy int16/int32 or compact
  uvarint) larger than what is left of the frame (or of the enclosing
  tagged field), a negative length other than null's -1, or a null
  where the schema does not allow one;
- an array of more than MAX_ARRAY_ELEMENTS elements, or more elements
  than bytes left (Kafka 4.4 checks both), or more than
  MAX_REQUEST_ELEMENTS in the whole request (a 100 MiB frame of one-byte
  elements would otherwise decode into a hundred million Python objects);
- more than MAX_TAGGED_FIELDS tagged fields in one struct, a tagged
  field whose size runs past its struct, or a known tagged field whose
  value does not fill exactly the size it declares.

A checker is composed once per entity type from kio's introspection (the
same classification `lenient_reader` uses) and cached. Produce, the hot
path, has a specialised checker (`_check_produce`) proven equivalent to
the composed one by tests.
"""

import struct
from dataclasses import fields
from functools import cache
from types import UnionType
from typing import get_origin

from kio.serial._introspect import (
    EntityField,
    EntityTupleField,
    PrimitiveField,
    PrimitiveTupleField,
    classify_field,
    get_field_tag,
    get_schema_field_type,
    is_optional,
)

from strom.protocol.framing import MalformedFrameError
from strom.protocol.framing import read_uvarint as _uvarint  # bounded by `end`

MAX_ARRAY_ELEMENTS = 1_000_000  # per array, as Kafka 4.4
MAX_TAGGED_FIELDS = 10_000  # per struct, as Kafka 4.4
MAX_REQUEST_ELEMENTS = 1_000_000  # all arrays of one request together

_FIXED = {
    "bool": 1, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "int32": 4, "uint32": 4,
    "timedelta_i32": 4, "int64": 8, "uint64": 8, "timedelta_i64": 8, "float64": 8,
    "uuid": 16, "error_code": 2, "datetime_i64": 8,
}
_VARIABLE = {"string", "bytes", "records"}


class _Budget:
    """Elements left for the whole request."""

    __slots__ = ("left",)

    def __init__(self):
        self.left = MAX_REQUEST_ELEMENTS


def check_request(api_key: int, version: int, buf, pos: int) -> int:
    """Check the body of a request frame `buf` from `pos` to its end;
    returns where the body ends. Raises MalformedFrameError."""
    return _request_checker(api_key, version)(buf, pos, len(buf), _Budget())


@cache
def _request_checker(api_key: int, version: int):
    from strom.protocol.schemas import request_class  # schemas imports this module

    if api_key == 0 and 3 <= version <= 12:  # v13 names topics by id
        return _produce_checker(request_class(api_key, version).__flexible__)
    return entity_checker(request_class(api_key, version))


# -- primitive readers over [pos, end) ------------------------------------------------

_I16 = struct.Struct(">h").unpack_from
_I32 = struct.Struct(">i").unpack_from


def _length(buf, pos: int, end: int, flexible: bool, wide: bool, nullable: bool, what: str):
    """Read a length prefix; returns (length or -1 for null, position after it)."""
    if flexible:
        if pos < end and buf[pos] < 0x80:  # one-byte uvarint: nearly always
            n = buf[pos] - 1
            pos += 1
        else:
            n, pos = _uvarint(buf, pos, end)
            n -= 1
    elif wide:
        if pos + 4 > end:
            raise MalformedFrameError(f"{what}: truncated length")
        n = _I32(buf, pos)[0]
        pos += 4
    else:
        if pos + 2 > end:
            raise MalformedFrameError(f"{what}: truncated length")
        n = _I16(buf, pos)[0]
        pos += 2
    if n < 0:
        if n != -1:
            raise MalformedFrameError(f"{what}: negative length {n}")
        if not nullable:
            raise MalformedFrameError(f"{what}: null where the schema is not nullable")
    return n, pos


def _variable_checker(kafka_type: str, flexible: bool, nullable: bool, name: str):
    wide = kafka_type != "string"  # strings have an int16 length, bytes and records int32

    def check(buf, pos, end, budget):
        n, pos = _length(buf, pos, end, flexible, wide, nullable, name)
        if n > end - pos:
            raise MalformedFrameError(f"{name}: length {n} runs past the frame ({end - pos} left)")
        return pos + max(n, 0)

    return check


def _fixed_checker(size: int, name: str):
    def check(buf, pos, end, budget):
        pos += size
        if pos > end:
            raise MalformedFrameError(f"{name}: truncated")
        return pos

    return check


def _array_checker(element, element_size: int, flexible: bool, nullable: bool, name: str):
    """`element` checks one element; `element_size` > 0 when every element
    has that fixed size (then no per-element loop is needed)."""

    def check(buf, pos, end, budget):
        n, pos = _length(buf, pos, end, flexible, True, nullable, name)
        if n <= 0:
            return pos
        if n > MAX_ARRAY_ELEMENTS:
            raise MalformedFrameError(f"{name}: {n} elements (at most {MAX_ARRAY_ELEMENTS})")
        if n > end - pos:
            raise MalformedFrameError(f"{name}: {n} elements with {end - pos} bytes left")
        budget.left -= n
        if budget.left < 0:
            raise MalformedFrameError(
                f"{name}: more than {MAX_REQUEST_ELEMENTS} array elements in one request")
        if element_size:
            pos += n * element_size
            if pos > end:
                raise MalformedFrameError(f"{name}: {n} elements run past the frame")
            return pos
        for _ in range(n):
            pos = element(buf, pos, end, budget)
        return pos

    return check


# -- entities ----------------------------------------------------------------------------


def _field_checker(entity_type, f, flexible: bool):
    kind = classify_field(f)
    name = f"{entity_type.__name__}.{f.name}"
    if isinstance(kind, EntityTupleField):
        nullable = get_origin(f.type) is UnionType  # tuple[X, ...] | None
        return _array_checker(entity_checker(kind.type_), 0, flexible, nullable, name)
    if isinstance(kind, EntityField):
        return entity_checker(kind.type_, is_optional(f) and get_field_tag(f) is None)
    kafka_type = get_schema_field_type(f)
    if isinstance(kind, PrimitiveTupleField):
        nullable = get_origin(f.type) is UnionType
        size = _FIXED.get(kafka_type, 0)
        if not size and kafka_type not in _VARIABLE:
            raise TypeError(f"{name}: unknown kafka_type {kafka_type!r}")
        # kio has no nullable strings inside arrays (only nullable uuids, fixed-size)
        element = None if size else _variable_checker(kafka_type, flexible, False, name)
        return _array_checker(element, size, flexible, nullable, name)
    assert isinstance(kind, PrimitiveField)
    if kafka_type in _FIXED:
        return _fixed_checker(_FIXED[kafka_type], name)
    if kafka_type in _VARIABLE:
        return _variable_checker(kafka_type, flexible, is_optional(f), name)
    raise TypeError(f"{name}: unknown kafka_type {kafka_type!r}")


@cache
def entity_checker(entity_type, nullable: bool = False):
    """The checker for one entity type: check(buf, pos, end, budget) -> pos."""
    flexible = entity_type.__flexible__
    name = entity_type.__name__
    steps = []  # a fixed size (int) or a checker, for the regular fields in order
    tagged = {}
    for f in fields(entity_type):
        tag = get_field_tag(f)
        kind = classify_field(f)
        if tag is None and isinstance(kind, PrimitiveField) and \
                get_schema_field_type(f) in _FIXED:
            size = _FIXED[get_schema_field_type(f)]
            if steps and isinstance(steps[-1], int):
                steps[-1] += size  # consecutive fixed-size fields are one step
            else:
                steps.append(size)
            continue
        checker = _field_checker(entity_type, f, flexible)
        if tag is None:
            steps.append(checker)
        else:
            tagged[tag] = checker
    steps = tuple(steps)

    def check(buf, pos, end, budget):
        if nullable:
            if pos >= end:
                raise MalformedFrameError(f"{name}: truncated")
            marker = buf[pos]
            pos += 1
            if marker >= 0x80:  # int8 -1: null
                return pos
        for step in steps:
            if step.__class__ is int:
                pos += step
                if pos > end:
                    raise MalformedFrameError(f"{name}: truncated")
            else:
                pos = step(buf, pos, end, budget)
        if flexible:
            pos = _check_tagged(buf, pos, end, budget, tagged, name)
        return pos

    return check


def _check_tagged(buf, pos, end, budget, tagged, name):
    if pos < end and buf[pos] == 0:  # no tagged fields: nearly always
        return pos + 1
    count, pos = _uvarint(buf, pos, end)
    if count > MAX_TAGGED_FIELDS:
        raise MalformedFrameError(f"{name}: {count} tagged fields (at most {MAX_TAGGED_FIELDS})")
    for _ in range(count):
        tag, pos = _uvarint(buf, pos, end)
        size, pos = _uvarint(buf, pos, end)
        if size > end - pos:
            raise MalformedFrameError(f"{name}: tagged field {tag} of {size} bytes runs past "
                                      f"its struct ({end - pos} left)")
        checker = tagged.get(tag)
        if checker is not None and checker(buf, pos, pos + size, budget) != pos + size:
            raise MalformedFrameError(f"{name}: tagged field {tag} does not fill its {size} bytes")
        pos += size
    return pos


# -- Produce (the hot path) ------------------------------------------------------------


def _produce_checker(flexible: bool):
    """ProduceRequest v3-v12: transactional_id (nullable string), acks
    int16, timeout_ms int32, topic_data [name string, partition_data
    [index int32, records nullable bytes]]; flexible versions add tagged
    fields to each struct (none known for requests). Accepts and refuses
    what the composed checker does (tested), read inline: the frame is
    the whole buffer, so reading past it is an IndexError or struct.error,
    turned into MalformedFrameError."""
    check = _check_produce_flexible if flexible else _check_produce_legacy

    def guarded(buf, pos, end, budget):
        try:
            return check(buf, pos, end, budget)
        except (IndexError, struct.error):
            raise MalformedFrameError("ProduceRequest: truncated") from None

    return guarded


def _refuse_produce(what: str, n: int, pos: int, end: int):
    if n < 0:
        raise MalformedFrameError(f"{what}: null where the schema is not nullable")
    raise MalformedFrameError(f"{what}: {n} (elements or bytes) with {end - pos} bytes left")


def _check_produce_legacy(buf, pos, end, budget):
    n = _I16(buf, pos)[0]  # transactional_id
    if n < -1:
        raise MalformedFrameError(f"ProduceRequest.transactional_id: negative length {n}")
    pos += 2 + max(n, 0) + 6  # acks, timeout_ms
    topics = _I32(buf, pos)[0]
    pos += 4
    if not 0 <= topics <= end - pos or topics > MAX_ARRAY_ELEMENTS:
        _refuse_produce("ProduceRequest.topic_data", topics, pos, end)
    budget.left -= topics
    for _ in range(topics):
        n = _I16(buf, pos)[0]  # name
        if n < 0:
            _refuse_produce("TopicProduceData.name", n, pos, end)
        pos += 2 + n
        parts = _I32(buf, pos)[0]
        pos += 4
        if not 0 <= parts <= end - pos or parts > MAX_ARRAY_ELEMENTS:
            _refuse_produce("TopicProduceData.partition_data", parts, pos, end)
        budget.left -= parts
        for _ in range(parts):
            n = _I32(buf, pos + 4)[0]  # after index: records
            pos += 8
            if n > 0:
                if n > end - pos:
                    _refuse_produce("PartitionProduceData.records", n, pos, end)
                pos += n
            elif n < -1:
                raise MalformedFrameError(f"PartitionProduceData.records: negative length {n}")
    if budget.left < 0:
        raise MalformedFrameError(f"ProduceRequest: more than {MAX_REQUEST_ELEMENTS} elements")
    if pos > end:
        raise MalformedFrameError("ProduceRequest: truncated")
    return pos


def _check_produce_flexible(buf, pos, end, budget):
    n = buf[pos]  # transactional_id, compact nullable
    pos += 1
    if n >= 0x80:
        n, pos = _uvarint(buf, pos - 1, end)
    if n > 1:
        pos += n - 1
    pos += 6  # acks, timeout_ms
    topics = buf[pos]
    pos += 1
    if topics >= 0x80:
        topics, pos = _uvarint(buf, pos - 1, end)
    topics -= 1
    if not 0 <= topics <= end - pos or topics > MAX_ARRAY_ELEMENTS:
        _refuse_produce("ProduceRequest.topic_data", topics, pos, end)
    budget.left -= topics
    for _ in range(topics):
        n = buf[pos]  # name
        pos += 1
        if n >= 0x80:
            n, pos = _uvarint(buf, pos - 1, end)
        if n == 0:
            _refuse_produce("TopicProduceData.name", -1, pos, end)
        pos += n - 1
        parts = buf[pos]
        pos += 1
        if parts >= 0x80:
            parts, pos = _uvarint(buf, pos - 1, end)
        parts -= 1
        if not 0 <= parts <= end - pos or parts > MAX_ARRAY_ELEMENTS:
            _refuse_produce("TopicProduceData.partition_data", parts, pos, end)
        budget.left -= parts
        for _ in range(parts):
            pos += 4  # index
            n = buf[pos]  # records, compact nullable
            pos += 1
            if n >= 0x80:
                n, pos = _uvarint(buf, pos - 1, end)
            if n > 1:
                if n - 1 > end - pos:
                    _refuse_produce("PartitionProduceData.records", n - 1, pos, end)
                pos += n - 1
            if buf[pos]:
                pos = _check_tagged(buf, pos, end, budget, {}, "PartitionProduceData")
            else:
                pos += 1
        if buf[pos]:
            pos = _check_tagged(buf, pos, end, budget, {}, "TopicProduceData")
        else:
            pos += 1
    if budget.left < 0:
        raise MalformedFrameError(f"ProduceRequest: more than {MAX_REQUEST_ELEMENTS} elements")
    if buf[pos]:
        return _check_tagged(buf, pos, end, budget, {}, "ProduceRequest")
    return pos + 1
