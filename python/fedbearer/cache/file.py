"""The per-user file layer: one small JSON file per tenant in a private directory.

Layout of ``directory`` (0700)::

    <h>.json     the tenant's entry  (0600; h = first 32 hex digits of SHA-256(tenant key))
    <h>.lock     its inter-process lock (fcntl.flock; never deleted, never renamed)
    <h>.login    the "login in progress" record, while an interactive login runs
    <h>.json.corrupt-<time>-<rand>   a damaged entry, moved aside

Why one file per tenant: a write replaces only that tenant's file (no read-modify-write of a
shared document, so nothing to lose), a damaged file costs one tenant one login, and tenants never
wait on each other's locks. Writes go to a temp file in the same directory, are fsynced and
renamed over the entry (POSIX rename is atomic): a reader sees the old or the new file, never half
of one, even when the writer is killed. The lock lives in a separate file because the entry's inode
changes with every rename. Each entry records its tenant key, so a file that is not the tenant's
(copied, or planted) is never served.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import secrets
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from fedbearer.cache.base import CacheEntry, CacheUnavailable, LockHandle, polling_lock
from fedbearer.cache.progress import LoginProgress

log = logging.getLogger(__name__)

__all__ = ["SCHEMA_VERSION", "FileCache"]

SCHEMA_VERSION = 1
"""Version of the entry document; a newer one is left alone (a newer fedbearer wrote it)."""
MAX_FILE_BYTES = 1 << 20
_STALE_TEMP_SECONDS = 600.0

# Lock files held by this process (path -> holder count): flock from a second descriptor of the
# same process would fail anyway; this also lets a lock holder move a damaged file aside.
_held: dict[str, int] = {}
_held_guard = threading.Lock()


def _after_fork() -> None:
    global _held_guard
    _held.clear()  # flock locks are shared with the parent's descriptors; the child holds none
    _held_guard = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def _flock_nb(fd: int) -> bool:
    """One non-blocking exclusive lock attempt; False when another holder has it."""
    if sys.platform == "win32":  # pragma: no cover - untested on Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fd: int) -> None:
    if sys.platform == "win32":  # pragma: no cover
        import msvcrt

        with contextlib.suppress(OSError):
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]
        return
    import fcntl

    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)


class _FileLock:
    __slots__ = ("_fd", "_path")

    def __init__(self, fd: int, path: str) -> None:
        self._fd: int | None = fd
        self._path = path

    async def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        _unlock(fd)
        os.close(fd)
        with _held_guard:
            left = _held.get(self._path, 1) - 1
            if left <= 0:
                _held.pop(self._path, None)
            else:
                _held[self._path] = left


class FileCache:
    """Tokens in ``directory`` (created 0700), one 0600 file per tenant; see the module docs.

    ``fsync=False`` skips the fsyncs (tests, tmpfs); durability across a power cut then depends on
    the filesystem. ``get`` reads inline (a few KB); ``put`` writes in a worker thread (fsync may
    take milliseconds).
    """

    def __init__(self, directory: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.directory = Path(directory).expanduser()
        self.fsync = fsync
        self._ready = False
        self._newer_warned = False

    # -- paths ----------------------------------------------------------------------------------
    @staticmethod
    def _stem(key: str) -> str:
        return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]

    def path_for(self, key: str) -> Path:
        """The entry file of ``key``."""
        return self.directory / f"{self._stem(key)}.json"

    def _lock_path(self, key: str) -> Path:
        return self.directory / f"{self._stem(key)}.lock"

    def _progress_path(self, key: str) -> Path:
        return self.directory / f"{self._stem(key)}.login"

    def _ensure_dir(self) -> None:
        if self._ready:
            return
        directory = self.directory
        try:
            directory.mkdir(mode=0o700, parents=True)
            os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask
        except FileExistsError:
            if sys.platform != "win32":
                st = directory.stat()
                if st.st_mode & 0o077 and st.st_uid == os.getuid():
                    log.warning(
                        "token cache directory %s is accessible to other users (mode %o); "
                        "its files stay 0600",
                        directory,
                        stat.S_IMODE(st.st_mode),
                    )
        self._remove_stale_temps()
        self._ready = True

    def _remove_stale_temps(self) -> None:
        # Left behind by writers killed between creating and renaming their temp file.
        cutoff = time.time() - _STALE_TEMP_SECONDS
        with contextlib.suppress(OSError):
            for path in self.directory.glob(".tmp-*"):
                with contextlib.suppress(OSError):
                    if path.stat().st_mtime < cutoff:
                        path.unlink()

    # -- reading --------------------------------------------------------------------------------
    async def get(self, key: str) -> CacheEntry | None:
        return self.read(key)

    async def get_deep(self, key: str) -> CacheEntry | None:
        return self.read(key)

    def read(self, key: str) -> CacheEntry | None:
        """The entry of ``key``, or None (absent, unreadable, damaged — a damaged file is moved
        aside with a warning; another tenant's files are never touched)."""
        path = self.path_for(key)
        loaded = self._load(path)
        if loaded is None:
            return None
        doc, st = loaded
        try:
            schema = doc.get("schema") if isinstance(doc, dict) else None
            if isinstance(schema, int) and not isinstance(schema, bool) and schema > SCHEMA_VERSION:
                if not self._newer_warned:
                    self._newer_warned = True
                    log.warning("%s was written by a newer fedbearer (schema %d); ignoring it", path, schema)
                return None
            if schema != SCHEMA_VERSION:
                raise ValueError(f"unknown schema {schema!r}")
            if doc.get("key") != key:
                raise ValueError("the file does not hold this tenant's key")
            return CacheEntry.from_dict(doc.get("entry"))
        except ValueError as err:
            self._quarantine(key, path, st, str(err))
            return None

    def _load(self, path: Path) -> tuple[Any, os.stat_result] | None:
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            return None
        except OSError as err:
            log.warning("cannot read token cache file %s: %s", path, err.strerror or type(err).__name__)
            return None
        with os.fdopen(fd, "rb") as f:
            try:
                st = os.fstat(f.fileno())
                data = f.read(MAX_FILE_BYTES + 1)
            except OSError as err:
                log.warning("cannot read token cache file %s: %s", path, err.strerror or type(err).__name__)
                return None
        try:
            if len(data) > MAX_FILE_BYTES:
                raise ValueError("file too large")
            return json.loads(data.decode("utf-8")), st
        except ValueError as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            self._quarantine(None, path, st, f"not valid JSON ({type(err).__name__})")
            return None

    def _quarantine(self, key: str | None, path: Path, seen: os.stat_result, reason: str) -> None:
        """Move a damaged entry aside, unless a writer replaced it meanwhile."""
        lock_path = self.directory / (path.name.split(".", 1)[0] + ".lock")
        fd: int | None = None
        with _held_guard:
            mine = str(lock_path) in _held
        if not mine:
            try:
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
            except OSError:
                fd = None
            if fd is None or not _flock_nb(fd):
                if fd is not None:
                    os.close(fd)
                # Someone holds the lock and is about to replace the file anyway.
                log.warning("token cache file %s is damaged (%s); ignoring it", path, reason)
                return
        try:
            try:
                now = os.stat(path, follow_symlinks=False)
            except OSError:
                return
            if (now.st_ino, now.st_dev) != (seen.st_ino, seen.st_dev):
                return  # replaced by a good write since we read it
            aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}-{secrets.token_hex(3)}")
            try:
                os.replace(path, aside)
            except OSError as err:
                log.warning("token cache file %s is damaged (%s) and cannot be moved: %s", path, reason, err)
                return
            log.warning("token cache file %s was damaged (%s); moved it to %s", path, reason, aside.name)
        finally:
            if fd is not None:
                _unlock(fd)
                os.close(fd)

    # -- writing --------------------------------------------------------------------------------
    async def put(self, key: str, entry: CacheEntry) -> None:
        await asyncio.to_thread(self.write, key, entry)

    def write(self, key: str, entry: CacheEntry) -> None:
        """Atomically replace ``key``'s file (temp + fsync + rename). Logs and swallows OS errors."""
        doc = {
            "schema": SCHEMA_VERSION,
            "key": key,
            "written_at": time.time(),
            "writer_pid": os.getpid(),
            "entry": entry.to_dict(),
        }
        try:
            self._ensure_dir()
            self._replace(self.path_for(key), json.dumps(doc, separators=(",", ":")).encode())
        except OSError as err:
            log.warning("cannot write the token cache in %s: %s", self.directory, err.strerror or err)

    def _replace(self, path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.stem}-", dir=self.directory)  # mode 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                if self.fsync:
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        if self.fsync and sys.platform != "win32":
            # Make the rename itself durable.
            with contextlib.suppress(OSError):
                dfd = os.open(self.directory, os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)

    async def delete(self, key: str) -> None:
        self.remove(key)

    def remove(self, key: str) -> None:
        for path in (self.path_for(key), self._progress_path(key)):
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as err:
                log.warning("cannot remove %s: %s", path, err.strerror or err)

    # -- locking --------------------------------------------------------------------------------
    async def try_lock(self, key: str, ttl: float) -> LockHandle | None:
        """One non-blocking ``flock`` attempt on ``key``'s lock file. The kernel releases it when
        the holder exits or is killed, so a dead owner never blocks anyone. ``ttl`` is unused."""
        try:
            self._ensure_dir()
        except OSError as err:
            raise CacheUnavailable(f"token cache directory unusable: {err.strerror or err}") from None
        path = str(self._lock_path(key))
        with _held_guard:
            if path in _held:
                return None
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        except OSError as err:
            raise CacheUnavailable(f"cannot open lock file: {err.strerror or err}") from None
        try:
            got = _flock_nb(fd)
        except OSError as err:  # e.g. a filesystem without flock
            os.close(fd)
            raise CacheUnavailable(f"cannot lock {path}: {err.strerror or err}") from None
        if not got:
            os.close(fd)
            return None
        with _held_guard:
            if path in _held:  # another thread of ours got in between
                _unlock(fd)
                os.close(fd)
                return None
            _held[path] = 1
        return _FileLock(fd, path)

    def lock(self, key: str, timeout: float) -> AbstractAsyncContextManager[None]:
        return polling_lock(self, key, timeout)

    # -- the login-in-progress record -----------------------------------------------------------
    async def get_progress(self, key: str) -> LoginProgress | None:
        path = self._progress_path(key)
        try:
            data = path.read_bytes()[: 64 * 1024]
            return LoginProgress.from_dict(json.loads(data.decode("utf-8")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            with contextlib.suppress(OSError):
                path.unlink()
            return None

    async def put_progress(self, key: str, progress: LoginProgress) -> None:
        try:
            self._ensure_dir()
            self._replace(self._progress_path(key), json.dumps(progress.to_dict()).encode())
        except OSError as err:
            log.warning("cannot record the login in progress: %s", err.strerror or err)

    async def delete_progress(self, key: str, owner: str | None = None) -> None:
        if owner is not None:
            current = await self.get_progress(key)
            if current is None or current.owner != owner:
                return  # a later login's record
        with contextlib.suppress(OSError):
            self._progress_path(key).unlink()

    # -- listing --------------------------------------------------------------------------------
    def entries(self) -> Iterator[tuple[str, CacheEntry]]:
        """Every readable (key, entry) in the directory (for ``fedbearer status``)."""
        with contextlib.suppress(OSError):
            self._remove_stale_temps()
        try:
            paths = sorted(self.directory.glob("*.json"))
        except OSError:
            return
        for path in paths:
            loaded = self._load(path)
            if loaded is None:
                continue
            doc, _ = loaded
            key = doc.get("key") if isinstance(doc, dict) else None
            if isinstance(key, str) and self.path_for(key) == path:
                entry = self.read(key)
                if entry is not None:
                    yield key, entry

    def __repr__(self) -> str:
        return f"FileCache({str(self.directory)!r})"
