"""Record batches that pass their CRC but must not enter the log: garbage
records, absurd counts, compression bombs. Each is refused with Kafka's
error code for its partition, nothing is written, and the broker keeps
serving (and its memory stays bounded)."""

import datetime
import socket
import threading
import time

import cramjam
from confluent_kafka import Producer
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader

from bench.broker import status_kb
from strom.protocol.schemas import encode, request_class, response_class
from tests.faults.test_bad_input import assert_still_serving, call, read_frame, request_bytes
from tests.unit.records.helpers import bomb, fields, raw_batch, record

ZSTD = 4

MiB = 1 << 20


def produce_request(topic: str, batch: bytes, acks: int = -1):
    produce = request_class(0, 9)
    topic_cls = produce.__dataclass_fields__["topic_data"].type.__args__[0]
    part_cls = topic_cls.__dataclass_fields__["partition_data"].type.__args__[0]
    return produce(transactional_id=None, acks=acks, timeout=datetime.timedelta(seconds=5),
                   topic_data=(topic_cls(name=topic, partition_data=(
                       part_cls(index=0, records=batch),)),))


def produce_error(broker, topic: str, batch: bytes) -> int:
    response = call(broker, 0, 9, produce_request(topic, batch))
    return response.responses[0].partition_responses[0].error_code


def test_garbage_records_with_a_valid_crc_are_invalid_record_and_not_stored(broker):
    broker.broker.logs.create_topic("garbage", 1)
    batch = raw_batch(bytes(range(7, 250)) * 2, count=4)
    assert produce_error(broker, "garbage", batch) == ErrorCode.invalid_record
    assert broker.broker.logs.get_log("garbage", 0).log_end_offset == 0
    good = raw_batch(record(fields(0)) + record(fields(1)), count=2)
    assert produce_error(broker, "garbage", good) == ErrorCode.none
    assert broker.broker.logs.get_log("garbage", 0).log_end_offset == 2


def test_an_absurd_last_offset_delta_does_not_move_the_high_watermark(broker):
    broker.broker.logs.create_topic("absurd", 1)
    batch = raw_batch(b"\x00" * 9, count=2**31 - 1)  # 70 bytes claiming 2**31 - 1 records
    for _ in range(3):
        assert produce_error(broker, "absurd", batch) == ErrorCode.invalid_record
    assert broker.broker.logs.get_log("absurd", 0).high_watermark == 0


def _peak_rss_mb(pid: int) -> float:
    return status_kb(pid, "VmHWM") / 1024


def test_compression_bombs_are_refused_and_memory_and_latency_stay_bounded(broker_process):
    # 8 KB of zstd that inflates to 256 MiB of zeros: today's broker stores
    # it, and reading it back took 0.5 GB and seconds. Now it is read as
    # Kafka reads it, up to the 8 MiB limit: zeros are INVALID_RECORD;
    # well-formed records past the limit are MESSAGE_TOO_LARGE.
    server = broker_process().start()
    zeros = raw_batch(bomb(ZSTD, 256), count=1000, codec=ZSTD)
    assert len(zeros) < 32 * 1024
    body = b"".join(record(fields(i, value=bytes(100))) for i in range(90_000))  # 9.6 MiB
    assert len(body) > 8 * MiB
    well_formed = raw_batch(cramjam.zstd.compress(body), count=90_000, codec=ZSTD)
    assert len(well_formed) < MiB
    bombs = [zeros, well_formed] * 3
    canary = Producer({"bootstrap.servers": server.bootstrap_servers, "linger.ms": 0})
    canary.produce("canary", b"first")  # auto-creates the topic
    assert canary.flush(20) == 0
    call(server, 19, 4, _create_topics_request("bomb"))
    peak_before = _peak_rss_mb(server.proc.pid)

    results = []

    def send_bombs():
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
            for i, batch in enumerate(bombs):
                s.sendall(request_bytes(0, 9, encode(produce_request("bomb", batch)), correlation_id=i))
            for _ in bombs:
                frame = read_frame(s)
                response = entity_reader(response_class(0, 9))(frame, 5)[0]  # flexible header
                results.append(response.responses[0].partition_responses[0].error_code)

    sender = threading.Thread(target=send_bombs)
    sender.start()
    latencies = []
    while sender.is_alive() or not latencies:
        start = time.perf_counter()
        canary.produce("canary", b"alive")
        assert canary.flush(20) == 0
        latencies.append(time.perf_counter() - start)
    sender.join(30)
    assert results == [ErrorCode.invalid_record, ErrorCode.message_too_large] * 3
    assert max(latencies) < 0.5, f"canary produce took {max(latencies):.2f}s during the bombs"
    grown = _peak_rss_mb(server.proc.pid) - peak_before
    assert grown < 64, f"peak RSS grew by {grown:.0f} MB"
    assert call(server, 2, 1, _list_offsets_request("bomb", -1)).topics[0].partitions[0].offset == 0
    assert_still_serving(server)


def _list_offsets_request(name: str, timestamp: int):
    cls = request_class(2, 1)
    topic_cls = cls.__dataclass_fields__["topics"].type.__args__[0]
    part_cls = topic_cls.__dataclass_fields__["partitions"].type.__args__[0]
    return cls(replica_id=-1, topics=(topic_cls(name=name, partitions=(
        part_cls(partition_index=0, timestamp=timestamp),)),))


def _create_topics_request(name: str):
    cls = request_class(19, 4)
    topic_cls = cls.__dataclass_fields__["topics"].type.__args__[0]
    return cls(topics=(topic_cls(name=name, num_partitions=1, replication_factor=1,
                                 assignments=(), configs=()),),
               timeout=datetime.timedelta(seconds=10), validate_only=False)


def test_each_partition_gets_its_own_answer(broker):
    broker.broker.logs.create_topic("mixed", 2)
    produce = request_class(0, 9)
    topic_cls = produce.__dataclass_fields__["topic_data"].type.__args__[0]
    part_cls = topic_cls.__dataclass_fields__["partition_data"].type.__args__[0]
    good = raw_batch(record(fields(0)), count=1)
    bad = raw_batch(record(fields(0)) + b"\x00", count=1)  # a trailing byte
    request = produce(transactional_id=None, acks=1, timeout=datetime.timedelta(seconds=5),
                      topic_data=(topic_cls(name="mixed", partition_data=(
                          part_cls(index=0, records=bad), part_cls(index=1, records=good))),))
    parts = call(broker, 0, 9, request).responses[0].partition_responses
    assert [(p.index, p.error_code) for p in parts] == [
        (0, ErrorCode.invalid_record), (1, ErrorCode.none)]
    logs = broker.broker.logs
    assert (logs.get_log("mixed", 0).log_end_offset, logs.get_log("mixed", 1).log_end_offset) == (0, 1)
