"""Every advertised (API, version) answers a well-formed request with a
response that decodes at that version, on one connection that stays open:
nothing is advertised and then half-served."""

import socket
import struct
import uuid

from kio.serial import entity_reader

from strom.broker import router
from strom.protocol.build import build
from strom.protocol.schemas import encode, request_class, response_class

from .test_bad_input import read_frame


def _frame(api_key, version, body, correlation_id):
    header = struct.pack(">hhih", api_key, version, correlation_id, 3) + b"all"
    if request_class(api_key, version).__flexible__:
        header += b"\x00"
    frame = header + body
    return struct.pack(">i", len(frame)) + frame


def _request(api_key, version, topic_id):
    values = {"acks": 1}  # Produce: acks=0 would get no response
    cls = request_class(api_key, version)
    if api_key in (0, 8, 9):  # Produce, OffsetCommit, OffsetFetch: one topic, by name or id
        values = {"acks": 1, "group_id": "v", "generation_id_or_member_epoch": -1,
                  "topics": [], "topic_data": []}
        entry = {"name": "versions" if api_key == 0 and version < 13 or api_key != 0 else None,
                 "topic_id": topic_id}
        if api_key == 0:
            values["topic_data"] = [{**entry, "partition_data": [{"index": 0, "records": None}]}]
        elif api_key == 8:
            values["topics"] = [{**entry, "partitions": [{"partition_index": 0, "committed_offset": 0}]}]
        elif version >= 8:
            values["groups"] = [{"group_id": "v", "topics": [{**entry, "partition_indexes": [0]}]}]
        else:
            values["topics"] = [{**entry, "partition_indexes": [0]}]
    return build(cls, values)


def test_every_advertised_version_answers(broker):
    topic = broker.broker.logs.create_topic("versions", 1)
    router.load_handlers()
    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as s:
        cid = 0
        for api in sorted(router.HANDLERS.values(), key=lambda a: a.key):
            for version in range(api.min_version, api.max_version + 1):
                cid += 1
                s.sendall(_frame(api.key, version, encode(_request(api.key, version, topic.topic_id)), cid))
                frame = read_frame(s)
                assert struct.unpack(">i", frame[:4])[0] == cid, (api.key, version)
                cls = response_class(api.key, version)
                offset = 5 if cls.__flexible__ and api.key != 18 else 4
                entity_reader(cls)(frame, offset)  # decodes at that version


def test_topic_ids_in_produce_v13_and_offsets_v10(broker):
    topic = broker.broker.logs.create_topic("ids", 1)
    produce = _request(0, 13, topic.topic_id)
    assert getattr(produce.topic_data[0], "name", None) is None  # v13 names topics by id
    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as s:
        s.sendall(_frame(0, 13, encode(produce), 1))
        response = entity_reader(response_class(0, 13))(read_frame(s), 5)[0]
    assert response.responses[0].topic_id == topic.topic_id
    assert response.responses[0].partition_responses[0].error_code != 3  # resolved by id
    unknown = _request(0, 13, uuid.uuid4())
    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as s:
        s.sendall(_frame(0, 13, encode(unknown), 2))
        response = entity_reader(response_class(0, 13))(read_frame(s), 5)[0]
    assert response.responses[0].partition_responses[0].error_code == 100  # UNKNOWN_TOPIC_ID
