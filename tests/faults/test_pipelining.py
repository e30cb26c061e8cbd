"""A client that pipelines far more requests than the broker keeps in
flight, without reading, gets every response, in request order, with
fsync-waiting produces and immediate answers interleaved."""

import datetime
import socket
import struct

from kio.schema.errors import ErrorCode
from kio.serial import entity_reader

from strom.protocol.schemas import encode, request_class, response_class
from strom.records import Record, build_batch

from .test_bad_input import read_frame, request_bytes


def test_pipelined_requests_beyond_the_in_flight_limit_answer_in_order(broker):
    broker.broker.logs.create_topic("pipe", 1)
    produce = request_class(0, 9)
    topic_cls = produce.__dataclass_fields__["topic_data"].type.__args__[0]
    part_cls = topic_cls.__dataclass_fields__["partition_data"].type.__args__[0]
    meta = request_class(3, 12)
    n = 3000  # many times connection.py's in-flight limit (256)
    frames = []
    for i in range(n):
        if i % 2:
            body = encode(meta(topics=None, allow_auto_topic_creation=False,
                               include_topic_authorized_operations=False))
            frames.append(request_bytes(3, 12, body, correlation_id=i))
        else:
            # ~2 KB each: the burst spans several reads, so the broker must
            # stop dispatching at its in-flight limit and resume later.
            batch = build_batch([Record(None, b"v%d " % i + b"x" * 2000, 1000)])
            body = encode(produce(transactional_id=None, acks=-1,
                                  timeout=datetime.timedelta(seconds=10),
                                  topic_data=(topic_cls(name="pipe", partition_data=(
                                      part_cls(index=0, records=batch),)),)))
            frames.append(request_bytes(0, 9, body, correlation_id=i))
    with socket.create_connection(("127.0.0.1", broker.port), timeout=30) as s:
        s.sendall(b"".join(frames))  # the broker pauses reading, then resumes
        offsets = []
        for i in range(n):
            frame = read_frame(s)
            assert struct.unpack_from(">i", frame)[0] == i
            if i % 2 == 0:
                response = entity_reader(response_class(0, 9))(frame, 5)[0]
                part = response.responses[0].partition_responses[0]
                assert part.error_code == ErrorCode.none
                offsets.append(part.base_offset)
    assert offsets == list(range(n // 2))
    assert broker.broker.logs.get_log("pipe", 0).log_end_offset == n // 2
