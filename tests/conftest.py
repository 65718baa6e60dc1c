"""Shared test fixtures: the ../shared reference data (skipped cleanly when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

SHARED = Path(os.environ.get("LIA_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
OFFICIAL = SHARED / "weights" / "plainusr"
BENCHMARK = SHARED / "datasets" / "benchmark"
LARGE = SHARED / "datasets" / "large" / "sceaux"
TRAIN = SHARED / "datasets" / "train"

#: Device for tests that run models; CPU unless LIA_TEST_DEVICE says otherwise.
DEVICE = torch.device(os.environ.get("LIA_TEST_DEVICE", "cpu"))


def need(path: Path) -> Path:
    """Skip the calling test with a clear reason when ``path`` (under ../shared) is absent."""
    if not path.exists():
        pytest.skip(f"reference data not found: {path} (../shared is absent)")
    return path


def official_files() -> list[str]:
    """Names of the twelve official checkpoints (from the README's naming, not the disk)."""
    return [f"PlainUSR{v}_Rep_x{s}.pth" for v in ("U", "T", "S", "M", "", "L") for s in (2, 4)]
