"""The `strom` command against a real broker, as a user runs it."""

import json
import subprocess
import sys


def strom(*args, input=None, check=True):
    proc = subprocess.run([sys.executable, "-m", "strom.cli.main", *args], input=input,
                          capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"strom {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_topic_produce_consume_round_trip(broker):
    b = ["-b", broker.bootstrap_servers]
    strom("topic", "create", "orders", "-p", "3", "-c", "retention.ms=3600000", *b)
    assert "orders" in strom("topic", "list", *b).stdout
    lines = "".join(f"k{i}:value {i}\n" for i in range(30))
    strom("produce", "orders", "-K", ":", "-H", "source=test", *b, input=lines)
    out = strom("consume", "orders", "--from-beginning", "-n", "30", "--json", *b).stdout
    records = [json.loads(line) for line in out.splitlines()]
    assert sorted(r["value"] for r in records) == sorted(f"value {i}" for i in range(30))
    assert all(r["headers"] == {"source": "test"} and r["key"].startswith("k") for r in records)
    one = [r for r in records if r["partition"] == records[0]["partition"]]
    assert [r["offset"] for r in one] == list(range(len(one)))
    desc = strom("topic", "describe", "orders", *b).stdout
    assert "retention.ms" in desc and "3600000" in desc
    strom("topic", "alter", "orders", "-c", "cleanup.policy=compact", "-p", "4", *b)
    assert "compact" in strom("topic", "describe", "orders", *b).stdout
    ts = records[0]["timestamp"]
    by_time = strom("consume", "orders", "--timestamp", str(ts), "-n", "1", *b).stdout
    assert by_time.strip().startswith("value")
    strom("topic", "delete", "orders", *b)
    assert "orders" not in strom("topic", "list", *b).stdout


def test_json_produce_and_group_commands(broker):
    b = ["-b", broker.bootstrap_servers]
    strom("topic", "create", "events", *b)
    events = "".join(json.dumps({"key": f"u{i}", "value": {"n": i}, "headers": {"t": "x"}}) + "\n"
                     for i in range(5))
    strom("produce", "events", "--json", *b, input=events)
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": "readers",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe(["events"])
    got = []
    while len(got) < 5:
        m = c.poll(0.5)
        if m and not m.error():
            got.append(m)
    c.commit(got[-1], asynchronous=False)
    refused = strom("group", "reset-offsets", "readers", "-t", "events", "--to-earliest", *b,
                    check=False)
    assert refused.returncode == 1 and "active member" in refused.stderr
    c.close()
    assert "readers" in strom("group", "list", *b).stdout
    desc = strom("group", "describe", "readers", *b).stdout
    assert "events" in desc and " 5 " in desc
    strom("group", "reset-offsets", "readers", "-t", "events", "--to-offset", "2", *b)
    assert broker.broker.groups.committed("readers")[("events", 0)]["offset"] == 2
    strom("group", "delete", "readers", *b)
    assert "readers" not in strom("group", "list", *b).stdout


def test_errors_are_one_line_without_traceback(broker):
    cases = [
        ("topic", "list", "-b", "127.0.0.1:1"),
        ("consume", "no-such-topic", "-b", broker.bootstrap_servers),
        ("topic", "delete", "no-such-topic", "-b", broker.bootstrap_servers),
        ("topic", "create", "x", "-c", "notapair", "-b", broker.bootstrap_servers),
        ("group", "describe", "no-such-group", "-b", broker.bootstrap_servers),
    ]
    for args in cases:
        proc = strom(*args, check=False)
        assert proc.returncode != 0, args
        assert "Traceback" not in proc.stderr + proc.stdout, args
        assert proc.stderr.strip().startswith("error:"), (args, proc.stderr)
