"""Checksummed metadata files: a damaged one is detected, never believed.

Two shapes, both written with `Medium.write_atomic`:

- JSON documents (`meta.json`, `topics.json`):
  `{"crc32c": N, "data": <document>}` where N is the CRC-32 of
  `json.dumps(<document>, indent=1, sort_keys=True)`; the bytes on disk are
  that same serialisation, so a reader recomputes it from what it parsed.
- Line files (`recovery-point-offset-checkpoint`, `log-start-offset`): the
  lines, then a last line `crc32c <8 hex digits>` over the lines before it
  (joined by "\\n").

Files written before checksums existed (plain JSON, plain lines) are still
read: `load_*` returns them as they are, and callers validate their shape.
A file whose checksum line or field is present but wrong, or that does not
parse, is damaged: `load_*` returns None and the caller decides what to do
without trusting it (metadata never decides that data is deleted).

zlib's CRC-32 (not CRC-32C: the standard library has it, and these files
are a few KB) is enough to catch a cut, a flipped bit or appended garbage.
"""

import json
import zlib

_CRC_PREFIX = "crc32c "


def _crc(text: str) -> int:
    return zlib.crc32(text.encode())


def dump_json(document) -> bytes:
    body = json.dumps(document, indent=1, sort_keys=True)
    return json.dumps({"crc32c": _crc(body), "data": document}, indent=1, sort_keys=True).encode()


def load_json(raw: bytes):
    """The document, or None when `raw` is damaged. A legacy file (no
    checksum) is returned as parsed."""
    try:
        parsed = json.loads(raw.decode())
    except (UnicodeDecodeError, ValueError):
        return None
    if isinstance(parsed, dict) and set(parsed) == {"crc32c", "data"}:
        body = json.dumps(parsed["data"], indent=1, sort_keys=True)
        return parsed["data"] if parsed["crc32c"] == _crc(body) else None
    return parsed


def dump_lines(lines: list[str]) -> bytes:
    body = "\n".join(lines)
    return f"{body}\n{_CRC_PREFIX}{_crc(body):08x}\n".encode()


def load_lines(raw: bytes, legacy: bool = True) -> list[str] | None:
    """The lines, or None when `raw` is damaged. A legacy file, without the
    checksum line, is returned as its lines when `legacy` (files that had a
    format before checksums), else it is damage (a cut one looks like it)."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return None
    if "\x00" in text:
        return None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if lines and lines[-1].startswith(_CRC_PREFIX):
        body = "\n".join(lines[:-1])
        digits = lines[-1][len(_CRC_PREFIX):]
        if len(digits) != 8 or f"{_crc(body):08x}" != digits:
            return None
        return lines[:-1]
    return lines if legacy else None


def load_offset(raw: bytes) -> int | None:
    """A file holding one offset (`log-start-offset`), or None if damaged."""
    lines = load_lines(raw)
    if lines is None or len(lines) != 1 or not lines[0].isdigit() or len(lines[0]) > 19:
        return None
    return int(lines[0])


def dump_offset(offset: int) -> bytes:
    return dump_lines([str(offset)])
