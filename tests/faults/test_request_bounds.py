"""Lengths and nulls a request lies about: a closed connection, one
warning line, no traceback, and the broker (a child process, so an abort
would show) keeps serving."""

import socket
import struct

from confluent_kafka.admin import AdminClient

from tests.faults.test_bad_input import assert_closed, request_bytes

# Metadata v12 whose topics array claims 2**35 elements: kio alone
# allocates 274 GB for it and aborts the process.
HUGE_ARRAY = bytes.fromhex("000000110003000c0000000100017800ffffffff7f")

BAD = [
    HUGE_ARRAY,
    request_bytes(19, 4, b"\xff\xff\xff\xff" + b"\x00" * 5),  # CreateTopics v4, topics null
    request_bytes(11, 5, b"\x00\x01g" + b"\x00" * 10 + b"\xff\xff\xff\xff"),  # JoinGroup strings null
    request_bytes(3, 4, struct.pack(">i", 0x7FFFFFFF) + b"\x00"),  # Metadata v4, 2**31-1 topics
    request_bytes(1, 11, b"\x00" * 20 + b"\x7f\xff\xff\xff"),  # Fetch v11, huge topics
    request_bytes(0, 9, b"\x00\x00\x01" + b"\x00" * 4 + b"\xff\xff\xff\xff\x0f"),  # Produce v9
]


def test_lying_lengths_and_nulls_close_the_connection_without_traceback(broker_process):
    proc = broker_process().start()
    for payload in BAD:
        with socket.create_connection(("127.0.0.1", proc.port), timeout=10) as s:
            s.sendall(payload)
            assert_closed(s)
        assert proc.proc.poll() is None, "the broker died"
    admin = AdminClient({"bootstrap.servers": proc.bootstrap_servers})
    assert admin.list_topics(timeout=10).cluster_id
    assert proc.stop() == 0
    output = proc.output_text()
    assert "Traceback" not in output, output
    closing = [line for line in output.splitlines() if "closing connection from" in line]
    assert len(closing) == len(BAD), output
    assert all("WARNING" in line for line in closing), closing
