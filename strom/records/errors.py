"""Typed errors for malformed record data. Mapped to Kafka codes by the broker."""


class InvalidRecordError(ValueError):
    """A batch is well-formed bytes but breaks a rule (magic, deltas, size)."""


class CorruptRecordError(InvalidRecordError):
    """A batch is truncated or its CRC-32C does not match its contents."""


class DecompressionLimitError(InvalidRecordError):
    """A batch's records decompress to more bytes than the log allows (a
    compression bomb, or a batch over the limit): refused before it is
    inflated whole, as MESSAGE_TOO_LARGE. `prefix`: the output up to the
    limit, when the codec produced it (None otherwise)."""

    def __init__(self, message: str, prefix: bytearray | None = None):
        super().__init__(message)
        self.prefix = prefix
