"""The actor: one Upscaler per Ray Data actor; it reads, upscales and writes each file itself."""

from __future__ import annotations

import contextlib
import io
import os
import time
from dataclasses import replace
from pathlib import Path, PurePosixPath

from ..api import Upscaler
from ..batch import failure_reason
from ..errors import OutputExistsError
from ..pipeline import OutputSpec, process
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

    def __init__(self, upscaler_args: dict, threads: int, spec: OutputSpec) -> None:
        import torch

        torch.set_num_threads(threads)
        self.upscaler = Upscaler(**upscaler_args)
        self.spec = spec
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
            self._upscale(src, dst, replace(self.spec, fmt=fmt))
        except OutputExistsError as exc:
            return {"key": src, "status": "skipped", "error": str(exc), "seconds": time.perf_counter() - started}
        except Exception as exc:  # one file's failure never stops the batch
            return {"key": src, "status": "failed", "error": failure_reason(exc),
                    "seconds": time.perf_counter() - started}
        return {"key": src, "status": "done", "error": "", "seconds": time.perf_counter() - started}

    def _upscale(self, src: str, dst: str, spec: OutputSpec) -> None:
        """One call of the pipeline; an object store's side read as a (capped) stream, written with one PUT."""
        with contextlib.ExitStack() as stack:
            source: object = Path(src)
            if is_uri(src):
                fsys, path = filesystem(src)
                source = stack.enter_context(fsys.open_input_stream(path))
            if not is_uri(dst):
                process(self.upscaler, source, Path(dst), spec)
                return
            buf = io.BytesIO()  # encoded whole, then one PUT: on an object store a rename is a copy
            process(self.upscaler, source, buf, spec)
        _put(dst, buf.getbuffer(), spec.overwrite)


def _put(dst: str, data, overwrite: bool) -> None:
    """Write ``data`` to the object ``dst``; unless ``overwrite``, an object that appeared there
    while the image was made is kept (OutputExistsError). The check comes just before the PUT:
    pyarrow offers object stores no write-if-absent, so only the moment between the two is open."""
    from pyarrow import fs

    fsys, path = filesystem(dst)
    if not overwrite and fsys.get_file_info(path).type != fs.FileType.NotFound:
        raise OutputExistsError(f"{dst} exists (it appeared while the image was made); kept")
    with fsys.open_output_stream(path) as fp:
        fp.write(data)
