"""Heap settings for the `strom serve` process (glibc only; elsewhere a no-op).

A produce request's records arrive in buffers of up to a few MB, copied a
few times on their way to the log (socket read, frame, decoded request).
With glibc's defaults the heap gives freed memory back to the kernel as
soon as more than ~2x the largest recent buffer is free at its top, and
the next request faults every page in again: W1 (`bench/peers.py`, 1M x
100 B, acks=all) spent 0.27-0.28 s of kernel time per million records in
page faults, zeroing and `brk`, against 0.07-0.09 s with the settings
below (3 interleaved runs each; user time 0.12-0.20 s either way).

Buffers up to 4 MiB come from the heap, and up to 16 MiB of free heap is
kept for the next request instead of being returned at once. Only the
server process is tuned: an embedded broker leaves its host's heap alone.
"""

import ctypes
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 4 << 20
TRIM_THRESHOLD = 16 << 20


def tune() -> bool:
    """Apply the settings; False where the C library has no `mallopt`."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
