"""Protocol errors: one exception class per Kafka error code.

Handlers raise these (or map typed storage errors to them at the edge);
each carries the `code` to put in the response and whether the client
may retry. Class names are Kafka's, in CamelCase: UnknownTopicOrPartition,
OffsetOutOfRange, ...
"""

from kio.schema.errors import ErrorCode


class KafkaError(Exception):
    code: ErrorCode = ErrorCode.unknown_server_error

    @property
    def retriable(self) -> bool:
        return self.code.retriable


def _class_name(code: ErrorCode) -> str:
    return "".join(part.capitalize() for part in code.name.split("_"))


ERRORS: dict[ErrorCode, type[KafkaError]] = {
    code: type(_class_name(code), (KafkaError,), {"code": code, "__module__": __name__})
    for code in ErrorCode
}
globals().update({cls.__name__: cls for cls in ERRORS.values()})


def error_for(code: ErrorCode, message: str = "") -> KafkaError:
    return ERRORS[code](message or code.name)
