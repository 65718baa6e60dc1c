"""The Ray path against the local batch (warm): per-file overhead, and N actors against N threads.

    python scripts/ray_bench.py overhead --files 64 --size 64
    python scripts/ray_bench.py throughput --workers 2 --photos ../shared/datasets/large/sceaux --limit 4

``overhead``: folders of ``--files`` and of twice as many small images through
``batch.run_jobs`` (one process, one torch thread) and ``raybatch.run_jobs`` (a local Ray
instance, one single-thread CPU actor), each run once to warm up (weights loaded, Ray
started) and then timed with ``--overwrite``. Each Ray run starts its actor pool afresh,
so the slope between the two sizes is what Ray adds per file and the rest is its fixed
cost per run (actor start, weights, dataset). ``throughput``: the camera photos through N
single-thread CPU actors against one process with N torch threads. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lia_upscale.pipeline import OutputSpec
from lia_upscale.api import Upscaler
from lia_upscale.batch import is_image, plan_jobs, run_jobs
from lia_upscale import raybatch


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _both(inputs: list[str], out: Path, upscaler_args: dict, workers: int, threads: int) -> dict:
    import ray

    jobs = plan_jobs(inputs, str(out / "local"))
    ray_jobs = plan_jobs(inputs, str(out / "ray"))
    torch.set_num_threads(threads)
    upscaler = Upscaler(**upscaler_args)
    run_jobs(jobs, upscaler, spec=OutputSpec(overwrite=True))  # warm
    local_s = _timed(lambda: run_jobs(jobs, upscaler, spec=OutputSpec(overwrite=True)))
    ray.init(num_cpus=workers + 1, include_dashboard=False, log_to_driver=False)  # one CPU for Ray Data
    try:
        opts = raybatch.RayOptions(workers=workers, threads=1)
        raybatch.run_jobs(ray_jobs, upscaler_args, options=opts, spec=OutputSpec(overwrite=True))  # warm
        ray_s = _timed(lambda: raybatch.run_jobs(ray_jobs, upscaler_args, options=opts, spec=OutputSpec(overwrite=True)))
    finally:
        ray.shutdown()
    return {"files": len(jobs), "local_s": round(local_s, 3), "ray_s": round(ray_s, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["overhead", "throughput"])
    ap.add_argument("--files", type=int, default=64)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--photos", default="../shared/datasets/large/sceaux")
    ap.add_argument("--limit", type=int, default=4)
    ap.add_argument("--scale", type=int, default=2)
    args = ap.parse_args()
    upscaler_args = {"scale": args.scale, "device": "cpu"}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        if args.mode == "overhead":
            rng = np.random.default_rng(0)
            runs = {}
            for n in (args.files, 2 * args.files):
                folder = out / f"in{n}"
                folder.mkdir()
                for i in range(n):
                    Image.fromarray(rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)).save(
                        folder / f"{i:04d}.png")
                runs[n] = _both([str(folder)], out / f"out{n}", upscaler_args, workers=1, threads=1)
            small, large = runs[args.files], runs[2 * args.files]
            per_file = ((large["ray_s"] - small["ray_s"]) - (large["local_s"] - small["local_s"])) / args.files
            fixed = small["ray_s"] - small["local_s"] - per_file * args.files
            result = {"runs": {str(k): v for k, v in runs.items()},
                      "overhead_ms_per_file": round(1000 * per_file, 2), "fixed_s_per_run": round(fixed, 2)}
        else:
            photos = sorted(p for p in Path(args.photos).iterdir() if is_image(p))[: args.limit]  # .JPG too
            result = _both([str(p) for p in photos], out, upscaler_args, workers=args.workers, threads=args.workers)
            result["ray_over_local"] = round(result["local_s"] / result["ray_s"], 3)
    result.update(mode=args.mode, args=vars(args), cpu=platform.processor() or platform.machine(),
                  cores=os.cpu_count(), torch=torch.__version__)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
