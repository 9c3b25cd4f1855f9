"""Crash-safe writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import glob
import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from pinid.errors import PinidError


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # once, at import: os.umask is process-wide, not thread-safe


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temp file beside ``path``; on success fsync and rename it into place."""
    path = Path(path)
    if path.is_dir():
        raise PinidError(f"{path}: is a folder; give the name of a file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    with naming_write_errors(path):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp's 0600 is for the temp name only
        with naming_write_errors(path), os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, *, marker: str) -> Iterator[Path]:
    """Build a folder under a temporary name and rename it into place only when complete.

    An existing folder is replaced only if it is empty or holds ``marker`` (i.e. it is an
    earlier output of the same kind), and only after the new one is fully written: a typo
    in ``--out`` must never delete a user's files.
    """
    path = Path(path).resolve()
    if path.exists() and not (path.is_dir() and _replaceable(path, marker)):
        raise PinidError(f"{path}: exists and is not a folder pinid wrote; choose another --out")
    with naming_write_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_orphans(path)
        prefix = f".{path.name}.{os.getpid()}."
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=prefix, suffix=".tmp"))
    try:
        with naming_write_errors(path):
            tmp.chmod(0o777 & ~_UMASK)
            yield tmp
            _fsync_top_level(tmp)
        if not path.exists():
            os.replace(tmp, path)
        elif _exchange(tmp, path):  # tmp now holds the old folder
            shutil.rmtree(tmp, ignore_errors=True)
        else:  # no atomic exchange here: a crash between the two renames leaves `.NAME.old`
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        _fsync_directory(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


WRITE_ERRORS = frozenset(
    (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG)
)
"""What a full disk, a quota, a read-only or forbidden place or a failing device raise."""


@contextlib.contextmanager
def naming_write_errors(path: Path) -> Iterator[None]:
    """A failed write (a full disk, a read-only folder) as one line naming what was being
    written; a write error's own message names no file."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in WRITE_ERRORS:
            raise
        raise PinidError(f"{path}: cannot write ({exc.strerror or exc})") from exc


@contextlib.contextmanager
def output_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold a lock on ``path`` while this thread writes it: a second pinid of this user writing
    the same output on this machine refuses at once instead of racing the first. Re-entrant
    within a thread. The lock is a file in the temporary folder, named by the path: not beside
    the output, so that a refused run writes nothing there."""
    path = Path(path).resolve()
    held = _HELD.__dict__.setdefault("paths", set())
    if path in held:
        yield
        return
    lock = lock_file(path)
    with naming_write_errors(lock):
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            raise PinidError(
                f"{path}: another pinid (pid {holder}) is writing it; try again when it ends"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        held.add(path)
        try:
            yield
        finally:
            held.discard(path)
    finally:
        os.close(fd)  # releases the lock; the file stays (unlinking it would race a newcomer)


def lock_file(path: str | os.PathLike) -> Path:
    """Where :func:`output_lock` keeps the lock of ``path`` (it holds the holder's pid)."""
    digest = hashlib.sha256(os.fsencode(Path(path).resolve())).hexdigest()[:32]
    return Path(tempfile.gettempdir()) / f"pinid-locks-{os.getuid()}" / f"{digest}.lock"


_HELD = threading.local()
"""``paths``: the outputs this thread holds the lock of."""


def _remove_orphans(path: Path) -> None:
    """Remove temporary folders of ``path`` left by killed runs (their pid is gone); a writer
    still running keeps its own."""
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = stale.name[len(path.name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``), so a reader
    or a crash sees the old folder or the new one, never neither. False where unsupported."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _fsync_top_level(folder: Path) -> None:
    """Flush the folder's own files (model.json, arrays) to disk before it is renamed in."""
    for entry in os.scandir(folder):
        if entry.is_file(follow_symlinks=False):
            fd = os.open(entry.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    _fsync_directory(folder)


def _fsync_directory(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_output_folder(path: str | os.PathLike, *markers: str) -> Path:
    """An --out folder pinid may write into: new, empty, or holding one of its own ``markers``.

    A typo in --out must never mix pinid's files into (or over) a folder of the user's.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise PinidError(f"{path}: is a file; --out needs a folder")
    if path.is_dir() and any(path.iterdir()) and not any((path / m).exists() for m in markers):
        raise PinidError(f"{path}: exists and is not a folder pinid wrote; choose another --out")
    return path


def _replaceable(folder: Path, marker: str) -> bool:
    return (folder / marker).is_file() or not any(folder.iterdir())
