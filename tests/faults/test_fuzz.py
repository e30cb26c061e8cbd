"""A bounded slice of the fuzzer (bench/fuzz.py): a few thousand hostile
inputs against a broker child process, which must neither exit nor log a
traceback, and must still serve the canary."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def test_a_fuzz_slice_neither_crashes_nor_logs_a_traceback():
    out = subprocess.run(
        [sys.executable, "-m", "bench.fuzz", "--inputs", "3000", "--seed", "7", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=240)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["inputs"] >= 3000
    assert report["crashes"] == 0, report
    assert report["tracebacks"] == 0, report["traceback_kinds"]
    assert report["canary_received"] > 0, report
