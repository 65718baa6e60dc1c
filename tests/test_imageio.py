"""Decode/encode round trips for every file kind a photo folder holds, built on the fly."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms, ImageFile, ImageOps

from lia_upscale import images
from lia_upscale.errors import ImageError, OutputError
from lia_upscale.images import Picture, decode, decoder, encode, format_for_suffix, probe

RNG = np.random.default_rng(1234)
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


# ----------------------------------------------------------------- builders


def _save(im: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def _pattern(h: int, w: int, channels: int, dtype: type = np.uint8) -> np.ndarray:
    """Random samples; for uint16 every low byte is odd, so 8-bit truncation shows."""
    if dtype is np.uint16:
        return (RNG.integers(0, 32768, (h, w, channels)) * 2 + 1).astype(np.uint16)
    return RNG.integers(0, 256, (h, w, channels), dtype=np.uint8)


def _chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _png16(arr: np.ndarray, *, interlace: bool = False, extra: bytes = b"") -> bytes:
    """A 16-bit PNG written independently of the module (filter 0, optional Adam7)."""
    h, w, c = arr.shape
    ctype = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    raw = b""
    for x0, y0, dx, dy in passes:
        sub = arr[y0::dy, x0::dx]
        for row in sub:
            if row.size:
                raw += b"\0" + row.astype(">u2").tobytes()
    ihdr = struct.pack(">IIBBBBB", w, h, 16, ctype, 0, 0, int(interlace))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + extra
        + _chunk(b"IDAT", zlib.compress(raw))
        + _chunk(b"IEND", b"")
    )


def _lzw(data: bytes) -> bytes:
    """TIFF LZW that only emits literals (Clear every 200 codes keeps codes 9 bits wide)."""
    codes: list[int] = []
    for i in range(0, len(data), 200):
        codes.append(256)
        codes.extend(data[i : i + 200])
    codes.append(257)
    out, acc, nbits = bytearray(), 0, 0
    for code in codes:
        acc, nbits = (acc << 9) | code, nbits + 9
        while nbits >= 8:
            nbits -= 8
            out.append((acc >> nbits) & 0xFF)
        acc &= (1 << nbits) - 1
    if nbits:
        out.append((acc << (8 - nbits)) & 0xFF)
    return bytes(out)


def _tiff_lzw(arr: np.ndarray) -> bytes:
    """A little-endian one-strip LZW TIFF of (H, W, 3) uint8 or uint16 RGB samples."""
    h, w, c = arr.shape
    bits = arr.dtype.itemsize * 8
    strip = _lzw(arr.astype("<u2" if bits == 16 else np.uint8).tobytes())
    n = 10
    ifd_at = 8
    extra_at = ifd_at + 2 + n * 12 + 4
    strip_at = extra_at + 6
    entries = [
        (256, 4, 1, w),
        (257, 4, 1, h),
        (258, 3, 3, extra_at),
        (259, 3, 1, 5),
        (262, 3, 1, 2),
        (273, 4, 1, strip_at),
        (277, 3, 1, c),
        (278, 4, 1, h),
        (279, 4, 1, len(strip)),
        (284, 3, 1, 1),
    ]
    out = b"II*\0" + struct.pack("<I", ifd_at) + struct.pack("<H", n)
    for tag, typ, count, value in entries:
        packed = struct.pack("<H", value) + b"\0\0" if typ == 3 and count == 1 else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, typ, count) + packed
    return out + b"\0\0\0\0" + struct.pack("<HHH", bits, bits, bits) + strip


def _exif(orientation: int | None = None, **ifd0: str) -> Image.Exif:
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    names = {"make": 0x010F, "model": 0x0110, "artist": 0x013B}
    for key, value in ifd0.items():
        exif[names[key]] = value
    return exif


def _q(x: np.ndarray, bits: int) -> np.ndarray:
    return np.rint(x * (65535 if bits == 16 else 255)).astype(np.int64)


def _roundtrip(picture: Picture, fmt: str, **kw: object) -> Picture:
    buf = io.BytesIO()
    encode(picture, buf, fmt, **kw)
    return decode(buf.getvalue())


def _samples16(pic: Picture, channels: int) -> np.ndarray:
    """The picture back as (H, W, channels) 16-bit samples (gray from the first channel)."""
    planes = [pic.rgb[..., :1] if channels < 3 else pic.rgb]
    if channels in (2, 4):
        planes.append(pic.alpha[..., None])
    return _q(np.concatenate(planes, axis=2), 16)


def _one_line_error(exc: pytest.ExceptionInfo[ImageError], *words: str) -> None:
    message = str(exc.value)
    assert "\n" not in message and message
    for word in words:
        assert word in message.lower(), message


# ----------------------------------------------------------------- 8-bit modes


@pytest.mark.parametrize(
    ("mode", "fmt", "kind"),
    [
        ("L", "PNG", "gray"),
        ("LA", "PNG", "gray_alpha"),
        ("RGB", "PNG", "rgb"),
        ("RGBA", "PNG", "rgba"),
        ("L", "TIFF", "gray"),
        ("LA", "TIFF", "gray_alpha"),
        ("RGB", "TIFF", "rgb"),
        ("RGBA", "TIFF", "rgba"),
        ("L", "BMP", "gray"),
        ("RGB", "BMP", "rgb"),
        ("RGBA", "WEBP", "rgba"),
    ],
)
def test_lossless_8bit_roundtrip(mode: str, fmt: str, kind: str) -> None:
    arr = _pattern(9, 13, len(mode))
    im = Image.fromarray(arr[..., 0] if mode == "L" else arr)
    assert im.mode == mode
    params = {"lossless": True} if fmt == "WEBP" else {}
    pic = decode(_save(im, fmt, **params))
    assert (pic.kind, pic.bit_depth, pic.format, pic.size) == (kind, 8, fmt, (13, 9))
    assert pic.rgb.dtype == np.float32 and pic.rgb.shape == (9, 13, 3)
    assert np.array_equal(_q(pic.rgb[..., 0], 8), arr[..., 0])
    if mode in ("L", "LA"):
        assert np.array_equal(pic.rgb[..., 0], pic.rgb[..., 2])
    else:
        assert np.array_equal(_q(pic.rgb, 8), arr[..., :3])
    if "A" in mode:
        assert np.array_equal(_q(pic.alpha, 8), arr[..., -1])
    else:
        assert pic.alpha is None
    if fmt == "WEBP":
        return  # encode writes lossy WEBP: checked in test_lossy_outputs
    again = _roundtrip(pic, fmt)
    assert (again.kind, again.bit_depth, again.size) == (kind, 8, (13, 9))
    assert np.array_equal(again.rgb, pic.rgb)
    assert (again.alpha is None) == (pic.alpha is None)
    if pic.alpha is not None:
        assert np.array_equal(again.alpha, pic.alpha)


def test_written_modes_match_input_kind() -> None:
    la = Image.fromarray(_pattern(6, 5, 2))
    pic = decode(_save(la, "PNG"))
    for fmt, mode in [("PNG", "LA"), ("JPEG", "L"), ("WEBP", "RGBA"), ("BMP", "L")]:
        buf = io.BytesIO()
        encode(pic, buf, fmt)
        assert Image.open(buf).mode == mode, fmt
    rgba = decode(_save(Image.fromarray(_pattern(6, 5, 4)), "PNG"))
    for fmt, mode in [("PNG", "RGBA"), ("JPEG", "RGB"), ("WEBP", "RGBA"), ("BMP", "RGB")]:
        buf = io.BytesIO()
        encode(rgba, buf, fmt)
        assert Image.open(buf).mode == mode, fmt


def test_lossy_outputs() -> None:
    smooth = np.linspace(0, 1, 32 * 24 * 3, dtype=np.float32).reshape(24, 32, 3)
    pic = Picture(rgb=smooth, alpha=None, bit_depth=8, kind="rgb", format="PNG")
    for fmt in ("JPEG", "WEBP"):
        out = _roundtrip(pic, fmt)
        assert (out.kind, out.size, out.format) == ("rgb", (32, 24), fmt)
        assert np.abs(out.rgb - smooth).max() < 6 / 255
        small = io.BytesIO()
        encode(pic, small, fmt, quality=10)
        big = io.BytesIO()
        encode(pic, big, fmt)
        assert len(small.getvalue()) < len(big.getvalue())


def test_one_by_one_every_format() -> None:
    pic = Picture(
        rgb=np.array([[[0.2, 0.4, 0.6]]], dtype=np.float32),
        alpha=np.array([[0.5]], dtype=np.float32),
        bit_depth=8,
        kind="rgba",
        format="PNG",
    )
    for fmt in images.FORMATS:
        if images.missing_support(fmt):  # HEIF without the heif extra: tests/test_formats_heif.py
            continue
        out = _roundtrip(pic, fmt)
        assert out.size == (1, 1), fmt
        assert (out.alpha is not None) == (fmt in ("PNG", "WEBP", "TIFF", "HEIF", "AVIF")), fmt
        if fmt in ("PNG", "TIFF", "BMP"):
            assert np.array_equal(_q(out.rgb, 8), _q(pic.rgb, 8)), fmt
    assert decode(_save(Image.new("L", (1, 1), 7), "PNG")).size == (1, 1)


# ----------------------------------------------------------------- 16-bit


@pytest.mark.parametrize(("channels", "kind"), [(1, "gray"), (2, "gray_alpha"), (3, "rgb"), (4, "rgba")])
def test_png16_exact(channels: int, kind: str) -> None:
    arr = _pattern(7, 11, channels, np.uint16)
    pic = decode(_png16(arr))
    assert (pic.kind, pic.bit_depth, pic.size) == (kind, 16, (11, 7))
    assert np.array_equal(_samples16(pic, channels), arr)
    assert np.array_equal(pic.rgb[..., 0], pic.rgb[..., 2]) == (channels < 3)
    for fmt in ("PNG", "TIFF"):
        again = _roundtrip(pic, fmt)
        assert (again.kind, again.bit_depth) == (kind, 16), fmt
        assert again.size == (11, 7), fmt
        assert np.array_equal(again.rgb, pic.rgb), fmt
        if channels in (2, 4):
            assert np.array_equal(again.alpha, pic.alpha), fmt
    for fmt in ("JPEG", "WEBP", "BMP"):
        assert _roundtrip(pic, fmt).bit_depth == 8, fmt


def test_png16_written_is_read_by_pillow() -> None:
    """The module's own 16-bit PNG writer, checked by an independent decoder."""
    gray = _pattern(9, 10, 1, np.uint16)
    buf = io.BytesIO()
    encode(decode(_png16(gray)), buf, "PNG")
    assert np.array_equal(np.asarray(Image.open(buf)), gray[..., 0])
    rgb = _pattern(9, 10, 3, np.uint16)
    buf = io.BytesIO()
    encode(decode(_png16(rgb)), buf, "PNG")
    assert np.array_equal(np.asarray(Image.open(buf).convert("RGB")), (rgb >> 8).astype(np.uint8))


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_png16_interlaced(channels: int) -> None:
    arr = _pattern(13, 17, channels, np.uint16)
    assert np.array_equal(_samples16(decode(_png16(arr, interlace=True)), channels), arr)


def test_png16_transparency_key() -> None:
    arr = _pattern(13, 17, 3, np.uint16)
    arr[2, 3] = (1, 2, 3)
    keyed = decode(_png16(arr, extra=_chunk(b"tRNS", struct.pack(">HHH", 1, 2, 3))))
    assert keyed.kind == "rgba" and keyed.bit_depth == 16
    assert keyed.alpha[2, 3] == 0 and keyed.alpha.sum() == arr.shape[0] * arr.shape[1] - 1


def test_pillow_truncates_16bit_rgb_png() -> None:
    """Documents why the module does not trust Pillow here; fails once Pillow is fixed."""
    arr = _pattern(4, 5, 3, np.uint16)
    im = Image.open(io.BytesIO(_png16(arr)))
    assert im.mode == "RGB" and np.asarray(im).dtype == np.uint8


@pytest.mark.parametrize(
    ("channels", "kind", "planar"),
    [(1, "gray", "contig"), (3, "rgb", "contig"), (4, "rgba", "contig"), (3, "rgb", "separate")],
)
def test_tiff16_exact(channels: int, kind: str, planar: str) -> None:
    arr = _pattern(6, 9, channels, np.uint16)
    buf = io.BytesIO()
    data = arr[..., 0] if channels == 1 else arr
    if planar == "separate":
        data = np.moveaxis(arr, -1, 0)
    tifffile.imwrite(
        buf,
        data,
        photometric="minisblack" if channels == 1 else "rgb",
        planarconfig=None if channels == 1 else planar,
        extrasamples=("unassalpha",) if channels == 4 else None,
        compression="zlib",
        iccprofile=SRGB,
        resolution=(240.0, 240.0),
        resolutionunit="INCH",
    )
    pic = decode(io.BytesIO(buf.getvalue()))
    assert (pic.kind, pic.bit_depth, pic.format, pic.size) == (kind, 16, "TIFF", (9, 6))
    assert probe(io.BytesIO(buf.getvalue())) == (9, 6)
    assert pic.icc == SRGB and pic.dpi == (240.0, 240.0)
    color = arr[..., :3] if channels >= 3 else np.repeat(arr, 3, axis=2)
    assert np.array_equal(_q(pic.rgb, 16), color)
    if channels == 4:
        assert np.array_equal(_q(pic.alpha, 16), arr[..., 3])
    again = _roundtrip(pic, "TIFF", dpi_scale=2)
    icc = None if channels == 1 else SRGB  # an RGB profile does not describe gray output
    assert (again.kind, again.bit_depth, again.icc, again.dpi) == (kind, 16, icc, (480.0, 480.0))
    assert np.array_equal(again.rgb, pic.rgb)


def test_tiff_lzw() -> None:
    arr8 = _pattern(5, 300, 3)  # longer than one Clear period of the test's LZW
    assert np.array_equal(_q(decode(_tiff_lzw(arr8)).rgb, 8), arr8)  # Pillow/libtiff path
    arr16 = _pattern(5, 300, 3, np.uint16)
    try:
        import imagecodecs  # noqa: F401
    except ImportError:
        with pytest.raises(ImageError) as exc:
            decode(_tiff_lzw(arr16))
        _one_line_error(exc, "imagecodecs")
    else:
        assert np.array_equal(_q(decode(_tiff_lzw(arr16)).rgb, 16), arr16)


# ----------------------------------------------------------------- palette, CMYK


def test_palette_with_transparency() -> None:
    idx = RNG.integers(0, 4, (8, 10), dtype=np.uint8)
    im = Image.frombytes("P", (10, 8), idx.tobytes())
    im.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9])
    pic = decode(_save(im, "PNG", transparency=3))
    assert (pic.kind, pic.bit_depth) == ("palette", 8)
    assert np.array_equal(pic.alpha == 0, idx == 3)
    assert np.array_equal(_q(pic.rgb[idx == 0], 8), np.tile([255, 0, 0], ((idx == 0).sum(), 1)))
    buf = io.BytesIO()
    encode(pic, buf, "PNG")
    assert Image.open(buf).mode == "RGBA"
    plain = decode(_save(im, "PNG"))
    assert plain.kind == "palette" and plain.alpha is None
    buf = io.BytesIO()
    encode(plain, buf, "PNG")
    assert Image.open(buf).mode == "RGB"


def test_gray_transparency_key_becomes_alpha() -> None:
    arr = _pattern(5, 6, 1)[..., 0]
    arr[0, 0] = 77
    pic = decode(_save(Image.fromarray(arr), "PNG", transparency=77))
    assert pic.kind == "gray_alpha"
    assert np.array_equal(pic.alpha == 0, arr == 77)


def test_cmyk_jpeg_to_rgb_and_cmyk_profile_dropped() -> None:
    arr = _pattern(8, 8, 4)
    im = Image.frombytes("CMYK", (8, 8), arr.tobytes())
    fake_cmyk_icc = bytes(16) + b"CMYK" + bytes(108)
    data = _save(im, "JPEG", quality=100, icc_profile=fake_cmyk_icc)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    pic = decode(data)
    assert (pic.kind, pic.bit_depth, pic.icc, pic.alpha) == ("cmyk", 8, None, None)
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert np.array_equal(_q(pic.rgb, 8), expected)  # an unusable profile: naive conversion
    buf = io.BytesIO()
    encode(pic, buf, "JPEG")
    out = Image.open(buf)
    assert out.mode == "RGB" and "icc_profile" not in out.info


# ----------------------------------------------------------------- metadata


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "TIFF"])
def test_icc_roundtrip(fmt: str) -> None:
    im = Image.fromarray(_pattern(6, 6, 3))
    params = {"compression": "tiff_deflate"} if fmt == "TIFF" else {}
    pic = decode(_save(im, fmt, icc_profile=SRGB, **params))
    assert pic.icc == SRGB
    for out_fmt in ("PNG", "JPEG", "WEBP", "TIFF"):
        assert _roundtrip(pic, out_fmt).icc == SRGB, out_fmt
    sixteen = decode(_png16(_pattern(4, 4, 3, np.uint16), extra=_chunk(b"iCCP", b"p\0\0" + zlib.compress(SRGB))))
    assert sixteen.icc == SRGB and _roundtrip(sixteen, "PNG").icc == SRGB


def test_gray_icc_not_attached_to_rgb_output() -> None:
    gray_icc = bytes(16) + b"GRAY" + bytes(108)
    pic = Picture(np.zeros((2, 2, 3), np.float32), None, 8, "gray", "PNG", icc=gray_icc)
    buf = io.BytesIO()
    encode(pic, buf, "WEBP")  # WEBP has no gray mode: written RGB
    assert "icc_profile" not in Image.open(buf).info or not Image.open(buf).info["icc_profile"]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied_like_pillow(orientation: int) -> None:
    arr = _pattern(5, 8, 3)
    data = _save(Image.fromarray(arr), "PNG", exif=_exif(orientation, make="Cam").tobytes())
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
    pic = decode(data)
    assert np.array_equal(_q(pic.rgb, 8), expected)
    assert probe(io.BytesIO(data)) == pic.size
    exif = Image.Exif()
    exif.load(pic.exif)
    assert exif[0x0112] == 1 and exif[0x010F] == "Cam"


def test_jpeg_orientation_6_rotated_and_reset() -> None:
    arr = np.zeros((4, 6, 3), dtype=np.uint8)
    arr[0, :] = 255  # white top row, red left column: asymmetric
    arr[:, 0] = (255, 0, 0)
    exif = _exif(6, make="Cam", model="X1")
    exif.get_ifd(0x8769)[0x9003] = "2024:05:06 07:08:09"
    exif.get_ifd(0x8769)[0xA002] = 6
    exif.get_ifd(0x8769)[0xA003] = 4
    data = _save(Image.fromarray(arr), "JPEG", quality=100, subsampling=0, exif=exif.tobytes(), dpi=(300, 200))
    pic = decode(data)
    assert pic.size == (4, 6)  # rotated 90 degrees clockwise
    assert pic.dpi == (200.0, 300.0)
    got = _q(pic.rgb, 8)
    assert np.all(got[1:, -1].min(axis=1) > 200)  # the top row is now the right column
    assert np.all(np.abs(got[0] - (255, 0, 0)).max(axis=1)[:-1] < 40)  # left column is now the top row
    assert probe(io.BytesIO(data)) == (4, 6)
    upscaled = pic.with_pixels(np.repeat(np.repeat(pic.rgb, 2, 0), 2, 1), None)
    for fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        buf = io.BytesIO()
        encode(upscaled, buf, fmt, dpi_scale=2)
        out = Image.open(io.BytesIO(buf.getvalue()))
        written = out.getexif()
        assert written[0x0112] == 1, fmt
        assert (written[0x010F], written[0x0110]) == ("Cam", "X1"), fmt
        sub = written.get_ifd(0x8769)
        assert sub[0x9003] == "2024:05:06 07:08:09", fmt
        assert (sub[0xA002], sub[0xA003]) == (8, 12), fmt
        again = decode(buf.getvalue())
        assert again.size == (8, 12), fmt  # not rotated a second time
        if fmt == "TIFF":  # the patched sub-IFD, read by an independent reader
            with tifffile.TiffFile(io.BytesIO(buf.getvalue())) as tif:
                tags = tif.pages[0].tags
                assert tags["ExifTag"].value["DateTimeOriginal"] == "2024:05:06 07:08:09"
                assert (tags["Make"].value, tags["Orientation"].value) == ("Cam", 1)
        if fmt != "WEBP":
            assert again.dpi is not None and np.allclose(again.dpi, (400, 600), atol=0.01), fmt


def test_tiff_input_exif_keeps_no_strip_tags() -> None:
    exif = _exif(1, make="Cam", artist="Me")
    exif.get_ifd(0x8769)[0x9003] = "2024:05:06 07:08:09"
    pic = decode(_save(Image.fromarray(_pattern(3, 4, 3)), "TIFF", exif=exif.tobytes()))
    carried = Image.Exif()
    carried.load(pic.exif)
    assert set(carried) <= {0x010F, 0x013B, 0x0112, 0x8769}
    assert carried.get_ifd(0x8769)[0x9003] == "2024:05:06 07:08:09"
    buf = io.BytesIO()
    encode(pic, buf, "JPEG")
    assert Image.open(buf).getexif()[0x013B] == "Me"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "BMP"])
def test_dpi_scaled(fmt: str) -> None:
    pic = decode(_save(Image.fromarray(_pattern(4, 4, 3)), fmt, dpi=(300, 300)))
    assert pic.dpi is not None and np.allclose(pic.dpi, 300, atol=0.01)
    out = _roundtrip(pic, fmt, dpi_scale=4)
    assert out.dpi is not None and np.allclose(out.dpi, 1200, atol=0.01)


# ----------------------------------------------------------------- encode details


def test_quantization_rounds_and_clips() -> None:
    rgb = np.array([[[0.5 / 255 + 1e-6, 1.49 / 255, -0.2], [1.7, np.nan, 254.51 / 255]]], np.float32)
    buf = io.BytesIO()
    encode(Picture(rgb, None, 8, "rgb", "PNG"), buf, "PNG")
    assert np.asarray(Image.open(buf)).tolist() == [[[1, 1, 0], [255, 0, 255]]]


def test_encode_errors() -> None:
    pic = Picture(np.zeros((2, 2, 3), np.float32), None, 8, "rgb", "PNG")
    with pytest.raises(OutputError, match="GIF"):
        encode(pic, io.BytesIO(), "GIF")
    with pytest.raises(OutputError, match="quality"):
        encode(pic, io.BytesIO(), "JPEG", quality=0)
    closed = io.BytesIO()
    closed.close()
    with pytest.raises(OutputError):
        encode(pic, closed, "PNG")

    class Full(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, b: object) -> int:
            raise OSError(28, "No space left on device")

    with pytest.raises(OutputError, match="No space left"):
        encode(pic, Full(), "PNG")  # type: ignore[arg-type]
    wide = Picture(np.zeros((1, 16384, 3), np.float32), None, 8, "rgb", "PNG")
    with pytest.raises(OutputError, match="16383"):
        encode(wide, io.BytesIO(), "WEBP")


def test_picture_validation_and_with_pixels() -> None:
    pic = Picture(np.zeros((2, 3, 3), np.float32), np.ones((2, 3), np.float32), 16, "rgba", "PNG", dpi=(72.0, 72.0))
    big = pic.with_pixels(np.zeros((4, 6, 3), np.float64), np.ones((4, 6)))
    assert big.size == (6, 4) and big.rgb.dtype == np.float32 and big.alpha.dtype == np.float32
    assert (big.bit_depth, big.kind, big.dpi) == (16, "rgba", (72.0, 72.0))
    assert pic.with_pixels(pic.rgb, None).alpha is None
    with pytest.raises(ValueError, match="alpha"):
        pic.with_pixels(np.zeros((4, 6, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="kind"):
        Picture(np.zeros((1, 1, 3), np.float32), None, 8, "cmy", "PNG")  # type: ignore[arg-type]


def test_format_for_suffix() -> None:
    assert format_for_suffix("a/b.JPG") == "JPEG"
    assert format_for_suffix(Path("x.tif")) == "TIFF"
    assert {format_for_suffix(f"x{s}") for s in images.FORMAT_SUFFIXES} == set(images.FORMATS)
    with pytest.raises(OutputError, match=".gif"):
        format_for_suffix("x.gif")


# ----------------------------------------------------------------- broken inputs


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    for call in (decode, probe):
        with pytest.raises(ImageError) as exc:
            call(path)
        _one_line_error(exc, "empty", "empty.png")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated(fmt: str, tmp_path: Path) -> None:
    data = _save(Image.fromarray(_pattern(64, 64, 3)), fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as exc:
        decode(path)
    _one_line_error(exc, "truncated")


def test_truncated_png16() -> None:
    data = _png16(_pattern(32, 32, 3, np.uint16))
    with pytest.raises(ImageError) as exc:
        decode(data[: len(data) // 2])
    _one_line_error(exc, "truncated")
    bad = bytearray(data)
    bad[60] ^= 0xFF  # inside IDAT: the CRC no longer matches
    with pytest.raises(ImageError) as exc:
        decode(bytes(bad))
    _one_line_error(exc, "crc")


def test_truncated_tiff16() -> None:
    buf = io.BytesIO()
    tifffile.imwrite(buf, _pattern(16, 16, 3, np.uint16), photometric="rgb")
    data = buf.getvalue()
    with pytest.raises(ImageError) as exc:
        decode(data[: len(data) - 500])
    _one_line_error(exc, "truncated")


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("just some notes\n")
    with pytest.raises(ImageError) as exc:
        decode(path)
    _one_line_error(exc, "not a png, jpeg", "notes.jpg")


def test_decompression_bomb_header() -> None:
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b"")
    for call in (decode, probe):
        with pytest.raises(ImageError) as exc:
            call(io.BytesIO(data) if call is probe else data)
        _one_line_error(exc, "bomb")


def test_pixel_limit_applies_to_every_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decoder, "MAX_PIXELS", 99)
    buf = io.BytesIO()
    tifffile.imwrite(buf, _pattern(10, 10, 3, np.uint16), photometric="rgb")
    for data in (buf.getvalue(), _png16(_pattern(10, 10, 3, np.uint16)), _save(Image.new("RGB", (10, 10)), "JPEG")):
        with pytest.raises(ImageError) as exc:
            decode(data)
        _one_line_error(exc, "10x10", "limit")
    assert decode(_save(Image.new("RGB", (9, 11)), "PNG")).size == (9, 11)


def test_permission_denied_and_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "locked.png"
    path.write_bytes(_save(Image.new("RGB", (2, 2)), "PNG"))

    def denied(file, *args, **kwargs) -> int:
        raise PermissionError(13, "Permission denied", str(file))

    monkeypatch.setattr(os, "open", denied)  # root ignores chmod 000; the one input opener uses os.open
    with pytest.raises(ImageError) as exc:
        decode(path)
    _one_line_error(exc, "permission denied", "locked.png")
    monkeypatch.undo()
    with pytest.raises(ImageError) as exc:
        decode(tmp_path / "absent.png")
    _one_line_error(exc, "absent.png")


def test_unsupported_mode() -> None:
    data = _save(Image.new("F", (3, 3)), "TIFF")
    with pytest.raises(ImageError) as exc:
        decode(data)
    _one_line_error(exc, "unsupported")


# ----------------------------------------------------------------- import hygiene


def test_loading_truncated_images_stays_off() -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_import_does_not_pull_in_torch() -> None:
    code = "import sys, lia_upscale.images; print(sorted(m for m in ('torch', 'click', 'rich') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
