"""Broker configuration: defaults < `strom.toml` < `STROM_*` environment <
command-line options.

Keys use Kafka's broker config names where one exists (`num.partitions`,
`auto.create.topics.enable`, `log.retention.ms`, ...); in TOML they may be
written as nested tables or dotted keys, in the environment as
STROM_NUM_PARTITIONS (dots become underscores). `log.*` broker settings are
the defaults for the matching topic configs (`log.retention.ms` ->
`retention.ms`), as in Kafka.
"""

import os
import tomllib
from dataclasses import dataclass, field, fields

from strom.storage.config import TOPIC_CONFIGS
from strom.storage.errors import InvalidConfigError

# Broker names whose topic-level default has a different name in Kafka.
_TOPIC_DEFAULTS = {
    "log.cleanup.policy": "cleanup.policy",
    "log.retention.ms": "retention.ms",
    "log.retention.bytes": "retention.bytes",
    "log.segment.bytes": "segment.bytes",
    "log.roll.ms": "segment.ms",
    "log.index.interval.bytes": "index.interval.bytes",
    "log.flush.interval.messages": "flush.messages",
    "log.flush.interval.ms": "flush.ms",
    "log.cleaner.delete.retention.ms": "delete.retention.ms",
    "log.cleaner.min.compaction.lag.ms": "min.compaction.lag.ms",
    "log.cleaner.min.cleanable.ratio": "min.cleanable.dirty.ratio",
    "log.message.timestamp.type": "message.timestamp.type",
    "message.max.bytes": "max.message.bytes",
    "compression.type": "compression.type",
    "min.insync.replicas": "min.insync.replicas",
}


@dataclass
class BrokerConfig:
    host: str = "127.0.0.1"
    port: int = 9092
    advertised_host: str | None = None
    advertised_port: int | None = None
    data_dir: str | None = "./strom-data"
    storage: str = "disk"  # or "memory"
    node_id: int = 0
    auto_create_topics_enable: bool = True
    num_partitions: int = 1
    default_replication_factor: int = 1
    socket_request_max_bytes: int = 100 * 1024 * 1024
    connections_max_idle_ms: int = 600_000
    # Request bytes held in memory by all connections together: frames
    # being read and requests not yet answered (Kafka's name).
    queued_max_request_bytes: int = 256 * 1024 * 1024
    # A connection whose client reads none of its buffered responses for
    # this long is closed: its responses are not kept for it.
    connections_max_unread_ms: int = 60_000
    # The most a Fetch response holds, whatever the client asks (Kafka's
    # fetch.max.bytes); the first batch still comes whole (KIP-74).
    fetch_max_bytes: int = 55 * 1024 * 1024
    log_retention_check_interval_ms: int = 5_000
    # Kafka waits 3 s for more members before a new group's first
    # rebalance; a lone consumer should not wait, so the default is 0.
    group_initial_rebalance_delay_ms: int = 0
    offsets_retention_minutes: int = 7 * 24 * 60
    # Idle producers with no open transaction are forgotten after this (Kafka's default).
    producer_id_expiration_ms: int = 86_400_000
    # KIP-848 groups (group.protocol=consumer): the broker sets the
    # members' heartbeat interval; Kafka's default is 5 s, ours is shorter
    # so a rebalance settles in a few seconds.
    group_consumer_heartbeat_interval_ms: int = 1000
    group_consumer_session_timeout_ms: int = 45_000
    # Transactions (Kafka's names and defaults): the longest
    # transaction.timeout.ms a producer may ask for; how often timed-out
    # transactions are aborted; how long an idle transactional id is kept,
    # and how often that is checked.
    transaction_max_timeout_ms: int = 900_000
    transaction_abort_timed_out_transaction_cleanup_interval_ms: int = 10_000
    transactional_id_expiration_ms: int = 7 * 24 * 3600 * 1000
    transaction_remove_expired_transaction_cleanup_interval_ms: int = 3_600_000
    log_level: str = "INFO"
    topic_defaults: dict[str, str] = field(default_factory=dict)

    @property
    def advertised(self) -> tuple[str, int]:
        return self.advertised_host or self.host, self.advertised_port or self.port

    def set(self, key: str, value) -> None:
        """Set one option by its Kafka-style dotted name or field name."""
        name = key.replace(".", "_").replace("-", "_").lower()
        if key in _TOPIC_DEFAULTS:
            self.topic_defaults[_TOPIC_DEFAULTS[key]] = str(value)
            return
        if key.startswith("log.") and key[4:] in TOPIC_CONFIGS:
            self.topic_defaults[key[4:]] = str(value)
            return
        for f in fields(self):
            if f.name == name and name != "topic_defaults":
                setattr(self, name, _coerce(f.type, value, key))
                return
        raise InvalidConfigError(f"unknown broker config {key!r}")

    @classmethod
    def load(cls, path: str | None = None, env: dict[str, str] | None = None,
             **overrides) -> "BrokerConfig":
        config = cls()
        if path:
            with open(path, "rb") as f:
                for key, value in _flatten(tomllib.load(f)).items():
                    config.set(key, value)
        env = os.environ if env is None else env
        for key, value in env.items():
            if key.startswith("STROM_") and key not in ("STROM_CONFIG", "STROM_CRASH_AT"):
                config.set(_env_key(key[6:].lower()), value)
        for key, value in overrides.items():
            if value is not None:
                config.set(key, value)
        return config


def _env_key(name: str) -> str:
    """STROM_LOG_RETENTION_MS -> log.retention.ms when that is a known name."""
    dotted = name.replace("_", ".")
    if dotted in _TOPIC_DEFAULTS or (dotted.startswith("log.") and dotted[4:] in TOPIC_CONFIGS):
        return dotted
    return name


def _flatten(table: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in table.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, full + "."))
        else:
            out[full] = value
    return out


def _coerce(type_, value, key: str):
    text = str(value)
    try:
        if type_ in ("int", int) or "int" in str(type_):
            return int(value)
        if type_ in ("bool", bool) or "bool" in str(type_):
            if isinstance(value, bool):
                return value
            if text.lower() in ("true", "1", "yes"):
                return True
            if text.lower() in ("false", "0", "no"):
                return False
            raise ValueError
    except ValueError:
        raise InvalidConfigError(f"invalid value {text!r} for {key}") from None
    return text
