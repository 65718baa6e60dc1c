"""Named models: cards, folders, resolving names and installing official checkpoints."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from conftest import OFFICIAL, need, official_files
from lia_upscale.errors import WeightsError
from lia_upscale.models import (
    CARDS,
    card_for_file,
    default_model_name,
    embedded_weights_dir,
    get_card,
    install,
    list_models,
    load_model,
    read_header,
    resolve,
    save_weights,
    user_weights_dir,
)
from lia_upscale.nn import VARIANTS, PlainUSR

OFFICIAL_NAMES = [f"plainusr-{v}-x{s}" for v in ("u", "t", "s", "m", "base", "l") for s in (2, 4)]


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty LIA_UPSCALE_HOME and embedded-weights folder."""
    monkeypatch.setenv("LIA_UPSCALE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LIA_UPSCALE_EMBEDDED", str(tmp_path / "embedded"))
    return tmp_path / "home"


def weights_folder_contents() -> list[str]:
    folder = user_weights_dir()
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class _TruncatingHandler(BaseHTTPRequestHandler):
    """Promises 1000 bytes, sends 100, closes the connection."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"\0" * 100)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve(handler: type[BaseHTTPRequestHandler] | partial) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 (free port) in a thread; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def serve_folder(folder: Path):
    return serve(partial(_QuietHandler, directory=str(folder)))


def sample_output(model_or_path) -> torch.Tensor:
    module = model_or_path.module
    x = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return module(x)


# --- cards and folders --------------------------------------------------------------------


def test_cards() -> None:
    assert list(CARDS) == ["lia-photo-x2", "lia-photo-x4", "lia-u-x2", "lia-u-x4", *OFFICIAL_NAMES]
    for name, file in zip(OFFICIAL_NAMES, official_files()):
        card = get_card(name)
        assert card.file == file and card_for_file(file) is card
        assert card.url == f"https://github.com/icandle/PlainUSR/raw/main/2024_PlainUSR_ACCV/pretrained_model/{file}"
        assert card.licence == "MIT" and not card.embedded
        assert (card.variant, card.scale) in {(v, s) for v in VARIANTS for s in (2, 4)}
        assert len(card.sha256 or "") == 64
    for scale in (2, 4):
        card = get_card(default_model_name(scale))
        assert (card.name, card.variant, card.scale) == (f"lia-u-x{scale}", "U", scale)
        assert card.embedded and card.file == f"lia-u-x{scale}.safetensors" and card.sha256 is None
        photo = get_card(default_model_name(scale, "photo"))
        assert (photo.name, photo.variant, photo.scale, photo.purpose) == (f"lia-photo-x{scale}", {2: "M", 4: "L"}[scale], scale, "photo")
        version = {2: 3, 4: 4}[scale]
        assert photo.embedded and photo.file == f"lia-photo-x{scale}.v{version}.safetensors" and photo.version == version
        if scale == 4:  # base, the x4 default before L, stays loadable by its pinned name
            third = get_card("lia-photo-x4@3")
            assert third.variant == "base" and third.file == "lia-photo-x4.v3.safetensors" and not third.default
        first = get_card(f"lia-photo-x{scale}@1")  # version 1 stays loadable by its pinned name
        assert first.file == f"lia-photo-x{scale}.safetensors" and first.version == 1 and not first.default
    assert card_for_file("lia-u-x2.safetensors") is None
    with pytest.raises(WeightsError, match="no default clean model for x3 .default scales: x2, x4"):
        default_model_name(3)


def test_card_digests_match_shared_sums() -> None:
    sums = need(OFFICIAL / "SHA256SUMS").read_text().split("\n")
    published = dict(reversed(line.split()) for line in sums if line.strip())
    assert {c.file: c.sha256 for c in CARDS.values() if not c.embedded} == published


def test_user_weights_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert user_weights_dir() == tmp_path / "home" / "weights"
    monkeypatch.delenv("LIA_UPSCALE_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert user_weights_dir() == tmp_path / "xdg" / "lia-upscale" / "weights"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert user_weights_dir() == tmp_path / "user" / ".local" / "share" / "lia-upscale" / "weights"


def test_embedded_weights_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert embedded_weights_dir() == tmp_path / "embedded"
    monkeypatch.delenv("LIA_UPSCALE_EMBEDDED")
    # a source checkout: top-level weights/ (unless a wheel maps it to lia_upscale.weights)
    assert (embedded_weights_dir() / "lia-u-x2.safetensors").is_file()


def test_unknown_name_lists_known() -> None:
    with pytest.raises(WeightsError, match=r"unknown model 'plainusr-xl-x4'; known models: lia-photo-x2, lia-photo-x4, lia-u-x2, lia-u-x4, plainusr-u-x2, "):
        resolve("plainusr-xl-x4")
    with pytest.raises(WeightsError, match="unknown model 'plainusr-xl-x4'"):
        load_model("plainusr-xl-x4")


def test_official_not_installed_says_how() -> None:
    url = get_card("plainusr-m-x2").url
    with pytest.raises(WeightsError, match=f"model plainusr-m-x2 is not installed; install it with: lia-upscale weights install {url}$"):
        load_model("plainusr-m-x2")


def test_embedded_missing_then_present(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="built-in weights lia-u-x4 are missing"):
        load_model("lia-u-x4")
    torch.manual_seed(3)
    module = PlainUSR(VARIANTS["U"].with_scale(4))
    save_weights(tmp_path / "embedded" / "lia-u-x4.safetensors", module, "U", 4)
    model = load_model("lia-u-x4")
    assert (model.variant, model.scale, model.source) == ("U", 4, "lia-u-x4")
    assert model.path == tmp_path / "embedded" / "lia-u-x4.safetensors"
    assert all(torch.equal(model.module.state_dict()[k], v) for k, v in module.state_dict().items())
    listed = {card.name: path for card, path in list_models()}
    assert listed["lia-u-x4"] == model.path and listed["lia-u-x2"] is None
    assert all(listed[n] is None for n in OFFICIAL_NAMES)


def test_embedded_file_of_the_wrong_scale_refused(tmp_path: Path) -> None:
    save_weights(tmp_path / "embedded" / "lia-u-x2.safetensors", PlainUSR(VARIANTS["U"]), "U", 4)
    with pytest.raises(WeightsError, match="holds variant U x4 but model lia-u-x2 is U x2"):
        load_model("lia-u-x2")


# --- installing -------------------------------------------------------------------------


def test_install_local_file_then_load_by_name(home: Path) -> None:
    src = need(OFFICIAL / "PlainUSRU_Rep_x4.pth")
    seen: list[tuple[str, int, int | None]] = []
    paths = install(src, on_progress=lambda *a: seen.append(a))
    assert paths == [home / "weights" / "plainusr-u-x4.safetensors"]
    assert weights_folder_contents() == ["plainusr-u-x4.safetensors"]
    assert seen[-1] == ("PlainUSRU_Rep_x4.pth", src.stat().st_size, src.stat().st_size)
    header = read_header(paths[0])
    assert header.metadata["origin_sha256"] == get_card("plainusr-u-x4").sha256
    model = load_model("plainusr-u-x4")
    assert (model.variant, model.scale, model.source) == ("U", 4, "plainusr-u-x4")
    assert torch.equal(sample_output(model), sample_output(load_model(src)))
    assert resolve("plainusr-u-x4") == paths[0]
    # reinstalling replaces the file in place
    assert install(src) == paths and weights_folder_contents() == ["plainusr-u-x4.safetensors"]


def test_install_folder_ignores_other_files(home: Path) -> None:
    need(OFFICIAL)
    paths = install(OFFICIAL)  # also holds README.md and SHA256SUMS
    assert sorted(p.name for p in paths) == sorted(f"{n}.safetensors" for n in OFFICIAL_NAMES)
    assert weights_folder_contents() == sorted(f"{n}.safetensors" for n in OFFICIAL_NAMES)
    listed = {card.name: path for card, path in list_models()}
    for name in OFFICIAL_NAMES:
        header = read_header(listed[name])
        card = get_card(name)
        assert (header.variant, header.scale) == (card.variant, card.scale)


def test_install_from_url(home: Path) -> None:
    need(OFFICIAL / "PlainUSRS_Rep_x2.pth")
    with serve_folder(OFFICIAL) as base:
        seen: list[tuple[str, int, int | None]] = []
        paths = install(f"{base}/PlainUSRS_Rep_x2.pth", on_progress=lambda *a: seen.append(a))
    size = (OFFICIAL / "PlainUSRS_Rep_x2.pth").stat().st_size
    assert paths == [home / "weights" / "plainusr-s-x2.safetensors"]
    assert weights_folder_contents() == ["plainusr-s-x2.safetensors"]
    assert seen[-1] == ("PlainUSRS_Rep_x2.pth", size, size)
    model = load_model("plainusr-s-x2")
    assert torch.equal(sample_output(model), sample_output(load_model(OFFICIAL / "PlainUSRS_Rep_x2.pth")))


def _tampered(tmp_path: Path) -> Path:
    """A folder holding a file named like an official checkpoint whose bytes differ."""
    folder = tmp_path / "served"
    folder.mkdir()
    src = OFFICIAL / "PlainUSRU_Rep_x2.pth"
    data = bytearray(src.read_bytes() if src.exists() else b"not the official bytes" * 100)
    data[len(data) // 2] ^= 0xFF
    (folder / "PlainUSRU_Rep_x2.pth").write_bytes(bytes(data))
    return folder


def test_checksum_mismatch_over_http_leaves_nothing(tmp_path: Path) -> None:
    folder = _tampered(tmp_path)
    with serve_folder(folder) as base:
        with pytest.raises(WeightsError, match="PlainUSRU_Rep_x2.pth: sha256 [0-9a-f]{64} does not match the published 8c6c9f82"):
            install(f"{base}/PlainUSRU_Rep_x2.pth")
    assert weights_folder_contents() == []


def test_checksum_mismatch_local_leaves_nothing(tmp_path: Path) -> None:
    folder = _tampered(tmp_path)
    for source in (folder / "PlainUSRU_Rep_x2.pth", folder):
        with pytest.raises(WeightsError, match="does not match the published"):
            install(source)
    assert weights_folder_contents() == []


def test_truncated_download_leaves_nothing() -> None:
    with serve(_TruncatingHandler) as base:
        with pytest.raises(WeightsError, match=r"(cut short: 100 of 1000 bytes|download of .* failed)"):
            install(f"{base}/PlainUSRU_Rep_x4.pth")
    assert weights_folder_contents() == []


def test_http_error_and_unknown_names(tmp_path: Path) -> None:
    with serve_folder(tmp_path) as base:
        with pytest.raises(WeightsError, match="download of .*/PlainUSRT_Rep_x4.pth failed: HTTP Error 404"):
            install(f"{base}/PlainUSRT_Rep_x4.pth")
        with pytest.raises(WeightsError, match="unknown weight file name 'model.pth'"):
            install(f"{base}/model.pth")
    (tmp_path / "model.pth").write_bytes(b"x")
    with pytest.raises(WeightsError, match="unknown weight file name 'model.pth'; known: PlainUSRU_Rep_x2.pth"):
        install(tmp_path / "model.pth")
    with pytest.raises(WeightsError, match="no official PlainUSR checkpoint"):
        install(tmp_path)
    with pytest.raises(WeightsError, match="no such file, folder or URL"):
        install(tmp_path / "absent.pth")
    with pytest.raises(WeightsError, match="ships with lia-upscale"):
        install("lia-u-x4")
    assert weights_folder_contents() == []


def test_install_checks_digest_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A digest mismatch is found before the file is unpickled at all."""
    from lia_upscale.models import registry

    def no_read(path: object) -> None:
        raise AssertionError("read before the digest was checked")

    monkeypatch.setattr(registry, "read_pth", no_read)
    folder = _tampered(tmp_path)
    with pytest.raises(WeightsError, match="does not match"):
        install(folder / "PlainUSRU_Rep_x2.pth")
    assert hashlib.sha256((folder / "PlainUSRU_Rep_x2.pth").read_bytes()).hexdigest() != get_card("plainusr-u-x2").sha256


def test_cards_are_data_with_versions_purposes_and_defaults() -> None:
    from lia_upscale.models import ALL_CARDS, PURPOSES

    assert {c.purpose for c in ALL_CARDS} <= set(PURPOSES)
    assert get_card("lia-u-x4@1") is get_card("lia-u-x4") is CARDS["lia-u-x4"]
    with pytest.raises(WeightsError, match="unknown model 'lia-u-x4@9'"):
        get_card("lia-u-x4@9")
    assert default_model_name(2, "clean") == "lia-u-x2"
    assert default_model_name(4, "photo") == "lia-photo-x4"
    with pytest.raises(WeightsError, match="no default photo model for x3"):
        default_model_name(3, "photo")


def test_models_table_fits_80_columns_and_shows_descriptions() -> None:
    from click.testing import CliRunner

    from lia_upscale.cli import main

    result = CliRunner(env={"COLUMNS": "80"}).invoke(main, ["models"], terminal_width=80)
    assert result.exit_code == 0
    assert max(len(line) for line in result.output.splitlines()) <= 80
    assert "official deploy weights" in result.output and "x4 clean" in result.output


def test_loaded_model_describes_itself(home: Path) -> None:
    from lia_upscale.engine import Engine
    from lia_upscale.models import load_model

    model = load_model(Path(__file__).resolve().parents[1] / "weights" / "lia-u-x2.safetensors")
    d = model.descriptor
    assert (d.architecture, d.variant, d.scale, d.purpose) == ("PlainUSR", "U", 2, "clean")
    assert (d.min_size, d.alignment, d.feature_channels) == (1, 1, model.config.features + 3)  # U: no LIA
    engine = Engine(model.module, torch.device("cpu"), torch.float32, 0, descriptor=d)
    assert (engine.contract.min_size, engine.contract.alignment, engine.contract.context) == (1, 1, d.context)
