"""Issue 25 at the weight files, ``convert``, ``train --out`` and ``weights install``: every
tensor's shape is checked before any is read (training form too), a destination that
exists is refused without --overwrite and its own source always, a device is never
replaced, a download stops at its stated size or our maximum, and the messages name the
real problem.
"""

from __future__ import annotations

import http.server
import json
import os
import stat
import struct
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from lia_upscale.cli import main
from lia_upscale.errors import WeightsError
from lia_upscale.models import convert, load_model, read_any_safetensors, save_weights

sys.path.insert(0, str(Path(__file__).parent))
from test_thirdparty import _TrainNet  # noqa: E402  (upstream's training form, written independently)


def _official_pth(tmp_path: Path, nearest_weights) -> Path:
    """A flat .pth state dict, as the official checkpoints are."""
    state = load_model(nearest_weights[2]).module.state_dict()
    path = tmp_path / "PlainUSRU_Rep_x2.pth"
    torch.save(state, path)
    return path


def _sparse_safetensors(path: Path, shapes: dict[str, tuple[int, ...]], metadata: dict[str, str]) -> Path:
    """A safetensors file declaring these F32 tensors, its data a hole of zeros (no RAM, no disk)."""
    header, offset = {}, 0
    for name, shape in shapes.items():
        n = 4
        for d in shape:
            n *= d
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
    os.truncate(path, 8 + len(raw) + offset)
    return path


_PEAK = r"""
import sys
from lia_upscale.errors import WeightsError
from lia_upscale.models import load_model
try:
    load_model(sys.argv[1])
    print("loaded")
except WeightsError as exc:
    print("refused", exc)
print(next(int(line.split()[1]) // 1024 for line in open("/proc/self/status") if line.startswith("VmHWM")))
"""


def test_a_training_form_safetensors_declaring_a_gigabyte_tensor_is_refused_unallocated(tmp_path):
    shapes = {k: tuple(v.shape) for k, v in _TrainNet("U", 2).state_dict().items()}
    m = shapes["block1.body.0.expand_conv.weight"][0]
    shapes["block1.body.0.se.se.1.weight"] = (2**28 // m, m)  # 1 GiB of float32 squeeze weights
    shapes["block1.body.0.se.se.3.weight"] = (m, 2**28 // m)
    path = _sparse_safetensors(tmp_path / "train.safetensors", shapes, {"trainer": "someone"})
    assert path.stat().st_size > 2**31
    proc = subprocess.run([sys.executable, "-c", _PEAK, str(path)], capture_output=True, text=True, timeout=180)
    verdict, peak_mib = proc.stdout.splitlines()
    assert verdict.startswith("refused") and "training-form checkpoint" in verdict and "se" in verdict, proc.stdout
    assert int(peak_mib) < 600, peak_mib  # torch's import; reading the tensors would be over 2 GiB


def test_a_training_form_safetensors_still_loads(tmp_path):
    torch.manual_seed(0)
    state = {k: v.contiguous() for k, v in _TrainNet("U", 2).state_dict().items()}
    save_file(state, str(tmp_path / "t.safetensors"))
    tensors, notes = read_any_safetensors(tmp_path / "t.safetensors")
    assert notes == ["no lia-upscale metadata"] and set(tensors) == set(state)
    assert load_model(tmp_path / "t.safetensors").scale == 2


def test_a_five_thousand_digit_scale_is_a_one_line_refusal(tmp_path, nearest_weights):
    from safetensors import safe_open

    with safe_open(str(nearest_weights[2]), "pt") as f:
        meta = f.metadata()
        state = {k: f.get_tensor(k) for k in f.keys()}
    save_file(state, str(tmp_path / "w.safetensors"), metadata=dict(meta, scale="9" * 5000))
    with pytest.raises(WeightsError) as info:
        load_model(tmp_path / "w.safetensors")
    text = str(info.value)
    assert "is not a whole number" in text and "\n" not in text and len(text) < 400 + 5000


def test_our_safetensors_named_pth_loads_without_torch_warnings(tmp_path, nearest_weights):
    renamed = tmp_path / "model.pth"
    renamed.write_bytes(nearest_weights[2].read_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any library warning fails the test
        model = load_model(renamed)
    assert model.scale == 2
    with pytest.raises(WeightsError, match=r"model.pth: is a safetensors file, not a torch checkpoint"):
        convert(renamed, tmp_path / "out.safetensors")


def test_convert_refuses_an_existing_destination_without_overwrite(tmp_path, nearest_weights):
    src = _official_pth(tmp_path, nearest_weights)
    dst = tmp_path / "notes.txt"
    dst.write_text("my notes")
    result = CliRunner().invoke(main, ["convert", str(src), str(dst)])
    assert result.exit_code == 2 and "exists; not replaced without --overwrite" in result.output, result.output
    assert dst.read_text() == "my notes"
    result = CliRunner().invoke(main, ["convert", str(src), str(dst), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert load_model(dst).scale == 2


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_convert_never_writes_over_its_own_source(tmp_path, nearest_weights, overwrite):
    src = _official_pth(tmp_path, nearest_weights)
    before = src.read_bytes()
    result = CliRunner().invoke(main, ["convert", str(src), str(src), *overwrite])
    assert result.exit_code == 2 and "is the input" in result.output, result.output
    assert src.read_bytes() == before


def _device(path: Path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("making a device node needs root")
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    return path


@pytest.mark.parametrize("kind", ["device", "fifo"])
@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_convert_never_replaces_a_device_or_pipe(tmp_path, nearest_weights, kind, overwrite):
    src = _official_pth(tmp_path, nearest_weights)
    dst = tmp_path / "null"
    _device(dst) if kind == "device" else os.mkfifo(dst)
    result = CliRunner().invoke(main, ["convert", str(src), str(dst), *overwrite])
    assert result.exit_code == 2 and "not a regular file" in result.output, result.output
    assert not stat.S_ISREG(os.lstat(dst).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["PlainUSRU_Rep_x2.pth", "null"]


def test_save_weights_never_replaces_a_device_via_a_link(tmp_path, nearest_weights):
    link = tmp_path / "w.safetensors"
    link.symlink_to("/dev/null")
    with pytest.raises(WeightsError, match="character device, not a regular file"):
        save_weights(link, load_model(nearest_weights[2]).module, overwrite=True)
    assert link.is_symlink() and os.readlink(link) == "/dev/null"


def test_train_refuses_an_existing_out_before_training(tmp_path):
    (tmp_path / "data").mkdir()
    out = tmp_path / "notes.txt"
    out.write_text("my notes")
    result = CliRunner().invoke(main, ["train", str(tmp_path / "data"), "--out", str(out), "--iterations", "1"])
    assert result.exit_code == 2 and "exists; not replaced without --overwrite" in result.output, result.output
    assert out.read_text() == "my notes" and not out.with_suffix(".ckpt").exists()


def test_train_refuses_out_equal_to_its_init(tmp_path, nearest_weights):
    (tmp_path / "data").mkdir()
    init = tmp_path / "w.safetensors"
    init.write_bytes(nearest_weights[2].read_bytes())
    result = CliRunner().invoke(main, ["train", str(tmp_path / "data"), "--out", str(init), "--init", str(init),
                                       "--overwrite", "--iterations", "1"])
    assert result.exit_code == 2 and "is the input" in result.output, result.output
    assert init.read_bytes() == nearest_weights[2].read_bytes()


def test_train_never_writes_over_a_training_image(tmp_path):
    """--out or --checkpoint on one of the training images is refused even with --overwrite
    (found by the second campaign: --out data/big.png replaced the photo with weights)."""
    from PIL import Image

    data = tmp_path / "data" / "sub"
    data.mkdir(parents=True)
    photo = data / "big.png"
    Image.new("RGB", (64, 64), (10, 200, 30)).save(photo)
    before = photo.read_bytes()
    for extra in (["--out", str(photo)], ["--out", str(tmp_path / "w.safetensors"), "--checkpoint", str(photo)]):
        result = CliRunner().invoke(main, ["train", str(tmp_path / "data"), *extra, "--overwrite", "--iterations", "1",
                                           "--batch", "1", "--patch", "8"])
        assert result.exit_code == 2 and ("is the input" in result.output or "is a training image" in result.output), \
            result.output
        assert photo.read_bytes() == before
    assert not (tmp_path / "w.safetensors").exists()


class _Endless(http.server.BaseHTTPRequestHandler):
    """Sends zeros for ever (optionally announcing a Content-Length it then exceeds)."""

    length: str | None = None
    sent = 0

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        if self.length is not None:
            self.send_header("Content-Length", self.length)
        self.end_headers()
        try:
            while type(self).sent < 2**30:
                self.wfile.write(b"\0" * 65536)
                type(self).sent += 65536
        except OSError:
            pass

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("length", [None, "100000"])
def test_weights_install_stops_at_the_stated_size_or_the_maximum(tmp_path, monkeypatch, length):
    from lia_upscale.models import registry

    monkeypatch.setenv("LIA_UPSCALE_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(registry, "MAX_DOWNLOAD_BYTES", 4 * 2**20)
    handler = type("H", (_Endless,), {"length": length, "sent": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # no length: our maximum stops it; a stated length: the read ends there (and the
        # checksum then refuses the 100000 zeros)
        with pytest.raises(WeightsError, match="stopped$" if length is None else "sha256 .* does not match"):
            registry.install(f"http://127.0.0.1:{server.server_port}/PlainUSRU_Rep_x2.pth", deadline_s=60)
    finally:
        server.shutdown()
        server.server_close()
    assert handler.sent < 16 * 2**20  # stopped near the cap, not after a gigabyte
    home = tmp_path / "home"
    assert not home.exists() or [p for p in home.rglob("*") if p.is_file()] == []


def test_weights_install_refuses_an_announced_size_over_the_maximum(tmp_path, monkeypatch):
    from lia_upscale.models import registry

    monkeypatch.setenv("LIA_UPSCALE_HOME", str(tmp_path / "home"))
    handler = type("H", (_Endless,), {"length": str(2**40), "sent": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(WeightsError, match=r"announces 1.00 TiB, more than any PlainUSR checkpoint \(64.0 MiB at most\); refused$"):
            registry.install(f"http://127.0.0.1:{server.server_port}/PlainUSRU_Rep_x2.pth", deadline_s=60)
    finally:
        server.shutdown()
        server.server_close()


def test_a_weight_file_that_is_a_named_pipe_fails_at_once(tmp_path):
    os.mkfifo(tmp_path / "w.safetensors")  # no writer: a blocking open would wait for ever
    result = subprocess.run([sys.executable, "-c", "import sys\nfrom lia_upscale.models import read_header\n"
                             "try:\n    read_header(sys.argv[1])\nexcept Exception as e:\n    print(e)",
                             str(tmp_path / "w.safetensors")], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == f"{tmp_path / 'w.safetensors'}: is a named pipe (FIFO), not a weight file"
