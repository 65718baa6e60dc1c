"""Issue 13, the parts that need no pillow-heif: AVIF in and out, XMP carried between every
pair of formats that hold it, and the one-line errors when HEIC or AVIF support is missing.

Source files are made by the real libraries (Pillow, tifffile, pillow-heif where present) at
test time; their outputs are read back with the same libraries, not only with our decoder.
"""

from __future__ import annotations

import ast
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from PIL import Image, ImageCms, PngImagePlugin

from lia_upscale import images
from lia_upscale.cli import main
from lia_upscale.errors import ImageError, OutputError
from lia_upscale.images import decoder, heif
from lia_upscale.images.xmp import png_xmp, xmp_for_output

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
HAVE_HEIF = images.missing_support("HEIF") is None
HAVE_AVIF = images.missing_support("AVIF") is None
need_avif = pytest.mark.skipif(not HAVE_AVIF, reason="this Pillow has no AVIF support")

#: A packet as Lightroom writes one (rating, label, caption with non-ASCII text, padding),
#: without size fields: it must come out byte for byte.
XMP = (
    b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Adobe XMP Core 7.0">\n'
    b' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
    b'  <rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/"\n'
    b'    xmlns:dc="http://purl.org/dc/elements/1.1/" xmp:Rating="4" xmp:Label="Green">\n'
    b'   <dc:description><rdf:Alt><rdf:li xml:lang="x-default">Caf\xc3\xa9 \xe2\x80\x94 test</rdf:li>'
    b"</rdf:Alt></dc:description>\n"
    b"  </rdf:Description>\n </rdf:RDF>\n</x:xmpmeta>\n" + b" " * 200 + b'\n<?xpacket end="w"?>'
)


def _pattern(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _quadrants(h: int, w: int) -> np.ndarray:
    """Four flat blocks of different colours: which corner went where survives lossy coding."""
    a = np.zeros((h, w, 3), np.uint8)
    a[: h // 2, : w // 2] = (230, 30, 30)
    a[: h // 2, w // 2 :] = (30, 200, 30)
    a[h // 2 :, : w // 2] = (30, 30, 220)
    a[h // 2 :, w // 2 :] = (240, 240, 40)
    return a


def write_source(path: Path, arr: np.ndarray, xmp: bytes | None = None, **extra) -> Path:
    """``arr`` (H, W, 3) uint8 saved as ``path``'s format by the library a user's tool would use."""
    suffix = path.suffix.lower()
    if suffix == ".tif":
        tags = [(700, "B", len(xmp), xmp, True)] if xmp else []
        tifffile.imwrite(path, arr, photometric="rgb", extratags=tags)
    elif suffix in (".heic", ".heif"):
        import pillow_heif

        kwargs = {"quality": -1, **extra} | ({"xmp": xmp} if xmp else {})
        pillow_heif.from_bytes("RGB", (arr.shape[1], arr.shape[0]), arr.tobytes()).save(path, **kwargs)
    else:
        kwargs = dict(extra)
        if suffix == ".png" and xmp:
            info = PngImagePlugin.PngInfo()
            info.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8"))
            kwargs["pnginfo"] = info
        elif xmp:
            kwargs["xmp"] = xmp
        if suffix in (".jpg", ".webp", ".avif"):
            kwargs.setdefault("quality", 95)
        Image.fromarray(arr).save(path, **kwargs)
    return path


def stored_xmp(path: Path) -> bytes | None:
    """The XMP packet of a file, read by the library that wrote its format (not our decoder)."""
    if path.suffix.lower() == ".heic":
        import pillow_heif

        return pillow_heif.open_heif(path).info.get("xmp")
    with Image.open(path) as im:
        value = im.info.get("xmp")
    return value.encode() if isinstance(value, str) else value


def run_cli(args: list[str]) -> tuple[int, list[dict], str]:
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result.exit_code, lines, result.stderr


# ----------------------------------------------------------------- AVIF


@need_avif
def test_avif_reads_and_writes_size_mode_icc_and_orientation(tmp_path: Path) -> None:
    src = _quadrants(16, 24)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = write_source(tmp_path / "a.avif", src, icc_profile=SRGB, exif=exif.tobytes(), quality=100)
    assert images.probe(path) == (16, 24)  # 24x16 stored, turned by the orientation
    pic = images.decode(path)
    assert (pic.format, pic.kind, pic.bit_depth, pic.size) == ("AVIF", "rgb", 8, (16, 24))
    assert pic.icc == SRGB
    assert pic.exif is not None and _orientation(pic.exif) == 1  # the tag kept, at 1
    assert interior_error(pic.rgb, np.rot90(src, k=-1)) < 0.03
    assert interior_error(pic.rgb, np.rot90(src, k=1)) > 0.5  # not turned the other way

    upright = np.ascontiguousarray(np.rot90(src, k=-1)).astype(np.float32) / 255
    rgba = images.Picture(upright, np.linspace(0.5, 1, 16 * 24, dtype=np.float32).reshape(24, 16), 8, "rgba",
                          "AVIF", icc=SRGB)
    out = io.BytesIO()
    images.encode(rgba, out, "AVIF", quality=100)
    assert heif.container_format(out.getvalue()[:64]) == "AVIF"
    with Image.open(io.BytesIO(out.getvalue())) as im:
        assert (im.format, im.mode, im.size, im.info.get("icc_profile")) == ("AVIF", "RGBA", (16, 24), SRGB)
        assert im.getexif().get(0x0112, 1) == 1
    again = images.decode(out.getvalue())
    assert (again.kind, again.size, again.icc) == ("rgba", (16, 24), SRGB)
    assert np.abs(again.alpha - rgba.alpha).max() < 0.02
    assert interior_error(again.rgb, np.rot90(src, k=-1)) < 0.03


def interior_error(rgb: np.ndarray, want: np.ndarray) -> float:
    """Largest difference from ``want`` (0-255) away from the quadrants' edges, where
    4:2:0 chroma and the codecs' block filters may smear colours across."""
    h, w = want.shape[:2]
    keep = np.ones((h, w), bool)
    keep[h // 2 - 2 : h // 2 + 2] = False
    keep[:, w // 2 - 2 : w // 2 + 2] = False
    return float(np.abs(rgb - want.astype(np.float32) / 255)[keep].max())


def _orientation(exif: bytes | None) -> int:
    tags = Image.Exif()
    if exif:
        tags.load(exif)
    return tags.get(0x0112, 1)


@need_avif
def test_avif_pixel_limit_is_checked_on_the_header(tmp_path: Path, monkeypatch) -> None:
    from PIL import AvifImagePlugin

    data = write_source(tmp_path / "a.avif", _pattern(32, 32), quality=90).read_bytes()

    def no_decoding(self):
        raise AssertionError("pixels decoded before the size check")

    monkeypatch.setattr(AvifImagePlugin.AvifImageFile, "load", no_decoding)
    monkeypatch.setattr(decoder, "MAX_PIXELS", 1000)
    for attempt in (lambda: images.decode(data), lambda: images.probe(io.BytesIO(data))):
        with pytest.raises(ImageError, match=r"^<(bytes|stream)>: 32x32 is 1,024 pixels, over the limit of 1,000"):
            attempt()


# ----------------------------------------------------------------- XMP


def _xmp_formats() -> list[str]:
    return ["png", "jpg", "webp", "tif"] + (["heic"] if HAVE_HEIF else []) + (["avif"] if HAVE_AVIF else [])


def test_xmp_survives_a_cli_run_between_every_pair_of_formats(tmp_path: Path) -> None:
    """Each source format holding the packet, upscaled by the small CPU model into each
    output format: the packet read back by the writing library is the same bytes."""
    formats = _xmp_formats()
    src = tmp_path / "in"
    src.mkdir()
    for i, suffix in enumerate(formats):
        write_source(src / f"{suffix}-src.{suffix}", _pattern(6, 8, i), XMP)
        assert stored_xmp(src / f"{suffix}-src.{suffix}") == XMP, suffix  # the source really holds it
    for out_fmt in ["same", *[{"tif": "tiff"}.get(f, f) for f in formats]]:
        out = tmp_path / f"out-{out_fmt}"
        code, lines, err = run_cli([str(src), str(out), "--model", "lia-u-x2", "--format", out_fmt,
                                    "--json", "-q"])
        assert code == 0, err
        assert [d["status"] for d in lines] == ["done"] * len(formats), lines
        for d in lines:
            dst = Path(d["output"])
            with Image.open(dst) if dst.suffix != ".heic" else _heif_as_pillow(dst) as im:
                assert im.size == (16, 12), dst
            assert stored_xmp(dst) == XMP, f"{Path(d['input']).name} -> {dst.name}"


def _heif_as_pillow(path: Path) -> Image.Image:
    import pillow_heif

    return pillow_heif.open_heif(path).to_pillow()


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_xmp_in_16_bit_png_and_tiff(fmt: str) -> None:
    rgb = np.random.default_rng(1).random((5, 7, 3), dtype=np.float32)
    pic = images.Picture(rgb, None, 16, "rgb", "PNG", xmp=XMP)
    data = io.BytesIO()
    images.encode(pic, data, fmt)
    with Image.open(io.BytesIO(data.getvalue())) as im:
        assert im.info.get("xmp") == XMP
    back = images.decode(data.getvalue())
    assert (back.bit_depth, back.xmp) == (16, XMP)


def test_xmp_size_and_orientation_fields_follow_the_pixels() -> None:
    packet = (b'<rdf:Description tiff:ImageWidth="640" tiff:ImageLength = \'480\' tiff:Orientation="6"'
              b' xmp:Rating="5"><exif:PixelXDimension>640</exif:PixelXDimension>'
              b"<exif:PixelYDimension> 480 </exif:PixelYDimension><dc:title>tiff:ImageWidth 640</dc:title>"
              b"</rdf:Description>")
    assert xmp_for_output(packet, 960, 1280) == (
        b'<rdf:Description tiff:ImageWidth="960" tiff:ImageLength = \'1280\' tiff:Orientation="1"'
        b' xmp:Rating="5"><exif:PixelXDimension>960</exif:PixelXDimension>'
        b"<exif:PixelYDimension>1280</exif:PixelYDimension><dc:title>tiff:ImageWidth 640</dc:title>"
        b"</rdf:Description>")
    assert xmp_for_output(XMP, 1, 2) == XMP
    assert xmp_for_output(None, 1, 2) is None


def test_xmp_fields_updated_through_a_cli_run(tmp_path: Path) -> None:
    packet = XMP.replace(b'xmp:Rating="4"', b'xmp:Rating="4" tiff:ImageWidth="8" tiff:ImageLength="6" '
                                               b'exif:PixelXDimension="8" exif:PixelYDimension="6"')
    exif = Image.Exif()
    exif[0x0112] = 6
    path = write_source(tmp_path / "a.jpg", _pattern(6, 8), packet.replace(b'xmp:Rating', b'tiff:Orientation="6" '
                                                                                           b'xmp:Rating'),
                        exif=exif.tobytes())
    code, _, err = run_cli([str(path), str(tmp_path / "b.png"), "--model", "lia-u-x2", "-q"])
    assert code == 0, err
    want = packet.replace(b'xmp:Rating', b'tiff:Orientation="1" xmp:Rating')
    want = want.replace(b'ImageWidth="8"', b'ImageWidth="12"').replace(b'ImageLength="6"', b'ImageLength="16"')
    want = want.replace(b'XDimension="8"', b'XDimension="12"').replace(b'YDimension="6"', b'YDimension="16"')
    assert stored_xmp(tmp_path / "b.png") == want
    with Image.open(tmp_path / "b.png") as im:
        assert im.size == (12, 16)


def test_png_xmp_after_the_pixels_and_compressed() -> None:
    buf = io.BytesIO()
    Image.fromarray(_pattern(3, 3)).save(buf, "PNG")
    data = buf.getvalue()
    import struct
    import zlib

    body = b"XML:com.adobe.xmp\0\x01\0\0\0" + zlib.compress(XMP)
    chunk = struct.pack(">I", len(body)) + b"iTXt" + body + struct.pack(">I", zlib.crc32(b"iTXt" + body))
    late = data[:-12] + chunk + data[-12:]  # between the last IDAT and IEND
    assert png_xmp(late) == XMP
    assert images.decode(late).xmp == XMP
    assert png_xmp(data) is None
    assert png_xmp(late[: len(data) - 12 + 20]) is None  # cut inside the chunk


# ----------------------------------------------------------------- missing support

FAKE_HEIC = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + bytes(200)
HEIF_LINE = "HEIC/HEIF needs the optional pillow-heif package: pip install 'lia-upscale[heif]'"


@pytest.fixture()
def no_pillow_heif(monkeypatch):
    """As if pillow-heif were not installed: importing it raises ImportError."""
    monkeypatch.setitem(sys.modules, "pillow_heif", None)


def test_heic_without_pillow_heif_is_one_line_naming_the_extra(tmp_path: Path, no_pillow_heif) -> None:
    path = tmp_path / "photo.heic"
    path.write_bytes(FAKE_HEIC)
    for attempt in (lambda: images.decode(path), lambda: images.probe(path)):
        with pytest.raises(ImageError) as info:
            attempt()
        assert str(info.value) == f"{path}: {HEIF_LINE}"
    with pytest.raises(OutputError, match=r"^cannot write HEIF: HEIC/HEIF needs .*\[heif\]'$"):
        images.encode(images.decode(write_source(tmp_path / "a.png", _pattern(2, 2))), io.BytesIO(), "heic")


def test_folder_with_heic_without_pillow_heif(tmp_path: Path, no_pillow_heif, nearest_weights) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "phone.heic").write_bytes(FAKE_HEIC)
    write_source(src / "b.png", _pattern(4, 4))
    code, lines, err = run_cli([str(src), str(tmp_path / "out"), "--weights", str(nearest_weights[2]), "--json"])
    assert code == 1
    status = {Path(d["input"]).name: d for d in lines}
    assert status["b.png"]["status"] == "done"
    assert status["phone.heic"]["status"] == "failed"
    assert status["phone.heic"]["error"] == f"{src / 'phone.heic'}: {HEIF_LINE}"
    assert "Traceback" not in err and HEIF_LINE in err
    assert not (tmp_path / "out" / "phone.heic").exists()

    code, lines, err = run_cli([str(src / "b.png"), str(tmp_path / "o2"), "--weights", str(nearest_weights[2]),
                                "--format", "heic"])
    assert code == 2 and lines == []
    assert err.strip().endswith(f"--format heic: {HEIF_LINE}") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o2").exists()


def test_avif_without_support_is_one_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(heif, "avif_supported", lambda: False)
    path = tmp_path / "web.avif"
    path.write_bytes(b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf" + bytes(100))
    with pytest.raises(ImageError) as info:
        images.decode(path)
    assert str(info.value) == (f"{path}: AVIF needs a Pillow built with AVIF support (the Pillow >= 11.3 "
                               "wheels are): pip install -U pillow")


@pytest.mark.parametrize(("head", "want"), [
    (b"\0\0\0\x18ftypheic\0\0\0\0mif1heic", "HEIF"),
    (b"\0\0\0\x1cftypmif1\0\0\0\0mif1heicmiaf", "HEIF"),
    (b"\0\0\0\x1cftypmif1\0\0\0\0mif1avifmiaf", "AVIF"),
    (b"\0\0\0\x20ftypavif\0\0\0\0avifmif1miafMA1B", "AVIF"),
    (b"\0\0\0\x14ftypisom\0\0\0\0isom", None),  # an MP4 video
    (b"\0\0\0\x18ftyp", None),
    (b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR", None),
])
def test_container_format_by_brand(head: bytes, want: str | None) -> None:
    assert heif.container_format(head) == want


def test_folder_scanning_picks_up_heic_heif_and_avif(tmp_path: Path) -> None:
    from lia_upscale.batch import plan_jobs
    from lia_upscale.pipeline import OutputSpec

    for name in ("a.HEIC", "b.heif", "c.avif", "d.hif", "e.png", "notes.txt"):
        (tmp_path / "in" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "in" / name).write_bytes(b"x")
    jobs = plan_jobs([str(tmp_path / "in")], str(tmp_path / "out"))
    assert [(j.src.name, j.dst.name, j.fmt) for j in jobs] == [
        ("a.HEIC", "a.HEIC", "HEIF"), ("b.heif", "b.heif", "HEIF"), ("c.avif", "c.avif", "AVIF"),
        ("d.hif", "d.hif", "HEIF"), ("e.png", "e.png", "PNG")]
    jobs = plan_jobs([str(tmp_path / "in")], str(tmp_path / "out"), OutputSpec(fmt="avif"))
    assert {j.dst.name for j in jobs} == {"a.avif", "b.avif", "c.avif", "d.avif", "e.avif"}
    assert {j.fmt for j in jobs} == {"AVIF"}


def test_only_images_heif_imports_pillow_heif_and_only_lazily() -> None:
    """pillow-heif is optional (the heif extra): one module imports it, inside functions."""
    package = Path(images.__file__).resolve().parents[1]
    wrong = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text())
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] == "pillow_heif" for n in names):
                if path.relative_to(package).as_posix() != "images/heif.py" or id(node) in top:
                    wrong.append(f"{path.relative_to(package)}:{node.lineno}")
    assert not wrong, wrong
