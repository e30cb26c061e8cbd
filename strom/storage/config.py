"""Topic-level log configs: names, types, defaults and validation.

Names and defaults are Kafka's, so `kafka-configs`-style tooling and
DescribeConfigs show what a Kafka user expects. Values arrive as strings
(from CreateTopics, AlterConfigs, the CLI) and are parsed once here.
"""

from dataclasses import dataclass
from typing import Callable

from strom.storage.errors import InvalidConfigError

LONG_MAX = 2**63 - 1


@dataclass(frozen=True)
class ConfigDef:
    name: str
    type: str  # long, int, double, boolean, string, list
    default: str
    check: Callable[[object], str | None] | None = None
    doc: str = ""


def _at_least(n):
    return lambda v: None if v >= n else f"must be at least {n}"


def _one_of(*allowed):
    return lambda v: None if v in allowed else f"must be one of {', '.join(allowed)}"


def _all_of(*allowed):
    def check(values):
        bad = [v for v in values if v not in allowed]
        return f"unknown value(s) {', '.join(bad)}" if bad or not values else None
    return check


_DEFS = [
    ConfigDef("cleanup.policy", "list", "delete", _all_of("delete", "compact"),
              "delete old segments, compact to the latest record per key, or both"),
    ConfigDef("compression.type", "string", "producer",
              _one_of("producer", "uncompressed", "gzip", "snappy", "lz4", "zstd")),
    ConfigDef("delete.retention.ms", "long", "86400000", _at_least(0),
              "how long tombstones survive compaction"),
    ConfigDef("file.delete.delay.ms", "long", "60000", _at_least(0)),
    ConfigDef("flush.messages", "long", str(LONG_MAX), _at_least(1),
              "fsync after this many messages (acks=all always waits for fsync)"),
    ConfigDef("flush.ms", "long", str(LONG_MAX), _at_least(0),
              "fsync data older than this"),
    ConfigDef("index.interval.bytes", "int", "4096", _at_least(0)),
    ConfigDef("max.compaction.lag.ms", "long", str(LONG_MAX), _at_least(1)),
    ConfigDef("max.message.bytes", "int", "1048588", _at_least(0),
              "largest record batch accepted"),
    ConfigDef("message.timestamp.type", "string", "CreateTime",
              _one_of("CreateTime", "LogAppendTime")),
    ConfigDef("min.cleanable.dirty.ratio", "double", "0.5",
              lambda v: None if 0 <= v <= 1 else "must be between 0 and 1"),
    ConfigDef("min.compaction.lag.ms", "long", "0", _at_least(0)),
    ConfigDef("min.insync.replicas", "int", "1", _at_least(1)),
    ConfigDef("preallocate", "boolean", "false"),
    ConfigDef("retention.bytes", "long", "-1", _at_least(-1)),
    ConfigDef("retention.ms", "long", "604800000", _at_least(-1)),
    ConfigDef("segment.bytes", "int", "1073741824", _at_least(14)),
    ConfigDef("segment.index.bytes", "int", "10485760", _at_least(4)),
    ConfigDef("segment.jitter.ms", "long", "0", _at_least(0)),
    ConfigDef("segment.ms", "long", "604800000", _at_least(1)),
    ConfigDef("unclean.leader.election.enable", "boolean", "false"),
    ConfigDef("message.timestamp.before.max.ms", "long", str(LONG_MAX), _at_least(0)),
    ConfigDef("message.timestamp.after.max.ms", "long", str(LONG_MAX), _at_least(0)),
]
TOPIC_CONFIGS: dict[str, ConfigDef] = {d.name: d for d in _DEFS}


def parse_value(d: ConfigDef, raw: str):
    try:
        if d.type in ("long", "int"):
            value = int(raw)
            if d.type == "int" and not -(2**31) <= value < 2**31:
                raise ValueError
        elif d.type == "double":
            value = float(raw)
        elif d.type == "boolean":
            if raw.lower() not in ("true", "false"):
                raise ValueError
            value = raw.lower() == "true"
        elif d.type == "list":
            value = [v.strip() for v in raw.split(",") if v.strip()]
        else:
            value = raw
    except (ValueError, AttributeError):
        raise InvalidConfigError(f"Invalid value {raw!r} for {d.name}: not a {d.type}") from None
    if d.check and (problem := d.check(value)):
        raise InvalidConfigError(f"Invalid value {raw!r} for {d.name}: {problem}")
    return value


def validate_overrides(overrides: dict[str, str | None]) -> dict[str, str]:
    """Check topic config overrides; return them without null values."""
    out = {}
    for name, raw in overrides.items():
        d = TOPIC_CONFIGS.get(name)
        if d is None:
            raise InvalidConfigError(f"Unknown topic config name: {name}")
        if raw is None:
            continue
        parse_value(d, raw)
        out[name] = raw
    return out


class LogConfig:
    """Effective configs of one topic: overrides on top of broker defaults."""

    def __init__(self, overrides: dict[str, str] | None = None,
                 defaults: dict[str, str] | None = None):
        self.overrides = dict(overrides or {})
        self.defaults = dict(defaults or {})
        self._values = {}
        for name, d in TOPIC_CONFIGS.items():
            raw = self.overrides.get(name, self.defaults.get(name, d.default))
            self._values[name] = parse_value(d, raw)
        v = self._values
        self.segment_bytes: int = v["segment.bytes"]
        self.segment_ms: int = v["segment.ms"]
        self.index_interval_bytes: int = v["index.interval.bytes"]
        self.max_message_bytes: int = v["max.message.bytes"]
        self.retention_ms: int = v["retention.ms"]
        self.retention_bytes: int = v["retention.bytes"]
        self.compact: bool = "compact" in v["cleanup.policy"]
        self.delete: bool = "delete" in v["cleanup.policy"]
        self.delete_retention_ms: int = v["delete.retention.ms"]
        self.min_compaction_lag_ms: int = v["min.compaction.lag.ms"]
        self.min_cleanable_dirty_ratio: float = v["min.cleanable.dirty.ratio"]
        self.flush_messages: int = v["flush.messages"]
        self.flush_ms: int = v["flush.ms"]
        self.log_append_time: bool = v["message.timestamp.type"] == "LogAppendTime"

    def raw(self, name: str) -> str:
        d = TOPIC_CONFIGS[name]
        return self.overrides.get(name, self.defaults.get(name, d.default))

    def source(self, name: str) -> str:
        if name in self.overrides:
            return "topic"
        return "broker" if name in self.defaults else "default"

    def with_overrides(self, overrides: dict[str, str]) -> "LogConfig":
        return LogConfig(overrides, self.defaults)
