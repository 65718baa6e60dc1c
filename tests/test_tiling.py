"""Tiled inference: plans, exact blending with fake models, out-of-memory shrink, and the
real network (random weights and the official checkpoints) against whole-image output."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from collections.abc import Callable, Sequence

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import BENCHMARK, DEVICE, LARGE, OFFICIAL, need
from lia_upscale.errors import DeviceError
from lia_upscale.nn import VARIANTS, Placement, PlainUSR
from lia_upscale.nn.attention import importance_grid_size, resample_importance
from lia_upscale.engine.tiling import (
    DEFAULT_CONTEXT,
    Region,
    TileContract,
    plan_tiles,
    source_shape,
    upscale,
)

SIZES = [(1, 1), (5, 3), (3, 5), (7, 7), (13, 17), (31, 29), (64, 64), (97, 61)]
TILES = [0, 5, 8, 13, 32]


# ---------------------------------------------------------------- fake models


def nearest(scale: int) -> Callable[..., torch.Tensor]:
    """Shift-equivariant fake: nearest-neighbour upscale."""

    def fn(b: torch.Tensor, regions: Sequence[Region], full: tuple[int, int]) -> torch.Tensor:
        return b.repeat_interleave(scale, -2).repeat_interleave(scale, -1)

    return fn


def mean3(scale: int) -> Callable[..., torch.Tensor]:
    """Fake with a 3x3 receptive field and its own (replicate) border: tiles match the
    whole image only where the tile has one pixel of real image around the output."""

    def fn(b: torch.Tensor, regions: Sequence[Region], full: tuple[int, int]) -> torch.Tensor:
        m = F.avg_pool2d(F.pad(b, (1, 1, 1, 1), mode="replicate"), 3, 1)
        return m.repeat_interleave(scale, -2).repeat_interleave(scale, -1)

    return fn


def positional(scale: int) -> Callable[..., torch.Tensor]:
    """Fake whose output depends on where the tile says it is: wrong regions show."""

    def fn(b: torch.Tensor, regions: Sequence[Region], full: tuple[int, int]) -> torch.Tensor:
        h, w = b.shape[-2:]
        rows = torch.stack([torch.arange(r.top, r.top + h) for r in regions]).to(b)
        cols = torch.stack([torch.arange(r.left, r.left + w) for r in regions]).to(b)
        code = rows[:, None, :, None] / full[0] + 7 * cols[:, None, None, :] / full[1]
        return nearest(scale)(b + code, regions, full)

    return fn


def reference(
    fake: Callable[..., torch.Tensor], image: torch.Tensor, c: TileContract
) -> torch.Tensor:
    """The fake on the whole image, padded to the minimum size as the tiler pads."""
    _, h, w = image.shape
    ph, pw = max(h, c.min_size), max(w, c.min_size)
    padded = F.pad(image[None], (0, pw - w, 0, ph - h), mode="replicate")
    full = Region(0, 0, ph, pw)
    return fake(padded, [full], (ph, pw))[0, :, : h * c.scale, : w * c.scale]


def coverage(regions: Sequence[Region], height: int, width: int) -> torch.Tensor:
    count = torch.zeros(height, width, dtype=torch.int32)
    for r in regions:
        count[r.top : r.bottom, r.left : r.right] += 1
    return count


# ---------------------------------------------------------------- plans


@pytest.mark.parametrize("alignment,min_size", [(1, 1), (6, 7)])
@pytest.mark.parametrize("context", [0, 5, 12])
@pytest.mark.parametrize("tile", [0, 6, 13, 32, 64, 100, 128])
@pytest.mark.parametrize("height,width", [(7, 7), (13, 8), (61, 97), (127, 128), (130, 257)])
def test_plan_tiles_exact_aligned_one_shape(height, width, tile, context, alignment, min_size):
    c = TileContract(scale=2, min_size=min_size, alignment=alignment, context=context)
    tiles = plan_tiles(height, width, tile, c)
    once = torch.ones(height, width, dtype=torch.int32)
    assert torch.equal(coverage([t.core for t in tiles], height, width), once)
    for axis in ("height", "width"):
        pick = (lambda k: (k.top, k.bottom)) if axis == "height" else (lambda k: (k.left, k.right))
        assert all(a % alignment == 0 for a, _ in {pick(t.core) for t in tiles})
    ctx = c.aligned_context
    for t in tiles:
        s, k = t.source, t.core
        assert s.top % alignment == 0 and s.left % alignment == 0
        assert s.top <= max(0, k.top - ctx) and s.left <= max(0, k.left - ctx)
        assert s.bottom >= min(height, k.bottom + ctx) and s.right >= min(width, k.right + ctx)
        assert 0 <= s.top and s.bottom <= height and 0 <= s.left and s.right <= width
        assert s.height >= min_size and s.width >= min_size
    # one source shape for every network call, which source_shape gives without the list
    assert len({(t.source.height, t.source.width) for t in tiles}) == 1
    last = tiles[-1]
    assert source_shape(height, width, tile, c) == (last.row + 1, last.col + 1, last.source.height, last.source.width)
    assert (len(tiles) == 1) == (tile <= 0 or height * width <= (tile + 2 * ctx) ** 2)


def _square_grid_pixels(height: int, width: int, tile: int, c: TileContract) -> int:
    """What square cores of edge ``tile`` (the plan before sources were equalised) feed the
    network: per axis ceil(size / tile) near-equal cores, each grown by the context and
    clipped to the image."""
    ctx = c.aligned_context

    def axis(size: int) -> int:
        n = -(-size // tile)
        bounds = [round(i * size / n / c.alignment) * c.alignment for i in range(n)] + [size]
        return sum(min(size, b + ctx) - max(0, a - ctx) for a, b in zip(bounds[:-1], bounds[1:]))

    return axis(height) * axis(width)


@pytest.mark.parametrize("size", [(1500, 2000), (3024, 4032), (2128, 2832), (6048, 8064), (4000, 6000), (480, 40000)])
@pytest.mark.parametrize("tile", [512, 744, 852, 1032])
def test_plan_tiles_photo_sizes_one_shape_about_as_many_pixels_as_square_tiles(size, tile):
    c = TileContract(scale=2, min_size=7, alignment=6, context=DEFAULT_CONTEXT)
    tiles = plan_tiles(*size, tile, c)
    shapes = {(t.source.height, t.source.width) for t in tiles}
    assert len(shapes) == 1
    (h, w), = shapes
    assert source_shape(*size, tile, c) == (tiles[-1].row + 1, tiles[-1].col + 1, h, w)
    assert h * w <= 1.02 * (tile + 2 * DEFAULT_CONTEXT) ** 2
    # equal sources cost at most one alignment unit a side over square cores' grid
    assert len(tiles) * h * w <= 1.015 * _square_grid_pixels(*size, tile, c)


def test_plan_tiles_examples():
    c = TileContract(scale=2, alignment=6, min_size=7, context=DEFAULT_CONTEXT)
    # a 12-MP photo with M's CPU tile (852): 4 x 4 tiles of one shape, 828 x 1080 sources
    # (at most 948^2 pixels), where square 852 cores made 5 x 4 of six shapes
    tiles = plan_tiles(3024, 4032, 852, c)
    assert {(t.source.height, t.source.width) for t in tiles} == {(828, 1080)}
    assert (1 + max(t.row for t in tiles), 1 + max(t.col for t in tiles)) == (4, 4)
    # the edge cores are longer by the context the border saves them
    assert sorted({t.core.width for t in tiles if t.row == 0})[-1] - sorted({t.core.width for t in tiles})[0] >= 42
    # a 3-MP photo: 2 x 2 tiles of 798 x 1052, nearly as large as the 12-MP photo's
    assert {(t.source.height, t.source.width) for t in plan_tiles(1500, 2000, 852, c)} == {(798, 1052)}
    # a narrow strip that fits the tile's area runs as one tile
    assert len(plan_tiles(2128, 100, 512, c)) == 1
    assert len(plan_tiles(50, 40, 0, c)) == 1
    assert len(plan_tiles(50, 40, 50, c)) == 1
    with pytest.raises(ValueError):
        plan_tiles(5, 40, 0, c)
    with pytest.raises(ValueError):
        TileContract(scale=0)


# ---------------------------------------------------------------- exact tiling with fakes


@pytest.mark.parametrize("fake", [nearest, mean3, positional])
@pytest.mark.parametrize("alignment,min_size", [(1, 1), (6, 7)])
@pytest.mark.parametrize("height,width", SIZES)
def test_fake_models_tile_exactly(fake, alignment, min_size, height, width):
    torch.manual_seed(height * 100 + width)
    image = torch.rand(3, height, width)
    for scale in (1, 3):
        for tile in [t for t in TILES if t != 5 or max(height, width) < 40]:
            for context in (1, 6):
                c = TileContract(scale, min_size=min_size, alignment=alignment, context=context)
                result = upscale(image, fake(scale), c, tile)
                assert result.image.dtype == torch.float32 and result.image.device.type == "cpu"
                assert result.image.shape == (3, height * scale, width * scale)
                expected = reference(fake(scale), image, c)
                assert torch.equal(result.image, expected), (scale, tile, context)
                assert (result.tile, result.retries) == (tile, 0)


def test_blending_is_a_cross_fade_not_a_seam():
    """Two tiles that disagree by a constant meet in a smooth ramp that starts and ends
    exactly on either tile's value, halfway at the boundary."""

    def fn(b, regions, full):
        right = torch.tensor([float(r.left > 0) for r in regions]).view(-1, 1, 1, 1)
        return nearest(1)(b, regions, full) + right

    c = TileContract(scale=1, context=8)
    # sources of at most (2 + 16)^2 pixels: two of 8 x 40, cores split at column 32
    assert [t.core.left for t in plan_tiles(8, 64, 2, c)] == [0, 32]
    out = upscale(torch.zeros(1, 8, 64), fn, c, 2).image[0, 0]
    band = c.band
    assert torch.equal(out[: 32 - band], torch.zeros(32 - band))
    assert torch.equal(out[32 + band :], torch.ones(32 - band))
    ramp = out[32 - band : 32 + band]
    assert bool((ramp[1:] > ramp[:-1]).all()) and 0 < float(ramp[0]) and float(ramp[-1]) < 1
    assert torch.allclose(ramp + ramp.flip(0), torch.ones_like(ramp), atol=1e-6)


def test_batches_share_a_shape_and_respect_the_budget():
    calls: list[tuple[tuple[int, ...], list[Region]]] = []

    def fn(b, regions, full):
        calls.append((tuple(b.shape), list(regions)))
        return nearest(2)(b, regions, full)

    c = TileContract(scale=2, min_size=7, alignment=6, context=12)
    image = torch.rand(3, 200, 300)
    budget = 3 * 60 * 60
    result = upscale(image, fn, c, 36, max_batch_pixels=budget)
    assert torch.equal(result.image, reference(nearest(2), image, c))
    plan = plan_tiles(200, 300, 36, c)
    seen = sorted((r.top, r.left) for _, rs in calls for r in rs)
    assert seen == sorted((t.source.top, t.source.left) for t in plan)
    for shape, regions in calls:
        assert len(regions) == shape[0]
        assert all((r.height, r.width) == shape[2:] for r in regions)
        assert shape[0] == 1 or shape[0] * shape[2] * shape[3] <= budget
    assert max(shape[0] for shape, _ in calls) > 1


def test_tiles_keep_device_and_dtype_and_progress_is_reported():
    seen, progress = set(), []

    def fn(b, regions, full):
        seen.add((b.dtype, b.device.type))
        return nearest(2)(b, regions, full)

    image = torch.rand(3, 40, 50, dtype=torch.float64)
    c = TileContract(scale=2, context=4)
    result = upscale(image, fn, c, 16, on_tile=lambda done, total: progress.append((done, total)))
    assert seen == {(torch.float64, "cpu")}
    assert result.image.dtype == torch.float32
    assert torch.equal(result.image, reference(nearest(2), image, c).float())
    total = len(plan_tiles(40, 50, 16, c))
    assert progress[0] == (0, total) and progress[-1] == (total, total)
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)
    half = upscale(image.half(), nearest(2), c, 16).image
    assert half.dtype == torch.float32
    assert torch.equal(half, reference(nearest(2), image.half(), c).float())


def test_contract_violations_and_foreign_errors_are_not_swallowed():
    c = TileContract(scale=2, context=2)
    with pytest.raises(ValueError, match="returned"):
        upscale(torch.rand(3, 20, 20), nearest(3), c, 8)

    def broken(b, regions, full):
        raise KeyError("boom")

    with pytest.raises(KeyError):
        upscale(torch.rand(3, 20, 20), broken, c, 8)
    with pytest.raises(ValueError):
        upscale(torch.rand(20, 20), nearest(2), c, 8)
    with pytest.raises(ValueError):  # uint8 samples are cut as they are; other integers are not
        upscale(torch.zeros(3, 20, 20, dtype=torch.int16), nearest(2), c, 8)


# ---------------------------------------------------------------- out of memory


def _oom_types() -> list[type[BaseException]]:
    """torch.OutOfMemoryError (torch >= 2.5) and torch.cuda.OutOfMemoryError, once each
    (they are the same class in recent torch)."""
    types = [torch.cuda.OutOfMemoryError, getattr(torch, "OutOfMemoryError", None)]
    return [t for i, t in enumerate(types) if t is not None and t not in types[:i]]


@pytest.mark.parametrize("error", _oom_types())
@pytest.mark.parametrize("alignment,min_size", [(1, 1), (6, 7)])
def test_out_of_memory_halves_the_tile_and_misses_nothing(error, alignment, min_size):
    c = TileContract(scale=2, min_size=min_size, alignment=alignment, context=6)
    image = torch.rand(3, 150, 130)
    # 96-pixel tiles fail, 48-pixel ones fit (with what aligning their cores may add)
    tile, limit = 96, (48 + 2 * 6 + 2 * alignment) ** 2
    calls: list[list[Region]] = []

    def fn(b, regions, full):
        if b.shape[-2] * b.shape[-1] > limit:
            raise error("CUDA out of memory (fake)")
        calls.append(list(regions))
        return positional(2)(b, regions, full)

    result = upscale(image, fn, c, tile, max_batch_pixels=1)
    assert (result.tile, result.retries) == (tile // 2, 1)
    assert torch.equal(result.image, reference(positional(2), image, c))
    done = [r for batch in calls for r in batch]
    assert sorted((r.top, r.left, r.height, r.width) for r in done) == sorted(
        (t.source.top, t.source.left, t.source.height, t.source.width)
        for t in plan_tiles(150, 130, tile // 2, c)
    )
    # the smaller size sticks: feeding it back runs first time
    again = upscale(image, fn, c, result.tile, max_batch_pixels=result.max_batch_pixels)
    assert again.retries == 0 and torch.equal(again.image, result.image)


def test_out_of_memory_on_the_whole_image_halves_the_longer_side():
    image = torch.rand(3, 100, 60)
    c = TileContract(scale=2, context=4)

    def fn(b, regions, full):
        if b.shape[-2] * b.shape[-1] > 40 * 40:
            raise torch.cuda.OutOfMemoryError("fake")
        return nearest(2)(b, regions, full)

    result = upscale(image, fn, c, 0, max_batch_pixels=1)
    assert result.tile == 25 and result.retries == 2  # 100 -> 50 (54x34 fails) -> 25
    assert torch.equal(result.image, reference(nearest(2), image, c))


def test_out_of_memory_in_a_batch_shrinks_the_batch_before_the_tile():
    image = torch.rand(3, 16, 256)  # one grid row of 16 tiles: batches never span grid rows
    c = TileContract(scale=2, context=0)
    sizes = []

    def fn(b, regions, full):
        sizes.append(b.shape[0])
        if b.numel() > 3 * 5 * 16 * 16:  # at most five 16x16 tiles fit at once
            raise RuntimeError("MPS backend out of memory (fake)")
        return nearest(2)(b, regions, full)

    result = upscale(image, fn, c, 16)
    assert (result.tile, result.retries) == (16, 2)  # batches of 16 -> 8 -> 4
    assert result.max_batch_pixels == 4 * 16 * 16
    assert sizes[:2] == [16, 8] and set(sizes[2:]) == {4}
    assert torch.equal(result.image, reference(nearest(2), image, c))


def test_out_of_memory_gives_up_below_the_minimum():
    c = TileContract(scale=2, alignment=6, min_size=7, context=6)

    def fn(b, regions, full):
        raise torch.cuda.OutOfMemoryError("fake")

    with pytest.raises(DeviceError, match="out of memory"):
        upscale(torch.rand(3, 80, 80), fn, c, 64)


# ---------------------------------------------------------------- the real network


def test_resample_importance_without_offset_is_interpolate():
    """A whole-image placement samples exactly where F.interpolate does. Compared in
    float64: in float32, F.interpolate rounds its source coordinates in float32 and drifts
    from the exact result (by 1.9e-5 at 1000 px), while resample_importance stays within
    2e-7 of it."""
    torch.manual_seed(0)
    for h, w in [(7, 7), (13, 8), (48, 60), (61, 97), (100, 100), (131, 257), (1000, 999)]:
        grid = (importance_grid_size(h), importance_grid_size(w))
        coarse = torch.rand(2, 5, *grid, dtype=torch.float64)
        expected = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
        got = resample_importance(coarse, (h, w), [Placement(0, 0, h, w)] * 2)
        assert (got - expected).abs().max() <= 1e-6, (h, w)
        got32 = resample_importance(coarse.float(), (h, w), [Placement(0, 0, h, w)] * 2)
        assert (got32.double() - expected).abs().max() <= 1e-6, (h, w)
        if max(h, w) <= 64:
            plain32 = F.interpolate(
                coarse.float(), size=(h, w), mode="bilinear", align_corners=False
            )
            assert (got32 - plain32).abs().max() <= 1e-6, (h, w)


def _fn(model: PlainUSR):
    def fn(b, regions, full):
        return model(b, [Placement(r.top, r.left, *full) for r in regions])

    return fn


def _contract(model: PlainUSR, context: int = DEFAULT_CONTEXT) -> TileContract:
    return TileContract(model.scale, model.min_size, model.alignment, context)


@pytest.mark.parametrize("variant", ["T", "S"])
def test_random_weight_plainusr_tiles_like_the_whole_image(variant):
    torch.manual_seed(0)
    model = PlainUSR(VARIANTS[variant].with_scale(2)).eval().to(DEVICE)
    image = torch.rand(3, 45, 62, device=DEVICE)
    with torch.inference_mode():
        whole = model(image[None])[0].float().cpu()
        # context beyond the image: every tile sees the whole image, placed by Placement
        everything = upscale(image, _fn(model), _contract(model, 120), 24).image
        default = upscale(image, _fn(model), _contract(model), 18).image
    assert (everything - whole).abs().max() < 1e-5
    if variant == "T":  # no LIA: a receptive field far below the default context
        assert (default - whole).abs().max() < 1e-5
    assert (default - whole).abs().max() < 2e-2 * whole.abs().max()


def test_tiny_images_are_padded_for_lia_not_refused():
    torch.manual_seed(0)
    model = PlainUSR(VARIANTS["S"].with_scale(2)).eval()
    for h, w in [(1, 1), (2, 9), (6, 6)]:
        image = torch.rand(3, h, w)
        with torch.inference_mode():
            out = upscale(image, _fn(model), _contract(model), 0).image
            padded = F.pad(image[None], (0, max(0, 7 - w), 0, max(0, 7 - h)), mode="replicate")
            ref = model(padded)[0, :, : 2 * h, : 2 * w]
        assert out.shape == (3, 2 * h, 2 * w) and torch.allclose(out, ref, rtol=0, atol=1e-6)


def test_tiling_does_not_import_the_network():
    code = "import sys, lia_upscale.engine.tiling; sys.exit('lia_upscale.nn' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ---------------------------------------------------------------- official checkpoints


def load_official(name: str) -> PlainUSR:
    """An official deploy checkpoint, strictly loaded (the variant and scale from its name)."""
    path = need(OFFICIAL / name)
    m = re.fullmatch(r"PlainUSR(\w?)_Rep_x(\d)\.pth", name)
    assert m is not None
    model = PlainUSR(VARIANTS[m.group(1) or "base"].with_scale(int(m.group(2))))
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return model.eval().to(DEVICE)


def load_rgb(path, crop: tuple[int, int, int] | None = None) -> torch.Tensor:
    from PIL import Image

    with Image.open(need(path)) as im:
        a = np.asarray(im.convert("RGB"))
    if crop is not None:
        top, left, size = crop
        a = a[top : top + size, left : left + size]
    return torch.from_numpy(a.copy()).permute(2, 0, 1).float().div(255)


def tiled_vs_whole(
    model: PlainUSR, image: torch.Tensor, tile: int, context: int = DEFAULT_CONTEXT
) -> tuple[float, int]:
    """PSNR (dB) and largest pixel difference (of 255) between tiled and whole-image
    output, both clamped and rounded to 8 bits."""
    with torch.inference_mode():
        image = image.to(DEVICE)
        whole = model(image[None])[0].float().cpu()
        tiled = upscale(image, _fn(model), _contract(model, context), tile).image
    to8 = lambda x: x.clamp(0, 1).mul(255).round()
    d = to8(tiled) - to8(whole)
    mse = float(d.pow(2).mean())
    return (math.inf if mse == 0 else 10 * math.log10(255**2 / mse)), int(d.abs().max())


def test_official_base_x4_tiles_within_two_levels():
    model = load_official("PlainUSR_Rep_x4.pth")
    image = load_rgb(BENCHMARK / "Set14" / "x4" / "img_003_SRF_4_LR.png")
    psnr, worst = tiled_vs_whole(model, image, 48)
    assert psnr >= 60 and worst <= 2, (psnr, worst)


# all twelve checkpoints on all of Set14: tests/test_reference.py (shares the whole-image pass)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["PlainUSR_Rep_x4.pth", "PlainUSRL_Rep_x4.pth"])
def test_official_checkpoints_tile_within_two_levels_on_a_photo(name):
    model = load_official(name)
    image = load_rgb(LARGE / "100_7100.JPG", crop=(900, 1200, 396))
    for tile in (64, 128):
        psnr, worst = tiled_vs_whole(model, image, tile)
        assert psnr >= 60 and worst <= 2, (tile, psnr, worst)


@pytest.mark.parametrize("scale", [2, 4])
def test_embedded_photo_models_tile_within_two_levels_on_a_photo(scale):
    from lia_upscale.models import load_model

    model = load_model(f"lia-photo-x{scale}").module.eval().to(DEVICE)
    image = load_rgb(LARGE / "100_7100.JPG", crop=(1100, 1480, 200))
    for tile in (48, 96):
        psnr, worst = tiled_vs_whole(model, image, tile)
        assert psnr >= 60 and worst <= 2, (tile, psnr, worst)


@pytest.mark.slow
def test_memory_stays_bounded_on_a_camera_sized_image():
    """2832x2128 at x4 (96 MP out): peak memory is the float32 output plus one batch.

    With one 608-pixel source per batch the rest (the batch, the fake network's upsampled
    copies, its 2432-pixel output, the blend weights) measures 0.28-0.30x the output's
    1.16 GB with VmHWM (an earlier 0.16 came from ru_maxrss, which a child inherits from its
    parent); it is one batch's worth and does not grow with the image.
    """
    code = """
import torch
torch.set_num_threads(1)
from lia_upscale.engine.tiling import TileContract, upscale
# VmHWM, not ru_maxrss: the latter starts at the parent's high-water mark (pytest's)
peak = lambda: next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
image = torch.rand(3, 2128, 2832)
base = peak()
fn = lambda b, r, full: b.repeat_interleave(4, -2).repeat_interleave(4, -1)
out = upscale(image, fn, TileContract(4, 7, 6, 48), 512, max_batch_pixels=1 << 18).image
assert out.shape == (3, 8512, 11328)
extra = (peak() - base) * 1024
print(extra / (out.numel() * 4) - 1)
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert float(run.stdout) < 0.35, run.stdout
