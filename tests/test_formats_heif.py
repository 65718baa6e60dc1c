"""Issue 13, HEIC: orientation, ICC, 10-bit depth, folders with HEIC and AVIF, broken HEIC files.

Needs the ``heif`` extra (pillow-heif); skipped without it (.ci/run installs it). Every HEIC
here is written by pillow-heif at test time.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from lia_upscale import images
from lia_upscale.errors import ImageError
from lia_upscale.images import decoder, heif

pillow_heif = pytest.importorskip("pillow_heif", reason="HEIC needs the heif extra: pip install '.[heif]'")

from test_formats import (  # noqa: E402 - after the skip
    HAVE_AVIF,
    SRGB,
    _pattern,
    _quadrants,
    interior_error,
    run_cli,
    write_source,
)


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "PhoneMaker"
    return exif.tobytes()


def _nearest(a: np.ndarray, s: int) -> np.ndarray:
    return np.repeat(np.repeat(a, s, 0), s, 1)


def _ten_bit(h: int, w: int) -> np.ndarray:
    """(H, W, 3) 10-bit values on smooth ramps (HEVC keeps them), most not multiples of 4."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(x * 1023) // (w - 1), (y * 1023) // (h - 1), ((x + y) * 1023) // (h + w - 2)],
                    axis=2).astype(np.uint16)


def _heic_10bit(path: Path, values: np.ndarray) -> Path:
    h, w = values.shape[:2]
    # pillow-heif takes 16-bit data and writes its top 10 bits
    data = (values << 6).astype("<u2").tobytes()
    pillow_heif.from_bytes("RGB;16", (w, h), data).save(path, quality=-1, chroma=444)
    return path


def test_heic_orientation_6_and_icc(tmp_path: Path, nearest_weights) -> None:
    src = _quadrants(16, 24)  # stored 24 wide, 16 high
    path = write_source(tmp_path / "phone.heic", src, quality=90, exif=_exif(6), icc_profile=SRGB)
    upright = np.rot90(src, k=-1)  # what orientation 6 shows: turned 90 degrees clockwise
    assert images.probe(path) == (16, 24)
    pic = images.decode(path)
    assert (pic.format, pic.kind, pic.bit_depth, pic.size) == ("HEIF", "rgb", 8, (16, 24))
    assert interior_error(pic.rgb, upright) < 0.03
    assert interior_error(pic.rgb, np.rot90(src, k=1)) > 0.5  # not the other way round
    assert pic.icc == SRGB
    tags = Image.Exif()
    tags.load(pic.exif)
    assert tags[0x0112] == 1 and tags[0x010F] == "PhoneMaker"  # libheif turned it; never twice

    for fmt in ("heic", "png"):
        out = tmp_path / f"out.{fmt}"
        code, _, err = run_cli([str(path), str(out), "--weights", str(nearest_weights[2]), "-q"])
        assert code == 0, err
        if fmt == "heic":
            written = pillow_heif.open_heif(out)
            assert written.size == (32, 48)  # upright: no rotation left for a viewer to apply
            icc = written.info.get("icc_profile")
            exif = written.info.get("exif")
        else:
            with Image.open(out) as im:
                assert im.size == (32, 48)
                icc = im.info.get("icc_profile")
                exif = im.info.get("exif")
        assert icc == SRGB, fmt
        again = Image.Exif()
        again.load(exif)
        assert again.get(0x0112, 1) == 1 and again[0x010F] == "PhoneMaker", fmt
        result = images.decode(out)
        assert result.size == (32, 48)
        want = _nearest(np.round(pic.rgb * 255).astype(np.uint8), 2)
        assert interior_error(result.rgb, want) < (0.03 if fmt == "heic" else 0.5 / 255), fmt


def test_ten_bit_heic_decodes_to_16_bits_and_goes_out_as_16_bit_png(tmp_path: Path, nearest_weights) -> None:
    values = _ten_bit(12, 300)  # 300 red levels along x
    path = _heic_10bit(tmp_path / "deep.heic", values)
    assert pillow_heif.open_heif(path).info["bit_depth"] == 10  # the source really is 10-bit
    pic = images.decode(path)
    assert (pic.format, pic.kind, pic.bit_depth, pic.size) == ("HEIF", "rgb", 16, (300, 12))
    got = pic.rgb * 1023
    assert np.abs(got - values).max() <= 1.01  # the codec's RGB<->YCbCr rounding, at most 1 step
    assert np.abs(got - np.round(got)).max() < 0.008  # on the 10-bit grid (half a 16-bit step off)
    assert len(np.unique(pic.rgb[..., 0])) > 256  # more levels than 8 bits hold
    assert np.abs(pic.rgb * 255 - np.round(pic.rgb * 255)).max() > 0.3  # not 8-bit values
    assert pic.rgb.max() == 1.0  # white is 65535, not pillow-heif's shifted 65472

    out = tmp_path / "deep.png"
    code, _, err = run_cli([str(path), str(out), "--weights", str(nearest_weights[2]), "-q"])
    assert code == 0, err
    assert out.read_bytes()[24] == 16  # IHDR bit depth
    written = images.decode(out)
    assert written.bit_depth == 16
    assert np.array_equal(np.round(written.rgb * 65535), _nearest(np.round(pic.rgb * 65535), 2))

    code, _, err = run_cli([str(path), str(tmp_path / "again.heic"), "--weights", str(nearest_weights[2]), "-q"])
    assert code == 0, err
    assert pillow_heif.open_heif(tmp_path / "again.heic").info["bit_depth"] == 10
    again = images.decode(tmp_path / "again.heic")
    assert again.bit_depth == 16
    assert np.abs(again.rgb - _nearest(pic.rgb, 2)).max() < 0.02  # lossy HEVC at quality 90, 4:2:0


def test_heic_write_keeps_gray_alpha_and_depth() -> None:
    rng = np.random.default_rng(3)
    gray = images.Picture(np.repeat(rng.random((8, 10, 1), dtype=np.float32), 3, axis=2), None, 8, "gray", "PNG")
    rgba = images.Picture(rng.random((8, 10, 3), dtype=np.float32), np.full((8, 10), 0.75, np.float32), 16,
                          "rgba", "PNG")
    for pic, kind, bits in ((gray, "gray", 8), (rgba, "rgba", 16)):
        buf = io.BytesIO()
        images.encode(pic, buf, "HEIF", quality=100)
        assert heif.container_format(buf.getvalue()[:64]) == "HEIF"
        back = images.decode(buf.getvalue())
        assert (back.kind, back.bit_depth, back.size) == (kind, bits, (10, 8))
        if pic.alpha is not None:
            assert np.abs(back.alpha - 0.75).max() < 2 / 1023


def test_folder_with_heic_and_avif_and_a_truncated_heic(tmp_path: Path, nearest_weights) -> None:
    src = tmp_path / "in"
    (src / "trip").mkdir(parents=True)
    write_source(src / "trip" / "a.heic", _pattern(6, 8, 1), quality=90)
    write_source(src / "b.HEIF", _pattern(5, 7, 2), quality=90)
    if HAVE_AVIF:
        write_source(src / "c.avif", _pattern(6, 6, 3), quality=90)
    write_source(src / "d.png", _pattern(4, 4, 4))
    good = write_source(tmp_path / "whole.heic", _pattern(64, 64, 5), quality=90).read_bytes()
    (src / "cut.heic").write_bytes(good[: len(good) // 2])
    code, lines, err = run_cli([str(src), str(tmp_path / "out"), "--weights", str(nearest_weights[2]), "--json"])
    assert code == 1  # one file failed, the rest done
    status = {Path(d["input"]).name: d for d in lines}
    assert set(status) == {"a.heic", "b.HEIF", "d.png", "cut.heic"} | ({"c.avif"} if HAVE_AVIF else set())
    assert {n for n, d in status.items() if d["status"] == "failed"} == {"cut.heic"}
    reason = status["cut.heic"]["error"]
    assert reason.startswith(f"{src / 'cut.heic'}: truncated or corrupt image data (") and "\n" not in reason
    assert "Traceback" not in err and reason in err.replace("\n", "")
    out = tmp_path / "out"
    assert not (out / "cut.heic").exists()
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temporary files left
    assert heif.container_format((out / "trip" / "a.heic").read_bytes()[:64]) == "HEIF"  # --format same
    assert images.decode(out / "trip" / "a.heic").size == (16, 12)
    assert images.decode(out / "b.HEIF").size == (14, 10)
    if HAVE_AVIF:
        assert heif.container_format((out / "c.avif").read_bytes()[:64]) == "AVIF"
        assert images.decode(out / "c.avif").size == (12, 12)


def test_heic_pixel_limit_is_checked_on_the_header(tmp_path: Path, monkeypatch) -> None:
    data = write_source(tmp_path / "a.heic", _pattern(64, 64), quality=90).read_bytes()
    cut = data[: len(data) // 2]  # the header whole, the pixels cut: decoding would say "truncated"
    with pytest.raises(ImageError, match="truncated or corrupt"):
        images.decode(cut)
    monkeypatch.setattr(decoder, "MAX_PIXELS", 4000)
    with pytest.raises(ImageError, match=r"^<bytes>: 64x64 is 4,096 pixels, over the limit of 4,000"):
        images.decode(cut)
    with pytest.raises(ImageError, match=r"^<stream>: 64x64 is 4,096 pixels, over the limit of 4,000"):
        images.probe(io.BytesIO(cut))


_HEADS = st.sampled_from([b"\0\0\0\x18ftypheic\0\0\0\0mif1heic", b"\0\0\0\x1cftypmif1\0\0\0\0mif1heicmiaf"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(head=_HEADS, rest=st.binary(max_size=400))
def test_heic_magic_then_garbage_is_an_image_error(head: bytes, rest: bytes) -> None:
    with pytest.raises(ImageError):
        images.decode(head + rest)
    with pytest.raises(ImageError):
        images.probe(io.BytesIO(head + rest))


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_mutated_heic_decodes_or_fails_with_image_error(data) -> None:
    blob = bytearray(_small_heic())
    for _ in range(data.draw(st.integers(1, 8))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    try:
        pic = images.decode(bytes(blob))
    except ImageError as exc:
        assert "\n" not in str(exc)
    else:
        assert pic.rgb.dtype == np.float32 and pic.rgb.ndim == 3


_SMALL: list[bytes] = []


def _small_heic() -> bytes:
    if not _SMALL:
        buf = io.BytesIO()
        pillow_heif.from_bytes("RGB", (8, 8), _pattern(8, 8).tobytes()).save(buf, quality=80)
        _SMALL.append(buf.getvalue())
    return _SMALL[0]
