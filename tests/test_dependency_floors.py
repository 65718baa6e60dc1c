"""The dependency floors: pyproject.toml, the README and docs/development.md name the same
ones, and the floors that were raised for a reason keep their reason tested."""

from __future__ import annotations

import io
import re
import tomllib
from pathlib import Path

import pytest

from lia_upscale import images
from lia_upscale.errors import ImageError

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]

#: The extras a user installs (the test extra is for the suite and is not in the README).
USER_EXTRAS = ("heif", "spandrel", "ray")


def floors() -> dict[str, str]:
    """Package name -> its '>=' floor, for Python, the dependencies and the user extras."""
    specs = PROJECT["dependencies"] + [s for extra in USER_EXTRAS for s in PROJECT["optional-dependencies"][extra]]
    out = {"python": PROJECT["requires-python"].removeprefix(">=")}
    for spec in specs:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?>=([0-9][0-9.]*)", spec.replace(" ", ""))
        assert match, f"{spec!r}: every dependency has exactly one floor and no cap"
        out[match[1].lower()] = match[2]
    return out


def test_every_dependency_has_a_floor() -> None:
    assert {"python", "torch", "numpy", "pillow", "tifffile", "ray"} <= floors().keys()


@pytest.mark.parametrize("name", sorted(floors()))
def test_readme_states_the_floor(name: str) -> None:
    readme = re.sub(r"\s+", " ", (ROOT / "README.md").read_text(encoding="utf-8"))
    assert re.search(rf"(?i)\b{re.escape(name)} {re.escape(floors()[name])}\b(?!\.\d)", readme)


@pytest.mark.parametrize("name", sorted(set(floors()) - {"python"}))
def test_development_page_lists_the_floor(name: str) -> None:
    table = (ROOT / "docs" / "development.md").read_text(encoding="utf-8")
    assert re.search(rf"(?im)^\| {re.escape(name)}\b[^|]*\| {re.escape(floors()[name])} \|", table)


#: A TIFF whose IFD is corrupt (hypothesis found it by mutating a valid file). tifffile before
#: 2025.9.20 raises a TiffFileError that is not a ValueError, so it escaped the decoder's
#: one-line error: the reason the floor is 2025.9.20.
CORRUPT_IFD = (
    b"II*\x00\x08\x00\x00\x00\x01\x04\x00\x01\x00\x00\x00\x06\x00\x00\x00\x01\x01\x04\x00\x01"
    b"\x00\x00\x00\x05\x00\x00\x00\x02\x01\x03\x00\x03\x00\x00\x00\x86\x00\x00\x00\x03\x01\x03"
    b"\x00\x01\x00\x00\x00\x01\x00\x00\x00\x06\x01\x03\x00\x01\x00\x00\x00\x02\x00\x00\x00\x11"
    b"\x01\x04\x00\x01\x00\x00\x00\x8c\x00\x00\x00\x15\x01\x03\x00\x01\x00\x00\x00\x03\x00\x00"
    b"\x00\x16\x01\x04\x00\x01\x00\x00\x00\x05\x00\x00\x00\x17\x01\x04\x00\x01\x00\x00\x00Z\x00"
    b"\x00\x00\x1c\x01\x03\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x08\x00\x08\x00"
    b"\x08\x00_\x82\xc2\xd9\xcf\xeb\x0f\xa3!\xd7\xd9\x82\xf8\xbd\x10E\xb8\xe8\xcdN\xa9=}\n\x1d"
    b"\xf0B\x13\xb6';\x04;Q\xde,xz2\xd0N\x1c@\xa6yY\xaa\xe9\x7f\xb2\xed\x80q{L\x9bE\x9a\x82\xf8"
    b"_I\xc0\xba\xbf\x7f\xdc\xa1\xe7\x01+\x8b\xed\xbfV\x8f\x07\xe8`\xefL7\x00GM\xc7\xdb\xd0\xb0\x90"
)


@pytest.mark.parametrize("read", [images.probe, images.decode], ids=["header", "pixels"])
def test_a_corrupt_tiff_header_is_a_one_line_image_error(read) -> None:
    with pytest.raises(ImageError) as info:
        read(io.BytesIO(CORRUPT_IFD))
    assert str(info.value).startswith("<stream>: ") and "\n" not in str(info.value)
