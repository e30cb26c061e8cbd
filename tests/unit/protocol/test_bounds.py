"""Request bounds: every well-formed request of every served (API, version)
passes whole; every truncation, over-long length, over-cap array and
misplaced null is refused before kio reads it."""

import random
import struct

import pytest

from bench.fuzz_inputs import frame, mutate, random_request
from strom.broker import router
from strom.protocol import bounds
from strom.protocol.bounds import check_request, entity_checker
from strom.protocol.framing import MalformedFrameError, parse_request_header
from strom.protocol.schemas import read_request, request_class

router.load_handlers()
SERVED = [(a.key, v) for a in sorted(router.HANDLERS.values(), key=lambda a: a.key)
          for v in range(a.min_version, a.max_version + 1)]


def _body(api_key, version, seed):
    return random_request(random.Random(seed * 1000 + api_key * 50 + version), api_key, version)


@pytest.mark.parametrize("api_key,version", SERVED)
def test_well_formed_requests_pass_and_truncations_fail(api_key, version):
    for seed in range(8):
        body = _body(api_key, version, seed)
        assert check_request(api_key, version, body, 0) == len(body)
        read_request(api_key, version, body, 0)  # and kio agrees it decodes
        for cut in sorted({len(body) - 1, len(body) // 2, 0} - {len(body)}):
            if cut < 0:
                continue
            with pytest.raises(MalformedFrameError):
                check_request(api_key, version, body[:cut], 0)


def test_the_21_byte_metadata_frame_is_refused():
    data = bytes.fromhex("000000110003000c0000000100017800ffffffff7f")[4:]
    header = parse_request_header(data, router.is_flexible)
    with pytest.raises(MalformedFrameError, match="elements"):
        read_request(3, 12, data, header.body_offset)


@pytest.mark.parametrize("prefix,match", [
    (b"\xff\xff\xff\xff\x01", "null where the schema is not nullable"),  # legacy array -1
    (b"\x7f\xff\xff\xff\x01", "elements"),  # legacy array 2**31-1
    (b"\x00\x00\x00\x05\x01", "elements with"),  # 5 topics, 1 byte left
])
def test_legacy_array_lengths(prefix, match):
    # CreateTopics v4: topics [..] first; not nullable
    with pytest.raises(MalformedFrameError, match=match):
        check_request(19, 4, prefix, 0)


def test_null_in_a_non_nullable_compact_array():
    # OffsetFetch v8 (flexible): group_id-less; groups is the first field: compact 0 = null
    with pytest.raises(MalformedFrameError, match="not nullable"):
        check_request(9, 8, b"\x00\x00\x00", 0)


def test_nullable_array_may_be_null():
    # Metadata v12: topics nullable (compact 0), two bools, no tags
    assert check_request(3, 12, b"\x00\x01\x00\x00", 0) == 4


def test_caps(monkeypatch):
    monkeypatch.setattr(bounds, "MAX_ARRAY_ELEMENTS", 3)
    # Metadata v4: topics legacy array of 4 names of length 0, then a bool
    body = struct.pack(">i", 4) + b"\x00\x00" * 4 + b"\x01"
    with pytest.raises(MalformedFrameError, match="at most 3"):
        check_request(3, 4, body, 0)
    monkeypatch.setattr(bounds, "MAX_ARRAY_ELEMENTS", 1_000_000)
    assert check_request(3, 4, body, 0) == len(body)
    # 10,001 tagged fields in a Metadata v12 request
    tags = b"".join(b"\x05\x00" for _ in range(10_001))
    many = b"\x00\x00\x00" + b"\x91\x4e" + tags  # uvarint 10001
    with pytest.raises(MalformedFrameError, match="tagged fields"):
        check_request(3, 12, many, 0)


def test_tagged_field_running_past_the_frame():
    with pytest.raises(MalformedFrameError, match="runs past"):
        check_request(3, 12, b"\x00\x00\x00\x01\x05\x10", 0)


def test_produce_fast_path_matches_the_composed_checker():
    """The specialised Produce checker accepts and refuses exactly what
    the checker composed from the schema does, over mutated requests."""
    rng = random.Random(5)
    for version in range(3, 13):
        generic = entity_checker(request_class(0, version))
        for seed in range(150):
            body = _body(0, version, seed)
            if seed % 3:
                body = mutate(rng, body)
            outcomes = []
            for check in (lambda b: generic(b, 0, len(b), bounds._Budget()),
                          lambda b: check_request(0, version, b, 0)):
                try:
                    outcomes.append(check(body))
                except MalformedFrameError:
                    outcomes.append("refused")
            assert outcomes[0] == outcomes[1], (version, seed, body.hex())


def test_every_mutation_is_refused_or_decodes():
    """After the check passes, kio's reader either decodes or raises an
    ordinary exception: it is never asked for more than the frame holds."""
    rng = random.Random(11)
    for api_key, version in SERVED:
        for seed in range(4):
            body = mutate(rng, _body(api_key, version, seed))
            data = frame(api_key, version, body, 1)[4:]
            header = parse_request_header(data, router.is_flexible)
            try:
                read_request(api_key, version, data, header.body_offset)
            except MalformedFrameError:
                pass
            except Exception:  # noqa: BLE001  kio's own error on a bad value: fine
                pass
