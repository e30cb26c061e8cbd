"""File names, suffixes and the two media a log can live on.

Every name Strom puts in a data directory is spelled here (as Kafka's
LogFileUtils does). A partition directory is `<topic>-<partition>`; segment
files are named by their base offset, zero-padded to 20 digits.

`DiskMedium` and `MemoryMedium` expose the same small file API (append,
pread, truncate, sync, atomic replace, rename, list, delete), so the
segment, log, cleaner and manager code is one code path over either backend.
"""

import os
import threading

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIME_INDEX_SUFFIX = ".timeindex"
CLEANED_SUFFIX = ".cleaned"
SWAP_SUFFIX = ".swap"
DELETED_SUFFIX = ".deleted"
TMP_SUFFIX = ".tmp"

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


class DiskFile:
    """An append-only file handle with positional reads; one writer at a time,
    reads and `sync` may run concurrently from other threads."""

    def __init__(self, path: str):
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        self.size = os.fstat(self._fd).st_size
        os.lseek(self._fd, 0, os.SEEK_END)

    def append(self, buffers: list, total: int) -> None:
        """Append a list of buffers (`total` bytes) with one writev, no
        concatenation."""
        if len(buffers) <= _IOV_MAX:
            n = os.writev(self._fd, buffers)
            self.size += n
            if n == total:
                return
            rest = memoryview(b"".join(buffers))[n:]  # a short write
        else:  # more buffers than one writev takes (hundreds of batches)
            rest = memoryview(b"".join(buffers))
        while rest:
            k = os.write(self._fd, rest)
            rest = rest[k:]
            self.size += k

    def pread(self, pos: int, n: int) -> bytes:
        return os.pread(self._fd, n, pos)

    def truncate(self, size: int) -> None:
        os.ftruncate(self._fd, size)
        os.lseek(self._fd, size, os.SEEK_SET)
        self.size = size

    def sync(self) -> None:
        os.fdatasync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class DiskMedium:
    """Real files under `root`. Paths passed in are relative to `root`."""

    durable = True

    def __init__(self, root: str):
        self.root = root
        os.makedirs(root, exist_ok=True)

    def _p(self, path: str) -> str:
        return os.path.join(self.root, path)

    def open(self, path: str) -> DiskFile:
        return DiskFile(self._p(path))

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
