"""Weight files -> models: detection, strict loading, our safetensors format, safe .pth."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from conftest import OFFICIAL, need, official_files
from lia_upscale.errors import WeightsError
from lia_upscale.models import (
    Model,
    check_shapes,
    convert,
    detect_config,
    expected_shapes,
    load_model,
    load_state,
    read_header,
    read_pth,
    read_safetensors,
    save_weights,
)
from lia_upscale.models import weightfile
from lia_upscale.nn import VARIANTS, PlainUSR, PlainUSRConfig

CASES = [(v, s) for v in VARIANTS for s in (2, 4)]

#: Parameter counts from the upstream README table, (variant, scale) -> count.
PARAMS = {
    ("U", 2): 13_628, ("U", 4): 19_820,
    ("T", 2): 48_724, ("T", 4): 60_100,
    ("S", 2): 57_236, ("S", 4): 68_612,
    ("M", 2): 148_932, ("M", 4): 165_492,
    ("base", 2): 311_364, ("base", 4): 333_108,
    ("L", 2): 707_076, ("L", 4): 734_004,
}  # fmt: skip


def random_model(variant: str, scale: int, seed: int = 0) -> PlainUSR:
    torch.manual_seed(seed)
    module = PlainUSR(VARIANTS[variant].with_scale(scale)).eval()
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, 0.1)
    return module


def shapes_of(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def one_line(err: pytest.ExceptionInfo[WeightsError]) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


@pytest.fixture(scope="module")
def u4_state() -> dict[str, torch.Tensor]:
    return random_model("U", 4).state_dict()


# --- round trips ------------------------------------------------------------------------


@pytest.mark.parametrize(("variant", "scale"), CASES)
def test_roundtrip_every_variant(tmp_path: Path, variant: str, scale: int) -> None:
    module = random_model(variant, scale, seed=scale)
    assert sum(p.numel() for p in module.parameters()) == PARAMS[variant, scale]
    config, name = detect_config(shapes_of(module.state_dict()))
    assert (config, name) == (VARIANTS[variant].with_scale(scale), variant)

    path = tmp_path / "w.safetensors"
    written = save_weights(path, module, variant, scale)
    header = read_header(path)
    assert header.metadata == {
        "format": "lia-upscale",
        "format_version": "1",
        "architecture": "PlainUSR",
        "variant": variant,
        "scale": str(scale),
    }
    assert (header.variant, header.scale, header.config) == (variant, scale, config)
    assert header.shapes == written.shapes == expected_shapes(config)

    model = load_model(path)
    assert isinstance(model, Model)
    assert (model.variant, model.scale, model.source, model.path) == (variant, scale, str(path), path)
    assert not model.module.training
    for key, value in module.state_dict().items():
        loaded = model.module.state_dict()[key]
        assert loaded.dtype == torch.float32 and loaded.device.type == "cpu"
        assert torch.equal(loaded, value), key
    x = torch.rand(1, 3, 14, 14, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model.module(x), module(x))


def test_pth_roundtrip_and_convert(tmp_path: Path, u4_state: dict[str, torch.Tensor]) -> None:
    pth = tmp_path / "u4.pth"
    torch.save(u4_state, pth)
    model = load_model(pth)
    assert (model.variant, model.scale) == ("U", 4)
    header = convert(pth, tmp_path / "u4.safetensors")
    assert (header.variant, header.scale) == ("U", 4)
    _, state = read_safetensors(tmp_path / "u4.safetensors")
    assert all(torch.equal(state[k], v) for k, v in u4_state.items())
    # an unknown suffix is sniffed by content
    for src, dst in ((pth, "a.weights"), (tmp_path / "u4.safetensors", "b.weights")):
        (tmp_path / dst).write_bytes(src.read_bytes())
        assert load_model(tmp_path / dst).variant == "U"
    assert (tmp_path / "u4.safetensors").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("wrapper", ["params_ema", "params"])
def test_pth_wrappers_unwrapped(tmp_path: Path, u4_state: dict[str, torch.Tensor], wrapper: str) -> None:
    pth = tmp_path / "wrapped.pth"
    other = {k: torch.zeros_like(v) for k, v in u4_state.items()}
    # params_ema wins over params when both are present
    torch.save({wrapper: u4_state, "params" if wrapper == "params_ema" else "x": other}, pth)
    state = read_pth(pth)
    assert all(torch.equal(state[k], v) for k, v in u4_state.items())


def test_half_precision_state_saved_as_float32(tmp_path: Path, u4_state: dict[str, torch.Tensor]) -> None:
    half = {k: v.half() for k, v in u4_state.items()}
    save_weights(tmp_path / "h.safetensors", half)
    header, state = read_safetensors(tmp_path / "h.safetensors")
    assert set(header.dtypes.values()) == {"F32"}
    assert all(torch.equal(state[k], v.float()) for k, v in half.items())


def test_save_refuses_wrong_variant_or_scale(tmp_path: Path, u4_state: dict[str, torch.Tensor]) -> None:
    with pytest.raises(WeightsError, match=r"asked to save variant T x4 but the tensors are variant U x4"):
        save_weights(tmp_path / "w.safetensors", u4_state, "T", 4)
    with pytest.raises(WeightsError, match=r"variant U x2 .* variant U x4"):
        save_weights(tmp_path / "w.safetensors", u4_state, "U", 2)
    assert list(tmp_path.iterdir()) == []


def test_save_is_atomic(tmp_path: Path, u4_state: dict[str, torch.Tensor], monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "w.safetensors"
    save_weights(path, u4_state)
    before = path.read_bytes()

    def boom(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(weightfile.os, "replace", boom)
    with pytest.raises(WeightsError, match="No space left"):
        save_weights(path, random_model("U", 4, seed=5))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


# --- detection and the strict check -------------------------------------------------------


def test_strict_check_lists_all_problems_sorted(u4_state: dict[str, torch.Tensor]) -> None:
    state = dict(u4_state)
    del state["block2.body.2.bias"], state["block1.body.0.bias"]
    state["extra.weight"] = torch.zeros(1)
    state["aaa"] = torch.zeros(1)
    state["blockm.body.2.weight"] = torch.zeros(8, 8, 1, 1)
    module = PlainUSR(VARIANTS["U"])
    with pytest.raises(WeightsError) as err:
        load_state(module, state)
    assert one_line(err) == (
        "state dict does not fit the network: "
        "missing keys: block1.body.0.bias, block2.body.2.bias; "
        "unexpected keys: aaa, extra.weight; "
        "wrong shapes: blockm.body.2.weight (expected (8, 8, 3, 3), found (8, 8, 1, 1))"
    )
    # detection on the same shapes reaches the same verdict, before any tensor is needed
    with pytest.raises(WeightsError) as err2:
        detect_config(shapes_of(state))
    assert str(err2.value) == str(err.value)


def test_load_state_refuses_non_finite(u4_state: dict[str, torch.Tensor]) -> None:
    state = dict(u4_state)
    state["tail.0.bias"] = torch.full_like(state["tail.0.bias"], float("nan"))
    with pytest.raises(WeightsError, match="tail.0.bias contains NaN"):
        load_state(PlainUSR(VARIANTS["U"]), state)


def test_check_shapes_truncates_long_lists() -> None:
    expected = {f"k{i:02d}": (1,) for i in range(20)}
    with pytest.raises(WeightsError, match=r"missing keys: k00, k01, .*k07 and 12 more$"):
        check_shapes(expected, {})


def test_unknown_config_names_expected_and_found() -> None:
    odd = PlainUSRConfig(24, (24, 12, 24), 2, "light", 0, 4)
    with pytest.raises(WeightsError) as err:
        detect_config(expected_shapes(odd))
    text = one_line(err)
    assert "found n=24 widths=24-12-24 convs=2 light x4" in text
    assert "expected one of U: n=16 widths=16-8-16 convs=2 light x4" in text
    assert "L: n=80 widths=80-64-48-64-80 convs=3 lia f=16 x4" in text


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: {}, "empty state dict"),
        (lambda s: {k: v for k, v in s.items() if k != "head.weight"}, "no head.weight"),
        (lambda s: {"conv_first.weight": (64, 3, 3, 3)}, "no head.weight .found conv_first.weight"),
        (lambda s: {**s, "head.weight": (19,)}, "head.weight has shape .19,.; expected 4 dimensions"),
        (lambda s: {**s, "head.weight": (19, 4, 3, 3)}, r"expected \(n\+3, 3, 3, 3\)"),
        (lambda s: {**s, "head.weight": (3, 3, 3, 3)}, "n >= 1"),
        (lambda s: {**s, "tail.0.weight": (15, 19, 3, 3)}, "15 output channels; expected 3.s.2"),
        (lambda s: {**s, "tail.0.weight": (2, 19, 3, 3)}, "2 output channels"),
        (lambda s: {k: v for k, v in s.items() if not k.startswith("tail")}, "no tail.0.weight"),
        (lambda s: {k: v for k, v in s.items() if not k.startswith("blockm")}, "found block1, block2$"),
        (lambda s: {k: v for k, v in s.items() if k != "block1.body.0.weight"}, "block1 has no body.0.weight"),
        (lambda s: {**s, "block1.body.3.body.0.weight": (16, 16, 3, 3)}, "unsupported attention layout"),
        (lambda s: {**s, "blockm.body.3.body.0.weight": (8, 8, 1, 1)}, "light attention expects a 3x3"),
        (lambda s: {**s, "blockm.body.4.weight": (8, 8, 3, 3)}, "disagree on their convolution count"),
        (lambda s: {**s, "head.weight": "nonsense"}, "has no tensor shape"),
        (lambda s: {**s, 7: (1,)}, "has no tensor shape"),
    ],
)
def test_garbage_shapes_give_one_clean_error(u4_state: dict[str, torch.Tensor], mutate, message: str) -> None:
    shapes = mutate(shapes_of(u4_state))
    with pytest.raises(WeightsError, match=message) as err:
        detect_config(shapes)
    one_line(err)


def test_lia_layout_errors() -> None:
    shapes = expected_shapes(VARIANTS["S"])
    shapes["block2.body.3.body.0.weight"] = (8, 32, 1, 1)
    with pytest.raises(WeightsError, match=r"block1=lia\(f=4\), block2=lia\(f=8\)"):
        detect_config(shapes)
    shapes = expected_shapes(VARIANTS["S"])
    shapes["block1.body.3.body.0.weight"] = (4, 32, 3, 3)
    with pytest.raises(WeightsError, match="LIA expects a 1x1"):
        detect_config(shapes)


# --- the safetensors header, validated before any tensor ---------------------------------


def _metadata(**changes: str) -> dict[str, str]:
    meta = {"format": "lia-upscale", "format_version": "1", "architecture": "PlainUSR", "variant": "U", "scale": "4"}
    meta.update(changes)
    return {k: v for k, v in meta.items() if v != ""}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"variant": "T"}, "metadata says variant T x4 but the tensors are variant U x4"),
        ({"scale": "2"}, "metadata says variant U x2 but the tensors are variant U x4"),
        ({"variant": "XL"}, "metadata variant 'XL' is not one of"),
        ({"scale": "four"}, "metadata scale 'four' is not a whole number"),
        ({"format": ""}, "not a lia-upscale weight file"),
        ({"format_version": "2"}, "unsupported format_version '2'"),
        ({"architecture": "ESRGAN"}, "architecture is 'ESRGAN'"),
    ],
)
def test_metadata_must_agree_with_shapes(
    tmp_path: Path, u4_state: dict[str, torch.Tensor], monkeypatch: pytest.MonkeyPatch, changes: dict[str, str], message: str
) -> None:
    path = tmp_path / "bad.safetensors"
    save_file(u4_state, path, metadata=_metadata(**changes))

    def no_tensors(*args: object, **kwargs: object) -> None:
        raise AssertionError("tensors were loaded before the header was validated")

    monkeypatch.setattr(weightfile, "_safetensors_load", no_tensors)
    # without our format, load_model reads the file as a third-party one (tests/test_thirdparty.py)
    for read in (read_header,) if "format" in changes else (read_header, load_model):
        with pytest.raises(WeightsError, match=message) as err:
            read(path)
        assert one_line(err).startswith(f"{path}: ")


def test_header_shapes_checked_strictly(tmp_path: Path, u4_state: dict[str, torch.Tensor]) -> None:
    state = dict(u4_state)
    state["stray"] = torch.zeros(2)
    path = tmp_path / "stray.safetensors"
    save_file(state, path, metadata=_metadata())
    with pytest.raises(WeightsError, match="unexpected keys: stray$"):
        read_header(path)
    state = {k: v.to(torch.int32) if k == "head.bias" else v for k, v in u4_state.items()}
    save_file(state, path, metadata=_metadata())
    with pytest.raises(WeightsError, match="'head.bias' has dtype I32; expected floating point"):
        read_header(path)


def _container(header: object, data: bytes = b"", length: int | None = None) -> bytes:
    raw = json.dumps(header).encode() if not isinstance(header, bytes) else header
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a safetensors file .only 0 bytes"),
        (b"\x89PNG\r\n\x1a\n" + bytes(64), "header length .* is implausible"),
        (b"hello world, this is text\n", "header length .* is implausible"),
        (_container(b"{}", length=1000), "truncated: header of 1000 bytes"),
        (_container(b"\xff\xfe{"), "header is not JSON"),
        (_container([1, 2]), "not a JSON object"),
        (_container(b"[" * 5000 + b"]" * 5000), "header is not JSON"),
        (_container({"__metadata__": {"a": 1}}), "__metadata__ must map strings to strings"),
        (_container({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, bytes(4)), "truncated: tensors need 8 bytes"),
        (_container({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, bytes(12)), "4 unexpected bytes"),
        (_container({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, bytes(4)), "do not match shape"),
        (_container({"t": {"dtype": "F33", "shape": [2], "data_offsets": [0, 8]}}, bytes(8)), "unknown dtype 'F33'"),
        (_container({"t": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, bytes(8)), "invalid shape"),
        (_container({"t": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, bytes(8)), "invalid data offsets"),
        (_container({"t": 5}), "has no description"),
        (
            _container(
                {
                    "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                    "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
                },
                bytes(12),
            ),
            "not contiguous",
        ),
    ],
)
def test_bad_containers_refused(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "x.safetensors"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=message) as err:
        read_header(path)
    one_line(err)


def test_truncated_file_refused(tmp_path: Path, u4_state: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "w.safetensors"
    save_weights(path, u4_state)
    data = path.read_bytes()
    for cut in (len(data) - 1, len(data) // 2, 20, 5):
        path.write_bytes(data[:cut])
        with pytest.raises(WeightsError, match="truncated|only 5 bytes") as err:
            load_model(path)
        one_line(err)


def test_missing_file(tmp_path: Path) -> None:
    for path in (tmp_path / "none.safetensors", tmp_path / "none.pth"):
        with pytest.raises(WeightsError, match="no such weight file"):
            load_model(path)
    with pytest.raises(WeightsError, match="no such weight file"):
        read_header(tmp_path / "none.safetensors")


# --- .pth files are read weights-only --------------------------------------------------------

EXECUTED: list[str] = []


def _payload(note: str) -> str:
    EXECUTED.append(note)
    return note


class Evil:
    """Unpickling this would run ``_payload``."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (_payload, ("pwned",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickled_object_refused(tmp_path: Path, u4_state: dict[str, torch.Tensor]) -> None:
    zipped = tmp_path / "evil.pth"
    torch.save({**u4_state, "evil": Evil()}, zipped)
    legacy = tmp_path / "legacy.pth"
    torch.save({"params": Evil()}, legacy, _use_new_zipfile_serialization=False)
    raw = tmp_path / "raw.pth"
    raw.write_bytes(pickle.dumps(Evil()))
    odd_suffix = tmp_path / "evil.weights"
    odd_suffix.write_bytes(zipped.read_bytes())
    for path in (zipped, legacy, raw, odd_suffix):
        for read in (read_pth, load_model):
            with pytest.raises(WeightsError, match="refused: the checkpoint needs") as err:
                read(path)
            one_line(err)
    assert EXECUTED == []


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([1, 2, 3], "not a state dict .found list"),
        ({}, "not a state dict .found dict"),
        ({"head.weight": 3}, "entry 'head.weight' is a int"),
        ({1: torch.zeros(1)}, "entry 1 is a Tensor"),
    ],
)
def test_pth_that_is_not_a_state_dict(tmp_path: Path, obj: object, message: str) -> None:
    path = tmp_path / "x.pth"
    torch.save(obj, path)
    with pytest.raises(WeightsError, match=message):
        load_model(path)


def test_pth_garbage(tmp_path: Path) -> None:
    path = tmp_path / "x.pth"
    path.write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(WeightsError, match="not a readable torch checkpoint"):
        read_pth(path)
    path.write_bytes(b"hello")
    with pytest.raises(WeightsError, match="not a readable torch checkpoint"):
        read_pth(path)


# --- the official checkpoints (../shared) ---------------------------------------------------

OFFICIAL_EXPECTED = {f: (v, s) for f, (v, s) in zip(official_files(), CASES)}


@pytest.mark.parametrize("file", official_files())
def test_official_checkpoints(tmp_path: Path, file: str) -> None:
    path = need(OFFICIAL / file)
    state = read_pth(path)
    config, variant = detect_config(shapes_of(state))
    assert (variant, config.scale) == OFFICIAL_EXPECTED[file]
    model = load_model(path)
    assert (model.variant, model.scale) == OFFICIAL_EXPECTED[file]
    assert sum(p.numel() for p in model.module.parameters()) == PARAMS[OFFICIAL_EXPECTED[file]]
    # and through our format, bit for bit
    header = convert(path, tmp_path / "w.safetensors")
    assert (header.variant, header.scale) == OFFICIAL_EXPECTED[file]
    again = load_model(tmp_path / "w.safetensors")
    for key, value in state.items():
        assert torch.equal(again.module.state_dict()[key], value.float()), key
