"""The one pipeline: every door refuses before the network runs, stays in the budget, keeps a
file that appeared meanwhile, and shares an engine safely; the API's type and value errors."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from lia_upscale import LiaError, Upscaler, images
from lia_upscale.batch import BatchEvents, plan_jobs, run_jobs
from lia_upscale.cli import main
from lia_upscale.engine import Engine
from lia_upscale.errors import ImageError, OutputError, byte_count
from lia_upscale.errors import OutputExistsError
from lia_upscale.pipeline import OutputSpec, ToPil, plan_image, process, read, read_stream
from lia_upscale.pipeline.sources import HEAD_BYTES, STREAM_SLACK
from lia_upscale.raybatch.worker import FileUpscaler

SMALL = "lia-u-x4"


def _image(h: int, w: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    channels = {"RGB": 3, "RGBA": 4}[mode]
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, channels), dtype=np.uint8), mode)


@pytest.fixture(scope="module")
def small() -> Upscaler:
    return Upscaler(model=SMALL, device="cpu")


@pytest.fixture()
def no_network(monkeypatch):
    """The network must not run: a refusal comes before it."""

    def refuse(*args, **kwargs):
        raise AssertionError("the network ran")

    monkeypatch.setattr(Engine, "run", refuse)
    monkeypatch.setattr(Engine, "run_into", refuse)


@pytest.fixture()
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "in" / "a.png"
    path.parent.mkdir()
    _image(48, 64).save(path)
    return path


def _cli(*args: str, **kw):
    return CliRunner().invoke(main, [*args, "--quiet"], catch_exceptions=False, **kw)


# refuse before working, at every door ------------------------------------------------------

# the CLI takes --outscale up to 64 (a usage error above it); the API takes any finite factor
@pytest.mark.parametrize(("extra", "why"), [
    (("--outscale", "64", "--max-memory", "64M"), "over the memory budget of 64.0 MiB"),
    (("--outscale", "64", "--tta", "--max-memory", "64M"), "over the memory budget of 64.0 MiB"),
])
def test_cli_file_and_batch_refuse_before_the_network(photo: Path, tmp_path: Path, no_network, extra, why) -> None:
    for dst in (tmp_path / "out.png", tmp_path / "out"):  # one file, a folder batch
        src = photo if dst.suffix else photo.parent
        result = _cli(str(src), str(dst), "--model", SMALL, *extra)
        assert result.exit_code == 1, result.output
        lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and why in lines[0], result.stderr
        assert not dst.exists() or not any(dst.iterdir())


def test_stream_door_refuses_before_the_network(photo: Path, no_network) -> None:
    result = _cli("-", "-", "--model", SMALL, "--outscale", "64", "--max-memory", "64M", input=photo.read_bytes())
    assert result.exit_code == 1
    assert "over the memory budget of 64.0 MiB" in result.stderr and result.stdout_bytes == b""


def test_api_doors_refuse_before_the_network(photo: Path, tmp_path: Path, no_network) -> None:
    up = Upscaler(model=SMALL, device="cpu", max_memory=64 << 20)
    with pytest.raises(LiaError, match="over the memory budget of 64.0 MiB"):
        up.upscale(_image(48, 64), outscale=100)
    with pytest.raises(LiaError, match="over the memory budget of 64.0 MiB"):
        up.upscale_file(photo, tmp_path / "o.jpg", outscale=100)
    with pytest.raises(LiaError, match="WEBP cannot hold 16640x12480"):
        Upscaler(model=SMALL, device="cpu").upscale_file(photo, tmp_path / "o.webp", outscale=260)
    with pytest.raises(LiaError, match=r"\(64000x48000\) needs about"):
        Upscaler(model=SMALL, device="cpu").upscale(_image(48, 64), outscale=1000)
    assert not list(tmp_path.glob("o.*"))


def test_ray_worker_door_refuses_before_the_network(photo: Path, tmp_path: Path, no_network) -> None:
    worker = FileUpscaler({"model": SMALL, "device": "cpu", "max_memory": 64 << 20}, 1, OutputSpec(outscale=100))
    row = worker.one(str(photo), str(tmp_path / "o.png"), "PNG")
    assert row["status"] == "failed" and "over the memory budget of 64.0 MiB" in row["error"]
    assert not (tmp_path / "o.png").exists()


def test_outscale_and_tta_are_counted_in_the_plan(small: Upscaler) -> None:
    picture = read(small, _image(60, 80))
    plain = plan_image(small, picture, OutputSpec(fmt="png"), streamable=True)
    outscaled = plan_image(small, picture, OutputSpec(fmt="png", outscale=4), streamable=True)
    assert plain.streamed and not plain.whole_float and outscaled.whole_float
    assert outscaled.need > plain.need  # the whole float image, its resample and its encoding
    tta = Upscaler(model=SMALL, device="cpu", tta=True)
    assert plan_image(tta, picture, OutputSpec(fmt="png"), streamable=True).need > plain.need
    # a budget between the two: the plain plan fits, the outscaled one is refused
    between = (plain.need + outscaled.need) // 2
    assert plan_image(small, picture, OutputSpec(fmt="png"), streamable=True, budget=between).refusal is None
    assert plan_image(small, picture, OutputSpec(fmt="png", outscale=4), streamable=True, budget=between).refusal


def test_a_tight_budget_shrinks_the_whole_float_tiles_and_keeps_the_pixels(small: Upscaler) -> None:
    image = _image(600, 160, seed=3)  # tall: smaller tiles mean fewer rows per network call
    picture = read(small, image)
    roomy = plan_image(small, picture, OutputSpec(outscale=3), to_pil=True)
    tight = plan_image(small, picture, OutputSpec(outscale=3), to_pil=True, budget=roomy.need - 1)
    assert not roomy.shrunk and tight.refusal is None and tight.shrunk and tight.need < roomy.need
    calls: list[int | None] = []
    run = small.engine.run

    def spy(rgb, on_tile=None, *, tile=None, batch_pixels=None):
        calls.append(tile)
        return run(rgb, on_tile, tile=tile, batch_pixels=batch_pixels)

    small.engine.run = spy  # type: ignore[method-assign]
    try:
        got = np.asarray(process(small, image, ToPil(), OutputSpec(outscale=3), budget=roomy.need - 1)).astype(int)
    finally:
        del small.engine.run
    want = np.asarray(small.upscale(image, outscale=3)).astype(int)
    assert calls == [tight.tile] and tight.tile < roomy.tile
    assert got.shape == want.shape == (1800, 480, 3)
    assert np.abs(got - want).max() <= 1  # tiles are seam-exact; only float rounding may differ


def test_a_twelve_megapixel_photo_fits_two_gigabytes_by_taking_fewer_tiles_per_call() -> None:
    """The least need comes down with the tiles per network call as well as the tile: a 12-MP
    x4 JPEG with the default photo model fits 2 GiB (it did not when only the tile shrank)."""
    up = Upscaler(scale=4, device="cpu")
    memory, size = up.engine.memory, (3024, 4032)
    jpeg = images.held_bytes(images.Layout(gray=False, alpha=False, bits=8), "JPEG")  # kept until encoded
    found = memory.tiling_for(size, jpeg, 2 << 30)
    assert found is not None and found.batch_pixels is not None
    assert memory.working_bytes(size, jpeg, tile=found.tile, batch_pixels=found.batch_pixels) <= 2 << 30
    assert memory.working_bytes(size, jpeg, tile=found.tile) > 2 << 30  # the engine's batch would not fit


_IN_PLACE = """
import io, sys
import numpy as np
from PIL import Image
from lia_upscale import images
from lia_upscale.images.encoder import encode_samples

fmt, h, w, bits = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
buf = io.BytesIO()
Image.new("RGB", (4, 4)).save(buf, "PNG")
picture = images.decode(buf.getvalue())
layout = images.Layout(gray=False, alpha=False, bits=bits)
store = images.SampleStore(h, w, layout, images.sample_channels(layout, fmt))
store.samples[..., 0] = (np.arange(w) * 255 // w).astype(np.uint8)  # every page touched; smooth: a small file
store.samples[..., 1] = 128
# VmHWM, not ru_maxrss: the latter starts at the parent's high-water mark (pytest's, with torch
# and every test before), which hid any growth below it
peak = lambda: next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
before = peak()
data = bytes(encode_samples(store.samples, layout, fmt, picture, quality=90))
grown = peak() - before
plain = bytes(encode_samples(np.ascontiguousarray(store.samples[..., :3]), layout, fmt, picture, quality=90))
print(store.samples.shape[2], grown * 1024, len(data), data == plain, images.held_bytes(layout, fmt))
"""


@pytest.mark.parametrize(("fmt", "channels"), [("JPEG", 4), ("WEBP", 3)])
def test_what_an_encoder_holds_is_counted(fmt: str, channels: int) -> None:
    """An output's held bytes (images.held_bytes, what plans count) cover its samples and what
    encoding a 24-MP image adds to the process's peak: for JPEG, nothing of the kind (8-bit
    RGB is kept as RGBX, which Pillow's JPEG encoder reads where it lies: its own copy would
    be 96 MB); for WEBP, Pillow's copy and libwebp's own pictures. The file's bytes are those
    of plain RGB samples."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _IN_PLACE, fmt, "4000", "6000", "8"], capture_output=True, text=True,
                         check=True)
    kept, grown, size, same, held = out.stdout.split()
    pixels = 4000 * 6000
    assert int(kept) == channels and same == "True"
    assert int(grown) <= (float(held) - channels) * pixels + 2 * int(size) + (8 << 20), (grown, held)
    if fmt == "JPEG":
        assert int(grown) < pixels, grown  # under a quarter of Pillow's copy


def test_a_bmp_file_is_counted_until_it_is_written() -> None:
    """BMP is not compressed: its file (a byte a sample) is built in memory beside the samples
    and Pillow's copy until it is written, so what an output holds (images.held_bytes, what
    plans count) includes it: 72 MB for 24 MP."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _IN_PLACE, "BMP", "4000", "6000", "8"], capture_output=True, text=True,
                         check=True)
    kept, grown, size, same, held = out.stdout.split()
    pixels = 4000 * 6000
    assert int(kept) == 3 and same == "True" and int(size) >= 3 * pixels
    assert int(grown) <= (float(held) - int(kept)) * pixels + (8 << 20), (grown, held)


@pytest.mark.parametrize(("fmt", "bits"), [("AVIF", 8), ("HEIF", 8), ("HEIF", 16)])
def test_what_avif_and_heif_encoders_hold_is_counted(fmt: str, bits: int) -> None:
    """libavif and libheif (with x265) hold YUV planes and frame buffers of their own while
    they write: 19 to 50 bytes a pixel beside the samples for these layouts, far over the 4
    once counted (a 12-MP photo at x4 to an 8-bit HEIC held 2.9 GB over --max-memory's plan).
    images.held_bytes counts them; 6 MP here, 32 MB for the codecs' fixed start-up."""
    import subprocess
    import sys

    if images.missing_support(fmt):
        pytest.skip(images.missing_support(fmt))
    out = subprocess.run([sys.executable, "-c", _IN_PLACE, fmt, "2000", "3000", str(bits)], capture_output=True,
                         text=True, check=True)
    kept, grown, size, same, held = out.stdout.split()
    own = int(kept) * bits // 8
    assert same == "True"
    assert int(grown) <= (float(held) - own) * 2000 * 3000 + (32 << 20), (grown, held)


def test_a_whole_sixteen_bit_png_counts_its_big_endian_copy() -> None:
    """A PNG written whole (to a stream, or after --outscale) holds its samples, the file, and
    for 16 bits the big-endian copy the writer makes (144 MB at 24 MP), which a plan counts;
    the row filter's scratch stays small (blocks of 256 KiB of rows)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _IN_PLACE, "PNG", "4000", "6000", "16"], capture_output=True,
                         text=True, check=True)
    kept, grown, size, same, held = out.stdout.split()
    pixels, own = 4000 * 6000, 6
    assert same == "True" and int(grown) > pixels * own  # the copy is there
    assert int(grown) <= (float(held) - own) * pixels + (16 << 20), (grown, held)


def test_two_lanes_share_the_budget(tmp_path: Path, small: Upscaler, monkeypatch) -> None:
    """--max-memory is the whole batch's: with two lanes each plans within half of it."""
    from lia_upscale.batch import run as batch

    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):
        _image(60, 80, seed=i).save(src / f"{i}.png")
    least = small.engine.memory.least_bytes((60, 80), 0.0)  # a PNG is written band by band
    up = Upscaler(model=SMALL, device="cpu", max_memory=least * 3 // 2)  # one fits, two do not
    budgets: list[int | None] = []
    read_one = batch.read
    monkeypatch.setattr(batch, "read", lambda *a, **kw: budgets.append(kw.get("budget")) or read_one(*a, **kw))
    outcomes = run_jobs(plan_jobs([str(src)], str(tmp_path / "out")), up, lanes=2)
    assert budgets == [least * 3 // 4] * 2
    assert [o.status for o in outcomes] == ["failed", "failed"]  # half the budget holds neither
    assert all("over the memory budget" in o.error for o in outcomes)
    outcomes = run_jobs(plan_jobs([str(src)], str(tmp_path / "out")), up, lanes=1)
    assert [o.status for o in outcomes] == ["done", "done"]


# the API's type and value errors -----------------------------------------------------------

@pytest.mark.parametrize("mode", ["F", "I", "YCbCr", "HSV", "LAB"])
def test_api_refuses_modes_without_a_picture(small: Upscaler, mode: str) -> None:
    with pytest.raises(ValueError, match=f"PIL mode '{mode}' is not supported: convert"):
        small.upscale(Image.new(mode, (8, 8)))


@pytest.mark.parametrize(("value", "error"), [(-1, ValueError), (0, ValueError), (float("nan"), ValueError),
                                              (float("inf"), ValueError), ("2", TypeError), (True, TypeError)])
def test_api_refuses_bad_outscale(small: Upscaler, value, error) -> None:
    with pytest.raises(error, match="outscale must be"):
        small.upscale(Image.new("RGB", (8, 8)), outscale=value)


def test_api_refuses_what_is_not_an_image(small: Upscaler, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="expected a PIL.Image.Image, not ndarray"):
        small.upscale(np.zeros((8, 8, 3), np.uint8))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cannot write an image to int"):
        process(small, Image.new("RGB", (8, 8)), 3, OutputSpec())
    with pytest.raises(ValueError, match="quality must be from 1 to 100"):
        OutputSpec(quality=0)


# reads bounded by what the image needs ------------------------------------------------------

class _Counting(io.RawIOBase):
    """A stream of ``head`` then endless filler, counting what is read."""

    def __init__(self, head: bytes) -> None:
        self.head, self.given = head, 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = 1 << 20 if n < 0 else n
        chunk = (self.head[self.given:self.given + n] or b"") + b"\0" * max(0, n - max(0, len(self.head) - self.given))
        self.given += len(chunk)
        return chunk


def test_stdin_is_read_no_further_than_the_image_needs() -> None:
    buf = io.BytesIO()
    _image(48, 64).save(buf, "PNG")
    stream = _Counting(buf.getvalue())
    cap = 8 * 48 * 64 + STREAM_SLACK
    with pytest.raises(ImageError, match=f"more than {cap >> 20} MiB of data for a 64x48 image"):
        read_stream(stream)
    assert cap < stream.given <= cap + (1 << 20)
    headless = _Counting(b"")
    with pytest.raises(ImageError, match=f"no image header in the first {HEAD_BYTES >> 20} MiB"):
        read_stream(headless)
    assert headless.given == HEAD_BYTES
    assert read_stream(io.BytesIO(buf.getvalue())) == buf.getvalue()  # a whole image, as it is


def test_stdin_door_caps_its_read(tmp_path: Path) -> None:
    buf = io.BytesIO()
    _image(48, 64).save(buf, "PNG")
    data = buf.getvalue() + b"\0" * (STREAM_SLACK + (1 << 20))
    result = _cli("-", str(tmp_path / "o.png"), "--model", SMALL, input=data)
    assert result.exit_code == 1 and "more than 16 MiB of data for a 64x48 image" in result.stderr
    assert not (tmp_path / "o.png").exists()


def test_byte_counts_show_their_numbers() -> None:
    assert [byte_count(n) for n in (1000, 64 << 20, 3 << 30, 5 << 10)] == ["1000 bytes", "64.0 MiB", "3.00 GiB",
                                                                          "5.00 KiB"]


# "skipped" holds at the moment of the write -------------------------------------------------

@pytest.mark.parametrize("fmt", ["png", "jpg"])  # written band by band, encoded whole
@pytest.mark.parametrize("lanes", [1, 2])
def test_a_file_that_appears_while_the_network_runs_is_kept(tmp_path: Path, small: Upscaler, fmt: str,
                                                           lanes: int) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):
        _image(30, 40, seed=i).save(src / f"{i}.png")
    out = tmp_path / "out"
    jobs = plan_jobs([str(src)], str(out), OutputSpec(fmt=fmt))

    def appear(done: int, total: int) -> None:  # another program writes the outputs meanwhile
        out.mkdir(exist_ok=True)
        for job in jobs:
            if not job.dst.exists():
                job.dst.write_bytes(b"theirs")

    outcomes = run_jobs(jobs, small, spec=OutputSpec(fmt=fmt), events=BatchEvents(on_tile=appear), lanes=lanes)
    assert [o.status for o in outcomes] == ["skipped", "skipped"]
    assert all("appeared while the image was made" in o.error for o in outcomes)
    assert all(job.dst.read_bytes() == b"theirs" for job in jobs)
    assert sorted(p.name for p in out.iterdir()) == sorted(job.dst.name for job in jobs)  # no temporaries
    outcomes = run_jobs(jobs, small, spec=OutputSpec(fmt=fmt, overwrite=True), events=BatchEvents(on_tile=appear),
                        lanes=lanes)
    assert [o.status for o in outcomes] == ["done", "done"]
    assert all(job.dst.read_bytes() != b"theirs" for job in jobs)


def test_api_keeps_a_file_that_appeared_unless_told(photo: Path, tmp_path: Path, small: Upscaler) -> None:
    dst = tmp_path / "o.jpg"

    def appear(done: int, total: int) -> None:
        dst.write_bytes(b"theirs")

    with pytest.raises(OutputExistsError, match="appeared while the image was made"):
        small.upscale_file(photo, dst, overwrite=False, on_tile=appear)
    assert dst.read_bytes() == b"theirs"
    small.upscale_file(photo, dst, on_tile=appear)  # the API replaces by default, as before
    assert Image.open(dst).size == (256, 192)


@pytest.mark.parametrize("fmt", ["png", "jpg"])  # written band by band, encoded whole
def test_an_output_whose_folder_is_a_file_fails_at_every_door(photo: Path, tmp_path: Path, small: Upscaler,
                                                              fmt: str) -> None:
    """A file where the output's folder should be is a failure, not "skipped": nothing appeared
    at the destination (it cannot exist), so the job fails with a clear line and exit 1."""
    blocker = tmp_path / "f"
    blocker.write_bytes(b"theirs")
    dst = blocker / f"o.{fmt}"
    result = _cli(str(photo), str(dst), "--model", SMALL)
    assert result.exit_code == 1, result.output
    assert f"cannot write {dst}: Not a directory" in result.stderr
    with pytest.raises(OutputError, match="Not a directory") as caught:
        small.upscale_file(photo, dst)
    assert not isinstance(caught.value, OutputExistsError)
    worker = FileUpscaler({"model": SMALL, "device": "cpu"}, 1, OutputSpec())
    row = worker.one(str(photo), str(dst), fmt.upper())
    assert row["status"] == "failed" and "Not a directory" in row["error"], row
    assert blocker.read_bytes() == b"theirs" and sorted(p.name for p in tmp_path.iterdir()) == ["f", "in"]


# the engine shared by lanes -------------------------------------------------------------------

def test_two_threads_share_an_engine(small: Upscaler) -> None:
    images = [np.random.default_rng(i).random((40 + 6 * i, 52, 3), dtype=np.float32) for i in range(2)]
    want = [small.engine.run(x, tile=24) for x in images]
    errors: list[BaseException] = []

    def lane(i: int) -> None:
        try:
            for _ in range(6):
                assert torch.equal(small.engine.run(images[i], tile=24), want[i])
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=lane, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_an_out_of_memory_shrink_in_one_lane_is_kept_safely(monkeypatch) -> None:
    """Two lanes shrink the shared engine's tile at once: the smaller of what they settled
    on is kept (never a larger one written over it), and both images come out whole."""
    from lia_upscale.engine.grid import source_shape

    up = Upscaler(model=SMALL, device="cpu", tile=64)
    engine = up.engine
    forward = engine._forward

    def source(tile: int) -> int:
        _, _, h, w = source_shape(200, 200, tile, engine.contract)
        return h * w

    limits = {"a": source(32), "b": source(16)}  # one tile's source a call may take, per lane
    gate = threading.Barrier(2)

    def tight(batch, regions, full):
        lane = threading.current_thread().name
        if batch.shape[0] * batch.shape[2] * batch.shape[3] > limits[lane]:
            raise torch.OutOfMemoryError("out of memory (test)")
        return forward(batch, regions, full)

    monkeypatch.setattr(engine, "_forward", tight)
    images = {name: np.random.default_rng(i).random((200, 200, 3), dtype=np.float32) for i, name in enumerate(limits)}
    got: dict[str, torch.Tensor] = {}

    def lane() -> None:
        name = threading.current_thread().name
        gate.wait()
        got[name] = engine.run(images[name])

    threads = [threading.Thread(target=lane, name=name) for name in limits]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(got) == set(limits) and all(v.shape == (3, 800, 800) for v in got.values())
    assert engine.tile == 16  # lane b's, whichever lane finished last
    monkeypatch.undo()
    for name, image in images.items():
        assert torch.allclose(got[name], engine.run(image, tile=64), atol=1e-4)


def test_upscale_file_never_replaces_its_own_input(tmp_path: Path) -> None:
    """The API door refuses a destination that is its source (same path, a symlink to it, or a
    hard link to it) before reading, and the input keeps its bytes (found by the second
    hostile campaign: the CLI refused this, the API replaced the input)."""
    src = tmp_path / "a.png"
    Image.fromarray(np.arange(16 * 12 * 3, dtype=np.uint8).reshape(12, 16, 3)).save(src)
    before = src.read_bytes()
    (tmp_path / "link.png").symlink_to(src)
    os.link(src, tmp_path / "hard.png")
    up = Upscaler(model="lia-u-x2", device="cpu")
    for dst in (src, tmp_path / "link.png", tmp_path / "hard.png", tmp_path / "." / "a.png"):
        with pytest.raises(OutputError, match="would overwrite its input"):
            up.upscale_file(src, dst)
        assert src.read_bytes() == before
    assert up.upscale_file(src, tmp_path / "b.png").exists()  # another name is written


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"tile": "16"}, TypeError, "tile must be an int, not str"),
    ({"tile": True}, TypeError, "tile must be an int, not bool"),
    ({"max_memory": -5}, ValueError, "max_memory must be at least 1, not -5"),
    ({"device": 7}, TypeError, "device must be a string"),
    ({"on_warning": 5}, TypeError, "on_warning must be callable, not int"),
])
def test_upscaler_arguments_of_the_wrong_type_or_range_are_one_clear_error(kwargs, error, message) -> None:
    """Found by the second campaign: these ran (a negative budget, a str tile) or raised an
    AttributeError from deep inside."""
    with pytest.raises(error, match=message):
        Upscaler(model="lia-u-x2", **kwargs)
    assert Upscaler(model="lia-u-x2", tile=np.int64(32), max_memory=1 << 30).engine is not None


def test_a_truncated_file_opened_lazily_by_pil_is_an_image_error_naming_it(tmp_path: Path) -> None:
    """Image.open defers decoding: the truncation surfaces in upscale(), named, as an
    ImageError (found by the second campaign: PIL's bare OSError)."""
    path = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:2000])
    with Image.open(path) as im, pytest.raises(ImageError, match=r"cut\.png: truncated or corrupt"):
        Upscaler(model="lia-u-x2", device="cpu").upscale(im)
