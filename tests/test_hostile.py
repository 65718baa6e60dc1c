"""Issue 12: the cases a hostile-input campaign broke, one test each (phase 1: they fail today).

Driven only through the doors users use, which the package move (issue 15) does not change:
the CLI as a subprocess (``python -m lia_upscale``) and ``from lia_upscale import ...``.

Test hooks, all honest and bounded:

* Signals at a precise moment come from a ``sitecustomize`` written into a folder put on the
  child's PYTHONPATH: it adds an audit hook (``sys.addaudithook``) that sends the child a
  signal the first time a named audit event (``open`` of the weight file, ``os.rename`` onto
  an output) happens. That is the same signal a user's Ctrl-C or ``kill`` delivers, at a
  moment a test can name without sleeping; every subprocess has a timeout.
* A full disk is faked with ``RLIMIT_FSIZE`` (SIGXFSZ ignored), so writes past the limit
  fail with EFBIG ("File too large"): it exercises the write-error path, not ENOSPC itself.
* Permission tests: root reads mode-000 folders, so when the tests run as root the child is
  started without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (dropped from the bounding set
  with prctl before exec); it then obeys file modes like any user. Skipped where that
  cannot be done.
* The slow server is a thread on 127.0.0.1 that trickles bytes.
"""

from __future__ import annotations

import ctypes
import http.server
import io
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from lia_upscale import load_model

# each case runs the CLI in a child that imports torch: minutes for the file, so it sits
# outside the `-m "not slow"` inner loop; CI runs it
pytestmark = pytest.mark.slow

TIMEOUT = 180  # generous: torch's import on a loaded 2-core machine is slow

OFFICIAL_NAME = "PlainUSRU_Rep_x2.pth"  # a file name the registry knows (its sha256 will not match)

HOOK = r'''
import os, signal, sys
_event = os.environ.get("HOSTILE_EVENT")
_match = os.environ.get("HOSTILE_MATCH", "")
_arg = int(os.environ.get("HOSTILE_ARG", "0"))
_sig = getattr(signal, "SIG" + os.environ.get("HOSTILE_SIGNAL", "INT"))
_fired = []
def _hook(event, args):
    if event == _event and not _fired and len(args) > _arg and _match in os.fsdecode(str(args[_arg])):
        _fired.append(1)
        os.kill(os.getpid(), _sig)
if _event:
    sys.addaudithook(_hook)
'''


# --------------------------------------------------------------------------- helpers


def _noise(h: int, w: int, c: int = 3, seed: int = 0) -> np.ndarray:
    a = np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)
    return a[..., 0] if c == 1 else a


def _png(path: Path, h: int = 6, w: int = 7, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_noise(h, w, 3, seed)).save(path)
    return path


def _env(home: Path, **extra: str) -> dict[str, str]:
    drop = {"COLUMNS", "LINES", "FORCE_COLOR", "PYTHONWARNINGS", "TERM"}
    env = {k: v for k, v in os.environ.items()
           if k not in drop and not k.lower().endswith("_proxy")}
    env["LIA_UPSCALE_HOME"] = str(home)
    env["no_proxy"] = env["NO_PROXY"] = "127.0.0.1,localhost"
    env.update(extra)
    return env


def _with_hook(env: dict[str, str], hooks: Path, event: str, match: str, sig: str = "INT",
               arg: int = 0) -> dict[str, str]:
    hooks.mkdir(parents=True, exist_ok=True)
    (hooks / "sitecustomize.py").write_text(HOOK)
    env = dict(env)
    env["PYTHONPATH"] = os.pathsep.join([str(hooks), *filter(None, [env.get("PYTHONPATH")])])
    env.update(HOSTILE_EVENT=event, HOSTILE_MATCH=match, HOSTILE_SIGNAL=sig, HOSTILE_ARG=str(arg))
    return env


def _preexec(umask: int = 0o022, fsize: int | None = None, unprivileged: bool = False):
    def setup() -> None:
        # a foreground process, as a user's: a test run started in the background (CI, nohup,
        # `&` without job control) has SIGINT ignored, which children inherit, and Python then
        # installs no Ctrl-C handler at all: the signal would never arrive
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.umask(umask)
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        if unprivileged and os.geteuid() == 0:
            _drop_dac_capabilities()
    return setup


def _drop_dac_capabilities() -> None:
    """Root without CAP_DAC_OVERRIDE (1) and CAP_DAC_READ_SEARCH (2) after the next exec."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _permissions_enforced(folder: Path) -> bool:
    """Whether a child started with _preexec(unprivileged=True) is refused a mode-000 folder."""
    probe = folder / "probe"
    probe.mkdir()
    probe.chmod(0o000)
    try:
        proc = subprocess.run([sys.executable, "-c", f"import os; os.listdir({str(probe)!r})"],
                              preexec_fn=_preexec(unprivileged=True), capture_output=True, timeout=60)
    except subprocess.SubprocessError:
        return False
    finally:
        probe.chmod(0o755)
        probe.rmdir()
    return proc.returncode != 0


def cli(args: list[str], cwd: Path, *, env: dict[str, str] | None = None, umask: int = 0o022,
        input: bytes | None = None, fsize: int | None = None, unprivileged: bool = False,
        timeout: float = TIMEOUT, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lia_upscale", *args], cwd=cwd, env=env or _env(cwd / "home"),
        input=input, stdout=stdout, stderr=subprocess.PIPE, timeout=timeout,
        preexec_fn=_preexec(umask, fsize, unprivileged),
    )


def err(proc: subprocess.CompletedProcess) -> str:
    return proc.stderr.decode("utf-8", "replace")


def lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in err(proc).splitlines() if line.strip()]


def assert_no_traceback(proc: subprocess.CompletedProcess) -> None:
    text = err(proc)
    assert "Traceback" not in text and "Exception ignored" not in text, text


def leftovers(folder: Path, keep: set[str] = frozenset()) -> list[str]:
    """Hidden or temporary files (anything but the expected outputs) under ``folder``."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and (p.name.startswith(".") or p.suffix in (".part", ".tmp"))
                  and p.name not in keep)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.fixture()
def x2(nearest_weights, tmp_path: Path) -> Path:
    """A copy of the nearest-neighbour x2 weights inside the test's folder."""
    dst = tmp_path / "nearest-x2.safetensors"
    shutil.copyfile(nearest_weights[2], dst)
    return dst


def _weights_like(src: Path, dst: Path, change) -> Path:
    """A lia-upscale .safetensors with ``src``'s metadata and tensors changed by ``change``."""
    with safe_open(str(src), "pt") as f:
        meta = f.metadata()
    state = {k: change(k, v.detach().clone().float().contiguous())
             for k, v in load_model(src).module.state_dict().items()}
    save_file(state, str(dst), metadata=meta)
    return dst


# --------------------------------------------------------------------------- data and files


@pytest.mark.parametrize(("umask", "expected"), [(0o022, 0o644), (0o027, 0o640)])
def test_output_mode_follows_umask(tmp_path, x2, umask, expected):
    _png(tmp_path / "in" / "a.png")
    proc = cli(["in/a.png", "out/", "--weights", str(x2), "-q"], tmp_path, umask=umask)
    assert proc.returncode == 0, err(proc)
    assert oct(mode(tmp_path / "out" / "a.png")) == oct(expected)


def test_overwrite_keeps_replaced_file_mode(tmp_path, x2):
    _png(tmp_path / "in" / "a.png")
    old = _png(tmp_path / "out" / "a.png", 2, 2, seed=5)
    old.chmod(0o664)
    before = old.read_bytes()
    proc = cli(["in/a.png", "out/", "--weights", str(x2), "--overwrite", "-q"], tmp_path, umask=0o022)
    assert proc.returncode == 0, err(proc)
    assert old.read_bytes() != before
    assert oct(mode(old)) == oct(0o664)


def test_converted_weights_follow_umask(tmp_path, x2):
    """The weights writer (convert, save_weights, installs) fixes 0644 whatever the umask."""
    torch.save(load_model(x2).module.state_dict(), tmp_path / "w.pth")
    proc = cli(["convert", "w.pth", "w.safetensors"], tmp_path, umask=0o027)
    assert proc.returncode == 0, err(proc)
    assert oct(mode(tmp_path / "w.safetensors")) == oct(0o640)


def test_train_outputs_follow_umask(tmp_path):
    _png(tmp_path / "data" / "a.png", 32, 32)
    proc = cli(["train", "data", "--out", "t.safetensors", "--iterations", "1", "--batch", "1",
                "--patch", "8", "--scale", "2"], tmp_path, umask=0o027)
    assert proc.returncode == 0, err(proc)
    assert oct(mode(tmp_path / "t.safetensors")) == oct(0o640)
    assert oct(mode(tmp_path / "t.ckpt")) == oct(0o640)


def test_overwrite_never_writes_an_input(tmp_path, x2):
    """``in/p/ in/o/sub/x.png in/o/ --overwrite``: in/p/sub/x.png maps onto in/o/sub/x.png."""
    _png(tmp_path / "in" / "p" / "sub" / "x.png", seed=1)
    victim = _png(tmp_path / "in" / "o" / "sub" / "x.png", seed=2)
    before = victim.read_bytes()
    proc = cli(["in/p/", "in/o/sub/x.png", "in/o/", "--weights", str(x2), "--overwrite", "-q"], tmp_path)
    assert victim.read_bytes() == before
    assert proc.returncode == 2, err(proc)
    assert_no_traceback(proc)


def test_streaming_does_not_replace_existing_output(tmp_path, x2):
    data = _png(tmp_path / "a.png").read_bytes()
    existing = _png(tmp_path / "existing.png", 3, 3, seed=9)
    before = existing.read_bytes()
    proc = cli(["-", "existing.png", "--weights", str(x2), "-q"], tmp_path, input=data)
    assert existing.read_bytes() == before
    assert proc.returncode == 2, err(proc)
    assert "existing.png" in err(proc) and "--overwrite" in err(proc)
    assert_no_traceback(proc)
    # and --overwrite still replaces it
    proc = cli(["-", "existing.png", "--weights", str(x2), "--overwrite", "-q"], tmp_path, input=data)
    assert proc.returncode == 0, err(proc)
    assert existing.read_bytes() != before


def test_sigterm_during_a_write_leaves_no_temporary_file(tmp_path, x2):
    """SIGTERM arrives as the first output is renamed into place (audit hook on os.rename)."""
    _png(tmp_path / "in" / "a.png")
    _png(tmp_path / "in" / "b.png", seed=1)
    env = _with_hook(_env(tmp_path / "home"), tmp_path / "hooks", "os.rename", "a.png", sig="TERM", arg=1)
    proc = cli(["in/", "out/", "--weights", str(x2), "-q"], tmp_path, env=env)
    assert proc.returncode in (130, 143), (proc.returncode, err(proc))
    assert leftovers(tmp_path / "out") == []
    assert_no_traceback(proc)


_KILLED_WRITER = r"""
import os, signal, sys
from pathlib import Path
from lia_upscale.files import StagedFile
for target in sys.argv[1:]:
    StagedFile(Path(target)).fp.write(b"partial")
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_run_removes_stale_temporary_files_of_its_naming(tmp_path, x2):
    """A SIGKILLed run leaves ``.NAME.XXXXXXXX.part``; the next run over that folder removes them.

    Issue 25: the temporaries are a real killed writer's (owner record, lock released), and
    a user's file merely named like one is kept, however old."""
    _png(tmp_path / "in" / "a.png")
    _png(tmp_path / "in" / "sub" / "b.png", seed=1)
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    killed = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(out / "a.png"), str(out / "sub" / "b.png")],
                            timeout=TIMEOUT)
    assert killed.returncode == -signal.SIGKILL
    stale = sorted(p for p in out.rglob(".*.part"))
    assert [p.name.split(".")[1] for p in stale] == ["a", "b"]
    foreign = [out / "notes.part", out / ".hidden", out / ".a.png.k3j_4h5q.part"]
    hour_ago = time.time() - 3600
    for p in foreign:
        p.write_bytes(b"partial")
        os.utime(p, (hour_ago, hour_ago))
    proc = cli(["in/", "out/", "--weights", str(x2), "-q"], tmp_path)
    assert proc.returncode == 0, err(proc)
    assert [p for p in stale if p.exists()] == []
    assert all(p.exists() for p in foreign)


def test_long_file_names_are_written(tmp_path, x2):
    """Final names of 241-255 bytes are legal; the temporary name must not be longer."""
    name = "n" * 246 + ".png"  # 250 bytes
    _png(tmp_path / "in" / name)
    proc = cli(["in/", "out/", "--weights", str(x2), "-q"], tmp_path)
    assert proc.returncode == 0, err(proc)
    assert (tmp_path / "out" / name).is_file()
    assert leftovers(tmp_path / "out") == []


# --------------------------------------------------------------------------- results and exit codes


def test_non_finite_output_fails_that_file(tmp_path, x2):
    """Finite weights times 1e20 overflow inside the network: the output is all NaN."""
    huge = _weights_like(x2, tmp_path / "huge.safetensors", lambda k, v: v * 1e20)
    _png(tmp_path / "in" / "a.png")
    proc = cli(["in/a.png", "out/", "--weights", str(huge), "-q"], tmp_path)
    assert proc.returncode == 1, err(proc)
    assert not (tmp_path / "out" / "a.png").exists()
    out = lines(proc)
    assert len(out) == 1 and "in/a.png" in out[0], out
    assert "finite" in out[0] or "nan" in out[0].lower(), out


def test_non_finite_output_is_refused_on_every_route(tmp_path, x2):
    """JPEG (integer samples), the alpha pass and the PIL path refuse NaN output too."""
    from lia_upscale import Upscaler
    from lia_upscale.errors import LiaError

    huge = _weights_like(x2, tmp_path / "huge.safetensors", lambda k, v: v * 1e20)
    _png(tmp_path / "in" / "a.png")
    proc = cli(["in/a.png", "out/", "--weights", str(huge), "--format", "jpg", "-q"], tmp_path)
    assert proc.returncode == 1, err(proc)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
    up = Upscaler(weights=huge, device="cpu")
    rgba = Image.fromarray(_noise(9, 9)).convert("RGBA")
    rgba.putalpha(Image.fromarray(_noise(9, 9)[..., 0]))
    for image in (Image.fromarray(_noise(9, 9)), rgba):
        with pytest.raises(LiaError, match="not finite"):
            up.upscale(image)


def test_unsupported_explicit_input_fails_alone(tmp_path, x2):
    (tmp_path / "in").mkdir()
    Image.fromarray(_noise(5, 5)).save(tmp_path / "in" / "a.gif")
    _png(tmp_path / "in" / "b.png")
    proc = cli(["in/a.gif", "in/b.png", "out/", "--weights", str(x2), "-q"], tmp_path)
    assert_no_traceback(proc)
    assert proc.returncode == 1, err(proc)
    assert (tmp_path / "out" / "b.png").is_file()
    out = lines(proc)
    assert len(out) == 1 and "a.gif" in out[0], out


@pytest.mark.parametrize("where", ["sub-folder", "top-level folder"])
def test_unreadable_folder_is_a_failure(tmp_path, x2, where):
    if not _permissions_enforced(tmp_path):
        pytest.skip("cannot run a child that obeys file modes here")
    _png(tmp_path / "in" / "a.png")
    locked = tmp_path / "in" / "sub" if where == "sub-folder" else tmp_path / "in"
    _png(locked / "b.png", seed=1)
    locked.chmod(0o000)
    try:
        proc = cli(["in/", "out/", "--weights", str(x2), "-q"], tmp_path, unprivileged=True)
    finally:
        locked.chmod(0o755)
    assert_no_traceback(proc)
    assert proc.returncode == 1, err(proc)
    assert any(str(locked.relative_to(tmp_path)) in line and "permission" in line.lower()
               for line in lines(proc)), err(proc)


def test_output_equal_to_input_is_a_usage_error(tmp_path, x2):
    _png(tmp_path / "in" / "a.png")
    proc = cli(["in/", "in/", "--weights", str(x2), "-q"], tmp_path)
    assert proc.returncode == 2, err(proc)
    assert_no_traceback(proc)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_outscale_must_be_finite(tmp_path, x2, value):
    _png(tmp_path / "in" / "a.png")
    proc = cli(["in/a.png", "out/", "--weights", str(x2), f"--outscale={value}", "-q"], tmp_path)
    assert proc.returncode == 2, err(proc)
    assert "outscale" in err(proc)
    assert not (tmp_path / "out").exists()


def test_ctrl_c_during_start_up_exits_130(tmp_path, x2):
    """SIGINT as the weight file is opened, before any image is read."""
    _png(tmp_path / "in" / "a.png")
    env = _with_hook(_env(tmp_path / "home"), tmp_path / "hooks", "open", x2.name)
    proc = cli(["in/", "out/", "--weights", str(x2), "-q"], tmp_path, env=env)
    assert proc.returncode == 130, (proc.returncode, err(proc))
    assert_no_traceback(proc)


@pytest.mark.parametrize("output", ["existing.png", "result.png", "existing-file"])
def test_several_inputs_need_a_folder_output(tmp_path, x2, output):
    _png(tmp_path / "in" / "a.png")
    _png(tmp_path / "in" / "b.png", seed=1)
    if output.startswith("existing"):
        (tmp_path / output).write_bytes(b"keep me")
    proc = cli(["in/a.png", "in/b.png", output, "--weights", str(x2), "-q"], tmp_path)
    assert proc.returncode == 2, err(proc)
    assert_no_traceback(proc)
    if output.startswith("existing"):
        assert (tmp_path / output).read_bytes() == b"keep me"
    else:
        assert not (tmp_path / output).exists()


# --------------------------------------------------------------------------- messages


@pytest.mark.parametrize("name", ["a[/]b.png", "[red]c.png", "[bold]d[/bold].png"])
@pytest.mark.parametrize("role", ["input", "weights"])
def test_markup_in_paths_is_printed_literally(tmp_path, x2, name, role):
    _png(tmp_path / "in" / "a.png")
    args = [name, "out/", "--weights", str(x2)] if role == "input" else ["in/a.png", "out/", "--weights", name]
    proc = cli(args + ["-q"], tmp_path)
    assert_no_traceback(proc)
    assert proc.returncode == 2, err(proc)
    assert name in err(proc)


def test_failure_lines_do_not_wrap(tmp_path, x2):
    """stderr is a pipe (no terminal, no COLUMNS): a long path's failure is still one line."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / ("broken-" + "x" * 120 + ".png")).write_bytes(b"not an image at all")
    (tmp_path / "in" / "empty.jpg").write_bytes(b"")
    proc = cli(["in/", "out/", "--weights", str(x2), "-q"], tmp_path)
    assert proc.returncode == 1, err(proc)
    out = lines(proc)
    assert len(out) == 2, out
    assert "x" * 120 + ".png" in out[0] and "empty.jpg" in out[1], out


def test_newline_in_a_name_keeps_the_reason(tmp_path, x2):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bad\nname.png").write_bytes(b"")
    proc = cli(["in/", "out/", "--weights", str(x2), "-q"], tmp_path)
    assert proc.returncode == 1, err(proc)
    out = lines(proc)
    assert len(out) == 1, out
    assert "empty file" in out[0] and "name.png" in out[0], out


def test_full_disk_names_the_file(tmp_path, x2):
    """RLIMIT_FSIZE (SIGXFSZ ignored) makes the write fail with EFBIG, as a full disk fails it."""
    _png(tmp_path / "in" / "a.png", 48, 48)  # the x2 output is KBs; the limit fails the write inside the encoder
    proc = cli(["in/a.png", "out/", "--weights", str(x2), "-q"], tmp_path, fsize=100)
    assert proc.returncode == 1, err(proc)
    out = lines(proc)
    assert len(out) == 1, out
    assert "out/a.png" in out[0], out
    assert not re.search(r"cannot write \d+\b", out[0]), out
    assert not (tmp_path / "out" / "a.png").exists()
    assert leftovers(tmp_path / "out") == []


def test_named_pipe_is_not_reported_missing(tmp_path, x2):
    (tmp_path / "in").mkdir()
    os.mkfifo(tmp_path / "in" / "p.png")
    proc = cli(["in/p.png", "out/", "--weights", str(x2), "-q"], tmp_path, timeout=120)
    assert_no_traceback(proc)
    assert proc.returncode == 2, err(proc)
    assert "p.png" in err(proc) and "not found" not in err(proc), err(proc)


def test_directory_in_the_way_of_an_output_is_a_failure(tmp_path, x2):
    _png(tmp_path / "in" / "a.png")
    (tmp_path / "out" / "a.png").mkdir(parents=True)
    proc = cli(["in/a.png", "out/", "--weights", str(x2), "-q", "--json"], tmp_path)
    assert proc.returncode == 1, err(proc)
    assert '"status": "failed"' in proc.stdout.decode()
    out = lines(proc)
    assert len(out) == 1 and "directory" in out[0], out


def test_nan_weights_error_names_the_file(tmp_path, x2):
    def poison(key, value):
        if key.startswith("tail"):
            value.view(-1)[0] = float("nan")
        return value

    bad = _weights_like(x2, tmp_path / "poisoned.safetensors", poison)
    _png(tmp_path / "in" / "a.png")
    proc = cli(["in/a.png", "out/", "--weights", str(bad), "-q"], tmp_path)
    assert proc.returncode == 2, err(proc)
    assert "poisoned.safetensors" in err(proc), err(proc)


def test_convert_refuses_nan_weights(tmp_path, x2):
    state = load_model(x2).module.state_dict()
    next(v for k, v in state.items() if k.startswith("tail")).view(-1)[0] = float("nan")
    torch.save(state, tmp_path / "nan.pth")
    proc = cli(["convert", "nan.pth", "nan.safetensors"], tmp_path)
    assert proc.returncode == 2, err(proc)
    assert "nan.pth" in err(proc)
    assert not (tmp_path / "nan.safetensors").exists()


def _jpeg_with_truncated_exif(path: Path) -> None:
    exif = Image.Exif()
    exif[0x010F] = "x" * 100
    buf = io.BytesIO()
    Image.fromarray(_noise(8, 8)).save(buf, "JPEG", exif=exif.tobytes()[:-60], quality=95)
    path.write_bytes(buf.getvalue())


def _tiff16_with_bad_tag(path: Path) -> None:
    import struct

    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, (np.arange(48).reshape(4, 4, 3) * 1000).astype(np.uint16), photometric="rgb",
                     extratags=[(65000, "H", 1, 7, True)], byteorder="<")
    data = bytearray(buf.getvalue())
    ifd = struct.unpack_from("<I", data, 4)[0]
    for i in range(struct.unpack_from("<H", data, ifd)[0]):
        entry = ifd + 2 + 12 * i
        if struct.unpack_from("<H", data, entry)[0] == 65000:
            struct.pack_into("<H", data, entry + 2, 99)  # an invalid TIFF data type
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("make", [_jpeg_with_truncated_exif, _tiff16_with_bad_tag], ids=["pillow", "tifffile"])
def test_decoder_warnings_do_not_leak(tmp_path, x2, make):
    (tmp_path / "in").mkdir()
    name = "a.jpg" if make is _jpeg_with_truncated_exif else "a.tif"
    make(tmp_path / "in" / name)
    proc = cli([f"in/{name}", "out/", "--weights", str(x2), "-q"], tmp_path)
    assert proc.returncode == 0, err(proc)
    assert (tmp_path / "out" / name).is_file()
    assert err(proc) == "", err(proc)


def test_weights_install_with_home_a_file(tmp_path):
    (tmp_path / "home").write_bytes(b"a file, not a folder")
    (tmp_path / OFFICIAL_NAME).write_bytes(b"junk")
    proc = cli(["weights", "install", OFFICIAL_NAME], tmp_path)
    assert_no_traceback(proc)
    assert proc.returncode == 2, err(proc)
    assert len(lines(proc)) == 1 and "home" in err(proc), err(proc)


def _train(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    _png(tmp_path / "data" / "a.png", 32, 32)
    return cli(["train", "data", "--out", "t.safetensors", "--iterations", "1", "--batch", "1",
                "--patch", "8", "--scale", "2", *extra], tmp_path)


def test_train_zero_byte_image(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "empty.png").write_bytes(b"")
    proc = _train(tmp_path)
    assert_no_traceback(proc)
    assert proc.returncode == 2, err(proc)
    assert "empty.png" in err(proc) and len(lines(proc)) == 1, err(proc)


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize("kind", ["pickle", "foreign"])
def test_train_bad_checkpoint(tmp_path, kind):
    marker = tmp_path / "PWNED"
    obj = {"model": _Payload(marker)} if kind == "pickle" else {"weights": torch.zeros(2)}
    torch.save(obj, tmp_path / "bad.ckpt")
    proc = _train(tmp_path, "--checkpoint", "bad.ckpt")
    assert not marker.exists()
    assert_no_traceback(proc)
    assert proc.returncode == 2, err(proc)
    assert "bad.ckpt" in err(proc) and len(lines(proc)) == 1, err(proc)


@pytest.mark.parametrize("how", ["closed", "broken-pipe"])
def test_stream_to_an_unwritable_stdout(tmp_path, x2, how):
    _png(tmp_path / "a.png")
    args = [sys.executable, "-m", "lia_upscale", "a.png", "-", "--format", "png", "--weights", str(x2), "-q"]
    if how == "closed":
        proc = subprocess.run(args, cwd=tmp_path, env=_env(tmp_path / "home"), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=TIMEOUT,
                              preexec_fn=lambda: os.close(1))
    else:
        r, w = os.pipe()
        os.close(r)  # nobody will ever read
        try:
            proc = subprocess.run(args, cwd=tmp_path, env=_env(tmp_path / "home"), stdout=w,
                                  stderr=subprocess.PIPE, timeout=TIMEOUT)
        finally:
            os.close(w)
    assert_no_traceback(proc)
    assert proc.returncode == 1, err(proc)
    assert len(lines(proc)) == 1, err(proc)


# --------------------------------------------------------------------------- weights install over HTTP


class _Trickle(http.server.BaseHTTPRequestHandler):
    """Announces 1000 bytes and sends one every 0.2 s (200 s in all), like a stalled mirror."""

    started = threading.Event()

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        try:
            for _ in range(1000):
                self.wfile.write(b"\0")
                self.wfile.flush()
                type(self).started.set()
                time.sleep(0.2)
        except OSError:
            pass

    def log_message(self, *args):
        pass


@pytest.fixture()
def trickle():
    handler = type("Handler", (_Trickle,), {"started": threading.Event()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/{OFFICIAL_NAME}", handler.started
    server.shutdown()
    server.server_close()


def test_weights_install_has_an_overall_deadline(tmp_path, trickle):
    """Proposed knob: LIA_UPSCALE_DOWNLOAD_DEADLINE (seconds, whole download; default e.g. 1800)."""
    url, _ = trickle
    env = _env(tmp_path / "home", LIA_UPSCALE_DOWNLOAD_DEADLINE="3")
    try:
        proc = cli(["weights", "install", url], tmp_path, env=env, timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("weights install was still downloading a 1000-byte file after 90 s")
    assert_no_traceback(proc)
    assert proc.returncode == 2, err(proc)
    assert len(lines(proc)) == 1 and "127.0.0.1" in err(proc), err(proc)
    assert leftovers(tmp_path / "home") == [] if (tmp_path / "home").exists() else True


def test_ctrl_c_during_weights_install_exits_130(tmp_path, trickle):
    url, started = trickle
    proc = subprocess.Popen([sys.executable, "-m", "lia_upscale", "weights", "install", url], cwd=tmp_path,
                            env=_env(tmp_path / "home"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_preexec())
    try:
        assert started.wait(TIMEOUT), "the download never started"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, (proc.returncode, stderr.decode())
    assert b"Traceback" not in stderr
    if (tmp_path / "home").exists():
        assert leftovers(tmp_path / "home") == []


# --------------------------------------------------------------------------- dependencies


def test_sixteen_bit_gray_png(tmp_path, x2):
    """16-bit gray PNG in, 16-bit gray PNG out, exact (Pillow < 10.3 opens these as mode "I")."""
    a = (np.random.default_rng(3).integers(0, 65536, (5, 6))).astype(np.uint16)
    (tmp_path / "in").mkdir()
    Image.fromarray(a).save(tmp_path / "in" / "g.png")
    proc = cli(["in/g.png", "out/", "--weights", str(x2), "-q"], tmp_path)
    assert proc.returncode == 0, err(proc)
    with Image.open(tmp_path / "out" / "g.png") as im:
        assert im.mode in ("I;16", "I;16B", "I")
        got = np.asarray(im).astype(np.int64)
    assert np.array_equal(got, np.repeat(np.repeat(a, 2, 0), 2, 1).astype(np.int64))
