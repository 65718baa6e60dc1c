"""Measured speed: the upstream network against our engine, whole and tiled; memory; quality.

Everything here returns data (JSON-ready dicts); the CLI (``lia-upscale bench``) prints.
:func:`run_bench` measures the cases of :mod:`.benchcases` for every model, input size,
precision and CPU thread count, and adds what the report and its plot need.

Every size runs at one thread and at all cores (:func:`~lia_upscale.tools.cpu.all_cores`)
unless told otherwise, and torch's thread count is restored afterwards. Achieved GFLOP/s
(:func:`~lia_upscale.tools.benchcases.bench_model`) are reported as a fraction of the
float32 matmul peak (:func:`~lia_upscale.tools.cpu.matmul_peak`) at the same thread count.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from ..engine import Engine
from ..models import load_model
from .benchcases import CASES, bench_model, precision_name
from .cpu import all_cores, cpu_features, matmul_peak, torch_threads
from .measure import Progress, device_name, median, noop, synthetic_image
from .tilesearch import largest_tile, memory_probe

__all__ = [
    "PHOTO_SIZES",
    "largest_tile",
    "memory_probe",
    "set_psnr",
    "bicubic_point",
    "run_bench",
]

#: (H, W) of the ``photo`` sizes: a 1-MP and a 12-MP 4:3 photo (engine cases only).
PHOTO_SIZES = ((864, 1152), (3000, 4000))


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
                on_progress(f"{source}: largest tile in {precision_name(dtype)}")
                found = largest_tile(memory_probe(model.module, device, dtype), resolution=48)
                for r in entry_results:
                    if r["precision"] == precision_name(dtype):
                        r["largest_tile"] = found
                report.setdefault("largest_tile", []).append(
                    {"model": source, "precision": precision_name(dtype), "tile": found})
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
            pipeline, source, device=str(device), precision=precision_name(dtypes[0]),
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
