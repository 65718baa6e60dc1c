"""The one-image pipeline against two images at once, one torch thread each (CPU).

    python scripts/pipeline_workers_ab.py [--model NAME | --weights FILE] [--rounds 3]

Per round, alternating in one process: the network alone over the folder's images (torch
on all cores), :func:`lia_upscale.batch.run_jobs` with one lane (the network on the calling
thread, file work in worker threads), and two plain worker threads that each decode,
upscale and encode whole images with one torch thread. Prints each one's wall time over
the network-alone time. This measurement is why ``run_jobs`` runs two lanes where memory
allows (:func:`lia_upscale.batch.image_lanes`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from lia_upscale.pipeline import OutputSpec, process
from lia_upscale.pipeline.network import run_network
from lia_upscale import Upscaler, images
from lia_upscale.batch import Job, plan_jobs, run_jobs

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "large" / "sceaux"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lia-u-x2")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--folder", default=str(PHOTOS))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    up = Upscaler(model=args.model, weights=args.weights, device="cpu")
    cores = torch.get_num_threads()

    def whole_job(job: Job) -> None:
        picture = images.decode(job.src)
        process(up, picture, job.dst, OutputSpec(fmt=job.fmt, overwrite=True))

    ratios: dict[str, list[float]] = {"pipeline": [], "two_workers": []}
    with tempfile.TemporaryDirectory() as tmp:
        jobs = plan_jobs([args.folder], tmp)
        pictures = [images.decode(j.src) for j in jobs]
        run_network(up.engine, up.tta, pictures[0])
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            for picture in pictures:
                run_network(up.engine, up.tta, picture)
            alone = time.perf_counter() - t0
            t0 = time.perf_counter()
            run_jobs(jobs, up, spec=OutputSpec(overwrite=True), lanes=1)
            ratios["pipeline"].append((time.perf_counter() - t0) / alone)
            torch.set_num_threads(1)
            try:
                t0 = time.perf_counter()
                with ThreadPoolExecutor(2) as pool:
                    list(pool.map(whole_job, jobs))
                ratios["two_workers"].append((time.perf_counter() - t0) / alone)
            finally:
                torch.set_num_threads(cores)
    print(json.dumps({"median": {k: statistics.median(v) for k, v in ratios.items()}, "samples": ratios}, indent=1))


if __name__ == "__main__":
    main()
