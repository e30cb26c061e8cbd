"""Bad input from a raw socket: the right error code or a closed
connection, nothing corrupted, and the broker keeps serving others."""

import socket
import struct

import pytest
from confluent_kafka.admin import AdminClient
from kio.schema.errors import ErrorCode

from strom.protocol.schemas import encode, request_class, response_class
from strom.records import Record, build_batch


def connect(broker):
    return socket.create_connection(("127.0.0.1", broker.port), timeout=10)


def request_bytes(api_key, version, body: bytes, correlation_id=7, tagged_header=None):
    header = struct.pack(">hhih", api_key, version, correlation_id, 4) + b"test"
    flexible = tagged_header if tagged_header is not None else request_class(api_key, version).__flexible__
    if flexible:
        header += b"\x00"
    frame = header + body
    return struct.pack(">i", len(frame)) + frame


def read_frame(sock) -> bytes:
    size = struct.unpack(">i", recv_exactly(sock, 4))[0]
    return recv_exactly(sock, size)


def recv_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def call(broker, api_key, version, request):
    from kio.serial import entity_reader

    with connect(broker) as s:
        s.sendall(request_bytes(api_key, version, encode(request)))
        frame = read_frame(s)
    cls = response_class(api_key, version)
    offset = 5 if cls.__flexible__ and api_key != 18 else 4
    assert struct.unpack(">i", frame[:4])[0] == 7
    return entity_reader(cls)(frame, offset)[0]


def assert_closed(sock):
    sock.settimeout(10)
    try:
        assert sock.recv(1) == b""
    except ConnectionResetError:
        pass


def assert_still_serving(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
    assert admin.list_topics(timeout=10).cluster_id


@pytest.mark.parametrize("payload", [
    struct.pack(">i", 10) + b"\xff" * 10,                      # garbage header
    struct.pack(">i", 3) + b"abc",                             # shorter than a header
    struct.pack(">i", 0x7FFFFFF0),                             # oversized length prefix
    struct.pack(">i", -5),                                     # negative length
    request_bytes(999, 0, b"", tagged_header=False),           # unknown api key
    request_bytes(3, 99, b"", tagged_header=False),            # unsupported Metadata version
    request_bytes(0, 9, b"\x01\x02\x03"),                      # body that does not decode
])
def test_malformed_input_closes_only_that_connection(broker, payload, caplog):
    with connect(broker) as s:
        s.sendall(payload)
        assert_closed(s)
    assert_still_serving(broker)


def test_unknown_api_versions_version_gets_v0_layout_reply(broker):
    with connect(broker) as s:
        s.sendall(request_bytes(18, 42, b"\x00", tagged_header=False))
        frame = read_frame(s)
    correlation_id, error, count = struct.unpack_from(">ihi", frame)
    assert (correlation_id, error) == (7, ErrorCode.unsupported_version)
    apis = {struct.unpack_from(">h", frame, 10 + 6 * i)[0] for i in range(count)}
    assert {0, 1, 3, 18} <= apis
    assert len(frame) == 10 + 6 * count  # v0 layout: no throttle time, no tags


def test_unknown_tagged_fields_are_skipped(broker):
    req_cls = request_class(3, 12)
    body = encode(req_cls(topics=None, allow_auto_topic_creation=False,
                          include_topic_authorized_operations=False))
    # Add an unknown tag (id 77, 3 bytes) to the request's tagged fields.
    body = body[:-1] + b"\x01" + bytes([77, 3]) + b"xyz"
    with connect(broker) as s:
        s.sendall(request_bytes(3, 12, body))
        frame = read_frame(s)
    from kio.serial import entity_reader

    response = entity_reader(response_class(3, 12))(frame, 5)[0]
    assert response.brokers[0].port == broker.port


def test_corrupt_batch_crc_is_refused_and_nothing_is_written(broker):
    broker.broker.logs.create_topic("crc", 1)
    batch = bytearray(build_batch([Record(b"k", b"value", 1000)]))
    batch[-1] ^= 0xFF
    produce = request_class(0, 9)
    topic_cls = produce.__dataclass_fields__["topic_data"].type.__args__[0]
    part_cls = topic_cls.__dataclass_fields__["partition_data"].type.__args__[0]
    import datetime

    request = produce(transactional_id=None, acks=-1, timeout=datetime.timedelta(seconds=5),
                      topic_data=(topic_cls(name="crc", partition_data=(
                          part_cls(index=0, records=bytes(batch)),)),))
    response = call(broker, 0, 9, request)
    part = response.responses[0].partition_responses[0]
    assert part.error_code == ErrorCode.corrupt_message
    assert broker.broker.logs.get_log("crc", 0).log_end_offset == 0
    assert_still_serving(broker)


@pytest.mark.parametrize("name", ["bad name", "a" * 250, "..", "ünicode"])
def test_invalid_topic_names(broker, name):
    meta = request_class(3, 12)
    topic_cls = meta.__dataclass_fields__["topics"].type.__args__[0].__args__[0]
    response = call(broker, 3, 12, meta(
        topics=(topic_cls(topic_id=None, name=name),), allow_auto_topic_creation=True,
        include_topic_authorized_operations=False))
    assert response.topics[0].error_code == ErrorCode.invalid_topic_exception
    assert name not in broker.broker.logs.topics
