"""Typed errors for malformed record data. Mapped to Kafka codes by the broker."""


class InvalidRecordError(ValueError):
    """A batch is well-formed bytes but breaks a rule (magic, deltas, size)."""


class CorruptRecordError(InvalidRecordError):
    """A batch is truncated or its CRC-32C does not match its contents."""
