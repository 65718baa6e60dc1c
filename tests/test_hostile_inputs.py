"""Issue 25, classes 1, 4 and 7 at the one input opener (``lia_upscale.images``): inputs are
opened without blocking and checked on the open descriptor, read only as far as their
header's image can need, and a damaged or unsupported file is named for what it is.

Fast: no torch, no CLI child.
"""

from __future__ import annotations

import io
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from lia_upscale import images
from lia_upscale.errors import ImageError, byte_count


def _png(path: Path, h: int = 48, w: int = 64, **save) -> Path:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path, **save)
    return path


_PEAK = r"""
import sys
from lia_upscale import images
from lia_upscale.errors import ImageError
try:
    images.decode(sys.argv[1])
    print("decoded")
except ImageError as exc:
    print("refused", exc)
# VmHWM, not ru_maxrss: the latter keeps the parent's high-water mark across fork and exec
print(next(int(line.split()[1]) // 1024 for line in open("/proc/self/status") if line.startswith("VmHWM")))
"""


def test_a_sparse_gigabyte_png_holding_64x48_is_refused_unread(tmp_path):
    path = _png(tmp_path / "sparse.png")
    os.truncate(path, 2**30)  # a valid 64x48 PNG and then a gigabyte of (sparse) zeros
    proc = subprocess.run([sys.executable, "-c", _PEAK, str(path)], capture_output=True, text=True, timeout=120)
    verdict, peak_mib = proc.stdout.splitlines()
    assert verdict.startswith("refused") and "64x48" in verdict and "1.00 GiB" in verdict, proc.stdout
    # the interpreter with numpy and Pillow is about 40 MiB; reading the file would be 1024
    assert int(peak_mib) < 200, peak_mib


def test_trailing_bytes_within_what_an_image_may_hold_still_decode(tmp_path):
    path = _png(tmp_path / "a.png")
    expected = images.decode(path).rgb
    with open(path, "ab") as f:
        f.write(b"\0" * 4096)  # trailing junk after IEND, as some tools leave
    assert np.array_equal(images.decode(path).rgb, expected)


@pytest.mark.parametrize("where", ["decode", "header_size"])
def test_an_input_that_is_a_link_to_dev_zero_fails_at_once(tmp_path, where):
    path = tmp_path / "swapped.png"
    path.symlink_to("/dev/zero")
    started = time.monotonic()
    if where == "decode":
        with pytest.raises(ImageError, match="is a character device, not an image file"):
            images.decode(path)
    else:
        assert images.header_size(path) == (0, 0)
    assert time.monotonic() - started < 2


_FIFO = r"""
import sys
from lia_upscale import images
from lia_upscale.errors import ImageError
try:
    images.decode(sys.argv[1])
except ImageError as exc:
    print(exc)
print(images.header_size(sys.argv[1]))
"""


def test_an_input_that_is_a_named_pipe_fails_at_once_without_blocking(tmp_path):
    path = tmp_path / "pipe.png"
    os.mkfifo(path)  # no writer: a blocking open would wait forever
    proc = subprocess.run([sys.executable, "-c", _FIFO, str(path)], capture_output=True, text=True, timeout=60)
    assert proc.stdout.splitlines() == [f"{path}: is a named pipe (FIFO), not an image file", "(0, 0)"], proc.stderr


def test_a_directory_named_like_an_image_is_refused(tmp_path):
    (tmp_path / "d.png").mkdir()
    with pytest.raises(ImageError, match="is a directory, not an image file"):
        images.decode(tmp_path / "d.png")


def test_a_png_with_a_two_megabyte_compressed_xmp_chunk_is_valid(tmp_path):
    info = PngImagePlugin.PngInfo()
    packet = '<x:xmpmeta xmlns:x="adobe:ns:meta/">' + secrets.token_hex(2_100_000) + "</x:xmpmeta>"
    info.add_itxt("XML:com.adobe.xmp", packet, zip=True)
    path = _png(tmp_path / "xmp.png", pnginfo=info)
    assert os.path.getsize(path) > 2_000_000
    picture = images.decode(path)
    assert picture.xmp is not None and picture.xmp.decode() == packet
    assert picture.rgb.shape == (48, 64, 3)


def test_a_truncated_avif_is_named_truncated_not_unsupported():
    if images.missing_support("AVIF"):
        pytest.skip("this Pillow has no AVIF")
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(buf, format="AVIF")
    with pytest.raises(ImageError, match=r"truncated or corrupt AVIF data") as info:
        images.decode(buf.getvalue()[: len(buf.getvalue()) // 2])
    assert "not a PNG" not in str(info.value)


@pytest.mark.parametrize(("dtype", "text"), [(np.float32, "3 x 32-bit floating-point"),
                                             (np.uint32, "3 x 32-bit unsigned integer")])
def test_unsupported_tiff_samples_are_named(dtype, text):
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.zeros((8, 9, 3), dtype), photometric="rgb")
    with pytest.raises(ImageError, match=re.escape(f"unsupported TIFF samples ({text})")):
        images.decode(buf.getvalue())


@given(st.integers(min_value=1, max_value=2**50))
def test_byte_counts_always_show_their_number(n):
    text = byte_count(n)
    number, unit = text.split(" ")
    assert float(number) > 0, text  # never "0.0 GiB"
    scale = {"bytes": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}[unit]
    assert abs(float(number) * scale - n) <= 0.01 * n + 0.5, text


@settings(max_examples=25, deadline=None)
@given(extra=st.integers(min_value=0, max_value=3 * 2**20))
def test_a_file_is_refused_exactly_when_larger_than_its_image_can_hold(tmp_path_factory, extra):
    path = _png(tmp_path_factory.mktemp("lim") / "a.png", h=5, w=6)
    from lia_upscale.images.source import METADATA_ALLOWANCE, file_limit

    limit = file_limit(6, 5)
    size = limit - 2**20 + extra  # around the limit, either side
    os.truncate(path, size)
    if size <= limit:
        assert images.decode(path).rgb.shape == (5, 6, 3)
    else:
        with pytest.raises(ImageError, match="refused unread"):
            images.decode(path)
    assert METADATA_ALLOWANCE < limit


def _rgb_image() -> Image.Image:
    return Image.fromarray(np.random.default_rng(3).integers(0, 256, (6, 7, 3), dtype=np.uint8))


@pytest.mark.parametrize("mode", ["YCbCr", "HSV", "LAB"])
def test_pil_colour_modes_without_a_file_are_read_as_rgb(mode):
    im = _rgb_image().convert(mode)
    picture = images.from_pil(im)
    assert picture is not None and picture.rgb.shape == (6, 7, 3) and picture.kind == "rgb"
    if mode != "LAB":  # Pillow's own conversion back to RGB is the reference
        assert np.array_equal(picture.rgb, np.asarray(im.convert("RGB")))


def test_pil_mode_i_in_16_bit_range_is_16_bit_gray_and_f_is_refused_in_one_line():
    samples = np.arange(42, dtype=np.int32).reshape(6, 7) * 1500
    picture = images.from_pil(Image.fromarray(samples, mode="I"))
    assert picture is not None and picture.bit_depth == 16
    assert np.allclose(picture.rgb[..., 0], samples / 65535.0)
    with pytest.raises(ImageError, match=r"mode I samples from -1 to 40 are outside 0..65535"):
        images.from_pil(Image.fromarray(np.arange(-1, 41, dtype=np.int32).reshape(6, 7), mode="I"))
    with pytest.raises(ImageError, match=r"^<PIL image>: mode F \(32-bit float samples\) has no defined range"):
        images.from_pil(Image.fromarray(np.zeros((6, 7), np.float32), mode="F"))
