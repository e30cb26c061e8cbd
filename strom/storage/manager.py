"""LogManager: every partition log under one data directory.

Layout (see files.py for the names):

    <data_dir>/meta.json             {"cluster_id", "node_id", "version"}
    <data_dir>/topics.json           {topic: {"id", "partitions", "configs"}}
    <data_dir>/recovery-point-offset-checkpoint   "topic partition offset" lines
    <data_dir>/.strom_cleanshutdown  present only after a clean stop
    <data_dir>/<topic>-<partition>/  one PartitionLog each (segments, log-start-offset,
                                     <offset>.snapshot: producer state, see producer_state.py)
    <data_dir>/<topic>-<partition>.<32 hex>-delete/  being deleted (removed at load)

`meta.json`, `topics.json` and the checkpoint are checksummed
(checkpoint.py) and replaced atomically (temp file, fsync, rename, fsync
directory). They are checked against the partition directories at load
(registry.py): the directories win, so damaged metadata never deletes data.
A create writes `topics.json` before it makes directories (a crash leaves a
listed topic whose missing directories are made at load); a delete renames
the directories to `-delete` markers before it writes `topics.json`, and
only marked directories are removed at load. The clean-shutdown marker is
removed at start-up, so a crash leaves none and the next start recovers
every log from its checkpointed recovery point.

Background work: the Flusher thread (group commit) and one maintenance
thread (compaction, retention, the CRC scrub, producer-state snapshots,
recovery-point checkpoints). Each task runs
per partition in isolation: a failure is logged once per distinct error,
counted in `maintenance_failures`, and retried on the next pass.
"""

import logging
import threading
import uuid
from dataclasses import dataclass, field

from strom.storage import checkpoint, cleaner, files, limits, registry
from strom.storage.config import LogConfig, validate_overrides
from strom.storage.errors import (
    InvalidPartitionsError,
    InvalidTopicError,
    LogWriteError,
    TopicExistsError,
    UnknownTopicError,
)
from strom.storage.files import DiskMedium, MemoryMedium
from strom.storage.flusher import Flusher
from strom.storage.log import PartitionLog, now_ms

log = logging.getLogger(__name__)

_PRODUCER_ID_BLOCK = 1000
# Bytes CRC-checked per maintenance pass, all logs together: ~6 MiB/s at the
# default 5 s interval, for ~2 ms of CRC-32C a pass on this machine.
_SCRUB_BUDGET = 32 * 1024 * 1024
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
                 checkpoint_interval_s: float = 10.0,
                 producer_id_expiration_ms: int = cleaner.PRODUCER_ID_EXPIRATION_MS):
        if storage == "memory":
            self.medium = MemoryMedium()
            self.fd_limit = 0
        elif storage == "disk":
            if data_dir is None:
                raise ValueError("disk storage needs a data directory")
            self.fd_limit = limits.raise_nofile_limit()
            self.medium = DiskMedium(data_dir, max_open_files=limits.file_cache_size(self.fd_limit))
        else:
            raise ValueError(f"unknown storage {storage!r}: use 'disk' or 'memory'")
        self.data_dir = data_dir
        self.defaults = dict(defaults or {})
        # Kafka's producer.id.expiration.ms: idle producers with no open
        # transaction are forgotten by the maintenance pass and the cleaner.
        self.producer_id_expiration_ms = producer_id_expiration_ms
        self.topics: dict[str, Topic] = {}
        self._by_id: dict[uuid.UUID, Topic] = {}
        self._lock = threading.RLock()
        self.flusher = Flusher()
        if self.fd_limit:
            room = (self.fd_limit - limits.reserve(self.fd_limit) - limits.open_fds()
                    - limits.cache_headroom(self.medium)) // limits.FDS_PER_PARTITION
            log.info("open files limit %d: room for about %d more partitions", self.fd_limit,
                     max(room, 0))
        self._load()
        self._stop = threading.Event()
        self._maintenance_interval_s = maintenance_interval_s
        self._checkpoint_interval_s = checkpoint_interval_s
        self._cleaned_up_to: dict[PartitionLog, int] = {}
        self.maintenance_failures: dict[str, int] = {}  # task -> failures so far
        self._task_errors: dict[tuple[str, str], str] = {}
        self._thread = threading.Thread(target=self._maintain, name="strom-maintenance", daemon=True)
        self._thread.start()

    # -- load / store ---------------------------------------------------------

    def _load(self) -> None:
        m = self.medium
        found = registry.scan(m, validate_topic_name)
        has_data = bool(found.partitions) or m.exists(files.TOPICS_FILE)
        self.meta, meta_rebuilt = registry.load_meta(m, has_data, _cluster_id)
        self._next_producer_id = self.meta.get("producer_id_block_end", 0)
        clean = m.exists(files.CLEAN_SHUTDOWN_FILE)
        points = self._read_recovery_points()
        entries, changed = registry.load_topics(m, found, validate_topic_name)
        for entry in entries.values():
            topic = Topic(entry.name, entry.topic_id, LogConfig(entry.configs, self.defaults),
                          is_internal=entry.name.startswith("__"))
            for p in range(entry.partitions):
                d = files.partition_dir_name(entry.name, p)
                topic.logs.append(PartitionLog(
                    m, d, topic.config, recovery_point=points.get(d), clean=clean,
                    topic=entry.name, partition=p,
                ))
                self.flusher.watch(topic.logs[-1])
            self.topics[entry.name] = topic
            self._by_id[topic.topic_id] = topic
        if changed:
            self._store_registry()
        if meta_rebuilt:
            self._rebuild_producer_id_block()
        orphans = list(found.markers)
        orphans += [d for d in found.empty if files.parse_partition_dir_name(d)[0] not in self.topics]
        for d in orphans:
            m.rmtree(d)
        if orphans:
            log.info("removed %d directories left by interrupted topic deletes and failed "
                     "creates (e.g. %s)", len(orphans), orphans[0])
        m.remove(files.CLEAN_SHUTDOWN_FILE)
        if self.fd_limit and limits.open_fds() > self.fd_limit - limits.reserve(self.fd_limit):
            log.warning("%d partitions hold %d of the %d open files allowed: new connections "
                        "and topics may fail; raise `ulimit -n`", len(self.all_logs()),
                        limits.open_fds(), self.fd_limit)
        if not self.topics:
            log.info("data directory has no topics yet")
        elif clean:
            log.info("loaded %d topics after a clean shutdown", len(self.topics))
        else:
            log.info("loaded %d topics; logs recovered from their recovery points", len(self.topics))

    def _rebuild_producer_id_block(self) -> None:
        """meta.json was lost: hand out no producer id that a log has seen."""
        highest = max((pid for plog in self.all_logs() for pid in plog.producer_state.producers),
                      default=-1)
        self._next_producer_id = highest + 1
        self.meta["producer_id_block_end"] = highest + 1
        registry.store_meta(self.medium, self.meta)
        log.warning("rebuilt %s: cluster id %s, producer ids from %d", files.META_FILE,
                    self.meta["cluster_id"], highest + 1)

    def _store_registry(self, pending: Topic | None = None, partitions: int = 0) -> None:
        """Write topics.json; `pending` is a topic about to get `partitions`
        partitions (written before its directories exist)."""
        entries = [
            registry.TopicEntry(t.name, t.topic_id, t.partitions, t.config.overrides)
            for t in self.topics.values() if t is not pending
        ]
        if pending is not None:
            entries.append(registry.TopicEntry(pending.name, pending.topic_id, partitions,
                                               pending.config.overrides))
        registry.store_topics(self.medium, entries)

    def _read_recovery_points(self) -> dict[str, int]:
        """Recovery points by directory. A damaged file is ignored whole:
        every log is then recovered from its start (slower, never wrong)."""
        if not self.medium.exists(files.RECOVERY_POINT_FILE):
            return {}
        lines = checkpoint.load_lines(self.medium.read(files.RECOVERY_POINT_FILE))
        points = {}
        for line in lines or ():
            d, _, offset = line.rpartition(" ")
            if not (files.parse_partition_dir_name(d) and offset.isdigit() and len(offset) < 19):
                lines = None
                break
            points[d] = int(offset)
        if lines is None:
            log.warning("%s is damaged: ignored, every log is recovered from its first segment",
                        files.RECOVERY_POINT_FILE)
            return {}
        return points

    def checkpoint_recovery_points(self) -> None:
        lines = [f"{plog.directory} {plog.recovery_point}" for plog in self.all_logs()]
        self.medium.write_atomic(files.RECOVERY_POINT_FILE, checkpoint.dump_lines(lines))

    def allocate_producer_id(self) -> int:
        """A producer id never handed out before. Blocks of ids are reserved
        in meta.json before use, so a crash only skips ids."""
        with self._lock:
            if self._next_producer_id >= self.meta.get("producer_id_block_end", 0):
                self.meta["producer_id_block_end"] = self._next_producer_id + _PRODUCER_ID_BLOCK
                registry.store_meta(self.medium, self.meta)
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
            self._check_budget(partitions)
            topic = Topic(name, uuid.uuid4(), LogConfig(overrides, self.defaults),
                          is_internal=name.startswith("__"))
            if validate_only:
                return topic
            self._store_registry(pending=topic, partitions=partitions)
            try:
                for p in range(partitions):
                    self._add_partition(topic, p)
            except Exception as e:
                self._discard_logs(topic.logs)
                self._store_registry()
                log.error("creating topic %s failed at partition %d of %d, rolled back: %s",
                          name, len(topic.logs), partitions, e)
                raise LogWriteError(f"creating topic {name} failed, nothing was kept: {e}") from e
            self.topics[name] = topic
            self._by_id[topic.topic_id] = topic
        log.info("created topic %s with %d partitions", name, partitions)
        return topic

    def _check_budget(self, partitions: int, existing: int = 0) -> None:
        limits.check_create(self.fd_limit if self.medium.durable else 0, partitions, existing,
                            limits.cache_headroom(self.medium))

    def _add_partition(self, topic: Topic, p: int) -> None:
        d = files.partition_dir_name(topic.name, p)
        existed = self.medium.exists(d)
        try:
            plog = PartitionLog(self.medium, d, topic.config, clean=True, topic=topic.name,
                                partition=p)
        except Exception:
            if not existed and self.medium.exists(d):  # made before the failure: not kept
                marker = d
                if self.medium.durable:
                    marker = files.delete_dir_name(topic.name, p, uuid.uuid4().hex)
                    self.medium.rename(d, marker)
                self.medium.rmtree(marker)
            raise
        topic.logs.append(plog)
        self.flusher.watch(plog)

    def _discard_logs(self, logs: list[PartitionLog]) -> None:
        self._remove_marked(self._mark_deleted(logs))

    def _mark_deleted(self, logs: list[PartitionLog]) -> list[str]:
        """Close partition logs and, on disk, rename each directory to a
        `-delete` marker (then fsync the data directory), so that a crash
        before the caller writes topics.json leaves only marked directories,
        which the next load removes. Returns the directories to remove."""
        marked = []
        for plog in logs:
            self.flusher.unwatch(plog)
            self._cleaned_up_to.pop(plog, None)
            try:
                plog.close()
            except Exception as e:  # a failed disk: the files go anyway
                log.warning("%s: closing before delete failed: %s", plog.directory, e)
            target = plog.directory
            if self.medium.durable and self.medium.exists(plog.directory):
                target = files.delete_dir_name(plog.topic, plog.partition, uuid.uuid4().hex)
                self.medium.rename(plog.directory, target)
            marked.append(target)
        if self.medium.durable and marked:
            self.medium.sync_dir()
        return marked

    def _remove_marked(self, marked: list[str]) -> None:
        for d in marked:
            self.medium.rmtree(d)

    def create_partitions(self, name: str, total: int, *, validate_only: bool = False) -> None:
        with self._lock:
            topic = self.get_topic(name)
            if total <= topic.partitions:
                raise InvalidPartitionsError(
                    f"Topic currently has {topic.partitions} partitions, which is higher "
                    f"than or equal to the requested {total}."
                )
            self._check_budget(total, topic.partitions)
            if validate_only:
                return
            before = topic.partitions
            self._store_registry(pending=topic, partitions=total)
            try:
                for p in range(before, total):
                    self._add_partition(topic, p)
            except Exception as e:
                added, topic.logs = topic.logs[before:], topic.logs[:before]
                self._discard_logs(added)
                self._store_registry()
                log.error("adding partitions to %s failed at %d of %d, rolled back: %s",
                          name, before + len(added), total, e)
                raise LogWriteError(f"adding partitions to {name} failed, nothing was kept: {e}") from e

    def delete_topic(self, name: str) -> Topic:
        with self._lock:  # held until the directories are marked: a create of
            topic = self.get_topic(name)  # the same name must not find them
            del self.topics[name]
            del self._by_id[topic.topic_id]
            # Marked first, then unlisted: a crash between leaves a listed
            # topic with only marked directories, and the load finishes it.
            marked = self._mark_deleted(topic.logs)
            self._store_registry()
        self._remove_marked(marked)
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
            self._run_task("maintenance", None, self.run_maintenance)  # never ends the thread
            if elapsed - last_checkpoint >= self._checkpoint_interval_s:
                self._run_task("checkpoint", None, self.checkpoint_recovery_points)
                last_checkpoint = elapsed

    def run_maintenance(self, now: int | None = None) -> None:
        """One pass of compaction, retention and the CRC scrub over every log
        (the scrub shares _SCRUB_BUDGET bytes a pass among the logs, in order,
        so it is rate-limited). Each task of each log runs on its own: one that
        fails is reported and retried next pass, the others go on."""
        now = now_ms() if now is None else now
        with self._lock:
            topics = list(self.topics.values())
        scrub_left = _SCRUB_BUDGET

        def scrub(plog: PartitionLog) -> None:
            nonlocal scrub_left
            scrub_left -= plog.scrub(scrub_left)

        for topic in topics:
            for plog in list(topic.logs):
                if plog.failed:
                    continue
                if topic.config.compact and self._dirty_enough(plog):
                    self._run_task("compaction", plog, self._compact, plog, now)
                self._run_task("retention", plog, plog.apply_retention, now)
                self._run_task("producer expiry", plog, plog.expire_producers, now,
                               self.producer_id_expiration_ms)
                self._run_task("producer snapshot", plog, plog.snapshot_producers)
                if scrub_left > 0:
                    self._run_task("scrub", plog, scrub, plog)

    def _compact(self, plog: PartitionLog, now: int) -> None:
        cleaner.clean(plog, now, self.producer_id_expiration_ms)
        self._cleaned_up_to[plog] = plog.active.base_offset

    def _run_task(self, task: str, plog: PartitionLog | None, fn, *args) -> bool:
        key = (task, plog.directory if plog is not None else "")
        try:
            fn(*args)
        except Exception as e:
            self.maintenance_failures[task] = self.maintenance_failures.get(task, 0) + 1
            what = f"{type(e).__name__}: {e}"
            if self._task_errors.get(key) != what:  # once per distinct failure
                self._task_errors[key] = what
                log.error("%s of %s failed (retried every pass, logged again only if the error "
                          "changes): %s", task, key[1] or "the data directory", what,
                          exc_info=True)
            return False
        if self._task_errors.pop(key, None) is not None:
            log.info("%s of %s works again", task, key[1] or "the data directory")
        return True

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
