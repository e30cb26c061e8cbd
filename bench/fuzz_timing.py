"""Micro-timing of the request bounds check on real captured Produce
requests (tests/faults/corpus/): the check alone, kio's decode alone,
and read_request (check + decode), in microseconds per request.

    .venv/bin/python -m bench.fuzz_timing
"""

import struct
import timeit
from pathlib import Path

from strom.broker import router
from strom.protocol.bounds import _Budget, check_request, entity_checker
from strom.protocol.framing import parse_request_header
from strom.protocol.schemas import _native_reader, read_request, request_class

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "faults" / "corpus"


def frames(path):
    data = path.read_bytes()
    pos = 0
    while pos < len(data):
        size = struct.unpack_from(">i", data, pos)[0]
        yield data[pos + 4:pos + 4 + size]
        pos += 4 + size


def main():
    router.load_handlers()
    for path in sorted(CORPUS.glob("*.bin")):
        for frame in frames(path):
            if struct.unpack(">h", frame[:2])[0] != 0:
                continue
            h = parse_request_header(frame, router.is_flexible)
            v, off = h.api_version, h.body_offset
            cls = request_class(0, v)
            generic = entity_checker(cls)
            reader = _native_reader(cls)
            n = 20000

            def best(fn):  # the least noisy of 7 runs on a shared machine
                return min(timeit.repeat(fn, number=n, repeat=7))

            t = {
                "check": best(lambda: check_request(0, v, frame, off)),
                "generic check": best(lambda: generic(frame, off, len(frame), _Budget())),
                "kio decode (before)": best(lambda: reader(frame, off)),
                "read_request (after: check + decode)": best(
                    lambda: read_request(0, v, frame, off)),
            }
            print(f"{path.stem} Produce v{v} ({len(frame)} B): " + ", ".join(
                f"{k} {s / n * 1e6:.2f} us" for k, s in t.items()))
            break


if __name__ == "__main__":
    main()
