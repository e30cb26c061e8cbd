from strom.protocol.framing import parse_request_header, skip_tagged_fields
from strom.protocol.schemas import encode, lenient_reader, read_request, request_class


def test_unknown_tags_are_skipped_at_every_level():
    cls = request_class(3, 12)
    topic_cls = cls.__dataclass_fields__["topics"].type.__args__[0].__args__[0]
    request = cls(topics=(topic_cls(topic_id=None, name="abc"),), allow_auto_topic_creation=True,
                  include_topic_authorized_operations=False)
    raw = encode(request)
    # topics: [len+1] then topic_id (16) name (compact: len+1, "abc") then the topic's tags
    pos = 1 + 16 + 1 + 3
    nested = raw[:pos] + b"\x01\x63\x02zz" + raw[pos + 1:]  # tag 99, two bytes
    top = nested[:-1] + b"\x02\x05\x01a\x06\x00"  # two unknown top-level tags
    decoded, size = read_request(3, 12, top, 0)
    assert decoded == request and size == len(top)
    assert lenient_reader(cls)(raw, 0) == (request, len(raw))


def test_request_header_v2_skips_tags():
    frame = b"\x00\x03\x00\x0c\x00\x00\x00\x07\x00\x02id" + b"\x01\x09\x01z" + b"BODY"
    header = parse_request_header(frame, lambda k, v: True)
    assert (header.api_key, header.api_version, header.correlation_id, header.client_id) == (3, 12, 7, "id")
    assert frame[header.body_offset:] == b"BODY"
    assert skip_tagged_fields(b"\x00", 0) == 1
