"""Client-supplied strings cannot forge broker log lines: a client_id,
transactional id or group id with a newline stays on its own line."""

import socket

from strom.protocol.build import build
from strom.protocol.schemas import encode, request_class
from tests.faults.test_bad_input import read_frame

from bench.fuzz_inputs import frame

FORGED = "x\n2026-01-01 00:00:00,000 ERROR   strom.broker: FORGED \x1b[31mline"


def test_client_strings_are_escaped_in_the_log(broker_process):
    proc = broker_process().start()
    init = encode(build(request_class(22, 1), {"transactional_id": FORGED,
                                               "transaction_timeout": 1000}))
    join = encode(build(request_class(11, 3), {
        "group_id": FORGED, "session_timeout": 10_000, "rebalance_timeout": 10_000,
        "member_id": "", "protocol_type": "consumer",
        "protocols": [{"name": "range", "metadata": b""}]}))
    produce = encode(build(request_class(0, 9), {"acks": 1, "timeout": 1000, "topic_data": [
        {"name": "t", "partition_data": [{"index": 0, "records": None}]}]}))
    with socket.create_connection(("127.0.0.1", proc.port), timeout=10) as s:
        for api_key, version, body in ((22, 1, init), (11, 3, join), (0, 9, produce)):
            s.sendall(frame(api_key, version, body, 1, client_id=FORGED))
            read_frame(s)
    assert proc.stop() == 0
    output = proc.output_text()
    assert "transactional id x\\n" in output  # the line with client strings was written
    assert "group x\\n" in output
    lines = output.splitlines()
    assert not [line for line in lines if "FORGED" in line and not line.startswith("20")
                or line.startswith("2026-01-01")], output
    assert "\x1b" not in output


def test_group_ids_are_escaped_without_the_serve_formatter(broker, caplog):
    """An embedded broker logs through its host's handlers, which do not
    escape: the coordinator's own lines must."""
    join = encode(build(request_class(11, 3), {
        "group_id": FORGED, "session_timeout": 10_000, "rebalance_timeout": 10_000,
        "member_id": "", "protocol_type": "consumer",
        "protocols": [{"name": "range", "metadata": b""}]}))
    caplog.set_level("INFO", logger="strom")
    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as s:
        s.sendall(frame(11, 3, join, 1, client_id="c"))
        read_frame(s)
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("strom.coordinator")]
    assert any("group x\\n" in m for m in messages), messages
    assert not [m for m in messages if "\n" in m or "\x1b" in m], messages
