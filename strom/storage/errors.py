"""Storage errors: typed here, mapped to Kafka error codes by the broker."""


class StorageError(Exception):
    pass


class OffsetOutOfRangeError(StorageError):
    def __init__(self, offset: int, log_start_offset: int, log_end_offset: int):
        super().__init__(
            f"offset {offset} is outside [{log_start_offset}, {log_end_offset}]"
        )
        self.offset = offset


class RecordTooLargeError(StorageError):
    pass


class InvalidConfigError(StorageError):
    pass


class TopicExistsError(StorageError):
    pass


class UnknownTopicError(StorageError):
    pass


class InvalidPartitionsError(StorageError):
    pass


class TooManyPartitionsError(InvalidPartitionsError):
    """A create that would not fit the file descriptor budget or the cap on
    partitions: refused before anything is written (INVALID_PARTITIONS)."""


class LogWriteError(StorageError):
    """The partition's disk failed: a write, an fsync or a read. Sticky: the
    partition refuses further writes rather than write around a hole it
    cannot account for (Kafka takes such a log offline)."""


class SuspectIndexError(StorageError):
    """An index file fails its sanity checks; it is rebuilt from the log."""


class InvalidTopicError(StorageError):
    pass
