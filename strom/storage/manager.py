"""LogManager: every partition log under one data directory.

Layout (see files.py for the names):

    <data_dir>/meta.json             {"cluster_id", "node_id", "version"}
    <data_dir>/topics.json           {topic: {"id", "partitions", "configs"}}
    <data_dir>/recovery-point-offset-checkpoint   "topic partition offset" lines
    <data_dir>/.strom_cleanshutdown  present only after a clean stop
    <data_dir>/<topic>-<partition>/  one PartitionLog each

`meta.json`, `topics.json` and the checkpoint are replaced atomically (temp
file, fsync, rename, fsync directory). A topic exists once it is in
`topics.json`; partition directories not listed there are leftovers of an
interrupted delete and are removed at load. The clean-shutdown marker is
removed at start-up, so a crash leaves none and the next start recovers
every log from its checkpointed recovery point.

Background work: the Flusher thread (group commit) and one maintenance
thread (retention, compaction, recovery-point checkpoints).
"""

import json
import logging
import threading
import uuid
from dataclasses import dataclass, field

from strom.storage import cleaner, files
from strom.storage.config import LogConfig, validate_overrides
from strom.storage.errors import (
    InvalidPartitionsError,
    InvalidTopicError,
    TopicExistsError,
    UnknownTopicError,
)
from strom.storage.files import DiskMedium, MemoryMedium
from strom.storage.flusher import Flusher
from strom.storage.log import PartitionLog, now_ms

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_PRODUCER_ID_BLOCK = 1000
_LEGAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def validate_topic_name(name) -> None:
    """Kafka's rule: 1-249 characters of [a-zA-Z0-9._-], not "." or ".."."""
    if not isinstance(name, str) or not name:
        raise InvalidTopicError("Topic name is empty")
    if name in (".", ".."):
        raise InvalidTopicError(f"Topic name cannot be {name!r}")
    if len(name) > 249:
        raise InvalidTopicError(f"Topic name is {len(name)} characters long, the limit is 249")
    if not set(name) <= _LEGAL_CHARS:
        raise InvalidTopicError(
            f"Topic name {name!r} is illegal, it contains a character other than "
            "ASCII alphanumerics, '.', '_' and '-'"
        )


@dataclass
class Topic:
    name: str
    topic_id: uuid.UUID
    config: LogConfig
    logs: list[PartitionLog] = field(default_factory=list)
    is_internal: bool = False

    @property
    def partitions(self) -> int:
        return len(self.logs)


class LogManager:
    def __init__(self, data_dir: str | None = None, *, storage: str = "disk",
                 defaults: dict[str, str] | None = None,
                 maintenance_interval_s: float = 5.0,
                 checkpoint_interval_s: float = 10.0):
        if storage == "memory":
            self.medium = MemoryMedium()
        elif storage == "disk":
            if data_dir is None:
                raise ValueError("disk storage needs a data directory")
            self.medium = DiskMedium(data_dir)
        else:
            raise ValueError(f"unknown storage {storage!r}: use 'disk' or 'memory'")
        self.data_dir = data_dir
        self.defaults = dict(defaults or {})
        self.topics: dict[str, Topic] = {}
        self._by_id: dict[uuid.UUID, Topic] = {}
        self._lock = threading.RLock()
        self.flusher = Flusher()
        self._load()
        self._stop = threading.Event()
        self._maintenance_interval_s = maintenance_interval_s
        self._checkpoint_interval_s = checkpoint_interval_s
        self._cleaned_up_to: dict[PartitionLog, int] = {}
        self._thread = threading.Thread(target=self._maintain, name="strom-maintenance", daemon=True)
        self._thread.start()

    # -- load / store ---------------------------------------------------------

    def _load(self) -> None:
        m = self.medium
        if m.exists(files.META_FILE):
            self.meta = json.loads(m.read(files.META_FILE))
        else:
            self.meta = {"cluster_id": _cluster_id(), "node_id": 0, "version": FORMAT_VERSION}
            m.write_atomic(files.META_FILE, json.dumps(self.meta).encode())
        self._next_producer_id = self.meta.get("producer_id_block_end", 0)
        clean = m.exists(files.CLEAN_SHUTDOWN_FILE)
        points = self._read_recovery_points()
        registry = json.loads(m.read(files.TOPICS_FILE)) if m.exists(files.TOPICS_FILE) else {}
        wanted = set()
        for name, entry in registry.items():
            topic = Topic(name, uuid.UUID(entry["id"]), LogConfig(entry["configs"], self.defaults),
                          is_internal=name.startswith("__"))
            for p in range(entry["partitions"]):
                d = files.partition_dir_name(name, p)
                wanted.add(d)
                topic.logs.append(PartitionLog(
                    m, d, topic.config, recovery_point=points.get(d), clean=clean,
                    topic=name, partition=p,
                ))
                self.flusher.watch(topic.logs[-1])
            self.topics[name] = topic
            self._by_id[topic.topic_id] = topic
        for name in m.listdir():
            if (files.parse_partition_dir_name(name) and name not in wanted
                    and any(files.parse_segment_name(n) for n in m.listdir(name))):
                log.warning("removing %s: its topic is not in %s", name, files.TOPICS_FILE)
                m.rmtree(name)
        m.remove(files.CLEAN_SHUTDOWN_FILE)
        if not registry:
            log.info("data directory has no topics yet")
        elif clean:
            log.info("loaded %d topics after a clean shutdown", len(self.topics))
        else:
            log.info("loaded %d topics; logs recovered from their recovery points", len(self.topics))

    def _store_registry(self) -> None:
        registry = {
            t.name: {"id": str(t.topic_id), "partitions": t.partitions, "configs": t.config.overrides}
            for t in self.topics.values()
        }
        self.medium.write_atomic(files.TOPICS_FILE, json.dumps(registry, indent=1).encode())

    def _read_recovery_points(self) -> dict[str, int]:
        if not self.medium.exists(files.RECOVERY_POINT_FILE):
            return {}
        points = {}
        for line in self.medium.read(files.RECOVERY_POINT_FILE).decode().splitlines():
            d, _, offset = line.rpartition(" ")
            if d and offset.isdigit():
                points[d] = int(offset)
        return points

    def checkpoint_recovery_points(self) -> None:
        lines = [f"{plog.directory} {plog.recovery_point}" for plog in self.all_logs()]
        self.medium.write_atomic(files.RECOVERY_POINT_FILE, "\n".join(lines).encode())

    def allocate_producer_id(self) -> int:
        """A producer id never handed out before. Blocks of ids are reserved
        in meta.json before use, so a crash only skips ids."""
        with self._lock:
            if self._next_producer_id >= self.meta.get("producer_id_block_end", 0):
                self.meta["producer_id_block_end"] = self._next_producer_id + _PRODUCER_ID_BLOCK
                self.medium.write_atomic(files.META_FILE, json.dumps(self.meta).encode())
            self._next_producer_id += 1
            return self._next_producer_id - 1

    @property
    def cluster_id(self) -> str:
        return self.meta["cluster_id"]

    # -- topics ------------------------------------------------------------------

    def all_logs(self) -> list[PartitionLog]:
        with self._lock:
            return [plog for t in self.topics.values() for plog in t.logs]

    def get_topic(self, name: str) -> Topic:
        try:
            return self.topics[name]
        except KeyError:
            raise UnknownTopicError(f"unknown topic {name}") from None

    def find_topic_by_id(self, topic_id) -> Topic | None:
        return self._by_id.get(topic_id)

    def find_topic(self, name: str | None, topic_id=None) -> Topic | None:
        """By name, or by topic id when there is no name (the newest request
        versions name topics by id only, KIP-516)."""
        return self.topics.get(name) if name is not None else self._by_id.get(topic_id)

    def get_topic_by_id(self, topic_id: uuid.UUID) -> Topic:
        try:
            return self._by_id[topic_id]
        except KeyError:
            raise UnknownTopicError(f"unknown topic id {topic_id}") from None

    def get_log(self, topic: str, partition: int) -> PartitionLog:
        t = self.get_topic(topic)
        if not 0 <= partition < t.partitions:
            raise UnknownTopicError(f"unknown partition {topic}-{partition}")
        return t.logs[partition]

    def create_topic(self, name: str, partitions: int, configs: dict[str, str | None] | None = None,
                     *, validate_only: bool = False) -> Topic:
        validate_topic_name(name)
        if partitions < 1:
            raise InvalidPartitionsError(f"partitions must be at least 1, got {partitions}")
        overrides = validate_overrides(configs or {})
        with self._lock:
            if name in self.topics:
                raise TopicExistsError(f"Topic '{name}' already exists.")
            topic = Topic(name, uuid.uuid4(), LogConfig(overrides, self.defaults),
                          is_internal=name.startswith("__"))
            if validate_only:
                return topic
            for p in range(partitions):
                self._add_partition(topic, p)
            self.topics[name] = topic
            self._by_id[topic.topic_id] = topic
            self._store_registry()
        log.info("created topic %s with %d partitions", name, partitions)
        return topic

    def _add_partition(self, topic: Topic, p: int) -> None:
        d = files.partition_dir_name(topic.name, p)
        if self.medium.exists(d):
            self.medium.rmtree(d)  # stale leftovers of a deleted topic
        plog = PartitionLog(self.medium, d, topic.config, clean=True, topic=topic.name, partition=p)
        topic.logs.append(plog)
        self.flusher.watch(plog)

    def create_partitions(self, name: str, total: int, *, validate_only: bool = False) -> None:
        with self._lock:
            topic = self.get_topic(name)
            if total <= topic.partitions:
                raise InvalidPartitionsError(
                    f"Topic currently has {topic.partitions} partitions, which is higher "
                    f"than or equal to the requested {total}."
                )
            if validate_only:
                return
            for p in range(topic.partitions, total):
                self._add_partition(topic, p)
            self._store_registry()

    def delete_topic(self, name: str) -> Topic:
        with self._lock:
            topic = self.get_topic(name)
            del self.topics[name]
            del self._by_id[topic.topic_id]
            self._store_registry()
        for plog in topic.logs:
            self.flusher.unwatch(plog)
            plog.delete()
        log.info("deleted topic %s", name)
        return topic

    def alter_topic_config(self, name: str, overrides: dict[str, str | None],
                           *, validate_only: bool = False) -> None:
        checked = validate_overrides(overrides)
        with self._lock:
            topic = self.get_topic(name)
            config = LogConfig(checked, self.defaults)
            if validate_only:
                return
            topic.config = config
            for plog in topic.logs:
                plog.config = config
            self._store_registry()

    # -- background maintenance ------------------------------------------------

    def _maintain(self) -> None:
        last_checkpoint = 0.0
        elapsed = 0.0
        while not self._stop.wait(min(self._maintenance_interval_s, self._checkpoint_interval_s)):
            elapsed += min(self._maintenance_interval_s, self._checkpoint_interval_s)
            try:
                self.run_maintenance()
                if elapsed - last_checkpoint >= self._checkpoint_interval_s:
                    self.checkpoint_recovery_points()
                    last_checkpoint = elapsed
            except Exception:
                log.exception("maintenance pass failed")

    def run_maintenance(self, now: int | None = None) -> None:
        """One pass of retention and compaction over every log."""
        now = now_ms() if now is None else now
        for topic in list(self.topics.values()):
            for plog in topic.logs:
                if plog.failed:
                    continue
                if topic.config.compact and self._dirty_enough(plog):
                    cleaner.clean(plog, now)
                    self._cleaned_up_to[plog] = plog.active.base_offset
                plog.apply_retention(now)

    def _dirty_enough(self, plog: PartitionLog) -> bool:
        """min.cleanable.dirty.ratio over the non-active segments."""
        done = self._cleaned_up_to.get(plog, -1)
        closed = plog.segments[:-1]
        total = sum(s.size for s in closed)
        dirty = sum(s.size for s in closed if s.base_offset >= done)
        return total > 0 and dirty / total >= plog.config.min_cleanable_dirty_ratio

    def close(self) -> None:
        """Flush everything, checkpoint, and leave the clean-shutdown marker."""
        self._stop.set()
        self._thread.join()
        self.flusher.close()
        for plog in self.all_logs():
            plog.close()
        self.checkpoint_recovery_points()
        self.medium.write_atomic(files.CLEAN_SHUTDOWN_FILE, b"")


def _cluster_id() -> str:
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
