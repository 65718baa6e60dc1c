"""Issue 25, classes 1-3 at the one writer (``lia_upscale.files``): only regular files are
written or replaced, a temporary file is removed only when provably a dead run's, and the
final commit replaces nothing that appeared unless overwrite is asked.

Fast: no torch, no CLI child (the CLI cases are in test_hostile2.py).
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lia_upscale.files import (
    NotRegularFileError,
    StagedFile,
    atomic_write,
    remove_stale_temporaries,
)


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _socket(path: Path) -> Path:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()
    return path


def _device(path: Path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("making a device node needs root")
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # what /dev/null is
    return path


def _directory(path: Path) -> Path:
    path.mkdir()
    return path


def _link_to_device(path: Path) -> Path:
    path.symlink_to("/dev/null")
    return path


KINDS = {"fifo": _fifo, "socket": _socket, "device": _device, "directory": _directory,
         "link-to-/dev/null": _link_to_device}


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("overwrite", [True, False, None])
def test_a_path_that_is_not_a_regular_file_is_never_replaced(tmp_path, kind, overwrite):
    target = KINDS[kind](tmp_path / "out.png")
    before = os.lstat(target)
    with pytest.raises(NotRegularFileError, match="not a regular file"):
        atomic_write(target, lambda fp: fp.write(b"data"), overwrite=overwrite)
    after = os.lstat(target)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]  # no temporary left


@pytest.mark.parametrize("kind", ["fifo", "socket", "directory"])
def test_a_non_regular_path_that_appears_during_the_write_is_not_replaced(tmp_path, kind):
    target = tmp_path / "out.png"
    staged = StagedFile(target)
    staged.fp.write(b"data")
    KINDS[kind](target)
    with pytest.raises(OSError):
        staged.commit(overwrite=True)
    assert not stat.S_ISREG(os.lstat(target).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


@pytest.mark.parametrize("overwrite", [False, None])
def test_a_file_that_appeared_after_the_write_began_is_kept(tmp_path, overwrite):
    target = tmp_path / "out.png"
    staged = StagedFile(target)
    staged.fp.write(b"ours")
    target.write_bytes(b"theirs")  # another program (or run) made it meanwhile
    with pytest.raises(FileExistsError):
        staged.commit(overwrite=overwrite)
    assert target.read_bytes() == b"theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


@pytest.mark.parametrize("overwrite", [True, False, None])
def test_a_file_in_place_of_the_folder_is_not_an_existing_target(tmp_path, overwrite):
    """FileExistsError means the target itself exists (every writer reads it so: "skipped",
    "exists; not replaced without --overwrite"); a file where the target's folder should be
    is NotADirectoryError instead, overwrite or not, and it stays as it is."""
    blocker = tmp_path / "f"
    blocker.write_bytes(b"theirs")
    with pytest.raises(NotADirectoryError):
        atomic_write(blocker / "x.png", lambda fp: fp.write(b"ours"), overwrite=overwrite)
    assert blocker.read_bytes() == b"theirs" and [p.name for p in tmp_path.iterdir()] == ["f"]


def test_overwrite_true_replaces_and_false_refuses_an_existing_file(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    with pytest.raises(FileExistsError):
        atomic_write(target, lambda fp: fp.write(b"new"), overwrite=False)
    assert target.read_bytes() == b"old"
    atomic_write(target, lambda fp: fp.write(b"new"), overwrite=True)
    assert target.read_bytes() == b"new"
    atomic_write(target, lambda fp: fp.write(b"newer"))  # None: it existed when the write began
    assert target.read_bytes() == b"newer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_the_result_carries_no_owner_record(tmp_path):
    target = tmp_path / "out.png"
    atomic_write(target, lambda fp: fp.write(b"x"))
    assert [a for a in os.listxattr(target) if "lia" in a] == []


_KILLED_WRITER = r"""
import os, signal, sys
from pathlib import Path
from lia_upscale.files import StagedFile
staged = StagedFile(Path(sys.argv[1]))
staged.fp.write(b"half an image")
staged.fp.flush()
os.kill(os.getpid(), signal.SIGKILL)
"""


def _killed_run_temporary(target: Path) -> Path:
    """The temporary file a writer SIGKILLed mid-write leaves for ``target``."""
    before = set(target.parent.iterdir()) if target.parent.exists() else set()
    proc = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(target)], timeout=60)
    assert proc.returncode == -signal.SIGKILL
    (tmp,) = set(target.parent.iterdir()) - before
    return tmp


def test_a_dead_runs_temporary_is_removed_at_once(tmp_path):
    tmp = _killed_run_temporary(tmp_path / "a.png")
    assert tmp.name.startswith(".a.png.") and tmp.name.endswith(".part")
    assert remove_stale_temporaries(tmp_path) == [tmp]  # young as it is
    assert list(tmp_path.iterdir()) == []


def test_a_live_runs_temporary_is_spared(tmp_path):
    live = StagedFile(tmp_path / "a.png")  # this process is alive and holds its lock
    live.fp.write(b"partial")
    old = time.time() - 86400
    os.utime(live._tmp, (old, old))  # however old it looks
    assert remove_stale_temporaries(tmp_path) == []
    live.commit()
    assert (tmp_path / "a.png").read_bytes() == b"partial"


_LIVE_WRITER = r"""
import sys, time
from pathlib import Path
from lia_upscale.files import StagedFile
staged = StagedFile(Path(sys.argv[1]))
print(staged._tmp, flush=True)
time.sleep(120)
"""


def test_another_live_process_temporary_is_spared(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", _LIVE_WRITER, str(tmp_path / "a.png")], stdout=subprocess.PIPE)
    try:
        tmp = Path(proc.stdout.readline().decode().strip())
        assert tmp.exists()
        assert remove_stale_temporaries(tmp_path) == []
        assert tmp.exists()
    finally:
        proc.kill()
        proc.wait()
    assert remove_stale_temporaries(tmp_path) == [tmp]  # once its writer is dead


@pytest.mark.parametrize("kind", ["file", "symlink", "fifo"])
def test_a_users_file_merely_shaped_like_ours_is_never_removed(tmp_path, kind):
    shaped = tmp_path / ".a.png.k3j_4h5q.part"
    if kind == "file":
        shaped.write_bytes(b"the user's own")
        old = time.time() - 86400
        os.utime(shaped, (old, old))
    elif kind == "symlink":
        (tmp_path / "precious").write_bytes(b"x")
        shaped.symlink_to(tmp_path / "precious")
    else:
        os.mkfifo(shaped)  # opening it must not block the sweep either
    assert remove_stale_temporaries(tmp_path) == []
    assert os.path.lexists(shaped)


def test_a_dead_temporary_of_another_target_is_kept_by_a_targeted_sweep(tmp_path):
    a = _killed_run_temporary(tmp_path / "a.png")
    b = _killed_run_temporary(tmp_path / "b.png")
    assert remove_stale_temporaries(tmp_path, tmp_path / "a.png") == [a]
    assert b.exists()


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_BEFORE = ["absent", "file", "fifo", "directory", "link-to-/dev/null", "link-to-file"]
_DURING = ["nothing", "file appears", "fifo appears", "removed"]


def _make(path: Path, kind: str) -> None:
    if kind == "file":
        path.write_bytes(b"theirs")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "link-to-/dev/null":
        path.symlink_to("/dev/null")
    elif kind == "link-to-file":
        (path.parent / "real").write_bytes(b"theirs")
        path.symlink_to(path.parent / "real")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=st.sampled_from(_BEFORE), during=st.sampled_from(_DURING),
       overwrite=st.sampled_from([True, False, None]))
def test_the_writer_replaces_only_what_the_policy_allows(tmp_path_factory, before, during, overwrite):
    """Whatever is at the path before and during a write, and whatever the policy: a path
    that is not a regular file is never replaced, an existing file only when overwrite
    allows it (None: only one that was there when the write began), and no temporary file
    is ever left."""
    folder = tmp_path_factory.mktemp("w")
    target = folder / "out.png"
    _make(target, before)
    try:
        staged = StagedFile(target)
    except NotRegularFileError:
        assert before in ("fifo", "directory", "link-to-/dev/null")
        assert sorted(p.name for p in folder.iterdir() if p.name != "real") == ["out.png"]
        return
    assert before in ("absent", "file", "link-to-file")
    staged.fp.write(b"ours")
    if during == "removed" and os.path.lexists(target):
        target.unlink()
    elif during == "file appears" and not os.path.lexists(target):
        target.write_bytes(b"theirs")
    elif during == "fifo appears" and not os.path.lexists(target):
        os.mkfifo(target)
    present = os.path.lexists(target)
    regular = present and stat.S_ISREG(os.stat(target).st_mode)
    allowed = (overwrite is True or (overwrite is None and staged.existed)) if present else True
    try:
        staged.commit(overwrite=overwrite)
        committed = True
    except OSError:
        committed = False
    if not present:
        assert committed and target.read_bytes() == b"ours"
    elif not regular:
        assert not committed and stat.S_ISFIFO(os.lstat(target).st_mode)
    else:
        assert committed == allowed, (before, during, overwrite)
        assert target.read_bytes() == (b"ours" if allowed else b"theirs")
    assert [p.name for p in folder.iterdir() if p.name.endswith(".part")] == []


def test_an_image_output_that_appeared_is_an_output_exists_error_and_is_kept(tmp_path):
    """The images layer names the case for the doors: OutputExistsError, a kind of OutputError,
    which a batch can report as "skipped"."""
    import numpy as np

    from lia_upscale import images
    from lia_upscale.errors import OutputExistsError

    data = _png_bytes()
    picture = images.decode(data)
    target = tmp_path / "out.png"
    target.write_bytes(b"theirs")
    with pytest.raises(OutputExistsError, match="out.png: exists"):
        images.write_bytes(target, data, overwrite=False)
    assert target.read_bytes() == b"theirs"
    images.write_bytes(target, data, overwrite=True)
    assert np.array_equal(images.decode(target).rgb, picture.rgb)


def _png_bytes() -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()
