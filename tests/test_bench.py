"""lia-upscale bench: the report's shape, the FLOP count, and ours against the naive forward."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

from conftest import BENCHMARK, LARGE, OFFICIAL, need, official_files
from lia_upscale.tools.bench import largest_tile, run_bench
from lia_upscale.tools.measure import macs_per_pixel, synthetic_image
from lia_upscale.tools.pipeline import pipeline_check
from lia_upscale.tools.plot import draw_tradeoff, tradeoff_points
from lia_upscale.cli import main
from lia_upscale.engine import Engine
from lia_upscale.models import load_model, save_weights
from lia_upscale.nn import VARIANTS, PlainUSR

CASE_KEYS = {"seconds", "samples", "output_mp_s", "gflop_s", "peak_mib", "tile", "max_abs_diff"}


def _random_weights(tmp_path: Path, variant: str, scale: int) -> Path:
    torch.manual_seed(0)
    module = PlainUSR(VARIANTS[variant].with_scale(scale)).eval()
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, 0.05)
    path = tmp_path / f"random-{variant}-x{scale}.safetensors"
    save_weights(path, module, variant=variant, scale=scale)
    return path


def test_bench_command_prints_one_json_object(tmp_path: Path) -> None:
    weights = _random_weights(tmp_path, "S", 2)
    result = CliRunner().invoke(main, ["bench", "--weights", str(weights), "--size", "24", "--size", "30",
                                       "--repeats", "2", "--threads", "1", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {"device", "device_name", "torch", "threads", "repeats", "results"} <= set(report)
    assert report["device"] == "cpu" and report["threads"] == 1 and report["repeats"] == 2
    assert [r["size"] for r in report["results"]] == [[24, 24], [30, 30]]
    for r in report["results"]:
        assert r["variant"] == "S" and r["scale"] == 2 and r["precision"] == "fp32"
        assert r["macs_per_pixel"] == pytest.approx(macs_per_pixel(load_model(weights).module))
        assert set(r["cases"]) == {"naive", "whole", "tiled"}
        for case in r["cases"].values():
            assert set(case) == CASE_KEYS
            assert len(case["samples"]) == 2 and case["seconds"] > 0 and case["output_mp_s"] > 0
            assert case["peak_mib"] is not None  # measured in a subprocess
            assert case["max_abs_diff"] < 1e-5  # a random model, the same network
        mp = r["size"][0] * r["size"][1] * 4 / 1e6
        assert r["cases"]["whole"]["output_mp_s"] == pytest.approx(mp / r["cases"]["whole"]["seconds"])
        assert set(r["ratios"]) == {"whole_vs_naive", "tiled_vs_naive", "tiled_vs_whole"}
        ratio = r["cases"]["naive"]["seconds"] / r["cases"]["whole"]["seconds"]
        assert r["ratios"]["whole_vs_naive"] == pytest.approx(ratio)


def test_bench_table_and_case_selection(tmp_path: Path) -> None:
    weights = _random_weights(tmp_path, "U", 4)
    result = CliRunner().invoke(main, ["bench", "--weights", str(weights), "--size", "16", "--repeats", "1",
                                       "--cases", "whole", "--no-memory"])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if "16x16" in line]
    from lia_upscale.tools.cpu import all_cores

    assert len(rows) == len({1, all_cores()})  # one row per thread count: 1 and all cores
    assert all("whole" in row and "random-U-x4" in row for row in rows)
    bad = CliRunner().invoke(main, ["bench", "--weights", str(weights), "--cases", "fastest"])
    assert bad.exit_code == 2 and "--cases" in bad.stderr
    no_eval = CliRunner().invoke(main, ["bench", "--weights", str(weights), "--plot", str(tmp_path / "p.png")])
    assert no_eval.exit_code == 2 and "--eval-dir" in no_eval.stderr


def test_flops_of_base_x4_analytically() -> None:
    """285,025 multiply-adds per input pixel: head 1,809, ten 3x3 block convs 248,832,
    LIA 5,440 (1x1 convs at full size, the rest on 1/9 and 1/36 of the pixels), tail 28,944."""
    module = PlainUSR(VARIANTS["base"])
    assert macs_per_pixel(module) == 285_025
    assert macs_per_pixel(module) == pytest.approx(285_000, rel=0.02)


@pytest.mark.parametrize(("variant", "scale"), [("base", 4), ("U", 2), ("L", 2)])
def test_flops_agree_with_counting_a_forward(variant: str, scale: int) -> None:
    """Count every convolution's multiply-adds on a real forward with hooks: within 2%."""
    module = PlainUSR(VARIANTS[variant].with_scale(scale)).eval()
    total = [0]

    def hook(conv: nn.Conv2d, inputs, output) -> None:
        kh, kw = conv.kernel_size
        total[0] += output.shape[-2] * output.shape[-1] * conv.out_channels * conv.in_channels * kh * kw

    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(hook)
    with torch.no_grad():
        module(torch.rand(1, 3, 240, 240))
    assert total[0] / 240**2 == pytest.approx(macs_per_pixel(module), rel=0.02)


def test_largest_tile_search() -> None:
    assert largest_tile(lambda t: t <= 1000) == 996
    assert largest_tile(lambda t: t <= 1000, resolution=48) == 960
    assert largest_tile(lambda t: False) == 0
    assert largest_tile(lambda t: True, limit=4000) == 3996  # the limit, to the resolution
    probes: list[int] = []
    largest_tile(lambda t: probes.append(t) or t <= 3000, resolution=96)
    assert len(probes) <= 12  # doubling, then bisecting: a few probes, not a scan


def _pairs(folder: Path, scale: int, count: int = 2) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(scale)
    for i in range(count):
        hr = (rng.random((12 * scale, 16 * scale, 3)) * 255).astype(np.uint8)
        Image.fromarray(hr).save(folder / f"img_{i:03d}_HR.png")
        Image.fromarray(hr).resize((16, 12), Image.BICUBIC).save(folder / f"img_{i:03d}_LR.png")


def test_plot_from_measured_throughput_and_psnr(tmp_path: Path) -> None:
    for s in (2, 4):
        _pairs(tmp_path / "set" / f"x{s}", s)
    weights = [_random_weights(tmp_path, "U", 2), _random_weights(tmp_path, "S", 4)]
    plot = tmp_path / "plot.png"
    result = CliRunner().invoke(main, ["bench", "--weights", str(weights[0]), "--weights", str(weights[1]),
                                       "--size", "16", "--repeats", "1", "--cases", "tiled", "--no-memory",
                                       "--eval-dir", str(tmp_path / "set"), "--plot", str(plot), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [q["scale"] for q in report["quality"]] == [2, 4]
    assert all(np.isfinite(q["psnr_y"]) for q in report["quality"])
    assert [b["scale"] for b in report["bicubic"]] == [2, 4]
    points = tradeoff_points(report)
    assert {p["series"] for p in points} == {"x2", "x4", "bicubic"} and len(points) == 4
    with Image.open(plot) as im:
        assert im.format == "PNG" and im.size == (1200, 760)
        colours = {c for _, c in im.getcolors(1 << 20)}
    assert (31, 119, 180) in colours and (255, 127, 14) in colours  # both series drawn


def test_plot_needs_points(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no model"):
        draw_tradeoff({"results": []}, tmp_path / "empty.png")


@pytest.mark.parametrize("lanes", [1, 2])
def test_pipeline_check_reports_wall_against_compute(tmp_path: Path, monkeypatch, lanes: int) -> None:
    from lia_upscale.batch import run as batch

    monkeypatch.setattr(batch, "image_lanes", lambda upscaler, sizes: lanes)
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray((rng.random((40, 56, 3)) * 255).astype(np.uint8)).save(folder / f"p{i}.jpg", quality=90)
    report = pipeline_check(folder, _random_weights(tmp_path, "U", 2), device="cpu", repeats=2)
    assert report["images"] == 3 and report["formats"] == ["JPEG"]
    assert len(report["compute_samples"]) == len(report["wall_samples"]) == 2
    assert report["ratio"] == pytest.approx(
        float(np.median([w / c for w, c in zip(report["wall_samples"], report["compute_samples"])])))
    assert report["input_mp"] == pytest.approx(3 * 40 * 56 / 1e6)
    assert report["lanes"] == lanes
    if lanes == 1:
        assert 0 < report["network_in_batch_s"] < report["wall_s"]
        assert report["waiting_s"] > 0  # the first decode and the last encode at least
    else:  # two networks overlap: their summed time says nothing about waiting
        assert report["network_in_batch_s"] > 0 and report["waiting_s"] is None


@pytest.mark.parametrize("lanes", [1, 2])
def test_pipeline_text_report(tmp_path: Path, monkeypatch, lanes: int) -> None:
    """The table output, not only --json: with two lanes there is no waiting figure to print."""
    from lia_upscale.batch import run as batch

    monkeypatch.setattr(batch, "image_lanes", lambda upscaler, sizes: lanes)
    for i in range(2):
        Image.fromarray(np.full((24, 30, 3), 100 + i, np.uint8)).save(tmp_path / f"a{i}.png")
    result = CliRunner().invoke(main, ["bench", "--cases", "none", "--pipeline", str(tmp_path), "--repeats", "1"])
    assert result.exit_code == 0, result.output
    assert f"{lanes} image(s) at once" in result.output
    assert ("waiting" in result.output) is (lanes == 1)


def test_pipeline_defaults_to_the_embedded_x2_model(tmp_path: Path) -> None:
    """``bench --pipeline`` with no model named runs the embedded default by its registry name."""
    Image.fromarray(np.full((24, 30, 3), 128, np.uint8)).save(tmp_path / "a.png")
    report = run_bench(cases=(), device=torch.device("cpu"), dtypes=[torch.float32], repeats=1, pipeline=tmp_path)
    assert report["results"] == []
    assert report["pipeline"]["model"] == "lia-u-x2"
    assert report["pipeline"]["images"] == 1 and report["pipeline"]["formats"] == ["PNG"]


@pytest.mark.parametrize("name", official_files())
def test_ours_equals_the_naive_forward_on_real_weights(name: str) -> None:
    """The Engine (whole image, and small seam-exact tiles) within 1/255 of the plain module."""
    model = load_model(need(OFFICIAL / name))
    lr = need(BENCHMARK / "Set14" / f"x{model.scale}" / f"img_005_SRF_{model.scale}_LR.png")
    with Image.open(lr) as im:
        image = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)
    with torch.no_grad():
        naive = model.module(image[None])[0]
    whole = Engine(model.module, torch.device("cpu"), torch.float32, 0).run(image)
    tiled = Engine(model.module, torch.device("cpu"), torch.float32, 60).run(image)
    assert (whole - naive).abs().max() < 1 / 255
    assert (tiled - naive).abs().max() < 1 / 255
    assert (whole - naive).abs().max() < 1e-4  # in fact float rounding only


def test_synthetic_image_is_reproducible() -> None:
    a, b = synthetic_image(30, 40), synthetic_image(30, 40)
    assert torch.equal(a, b) and a.shape == (3, 30, 40) and 0 <= float(a.min()) and float(a.max()) <= 1


def test_bench_reports_threads_peak_and_cpu(tmp_path: Path) -> None:
    """One thread and all cores per case, the float32 matmul peak per thread count, each case's
    share of it, and what the CPU offers; the naive case is the upstream port. Timing is not asserted."""
    from lia_upscale.tools.cpu import all_cores

    weights = _random_weights(tmp_path, "S", 2)
    before = torch.get_num_threads()
    result = CliRunner().invoke(main, ["bench", "--weights", str(weights), "--size", "20", "--repeats", "1",
                                       "--no-memory", "--matmul-size", "64", "--json"])
    assert result.exit_code == 0, result.output
    assert torch.get_num_threads() == before  # the bench gives torch its thread count back
    report = json.loads(result.stdout)
    counts = list(dict.fromkeys([1, all_cores()]))
    assert report["thread_counts"] == counts and report["threads"] == max(counts)
    assert "upstream" in report["baseline"]
    cpu = report["cpu"]
    assert {"model", "capability", "flags", "avx512", "logical_cpus", "cores"} <= set(cpu)
    assert cpu["capability"] == torch.backends.cpu.get_cpu_capability()
    assert cpu["avx512"] == ("avx512f" in cpu["flags"])
    assert [p["threads"] for p in report["matmul_peak"]] == counts
    assert all(p["size"] == 64 and p["gflop_s"] > 0 for p in report["matmul_peak"])
    assert [r["threads"] for r in report["results"]] == counts
    for r, p in zip(report["results"], report["matmul_peak"]):
        assert len(r["matmul_samples_gflop_s"]) == 2  # after the warm-up and after the one repeat
        assert p["gflop_s"] == max(p["standalone_gflop_s"], *r["matmul_samples_gflop_s"])  # the best seen
        assert r["matmul_peak_gflop_s"] == p["gflop_s"]
        assert set(r["peak_fraction"]) == set(r["cases"]) == {"naive", "whole", "tiled"}
        for name, share in r["peak_fraction"].items():
            assert share == pytest.approx(r["cases"][name]["gflop_s"] / p["gflop_s"])
            flop = 2 * r["macs_per_pixel"] * 20 * 20
            best = flop / min(r["cases"][name]["samples"]) / 1e9
            assert r["peak_fraction_best"][name] == pytest.approx(best / p["gflop_s"])
        assert r["cases"]["whole"]["max_abs_diff"] < 1e-5  # ours against the upstream port
        c = r["cases"]
        assert r["paired_ratios"]["tiled_vs_whole"] == pytest.approx(
            c["whole"]["samples"][0] / c["tiled"]["samples"][0])  # one round: that round's ratio
    table = CliRunner().invoke(main, ["bench", "--weights", str(weights), "--size", "20", "--repeats", "1",
                                      "--no-memory", "--matmul-size", "64", "--threads", "1"])
    assert table.exit_code == 0, table.output
    assert "% peak" in table.stdout and "matmul peak, 1 thread(s)" in table.stdout
    assert f"torch code path {torch.backends.cpu.get_cpu_capability()}" in table.stdout


def test_bench_restores_threads_when_a_case_fails(tmp_path: Path, monkeypatch) -> None:
    from lia_upscale.tools import bench

    def broken(*args, **kwargs):
        assert torch.get_num_threads() == 1
        raise RuntimeError("boom")

    monkeypatch.setattr(bench, "bench_model", broken)
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="boom"):
        run_bench(weights=[str(_random_weights(tmp_path, "U", 2))], sizes=[16], device=torch.device("cpu"),
                  dtypes=[torch.float32], threads=[1], matmul_size=0)
    assert torch.get_num_threads() == before


def test_photo_sizes_run_the_engine_cases_only(monkeypatch, tmp_path: Path) -> None:
    from lia_upscale.tools import bench

    monkeypatch.setattr(bench, "PHOTO_SIZES", ((18, 24),))
    report = run_bench(weights=[str(_random_weights(tmp_path, "U", 2))], sizes=[16], device=torch.device("cpu"),
                       dtypes=[torch.float32], threads=[1], matmul_size=0, repeats=1, memory=False, photo=True)
    assert [(r["size"], set(r["cases"])) for r in report["results"]] == [
        ([16, 16], {"naive", "whole", "tiled"}), ([18, 24], {"whole", "tiled"})]
    assert report["matmul_peak"] == [] and report["results"][0]["peak_fraction"]["whole"] is None
    assert report["results"][0]["matmul_samples_gflop_s"] == []


def test_bench_size_takes_width_by_height(tmp_path: Path) -> None:
    weights = _random_weights(tmp_path, "U", 2)
    result = CliRunner().invoke(main, ["bench", "--weights", str(weights), "--size", "24x18", "--threads", "1",
                                       "--repeats", "1", "--cases", "whole", "--no-memory", "--matmul-size", "0",
                                       "--json"])
    assert result.exit_code == 0, result.output
    assert [r["size"] for r in json.loads(result.stdout)["results"]] == [[18, 24]]  # [H, W]
    bad = CliRunner().invoke(main, ["bench", "--weights", str(weights), "--size", "24x3"])
    assert bad.exit_code == 2 and "WIDTHxHEIGHT" in bad.stderr


def test_tile_search_caps_probes_by_elements_and_counts_any_allocation_failure():
    import torch

    from lia_upscale.models import load_model
    from lia_upscale.tools import tilesearch

    module = load_model("lia-u-x2").module
    fits = tilesearch.memory_probe(module, torch.device("cpu"), torch.float32)
    edge = int((tilesearch.MAX_ELEMENTS / tilesearch.probe_elements(module, 1)) ** 0.5) + 1
    assert fits(edge) is False  # refused by its size alone: running it would take ~100 GB
    for message, expected in [("CUDA error: CUBLAS_STATUS_ALLOC_FAILED", True),
                              ("Tried to allocate 2.00 GiB", True), ("shape mismatch", False)]:
        assert tilesearch._out_of_memory(RuntimeError(message)) is expected


def test_the_gpu_check_runs_its_logic_on_the_cpu_and_writes_plain_json(tmp_path):
    """scripts/gpu_check.py --dry-run: every check (tiny sizes, CPU) passes and the report is
    JSON (a numpy bool once made it crash after a whole GPU run)."""
    import subprocess
    import sys

    need(OFFICIAL)
    need(BENCHMARK)
    need(LARGE)
    script = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"
    proc = subprocess.run([sys.executable, str(script), str(tmp_path), "--dry-run", "--shared", str(OFFICIAL.parents[1])],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (report_file,) = tmp_path.glob("gpu_check-*.json")
    report = json.loads(report_file.read_text())
    assert set(report["checks"]) == {"fp16_set14", "throughput", "largest_tile", "oom_recovery", "band_path", "doors"}
    assert all(check["ok"] for check in report["checks"].values())
    assert report["checks"]["band_path"]["pixels_equal_float_path"] is True
    assert report["checks"]["doors"]["psnr_ours_vs_plain_db"] >= 40
    assert (tmp_path / "profile.txt").read_text().strip()
