"""ApiVersions (18): which APIs and versions this broker serves.

Computed from the router's table. A request of a version we do not know is
answered by `unsupported_version_response` in the v0 layout (error_code,
api_keys[] of int16 key, min, max), which every client can parse.
"""

import struct

from kio.schema.errors import ErrorCode

from strom.broker.router import HANDLERS, api


def _advertised():
    return [HANDLERS[k] for k in sorted(HANDLERS)]


@api(18)
def handle_api_versions(ctx, request):
    return ctx.respond({
        "error_code": ErrorCode.none,
        "api_keys": [
            {"api_key": a.key, "min_version": a.min_version, "max_version": a.max_version}
            for a in _advertised()
        ],
        "throttle_time": 0,
    })


def unsupported_version_response() -> bytes:
    apis = _advertised()
    out = struct.pack(">hi", ErrorCode.unsupported_version, len(apis))
    for a in apis:
        out += struct.pack(">hhh", a.key, a.min_version, a.max_version)
    return out
