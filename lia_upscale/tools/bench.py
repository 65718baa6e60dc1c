"""Measured speed: the upstream network against our engine, whole and tiled; memory; quality.

Everything here returns data (JSON-ready dicts); the CLI (``lia-upscale bench``) prints.
Speed claims are ratios measured in one process with the cases alternating, repeated,
taking the median, so that background load affects all of them alike.

Cases, for one model, input size, precision and CPU thread count:

- ``naive``: the baseline, :class:`~lia_upscale.tools.upstream.UpstreamPlainUSR` (a
  minimal port of the authors' deploy network, same weights) called as ``model(x)`` on
  the whole image, float32, contiguous NCHW, under ``torch.inference_mode``, its output
  copied to the host as the engine's is (a no-op on the CPU);
- ``whole``: :class:`~lia_upscale.engine.Engine` with ``tile=0`` (our whole-image path);
- ``tiled``: the Engine with its default tile for the device.

Every size runs at one thread and at all cores (:func:`~lia_upscale.tools.cpu.all_cores`)
unless told otherwise, and torch's thread count is restored afterwards. Throughput is
output megapixels per second; achieved GFLOP/s counts two FLOPs per multiply-add of the
network's convolutions (:func:`macs_per_pixel`) over the image's input pixels, so tiling
overlap is not counted as useful work, and is reported as a fraction of the float32
matmul peak (:func:`~lia_upscale.tools.cpu.matmul_peak`) at the same thread count.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..engine import Engine
from ..engine.device import PRECISIONS
from ..models import Model, load_model
from .cpu import all_cores, cpu_features, matmul_peak, matmul_timer, torch_threads
from .measure import Progress, device_name, macs_per_pixel, median, noop, sync, synthetic_image
from .tilesearch import largest_tile, memory_probe
from .upstream import upstream_from_state_dict

__all__ = [
    "CASES",
    "PHOTO_SIZES",
    "bench_model",
    "largest_tile",
    "memory_probe",
    "set_psnr",
    "bicubic_point",
    "run_bench",
]

#: The measured cases, in the order they alternate.
CASES = ("naive", "whole", "tiled")
#: (H, W) of the ``photo`` sizes: a 1-MP and a 12-MP 4:3 photo (engine cases only).
PHOTO_SIZES = ((864, 1152), (3000, 4000))


@dataclass
class _Case:
    name: str
    run: Callable[[], torch.Tensor]
    tile: int
    samples: list[float]


def _make_cases(
    model: Model,
    image: torch.Tensor,
    device: torch.device,
    dtype: torch.dtype,
    cases: Sequence[str],
    tile: int | None = None,
) -> list[_Case]:
    out = []
    for name in cases:
        if name == "naive":
            # the upstream network with the same weights, as its users would call it
            naive = upstream_from_state_dict(model.module.state_dict()).to(device)
            x = image[None].to(device).contiguous()

            def run_naive(naive: nn.Module = naive, x: torch.Tensor = x) -> torch.Tensor:
                with torch.inference_mode():  # on the host, like the engine's result
                    return naive(x)[0].cpu()

            out.append(_Case(name, run_naive, 0, []))
        else:
            engine = Engine(model.module, device, dtype, 0 if name == "whole" else tile)
            out.append(_Case(name, lambda engine=engine: engine.run(image), engine.tile_for_size(tuple(image.shape[-2:])), []))
    return out


# ----------------------------------------------------------------------------- memory


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def peak_child() -> None:
    """Subprocess entry: run one case once and print its peak RSS growth in MiB (JSON)."""
    spec = json.loads(sys.stdin.read())
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    model = load_model(spec["weights"])
    image = synthetic_image(spec["height"], spec["width"])
    (case,) = _make_cases(model, image, torch.device("cpu"), PRECISIONS[spec["precision"]], [spec["case"]],
                          spec.get("tile"))
    before = _status_kib("VmRSS")
    try:  # reset the high-water mark to the current RSS (Linux >= 4.0)
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        before = max(before, _status_kib("VmHWM"))
    case.run()
    print(json.dumps({"peak_mib": (_status_kib("VmHWM") - before) / 1024}))


def _peak_rss_mib(
    model: Model, size: tuple[int, int], precision: str, case: str, threads: int | None, tile: int | None
) -> float | None:
    """Peak resident-memory growth of one CPU case, measured in a fresh process."""
    if not Path("/proc/self/status").exists():
        return None
    spec = dict(weights=str(model.path), height=size[0], width=size[1], precision=precision,
                case=case, threads=threads, tile=tile)
    proc = subprocess.run(
        [sys.executable, "-c", "from lia_upscale.tools.bench import peak_child; peak_child()"],
        input=json.dumps(spec), capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        return None
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["peak_mib"])


def _peak_cuda_mib(case: _Case, device: torch.device) -> float:
    sync(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    case.run()
    sync(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


# ------------------------------------------------------------------------------ cases


def _precision_name(dtype: torch.dtype) -> str:
    return next(k for k, v in PRECISIONS.items() if v == dtype)


def bench_model(
    model: Model,
    size: tuple[int, int],
    device: torch.device,
    dtypes: Sequence[torch.dtype],
    *,
    repeats: int = 3,
    cases: Sequence[str] = CASES,
    memory: bool = True,
    threads: int | None = None,
    tile: int | None = None,
    matmul_size: int = 0,
    on_progress: Progress = noop,
) -> list[dict]:
    """Time ``cases`` for one model and input size, one result per dtype.

    ``tile``: the tiled case's tile edge (None: the engine's default for the device).
    ``matmul_size`` (CPU): one float32 ``matmul_size``-square ``torch.mm`` is timed after
    the warm-up and after each round of cases, so that the matmul peak sees the same load
    as the cases; its GFLOP/s go to each result's ``matmul_samples_gflop_s``.

    ``threads`` is only passed on to the fresh processes that measure memory: the caller
    sets torch's thread count. The naive baseline (the upstream port, float32) is measured
    once and shared by the dtypes' results.
    Each case runs once to warm up, then ``repeats`` times, all cases alternating;
    ``seconds`` is the median. ``ratios``: speed-ups as ratios of the median seconds;
    ``paired_ratios``: the median over the rounds of each round's ratio, which pairs runs
    made seconds apart and so follows a shared machine's changing load better. ``max_abs_diff`` compares each output with the naive
    one (unclamped, float32). Peak memory: CPU, the growth of the resident set in a
    fresh process per case; CUDA, ``torch.cuda.max_memory_allocated`` growth.
    """
    image = synthetic_image(*size)
    runs: list[tuple[str, _Case]] = []
    if "naive" in cases:
        runs += [("fp32", c) for c in _make_cases(model, image, device, torch.float32, ["naive"])]
    for dtype in dtypes:
        engine_cases = [c for c in cases if c != "naive"]
        runs += [(_precision_name(dtype), c) for c in _make_cases(model, image, device, dtype, engine_cases, tile)]
    mm = matmul_timer(matmul_size) if matmul_size and device.type == "cpu" else None
    mm_samples: list[float] = []
    reference: torch.Tensor | None = None
    diffs: dict[tuple[str, str], float] = {}
    for prec, case in runs:  # warm-up, and the outputs to compare (naive, when measured, runs first)
        on_progress(f"{model.source} {size[1]}x{size[0]} {prec} {case.name}: warm-up")
        out = case.run().float().cpu()
        sync(device)
        if case.name == "naive":
            reference = out
        if reference is not None:
            diffs[prec, case.name] = float((out - reference).abs().max())
        del out
    if mm:
        mm_samples.append(mm())
    for r in range(repeats):
        on_progress(f"{model.source} {size[1]}x{size[0]}: repeat {r + 1}/{repeats}")
        for prec, case in runs:
            sync(device)
            t0 = time.perf_counter()
            case.run()
            sync(device)
            case.samples.append(time.perf_counter() - t0)
        if mm:
            mm_samples.append(mm())
    del reference
    macs = macs_per_pixel(model.module)
    in_pixels = size[0] * size[1]
    out_pixels = in_pixels * model.scale**2

    def describe(prec: str, case: _Case) -> dict:
        seconds = median(case.samples)
        peak = None
        if memory:
            on_progress(f"{model.source} {size[1]}x{size[0]} {prec} {case.name}: peak memory")
            if device.type == "cuda":
                peak = _peak_cuda_mib(case, device)
            else:
                peak = _peak_rss_mib(model, size, prec, case.name, threads, case.tile)
        diff = diffs.get((prec, case.name))
        return {
            "seconds": seconds,
            "samples": case.samples,
            "output_mp_s": out_pixels / seconds / 1e6,
            "gflop_s": 2 * macs * in_pixels / seconds / 1e9,
            "peak_mib": peak,
            "tile": case.tile,
            "max_abs_diff": diff,
        }

    naive = next((describe("fp32", c) for p, c in runs if c.name == "naive"), None)
    results = []
    for dtype in dtypes:
        prec = _precision_name(dtype)
        found = {c.name: describe(prec, c) for p, c in runs if p == prec and c.name != "naive"}
        if naive is not None:
            found = {"naive": naive, **found}
        ratios, paired = {}, {}
        for a, b in (("whole", "naive"), ("tiled", "naive"), ("tiled", "whole")):
            if a in found and b in found:
                ratios[f"{a}_vs_{b}"] = found[b]["seconds"] / found[a]["seconds"]
                paired[f"{a}_vs_{b}"] = median([tb / ta for ta, tb in zip(found[a]["samples"], found[b]["samples"])])
        results.append({
            "model": model.source,
            "variant": model.variant,
            "scale": model.scale,
            "size": list(size),
            "precision": prec,
            "macs_per_pixel": macs,
            "matmul_samples_gflop_s": mm_samples,
            "cases": found,
            "ratios": ratios,
            "paired_ratios": paired,
        })
    return results


# ---------------------------------------------------------------- quality for the plot


def set_psnr(upscale: Callable, folder: Path, scale: int) -> float:
    """Mean PSNR-Y over the pairs in ``folder`` (BasicSR protocol) of ``upscale`` (float HWC)."""
    from .evaluate import evaluate, find_pairs

    return evaluate(find_pairs(folder), upscale, scale).psnr_y


def _bicubic(rgb, scale: int):
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None]
    y = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    return y[0].clamp_(0, 1).permute(1, 2, 0).numpy()


def bicubic_point(size: tuple[int, int], scale: int, eval_dir: Path | None, repeats: int = 3) -> dict:
    """Throughput and PSNR of plain bicubic upsampling: ``torch`` bicubic (a = -0.75), float32,
    CPU. Its Set5 PSNR-Y is 0.2-0.3 dB above MATLAB's ``imresize`` (a = -0.5) figures
    usually quoted (33.97 / 28.63 against 33.67 / 28.43 dB at x2 / x4)."""
    rgb = synthetic_image(*size).permute(1, 2, 0).numpy()
    samples = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        _bicubic(rgb, scale)
        samples.append(time.perf_counter() - t0)
    seconds = median(samples[1:])
    psnr = set_psnr(lambda im: _bicubic(im, scale), eval_dir / f"x{scale}", scale) if eval_dir else None
    return {"scale": scale, "output_mp_s": size[0] * size[1] * scale**2 / seconds / 1e6, "psnr_y": psnr}


# --------------------------------------------------------------------------- the report


def _expand_weights(paths: Sequence[str]) -> list[str]:
    out: list[str] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out += sorted(str(f) for f in path.iterdir() if f.suffix.lower() in (".pth", ".safetensors"))
        else:
            out.append(p)
    return out


def _thread_counts(threads: int | Sequence[int] | None, device: torch.device) -> list[int]:
    if isinstance(threads, int):
        return [threads]
    if threads:
        return list(dict.fromkeys(threads))
    if device.type != "cpu":
        return [torch.get_num_threads()]
    return list(dict.fromkeys((1, all_cores())))


def _add_peak(result: dict, peak: float | None) -> None:
    """The achieved GFLOP/s of each case as a fraction of the matmul peak at its thread count:
    ``peak_fraction`` from the median run, ``peak_fraction_best`` from the fastest (the peak
    is a best too; on a loaded machine the two differ)."""
    result["matmul_peak_gflop_s"] = peak
    flop = 2 * result["macs_per_pixel"] * result["size"][0] * result["size"][1]
    result["peak_fraction"] = {name: (c["gflop_s"] / peak if peak else None) for name, c in result["cases"].items()}
    result["peak_fraction_best"] = {name: (flop / min(c["samples"]) / 1e9 / peak if peak else None)
                                    for name, c in result["cases"].items()}


def run_bench(
    *,
    models: Sequence[str] = (),
    weights: Sequence[str] = (),
    sizes: Sequence[int | tuple[int, int]] = (512,),
    device: torch.device,
    dtypes: Sequence[torch.dtype],
    repeats: int = 3,
    cases: Sequence[str] = CASES,
    memory: bool = True,
    threads: int | Sequence[int] | None = None,
    photo: bool = False,
    matmul_size: int = 2048,
    tile: int | None = None,
    tile_search: bool | None = None,
    eval_dir: Path | None = None,
    pipeline: Path | None = None,
    pipeline_weights: str | None = None,
    on_progress: Progress = noop,
) -> dict:
    """The whole ``lia-upscale bench`` report as one JSON-ready dict.

    ``models`` (registry names) and ``weights`` (files, or folders of .pth/.safetensors)
    name the models; none means the default x4 model. ``sizes``: square input edges, or
    (H, W). ``photo`` adds :data:`PHOTO_SIZES` (1 and 12 MP), engine cases only.
    ``threads``: the CPU thread counts to measure each case at (default on the CPU: 1 and
    :func:`~lia_upscale.tools.cpu.all_cores`); torch's own count is restored on return.
    ``matmul_size``: edge of the float32 matmul whose best GFLOP/s is each thread count's
    peak, timed alone (best of 5) and between the rounds of cases (0: not measured; CPU only). ``tile``: the tiled case's tile edge (default: the
    engine's for the device). ``tile_search`` (default: on CUDA) adds each model's largest
    tile per dtype. ``eval_dir`` (a folder with ``x2``/``x4`` pair folders, e.g. Set5) adds
    each model's PSNR-Y and a bicubic point, for the plot. ``pipeline`` (a folder of images)
    adds a :func:`~lia_upscale.tools.pipeline.pipeline_check` with ``pipeline_weights``
    (default: the first model). The later parts run at the last thread count.

    Each result (one per model, size, precision and thread count) carries ``threads``,
    ``matmul_peak_gflop_s`` and ``peak_fraction`` (case -> achieved / peak GFLOP/s); the
    report carries ``thread_counts``, ``threads`` (the largest), ``cpu``
    (:func:`~lia_upscale.tools.cpu.cpu_features`), ``matmul_peak`` (per thread count) and
    ``baseline`` (what ``naive`` is).
    """
    counts = _thread_counts(threads, device)
    with torch_threads(None):  # whatever happens below, torch's thread count is restored
        return _run_bench(
            models=models, weights=weights, sizes=sizes, device=device, dtypes=dtypes, repeats=repeats,
            cases=cases, memory=memory, counts=counts, photo=photo, matmul_size=matmul_size, tile=tile,
            tile_search=tile_search, eval_dir=eval_dir, pipeline=pipeline, pipeline_weights=pipeline_weights,
            on_progress=on_progress,
        )


def _run_bench(*, models, weights, sizes, device, dtypes, repeats, cases, memory, counts, photo, matmul_size,
               tile, tile_search, eval_dir, pipeline, pipeline_weights, on_progress) -> dict:
    from ..api import resolve_model_source

    sources = [*models, *_expand_weights(weights)]
    if not sources and (cases or eval_dir or not pipeline):
        sources = [str(resolve_model_source(None, None, 4, "clean"))]
    shapes = [(s, s) if isinstance(s, int) else tuple(s) for s in sizes]
    plan = [(shape, list(cases)) for shape in shapes]
    if photo:
        plan += [(shape, [c for c in cases if c != "naive"]) for shape in PHOTO_SIZES]
    plan = [(shape, chosen) for shape, chosen in plan if chosen]
    report: dict = {
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "threads": max(counts),
        "thread_counts": counts,
        "repeats": repeats,
        "cases": list(cases),
        "baseline": "naive: tools/upstream.py, a port of the upstream PlainUSR inference network, "
                    "model(x) on the whole image, float32, inference_mode",
        "cpu": cpu_features(),
        "matmul_peak": [],
        "results": [],
    }
    if tile_search is None:
        tile_search = device.type == "cuda"
    loaded = [load_model(source) for source in sources]
    cpu_peak = bool(matmul_size) and device.type == "cpu"
    for n in counts:
        torch.set_num_threads(n)
        standalone = None
        if cpu_peak:
            on_progress(f"float32 matmul peak, {n} thread(s)")
            standalone = matmul_peak(matmul_size)
        done = []
        for model in loaded:
            for shape, chosen in plan:
                done += bench_model(model, shape, device, dtypes, repeats=repeats, cases=chosen, memory=memory,
                                    threads=n, tile=tile, matmul_size=matmul_size if cpu_peak else 0,
                                    on_progress=on_progress)
        peak = None
        if cpu_peak:  # the best matmul seen at this thread count, alone or between the cases
            peak = max([standalone, *(g for r in done for g in r["matmul_samples_gflop_s"])])
            report["matmul_peak"].append({"threads": n, "size": matmul_size, "gflop_s": peak,
                                          "standalone_gflop_s": standalone})
        for r in done:
            r["threads"] = n
            _add_peak(r, peak)
        report["results"] += done
    for source, model in zip(sources, loaded):
        entry_results = [r for r in report["results"] if r["model"] == model.source]
        if tile_search:
            for dtype in dtypes:
                on_progress(f"{source}: largest tile in {_precision_name(dtype)}")
                found = largest_tile(memory_probe(model.module, device, dtype), resolution=48)
                for r in entry_results:
                    if r["precision"] == _precision_name(dtype):
                        r["largest_tile"] = found
                report.setdefault("largest_tile", []).append(
                    {"model": source, "precision": _precision_name(dtype), "tile": found})
        if eval_dir is not None:
            on_progress(f"{source}: PSNR on {eval_dir / f'x{model.scale}'}")
            engine = Engine(model.module, device, dtypes[0], 0)
            psnr = set_psnr(lambda rgb: engine.run(rgb).clamp_(0, 1).permute(1, 2, 0).numpy(),
                            eval_dir / f"x{model.scale}", model.scale)
            for r in entry_results:
                r["psnr_y"] = psnr
            report.setdefault("quality", []).append(
                {"model": source, "variant": model.variant, "scale": model.scale, "psnr_y": psnr})
    if len({torch.float16, torch.float32} & set(dtypes)) == 2:
        report["fp16_vs_fp32"] = _fp16_vs_fp32(report["results"])
    if eval_dir is not None:
        scales = sorted({m.scale for m in loaded}) or [4]
        edge = shapes[0] if shapes else (512, 512)
        report["bicubic"] = [bicubic_point(edge, s, eval_dir) for s in scales]
    if pipeline is not None:
        from .pipeline import pipeline_check

        source = pipeline_weights or (sources[0] if sources else str(resolve_model_source(None, None, 2, "clean")))
        report["pipeline"] = pipeline_check(
            pipeline, source, device=str(device), precision=_precision_name(dtypes[0]),
            repeats=repeats, on_progress=on_progress,
        )
    return report


def _fp16_vs_fp32(results: Sequence[dict]) -> list[dict]:
    out = []
    by_key = {(r["model"], tuple(r["size"]), r["precision"], r.get("threads")): r for r in results}
    for (model, size, prec, threads), r in by_key.items():
        other = by_key.get((model, size, "fp32", threads))
        if prec != "fp16" or other is None:
            continue
        entry = {"model": model, "size": list(size), "threads": threads}
        for case in ("whole", "tiled"):
            if case in r["cases"] and case in other["cases"]:
                entry[case] = other["cases"][case]["seconds"] / r["cases"][case]["seconds"]
        out.append(entry)
    return out
