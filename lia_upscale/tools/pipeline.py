"""Batch pipelining measured: a folder through :func:`~lia_upscale.batch.run_jobs` against the network alone.

``lia-upscale bench --pipeline FOLDER`` reports it; the figure that matters is ``ratio``,
the batch's wall time over the sum of the model's compute time for the same images.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from .. import images
from ..errors import ImageError
from .measure import Progress, median, noop

__all__ = ["pipeline_check"]


def pipeline_check(
    folder: Path,
    weights: str | Path,
    *,
    device: str = "auto",
    precision: str = "auto",
    repeats: int = 1,
    quality: int | None = None,
    on_progress: Progress = noop,
) -> dict:
    """Run a folder through :func:`~lia_upscale.batch.run_jobs` and compare with the network alone.

    ``compute_s``: the sum over the images of the model's compute,
    :func:`lia_upscale.pipeline.network.run_network` on an already decoded picture (the network and the
    tiling). ``wall_s``: the whole pipelined batch (decode ahead; finish, i.e. clamp and
    convert, and encode behind; outputs in the input's format into a temporary folder).
    ``ratio`` = wall / compute: 1.0 means all of the file work is hidden. Repeats
    alternate and report medians; ``decode_s``, ``finish_s`` and ``encode_s`` are what the
    hidden work costs on its own (measured once, sequentially).

    Where the rest goes: ``network_in_batch_s`` is the network's time inside the batch
    (:func:`lia_upscale.pipeline.start`, which also quantises, and writes a PNG or TIFF band by band;
    above ``compute_s`` when the worker threads compete with it for the cores) and
    ``waiting_s`` = wall - network in batch, the calling thread's time outside the network
    (the first decode, the last encode, and any stall of the pipeline). ``lanes``: images
    the batch ran at once (:func:`~lia_upscale.batch.image_lanes`); with two, the networks
    overlap and ``waiting_s`` is None, and ``network_in_batch_s`` sums both lanes' time.
    """
    from ..api import Upscaler
    from ..batch import run as batch_run
    from ..batch.plan import plan_jobs
    from ..batch.run import image_lanes, run_jobs  # looked up now: a test may replace image_lanes
    from ..pipeline import OutputSpec
    from ..pipeline.network import finish_picture, run_network

    up = Upscaler(model=str(weights), device=device, precision=precision)  # a name or a file
    with tempfile.TemporaryDirectory(prefix="lia-bench-") as tmp:
        jobs = plan_jobs([str(folder)], tmp)
        if not jobs:
            raise ImageError(f"{folder}: no images to time (PNG, JPEG, WEBP, TIFF, BMP, HEIC or AVIF)")
        decode_s, finish_s, encode_s, compute, walls = [], [], [], [], []
        pictures = []
        for job in jobs:
            t0 = time.perf_counter()
            pictures.append(images.decode(job.src))
            decode_s.append(time.perf_counter() - t0)
        on_progress(f"pipeline: {len(jobs)} images, warm-up")
        run_network(up.engine, up.tta, pictures[0])

        def network(picture):
            return run_network(up.engine, up.tta, picture)

        render = batch_run.start  # what the batch calls: the network, quantising (and a PNG/TIFF's writing)
        in_batch: list[list[float]] = []

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            finish = render(*args, **kwargs)
            in_batch[-1].append(time.perf_counter() - t0)
            return finish

        for r in range(repeats):
            on_progress(f"pipeline: repeat {r + 1}/{repeats}, the network alone")
            times = []
            for job, pic in zip(jobs, pictures):
                t0 = time.perf_counter()
                output = network(pic)
                times.append(time.perf_counter() - t0)
                if r == 0:
                    t0 = time.perf_counter()
                    result = finish_picture(pic, output, (pic.height * up.scale, pic.width * up.scale))
                    finish_s.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    images.encode(result, _Sink(), job.fmt, quality=quality, dpi_scale=up.scale)
                    encode_s.append(time.perf_counter() - t0)
                    del result
                del output
            compute.append(sum(times))
            on_progress(f"pipeline: repeat {r + 1}/{repeats}, run_jobs")
            in_batch.append([])
            batch_run.start = timed  # type: ignore[assignment]
            try:
                t0 = time.perf_counter()
                outcomes = run_jobs(jobs, up, spec=OutputSpec(quality=quality, overwrite=True))
                walls.append(time.perf_counter() - t0)
            finally:
                batch_run.start = render  # type: ignore[assignment]
            failed = [o for o in outcomes if o.status != "done"]
            if failed:
                raise RuntimeError(f"pipeline: {failed[0].job.src}: {failed[0].error}")
    pixels = sum(p.height * p.width for p in pictures)
    lanes = image_lanes(up, [(p.height, p.width) for p in pictures])
    return {
        "folder": str(folder),
        "model": str(weights),
        "images": len(jobs),
        "input_mp": pixels / 1e6,
        "formats": sorted({j.fmt for j in jobs}),
        "threads": torch.get_num_threads(),
        "lanes": lanes,
        "compute_s": median(compute),
        "wall_s": median(walls),
        "ratio": median([w / c for w, c in zip(walls, compute)]),
        "network_in_batch_s": median([sum(t) for t in in_batch]),
        "waiting_s": median([w - sum(t) for w, t in zip(walls, in_batch)]) if lanes == 1 else None,
        "decode_s": sum(decode_s),
        "finish_s": sum(finish_s),
        "encode_s": sum(encode_s),
        "compute_samples": compute,
        "wall_samples": walls,
    }


class _Sink:
    """A binary stream that only counts: encoding cost without the disk."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data) -> int:
        self.size += len(data)
        return len(data)
