"""Property-based tests (hypothesis) for the hostile-input classes of issue 12.

(a) decoders: arbitrary bytes and mutated valid PNG/JPEG/TIFF/WebP/BMP files raise nothing
    but ImageError, emit no warnings, and stay bounded in time;
(b) encoders: random small 8/16-bit gray/gray+alpha/RGB/RGBA pictures round-trip exactly
    through PNG and TIFF, and within a bounded error through JPEG and WebP;
(c) weight files: arbitrary and mutated safetensors headers and .pth bytes fail with
    WeightsError, never run pickled code, and allocate little before the header is checked.

Reproducible in CI: the "lia" profile derandomizes (a fixed seed per test) and keeps no
example database; the whole file runs in well under a minute on two shared cores.
"""

from __future__ import annotations

# ---- internal imports: the units under test (paths change with the package move, issue 15)
import lia_upscale.images.decoder as imageio_module  # MAX_PIXELS is lowered while fuzzing
from lia_upscale.errors import ImageError, WeightsError
from lia_upscale.images import Picture, decode, encode, probe
from lia_upscale.models.pthfile import read_pth
from lia_upscale.models.weightfile import read_safetensors
from lia_upscale.models.weightheader import read_header

# ---- end of internal imports

import io
import json
import os
import pickle
import struct
import tempfile
import tracemalloc
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

settings.register_profile(
    "lia",
    derandomize=True,
    database=None,
    deadline=5000,  # ms per example: a hang fails, a loaded machine does not
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile(os.environ.get("LIA_HYPOTHESIS_PROFILE", "lia"))


# --------------------------------------------------------------------------- (a) decoders


def _seed_files() -> dict[str, bytes]:
    """Small valid files of every kind decode() takes, to be mutated."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    out: dict[str, bytes] = {}

    def pil(name: str, im: Image.Image, fmt: str, **kw) -> None:
        buf = io.BytesIO()
        im.save(buf, fmt, **kw)
        out[name] = buf.getvalue()

    def ours(name: str, bits: int, kind: str, fmt: str) -> None:
        top = 255 if bits == 8 else 65535
        c = 1 if kind.startswith("gray") else 3
        v = rng.integers(0, top + 1, (4, 5, c)).astype(np.float32) / top
        alpha = rng.integers(0, top + 1, (4, 5)).astype(np.float32) / top if kind in ("rgba", "gray_alpha") else None
        buf = io.BytesIO()
        encode(Picture(np.repeat(v, 3 // c, 2), alpha, bits, kind, fmt), buf, fmt)
        out[name] = buf.getvalue()

    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "camera"
    pil("png-rgb", Image.fromarray(rgb), "PNG")
    pil("png-rgba", Image.fromarray(np.dstack([rgb, rgb[..., :1]]), "RGBA"), "PNG")
    pal = Image.fromarray(rgb[..., 0] % 8, "L").convert("P")
    pil("png-palette-trns", pal, "PNG", transparency=2)
    pil("png-gray16", Image.fromarray(np.ascontiguousarray(rgb[..., 0]).astype(np.uint16) * 257), "PNG")
    pil("png-exif", Image.fromarray(rgb), "PNG", exif=exif.tobytes())
    pil("jpeg", Image.fromarray(rgb), "JPEG", quality=90, exif=exif.tobytes())
    pil("jpeg-cmyk", Image.fromarray(rgb).convert("CMYK"), "JPEG")
    pil("jpeg-progressive", Image.fromarray(rgb), "JPEG", progressive=True)
    pil("webp-lossy", Image.fromarray(rgb), "WEBP", quality=80)
    pil("webp-lossless-rgba", Image.fromarray(np.dstack([rgb, rgb[..., :1]]), "RGBA"), "WEBP", lossless=True)
    pil("tiff8", Image.fromarray(rgb), "TIFF")
    pil("tiff8-deflate", Image.fromarray(rgb), "TIFF", compression="tiff_adobe_deflate")
    pil("bmp", Image.fromarray(rgb), "BMP")
    ours("png16-rgb", 16, "rgb", "PNG")
    ours("png16-gray-alpha", 16, "gray_alpha", "PNG")
    ours("tiff16-rgb", 16, "rgb", "TIFF")
    ours("tiff16-rgba", 16, "rgba", "TIFF")
    return out


SEEDS = _seed_files()


@st.composite
def mutated(draw, seeds: dict[str, bytes]) -> bytes:
    """A seed file with a few bytes overwritten, a slice cut out or duplicated, or truncated."""
    data = bytearray(seeds[draw(st.sampled_from(sorted(seeds)))])
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["set", "set", "set", "cut", "dup", "truncate", "extreme"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if op == "set":
            data[at] = draw(st.integers(0, 255))
        elif op == "extreme":  # big numbers where sizes and offsets live
            data[at : at + 4] = draw(st.sampled_from([b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\0\0\0\0",
                                                      b"\x00\x01\x00\x00", b"\xff\xff\x00\x00"]))
        elif op == "cut":
            del data[at : at + draw(st.integers(1, 64))]
        elif op == "dup":
            n = draw(st.integers(1, 64))
            data[at:at] = data[at : at + n]
        else:
            del data[at:]
    return bytes(data)


@pytest.fixture(scope="module", autouse=True)
def small_pixel_limit():
    """A mutated header may claim 89 MP; 4 MP keeps every example small and fast."""
    old = imageio_module.MAX_PIXELS
    imageio_module.MAX_PIXELS = 4_000_000
    yield
    imageio_module.MAX_PIXELS = old


def _decodes_or_image_error(data: bytes) -> None:
    try:
        picture = decode(data)
    except ImageError as exc:
        assert "\n" not in str(exc)
    else:
        assert picture.rgb.dtype == np.float32 and picture.rgb.ndim == 3
        assert np.isfinite(picture.rgb).all()
        assert picture.rgb.min() >= 0 and picture.rgb.max() <= 1
    try:
        width, height = probe(io.BytesIO(data))
    except ImageError as exc:
        assert "\n" not in str(exc)
    else:
        assert width > 0 and height > 0


@settings(max_examples=120)
@given(st.binary(max_size=512))
def test_decode_arbitrary_bytes(data):
    _decodes_or_image_error(data)


@settings(max_examples=80)
@given(st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\0", b"MM\0*", b"RIFF", b"BM"]),
       st.binary(max_size=256))
def test_decode_magic_then_garbage(magic, rest):
    _decodes_or_image_error(magic + rest)


@settings(max_examples=300)
@given(mutated(SEEDS))
def test_decode_mutated_files(data):
    _decodes_or_image_error(data)


@settings(max_examples=300)
@given(mutated(SEEDS))
def test_decode_emits_no_warnings(data):
    """Issue 12: Pillow and tifffile warnings leak onto stderr; decode should report, not warn."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            decode(data)
        except ImageError:
            pass
    assert [str(w.message) for w in caught] == []


# --------------------------------------------------------------------------- (b) encoders


@st.composite
def pictures(draw, kinds=("gray", "gray_alpha", "rgb", "rgba"), depths=(8, 16)):
    """(picture, integer samples of the colour, integer alpha or None, top value)."""
    bits = draw(st.sampled_from(depths))
    kind = draw(st.sampled_from(kinds))
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    dtype = np.uint8 if bits == 8 else np.uint16
    top = 255 if bits == 8 else 65535
    c = 1 if kind.startswith("gray") else 3
    color = draw(hnp.arrays(dtype, (h, w, c), elements=st.integers(0, top)))
    alpha = draw(hnp.arrays(dtype, (h, w), elements=st.integers(0, top))) if kind in ("rgba", "gray_alpha") else None
    picture = Picture(np.repeat(color.astype(np.float32) / top, 3 // c, 2),
                      None if alpha is None else alpha.astype(np.float32) / top, bits, kind, "PNG")
    return picture, color, alpha, top


def _roundtrip(picture: Picture, fmt: str, quality: int | None = None) -> Picture:
    buf = io.BytesIO()
    encode(picture, buf, fmt, quality=quality)
    return decode(buf.getvalue())


@settings(max_examples=120)
@given(pictures(), st.sampled_from(["PNG", "TIFF"]))
def test_lossless_roundtrip_is_exact(case, fmt):
    picture, color, alpha, top = case
    back = _roundtrip(picture, fmt)
    assert (back.kind, back.bit_depth, back.size) == (picture.kind, picture.bit_depth, picture.size)
    got = np.rint(back.rgb * top).astype(np.int64)
    want = np.repeat(color.astype(np.int64), 3 // color.shape[2], 2)
    np.testing.assert_array_equal(got, want)
    if alpha is None:
        assert back.alpha is None
    else:
        np.testing.assert_array_equal(np.rint(back.alpha * top).astype(np.int64), alpha.astype(np.int64))


@settings(max_examples=60)
@given(pictures())
def test_jpeg_error_is_bounded(case):
    picture, color, _, top = case
    back = _roundtrip(picture, "JPEG")  # 4:4:4 at quality 95
    assert back.size == picture.size and back.bit_depth == 8 and back.alpha is None
    assert back.is_gray == picture.is_gray
    err = np.abs(back.rgb - picture.rgb) * 255
    assert err.mean() <= 8 and err.max() <= 48, (err.mean(), err.max())


@settings(max_examples=60)
@given(pictures(), st.data())
def test_webp_error_is_bounded(case, data):
    """WebP is 4:2:0 lossy: exact-ish on flat colour, alpha kept exactly (8 bits)."""
    picture, color, alpha, top = case
    flat = data.draw(st.booleans())
    if flat:  # one colour everywhere: chroma subsampling cannot hurt it
        picture = picture.with_pixels(np.broadcast_to(picture.rgb[:1, :1], picture.rgb.shape), picture.alpha)
    back = _roundtrip(picture, "WEBP")
    assert back.size == picture.size and back.bit_depth == 8
    if alpha is None:
        assert back.alpha is None
    else:
        assert back.alpha is not None
        assert np.abs(back.alpha - picture.alpha).max() * 255 <= 0.5 + 1e-3
    if flat:
        visible = slice(None) if alpha is None else picture.alpha > 0  # WebP drops colour under alpha 0
        assert (np.abs(back.rgb - picture.rgb)[visible] * 255).max(initial=0) <= 4


# --------------------------------------------------------------------------- (c) weight files


@pytest.fixture(scope="module")
def work():
    with tempfile.TemporaryDirectory(prefix="lia-props-") as d:
        yield Path(d)


class _Quiet(bytes):
    """Bytes that hypothesis reports by length, not by content."""

    def __repr__(self) -> str:
        return f"<{len(self)} bytes of a valid weight file>"


@pytest.fixture(scope="module")
def valid_weights(nearest_weights) -> bytes:
    return _Quiet(Path(nearest_weights[2]).read_bytes())


def _header_and_rest(blob: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8 : 8 + n]), blob[8 + n :]


def _pack(header: object, rest: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + rest


def _check_weights_file(path: Path, size_limit: int) -> None:
    """read_header/read_safetensors succeed or raise WeightsError, using memory ~ the file's size."""
    tracemalloc.start()
    try:
        try:
            read_header(path)
        except WeightsError as exc:
            assert "\n" not in str(exc)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= size_limit, f"read_header allocated {peak} bytes for a {path.stat().st_size}-byte file"
    try:
        read_safetensors(path)
    except WeightsError as exc:
        assert "\n" not in str(exc)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def hostile_tensor_entries(draw):
    """Tensor descriptions that are plausible JSON but lie: huge shapes, bad offsets, odd dtypes."""
    entries = {}
    offset = 0
    for i in range(draw(st.integers(1, 4))):
        dtype = draw(st.sampled_from(["F32", "F16", "BF16", "F64", "I64", "U8", "BOOL", "F8_E4M3", "X9", ""]))
        shape = draw(st.lists(st.integers(0, 2**40) | st.integers(-3, 3), max_size=9))
        n = 1
        for d in shape:
            n *= max(d, 0)
        honest = draw(st.booleans())
        end = offset + n * 4 if honest else draw(st.integers(-5, 2**62))
        entries[f"t{i}"] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, end]}
        offset = max(end, 0)
    return entries


@settings(max_examples=150)
@given(header=json_values, rest=st.binary(max_size=64))
def test_weights_arbitrary_json_header(work, header, rest):
    path = work / "arbitrary.safetensors"
    path.write_bytes(_pack(header, rest))
    _check_weights_file(path, 1 << 20)


@settings(max_examples=150)
@given(entries=hostile_tensor_entries(), with_metadata=st.booleans(), rest=st.binary(max_size=256))
def test_weights_lying_shapes_fail_before_allocation(work, valid_weights, entries, with_metadata, rest):
    header = dict(entries)
    if with_metadata:
        header["__metadata__"] = _header_and_rest(valid_weights)[0]["__metadata__"]
    path = work / "lying.safetensors"
    path.write_bytes(_pack(header, rest))
    _check_weights_file(path, 1 << 20)


@settings(max_examples=100)
@given(data=st.data())
def test_weights_mutated_valid_file(work, valid_weights, data):
    header, rest = _header_and_rest(valid_weights)
    names = sorted(k for k in header if k != "__metadata__")
    op = data.draw(st.sampled_from(["bytes", "entry", "metadata", "length", "tail"]))
    if op == "bytes":
        blob = bytearray(valid_weights)
        for _ in range(data.draw(st.integers(1, 8))):
            at = data.draw(st.integers(0, min(len(blob) - 1, 8 + 4096)))  # mostly the header
            blob[at] = data.draw(st.integers(0, 255))
        blob = bytes(blob)
    elif op == "entry":
        name = data.draw(st.sampled_from(names))
        field = data.draw(st.sampled_from(["dtype", "shape", "data_offsets"]))
        header[name][field] = data.draw(json_values)
        blob = _pack(header, rest)
    elif op == "metadata":
        key = data.draw(st.sampled_from(["format", "format_version", "architecture", "variant", "scale", "x"]))
        header["__metadata__"][key] = data.draw(st.text(max_size=6) | st.integers() | st.none())
        blob = _pack(header, rest)
    elif op == "length":
        blob = struct.pack("<Q", data.draw(st.integers(0, 2**64 - 1))) + valid_weights[8:]
    else:
        cut = data.draw(st.integers(0, len(rest)))
        blob = _pack(header, rest[:cut] + data.draw(st.binary(max_size=8)))
    path = work / "mutated.safetensors"
    path.write_bytes(blob)
    _check_weights_file(path, 1 << 20)


class _Payload:
    """Unpickling it would create a folder: proof that pickled code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def _pth_seeds(marker: Path) -> list[bytes]:
    seeds = []
    for obj in ({"params_ema": {"w": _Payload(marker)}}, _Payload(marker), {"w": torch.zeros(2)}):
        buf = io.BytesIO()
        torch.save(obj, buf)
        seeds.append(buf.getvalue())
    seeds += [pickle.dumps(_Payload(marker), protocol=p) for p in (0, 2, 4, 5)]
    zbuf = io.BytesIO()  # a hand-made torch zip whose data.pkl holds the payload
    with zipfile.ZipFile(zbuf, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps(_Payload(marker), protocol=2))
        z.writestr("archive/version", "3\n")
    seeds.append(zbuf.getvalue())
    return seeds


@settings(max_examples=80)
@given(data=st.data())
def test_pth_never_runs_pickled_code(work, data):
    marker = work / "PWNED"
    seeds = _pth_seeds(marker)
    blob = bytearray(data.draw(st.sampled_from(seeds)))
    for _ in range(data.draw(st.integers(0, 4))):
        at = data.draw(st.integers(0, len(blob) - 1))
        blob[at] = data.draw(st.integers(0, 255))
    path = work / "hostile.pth"
    path.write_bytes(bytes(blob))
    try:
        state = read_pth(path)
    except WeightsError as exc:
        assert "\n" not in str(exc)
    else:
        assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert not marker.exists(), "read_pth executed pickled code"


@settings(max_examples=80)
@given(blob=st.binary(max_size=512) | st.binary(max_size=256).map(lambda b: b"PK\x03\x04" + b)
       | st.binary(max_size=256).map(lambda b: b"\x80\x02" + b))
def test_pth_arbitrary_bytes(work, blob):
    path = work / "arbitrary.pth"
    path.write_bytes(blob)
    try:
        read_pth(path)
    except WeightsError as exc:
        assert "\n" not in str(exc)
