"""A training run stopped after k steps and resumed from its checkpoint is the uninterrupted run, exactly."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lia_upscale.errors import LiaError
from lia_upscale.tools.checkpoint import load_checkpoint, save_checkpoint
from lia_upscale.tools.train import TrainConfig, TrainStatus, train


class _Killed(Exception):
    """Stands for the process being killed right after a checkpoint was written."""


def _photos(folder: Path, count: int, size: int) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(7)
    for i in range(count):
        coarse = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((size, size + 8 * i), Image.BICUBIC).save(folder / f"{i}.png")
    return folder


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _same_optimizer(a: dict, b: dict) -> bool:
    if a["param_groups"] != b["param_groups"] or a["state"].keys() != b["state"].keys():
        return False
    return all(_same(a["state"][i], b["state"][i]) for i in a["state"])


@pytest.mark.parametrize("stop_at", [2, 5])
def test_resumed_photo_run_equals_the_uninterrupted_run(tmp_path: Path, stop_at: int) -> None:
    torch.set_num_threads(1)  # one thread: the same float sums in both runs (restored by conftest)
    data = _photos(tmp_path / "hr", 3, 64)
    # the photo family with the phone pipeline (numpy draws), an EMA, warm-up and decay all in play
    cfg = TrainConfig(variant="S", scale=2, iterations=7, batch=3, patch=16, lr=1e-3, min_lr=1e-5, warmup=2,
                      checkpoint_every=1, degradation="photo", ema=0.9, camera_prob=0.8, phone_prob=0.5, seed=3)
    whole_ckpt = tmp_path / "whole.ckpt"
    whole = train([data], whole_ckpt, cfg)

    cut_ckpt = tmp_path / "cut.ckpt"

    def kill(status: TrainStatus) -> None:
        if status.iteration == stop_at:
            raise _Killed

    with pytest.raises(_Killed):
        train([data], cut_ckpt, cfg, on_status=kill)
    assert load_checkpoint(cut_ckpt)["iteration"] == stop_at
    resumed = train([data], cut_ckpt, cfg)

    assert _same(resumed.state_dict(), whole.state_dict())  # the EMA weights, what is exported
    a, b = load_checkpoint(whole_ckpt), load_checkpoint(cut_ckpt)
    assert a["iteration"] == b["iteration"] == cfg.iterations
    assert _same(a["model"], b["model"]) and _same(a["ema"], b["ema"])
    assert _same_optimizer(a["optim"], b["optim"]) and torch.equal(a["generator"], b["generator"])

    # the test can fail: another seed after the cut gives other weights
    other = tmp_path / "other.ckpt"
    with pytest.raises(_Killed):
        train([data], other, cfg, on_status=kill)
    state = load_checkpoint(other)
    state["generator"] = torch.Generator().manual_seed(99).get_state()
    save_checkpoint(other, state)
    assert not _same(train([data], other, cfg).state_dict(), whole.state_dict())


def test_a_checkpoint_of_another_recipe_is_refused(tmp_path: Path) -> None:
    data = _photos(tmp_path / "hr", 2, 48)
    cfg = TrainConfig(variant="U", scale=2, iterations=2, batch=2, patch=16, warmup=1, checkpoint_every=1,
                      degradation="photo", phone_prob=0.3)
    train([data], tmp_path / "a.ckpt", cfg)
    with pytest.raises(LiaError, match="another recipe"):
        train([data], tmp_path / "a.ckpt", replace(cfg, phone_prob=0.4))
