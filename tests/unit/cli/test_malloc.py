import platform
import sys

import pytest

from strom.cli import malloc


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="mallopt is glibc's; elsewhere tune() is a no-op by design")
def test_glibc_takes_the_heap_settings():
    assert malloc.tune() is True
