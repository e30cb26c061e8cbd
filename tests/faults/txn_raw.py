"""Raw, kio-encoded transactional requests over one socket, for the cases
real clients will not send (a produce to a partition outside the
transaction, a stale epoch, a wrong producer id) and for exact error codes
clients hide behind retries (UNSTABLE_OFFSET_COMMIT).

    raw = RawClient(port)
    error, pid, epoch = raw.init_producer_id("tid", 10_000)
    raw.add_partitions("tid", pid, epoch, {"t": [0]})   # {(t, p): ErrorCode}
    raw.produce("t", 0, batch, transactional_id="tid")  # partition ErrorCode
    raw.end_txn("tid", pid, epoch, commit=True)         # ErrorCode
"""

import dataclasses
import datetime
import socket
import struct
import types
import typing

from kio.schema.errors import ErrorCode
from kio.serial import entity_reader

from strom.protocol.schemas import encode, request_class, response_class
from strom.records import Record, build_batch


def _entity_type(annotation):
    """The entity class inside `tuple[X, ...] | None`, or None."""
    args = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        inner = [a for a in args if a is not type(None)]
        return _entity_type(inner[0]) if inner else None
    if typing.get_origin(annotation) is tuple and args:
        return args[0] if dataclasses.is_dataclass(args[0]) else None
    return annotation if dataclasses.is_dataclass(annotation) else None


def entity(cls, **values):
    """Build a kio entity from keyword values; nested entities as dicts or
    lists of dicts, lists as tuples."""
    kwargs = {}
    for name, f in cls.__dataclass_fields__.items():
        if name.startswith("__") or name not in values:
            continue
        value, sub = values[name], _entity_type(f.type)
        if sub is not None and isinstance(value, dict):
            value = entity(sub, **value)
        elif isinstance(value, (list, tuple)):
            value = tuple(entity(sub, **v) if isinstance(v, dict) else v for v in value)
        kwargs[name] = value
    return cls(**kwargs)


class RawClient:
    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.correlation_id = 0

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def call(self, api_key: int, version: int, **fields):
        cls = request_class(api_key, version)
        self.correlation_id += 1
        header = struct.pack(">hhih", api_key, version, self.correlation_id, 4) + b"test"
        if cls.__flexible__:
            header += b"\x00"
        frame = header + encode(entity(cls, **fields))
        self.sock.sendall(struct.pack(">i", len(frame)) + frame)
        size = struct.unpack(">i", self._recv(4))[0]
        reply = self._recv(size)
        assert struct.unpack_from(">i", reply)[0] == self.correlation_id
        rcls = response_class(api_key, version)
        return entity_reader(rcls)(reply, 5 if rcls.__flexible__ else 4)[0]

    def _recv(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            data += chunk
        return data

    # -- the transactional APIs --------------------------------------------------------

    def find_coordinator(self, key: str, key_type: int = 1):
        r = self.call(10, 4, key_type=key_type, coordinator_keys=[key])
        return r.coordinators[0]

    def init_producer_id(self, transactional_id, timeout_ms=60_000, producer_id=-1,
                         producer_epoch=-1):
        r = self.call(22, 4, transactional_id=transactional_id,
                      transaction_timeout=datetime.timedelta(milliseconds=timeout_ms),
                      producer_id=producer_id, producer_epoch=producer_epoch)
        return r.error_code, r.producer_id, r.producer_epoch

    def add_partitions(self, transactional_id, producer_id, producer_epoch, topics):
        r = self.call(24, 3, v3_and_below_transactional_id=transactional_id,
                      v3_and_below_producer_id=producer_id,
                      v3_and_below_producer_epoch=producer_epoch,
                      v3_and_below_topics=[{"name": t, "partitions": list(ps)}
                                           for t, ps in topics.items()])
        return {(t.name, p.partition_index): p.partition_error_code
                for t in r.results_by_topic_v3_and_below for p in t.results_by_partition}

    def add_offsets(self, transactional_id, producer_id, producer_epoch, group_id):
        return self.call(25, 3, transactional_id=transactional_id, producer_id=producer_id,
                         producer_epoch=producer_epoch, group_id=group_id).error_code

    def end_txn(self, transactional_id, producer_id, producer_epoch, commit):
        return self.call(26, 3, transactional_id=transactional_id, producer_id=producer_id,
                         producer_epoch=producer_epoch, committed=commit).error_code

    def txn_offset_commit(self, transactional_id, group_id, producer_id, producer_epoch,
                          offsets, generation_id=-1, member_id="", group_instance_id=None):
        """offsets {(topic, partition): offset} -> {(topic, partition): ErrorCode}"""
        by_topic = {}
        for (t, p), o in offsets.items():
            by_topic.setdefault(t, []).append({"partition_index": p, "committed_offset": o,
                                               "committed_leader_epoch": -1,
                                               "committed_metadata": ""})
        r = self.call(28, 3, transactional_id=transactional_id, group_id=group_id,
                      producer_id=producer_id, producer_epoch=producer_epoch,
                      generation_id=generation_id, member_id=member_id,
                      group_instance_id=group_instance_id,
                      topics=[{"name": t, "partitions": ps} for t, ps in by_topic.items()])
        return {(t.name, p.partition_index): p.error_code for t in r.topics for p in t.partitions}

    def offset_fetch(self, group_id, partitions, require_stable=True):
        """{(topic, partition): (ErrorCode, committed_offset)} (OffsetFetch v7)."""
        by_topic = {}
        for t, p in partitions:
            by_topic.setdefault(t, []).append(p)
        r = self.call(9, 7, group_id=group_id, require_stable=require_stable,
                      topics=[{"name": t, "partition_indexes": ps} for t, ps in by_topic.items()])
        assert r.error_code == ErrorCode.none, r
        return {(t.name, p.partition_index): (p.error_code, p.committed_offset)
                for t in r.topics for p in t.partitions}

    def produce(self, topic, partition, batch: bytes, transactional_id=None, acks=-1):
        r = self.call(0, 9, transactional_id=transactional_id, acks=acks,
                      timeout=datetime.timedelta(seconds=10),
                      topic_data=[{"name": topic, "partition_data": [
                          {"index": partition, "records": batch}]}])
        return r.responses[0].partition_responses[0].error_code


def txn_batch(producer_id, producer_epoch, base_sequence, values):
    """A transactional data batch of `values`."""
    return build_batch([Record(v, v, 1_700_000_000_000) for v in values],
                       producer_id=producer_id, producer_epoch=producer_epoch,
                       base_sequence=base_sequence, is_transactional=True)
