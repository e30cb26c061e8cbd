"""Frames and request/response headers.

A frame is a big-endian int32 size followed by that many bytes. A request
frame starts with the request header:

    v1: api_key int16, api_version int16, correlation_id int32,
        client_id nullable string (int16 length)
    v2: v1 + tagged fields (flexible request versions)

Note that client_id stays a legacy (int16-length) string even in v2. The
response header is v0 (correlation_id) or, for flexible versions, v1
(+ an empty tagged-field section); ApiVersions responses always use v0 so
a client that does not yet know our versions can read them.
"""

import struct
from typing import NamedTuple

from strom.protocol.errors import KafkaError

_HEADER = struct.Struct(">hhih")
_I32 = struct.Struct(">i")
API_VERSIONS = 18


class MalformedFrameError(KafkaError):
    """Bytes that do not parse as a request: the connection is closed."""


class RequestHeader(NamedTuple):  # a tuple: built once per request, cheaply
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    body_offset: int  # where the request body starts in the frame
    flexible: bool  # header v2 (tagged fields), as the request version is


def parse_request_header(frame, flexible_for) -> RequestHeader:
    """Parse a request header; `flexible_for(api_key, version)` says whether
    it carries tagged fields (None: unknown version, assume not)."""
    if len(frame) < _HEADER.size:
        raise MalformedFrameError(f"request of {len(frame)} bytes is shorter than a header")
    api_key, api_version, correlation_id, client_len = _HEADER.unpack_from(frame, 0)
    pos = _HEADER.size
    client_id = None
    if client_len >= 0:
        if pos + client_len > len(frame):
            raise MalformedFrameError("client_id runs past the frame")
        client_id = bytes(frame[pos : pos + client_len]).decode("utf-8", "replace")
        pos += client_len
    elif client_len != -1:
        raise MalformedFrameError(f"client_id length {client_len}")
    flexible = flexible_for(api_key, api_version)
    if flexible:
        pos = skip_tagged_fields(frame, pos)
    return RequestHeader(api_key, api_version, correlation_id, client_id, pos, flexible)


def read_uvarint(buf, pos: int, end: int | None = None) -> tuple[int, int]:
    """An unsigned varint of at most 5 bytes in buf[pos:end]: (value, next position)."""
    if end is None:
        end = len(buf)
    shift = value = 0
    while True:
        if pos >= end:
            raise MalformedFrameError("truncated varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift > 28:
            raise MalformedFrameError("varint longer than 5 bytes")


def skip_tagged_fields(buf, pos: int) -> int:
    count, pos = read_uvarint(buf, pos)
    for _ in range(count):
        _, pos = read_uvarint(buf, pos)
        size, pos = read_uvarint(buf, pos)
        pos += size
        if pos > len(buf):
            raise MalformedFrameError("tagged field runs past the frame")
    return pos


def response_header(correlation_id: int, flexible: bool) -> bytes:
    """The response header, without the frame size."""
    if flexible:
        return _I32.pack(correlation_id) + b"\x00"
    return _I32.pack(correlation_id)


def frame_size(n: int) -> bytes:
    return _I32.pack(n)
