"""The data directory's metadata, checked against what is on disk.

`meta.json` (cluster id, node id, producer id block) and `topics.json`
(topic -> id, partition count, config overrides) are written checksummed
(strom.storage.checkpoint). At start-up they are checked against the
partition directories, and the directories win: metadata never causes a
deletion.

What happens when they disagree (one rule for every kind of damage):

- `topics.json` missing, cut, zeroed, garbage, failing its checksum, or an
  entry of the wrong shape: every partition directory whose topic has no
  valid entry is adopted back, with a loud warning naming it. Its entry is
  rebuilt from the directory names (topic name; partition count = highest
  partition number + 1), with a fresh topic id and configs that delete
  nothing (`retention.ms=-1`, `retention.bytes=-1`, `cleanup.policy=delete`),
  because the lost configs might have been a longer retention than the
  default. The operator restores the real configs with `strom topic alter`.
- fewer partitions in `topics.json` than directories: the count is raised
  to cover every directory.
- `meta.json` damaged while data exists: rebuilt with a fresh cluster id
  (warned: clients see a new cluster id) and a producer id block past every
  producer id found in the logs, so no id is handed out twice.
- Every damaged file is copied aside to `<name>.<ms>.damaged` before it is
  replaced, for a post-mortem.

Rebuilding rather than refusing to start: the segments hold everything
that matters, and a refusal would only make the operator do by hand what
the broker can do without guessing about data (it never deletes, and the
configs it cannot know are the ones that keep the most).

Interrupted deletes are recognised by name, not by absence from
`topics.json`: DeleteTopics (and a rolled-back create) first renames each
partition directory to `<topic>-<partition>.<uuid>-delete`
(files.delete_dir_name), so only such directories are removed at load.
"""

import logging
import time
import uuid
from dataclasses import dataclass, field

from strom.storage import checkpoint, files
from strom.storage.config import validate_overrides
from strom.storage.errors import StorageError
from strom.storage.limits import MAX_PARTITIONS

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
REBUILT_CONFIGS = {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}


@dataclass
class TopicEntry:
    name: str
    topic_id: uuid.UUID
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)


@dataclass
class DirScan:
    """What the data directory holds, by directory name alone."""
    partitions: dict[str, set[int]] = field(default_factory=dict)  # topic -> with segment files
    empty: list[str] = field(default_factory=list)  # partition dirs without a segment file
    deleting: dict[str, set[int]] = field(default_factory=dict)  # topic -> delete markers
    markers: list[str] = field(default_factory=list)


def scan(medium, validate_name) -> DirScan:
    out = DirScan()
    for name in medium.listdir():
        marked = files.parse_delete_dir_name(name)
        if marked:
            out.deleting.setdefault(marked[0], set()).add(marked[1])
            out.markers.append(name)
            continue
        parsed = files.parse_partition_dir_name(name)
        if not parsed:
            continue
        try:
            validate_name(parsed[0])
        except StorageError:
            log.warning("ignoring directory %s: not a valid topic name", name)
            continue
        try:
            contents = medium.listdir(name)
        except NotADirectoryError:
            continue
        if any(files.parse_segment_name(n) for n in contents):
            out.partitions.setdefault(parsed[0], set()).add(parsed[1])
        else:
            out.empty.append(name)
    return out


def _keep_aside(medium, name: str) -> None:
    if medium.exists(name):
        aside = f"{name}.{int(time.time() * 1000)}.damaged"
        medium.write_atomic(aside, medium.read(name))
        log.warning("kept the damaged %s as %s", name, aside)


# -- meta.json ---------------------------------------------------------------------


def _valid_meta(meta) -> bool:
    return (isinstance(meta, dict) and isinstance(meta.get("cluster_id"), str)
            and 0 < len(meta["cluster_id"]) <= 64
            and isinstance(meta.get("node_id"), int) and isinstance(meta.get("version"), int)
            and isinstance(meta.get("producer_id_block_end", 0), int)
            and meta.get("producer_id_block_end", 0) >= 0)


def load_meta(medium, has_data: bool, new_cluster_id) -> tuple[dict, bool]:
    """(meta, rebuilt). `rebuilt` means the file was damaged or missing
    while data exists: the caller must raise the producer id block past
    every producer id in the logs, then `store_meta`."""
    meta = None
    if medium.exists(files.META_FILE):
        meta = checkpoint.load_json(medium.read(files.META_FILE))
        if _valid_meta(meta):
            return meta, False
        log.warning("%s is damaged (cut, garbage or a failed checksum): rebuilding it; the "
                    "cluster id changes", files.META_FILE)
        _keep_aside(medium, files.META_FILE)
    elif has_data:
        log.warning("%s is missing but the data directory holds topics: rebuilding it; the "
                    "cluster id changes", files.META_FILE)
    fresh = {"cluster_id": new_cluster_id(), "node_id": 0, "version": FORMAT_VERSION}
    if isinstance(meta, dict) and isinstance(meta.get("node_id"), int):
        fresh["node_id"] = meta["node_id"]
    if not has_data and meta is None:
        store_meta(medium, fresh)
        return fresh, False
    return fresh, True


def store_meta(medium, meta: dict) -> None:
    medium.write_atomic(files.META_FILE, checkpoint.dump_json(meta))


# -- topics.json -------------------------------------------------------------------


def _entry(name, raw, validate_name) -> TopicEntry:
    """A registry entry from its JSON form; ValueError/StorageError if bad."""
    validate_name(name)
    if not isinstance(raw, dict):
        raise ValueError("not an object")
    partitions = raw.get("partitions")
    if not isinstance(partitions, int) or isinstance(partitions, bool) or partitions < 1:
        raise ValueError(f"partitions {partitions!r}")
    configs = raw.get("configs", {})
    if not isinstance(configs, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in configs.items()):
        raise ValueError("configs are not strings")
    return TopicEntry(name, uuid.UUID(str(raw.get("id"))), partitions, validate_overrides(configs))


def load_topics(medium, found: DirScan, validate_name) -> tuple[dict[str, TopicEntry], bool]:
    """The registry, reconciled with the partition directories in `found`.
    Returns (entries, changed): `changed` means it must be stored again."""
    entries: dict[str, TopicEntry] = {}
    damaged = False
    if medium.exists(files.TOPICS_FILE):
        document = checkpoint.load_json(medium.read(files.TOPICS_FILE))
        if not isinstance(document, dict):
            log.warning("%s is damaged (cut, garbage or a failed checksum): rebuilding it from "
                        "the partition directories", files.TOPICS_FILE)
            damaged = True
            document = {}
        seen_ids = set()
        for name, raw in document.items():
            try:
                entry = _entry(name, raw, validate_name)
            except (ValueError, TypeError, StorageError) as e:
                log.warning("%s: the entry of topic %r is damaged (%s): rebuilding it from its "
                            "directories", files.TOPICS_FILE, str(name)[:260], e)
                damaged = True
                continue
            if entry.topic_id in seen_ids:
                log.warning("%s: topic %s has the id of another topic: it gets a new one",
                            files.TOPICS_FILE, name)
                entry.topic_id = uuid.uuid4()
                damaged = True
            seen_ids.add(entry.topic_id)
            entries[name] = entry
    elif found.partitions:
        log.warning("%s is missing but partition directories exist: rebuilding it from them",
                    files.TOPICS_FILE)
        damaged = True
    changed = damaged
    for name, entry in list(entries.items()):  # an interrupted DeleteTopics: finish it
        if name in found.deleting and name not in found.partitions:
            log.info("finishing the interrupted delete of topic %s", name)
            del entries[name]
            changed = True
    for name, parts in sorted(found.partitions.items()):
        # A directory name is as untrusted as a file: `t-99999999` must not
        # make a topic of a hundred million partitions. Such directories are
        # left on disk, untouched.
        beyond = sorted(p for p in parts if p >= MAX_PARTITIONS)
        if beyond:
            log.error("ignoring the directories of partitions %s of topic %s: a topic has at "
                      "most %d partitions (left on disk, not deleted)",
                      beyond[:5], name, MAX_PARTITIONS)
            parts = [p for p in parts if p < MAX_PARTITIONS]
            if not parts:
                continue
        count = max(parts) + 1
        entry = entries.get(name)
        if entry is None:
            log.warning("ADOPTED topic %s (%d partitions) from its directories: it had no valid "
                        "entry in %s. It has a new topic id and configs that delete nothing (%s); "
                        "restore its real configs with `strom topic alter %s --config ...`",
                        name, count, files.TOPICS_FILE,
                        ", ".join(f"{k}={v}" for k, v in REBUILT_CONFIGS.items()), name)
            entries[name] = TopicEntry(name, uuid.uuid4(), count, dict(REBUILT_CONFIGS))
            changed = True
        elif entry.partitions < count:
            log.warning("topic %s has directories up to partition %d but %s says %d partitions: "
                        "it now has %d", name, count - 1, files.TOPICS_FILE, entry.partitions, count)
            entry.partitions = count
            changed = True
    if damaged:
        _keep_aside(medium, files.TOPICS_FILE)
    return entries, changed


def store_topics(medium, entries) -> None:
    document = {e.name: {"id": str(e.topic_id), "partitions": e.partitions, "configs": e.configs}
                for e in entries}
    medium.write_atomic(files.TOPICS_FILE, checkpoint.dump_json(document))

