"""File names, suffixes and the two media a log can live on.

Every name Strom puts in a data directory is spelled here (as Kafka's
LogFileUtils does). A partition directory is `<topic>-<partition>`; segment
files are named by their base offset, zero-padded to 20 digits.

`DiskMedium` and `MemoryMedium` expose the same small file API (append,
pread, truncate, sync, atomic replace, rename, list, delete), so the
segment, log, cleaner and manager code is one code path over either backend.
A DiskMedium opens its files through one bounded FileCache, so the number of
descriptors does not grow with the number of segments (FDS_PER_PARTITION).
"""

import errno
import os
import threading
from collections import OrderedDict

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIME_INDEX_SUFFIX = ".timeindex"
TXN_INDEX_SUFFIX = ".txnindex"  # aborted transactions (txn_index.py)
CLEANED_SUFFIX = ".cleaned"
SWAP_SUFFIX = ".swap"
DELETED_SUFFIX = ".deleted"
TMP_SUFFIX = ".tmp"
SNAPSHOT_SUFFIX = ".snapshot"  # producer state at an offset (producer_state.py)

META_FILE = "meta.json"
TOPICS_FILE = "topics.json"
CLEAN_SHUTDOWN_FILE = ".strom_cleanshutdown"
RECOVERY_POINT_FILE = "recovery-point-offset-checkpoint"
LOG_START_OFFSET_FILE = "log-start-offset"

_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024


def segment_name(base_offset: int, suffix: str) -> str:
    return f"{base_offset:020d}{suffix}"


def parse_segment_name(name: str) -> tuple[int, str] | None:
    """(base_offset, suffix) for a segment file name, else None."""
    stem, dot, rest = name.partition(".")
    if not dot or len(stem) != 20 or not stem.isdigit():
        return None
    return int(stem), "." + rest


def partition_dir_name(topic: str, partition: int) -> str:
    return f"{topic}-{partition}"


def parse_partition_dir_name(name: str) -> tuple[str, int] | None:
    topic, dash, num = name.rpartition("-")
    if not dash or not topic or not num.isdigit():
        return None
    return topic, int(num)


# A partition directory being deleted is first renamed to
# `<topic>-<partition>.<32 hex digits>-delete` (Kafka's name for it): only
# directories so marked are removed at load.
DELETE_DIR_SUFFIX = "-delete"


def delete_dir_name(topic: str, partition: int, unique: str) -> str:
    return f"{topic}-{partition}.{unique}{DELETE_DIR_SUFFIX}"


def parse_delete_dir_name(name: str) -> tuple[str, int] | None:
    if not name.endswith(DELETE_DIR_SUFFIX):
        return None
    stem, dot, unique = name[: -len(DELETE_DIR_SUFFIX)].rpartition(".")
    if not dot or len(unique) != 32 or not all(c in "0123456789abcdef" for c in unique):
        return None
    return parse_partition_dir_name(stem)


# Descriptors a partition holds at the least, whatever its number of
# segments: its active segment's `.log`, pinned open because every produce
# writes to it. Every other file (older segments' `.log`s, all indexes, a
# compaction's output) is opened through the medium's FileCache, which keeps
# at most `max_open_files` of them open for the whole data directory, plus
# those in use at that instant. Directory fsyncs and atomic replaces open one
# more descriptor each for the duration of the call.
FDS_PER_PARTITION = 1
DEFAULT_MAX_OPEN_FILES = 256


class FileCache:
    """A bounded, least-recently-used set of open descriptors shared by the
    DiskFiles of one medium (as NATS' filestore bounds its open blocks).

    A file's descriptor is opened on first use and closed when the cache is
    over `max_open_files` and the file is the least recently used one that no
    thread is using at that moment (`_users`); the next use reopens it. A
    pinned file is outside the cache and stays open until closed. Counters for
    a later /metrics: `opens` (descriptors opened, first opens included),
    `evictions`."""

    def __init__(self, max_open_files: int = DEFAULT_MAX_OPEN_FILES):
        self.max_open_files = max(1, max_open_files)
        self._lock = threading.Lock()
        self._lru: OrderedDict = OrderedDict()  # unpinned files with a descriptor, oldest first
        self.opens = 0
        self.evictions = 0

    @property
    def open_files(self) -> int:
        """Unpinned files holding a descriptor now."""
        return len(self._lru)

    def acquire(self, f: "DiskFile") -> int:
        """The file's descriptor, opened if need be; pair with `release`."""
        with self._lock:
            if f._fd < 0:
                if f._closed:
                    raise OSError(errno.EBADF, f"{f.path}: file is closed")
                self._open_fd(f)
            f._users += 1
            if not f._pinned:
                lru = self._lru
                lru[f] = None
                lru.move_to_end(f)
                if len(lru) > self.max_open_files:
                    self._evict()
            return f._fd

    def release(self, f: "DiskFile") -> None:
        with self._lock:
            f._users -= 1
            if f._closed and not f._users:
                self._close_fd(f)

    def _open_fd(self, f: "DiskFile") -> None:
        flags = os.O_RDWR if f._created else os.O_RDWR | os.O_CREAT
        try:
            f._fd = os.open(f.path, flags, 0o644)
        except OSError as e:
            if e.errno not in (errno.EMFILE, errno.ENFILE) or not self._lru:
                raise
            # Out of descriptors: give back every idle one we hold, once.
            for idle in [g for g in self._lru if g._users == 0]:
                self._close_fd(idle)
                self.evictions += 1
            f._fd = os.open(f.path, flags, 0o644)
        f._created = True
        self.opens += 1

    def _evict(self) -> None:
        excess = len(self._lru) - self.max_open_files
        victims = []
        for f in self._lru:  # oldest first; normally the first one is idle
            if len(victims) == excess:
                break
            if f._users == 0:
                victims.append(f)
        for f in victims:
            self._close_fd(f)
        self.evictions += len(victims)

    def _close_fd(self, f: "DiskFile") -> None:
        self._lru.pop(f, None)
        if f._fd >= 0:
            os.close(f._fd)
            f._fd = -1

    def pin(self, f: "DiskFile") -> None:
        with self._lock:
            if f._closed:
                return
            if f._fd < 0:
                self._open_fd(f)
            self._lru.pop(f, None)
            f._pinned = True

    def unpin(self, f: "DiskFile") -> None:
        with self._lock:
            if not f._pinned:
                return
            f._pinned = False
            if f._fd >= 0:
                self._lru[f] = None
                if len(self._lru) > self.max_open_files:
                    self._evict()

    def close(self, f: "DiskFile") -> None:
        with self._lock:
            f._closed = True
            f._pinned = False
            if not f._users:  # else the last user closes it
                self._close_fd(f)


class DiskFile:
    """An append-only file with positional reads and writes; one writer at a
    time, reads and `sync` may run concurrently from other threads.

    Its descriptor comes from the medium's FileCache, so it may be closed
    between calls and reopened (the size is ours: nobody else writes the
    file). A pinned file (the active segment's `.log`) keeps its descriptor,
    and its appends skip the cache: the caller serialises them with `unpin`
    and `close` (PartitionLog holds its lock for all three)."""

    def __init__(self, path: str, cache: FileCache):
        self.path = path
        self._cache = cache
        self._fd = -1
        self._users = 0
        self._pinned = False
        self._closed = False
        self._created = False
        fd = cache.acquire(self)
        try:
            self.size = os.fstat(fd).st_size
        finally:
            cache.release(self)

    def pin(self) -> None:
        self._cache.pin(self)

    def unpin(self) -> None:
        self._cache.unpin(self)

    def append(self, buffers: list, total: int) -> None:
        """Append a list of buffers (`total` bytes) with one pwritev, no
        concatenation. On an error `size` counts what reached the file."""
        cache = self._cache
        pinned = self._pinned
        fd = self._fd if pinned else cache.acquire(self)
        try:
            if len(buffers) <= _IOV_MAX:
                n = os.pwritev(fd, buffers, self.size)
                self.size += n
                if n == total:
                    return
                rest = memoryview(b"".join(buffers))[n:]  # a short write
            else:  # more buffers than one pwritev takes (hundreds of batches)
                rest = memoryview(b"".join(buffers))
            while rest:
                k = os.pwrite(fd, rest, self.size)
                rest = rest[k:]
                self.size += k
        finally:
            if not pinned:
                cache.release(self)

    def pread(self, pos: int, n: int) -> bytes:
        cache = self._cache
        fd = cache.acquire(self)
        try:
            return os.pread(fd, n, pos)
        finally:
            cache.release(self)

    def truncate(self, size: int) -> None:
        cache = self._cache
        fd = cache.acquire(self)
        try:
            os.ftruncate(fd, size)
            self.size = size
        finally:
            cache.release(self)

    def sync(self) -> None:
        cache = self._cache
        fd = cache.acquire(self)
        try:
            os.fdatasync(fd)
        finally:
            cache.release(self)

    def close(self) -> None:
        self._cache.close(self)


class DiskMedium:
    """Real files under `root`. Paths passed in are relative to `root`."""

    durable = True

    def __init__(self, root: str, max_open_files: int = DEFAULT_MAX_OPEN_FILES):
        self.root = root
        self.file_cache = FileCache(max_open_files)
        os.makedirs(root, exist_ok=True)

    def _p(self, path: str) -> str:
        return os.path.join(self.root, path)

    def open(self, path: str) -> DiskFile:
        return DiskFile(self._p(path), self.file_cache)

    def exists(self, path: str) -> bool:
        return os.path.exists(self._p(path))

    def listdir(self, path: str = "") -> list[str]:
        try:
            return sorted(os.listdir(self._p(path)))
        except FileNotFoundError:
            return []

    def makedirs(self, path: str) -> None:
        os.makedirs(self._p(path), exist_ok=True)

    def read(self, path: str) -> bytes:
        with open(self._p(path), "rb") as f:
            return f.read()

    def write_atomic(self, path: str, data: bytes) -> None:
        """Temp file, fsync, rename, fsync the directory: all or nothing."""
        full = self._p(path)
        tmp = full + TMP_SUFFIX
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, full)
        self.sync_dir(os.path.dirname(path))

    def remove(self, path: str) -> None:
        try:
            os.remove(self._p(path))
        except FileNotFoundError:
            pass

    def rename(self, src: str, dst: str) -> None:
        os.replace(self._p(src), self._p(dst))

    def rmtree(self, path: str) -> None:
        full = self._p(path)
        for name in self.listdir(path):
            os.remove(os.path.join(full, name))
        try:
            os.rmdir(full)
        except FileNotFoundError:
            pass

    def sync_dir(self, path: str = "") -> None:
        fd = os.open(self._p(path) or ".", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class MemoryFile:
    def __init__(self, data: bytearray):
        self._data = data

    @property
    def size(self) -> int:
        return len(self._data)

    def append(self, buffers: list, total: int) -> None:
        for b in buffers:
            self._data += b

    def pread(self, pos: int, n: int) -> bytes:
        return bytes(self._data[pos : pos + n])

    def truncate(self, size: int) -> None:
        del self._data[size:]

    def sync(self) -> None:
        pass

    def pin(self) -> None:
        pass

    def unpin(self) -> None:
        pass

    def close(self) -> None:
        pass


class MemoryMedium:
    """Files as bytearrays in a dict. Survives close/reopen of the logs on it
    (the object is the "disk"), not the process."""

    durable = False

    def __init__(self):
        self._files: dict[str, bytearray] = {}
        self._dirs: set[str] = {""}
        self._lock = threading.Lock()

    def open(self, path: str) -> MemoryFile:
        with self._lock:
            return MemoryFile(self._files.setdefault(path, bytearray()))

    def exists(self, path: str) -> bool:
        return path in self._files or path in self._dirs

    def listdir(self, path: str = "") -> list[str]:
        prefix = path + "/" if path else ""
        with self._lock:
            names = {p[len(prefix):].split("/")[0] for p in [*self._files, *self._dirs]
                     if p.startswith(prefix) and p != path and p[len(prefix):]}
        return sorted(names)

    def makedirs(self, path: str) -> None:
        parts = path.split("/")
        with self._lock:
            for i in range(1, len(parts) + 1):
                self._dirs.add("/".join(parts[:i]))

    def read(self, path: str) -> bytes:
        try:
            return bytes(self._files[path])
        except KeyError:
            raise FileNotFoundError(path) from None

    def write_atomic(self, path: str, data: bytes) -> None:
        with self._lock:
            self._files[path] = bytearray(data)

    def remove(self, path: str) -> None:
        with self._lock:
            self._files.pop(path, None)

    def rename(self, src: str, dst: str) -> None:
        with self._lock:
            self._files[dst] = self._files.pop(src)

    def rmtree(self, path: str) -> None:
        prefix = path + "/"
        with self._lock:
            for p in [p for p in self._files if p.startswith(prefix)]:
                del self._files[p]
            self._dirs.discard(path)

    def sync_dir(self, path: str = "") -> None:
        pass
