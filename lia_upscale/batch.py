"""Batch jobs: walk inputs, mirror the tree under the output, and run them pipelined.

Decoding the next image and finishing and encoding the previous ones run in worker
threads while the network works on the current one, so a folder costs little more than
the network's time (measured: ``lia-upscale bench --pipeline FOLDER``).
"""

from __future__ import annotations

import glob
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import imageio
from .api import NetworkOutput, Upscaler, save
from .errors import LiaError

__all__ = ["Job", "Outcome", "BatchEvents", "ENCODES_IN_FLIGHT", "plan_jobs", "run_jobs", "UsageError"]

_GLOB_CHARS = set("*?[")
#: Finished images that may wait for (or be in) their encoder at once; each holds its
#: float32 output (12 bytes per output pixel), so this bounds the batch's extra memory.
ENCODES_IN_FLIGHT = 2


class UsageError(LiaError):
    """The command line names inputs or outputs that cannot work (exit status 2)."""


@dataclass(frozen=True)
class Job:
    """One input file and the output it becomes."""

    src: Path
    dst: Path
    fmt: str  # output format name, e.g. "PNG"


@dataclass(frozen=True)
class Outcome:
    """What happened to a job: ``status`` is done, skipped or failed."""

    job: Job
    status: str
    seconds: float = 0.0
    error: str | None = None

    def as_json(self) -> dict:
        """The JSON line a pipeline reads."""
        return {
            "input": str(self.job.src),
            "output": str(self.job.dst),
            "status": self.status,
            "error": self.error,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class BatchEvents:
    """Callbacks the CLI hooks its display to; all optional."""

    on_start: Callable[[Job, int], None] = lambda job, pixels: None  # input pixels
    on_tile: Callable[[int, int], None] = lambda done, total: None
    on_outcome: Callable[[Outcome], None] = lambda outcome: None


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in imageio.FORMAT_SUFFIXES and not path.name.startswith(".")


def _walk(root: Path, exclude: Path, recursive: bool) -> Iterator[Path]:
    paths = root.rglob("*") if recursive else root.glob("*")
    for path in sorted(paths):
        if path.is_file() and _is_image(path) and exclude not in path.resolve().parents:
            yield path


def _glob_base(pattern: str) -> Path:
    parts = Path(pattern).parts
    base = [p for p in _takewhile_literal(parts)]
    return Path(*base) if base else Path(".")


def _takewhile_literal(parts: Sequence[str]) -> Iterator[str]:
    for part in parts:
        if _GLOB_CHARS & set(part):
            return
        yield part


def _out_format(src: Path, fmt: str) -> tuple[str, str]:
    """(format name, suffix) for ``src`` under ``--format fmt`` (same|png|jpg|webp|tiff)."""
    if fmt == "same":
        name = imageio.format_for_suffix(src)
        return name, src.suffix
    name = imageio.format_for_suffix(Path(f"x.{fmt}"))
    return name, "." + fmt


def plan_jobs(inputs: Sequence[str], output: str, *, fmt: str = "same", recursive: bool = True) -> list[Job]:
    """Expand files, folders and glob patterns into jobs mirroring the tree under ``output``.

    ``output`` is a file path when there is exactly one input file and it has an image
    suffix; otherwise a folder. Outputs inside an input folder are never read back.
    Raises UsageError for an input that does not exist or a pattern that matches nothing.
    """
    out = Path(output)
    out_resolved = out.resolve()
    pairs: list[tuple[Path, Path]] = []  # (src, path relative to the output folder)
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            pairs += [(p, p.relative_to(path)) for p in _walk(path, out_resolved, recursive)]
        elif path.is_file():
            pairs.append((path, Path(path.name)))
        elif _GLOB_CHARS & set(item):
            base = _glob_base(item)
            matches = [Path(m) for m in sorted(glob.glob(item, recursive=True))]
            files = [m for m in matches if m.is_file() and _is_image(m) and out_resolved not in m.resolve().parents]
            if not files:
                raise UsageError(f"no image matches {item!r}")
            pairs += [(m, m.relative_to(base)) for m in files]
        else:
            raise UsageError(f"input not found: {item}")
    single_file = len(inputs) == 1 and Path(inputs[0]).is_file()
    jobs: list[Job] = []
    seen: dict[Path, Path] = {}
    for src, rel in pairs:
        name, suffix = _out_format(src, fmt)
        if single_file and out.suffix.lower() in imageio.FORMAT_SUFFIXES:
            dst = out
            name = imageio.format_for_suffix(out) if fmt == "same" else name
        else:
            dst = out / rel.with_suffix(suffix)
        key = dst.resolve()
        if key == src.resolve():
            raise UsageError(f"output would overwrite its input: {src}")
        if key in seen:
            raise UsageError(f"{src} and {seen[key]} would both be written to {dst}")
        seen[key] = src
        jobs.append(Job(src, dst, name))
    return jobs


def _reason(exc: Exception) -> str:
    """One line for a failed file: our own messages as they are, anything else with its type."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text if isinstance(exc, LiaError) else f"{type(exc).__name__}: {text}".rstrip(": ")


@dataclass
class _Pending:
    job: Job
    started: float
    future: Future


def _run_into(future: Future, fn: Callable[..., object], *args: object) -> None:
    """Run ``fn(*args)`` into ``future``, unless it was cancelled before it started."""
    if not future.set_running_or_notify_cancel():
        return
    try:
        future.set_result(fn(*args))
    except BaseException as exc:
        future.set_exception(exc)


def _finish_and_save(
    upscaler: Upscaler,
    picture: imageio.Picture,
    output: NetworkOutput,
    job: Job,
    quality: int | None,
    outscale: float | None,
) -> None:
    """The encoder thread's part: clamp, resample and convert the network's output, then write."""
    result = upscaler.finish_picture(picture, output, outscale)
    save(result, job.dst, job.fmt, quality, dpi_scale=result.height / picture.height)


def run_jobs(
    jobs: Sequence[Job],
    upscaler: Upscaler,
    *,
    overwrite: bool = False,
    quality: int | None = None,
    outscale: float | None = None,
    events: BatchEvents | None = None,
) -> list[Outcome]:
    """Run ``jobs`` in order; a failing file fails alone and the batch goes on.

    Existing outputs are skipped unless ``overwrite``. Only the network runs on the
    calling thread: decoding runs one image ahead in a worker thread, and finishing
    (clamp, resample, conversion) and encoding run behind in up to
    :data:`ENCODES_IN_FLIGHT` worker threads, so a slow encoder (a big PNG) stalls the
    network only when that many images wait. (The engine decides per image whether freed
    memory is kept for reuse; see :class:`~lia_upscale.engine.Engine`.) On
    KeyboardInterrupt the encodes in flight are finished (or their temporary files
    removed) before the interrupt propagates; outcomes reported so far stand.
    """
    ev = events or BatchEvents()
    outcomes: list[Outcome] = []

    def report(outcome: Outcome) -> None:
        outcomes.append(outcome)
        ev.on_outcome(outcome)

    todo = []
    for job in jobs:
        if job.dst.exists() and not overwrite:
            report(Outcome(job, "skipped"))
        else:
            todo.append(job)

    with ThreadPoolExecutor(1, thread_name_prefix="decode") as decoder, ThreadPoolExecutor(
        ENCODES_IN_FLIGHT, thread_name_prefix="encode"
    ) as encoder:
        writing: list[_Pending] = []

        def finish_writes(keep: int | None) -> None:
            """Report finished writes in order; wait until at most ``keep`` are left (None: no wait)."""
            while writing and ((keep is not None and len(writing) > keep) or writing[0].future.done()):
                p = writing[0]
                try:
                    p.future.result()  # an interrupt here leaves p listed, so it is still reported
                    outcome: Outcome | None = Outcome(p.job, "done", time.perf_counter() - p.started)
                except CancelledError:  # never written: not run
                    outcome = None
                except Exception as exc:  # one file's failure never stops the batch
                    outcome = Outcome(p.job, "failed", time.perf_counter() - p.started, _reason(exc))
                writing.pop(0)
                if outcome is not None:
                    report(outcome)

        reads = [decoder.submit(imageio.decode, job.src) for job in todo[:1]]
        try:
            for i, job in enumerate(todo):
                started = time.perf_counter()
                if i + 1 < len(todo):
                    reads.append(decoder.submit(imageio.decode, todo[i + 1].src))
                try:
                    picture = reads[i].result()
                    reads[i] = None  # type: ignore[call-overload]
                    h, w = picture.rgb.shape[:2]
                    ev.on_start(job, h * w)
                    output = upscaler.run_network(picture, ev.on_tile)
                except Exception as exc:  # one file's failure never stops the batch
                    finish_writes(None)
                    report(Outcome(job, "failed", time.perf_counter() - started, _reason(exc)))
                    continue
                # a bounded number of finished images waits for its encoder: bounds memory
                finish_writes(ENCODES_IN_FLIGHT - 1)
                # listed before it is submitted, so an interrupt cannot lose a write
                pending = _Pending(job, started, Future())
                writing.append(pending)
                encoder.submit(_run_into, pending.future, _finish_and_save,
                               upscaler, picture, output, job, quality, outscale)
                del picture, output
            finish_writes(0)
        except BaseException:
            for r in reads:
                if r is not None:
                    r.cancel()
            for p in writing:  # interrupted before its submission: it never starts
                p.future.cancel()
            finish_writes(0)
            raise
    return outcomes
