"""The checks to run whenever a CUDA GPU is at hand; one JSON file and a printed summary.

    python scripts/gpu_check.py OUT_DIR [--device cuda] [--shared ../shared]
    python scripts/gpu_check.py OUT_DIR --dry-run          # the same logic, tiny, on the CPU

1. float16 against float32 on Set14 for every official checkpoint present: outputs
   finite without the float32 fallback, PSNR-Y within 0.05 dB.
2. Throughput, float16 and float32, of base and L at x4 on 1 MP and 6 MP inputs: the
   naive float32 forward (the upstream port, tools/upstream.py), our whole-image path and
   our default tiled path (bench cases).
3. The largest tile that fits, per model and precision.
4. Out-of-memory recovery: with the memory capped (``set_per_process_memory_fraction``)
   a whole-image run must run out, the Engine must shrink its tile, and the output must
   still match the uncapped whole-image result.
5. The band-by-band path on the device (a 6-MP image, S x4, to PNG): the streamed file's
   pixels equal the float path's; its time and peak device memory.

Sized for under ~8 minutes on an H100. Exit status 1 when a check fails; every check
runs regardless and its error is recorded in the JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from lia_upscale.pipeline import OutputSpec, process, read
from lia_upscale.api import Upscaler
from lia_upscale.tools.bench import largest_tile, memory_probe
from lia_upscale.tools.benchcases import bench_model
from lia_upscale.tools.measure import device_name, sync, synthetic_image

from lia_upscale.engine import Engine
from lia_upscale.tools.evaluate import evaluate, find_pairs
from lia_upscale.models import load_model

FILES = [f"PlainUSR{v}_Rep_x{s}.pth" for v in ("U", "T", "S", "M", "", "L") for s in (2, 4)]
PSNR_TOLERANCE_DB = 0.05


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


@contextlib.contextmanager
def _true_float32():
    """TF32 off for the duration: with torch's default TF32 convolutions two float32 forwards of
    the same weights differ by up to 1.6/255 (H200), as much as float16 does."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def check_fp16_set14(shared: Path, device: torch.device, dry: bool) -> dict:
    """float16 against true float32 (TF32 off) on Set14, every official checkpoint present."""
    with _true_float32():
        return _fp16_set14(shared, device, dry)


def _fp16_set14(shared: Path, device: torch.device, dry: bool) -> dict:
    out: dict = {"checkpoints": [], "ok": True}
    for name in FILES if not dry else ["PlainUSRU_Rep_x4.pth", "PlainUSRS_Rep_x2.pth"]:
        path = shared / "weights" / "plainusr" / name
        scale = int(name.split("_x")[1][0])
        folder = shared / "datasets" / "benchmark" / "Set14" / f"x{scale}"
        if not path.exists() or not folder.exists():
            continue
        pairs = find_pairs(folder)[: 2 if dry else None]
        row = {"file": name}
        for prec in ("fp32", "fp16"):
            up = Upscaler(weights=path, device=str(device), precision=prec)
            finite = []

            def run(rgb, up=up, finite=finite):
                y = up.engine.run(rgb)
                finite.append(bool(torch.isfinite(y).all()))
                return y.clamp_(0, 1).permute(1, 2, 0).numpy()

            row[f"psnr_{prec}"] = evaluate(pairs, run, scale).psnr_y
            row[f"fallbacks_{prec}"] = up.engine.fallbacks
            row[f"finite_{prec}"] = all(finite)
        row["delta_db"] = row["psnr_fp16"] - row["psnr_fp32"]
        row["ok"] = (row["finite_fp16"] and row["fallbacks_fp16"] == 0
                     and abs(row["delta_db"]) <= PSNR_TOLERANCE_DB)
        out["ok"] &= row["ok"]
        out["checkpoints"].append(row)
    if not out["checkpoints"]:
        out.update(ok=False, error=f"no checkpoint or Set14 under {shared}")
    return out


def check_throughput(shared: Path, device: torch.device, dry: bool, repeats: int) -> dict:
    names = ["PlainUSR_Rep_x4.pth", "PlainUSRL_Rep_x4.pth"] if not dry else ["PlainUSRU_Rep_x4.pth"]
    sizes = [(1024, 1024), (2000, 3000)] if not dry else [(64, 64), (96, 80)]
    dtypes = [torch.float16, torch.float32]
    results = []
    for name in names:
        path = shared / "weights" / "plainusr" / name
        if not path.exists():
            continue
        model = load_model(path)
        for size in sizes:
            results += bench_model(model, size, device, dtypes, repeats=repeats, memory=device.type == "cuda",
                                   on_progress=lambda msg: print(f"    {msg}", flush=True))
    slim = [
        {
            "model": Path(r["model"]).name, "size": r["size"], "precision": r["precision"],
            "output_mp_s": {k: c["output_mp_s"] for k, c in r["cases"].items()},
            "gflop_s": {k: c["gflop_s"] for k, c in r["cases"].items()},
            "peak_mib": {k: c["peak_mib"] for k, c in r["cases"].items()},
            "max_abs_diff": {k: c["max_abs_diff"] for k, c in r["cases"].items()},
            "tile": r["cases"]["tiled"]["tile"],
            "ratios": r["ratios"],
        }
        for r in results
    ]
    # the engine's outputs must stay close to the float32 naive forward; both run as a user's
    # would, so on CUDA float32 convolutions are TF32 (torch's default), as coarse as float16
    tf32 = device.type == "cuda" and torch.backends.cudnn.allow_tf32
    ok = bool(slim) and all(
        (d is None or d < (1 / 255 if s["precision"] == "fp32" and not tf32 else 4 / 255))
        for s in slim for d in s["max_abs_diff"].values()
    )
    return {"ok": ok, "results": slim}


def check_largest_tile(shared: Path, device: torch.device, dry: bool) -> dict:
    if device.type != "cuda":
        return {"ok": True, "skipped": "not a CUDA device"}
    rows = []
    for name in ["PlainUSR_Rep_x4.pth", "PlainUSRL_Rep_x4.pth"]:
        path = shared / "weights" / "plainusr" / name
        if not path.exists():
            continue
        module = load_model(path).module
        for dtype in (torch.float16, torch.float32):
            t0 = time.perf_counter()
            tile = largest_tile(memory_probe(module, device, dtype), start=2048, limit=16384, resolution=128)
            rows.append({"model": name, "precision": str(dtype).split(".")[-1], "tile": tile,
                         "seconds": time.perf_counter() - t0})
    return {"ok": all(r["tile"] > 0 for r in rows), "results": rows}


def check_oom_recovery(shared: Path, device: torch.device, dry: bool) -> dict:
    path = shared / "weights" / "plainusr" / ("PlainUSR_Rep_x4.pth" if not dry else "PlainUSRU_Rep_x4.pth")
    module = load_model(path).module
    size = (2048, 2048) if not dry else (200, 200)
    image = synthetic_image(*size)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    expected = Engine(module, device, dtype, 0).run(image)
    engine = Engine(module, device, dtype, 0)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        total = torch.cuda.get_device_properties(device).total_memory
        budget = torch.cuda.memory_allocated(device) + (1 << 30)  # 1 GiB for activations
        index = device.index if device.index is not None else torch.cuda.current_device()  # torch wants one
        torch.cuda.set_per_process_memory_fraction(budget / total, index)
        try:
            got = engine.run(image)
        finally:
            torch.cuda.set_per_process_memory_fraction(1.0, index)
            torch.cuda.empty_cache()
    else:  # the logic only: a batch "runs out of memory" above 150x150 input pixels
        forward = engine._forward

        def capped(batch, regions, full):
            if batch.shape[0] * batch.shape[-2] * batch.shape[-1] > 150 * 150:
                raise torch.cuda.OutOfMemoryError("simulated out of memory")
            return forward(batch, regions, full)

        engine._forward = capped
        got = engine.run(image)
    diff = float((got.clamp(0, 1) - expected.clamp(0, 1)).abs().max())
    psnr = _psnr(got.clamp(0, 1), expected.clamp(0, 1))
    ok = 0 < engine.tile < max(size) and diff <= 2 / 255 and psnr >= 50
    return {"ok": ok, "input": list(size), "precision": str(dtype).split(".")[-1], "tile_after": engine.tile,
            "max_batch_pixels_after": engine.max_batch_pixels, "max_abs_diff": diff, "psnr_db": psnr}


def check_band_path(shared: Path, device: torch.device, dry: bool) -> dict:
    """The band-by-band path on the device: tiles cross-faded there, finished rectangles copied
    back; the streamed PNG must hold exactly the float path's pixels rounded to 8 bits."""
    import tempfile

    from lia_upscale import images

    path = shared / "weights" / "plainusr" / ("PlainUSRS_Rep_x4.pth" if not dry else "PlainUSRU_Rep_x4.pth")
    size = (2128, 2832) if not dry else (150, 200)
    rgb = (synthetic_image(*size).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    picture = images.Picture(rgb=rgb, alpha=None, bit_depth=8, kind="rgb", format="PNG")
    up = Upscaler(weights=path, device=str(device))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        process(up, picture, Path(tmp) / "out.png", OutputSpec(overwrite=True))
        seconds = time.perf_counter() - t0
        limit = images.max_pixels()
        images.set_max_pixels(max(limit, size[0] * size[1] * 16))  # the x4 output is read back whole
        try:
            got = np.asarray(images.decode(Path(tmp) / "out.png").float_rgb())
        finally:
            images.set_max_pixels(limit)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    ref = up.engine.run(picture.rgb).clamp(0, 1).permute(1, 2, 0).numpy()
    equal = bool(np.array_equal(np.rint(got * 255), np.rint(ref * 255)))
    return {"ok": equal, "input": list(size), "seconds": seconds, "device_peak_gib": peak,
            "pixels_equal_float_path": equal}


def check_doors(shared: Path, device: torch.device, dry: bool, out_dir: Path) -> dict:
    """A camera JPEG as a user runs it, to a JPEG (quality 95): ``Upscaler.upscale_file``
    (decode, tiles, encode; float16 on CUDA) against the plain script a user would write with
    the same weights (Pillow decode, the upstream network in float32 on the whole image,
    quantised on the device, copied back, Pillow encode). Times the Upscaler's phases and
    writes a torch profile of one run (profile.txt)."""
    import tempfile

    from PIL import Image, ImageOps
    from torch.profiler import ProfilerActivity, profile

    from lia_upscale.tools.upstream import upstream_from_state_dict

    weights = shared / "weights" / "plainusr" / ("PlainUSR_Rep_x4.pth" if not dry else "PlainUSRU_Rep_x4.pth")
    photo = sorted((shared / "datasets" / "large").rglob("*.JPG"))[0]
    up = Upscaler(weights=weights, device=str(device))
    naive = upstream_from_state_dict(load_model(weights).module.state_dict()).to(device)
    with tempfile.TemporaryDirectory() as tmp:
        src = photo
        if dry:
            src = Path(tmp) / "small.jpg"
            Image.open(photo).crop((0, 0, 120, 90)).save(src, quality=95)

        def plain(dst: Path) -> None:
            rgb = np.array(ImageOps.exif_transpose(Image.open(src)).convert("RGB"))
            x = torch.from_numpy(rgb).to(device).permute(2, 0, 1)[None].float().div(255)
            with torch.inference_mode():
                y = naive(x)[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
            Image.fromarray(y).save(dst, quality=95, subsampling=0)  # 4:4:4, as ours writes

        def ours(dst: Path) -> None:
            up.upscale_file(src, dst, quality=95)

        times: dict[str, float] = {}
        for name, fn in (("plain", plain), ("ours", ours)):
            fn(Path(tmp) / f"warm-{name}.jpg")
            sync(device)
            t0 = time.perf_counter()
            fn(Path(tmp) / f"{name}.jpg")
            sync(device)
            times[name] = time.perf_counter() - t0
        t0 = time.perf_counter()
        picture = read(up, src)
        times["ours_decode"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        process(up, picture, Path(tmp) / "render.jpg", OutputSpec(quality=95, overwrite=True))
        sync(device)
        times["ours_upscale_and_encode"] = time.perf_counter() - t0
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=activities) as prof:
            ours(Path(tmp) / "profiled.jpg")
            sync(device)
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30)
        if device.type == "cuda":
            table += "\n" + prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=15)
        (out_dir / "profile.txt").write_text(table)
        a = np.asarray(Image.open(Path(tmp) / "plain.jpg").convert("RGB"), dtype=np.float64)
        b = np.asarray(Image.open(Path(tmp) / "ours.jpg").convert("RGB"), dtype=np.float64)
        same_size = a.shape == b.shape
        psnr = 10 * np.log10(255.0**2 / max(float(((a - b) ** 2).mean()), 1e-12)) if same_size else 0.0
    # the same weights on the same photo: the two files differ only by precision and encoder
    return {"ok": same_size and psnr >= 40, "photo": src.name, "output": [b.shape[1], b.shape[0]],
            "psnr_ours_vs_plain_db": psnr, "timings": times, "ours_over_plain": times["ours"] / times["plain"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="Folder for the JSON file.")
    parser.add_argument("--device", default=None, help="cuda (default when present), cuda:N or cpu.")
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared",
                        help="The reference data folder (weights/plainusr, datasets/benchmark).")
    parser.add_argument("--dry-run", action="store_true", help="Tiny sizes and models: test the logic.")
    parser.add_argument("--repeats", type=int, default=2, help="Timed runs per case (default 2).")
    parser.add_argument("--only", default="", help="Comma-separated checks to run (default: all).")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type != "cuda" and not args.dry_run:
        parser.error("no CUDA device: run with --dry-run to check the logic on the CPU")
    report: dict = {
        "device": str(device), "device_name": device_name(device), "torch": torch.__version__,
        "cuda": torch.version.cuda, "dry_run": args.dry_run, "checks": {},
    }
    if device.type == "cuda":
        report["total_memory_gib"] = torch.cuda.get_device_properties(device).total_memory / 2**30
    checks = {
        "fp16_set14": lambda: check_fp16_set14(args.shared, device, args.dry_run),
        "throughput": lambda: check_throughput(args.shared, device, args.dry_run, args.repeats),
        "largest_tile": lambda: check_largest_tile(args.shared, device, args.dry_run),
        "oom_recovery": lambda: check_oom_recovery(args.shared, device, args.dry_run),
        "band_path": lambda: check_band_path(args.shared, device, args.dry_run),
        "doors": lambda: check_doors(args.shared, device, args.dry_run, args.out_dir),
    }
    if args.only:
        unknown = set(args.only.split(",")) - set(checks)
        if unknown:
            parser.error(f"unknown check(s) {', '.join(sorted(unknown))}; choose from {', '.join(checks)}")
        checks = {name: checks[name] for name in args.only.split(",")}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", report["device_name"]).strip("-").lower()
    path = args.out_dir / f"gpu_check-{slug}.json"
    started = time.perf_counter()
    for name, check in checks.items():
        t0 = time.perf_counter()
        try:
            result = check()
        except Exception as exc:  # record it and go on with the other checks
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        result["seconds"] = time.perf_counter() - t0
        report["checks"][name] = result
        print(f"[{'ok' if result['ok'] else 'FAIL'}] {name} ({result['seconds']:.0f}s)", flush=True)
        report["seconds"] = time.perf_counter() - started
        report["ok"] = all(c["ok"] for c in report["checks"].values())
        # rewritten after every check, so a run cut short still leaves what it measured
        path.write_text(json.dumps(report, indent=1, default=_plain))
    _summary(report)
    print(f"wrote {path}")
    return 0 if report["ok"] else 1


def _plain(value):
    """numpy scalars (np.bool_, np.float32, ...) as the Python values JSON knows."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _summary(report: dict) -> None:
    print(f"{report['device_name']} ({report['device']}), torch {report['torch']}, {report['seconds']:.0f}s")
    checks = report["checks"]
    for row in checks.get("fp16_set14", {}).get("checkpoints", []):
        print(f"  {row['file']:<22} Set14 fp32 {row['psnr_fp32']:.3f}  fp16 {row['psnr_fp16']:.3f}  "
              f"delta {row['delta_db']:+.3f} dB  fallbacks {row['fallbacks_fp16']}  {'ok' if row['ok'] else 'FAIL'}")
    for r in checks.get("throughput", {}).get("results", []):
        mp = r["output_mp_s"]
        print(f"  {r['model']:<22} {r['size'][0]}x{r['size'][1]} {r['precision']}: naive {mp.get('naive', 0):.1f}"
              f"  whole {mp.get('whole', 0):.1f}  tiled({r['tile']}) {mp.get('tiled', 0):.1f} MP/s out")
    for r in checks.get("largest_tile", {}).get("results", []):
        print(f"  largest tile {r['model']} {r['precision']}: {r['tile']} px")
    oom = checks.get("oom_recovery", {})
    if "tile_after" in oom:
        print(f"  out of memory: tile 0 -> {oom['tile_after']}, max diff {oom['max_abs_diff'] * 255:.2f}/255, "
              f"PSNR {oom['psnr_db']:.1f} dB")
    band = checks.get("band_path", {})
    if "seconds" in band and "error" not in band:
        print(f"  band path: {band['input'][1]}x{band['input'][0]} in {band['seconds']:.1f}s, "
              f"pixels equal the float path: {band['pixels_equal_float_path']}")
    doors = checks.get("doors", {})
    if "timings" in doors:
        print("  camera JPEG to JPEG: " + ", ".join(f"{k} {v:.2f}s" for k, v in doors["timings"].items()))
    for name, c in checks.items():
        if "error" in c:
            print(f"  {name}: {c['error']}")


if __name__ == "__main__":
    sys.exit(main())
