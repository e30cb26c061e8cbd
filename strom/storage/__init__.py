"""The log: segments, indexes, retention, compaction, group commit, recovery.

Plain synchronous code: no asyncio, no protocol types.
"""

from strom.storage.config import TOPIC_CONFIGS, LogConfig
from strom.storage.errors import (
    InvalidConfigError,
    InvalidPartitionsError,
    InvalidTopicError,
    LogWriteError,
    OffsetOutOfRangeError,
    RecordTooLargeError,
    StorageError,
    TopicExistsError,
    UnknownTopicError,
)
from strom.storage.log import AppendResult, PartitionLog
from strom.storage.manager import LogManager, Topic, validate_topic_name

__all__ = [
    "TOPIC_CONFIGS",
    "AppendResult",
    "InvalidConfigError",
    "InvalidPartitionsError",
    "InvalidTopicError",
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
    "validate_topic_name",
]
