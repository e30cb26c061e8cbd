"""Router: api_key -> handler, and the versions each API is served at.

A handler is `def handle(ctx, request) -> response` registered with
`@api(ApiKey, min_version, max_version)`; it returns a coroutine instead
(`async def`, or a plain def that returns one) only when it must wait, so
a request that can be answered at once costs no task and no extra turn of
the event loop. The range is what the handler
implements, capped by what kio has schemas for. ApiVersions is computed
from this table, so an API that is not registered is never advertised.
"""

from dataclasses import dataclass
from typing import Awaitable, Callable

from strom.protocol.schemas import known_versions, request_class


@dataclass(frozen=True)
class Api:
    key: int
    min_version: int
    max_version: int
    handler: Callable[..., Awaitable]


HANDLERS: dict[int, Api] = {}


def api(key: int, min_version: int | None = None, max_version: int | None = None):
    def register(fn):
        known = known_versions(key)
        if known is None:
            raise ValueError(f"kio has no schema for api key {key}")
        lo = known[0] if min_version is None else max(min_version, known[0])
        hi = known[1] if max_version is None else min(max_version, known[1])
        HANDLERS[key] = Api(key, lo, hi, fn)
        return fn

    return register


def supports(api_key: int, version: int) -> bool:
    a = HANDLERS.get(api_key)
    return a is not None and a.min_version <= version <= a.max_version


def is_flexible(api_key: int, version: int) -> bool:
    if not supports(api_key, version):
        return False
    return request_class(api_key, version).__flexible__


def load_handlers() -> None:
    """Import every handler module so that its @api registrations run."""
    from strom.broker.handlers import (  # noqa: F401
        api_versions,
        cluster,
        configs,
        consumer_groups,
        coordinator,
        fetch,
        group_offsets,
        groups,
        metadata,
        offsets,
        produce,
        producer_id,
        producers,
        topics,
        transactions,
        txn_offsets,
        write_txn_markers,
    )
