"""Memory a client can make the broker hold through its connections is
bounded: unread responses (pipelined Fetches that are never read),
partial frames and requests in flight (the `queued.max.request.bytes`
budget), and a client that never reads is disconnected. The broker is a
child process; its RSS is read from /proc."""

import socket
import struct
import threading
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from bench.broker import status_kb
from bench.fuzz_inputs import frame
from strom.protocol.build import build
from strom.protocol.schemas import encode, request_class
from tests.integration.conftest import wait_for

MB = 1 << 20


def rss(proc) -> int:
    return status_kb(proc.proc.pid) * 1024


def canary(proc):
    admin = AdminClient({"bootstrap.servers": proc.bootstrap_servers})
    assert admin.list_topics(timeout=10).cluster_id


def fill_topic(proc, topic: str, megabytes: int):
    admin = AdminClient({"bootstrap.servers": proc.bootstrap_servers})
    admin.create_topics([NewTopic(topic, 1)])[topic].result(10)
    p = Producer({"bootstrap.servers": proc.bootstrap_servers, "linger.ms": 20,
                  "message.max.bytes": 2 * MB, "batch.size": MB})
    value = b"v" * (256 * 1024)
    for _ in range(megabytes * 4):
        p.produce(topic, value)
        p.poll(0)
    assert p.flush(30) == 0


def big_fetch(topic: str, correlation_id: int) -> bytes:
    body = encode(build(request_class(1, 11), {
        "max_wait": 0, "min_bytes": 1, "max_bytes": 50 * MB, "topics": [
            {"topic": topic, "partitions": [
                {"partition": 0, "fetch_offset": 0, "partition_max_bytes": 50 * MB}]}]}))
    return frame(1, 11, body, correlation_id)


def test_pipelined_fetches_that_are_never_read_hold_one_response(broker_process):
    proc = broker_process().start()
    fill_topic(proc, "big", 24)
    canary(proc)
    before = rss(proc)
    s = socket.create_connection(("127.0.0.1", proc.port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(b"".join(big_fetch("big", i) for i in range(40)))  # ~2.4 KB, never read
    # Answered on a new connection, so after the broker's loop has read the
    # 40 fetches (already in its socket buffer): had it built every response
    # as it read them (the old code did, in that one pass), RSS shows it now.
    canary(proc)
    grown = rss(proc) - before
    assert grown < 120 * MB, f"RSS grew {grown / MB:.0f} MB for one unread connection"
    s.close()


def test_partial_big_frames_are_held_within_the_budget(broker_process):
    proc = broker_process().start()
    canary(proc)
    before = rss(proc)
    socks = [socket.create_connection(("127.0.0.1", proc.port)) for _ in range(8)]
    chunk = bytes(MB)
    deadline = time.monotonic() + 8

    def send(s):  # a 99 MiB frame, never finished
        s.settimeout(0.5)
        try:
            s.sendall(struct.pack(">i", 99 * MB))
            for _ in range(95):
                if time.monotonic() > deadline:
                    return
                s.sendall(chunk)
        except OSError:  # paused by the broker: it stopped reading this one
            return

    threads = [threading.Thread(target=send, args=(s,)) for s in socks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    canary(proc)
    grown = rss(proc) - before
    # 8 x 95 MiB were sent; the default budget (256 MiB) holds two frames
    assert grown < 420 * MB, f"RSS grew {grown / MB:.0f} MB for partial frames"
    for s in socks:
        s.close()
    assert proc.proc.poll() is None


def test_a_client_that_never_reads_is_disconnected(broker_process, monkeypatch):
    monkeypatch.setenv("STROM_CONNECTIONS_MAX_UNREAD_MS", "1000")
    proc = broker_process().start()
    fill_topic(proc, "big", 8)
    s = socket.create_connection(("127.0.0.1", proc.port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(big_fetch("big", 1))

    def closed():
        return "read none of" in proc.output_text()

    wait_for(closed, timeout=15, message="the broker to drop the non-reading client")
    canary(proc)
    s.close()


def test_one_connection_holds_at_most_a_quarter_of_the_budget(broker_process, monkeypatch):
    """Requests that park (a JoinGroup waits for the rebalance) hold their
    bytes; one client pipelining many cannot take the whole budget."""
    join = encode(build(request_class(11, 3), {
        "group_id": "parked", "session_timeout": 30_000, "rebalance_timeout": 30_000,
        "member_id": "", "protocol_type": "consumer",
        "protocols": [{"name": "range", "metadata": bytes(900_000)}]}))
    joins = [frame(11, 3, join, i) for i in range(12)]
    # eight of them fill the budget exactly: nothing else would fit
    monkeypatch.setenv("STROM_QUEUED_MAX_REQUEST_BYTES", str(8 * len(joins[0])))
    proc = broker_process().start()
    # the first member joins and is answered; the next ones wait for a rebalance
    hog = socket.create_connection(("127.0.0.1", proc.port), timeout=3)
    try:
        hog.sendall(b"".join(joins))  # ~11 MB
    except socket.timeout:
        pass  # the broker stopped reading it: what this test wants
    canary(proc)  # small requests of other clients still get in
    hog.close()
