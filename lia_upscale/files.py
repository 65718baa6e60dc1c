"""The one way to write a file safely, used by every writer (images, weights, checkpoints).

A temporary file in the target folder (``.NAME.XXXXXXXX.part``), fsync, then an atomic
rename that replaces nothing unless asked. The result gets the mode of the file it
replaces, or else the permissions a plain ``open(path, "w")`` would give (0666 less the
user's umask), never ``mkstemp``'s 0600.

Only regular files are written or replaced: a path that exists as a directory, a named
pipe, a device or a socket is refused (:class:`NotRegularFileError`), whatever the caller's
overwrite policy.

A temporary file carries proof of its owner: an advisory ``flock`` held for as long as it
is written, and an owner record (the extended attribute :data:`OWNER_ATTRIBUTE`) set once
the lock is held. A run killed outright (SIGKILL, power loss) leaves its temporary files
unlocked: :func:`remove_stale_temporaries` removes those at once, and never a file that is
locked (a live run's), has no owner record (a user's file merely shaped like ours), or is
not a regular file. On a file system without extended attributes a temporary file has no
record, so a killed run's leftovers there are left alone.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import re
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["StagedFile", "NotRegularFileError", "atomic_writer", "atomic_write", "check_writable_target", "open_regular",
           "discard_temporaries_for", "remove_stale_temporaries", "OWNER_ATTRIBUTE"]

#: The extended attribute that marks a temporary file as lia-upscale's own.
OWNER_ATTRIBUTE = "user.lia-upscale.owner"
_OWNER_RECORD = b"lia-upscale temporary file"

_SUFFIX = ".part"
_MAX_NAME_BYTES = 255  # NAME_MAX of every common file system
_RANDOM = 8  # mkstemp's random part
#: ``.NAME.XXXXXXXX.part``, XXXXXXXX as mkstemp makes it
_TEMP_NAME = re.compile(r"\..+\.[a-z0-9_]{%d}%s" % (_RANDOM, re.escape(_SUFFIX)), re.DOTALL)


class NotRegularFileError(OSError):
    """A path we would write, or read, exists and is not a regular file (a directory, named
    pipe, device or socket): it is never replaced, nor read. ``what`` names what it is
    (``"a named pipe (FIFO)"``)."""

    what: str = "not a regular file"

    @classmethod
    def at(cls, path: str | os.PathLike[str], mode: int, why: str) -> NotRegularFileError:
        """The error for ``path`` of file ``mode``; ``why`` follows what it is in the message."""
        error = cls(errno.EEXIST, f"is {_kind(mode)}, {why}", os.fspath(path))
        error.what = _kind(mode)
        return error


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_writable_target(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` exists (following a symbolic link) as a regular file; False when it
    does not exist. Raises :class:`NotRegularFileError` when it exists as anything else."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ELOOP, errno.ENAMETOOLONG):
            return False  # cannot exist as a file: creating it will say why
        raise
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFileError.at(path, st.st_mode, "not a regular file: never replaced")
    return True


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """Open ``path`` for reading without blocking (a named pipe with no writer, a device) and
    check the open descriptor with fstat: only a regular file is returned, so a file swapped
    for a pipe or a link to ``/dev/zero`` fails here, at once. Raises
    :class:`NotRegularFileError` for anything else, OSError when it cannot be opened."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError.at(path, mode, "not a regular file")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    # outside the try: once fdopen has the descriptor it closes it itself if it fails (an
    # interrupt inside it), and a second close could hit a number another thread reopened
    return os.fdopen(fd, "rb")


def _umask() -> int:
    """The process umask, read without changing it where /proc allows (thread-safe)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode_for(path: Path) -> int:
    """The mode a new ``path`` gets: the replaced file's, or 0666 less the umask."""
    try:
        st = os.stat(path)
    except OSError:
        return 0o666 & ~_umask()
    return stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else 0o666 & ~_umask()


def _temp_prefix(name: str) -> str:
    """``.NAME.``, NAME cut so that the whole temporary name fits in 255 bytes."""
    room = _MAX_NAME_BYTES - len(f"..{'x' * _RANDOM}{_SUFFIX}")
    raw = os.fsencode(name)
    if len(raw) > room:
        cut = raw[:room]
        for end in range(room, room - 4, -1):  # never split a UTF-8 character
            try:
                cut = raw[:end].decode("utf-8").encode("utf-8")
                break
            except UnicodeDecodeError:
                continue
        name = os.fsdecode(cut)
    return f".{name}."


def _libc_renameat2() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_renameat2 = _libc_renameat2()
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


def _rename_no_replace(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst`` atomically unless ``dst`` exists (then FileExistsError):
    ``renameat2(RENAME_NOREPLACE)`` where the kernel and file system have it, else a hard
    link and an unlink, else (a file system without links) a check and a rename."""
    sys.audit("os.rename", src, dst, -1, -1)  # the same event os.replace raises: a rename is a rename
    if _renameat2 is not None:
        if _renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise OSError(err, os.strerror(err), os.fspath(dst))  # EEXIST: FileExistsError
    try:
        os.link(src, dst)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
            raise
        if os.path.lexists(dst):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fspath(dst)) from None
        os.rename(src, dst)
        return
    os.unlink(src)


def _mark_ours(fd: int) -> None:
    """Lock ``fd`` for as long as it is open, then record that the file is ours (lock first:
    a record without a live lock means its writer is dead)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a brand-new file: nobody else holds it
    except OSError:
        return  # no locks on this file system: without a live lock, no record either (never swept)
    try:
        os.setxattr(fd, OWNER_ATTRIBUTE, _OWNER_RECORD)
    except (OSError, AttributeError):
        pass  # no extended attributes here: the file is simply never swept


class StagedFile:
    """A file written under a temporary name in its target folder, moved in place by
    :meth:`commit` (after fsync) or removed by :meth:`discard`: a write whose last step
    can come later, e.g. from the thread that reports it.

    ``fp`` is a binary file open for reading and writing (a writer may patch what it wrote).
    Raises :class:`NotRegularFileError` when ``path`` exists and is not a regular file, and
    NotADirectoryError (never FileExistsError, which means the target itself) when a file
    stands where its folder should be.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        #: whether ``path`` was a regular file when the write began (see :meth:`commit`)
        self.existed = check_writable_target(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError:  # a file where the folder should be: not the target appearing
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), os.fspath(self.path.parent)) from None
        mode = _mode_for(self.path)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=_temp_prefix(self.path.name), suffix=_SUFFIX)
        self._tmp = Path(tmp)
        _live[self._tmp] = self.path
        try:  # the file owns the descriptor from here (fdopen closes it itself if it fails):
            # never closed twice, which could hit a number another thread has reopened
            self.fp: BinaryIO = os.fdopen(fd, "w+b")
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            _live.pop(self._tmp, None)
            raise
        try:
            _mark_ours(self.fp.fileno())
            if hasattr(os, "fchmod"):
                os.fchmod(self.fp.fileno(), mode)  # mkstemp's 0600 would stick
        except BaseException:
            self.discard()
            raise
        self._open = True

    @property
    def temporary(self) -> Path:
        """The temporary file's path (to read back what was written, before commit or discard)."""
        return self._tmp

    def commit(self, *, overwrite: bool | None = None) -> None:
        """Flush, fsync, close and move the file to its path; removes it on failure.

        ``overwrite``: True replaces an existing regular file; False never replaces
        anything (FileExistsError when the path exists, e.g. a file another program made
        since the run was planned); None replaces only a regular file that was there when
        this write began. A path that is not a regular file is never replaced
        (:class:`NotRegularFileError`).
        """
        if not self._open:
            raise ValueError(f"{self.path}: already committed or discarded")
        try:
            self.fp.flush()
            os.fsync(self.fp.fileno())
            replace = self.existed if overwrite is None else overwrite
            if replace and check_writable_target(self.path):
                os.replace(self._tmp, self.path)
            else:
                _rename_no_replace(self._tmp, self.path)
            try:
                os.removexattr(self.fp.fileno(), OWNER_ATTRIBUTE)  # the result is the user's file
            except (OSError, AttributeError):
                pass
            self.fp.close()  # releases the lock
        except BaseException:
            self.discard()
            raise
        self._open = False
        _live.pop(self._tmp, None)

    def discard(self) -> None:
        """Close and remove the temporary file (safe to call more than once)."""
        self._open = False
        try:
            self._tmp.unlink(missing_ok=True)  # while still locked: no sweeper can mistake it
        finally:
            self.fp.close()
            _live.pop(self._tmp, None)


#: temporary file -> its target, for every StagedFile of this process not yet committed or
#: discarded (dict operations are atomic under the GIL)
_live: dict[Path, Path] = {}


def discard_temporaries_for(targets: Iterable[Path]) -> None:
    """Remove this process's uncommitted temporary files for these target paths.

    For an interrupted batch, after its writes in flight have finished or been discarded:
    a Ctrl-C that lands between a temporary file's creation and the moment its writer is
    handed to someone who would discard it (a few bytecodes on the way out of a call)
    orphans the file; this finds it. Open files of other targets are left alone.
    """
    wanted = {Path(t) for t in targets}
    for tmp, target in list(_live.items()):
        if target in wanted:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            _live.pop(tmp, None)


@contextmanager
def atomic_writer(path: Path, *, overwrite: bool | None = None) -> Iterator[BinaryIO]:
    """Write ``path`` through a temporary file in the same folder, moved in place on success.

    Yields a binary file (readable too). On any error or interrupt the temporary file is
    removed and ``path`` is left as it was: the old file, absent, or (after success) the
    complete new one. ``overwrite`` as :meth:`StagedFile.commit`.
    """
    staged = StagedFile(path)
    try:
        yield staged.fp
    except BaseException:
        staged.discard()
        raise
    staged.commit(overwrite=overwrite)


def atomic_write(dst: Path, write: Callable[[BinaryIO], None], *, overwrite: bool | None = None) -> None:
    """Call ``write(fp)`` on a temporary file that becomes ``dst`` when it returns (see :func:`atomic_writer`)."""
    with atomic_writer(dst, overwrite=overwrite) as fp:
        write(fp)


def _remove_if_dead(path: str) -> bool:
    """Remove ``path`` if it is a regular file with our owner record whose lock nobody holds."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or os.getxattr(fd, OWNER_ATTRIBUTE) != _OWNER_RECORD:
            return False
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: its writer lives
        now = os.stat(path, follow_symlinks=False)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            return False
        os.unlink(path)
        return True
    except (OSError, AttributeError):
        return False
    finally:
        os.close(fd)


def remove_stale_temporaries(folder: Path, target: Path | None = None) -> list[Path]:
    """Delete the temporary files that runs which are no longer alive left in ``folder``
    (not below); with ``target``, only those of that output. Returns the removed paths.

    A file is removed only when it is provably a dead run's: named as ours, a regular
    file, carrying our owner record, and not locked (a live run holds the lock of every
    temporary file it writes, in this process or any other). Files that cannot be
    removed are left.
    """
    removed = []
    prefix = _temp_prefix(target.name) if target is not None else None
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not _TEMP_NAME.fullmatch(entry.name) or (prefix is not None and not entry.name.startswith(prefix)):
            continue
        if _remove_if_dead(entry.path):
            removed.append(Path(entry.path))
    return removed
