"""The benchmark's cases for one model and input size: timed alternating, their memory, their outputs compared.

Speed claims are ratios measured in one process with the cases alternating, repeated,
taking the median, so that background load affects all of them alike. The cases:

- ``naive``: the baseline, :class:`~lia_upscale.tools.upstream.UpstreamPlainUSR` (a
  minimal port of the authors' deploy network, same weights) called as ``model(x)`` on
  the whole image, float32, contiguous NCHW, under ``torch.inference_mode``, its output
  copied to the host as the engine's is (a no-op on the CPU);
- ``whole``: :class:`~lia_upscale.engine.Engine` with ``tile=0`` (our whole-image path);
- ``tiled``: the Engine with its default tile for the device.

Throughput is output megapixels per second; achieved GFLOP/s counts two FLOPs per
multiply-add of the network's convolutions (:func:`macs_per_pixel`) over the image's input
pixels, so tiling overlap is not counted as useful work.
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
from torch import nn

from ..engine import Engine
from ..engine.device import PRECISIONS
from ..models import Model, load_model
from .cpu import matmul_timer
from .measure import Progress, macs_per_pixel, median, noop, sync, synthetic_image
from .upstream import upstream_from_state_dict

__all__ = ["CASES", "bench_model", "peak_child", "precision_name"]

#: The measured cases, in the order they alternate.
CASES = ("naive", "whole", "tiled")


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
        [sys.executable, "-c", "from lia_upscale.tools.benchcases import peak_child; peak_child()"],
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


def precision_name(dtype: torch.dtype) -> str:
    """The name of a precision in :data:`~lia_upscale.engine.device.PRECISIONS` (``"fp32"``, ...)."""
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
        runs += [(precision_name(dtype), c) for c in _make_cases(model, image, device, dtype, engine_cases, tile)]
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
        prec = precision_name(dtype)
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
