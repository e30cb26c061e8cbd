"""What a handler receives and may return besides a kio response entity."""

from strom.protocol.build import build
from strom.protocol.schemas import response_class


class RawResponse:
    """A response body already encoded, as a list of buffers."""

    __slots__ = ("buffers",)

    def __init__(self, buffers: list):
        self.buffers = buffers


NO_RESPONSE = object()  # Produce with acks=0: nothing goes back


class RequestContext:
    __slots__ = ("broker", "header", "peer")

    def __init__(self, broker, header, peer):
        self.broker = broker
        self.header = header
        self.peer = peer

    @property
    def version(self) -> int:
        return self.header.api_version

    def respond(self, values: dict):
        """Build this request's response type, at its version, from values."""
        return build(response_class(self.header.api_key, self.header.api_version), values)
