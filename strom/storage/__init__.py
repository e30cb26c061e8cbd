"""The log: segments, indexes, retention, compaction, group commit, recovery.

Plain synchronous code: no asyncio, no protocol types.
"""

from strom.storage.config import TOPIC_CONFIGS, LogConfig
from strom.storage.errors import (
    InvalidConfigError,
    InvalidPartitionsError,
    LogWriteError,
    OffsetOutOfRangeError,
    RecordTooLargeError,
    StorageError,
    TopicExistsError,
    UnknownTopicError,
)
from strom.storage.log import AppendResult, PartitionLog
from strom.storage.manager import LogManager, Topic

__all__ = [
    "TOPIC_CONFIGS",
    "AppendResult",
    "InvalidConfigError",
    "InvalidPartitionsError",
    "LogConfig",
    "LogManager",
    "LogWriteError",
    "OffsetOutOfRangeError",
    "PartitionLog",
    "RecordTooLargeError",
    "StorageError",
    "Topic",
    "TopicExistsError",
    "UnknownTopicError",
]
