"""Shared test fixtures: the ../shared reference data (skipped when absent, a failure in CI)."""

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
    """Skip the calling test with a clear reason when ``path`` (under ../shared) is absent;
    in CI (``CI=true``) fail instead, so that missing reference data cannot pass unnoticed."""
    if not path.exists():
        message = f"reference data not found: {path} (../shared is absent)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def official_files() -> list[str]:
    """Names of the twelve official checkpoints (from the README's naming, not the disk)."""
    return [f"PlainUSR{v}_Rep_x{s}.pth" for v in ("U", "T", "S", "M", "", "L") for s in (2, 4)]


def nearest_model(scale: int):
    """A U-variant network that is exactly nearest-neighbour upscaling (head copies RGB into
    the identity channels, the tail reads only those), so outputs are known to the pixel."""
    from lia_upscale.nn import VARIANTS, PlainUSR
    from lia_upscale.tools.train import init_identity

    torch.manual_seed(0)
    model = PlainUSR(VARIANTS["U"].with_scale(scale))
    init_identity(model)
    with torch.no_grad():
        model.tail[0].weight[:, : model.config.features] = 0
    return model.eval()


@pytest.fixture(scope="session")
def nearest_weights(tmp_path_factory) -> dict[int, Path]:
    """Safetensors files of :func:`nearest_model` at x2 and x4."""
    from lia_upscale.models import save_weights

    folder = tmp_path_factory.mktemp("weights")
    out = {}
    for scale in (2, 4):
        out[scale] = folder / f"nearest-x{scale}.safetensors"
        save_weights(out[scale], nearest_model(scale), variant="U", scale=scale)
    return out


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Every test starts with the thread count the session started with: a test (or the
    code it runs) that calls ``torch.set_num_threads`` must not leave later tests on one
    thread."""
    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
