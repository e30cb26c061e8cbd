"""Fixtures for integration tests: real brokers on ephemeral loopback ports,
real clients. `broker` runs in-process (EmbeddedBroker, disk storage in a
temp dir); `broker_process` runs `strom serve` as a child process, for
tests that restart or SIGKILL it."""

import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from strom.embedded import EmbeddedBroker


def wait_for(predicate, timeout=20.0, interval=0.02, message="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


@pytest.fixture
def broker(tmp_path):
    with EmbeddedBroker(data_dir=str(tmp_path / "data"), storage="disk") as b:
        yield b


class BrokerProcess:
    def __init__(self, data_dir, *extra):
        self.data_dir = str(data_dir)
        self.extra = extra
        self.preexec_fn = None  # e.g. to lower RLIMIT_NOFILE in the broker process
        self.env = {}  # extra environment, e.g. STROM_CRASH_AT or STROM_* configs
        # Read its output on a thread into `output` after start (else nobody
        # reads it: a long test's broker blocks on a full pipe). Off for
        # tests that read proc.stdout themselves.
        self.drain = False
        self.proc = None
        self.port = 0

    def start(self):
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        args = [sys.executable, "-m", "strom.cli.main", "serve", "--port", str(self.port),
                "--data-dir", self.data_dir, *self.extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=env, text=True, preexec_fn=self.preexec_fn)
        deadline = time.monotonic() + 20
        self.output = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.output.append(line)
            m = re.search(r"bootstrap\.servers=([\w.]+):(\d+)", line)
            if m:
                self.port = int(m.group(2))
                if self.drain:
                    threading.Thread(target=self._drain, args=(self.proc, self.output),
                                     daemon=True).start()
                return self
        raise AssertionError("broker did not start:\n" + "".join(self.output))

    @staticmethod
    def _drain(proc, output):
        for line in proc.stdout:
            output.append(line)

    @property
    def bootstrap_servers(self):
        return f"127.0.0.1:{self.port}"

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(20)
        return self.proc.returncode


@pytest.fixture
def broker_process(tmp_path):
    procs = []

    def make(*extra):
        p = BrokerProcess(tmp_path / "data", *extra)
        procs.append(p)
        return p

    yield make
    for p in procs:
        if p.proc and p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait(10)
