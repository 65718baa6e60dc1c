"""Issue 25, classes 7 and 8 at the doors: one clear line and the right exit code for each
case the campaign found, no library warning, byte counts that show their number, no image
bytes on a terminal, and user strings shown literally in the live progress lines."""

from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from rich.console import Console

from lia_upscale.cli import main


def _png(path: Path, h: int = 6, w: int = 7, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def _one_error_line(result, code: int = 2) -> str:
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output and "Warning" not in result.output
    return lines[0]


def test_an_empty_input_folder_is_a_usage_error(tmp_path, nearest_weights):
    (tmp_path / "empty").mkdir()
    line = _one_error_line(CliRunner().invoke(main, [str(tmp_path / "empty"), str(tmp_path / "out"),
                                                     "--weights", str(nearest_weights[2])]))
    assert "no images in" in line and "empty" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("option", ["--model", "--weights"])
def test_an_empty_model_name_is_named_as_such(tmp_path, option):
    _png(tmp_path / "a.png")
    line = _one_error_line(CliRunner().invoke(main, [str(tmp_path / "a.png"), str(tmp_path / "out"), option, ""]))
    assert "empty" in line and "error: : " not in line and ".: no such" not in line


def _pairs(folder: Path, scales: dict[str, int], hr: int = 48) -> Path:
    for name, s in scales.items():
        _png(folder / f"{name}_HR.png", hr, hr)
        _png(folder / f"{name}_LR.png", hr // s, hr // s)
    return folder


def test_eval_on_tiny_images_is_refused_without_nan_or_warnings(tmp_path, nearest_weights):
    folder = _pairs(tmp_path / "tiny", {"a": 2}, hr=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        line = _one_error_line(CliRunner().invoke(main, ["eval", str(folder), "--weights", str(nearest_weights[2])]))
    assert "a_HR.png: 4x4 is too small to score at x2" in line and "nan" not in line


def test_eval_on_mixed_x2_and_x4_pairs_is_a_usage_error(tmp_path, nearest_weights):
    folder = _pairs(tmp_path / "mixed", {"a": 2, "b": 4})
    line = _one_error_line(CliRunner().invoke(main, ["eval", str(folder), "--weights", str(nearest_weights[2])]))
    assert "the pairs mix scales: x2 (a_LR.png), x4 (b_LR.png)" in line


def test_bench_with_an_unknown_model_exits_2_as_upscale_does(tmp_path):
    line = _one_error_line(CliRunner().invoke(main, ["bench", "--model", "nope"]))
    assert "unknown model 'nope'" in line
    _png(tmp_path / "a.png")
    upscale = _one_error_line(CliRunner().invoke(main, [str(tmp_path / "a.png"), str(tmp_path / "o"), "--model", "nope"]))
    assert "unknown model 'nope'" in upscale


def test_bench_pipeline_on_an_empty_folder_is_a_usage_error(tmp_path):
    (tmp_path / "empty").mkdir()
    line = _one_error_line(CliRunner().invoke(main, ["bench", "--pipeline", str(tmp_path / "empty")]))
    assert "no images" in line


def test_a_tiny_memory_budget_is_shown_in_bytes_not_zero_gib(tmp_path, nearest_weights):
    _png(tmp_path / "a.png")
    result = CliRunner().invoke(main, [str(tmp_path / "a.png"), str(tmp_path / "out"), "--weights",
                                       str(nearest_weights[2]), "--max-memory", "1000", "-q"])
    assert result.exit_code == 1, result.output
    assert "over the memory budget of 1000 bytes (--max-memory)" in result.stderr, result.stderr
    assert "0.0 GiB" not in result.stderr


def test_image_bytes_are_never_written_to_a_terminal(tmp_path, nearest_weights):
    _png(tmp_path / "in.png")
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "lia_upscale", str(tmp_path / "in.png"), "-",
                               "--weights", str(nearest_weights[2])],
                              stdout=follower, stderr=subprocess.PIPE, timeout=180)
        os.close(follower)
        follower = -1
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(leader)
        if follower != -1:
            os.close(follower)
    assert proc.returncode == 2, proc.stderr
    assert b"PNG" not in shown and len(shown) == 0
    assert "standard output is a terminal" in proc.stderr.decode()


def test_file_names_in_the_live_progress_are_shown_literally(tmp_path, nearest_weights, monkeypatch):
    import lia_upscale.batch as batch
    from lia_upscale.cli import upscale as upscale_cli

    name = "[red]x[bold] y.png"
    _png(tmp_path / "in" / name)
    screen = io.StringIO()
    monkeypatch.setattr(upscale_cli, "make_console",
                        lambda quiet=False: Console(file=screen, force_terminal=True, width=200, color_system=None))

    def slow_run(jobs, upscaler, *, events, **kwargs):
        events.on_start(jobs[0], 42)
        time.sleep(0.5)  # the live display refreshes (10 per second) while the file is "in flight"
        events.on_outcome(batch.Outcome(jobs[0], "done", 0.5))
        return []

    monkeypatch.setattr(batch, "run_jobs", slow_run)
    result = CliRunner().invoke(main, [str(tmp_path / "in"), str(tmp_path / "out"), "--weights",
                                       str(nearest_weights[2])])
    assert result.exit_code == 0, result.output
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    assert name in text, text
