"""Map typed storage and record errors to Kafka error codes, at the edge."""

from kio.schema.errors import ErrorCode

from strom.protocol.errors import KafkaError
from strom.records.errors import CorruptRecordError, DecompressionLimitError, InvalidRecordError
from strom.storage import errors as storage
from strom.storage import producer_state

_CODES = [
    (CorruptRecordError, ErrorCode.corrupt_message),
    (DecompressionLimitError, ErrorCode.message_too_large),
    (InvalidRecordError, ErrorCode.invalid_record),
    (storage.OffsetOutOfRangeError, ErrorCode.offset_out_of_range),
    (storage.RecordTooLargeError, ErrorCode.message_too_large),
    (storage.InvalidConfigError, ErrorCode.invalid_config),
    (storage.TopicExistsError, ErrorCode.topic_already_exists),
    (storage.UnknownTopicError, ErrorCode.unknown_topic_or_partition),
    (storage.InvalidTopicError, ErrorCode.invalid_topic_exception),
    (storage.InvalidPartitionsError, ErrorCode.invalid_partitions),
    (storage.LogWriteError, ErrorCode.kafka_storage_error),
    (producer_state.OutOfOrderSequenceError, ErrorCode.out_of_order_sequence_number),
    (producer_state.CoordinatorFencedError, ErrorCode.transaction_coordinator_fenced),
    (producer_state.InvalidProducerEpochError, ErrorCode.invalid_producer_epoch),
    (producer_state.InvalidTxnStateError, ErrorCode.invalid_txn_state),
]


def error_code(exc: Exception) -> ErrorCode:
    if isinstance(exc, KafkaError):
        return exc.code
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code
    return ErrorCode.unknown_server_error
