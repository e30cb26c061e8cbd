"""The records inside a batch, checked as Kafka checks them on append.

Kafka's LogValidator reads every record of a batch from a client
(DefaultRecord.readFrom) and refuses the batch with INVALID_RECORD when one
does not parse: a record's length varint must cover exactly its fields
(attributes, timestamp delta, offset delta, key, value, header count and
headers), a header count must be >= 0 and fit, a header key length >= 0;
the batch must hold exactly `records_count` records and nothing after
them. Strom checks the same and also that offset deltas count 0, 1, 2, ...
(Kafka rewrites a compressed batch whose inner offsets are not, and
consumers compute offsets from them; Strom stores batches as sent, so it
refuses them). Record attributes and timestamps are not checked (neither
does Kafka, bar its timestamp window, which Strom does not enforce).

Cost. Parsing every record in Python costs ~1 us each, which at 1M records/s
would double the broker's CPU. Producers write runs of records with the
same layout (same key, value and header sizes, so the same length); a run
is checked at C speed with strided slices: the records of a run of size S
start every S bytes, so `body[p + j :: S]` holds byte j of each of them.
The first record of a run is parsed field by field; the others must then
have the same bytes wherever that one has a length (its length varint,
key, value and header lengths), the same varint widths for the timestamp
and offset deltas, and offset deltas equal to their index, which together
mean each parses exactly as the first. Records that differ in size fall
back to the field-by-field parse, so the result never depends on the path.
"""

from strom.records.errors import InvalidRecordError

# length(1) attributes(1) timestamp(1) offset(1) key(1) value(1) headers(1)
MIN_RECORD_SIZE = 7
_MIN_BODY = MIN_RECORD_SIZE - 1
# High bit of each byte, for the continuation pattern of a varint.
_HIGH_BIT = bytes(b >> 7 for b in range(256))
# Records per window of run checks: each strided pass touches about two
# cache lines per record (its first bytes, its header count), so a window
# of this many stays in L2 across the dozen passes, whatever the size.
_WINDOW_RECORDS = 1024
# Fewer records than this left: parsing them costs less than setting up a run.
_MIN_RUN = 8


class _PastEnd(InvalidRecordError):
    """A record runs past the end of what is there."""


def check_records(buf, count: int, start: int = 0, end: int | None = None, *,
                  partial: bool = False) -> None:
    """Check that buf[start:end] (the uncompressed records of one batch)
    holds exactly `count` well-formed records with offset deltas 0 ..
    count - 1. Raises InvalidRecordError saying what is wrong.

    `partial`: buf holds only the first bytes of the records (decompression
    stopped at its limit); check what is there and stop quietly where it is
    cut, so a bomb of garbage gets Kafka's INVALID_RECORD.

    Pass bytes or a bytearray where possible: strided slices of those are
    several times cheaper than of a memoryview (which is copied once)."""
    if end is None:
        end = len(buf)
    if count * MIN_RECORD_SIZE > end - start and not partial:
        raise InvalidRecordError(
            f"records count {count} cannot fit in {end - start} bytes of records")
    if type(buf) is memoryview:
        buf, start, end = _unwrap(buf, start, end)
    pos, index = start, 0
    # After a run attempt that matched nothing, skip that many records
    # before the next (doubling): same-size records of other layouts must
    # not cost a window of slices each.
    skip = backoff = 0
    try:
        while pos < end:
            if index >= count:
                raise InvalidRecordError(
                    f"{end - pos} bytes left over after the last of {count} records")
            nxt = _check_record(buf, pos, end, index)
            index += 1
            if skip:
                skip -= 1
            elif nxt < end and count - index >= _MIN_RUN and buf[nxt] == buf[pos]:
                # The next record starts with the same length byte: a run?
                run = _run(buf, pos, end, nxt - pos, index - 1, count - index + 1)
                if run > 1:
                    nxt = pos + run * (nxt - pos)
                    index += run - 1
                    backoff = 0
                else:
                    backoff = min(2 * backoff or 1, 1024)
                    skip = backoff
            pos = nxt
    except (IndexError, _PastEnd) as e:
        if partial:
            return
        if isinstance(e, _PastEnd):
            raise
        raise InvalidRecordError(f"record {index} runs past the end of the batch") from None
    if index != count and not partial:
        raise InvalidRecordError(f"batch declares {count} records but holds {index}")


def _unwrap(view: memoryview, start: int, end: int):
    """The bytes object under `view` when it covers one whole (so positions
    agree), else a copy of view[start:end]."""
    obj = view.obj
    if type(obj) in (bytes, bytearray) and view.c_contiguous and view.nbytes == len(obj):
        return obj, start, end
    return view[start:end].tobytes(), 0, end - start


def _varint(body, pos: int, max_bytes: int) -> tuple[int, int]:
    """A zig-zag varint of at most `max_bytes` bytes: (value, next position)."""
    raw = shift = 0
    for i in range(max_bytes):
        b = body[pos + i]
        raw |= (b & 0x7F) << shift
        if b < 0x80:
            return (raw >> 1) ^ -(raw & 1), pos + i + 1
        shift += 7
    raise InvalidRecordError(f"varint longer than {max_bytes} bytes")


def _check_record(body, pos: int, end: int, index: int) -> int:
    """Parse the record at `pos` field by field (the Kafka checks); return
    where the next one starts. Varints of one byte (and lengths of two)
    are decoded inline: this runs per record when records differ in size."""
    x = body[pos]
    if x < 0x80:
        length, p = (x >> 1) ^ -(x & 1), pos + 1
    elif body[pos + 1] < 0x80:
        raw = (x & 0x7F) | (body[pos + 1] << 7)
        length, p = (raw >> 1) ^ -(raw & 1), pos + 2
    else:
        length, p = _varint(body, pos, 5)
    rend = p + length
    if length < _MIN_BODY:
        raise InvalidRecordError(f"record {index} declares {length} bytes, below the minimum")
    if rend > end:
        raise _PastEnd(f"record {index} declares {length} bytes, {end - p} left in the batch")
    # attributes (1 byte), then the timestamp delta, a varlong
    if body[p + 1] < 0x80:
        p += 2
    else:
        start = p + 1
        p = start
        while body[p] >= 0x80:
            p += 1
        p += 1
        if p - start > 10:
            raise InvalidRecordError(f"record {index}: timestamp delta longer than 10 bytes")
    x = body[p]
    if x < 0x80 and x == index << 1:  # the offset delta, in one byte or two
        p += 1
    elif x >= 0x80 and body[p + 1] < 0x80 and (x & 0x7F) | (body[p + 1] << 7) == index << 1:
        p += 2
    else:
        delta, p = _varint(body, p, 5)
        if delta != index:
            raise InvalidRecordError(f"record {index} has offset delta {delta}")
    # key and value: a length of -1 (or below, as Kafka reads it) is null
    x = body[p]
    if x < 0x80:
        p += 1 if x & 1 else (x >> 1) + 1
    else:
        n, p = _varint(body, p, 5)
        if n > 0:
            p += n
    x = body[p]
    if x < 0x80:
        p += 1 if x & 1 else (x >> 1) + 1
    elif body[p + 1] < 0x80:
        raw = (x & 0x7F) | (body[p + 1] << 7)
        p += 2 if raw & 1 else (raw >> 1) + 2
    else:
        n, p = _varint(body, p, 5)
        if n > 0:
            p += n
    if p >= rend:
        raise InvalidRecordError(f"record {index}: key or value runs past the record")
    if body[p] == 0:  # no headers
        p += 1
    else:
        headers, p = _varint(body, p, 5)
        if headers < 0 or headers * 2 > rend - p:
            raise InvalidRecordError(f"record {index}: invalid header count {headers}")
        for _ in range(headers):
            n, p = _varint(body, p, 5)
            if n < 0:
                raise InvalidRecordError(f"record {index}: negative header key length {n}")
            p += n
            n, p = _varint(body, p, 5)
            if n > 0:
                p += n
            if p > rend:
                break
    if p != rend:
        raise InvalidRecordError(
            f"record {index} declares {length} bytes but its fields take {p - rend + length}")
    return rend


def _layout(body, pos: int):
    """For a record already checked: the width of its length varint, the
    positions (relative to `pos`) of every byte of its other length
    varints, and (position, width) of its timestamp and offset deltas."""
    p = pos + 1 if body[pos] < 0x80 else _skip_varint(body, pos)
    length_width = p - pos
    ts = p + 1
    p = ts + 1 if body[ts] < 0x80 else _skip_varint(body, ts)
    od = p
    p = od + 1 if body[od] < 0x80 else _skip_varint(body, od)
    timestamp, offset = (ts - pos, od - ts), (od - pos, p - od)
    fixed = []
    for _ in (0, 1):  # key and value lengths
        x = body[p]
        if x < 0x80:
            fixed.append(p - pos)
            p += 1 if x & 1 else (x >> 1) + 1
        else:
            n, q = _varint(body, p, 5)
            fixed.extend(range(p - pos, q - pos))
            p = q + max(n, 0)
    if body[p] == 0:
        fixed.append(p - pos)
        return length_width, fixed, timestamp, offset
    headers, q = _varint(body, p, 5)
    fixed.extend(range(p - pos, q - pos))
    p = q
    for _ in range(headers):
        for _ in (0, 1):
            n, q = _varint(body, p, 5)
            fixed.extend(range(p - pos, q - pos))
            p = q + max(n, 0)
    return length_width, fixed, timestamp, offset


def _skip_varint(body, p: int) -> int:
    while body[p] >= 0x80:
        p += 1
    return p + 1


def _run(buf, pos: int, end: int, size: int, index: int, limit: int) -> int:
    """How many records from the one at `pos` (index `index`, already
    checked, `size` bytes) share its layout, up to `limit`: at least 1.
    Checked a window at a time (see _WINDOW_RECORDS)."""
    layout = _layout(buf, pos)
    window = _WINDOW_RECORDS
    done = 1
    while done < limit:
        n = min(window, limit - done, (end - pos) // size - done)
        if n < 1:
            break
        matched = _match(buf, pos, done, n, size, index, layout)
        done += matched
        if matched < n:
            break
    return done


def _match(buf, pos: int, first: int, n: int, size: int, index: int, layout) -> int:
    """How many of the `n` records from number `first` of the run at `pos`
    have the layout of record 0 (all of a prefix or none of it)."""
    length_width, fixed, (ts_at, ts_width), (od_at, od_width) = layout
    at = pos + first * size
    # Records whose length bytes equal record 0's: by induction the first
    # k of them start every `size` bytes.
    stop = at + (n - 1) * size + 1
    count = n
    for rel in range(length_width):
        column = buf[at + rel : stop + rel : size]
        if column.count(buf[pos + rel]) != count:  # else all n match: the usual case
            count = min(count, len(column) - len(column.lstrip(buf[pos + rel : pos + rel + 1])))
    if not count:
        return 0
    stop = at + (count - 1) * size + 1
    for rel in fixed:
        column = buf[at + rel : stop + rel : size]
        if column.count(buf[pos + rel]) != count:
            return 0
    for j in range(ts_width):
        column = buf[at + ts_at + j : stop + ts_at + j : size].translate(_HIGH_BIT)
        if column.count(1 if j < ts_width - 1 else 0) != count:
            return 0
    for j in range(od_width):
        column = buf[at + od_at + j : stop + od_at + j : size]
        if column != _offset_plane(od_width, j, index + first, count):
            return 0
    return count


_PLANES: dict[tuple[int, int], bytes] = {}


def _offset_plane(width: int, j: int, index: int, count: int) -> bytes:
    """Byte j of the `width`-byte zig-zag varints of index .. index+count-1
    (empty if those do not all take `width` bytes, so no match)."""
    lo, hi = (1 << (7 * (width - 1) - 1) if width > 1 else 0), 1 << (7 * width - 1)
    if index < lo or index + count > hi:
        return b""
    plane = _PLANES.get((width, j), b"")
    if len(plane) < index + count - lo:
        n = min(hi - lo, max(2 * len(plane), index + count - lo, 1024))
        more = 0x80 if j < width - 1 else 0
        shift = 7 * j
        plane = bytes((((2 * i) >> shift) & 0x7F) | more for i in range(lo, lo + n))
        _PLANES[(width, j)] = plane
    return plane[index - lo : index - lo + count]
