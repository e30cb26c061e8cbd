"""kio schema lookup with cached readers and writers per (api_key, version).

kio's native reader raises KeyError on a tagged field it does not know,
while the protocol says unknown tags must be skipped (newer clients send
tags older brokers have never heard of). `read_request` retries such a
message with `lenient_reader`, a Python reader composed from kio's field
readers that skips unknown tags at every nesting level. It is only used on
that fallback path.
"""

import io
from dataclasses import fields
from functools import cache

from kio._kio_native import get_field_reader
from kio.index import load_request_schema, load_response_schema
from kio.schema.index import api_key_map, schema_name_map
from kio.serial import entity_reader, entity_writer
from kio.serial._introspect import (
    EntityField,
    EntityTupleField,
    classify_field,
    get_field_tag,
    is_optional,
)
from kio.serial.readers import (
    compact_array_reader,
    legacy_array_reader,
    read_int8,
    read_unsigned_varint,
)

from strom.protocol.bounds import check_request


@cache
def known_versions(api_key: int) -> tuple[int, int] | None:
    """(min, max) version kio has schemas for, or None for an unknown key."""
    name = api_key_map.get(api_key)
    if name is None:
        return None
    versions = sorted(schema_name_map[name])
    return versions[0], versions[-1]


@cache
def request_class(api_key: int, version: int):
    return load_request_schema(api_key, version)


@cache
def response_class(api_key: int, version: int):
    return load_response_schema(api_key, version)


@cache
def _native_reader(cls):
    return entity_reader(cls)


@cache
def _writer(cls):
    return entity_writer(cls)


def read_request(api_key: int, version: int, buf, offset: int):
    """Decode a request body at `offset` in the frame `buf`. Returns
    (entity, bytes consumed). Every length is checked against the frame
    first (protocol/bounds.py): kio's reader trusts them."""
    check_request(api_key, version, buf, offset)
    cls = request_class(api_key, version)
    try:
        return _native_reader(cls)(buf, offset)
    except KeyError as e:
        if "tagged field" not in str(e):
            raise
        return lenient_reader(cls)(buf, offset)


def encode(entity) -> bytes:
    out = io.BytesIO()
    _writer(type(entity))(out, entity)
    return out.getvalue()


@cache
def lenient_reader(entity_type, nullable: bool = False):
    flexible = entity_type.__flexible__
    is_header = entity_type.__name__ == "RequestHeader"
    regular, tagged = [], {}
    for f in fields(entity_type):
        tag = get_field_tag(f)
        kind = classify_field(f)
        if isinstance(kind, EntityTupleField):
            inner = lenient_reader(kind.type_)
            reader = compact_array_reader(inner) if flexible else legacy_array_reader(inner)
        elif isinstance(kind, EntityField):
            reader = lenient_reader(kind.type_, is_optional(f) and tag is None)
        else:
            reader = get_field_reader(entity_type, f, is_header, tag is not None)
        if tag is None:
            regular.append((f.name, reader))
        else:
            tagged[tag] = (f.name, reader)

    def read(buf, offset):
        start = offset
        if nullable:
            marker, n = read_int8(buf, offset)
            offset += n
            if marker < 0:
                return None, offset - start
        values = {}
        for name, reader in regular:
            values[name], n = reader(buf, offset)
            offset += n
        if flexible:
            count, n = read_unsigned_varint(buf, offset)
            offset += n
            for _ in range(count):
                tag, n = read_unsigned_varint(buf, offset)
                offset += n
                size, n = read_unsigned_varint(buf, offset)
                offset += n
                if tag in tagged:
                    name, reader = tagged[tag]
                    values[name], _ = reader(buf, offset)
                offset += size  # unknown tags are skipped, as the protocol says
        return entity_type(**values), offset - start

    return read
