"""Band-by-band output: the assembler's contract, streamed PNG/TIFF files, bounded memory,
preflight checks, the memory budget and the PIL path without a file round trip."""

from __future__ import annotations

import io
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lia_upscale import images
from lia_upscale.engine.assembly import FullImage
from lia_upscale.engine.tiling import TileContract, upscale, upscale_into
from lia_upscale.images.rows import Layout, PngStream, SampleStore, quantize
from lia_upscale.images.tiff import TiffStream
from lia_upscale.errors import byte_count
from lia_upscale.pipeline import read


def smooth_fn(scale: int):
    """A fake network: nearest upscaling of the tile plus a placement-independent ripple."""

    def fn(batch, regions, full):
        y = batch.repeat_interleave(scale, -2).repeat_interleave(scale, -1).float()
        return y * 0.9 + 0.05

    return fn


class Recorder:
    """A sink that checks the order of puts and dones and keeps every pixel once."""

    def __init__(self, c: int, h: int, w: int) -> None:
        self.image = torch.full((c, h, w), float("nan"))
        self.rows_done = 0
        self.dones: list[int] = []

    def put(self, top, left, block):
        assert top >= self.rows_done, "a put reached rows already done"
        region = self.image[:, top : top + block.shape[1], left : left + block.shape[2]]
        assert bool(torch.isnan(region).all()), "a pixel was put twice"
        region.copy_(block)

    def done(self, rows):
        assert rows > self.rows_done
        assert not bool(torch.isnan(self.image[:, :rows]).any()), "rows said done before all their pixels came"
        self.rows_done = rows
        self.dones.append(rows)

    def restart(self):
        self.image.fill_(float("nan"))
        self.rows_done = 0


@pytest.mark.parametrize("size,tile", [((97, 131), 24), ((100, 200), 36), ((200, 40), 30), ((50, 50), 0)])
def test_assembler_puts_each_pixel_once_in_row_order_and_equals_the_full_image(size, tile):
    c = TileContract(scale=3, min_size=7, alignment=6, context=12)
    image = torch.rand(3, *size)
    rec = Recorder(3, size[0] * 3, size[1] * 3)
    upscale_into(image, smooth_fn(3), c, tile, rec)
    assert rec.dones[-1] == size[0] * 3 and rec.dones == sorted(rec.dones)
    full = upscale(image, smooth_fn(3), c, tile).image
    assert torch.equal(rec.image, full)
    if tile:
        assert len(rec.dones) > 1  # rows finish while later grid rows are still to come


def test_small_images_are_padded_and_cropped_through_the_sink():
    c = TileContract(scale=2, min_size=16, alignment=6, context=12)
    image = torch.rand(3, 5, 9)
    rec = Recorder(3, 10, 18)
    upscale_into(image, smooth_fn(2), c, 0, rec)
    assert rec.dones[-1] == 10 and not bool(torch.isnan(rec.image).any())


def _float_picture(h, w, *, gray=False, alpha=False, bits=8, seed=0):
    rng = np.random.default_rng(seed)
    rgb = rng.random((h, w, 3), dtype=np.float32)
    if gray:
        rgb = np.repeat(rgb[..., :1], 3, axis=2)
    a = rng.random((h, w), dtype=np.float32) if alpha else None
    kind = ("gray_alpha" if alpha else "gray") if gray else ("rgba" if alpha else "rgb")
    return images.Picture(rgb=rgb, alpha=a, bit_depth=bits, kind=kind, format="PNG", icc=None)


def _stream_through(fmt, picture, fp, band_rows):
    """Write ``picture`` through a streamed writer in bands of ``band_rows``, split in two columns."""
    layout = images.output_layout(picture, fmt)
    alpha = None
    if layout.alpha:
        alpha = quantize(picture.alpha, layout.bits)
    sink = images.encoder.stream_writer(fp, fmt, layout, picture, picture.width, picture.height, alpha=alpha)
    half = picture.width // 2
    for top in range(0, picture.height, band_rows):
        rows = picture.rgb[top : top + band_rows]
        sink.put(top, 0, rows[:, :half])
        sink.put(top, half, rows[:, half:])
        sink.done(min(picture.height, top + band_rows))
    sink.close()


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
@pytest.mark.parametrize("gray,alpha,bits", [(False, False, 8), (True, False, 8), (False, True, 8),
                                             (False, False, 16), (True, True, 16), (False, True, 16)])
def test_streamed_files_hold_exactly_the_in_memory_encoders_pixels(tmp_path, fmt, gray, alpha, bits):
    picture = _float_picture(61, 47, gray=gray, alpha=alpha, bits=bits)
    whole = images.decode(bytes(images.encoder.encode_bytes(picture, fmt)))
    path = tmp_path / f"s.{fmt.lower()}"
    with open(path, "w+b") as fp:
        _stream_through(fmt, picture, fp, band_rows=13)
    streamed = images.decode(path)
    if fmt == "PNG":  # one writer: the same bytes, however the rows came
        assert path.read_bytes() == bytes(images.encoder.encode_bytes(picture, fmt))
    assert streamed.kind == whole.kind and streamed.bit_depth == whole.bit_depth
    assert np.array_equal(streamed.rgb, whole.rgb)
    assert (streamed.alpha is None) == (whole.alpha is None)
    if whole.alpha is not None:
        assert np.array_equal(streamed.alpha, whole.alpha)


def test_a_streamed_tiff_keeps_exif_and_icc(tmp_path):
    src = Image.new("RGB", (20, 12), (10, 200, 30))
    exif = Image.Exif()
    exif[0x010F] = "Maker"
    exif.get_ifd(0x8769)[0x9003] = "2024:01:02 03:04:05"
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buf = io.BytesIO()
    src.save(buf, "PNG", exif=exif, icc_profile=icc)
    picture = images.decode(buf.getvalue())
    with open(tmp_path / "m.tiff", "w+b") as fp:
        _stream_through("TIFF", picture, fp, band_rows=5)
    with Image.open(tmp_path / "m.tiff") as im:
        assert im.info.get("icc_profile") == icc
        got = im.getexif()
        assert got[0x010F] == "Maker"
        assert got.get_ifd(0x8769)[0x9003] == "2024:01:02 03:04:05"


def test_a_restart_writes_the_file_from_the_beginning(tmp_path):
    picture = _float_picture(30, 20)
    layout = images.output_layout(picture, "PNG")
    path = tmp_path / "r.png"
    with open(path, "w+b") as fp:
        sink = PngStream(fp, 20, 30, layout)
        sink.put(0, 0, np.zeros((10, 20, 3), np.float32))
        sink.done(10)
        sink.restart()
        sink.put(0, 0, picture.rgb)
        sink.done(30)
        sink.close()
    assert np.array_equal(images.decode(path).rgb, images.decode(bytes(images.encoder.encode_bytes(picture, "PNG"))).rgb)


@pytest.mark.parametrize("writer", [PngStream, TiffStream])
def test_streamed_writers_memory_does_not_grow_with_the_height(tmp_path, writer):
    width, band = 600, 64
    layout = Layout(gray=False, alpha=False, bits=8)
    block = np.random.default_rng(0).random((band, width, 3), dtype=np.float32)
    peaks = []
    for height in (band * 16, band * 128):  # both past the 1 MiB IDAT buffer
        tracemalloc.start()
        with open(tmp_path / "t.bin", "w+b") as fp:
            sink = writer(fp, width, height, layout)
            for top in range(0, height, band):
                sink.put(top, 0, block)
                sink.done(top + band)
            sink.close()
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    # 8x the rows, the same peak (a few bands), not 8x the image
    assert peaks[1] < 1.15 * peaks[0], peaks
    assert peaks[1] < 0.15 * (band * 128 * width * 3 * 4)


def test_a_streamed_png_reuses_two_band_buffers_for_the_whole_image(tmp_path, monkeypatch):
    """Bands live in memory maps of their own (tracemalloc cannot see them): a PNG of 40
    bands maps two and recycles them, whatever the height."""
    from lia_upscale.images import rows

    made = []
    real = rows._mapped
    monkeypatch.setattr(rows, "_mapped", lambda shape, dtype: made.append(shape) or real(shape, dtype))
    picture = _float_picture(40 * 7, 33)
    with open(tmp_path / "t.png", "w+b") as fp:
        _stream_through("PNG", picture, fp, band_rows=7)
    assert len(made) == 2, made
    assert (tmp_path / "t.png").read_bytes() == bytes(images.encoder.encode_bytes(picture, "PNG"))


def test_sample_store_quantises_like_the_encoder():
    picture = _float_picture(9, 11, alpha=True, bits=16)
    layout = images.output_layout(picture, "PNG")
    store = SampleStore(9, 11, layout)
    store.put(0, 0, picture.rgb[:, :5])
    store.put(0, 5, picture.rgb[:, 5:])
    quantize(picture.alpha, 16, store.samples[..., -1])
    data = bytes(images.encoder.encode_samples(store.samples, layout, "PNG", picture))
    assert data == bytes(images.encoder.encode_bytes(picture, "PNG"))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "PIL"])
def test_rgbx_samples_are_never_read_as_alpha(fmt):
    """A store kept as RGBX (the JPEG layout, padding 0) gives every consumer its RGB: the
    file RGB samples give, and a PIL image of mode RGB (the padding read as alpha would be a
    fully transparent image)."""
    picture = _float_picture(9, 11)
    layout = images.output_layout(picture, "JPEG")
    store = SampleStore(9, 11, layout, images.sample_channels(layout, "JPEG"))
    store.put(0, 0, picture.rgb)
    rgb = np.ascontiguousarray(store.samples[..., :3])
    assert store.samples.shape[2] == 4 and not store.samples[..., 3].any()
    if fmt == "PIL":
        im = images.to_pil(store.samples, layout, picture)
        assert im.mode == "RGB" and np.array_equal(np.asarray(im), rgb)
    else:
        encode = images.encoder.encode_samples
        assert bytes(encode(store.samples, layout, fmt, picture)) == bytes(encode(rgb, layout, fmt, picture))


@pytest.mark.parametrize("bits", [8, 16])
def test_samples_made_on_the_device_equal_the_hosts_quantisation(bits, monkeypatch):
    """Engine-side quantisation (all threads, or the GPU) is numpy's, bit for bit: halves
    round to even, out-of-range values clip, NaN becomes 0, across step boundaries."""
    from lia_upscale.engine import samples

    monkeypatch.setattr(samples, "_STEP_ELEMENTS", 3 * 7 * 5)  # 5 rows a step: 23 rows = 5 steps
    top = 65535 if bits == 16 else 255
    rng = np.random.default_rng(bits)
    block = torch.from_numpy(rng.uniform(-0.2, 1.2, (3, 23, 7)).astype(np.float32))
    block[0, :4, 0] = torch.tensor([(k + 0.5) / top for k in (0, 1, 2, 3)])  # exact halves
    block[1, 3, 3], block[2, 9, 1], block[0, 22, 6] = float("nan"), float("inf"), -float("inf")
    got = samples.to_samples(block, bits).numpy()
    want = quantize(block.permute(1, 2, 0).numpy(), bits)
    assert got.dtype == want.dtype and np.array_equal(got, want)


def test_the_finiteness_check_is_exact_where_a_sum_overflows():
    from lia_upscale.engine.samples import check_finite
    from lia_upscale.errors import LiaError

    check_finite(torch.full((3, 4, 4), 3e38))  # finite, though its float32 sum is infinite
    for bad in (float("nan"), float("inf"), -float("inf")):
        block = torch.zeros(3, 4, 4)
        block[1, 2, 3] = bad
        with pytest.raises(LiaError, match="not finite"):
            check_finite(block)


class _Log:
    """An array sink that logs what reaches it, in order."""

    def __init__(self, bits: int | None) -> None:
        self.sample_bits, self.events = bits, []

    def put(self, top, left, block):
        self.events.append(("put", top, left, block.copy()))

    def put_samples(self, top, left, samples):
        self.events.append(("samples", top, left, samples.copy()))

    def done(self, rows):
        self.events.append(("done", rows))

    def restart(self):
        self.events.append(("restart",))


@pytest.mark.parametrize("pinned_max", [1 << 20, 100])
@pytest.mark.parametrize("bits", [None, 8])
def test_deferred_copies_land_in_order_before_their_rows_are_done(bits, pinned_max, monkeypatch):
    """The CUDA path (queued copies, handed over a tile later; blocks over the pinned limit
    synchronously) gives the sink exactly what the immediate path gives, and every block
    of a band before that band's done()."""
    from lia_upscale.engine import samples
    from lia_upscale.engine.samples import HostSink

    monkeypatch.setattr(samples, "_PINNED_MAX_BYTES", pinned_max)

    rng = np.random.default_rng(1)
    blocks = [(0, 0), (0, 5), (0, 9), (4, 0), (4, 5), (4, 9)]
    data = {pos: torch.from_numpy(rng.uniform(0, 1, (3, 4, 5)).astype(np.float32)) for pos in blocks}
    logs = []
    for deferred in (False, True):
        log, host = _Log(bits), HostSink(_Log(bits), deferred=deferred)
        host.sink = log
        for top, left in blocks:
            host.put(top, left, data[(top, left)])
            if left == 9:
                host.done(top + 4)
        logs.append(log.events)
    immediate, deferred_events = logs
    assert [e[:3] for e in immediate] == [e[:3] for e in deferred_events]
    assert all(np.array_equal(a[3], b[3]) for a, b in zip(immediate, deferred_events) if len(a) > 3)
    assert deferred_events[3] == ("done", 4) and deferred_events[-1] == ("done", 8)


def test_deferred_copies_refuse_non_finite_blocks_when_they_land():
    from lia_upscale.engine.samples import HostSink
    from lia_upscale.errors import LiaError

    log = _Log(8)
    host = HostSink(log, deferred=True)
    bad = torch.zeros(3, 2, 2)
    bad[0, 1, 1] = float("nan")
    host.put(0, 0, bad)
    with pytest.raises(LiaError, match="not finite"):
        host.done(2)
    assert log.events == []


@pytest.mark.parametrize("layout", [Layout(False, False, 8), Layout(False, True, 16)])
def test_ready_samples_land_where_floats_would(layout, tmp_path):
    picture = _float_picture(19, 23, alpha=layout.alpha, bits=layout.bits)
    by_float, by_samples = SampleStore(19, 23, layout), SampleStore(19, 23, layout)
    for left in (0, 9):
        part = picture.rgb[:, left : left + 9] if left == 0 else picture.rgb[:, left:]
        by_float.put(0, left, part)
        by_samples.put_samples(0, left, quantize(part, layout.bits))
    assert by_float.sample_bits == layout.bits
    assert np.array_equal(by_float.samples, by_samples.samples)
    assert SampleStore(2, 2, Layout(True, False, 8)).sample_bits is None  # gray: luma from floats


# ---- through the doors: API and CLI --------------------------------------------------------


@pytest.fixture(scope="module")
def u2():
    from lia_upscale import Upscaler

    return Upscaler(model="lia-u-x2", device="cpu", tile=48)


def _pil_cases():
    rng = np.random.default_rng(3)
    rgb = Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8))
    rgba = Image.fromarray(rng.integers(0, 256, (37, 53, 4), dtype=np.uint8), "RGBA")
    gray = rgb.convert("L")
    pal = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.info["transparency"] = 3
    g16 = Image.fromarray(rng.integers(0, 65536, (37, 53), dtype=np.uint16))
    return {"RGB": rgb, "RGBA": rgba, "L": gray, "P+tRNS": pal, "I;16": g16}


@pytest.mark.parametrize("name", list(_pil_cases()))
def test_pil_path_equals_the_cli_output_without_a_png_round_trip(u2, tmp_path, name, monkeypatch):
    image = _pil_cases()[name]
    image.save(tmp_path / "in.png")
    proc = subprocess.run([sys.executable, "-m", "lia_upscale", str(tmp_path / "in.png"), str(tmp_path / "out"),
                           "--model", "lia-u-x2", "--tile", "48", "--device", "cpu", "--quiet"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    # no encoder or decoder runs on the way: fail loudly if one is called
    monkeypatch.setattr(images, "decode", lambda *a, **k: pytest.fail("decode called"))
    monkeypatch.setattr(images, "encode", lambda *a, **k: pytest.fail("encode called"))
    got = u2.upscale(image)
    with Image.open(tmp_path / "out" / "in.png") as cli:
        assert got.mode == cli.mode and got.size == cli.size
        assert np.array_equal(np.asarray(got), np.asarray(cli))


def test_pil_path_equals_the_float_output_quantised_on_the_host(u2):
    """The samples quantised inside the engine equal the float result quantised by numpy."""
    image = _pil_cases()["RGB"]
    want = quantize(u2.engine.run(np.asarray(image)).permute(1, 2, 0).numpy(), 8)
    assert np.array_equal(np.asarray(u2.upscale(image)), want)


def test_output_too_large_for_the_format_fails_before_the_network(tmp_path):
    Image.new("RGB", (8200, 4), (9, 9, 9)).save(tmp_path / "wide.png")
    Image.new("RGB", (8, 8), (9, 9, 9)).save(tmp_path / "ok.png")
    proc = subprocess.run([sys.executable, "-m", "lia_upscale", str(tmp_path / "wide.png"), str(tmp_path / "ok.png"),
                           str(tmp_path / "out"), "--format", "webp", "--model", "lia-u-x4", "--quiet", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "WEBP cannot hold 32800x16 (at most 16383 pixels a side)" in proc.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ok.webp"]


def test_an_image_over_the_memory_budget_fails_alone_naming_the_numbers(tmp_path):
    Image.new("RGB", (300, 200), (9, 9, 9)).save(tmp_path / "big.png")
    proc = subprocess.run([sys.executable, "-m", "lia_upscale", str(tmp_path / "big.png"), str(tmp_path / "out"),
                           "--model", "lia-u-x4", "--max-memory", "20M", "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    line = [ln for ln in proc.stderr.splitlines() if "big.png" in ln]
    assert len(line) == 1 and "300x200 at x4 (1200x800) needs about" in line[0]
    assert "over the memory budget of 20.0 MiB (--max-memory)" in line[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    bad = subprocess.run([sys.executable, "-m", "lia_upscale", str(tmp_path / "big.png"), str(tmp_path / "o2"),
                          "--max-memory", "lots"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "'lots' is not a size" in bad.stderr


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that names its size and holds no pixels: decoding it fails as truncated."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


def test_an_image_that_cannot_fit_is_refused_from_its_header_before_decoding(tmp_path):
    """A 9000x9000 photo would take about a gigabyte to decode before the budget refused it:
    the header's size is checked first (the header-only file would otherwise fail as truncated)."""
    from lia_upscale import Upscaler
    from lia_upscale.errors import ImageError, LiaError

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "huge.png").write_bytes(_png_header_only(9000, 9000))
    Image.new("RGB", (8, 8), (9, 9, 9)).save(tmp_path / "in" / "ok.png")
    proc = subprocess.run([sys.executable, "-m", "lia_upscale", str(tmp_path / "in"), str(tmp_path / "out"),
                           "--model", "lia-u-x4", "--max-memory", "200M", "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    (line,) = [ln for ln in proc.stderr.splitlines() if "huge.png" in ln]
    assert "9000x9000 at x4 (36000x36000) needs about" in line and "(--max-memory)" in line
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ok.png"]
    # the bytes door (object stores, stdin) too; a budget that holds it reaches the decoder
    up = Upscaler(model="lia-u-x4", device="cpu", max_memory=200 << 20)
    with pytest.raises(LiaError, match="needs about .* over the memory budget of 200.0 MiB"):
        read(up, _png_header_only(9000, 9000))
    up.max_memory = 1 << 50
    with pytest.raises(ImageError, match="<bytes>"):
        read(up, _png_header_only(200, 100))


def test_the_header_check_refuses_only_what_no_tile_fits(tmp_path):
    """Tiny tiles batch many overlapping sources into one call, so the least memory is not at
    the smallest tile: a 500x500 PNG fits a budget below what the 16-px tile needs. Through
    the CLI it is written at exactly its least need, and refused one byte below it (from the
    header, with the least need in the message); a bytearray is a source like bytes."""
    from lia_upscale import Upscaler

    up = Upscaler(model="lia-u-x4", device="cpu")
    size = (500, 500)
    least = up.engine.memory.least_bytes(size, 0.0)  # PNG is written band by band: nothing kept
    assert up.engine.memory.working_bytes(size, 0.0, tile=up.engine.contract.min_tile) > least  # the case that matters
    (tmp_path / "in").mkdir()
    Image.new("RGB", size, (90, 120, 150)).save(tmp_path / "in" / "a.png")

    def cli(budget: int) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "lia_upscale", str(tmp_path / "in"), str(tmp_path / f"out{budget}"),
                               "--model", "lia-u-x4", "--max-memory", str(budget), "--quiet"],
                              capture_output=True, text=True, timeout=600)

    fits = cli(least)
    assert fits.returncode == 0, fits.stderr
    assert Image.open(tmp_path / f"out{least}" / "a.png").size == (2000, 2000)
    refused = cli(least - 1)
    assert refused.returncode == 1
    assert f"needs about {byte_count(least)} at the least" in refused.stderr
    assert not list((tmp_path / f"out{least - 1}").glob("*.png"))
    data = (tmp_path / "in" / "a.png").read_bytes()
    up.max_memory = least
    assert read(up, bytearray(data)).width == read(up, memoryview(data)).width == 500


def test_wider_networks_get_cpu_tiles_of_the_same_feature_map_area():
    from lia_upscale.engine import DEFAULT_CPU_TILE, DEFAULT_TILE, default_tile

    cpu = torch.device("cpu")
    assert default_tile(cpu, 19) == default_tile(cpu, 35) == DEFAULT_CPU_TILE  # U, S
    reference = 35 * DEFAULT_CPU_TILE**2
    for channels in (51, 67, 131):  # M, base, L
        tile = default_tile(cpu, channels)
        assert tile % 6 == 0 and tile < DEFAULT_CPU_TILE
        assert 0.97 * reference <= channels * tile**2 <= reference  # the largest such multiple of 6
        assert channels * (tile + 6) ** 2 > reference
    assert default_tile(torch.device("cuda"), 67) == DEFAULT_TILE


def test_a_narrowed_default_tile_still_runs_a_one_tile_image_whole():
    """base (67 channels) tiles at 744 by default, but an image of at most 1032^2 pixels runs
    as one tile as it would for S; a tile given by the user is kept as given."""
    from lia_upscale.engine import DEFAULT_CPU_TILE, Engine
    from lia_upscale.nn import VARIANTS, PlainUSR

    module = PlainUSR(VARIANTS["base"].with_scale(2)).eval()
    engine = Engine(module, torch.device("cpu"), torch.float32)
    assert engine.tile == 744
    assert engine.tile_for_size((864, 1152)) == 0  # 1 MP: whole
    assert engine.tile_for_size((DEFAULT_CPU_TILE + 6, DEFAULT_CPU_TILE)) == 744
    assert engine.memory.tile_for(((864, 1152)), 0.0, 1 << 40) == 1152
    assert Engine(module, torch.device("cpu"), torch.float32, tile=744).tile_for_size((864, 1152)) == 744


def test_the_budget_shrinks_tiles_before_it_refuses():
    from lia_upscale import Upscaler

    engine = Upscaler(model="lia-u-x2", device="cpu").engine  # the default tile
    size = (1500, 1000)
    roomy = engine.memory.working_bytes(size, 4)
    tile = engine.memory.tile_for(size, 4, roomy)
    assert tile == engine.tile
    smaller = engine.memory.tile_for(size, 4, int(roomy * 0.8))
    assert smaller is not None and smaller < engine.tile
    assert engine.memory.working_bytes(size, 4, tile=smaller) <= roomy * 0.8
    assert engine.memory.tile_for(size, 4, 1 << 20) is None


def test_sizing_a_tile_never_lists_the_tiles(monkeypatch):
    """A budget search on a 20000x20000 image steps down to the smallest tile, where the
    plan would have 1.6 million tiles: the estimate reads the grid's shape
    (grid.source_shape), which is the listed plan's rows, columns and source shape."""
    from lia_upscale.engine import Engine, grid
    from lia_upscale.nn import VARIANTS, PlainUSR

    engine = Engine(PlainUSR(VARIANTS["S"].with_scale(4)).eval(), torch.device("cpu"), torch.float32)
    for size in ((300, 200), (1000, 700), (2999, 1031)):
        for tile in (16, 60, 150, 500):
            plan = grid.plan_tiles(*size, tile, engine.contract)
            (shape,) = {(t.source.height, t.source.width) for t in plan}
            assert grid.source_shape(*size, tile, engine.contract) == (plan[-1].row + 1, plan[-1].col + 1, *shape)

    def listed(*_):
        raise AssertionError("working_bytes listed the tiles")

    monkeypatch.setattr(grid, "plan_tiles", listed)
    monkeypatch.setattr("lia_upscale.engine.tiling.plan_tiles", listed)
    huge = (20000, 20000)
    floor = engine.memory.least_bytes(huge, 0)  # the whole search, down to the smallest tile
    assert floor < engine.memory.working_bytes(huge, 0, tile=engine.contract.min_tile)  # one tile a call is less
    assert engine.memory.tile_for(huge, 0, floor) is not None
    assert engine.memory.tile_for(huge, 0, floor - 1) is None


def test_a_tile_below_the_smallest_is_raised_to_it_and_a_negative_one_refused():
    from lia_upscale.engine import Engine
    from lia_upscale.nn import VARIANTS, PlainUSR

    module = PlainUSR(VARIANTS["S"].with_scale(2)).eval()
    cpu = torch.device("cpu")
    assert Engine(module, cpu, torch.float32, tile=1).tile == Engine(module, cpu, torch.float32).contract.min_tile
    assert Engine(module, cpu, torch.float32, tile=0).tile == 0
    assert Engine(module, cpu, torch.float32, tile=100).tile == 100
    with pytest.raises(ValueError, match="tile"):
        Engine(module, cpu, torch.float32, tile=-1)


def test_max_pixels_raises_and_lowers_the_input_limit(tmp_path):
    Image.new("RGB", (40, 30)).save(tmp_path / "a.png")
    low = subprocess.run([sys.executable, "-m", "lia_upscale", str(tmp_path / "a.png"), str(tmp_path / "out"),
                          "--model", "lia-u-x2", "--max-pixels", "1000", "--quiet"], capture_output=True, text=True,
                         timeout=300)
    assert low.returncode == 1 and "1,200 pixels, over the limit of 1,000" in low.stderr
    # a header of 12,000 x 9,000 (108 MP, over the default limit) probes once the limit is raised
    from lia_upscale.images import decoder

    head = io.BytesIO()
    Image.new("L", (1, 1)).save(head, "PNG")
    data = bytearray(head.getvalue())
    data[16:24] = (12000).to_bytes(4, "big") + (9000).to_bytes(4, "big")
    import zlib

    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    (tmp_path / "huge.png").write_bytes(bytes(data))
    before = decoder.max_pixels()
    try:
        with pytest.raises(images.ImageError if hasattr(images, "ImageError") else Exception, match="over the limit"):
            images.probe(tmp_path / "huge.png")
        images.set_max_pixels(120_000_000)
        assert images.probe(tmp_path / "huge.png") == (12000, 9000)
    finally:
        images.set_max_pixels(before)
