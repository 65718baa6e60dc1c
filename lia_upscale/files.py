"""The one way to write a file safely, used by every writer (images, weights, checkpoints).

A temporary file in the target folder (``.NAME.XXXXXXXX.part``), fsync, then an atomic
rename. The result gets the mode of the file it replaces, or else the permissions a plain
``open(path, "w")`` would give (0666 less the user's umask), never ``mkstemp``'s 0600.
A run killed outright (SIGKILL, power loss) can leave a temporary file behind:
:func:`remove_stale_temporaries` removes those of our naming once they are old.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["StagedFile", "atomic_writer", "atomic_write", "discard_temporaries_for", "remove_stale_temporaries",
           "temporaries_of", "STALE_AFTER_S"]

#: A temporary file of ours older than this is a leftover (no write takes that long).
STALE_AFTER_S = 600.0

_SUFFIX = ".part"
_MAX_NAME_BYTES = 255  # NAME_MAX of every common file system
_RANDOM = 8  # mkstemp's random part
#: ``.NAME.XXXXXXXX.part``, XXXXXXXX as mkstemp makes it
_TEMP_NAME = re.compile(r"\..+\.[a-z0-9_]{%d}%s" % (_RANDOM, re.escape(_SUFFIX)), re.DOTALL)


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


class StagedFile:
    """A file written under a temporary name in its target folder, moved in place by
    :meth:`commit` (after fsync) or removed by :meth:`discard`: a write whose last step
    can come later, e.g. from the thread that reports it.

    ``fp`` is a binary file open for reading and writing (a writer may patch what it wrote).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        mode = _mode_for(self.path)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=_temp_prefix(self.path.name), suffix=_SUFFIX)
        self._tmp = Path(tmp)
        _live[self._tmp] = self.path
        try:
            self.fp: BinaryIO = os.fdopen(fd, "w+b")
            if hasattr(os, "fchmod"):
                os.fchmod(self.fp.fileno(), mode)  # mkstemp's 0600 would stick
        except BaseException:
            os.close(fd)
            self._tmp.unlink(missing_ok=True)
            _live.pop(self._tmp, None)
            raise
        self._open = True

    def commit(self, *, overwrite: bool = True) -> None:
        """Flush, fsync, close and move the file to its path; removes it on failure.

        ``overwrite=False``: never replace a file that exists at that moment (a no-replace
        link, then the temporary name is removed); raises FileExistsError if one does.
        """
        if not self._open:
            raise ValueError(f"{self.path}: already committed or discarded")
        try:
            self.fp.flush()
            os.fsync(self.fp.fileno())
            self.fp.close()
            if overwrite:
                os.replace(self._tmp, self.path)
            else:
                _place_new(self._tmp, self.path)
        except BaseException:
            self.discard()
            raise
        self._open = False
        _live.pop(self._tmp, None)

    def discard(self) -> None:
        """Close and remove the temporary file (safe to call more than once)."""
        self._open = False
        try:
            self.fp.close()
        finally:
            self._tmp.unlink(missing_ok=True)
            _live.pop(self._tmp, None)


def _place_new(tmp: Path, path: Path) -> None:
    """Give ``tmp`` the name ``path`` only if nothing has that name (FileExistsError if something has)."""
    try:
        os.link(tmp, path)  # fails with EEXIST instead of replacing, atomically
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: the check and the rename are two steps
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, "exists", str(path)) from None
        os.rename(tmp, path)
        return
    os.unlink(tmp)


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
def atomic_writer(path: Path, *, overwrite: bool = True) -> Iterator[BinaryIO]:
    """Write ``path`` through a temporary file in the same folder, moved in place on success.

    Yields a binary file (readable too). On any error or interrupt the temporary file is
    removed and ``path`` is left as it was: the old file, absent, or (after success) the
    complete new one. ``overwrite=False``: a file at ``path`` when the write ends is kept
    and FileExistsError raised (see :meth:`StagedFile.commit`).
    """
    staged = StagedFile(path)
    try:
        yield staged.fp
    except BaseException:
        staged.discard()
        raise
    staged.commit(overwrite=overwrite)


def atomic_write(dst: Path, write: Callable[[BinaryIO], None], *, overwrite: bool = True) -> None:
    """Call ``write(fp)`` on a temporary file that replaces ``dst`` when it returns (see :func:`atomic_writer`)."""
    with atomic_writer(dst, overwrite=overwrite) as fp:
        write(fp)


def temporaries_of(path: Path) -> list[Path]:
    """The temporary files of our naming for ``path`` in its folder: what a writer of that
    file killed mid-write (a crashed worker) left behind."""
    path = Path(path)
    prefix = _temp_prefix(path.name)
    try:
        names = os.listdir(path.parent)
    except OSError:
        return []
    return [path.parent / n for n in names
            if n.startswith(prefix) and len(n) == len(prefix) + _RANDOM + len(_SUFFIX) and _TEMP_NAME.fullmatch(n)]


def remove_stale_temporaries(folder: Path, older_than_s: float = STALE_AFTER_S) -> list[Path]:
    """Delete the temporary files of our naming in ``folder`` (not below) older than ``older_than_s``.

    A younger one may belong to a run still writing it, and is spared. Files that cannot
    be removed are left. Returns the removed paths.
    """
    removed = []
    cutoff = time.time() - older_than_s
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not _TEMP_NAME.fullmatch(entry.name):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            pass
    return removed
