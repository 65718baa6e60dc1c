"""Issue 25 through the CLI as a user runs it (a child process): ``kill -9`` mid-batch and
the same command again, outputs that are pipes or devices, a file that appears while the
network runs, signals while a read blocks. Slow (each case imports torch in a child)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_hostile import _env, _png, _with_hook, assert_no_traceback, cli, err, leftovers, lines  # noqa: F401

pytestmark = pytest.mark.slow


@pytest.fixture()
def x2(nearest_weights, tmp_path: Path) -> Path:
    dst = tmp_path / "nearest-x2.safetensors"
    dst.write_bytes(nearest_weights[2].read_bytes())
    return dst


def test_kill_9_mid_batch_then_the_same_command_completes_everything_at_once(tmp_path, x2):
    """SIGKILL as the second output is committed (its temporary is complete, not yet renamed):
    the same command again writes every output, byte-identical to an undisturbed run, and
    leaves no temporary file, at once (no waiting for an age limit)."""
    for i, name in enumerate(["a.png", "b.png", "c.png"]):
        _png(tmp_path / "in" / name, 9, 11, seed=i)
    clean = cli(["in/", "clean/", "--weights", str(x2), "-q"], tmp_path)
    assert clean.returncode == 0, err(clean)
    env = _with_hook(_env(tmp_path / "home"), tmp_path / "hooks", "os.rename", "b.png", sig="KILL", arg=1)
    killed = cli(["in/", "out/", "--weights", str(x2), "-q"], tmp_path, env=env)
    assert killed.returncode == -signal.SIGKILL, err(killed)
    assert [p.name for p in (tmp_path / "out").glob(".b.png.*.part")], "the kill left no temporary to clean"
    again = cli(["in/", "out/", "--weights", str(x2), "-q"], tmp_path)
    assert again.returncode == 0, err(again)
    assert_no_traceback(again)
    assert leftovers(tmp_path / "out") == []
    for name in ("a.png", "b.png", "c.png"):
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "clean" / name).read_bytes(), name


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _device(path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("making a device node needs root")
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))


@pytest.mark.parametrize("make", [_fifo, _device], ids=["fifo", "device"])
@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]], ids=["plain", "overwrite"])
def test_an_output_that_is_a_pipe_or_device_is_never_replaced(tmp_path, x2, make, overwrite):
    _png(tmp_path / "in.png")
    (tmp_path / "out").mkdir()
    make(tmp_path / "out" / "out.png")
    proc = cli(["in.png", "out/out.png", "--weights", str(x2), "-q", *overwrite], tmp_path, timeout=120)
    assert_no_traceback(proc)
    assert proc.returncode in (1, 2), err(proc)
    assert not stat.S_ISREG(os.lstat(tmp_path / "out" / "out.png").st_mode)
    assert "not a regular file" in err(proc) and len(lines(proc)) == 1, err(proc)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["out.png"]


APPEAR = r'''
import os, sys
_done = []
def _hook(event, args):
    if event == "os.rename" and not _done and os.fsdecode(str(args[1])).endswith(os.environ["APPEAR_NAME"]):
        _done.append(1)
        with open(args[1], "wb") as f:  # another program writes the file while we work
            f.write(b"theirs")
sys.addaudithook(_hook)
'''


def test_a_file_that_appears_while_the_network_runs_is_not_replaced(tmp_path, x2):
    _png(tmp_path / "in" / "a.png")
    _png(tmp_path / "in" / "b.png", seed=1)
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(APPEAR)
    env = _env(tmp_path / "home", APPEAR_NAME="a.png")
    env["PYTHONPATH"] = os.pathsep.join([str(hooks), *filter(None, [env.get("PYTHONPATH")])])
    proc = cli(["in/", "out/", "--weights", str(x2), "--json"], tmp_path, env=env)
    assert_no_traceback(proc)
    assert (tmp_path / "out" / "a.png").read_bytes() == b"theirs"
    assert Image.open(tmp_path / "out" / "b.png").size == (14, 12)  # the rest of the batch completes
    row = json.loads([ln for ln in proc.stdout.decode().splitlines() if "a.png" in ln][0])
    assert row["status"] == "skipped", row  # "skipped" holds at the moment of the write
    assert proc.returncode == 0, err(proc)
    assert leftovers(tmp_path / "out") == []


def test_sigterm_while_an_input_read_blocks_ends_the_run_at_once(tmp_path, x2):
    """stdin that never sends: SIGTERM ends the run within seconds, exit 143."""
    r, w = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", "lia_upscale", "-", "out.png", "--weights", str(x2)],
                            cwd=tmp_path, env=_env(tmp_path / "home"), stdin=r, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    os.close(r)
    try:
        time.sleep(1)
        deadline = time.monotonic() + 120  # torch's import first: wait until the model is loaded
        while time.monotonic() < deadline and proc.poll() is None:
            status = Path(f"/proc/{proc.pid}/wchan").read_text() if Path(f"/proc/{proc.pid}/wchan").exists() else ""
            if "pipe" in status:
                break
            time.sleep(0.2)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        os.close(w)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143, stderr.decode()
    assert took < 3, took
    assert "Traceback" not in stderr.decode()
    assert not (tmp_path / "out.png").exists()


def _ray_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


@pytest.mark.skipif(not _ray_installed(), reason="the ray extra is not installed")
def test_an_unreachable_ray_address_is_one_line_at_once(tmp_path, x2):
    _png(tmp_path / "in" / "a.png")
    started = time.monotonic()
    proc = cli(["in/", "out/", "--weights", str(x2), "--ray-address", "127.0.0.1:1", "-q"], tmp_path, timeout=120)
    took = time.monotonic() - started
    assert proc.returncode == 2, err(proc)
    assert lines(proc) == ["error: cannot join the Ray cluster at 127.0.0.1:1: Connection refused (after 0.0 s); "
                           "is the cluster running there?"], err(proc)
    assert took < 60, took  # the child's torch import and model check, then an immediate refusal
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not _ray_installed(), reason="the ray extra is not installed")
@pytest.mark.parametrize("how", ["wait", "sigterm"])
def test_a_ray_address_where_something_else_listens_is_refused_within_30_s_or_at_sigterm(tmp_path, x2, how):
    import socket

    _png(tmp_path / "in" / "a.png")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)  # answers TCP, speaks no Ray
    address = f"127.0.0.1:{listener.getsockname()[1]}"
    try:
        proc = subprocess.Popen([sys.executable, "-m", "lia_upscale", "in/", "out/", "--weights", str(x2),
                                 "--ray-address", address, "-q"], cwd=tmp_path, env=_env(tmp_path / "home"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # wait until the child is connecting (it has accepted-queue entries on our socket)
        listener.settimeout(120)
        conn, _ = listener.accept()
        started = time.monotonic()
        if how == "sigterm":
            time.sleep(2)  # inside ray.init's retries
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
        took = time.monotonic() - started
        conn.close()
    finally:
        listener.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    text = stderr.decode()
    shown = [ln for ln in text.splitlines() if ln.strip()]
    if how == "sigterm":
        assert proc.returncode == 143, text
        assert took < 10, took  # well before the 20 s the refusal waits
        assert shown == [], text  # -q: an interrupted batch prints nothing; Ray's lines never
        return
    assert proc.returncode == 2, text
    assert shown == [
        f"error: cannot join the Ray cluster at {address}: it answers, but no Ray cluster came up there within 20 s"]
    assert took < 30, took


def test_ctrl_c_at_any_moment_of_start_up_exits_130(tmp_path, x2):
    """SIGINT anywhere in start-up (imports, torch's C++ initialisation, the weights, a read
    of stdin) ends the run with 130 and one line: an interrupt raised inside torch's import
    aborted the process (exit 134, "terminate called ... KeyboardInterrupt") or was lost."""
    seen = []
    for i in range(10):
        proc = subprocess.Popen([sys.executable, "-m", "lia_upscale", "-", str(tmp_path / "o.png"), "--weights",
                                 str(x2), "-q"], cwd=tmp_path, env=_env(tmp_path / "home"),
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.25 * i)  # from the interpreter's start to the read of stdin, which never ends
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stdin.close()
        text = proc.stderr.read().decode()
        seen.append((0.25 * i, proc.returncode, text))
    # -2: the signal came before the interpreter set up its handler and killed it (a shell shows 130)
    wrong = [s for s in seen if s[1] not in (130, -signal.SIGINT) or "Traceback" in s[2] or "terminate called" in s[2]]
    assert not wrong, wrong
    assert not (tmp_path / "o.png").exists()


def test_a_signal_held_back_during_an_import_is_raised_once_it_is_done(monkeypatch):
    import importlib.machinery
    import types

    from lia_upscale.cli import app

    fake = types.ModuleType("lia_fake_initialising")
    fake.__spec__ = importlib.machinery.ModuleSpec("lia_fake_initialising", None)
    fake.__spec__._initializing = True
    monkeypatch.setitem(sys.modules, "lia_fake_initialising", fake)
    previous = signal.signal(signal.SIGINT, app._stop)
    try:
        signal.raise_signal(signal.SIGINT)  # while a module initialises: held back, sent again later
        fake.__spec__._initializing = False
        with pytest.raises(KeyboardInterrupt):
            time.sleep(2)  # the retry arrives, and now it raises
    finally:
        signal.signal(signal.SIGINT, previous)
