"""``--threads N`` and ``Upscaler(threads=N)``: torch's CPU threads, and one-line usage errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from lia_upscale.api import Upscaler
from lia_upscale.cli import main
from lia_upscale.errors import DeviceError


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _eval_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "pairs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    lr = rng.integers(0, 256, (8, 10, 3), dtype=np.uint8)
    Image.fromarray(lr).save(folder / "a_LR.png")
    Image.fromarray(lr.repeat(2, 0).repeat(2, 1)).save(folder / "a_HR.png")
    return folder


def test_cli_threads_reach_torch(tmp_path: Path, nearest_weights) -> None:
    """In a child process (torch's setting is process-wide): eval --json reports the
    threads torch ran with; without --threads that is all of torch's default."""
    folder = _eval_folder(tmp_path)
    args = [sys.executable, "-m", "lia_upscale", "eval", str(folder), "--weights", str(nearest_weights[2]), "--json"]
    fresh = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                           capture_output=True, text=True, check=True)
    default = int(fresh.stdout)
    most = os.cpu_count() or 1  # --threads takes at most the machine's CPUs
    for extra, want in ((["--threads", "1"], 1), (["--threads", str(most)], most), ([], default)):
        run = subprocess.run(args + extra, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        report = json.loads(run.stdout)
        assert report["psnr_y"] == float("inf") or report["psnr_y"] > 90  # nearest upscaling of a nearest HR
        assert report["threads"] == want, (extra, report["threads"])


def test_upscaler_threads(restore_threads, nearest_weights) -> None:
    torch.set_num_threads(2)
    Upscaler(weights=nearest_weights[2], device="cpu", threads=1)
    assert torch.get_num_threads() == 1
    Upscaler(weights=nearest_weights[2], device="cpu")  # None leaves torch's setting alone
    assert torch.get_num_threads() == 1
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(DeviceError, match="threads must be a whole number >= 1"):
            Upscaler(weights=nearest_weights[2], device="cpu", threads=bad)
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "two", "", "1e20", "2147483647", str((os.cpu_count() or 1) + 1)])
@pytest.mark.parametrize("command", ["upscale", "eval"])
def test_bad_threads_are_a_one_line_usage_error(tmp_path: Path, nearest_weights, command: str, value: str) -> None:
    folder = _eval_folder(tmp_path)
    args = [command, str(folder), *([str(tmp_path / "out")] if command == "upscale" else []),
            "--weights", str(nearest_weights[2]), f"--threads={value}"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    most = os.cpu_count() or 1
    assert lines == [f"error: --threads: {value!r} is not a whole number from 1 to {most} (this machine's CPUs)"], \
        result.stderr
    assert not (tmp_path / "out").exists()


def test_threads_with_ray_is_a_usage_error(tmp_path: Path, nearest_weights) -> None:
    folder = _eval_folder(tmp_path)
    result = CliRunner().invoke(main, ["upscale", str(folder), str(tmp_path / "out"), "--weights",
                                       str(nearest_weights[2]), "--threads", "2", "--ray"])
    assert result.exit_code == 2 and "--ray-threads" in result.stderr
