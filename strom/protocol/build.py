"""Build a kio response entity of any version from plain values.

Handlers describe a response once, version-agnostic, as dicts and lists:
`build(MetadataResponse_v12, {...})`. Fields the version lacks are dropped,
fields the handler did not give get the schema default (or the zero value
of their type), and plain ints become the timedelta/datetime/ErrorCode
values kio's fields hold. This keeps per-version structs out of handlers
(STYLE 2).
"""

import datetime
import uuid
from dataclasses import MISSING, fields
from functools import cache

from kio.schema.errors import ErrorCode
from kio.serial._introspect import EntityField, EntityTupleField, classify_field, is_optional

_ZERO_UUID = uuid.UUID(int=0)


@cache
def _plan(cls):
    plan = []
    for f in fields(cls):
        kind = classify_field(f)
        kafka_type = f.metadata.get("kafka_type")
        if f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:
            default = f.default_factory()
        elif isinstance(kind, (EntityTupleField,)) or getattr(kind, "is_array", False):
            default = ()
        else:
            default = _zero(kafka_type)
        inner = kind.type_ if isinstance(kind, (EntityField, EntityTupleField)) else None
        plan.append((f.name, kind.is_array, inner, kafka_type, default, is_optional(f)))
    return plan


def _zero(kafka_type):
    return {
        "string": "", "bytes": b"", "records": None, "bool": False, "uuid": _ZERO_UUID,
        "error_code": ErrorCode.none, "timedelta_i32": datetime.timedelta(0),
        "timedelta_i64": datetime.timedelta(0), "datetime_i64": None,
    }.get(kafka_type, 0)


def _convert(kafka_type, value, optional=True):
    if kafka_type == "error_code" and not isinstance(value, ErrorCode):
        return ErrorCode(value)
    if kafka_type in ("timedelta_i32", "timedelta_i64") and isinstance(value, int):
        return datetime.timedelta(milliseconds=value)
    if kafka_type == "datetime_i64" and isinstance(value, int):
        if value < 0 and optional:
            return None
        # a non-nullable field still says -1 ("none", e.g. DescribeTransactions'
        # start time of an Empty transaction): a datetime that writes back as -1
        return datetime.datetime.fromtimestamp(value / 1000, tz=datetime.timezone.utc)
    return value


def build(cls, values: dict):
    kwargs = {}
    for name, is_array, inner, kafka_type, default, optional in _plan(cls):
        v = values.get(name, default)
        if v is None and not optional:
            # Nullable in some versions only (e.g. JoinGroup protocol_name
            # before v7): older versions get the empty value.
            v = default if default is not None else _zero(kafka_type)
        if v is None:
            kwargs[name] = None
            continue
        if inner is not None:
            if is_array:
                v = None if v is None else tuple(build(inner, x) if isinstance(x, dict) else x for x in v)
            elif isinstance(v, dict):
                v = build(inner, v)
        elif is_array:
            v = None if v is None else tuple(v)
        else:
            v = _convert(kafka_type, v, optional)
        kwargs[name] = v
    return cls(**kwargs)


def ms(value) -> int:
    """A kio timedelta field as integer milliseconds."""
    if isinstance(value, datetime.timedelta):
        return int(value.total_seconds() * 1000)
    return int(value)
