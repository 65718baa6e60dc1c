"""Issue 25, class 5: every numeric option is validated when parsed (finite, in range,
sensible maxima), a usage error (exit 2) in one line, before anything is loaded or written."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from lia_upscale.cli import main
from lia_upscale.cli.options import MAX_BATCH, machine_threads

MOST = os.cpu_count() or 1


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    (tmp_path / "in").mkdir()
    Image.fromarray(np.zeros((6, 7, 3), np.uint8)).save(tmp_path / "in" / "a.png")
    (tmp_path / "data").mkdir()
    return tmp_path


def _upscale(t: Path) -> list[str]:
    return [str(t / "in" / "a.png"), str(t / "out") + "/"]


def _train(t: Path) -> list[str]:
    return ["train", str(t / "data"), "--out", str(t / "w.safetensors"), "--iterations", "1"]


CASES = [
    (_upscale, "--threads", "2147483647"),
    (_upscale, "--threads", "1e20"),
    (_upscale, "--threads", str(MOST + 1)),
    (_upscale, "--ray-stall-timeout", "nan"),
    (_upscale, "--ray-stall-timeout", "inf"),
    (_upscale, "--ray-stall-timeout", "1e300"),
    (_upscale, "--outscale", "nan"),
    (_upscale, "--outscale", "1e400"),
    (_upscale, "--outscale", "1000"),
    (_upscale, "--tile", "99999999999"),
    (_upscale, "--max-memory", "nan"),
    (_upscale, "--max-memory", "0.0001"),
    (_upscale, "--max-pixels", "0"),
    (_train, "--lr", "nan"),
    (_train, "--lr", "inf"),
    (_train, "--lr", "0"),
    (_train, "--lr", "-1"),
    (_train, "--batch", "100000"),
    (_train, "--patch", "100000"),
    (_train, "--threads", "2147483647"),
    (_train, "--ema", "nan"),
    (_train, "--seed", str(2**70)),
    (lambda t: ["bench"], "--size", "100000"),
    (lambda t: ["bench"], "--size", "7x100000"),
    (lambda t: ["bench"], "--threads", "1e20"),
    (lambda t: ["eval", str(t / "data")], "--threads", "0"),
]


@pytest.mark.parametrize(("args", "option", "value"), CASES, ids=[f"{c[1]}={c[2]}" for c in CASES])
def test_a_bad_number_is_a_one_line_usage_error_before_any_work(folder, args, option, value):
    result = CliRunner().invoke(main, [*args(folder), option, value])
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {option}: "), result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
    # nothing was made: no output folder, no weights, no checkpoint
    assert sorted(p.name for p in folder.iterdir()) == ["data", "in"]


def test_threads_up_to_the_machine_are_accepted():
    assert machine_threads() == MOST


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.text(max_size=12),
                 st.integers(-10, 10**25).map(str)))
def test_train_lr_and_batch_accept_only_sane_values(tmp_path_factory, text):
    folder = tmp_path_factory.mktemp("opt")
    (folder / "data").mkdir()
    for option in ("--lr", "--batch"):
        result = CliRunner().invoke(main, ["train", str(folder / "data"), "--out", str(folder / "w.safetensors"),
                                           option, text, "--iterations", "1", "--eval-every", "0"])
        # --eval-every 0 is always refused, so a valid value still ends in a usage error before training
        assert result.exit_code == 2, result.output
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        if lines[0].startswith(f"error: {option}: "):
            continue  # refused: fine for any value
        # accepted: then it was sane
        if option == "--lr":
            value = float(text)
            assert math.isfinite(value) and 0 < value <= 1, text
        else:
            assert text.strip().lstrip("+").isdecimal() and 1 <= int(text) <= MAX_BATCH, text
    assert not (folder / "w.safetensors").exists() and not (folder / "w.ckpt").exists()
