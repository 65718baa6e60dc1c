"""The actor: one Upscaler per Ray Data actor; it reads, upscales and writes each file itself."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path, PurePosixPath

from .. import images
from ..api import Upscaler
from ..batch import failure_reason
from .plan import filesystem, is_uri

__all__ = ["CRASH_HOOK_ENV", "CRASHED", "FileUpscaler", "on_worker"]

#: A test-only hook, read only inside the actor: a file whose stem equals this variable's
#: value makes the worker process exit at once (``os._exit``), as a crash would.
CRASH_HOOK_ENV = "LIA_RAY_TEST_EXIT_ON"
#: The error reported for a file whose worker died on it (after its retries).
CRASHED = "worker crashed"
#: The status row's columns.
COLUMNS = ("key", "status", "error", "seconds")


def on_worker(name: str | Path) -> str:
    """The name a worker opens: URIs as they are, plain paths absolute (a worker's cwd is not ours)."""
    return str(name) if is_uri(name) else str(Path(name).absolute())


class FileUpscaler:
    """Ray Data's callable class: one Upscaler per actor; one status row per file."""

    def __init__(self, upscaler_args: dict, threads: int, quality: int | None, outscale: float | None) -> None:
        import torch

        torch.set_num_threads(threads)
        self.upscaler = Upscaler(**upscaler_args)
        self.quality = quality
        self.outscale = outscale
        self.crash_on = os.environ.get(CRASH_HOOK_ENV)

    def __call__(self, batch: dict) -> dict:
        rows = [self.one(src, dst, fmt) for src, dst, fmt in zip(batch["src"], batch["dst"], batch["fmt"], strict=True)]
        return {key: [row[key] for row in rows] for key in COLUMNS}

    def one(self, src: str, dst: str, fmt: str) -> dict:
        """Upscale ``src`` into ``dst``; its status row (a failure is a row, never an exception)."""
        started = time.perf_counter()
        if self.crash_on and PurePosixPath(src).stem == self.crash_on:
            os._exit(70)
        try:
            self._upscale(src, dst, fmt)
        except Exception as exc:  # one file's failure never stops the batch
            return {"key": src, "status": "failed", "error": failure_reason(exc),
                    "seconds": time.perf_counter() - started}
        return {"key": src, "status": "done", "error": "", "seconds": time.perf_counter() - started}

    def _upscale(self, src: str, dst: str, fmt: str) -> None:
        if not is_uri(src) and not is_uri(dst):
            self.upscaler.upscale_file(src, dst, fmt=fmt, quality=self.quality, outscale=self.outscale)
            return
        if is_uri(src):
            fsys, path = filesystem(src)
            with fsys.open_input_stream(path) as fp:
                picture = self.upscaler.decode(fp.read())
        else:
            picture = self.upscaler.decode(Path(src))
        result = self.upscaler.upscale_picture(picture, self.outscale)
        dpi_scale = result.height / picture.height
        if not is_uri(dst):
            images.save(result, Path(dst), fmt, self.quality, dpi_scale=dpi_scale)
            return
        buf = io.BytesIO()  # encoded whole, then one PUT: on an object store a rename is a copy
        images.encode(result, buf, fmt, quality=self.quality, dpi_scale=dpi_scale)
        fsys, path = filesystem(dst)
        with fsys.open_output_stream(path) as fp:
            fp.write(buf.getbuffer())
