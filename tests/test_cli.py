"""The batch upscaler end to end: a messy photo folder, failures, resume, streaming, API."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image, ImageCms

from lia_upscale import images
from lia_upscale.images import output as save_module
from lia_upscale.cli import main

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _pattern(h: int, w: int, channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, channels), dtype=np.uint8)


def _nearest(a: np.ndarray, s: int) -> np.ndarray:
    return np.repeat(np.repeat(a, s, 0), s, 1)


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def messy(tmp_path: Path) -> Path:
    """Every kind of file a photo folder holds, plus broken ones, in a nested tree."""
    root = tmp_path / "in"
    (root / "a").mkdir(parents=True)
    (root / "b" / "deep").mkdir(parents=True)
    Image.fromarray(_pattern(9, 11, 3, 1)).save(root / "rgb.png")
    Image.fromarray(_pattern(8, 10, 4, 2), "RGBA").save(root / "a" / "rgba.png")
    Image.fromarray(_pattern(7, 9, 1, 3)[..., 0], "L").save(root / "a" / "gray.png")
    Image.fromarray(_pattern(10, 7, 2, 4), "LA").save(root / "a" / "gray_alpha.png")
    pal = Image.fromarray(_pattern(6, 8, 1, 5)[..., 0] % 16, "L").convert("P")
    pal.info["transparency"] = 3
    pal.save(root / "a" / "palette.png", transparency=3)
    Image.fromarray(_pattern(12, 12, 3, 6)).convert("CMYK").save(root / "b" / "cmyk.jpg", quality=95)
    Image.fromarray(_pattern(1, 1, 3, 7)).save(root / "b" / "one.png")
    deep = _pattern(5, 6, 3, 8).astype(np.uint16) * 257 + 3  # not representable in 8 bits
    with open(root / "b" / "deep" / "sixteen.png", "wb") as fp:
        images.encode(images.Picture(deep.astype(np.float32) / 65535, None, 16, "rgb", "PNG"), fp, "PNG")
    photo = Image.fromarray(_pattern(12, 20, 3, 9))
    exif = Image.Exif()
    exif[0x0112] = 6
    photo.save(root / "b" / "rotated.jpg", exif=exif.tobytes(), icc_profile=SRGB, quality=95)
    Image.fromarray(_pattern(8, 8, 3, 10)).save(root / "b" / "pic.webp", lossless=True)
    Image.fromarray(_pattern(8, 8, 3, 11)).save(root / "b" / "pic.bmp")
    (root / "zero.png").write_bytes(b"")
    good = io.BytesIO()
    Image.fromarray(_pattern(64, 64, 3, 12)).save(good, "JPEG")
    (root / "truncated.jpg").write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    (root / "notes.png").write_text("this is not an image\n")
    return root


@pytest.fixture(params=[1, 2], ids=["one-lane", "two-lanes"])
def lanes(request, monkeypatch) -> int:
    """Run the batch one image at a time (network on the calling thread) or two at once."""
    from lia_upscale.batch import run as batch

    monkeypatch.setattr(batch, "image_lanes", lambda upscaler, sizes: request.param)
    return request.param


def _run(args: list[str]) -> tuple[int, list[dict], str]:
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result.exit_code, lines, result.stderr


def test_messy_folder(messy: Path, tmp_path: Path, nearest_weights, lanes) -> None:
    before = _digest(messy)
    out = tmp_path / "out"
    code, lines, err = _run([str(messy), str(out), "--weights", str(nearest_weights[4]), "--json"])
    assert code == 1  # three broken files
    status = {Path(d["input"]).name: d for d in lines}
    assert len(lines) == 14
    failed = {n for n, d in status.items() if d["status"] == "failed"}
    assert failed == {"zero.png", "truncated.jpg", "notes.png"}
    for name in failed:
        assert status[name]["error"] and "\n" not in status[name]["error"]
        assert status[name]["error"] in err.replace("\n", "") or status[name]["error"][:20] in err
    assert all(d["status"] == "done" for n, d in status.items() if n not in failed)
    assert _digest(messy) == before  # inputs untouched
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temporary files
    assert not (out / "zero.png").exists() and not (out / "truncated.jpg").exists()

    rgb = np.asarray(Image.open(messy / "rgb.png"))
    assert np.array_equal(np.asarray(Image.open(out / "rgb.png")), _nearest(rgb, 4))
    rgba = Image.open(out / "a" / "rgba.png")
    assert rgba.mode == "RGBA" and rgba.size == (40, 32)
    assert np.array_equal(np.asarray(rgba), _nearest(np.asarray(Image.open(messy / "a" / "rgba.png")), 4))
    assert Image.open(out / "a" / "gray.png").mode == "L"
    la = Image.open(out / "a" / "gray_alpha.png")
    assert la.mode == "LA"
    assert np.array_equal(np.asarray(la), _nearest(np.asarray(Image.open(messy / "a" / "gray_alpha.png")), 4))
    pal_out = Image.open(out / "a" / "palette.png")
    assert pal_out.mode == "RGBA"
    pal_in = np.asarray(Image.open(messy / "a" / "palette.png").convert("RGBA"))
    assert np.array_equal(np.asarray(pal_out), _nearest(pal_in, 4))
    assert Image.open(out / "b" / "cmyk.jpg").mode == "RGB"
    assert Image.open(out / "b" / "one.png").size == (4, 4)
    deep = images.decode(out / "b" / "deep" / "sixteen.png")
    src = images.decode(messy / "b" / "deep" / "sixteen.png")
    assert deep.bit_depth == 16
    assert np.array_equal(np.round(deep.rgb * 65535), _nearest(np.round(src.rgb * 65535), 4))
    rot = Image.open(out / "b" / "rotated.jpg")
    assert rot.size == (48, 80)  # 20x12 rotated by the EXIF orientation, then x4
    assert rot.getexif().get(0x0112, 1) == 1
    assert rot.info["icc_profile"] == SRGB
    assert (out / "b" / "pic.webp").exists() and (out / "b" / "pic.bmp").exists()


def test_rerun_skips_and_overwrite_replaces(messy: Path, tmp_path: Path, nearest_weights) -> None:
    out = tmp_path / "out"
    w = str(nearest_weights[2])
    _run([str(messy / "a"), str(out), "--weights", w, "--json"])
    first = (out / "rgba.png").stat().st_mtime_ns
    code, lines, _ = _run([str(messy / "a"), str(out), "--weights", w, "--json"])
    assert code == 0 and {d["status"] for d in lines} == {"skipped"}
    assert (out / "rgba.png").stat().st_mtime_ns == first
    code, lines, _ = _run([str(messy / "a"), str(out), "--weights", w, "--json", "--overwrite"])
    assert code == 0 and {d["status"] for d in lines} == {"done"}
    assert Image.open(out / "rgba.png").size == (20, 16)


def test_output_inside_input_is_not_walked(tmp_path: Path, nearest_weights) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    for i in range(2):
        Image.fromarray(_pattern(8, 8, 3, i)).save(root / f"p{i}.png")
    args = [str(root), str(root / "up"), "--weights", str(nearest_weights[2]), "--json"]
    code, lines, _ = _run(args)
    assert code == 0 and len(lines) == 2
    code, lines, _ = _run(args + ["--overwrite"])
    assert code == 0 and len(lines) == 2  # up/*.png were not read back as inputs


def test_formats_quality_outscale_and_glob(tmp_path: Path, nearest_weights) -> None:
    root = tmp_path / "in"
    root.mkdir()
    Image.fromarray(_pattern(10, 7, 3, 1)).save(root / "x.png")
    Image.fromarray(_pattern(10, 7, 3, 2)).save(root / "y.jpg")
    out = tmp_path / "out"
    code, lines, _ = _run([str(root / "*.png"), str(out), "--weights", str(nearest_weights[4]),
                           "--format", "jpg", "--quality", "80", "--outscale", "3", "--json"])
    assert code == 0 and len(lines) == 1
    im = Image.open(out / "x.jpg")
    assert im.format == "JPEG" and im.size == (21, 30)


def test_usage_errors_exit_2(tmp_path: Path, nearest_weights) -> None:
    code, _, err = _run([str(tmp_path / "missing"), str(tmp_path / "o"), "--weights", str(nearest_weights[4])])
    assert code == 2 and "not found" in err
    Image.fromarray(_pattern(8, 8, 3)).save(tmp_path / "a.png")
    code, _, err = _run([str(tmp_path / "a.png"), str(tmp_path / "o"), "--weights", str(nearest_weights[4]),
                         "--scale", "2"])
    assert code == 2 and "x4" in err
    code, _, err = _run([str(tmp_path / "a.png"), str(tmp_path / "o"), "--weights", str(tmp_path / "a.png")])
    assert code == 2


def test_stdin_to_stdout(tmp_path: Path, nearest_weights) -> None:
    buf = io.BytesIO()
    src = _pattern(6, 5, 3, 3)
    Image.fromarray(src).save(buf, "PNG")
    result = CliRunner().invoke(main, ["-", "-", "--weights", str(nearest_weights[2])], input=buf.getvalue())
    assert result.exit_code == 0
    out = Image.open(io.BytesIO(result.stdout_bytes))
    assert out.format == "PNG"
    assert np.array_equal(np.asarray(out), _nearest(src, 2))


def test_failed_write_leaves_nothing(tmp_path: Path, nearest_weights, monkeypatch, lanes) -> None:
    root = tmp_path / "in"
    root.mkdir()
    for i in range(3):
        Image.fromarray(_pattern(8, 8, 3, i)).save(root / f"p{i}.png")
    real = save_module.StagedFile  # what a PNG is written through, band by band

    class FullDisk(real):
        def __init__(self, path):
            super().__init__(path)
            if self.path.name == "p1.png":  # p1's write hits a full disk halfway, inside the real file
                raw = self.fp

                class Full:
                    def __getattr__(self, name):
                        return getattr(raw, name)

                    def write(self, data):
                        raw.write(b"partial")
                        raise OSError(28, "No space left on device")

                self.fp = Full()

    monkeypatch.setattr(save_module, "StagedFile", FullDisk)
    out = tmp_path / "out"
    code, lines, _ = _run([str(root), str(out), "--weights", str(nearest_weights[2]), "--json"])
    assert code == 1
    assert [d["status"] for d in lines] == ["done", "failed", "done"]
    assert "No space left" in lines[1]["error"]
    assert sorted(p.name for p in out.iterdir()) == ["p0.png", "p2.png"]


def test_python_api(tmp_path: Path, nearest_weights) -> None:
    from lia_upscale import Upscaler, load_model

    up = Upscaler(weights=nearest_weights[4])
    assert up.scale == 4
    src = _pattern(5, 9, 4, 1)
    big = up.upscale(Image.fromarray(src, "RGBA"))
    assert big.mode == "RGBA" and np.array_equal(np.asarray(big), _nearest(src, 4))
    gray = up.upscale(Image.fromarray(src[..., 0], "L"))
    assert gray.mode == "L" and gray.size == (36, 20)
    Image.fromarray(src[..., :3]).save(tmp_path / "a.png")
    up.upscale_file(tmp_path / "a.png", tmp_path / "b.webp")
    assert Image.open(tmp_path / "b.webp").size == (36, 20)
    model = load_model(nearest_weights[2])
    assert model.scale == 2 and model.variant == "U"
    x = torch.rand(1, 3, 9, 7)
    with torch.no_grad():  # the loaded module is the nearest-neighbour network it was saved as
        assert torch.allclose(model.module(x), x.repeat_interleave(2, 2).repeat_interleave(2, 3), atol=1e-6)


@pytest.mark.parametrize("threads", ["1", "2"])  # one thread: one lane; two: two images at once
def test_sigint_leaves_no_partial_file_and_rerun_completes(tmp_path: Path, nearest_weights, threads: str) -> None:
    root = tmp_path / "in"
    root.mkdir()
    for i in range(6):
        Image.fromarray(_pattern(300, 300, 3, i)).save(root / f"p{i}.png")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "lia_upscale", str(root), str(out), "--weights", str(nearest_weights[4]),
           "--json", "--tile", "64"]
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=threads)
    # unbuffered: a buffered readline could swallow a second line that communicate() never sees
    # SIGINT at its default in the child: a background test run has it ignored, inherited
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, bufsize=0,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    first = proc.stdout.readline()  # the first file is finished: interrupt during the next
    assert json.loads(first)["status"] == "done"
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()
    done = [json.loads(line) for line in [first, *rest.splitlines()] if line.strip()]
    assert 1 <= len(done) < 6
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]
    finished = sorted(p.name for p in out.iterdir())
    assert finished == sorted(Path(d["output"]).name for d in done if d["status"] == "done")
    for name in finished:  # every file under its final name is complete
        assert Image.open(out / name).size == (1200, 1200)
    rerun = subprocess.run(cmd, capture_output=True, env=env, timeout=300)
    assert rerun.returncode == 0
    statuses = [json.loads(line) for line in rerun.stdout.splitlines()]
    assert sorted(Path(d["input"]).name for d in statuses if d["status"] == "done") == sorted(
        f"p{i}.png" for i in range(6) if f"p{i}.png" not in finished)
    assert sum(d["status"] == "skipped" for d in statuses) == len(finished)


def test_orphaned_temporaries_of_an_interrupted_batch_are_found(tmp_path: Path) -> None:
    """A Ctrl-C between a temporary file's creation and its hand-over orphans it; the batch's
    interrupt path removes this process's uncommitted ones for its own targets only."""
    from lia_upscale.files import StagedFile, discard_temporaries_for

    mine, other = StagedFile(tmp_path / "a.png"), StagedFile(tmp_path / "b.png")
    mine.fp.write(b"half")
    other.fp.write(b"whole")
    discard_temporaries_for([tmp_path / "a.png"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [other._tmp.name]
    other.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.png"] and (tmp_path / "b.png").read_bytes() == b"whole"
    discard_temporaries_for([tmp_path / "b.png"])  # committed: nothing of it is left to remove
    assert (tmp_path / "b.png").exists()


def test_models_command_lists_registry() -> None:
    result = CliRunner().invoke(main, ["models"])
    assert result.exit_code == 0
    for name in ("lia-u-x4", "plainusr-l-x4", "plainusr-base-x2"):
        assert name in result.stdout


def test_two_images_at_once_only_where_two_fit_the_memory_budget(monkeypatch) -> None:
    import torch

    from lia_upscale import Upscaler
    from lia_upscale.batch import image_lanes

    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    x2, x4 = Upscaler(model="lia-u-x2", device="cpu"), Upscaler(model="lia-u-x4", device="cpu")
    photo = (2128, 2832)
    assert image_lanes(x2, [photo] * 4) == 2  # 2 x 0.93 GiB estimated
    assert image_lanes(x4, [photo] * 4) == 1  # 2 x 1.85 GiB would not fit 2 GiB
    assert image_lanes(x2, [(1000, 1000)] * 4) == 2
    assert image_lanes(x2, [(1000, 1000), (6048, 8064)]) == 1  # the largest image decides
    assert image_lanes(x2, [photo]) == 1  # nothing to overlap
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert image_lanes(x2, [photo] * 4) == 1
