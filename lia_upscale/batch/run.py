"""Batch running: decode, upscale and write the planned jobs, pipelined.

Decoding the next image and finishing and encoding the previous ones run in worker
threads while the network works on the current one; on a CPU, where memory allows, two
images run at once with half the threads each, so that one's file work fills the cores
while the other computes. A folder then costs little more than the network's time
(measured: ``lia-upscale bench --pipeline FOLDER``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass

from .. import images
from ..api import Finish, NetworkOutput, Upscaler
from ..engine.threads import shared_threads
from ..errors import LiaError
from ..files import discard_temporaries_for, remove_stale_temporaries
from .plan import Job
from .signals import interrupt_after

__all__ = ["Outcome", "BatchEvents", "ENCODES_IN_FLIGHT", "failure_reason", "image_lanes", "run_jobs"]

#: Finished images that may wait for (or be in) their encoder at once; each holds its
#: float32 output (12 bytes per output pixel), so this bounds the batch's extra memory.
ENCODES_IN_FLIGHT = 2


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


def _reason(exc: Exception) -> str:
    """Why a file failed: our own messages as they are, anything else with its type (whole:
    a path in it may hold a newline; the display makes it one printable line)."""
    text = str(exc)
    return text if isinstance(exc, LiaError) else f"{type(exc).__name__}: {text}".rstrip(": ")


def failure_reason(exc: Exception) -> str:
    """The one-line reason a batch reports for a file that failed with ``exc``."""
    return _reason(exc)


@dataclass
class _Pending:
    job: Job
    started: float
    future: Future
    finish: Finish
    held: int = 0  # bytes the image holds until written (Upscaler.memory_for)


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
    picture: images.Picture,
    output: NetworkOutput,
    job: Job,
    quality: int | None,
    outscale: float | None,
) -> None:
    """The encoder thread's part: clamp, resample and convert the network's output, then write."""
    result = upscaler.finish_picture(picture, output, outscale)
    images.save(result, job.dst, job.fmt, quality, dpi_scale=result.height / picture.height)


def _upscale_part(
    upscaler: Upscaler,
    picture: images.Picture,
    job: Job,
    quality: int | None,
    outscale: float | None,
    on_tile: Callable[[int, int], None] | None,
) -> Finish:
    """The network's part of one image; returns the part left for the encoder thread.

    Without ``outscale`` the image goes through :meth:`Upscaler.render` (bounded memory;
    PNG and TIFF written band by band here, JPEG/WEBP/BMP encoded by the returned call);
    with it, the float output is kept for resampling and finished by the returned call.
    """
    if outscale is None:
        return upscaler.render(picture, job.dst, job.fmt, quality, on_tile)
    output = upscaler.run_network(picture, on_tile)
    return Finish(lambda: _finish_and_save(upscaler, picture, output, job, quality, outscale))


class _Stopped(Exception):
    """Raised inside a lane when the batch is interrupted: the image is left unwritten."""


def image_lanes(upscaler: Upscaler, sizes: Iterable[tuple[int, int]]) -> int:
    """How many images the batch runs at once: 2 or 1.

    Two, each with half the CPU threads, when the engine runs on a CPU with at least two
    threads and two of the largest image fit the engine's memory budget together: the
    engine's policy, :meth:`~lia_upscale.engine.Engine.concurrent_images`. ``sizes`` (H, W)
    is only read when the device and threads allow two, so it may be a lazy probe of files.
    """
    return upscaler.engine.concurrent_images(sizes)


def run_jobs(
    jobs: Sequence[Job],
    upscaler: Upscaler,
    *,
    overwrite: bool = False,
    quality: int | None = None,
    outscale: float | None = None,
    events: BatchEvents | None = None,
    lanes: int | None = None,
) -> list[Outcome]:
    """Run ``jobs`` in order; a failing file fails alone and the batch goes on.

    Existing outputs are skipped unless ``overwrite``. ``lanes``: images at once (None:
    :func:`image_lanes` decides from the image headers). With two lanes, two worker
    threads each decode, upscale and write whole images, torch's threads split between
    them; ``on_tile`` then counts the tiles of the images in flight together, and outcomes
    are still reported in job order. With one lane only the network runs on the
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
        if job.error is not None:
            report(Outcome(job, "failed", error=job.error))
        elif job.dst.is_dir():
            report(Outcome(job, "failed", error=f"{job.dst} is a directory"))
        elif job.dst.is_file() and not overwrite:
            report(Outcome(job, "skipped"))
        else:
            todo.append(job)
    for folder in sorted({job.dst.parent for job in todo}):
        remove_stale_temporaries(folder)  # left by a run killed outright; a live run's are young
    if lanes is None:
        lanes = image_lanes(upscaler, (images.header_size(job.src) for job in todo))  # headers read only on a CPU
    if lanes > 1 and len(todo) > 1:
        _run_lanes(todo, upscaler, lanes, quality, outscale, ev, report)
        return outcomes

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
                with interrupt_after():  # listed or reported, never neither
                    writing.pop(0)
                    if outcome is not None:
                        report(outcome)

        reads = [decoder.submit(upscaler.decode, job.src) for job in todo[:1]]
        try:
            for i, job in enumerate(todo):
                started = time.perf_counter()
                if i + 1 < len(todo):
                    reads.append(decoder.submit(upscaler.decode, todo[i + 1].src))
                try:
                    picture = reads[i].result()
                    reads[i] = None  # type: ignore[call-overload]
                    h, w = picture.rgb.shape[:2]
                    held = 0
                    if outscale is None:
                        need, held = upscaler.memory_for(picture, job.fmt)
                        if writing and need + sum(p.held for p in writing) > upscaler.max_memory:
                            finish_writes(0)  # the images waiting to be written make room first
                    ev.on_start(job, h * w)
                    finish = _upscale_part(upscaler, picture, job, quality, outscale, ev.on_tile)
                except Exception as exc:  # one file's failure never stops the batch
                    finish_writes(0)  # earlier images are reported first, in job order
                    report(Outcome(job, "failed", time.perf_counter() - started, _reason(exc)))
                    continue
                pending = _Pending(job, started, Future(), finish, held)
                try:
                    # a bounded number of finished images waits for its encoder: bounds memory
                    finish_writes(ENCODES_IN_FLIGHT - 1)
                except BaseException:
                    finish.discard()  # interrupted before it was listed: its file never appears
                    raise
                # listed before it is submitted, so an interrupt cannot lose a write
                with interrupt_after():
                    writing.append(pending)
                encoder.submit(_run_into, pending.future, finish)
                del picture, finish
            finish_writes(0)
        except BaseException:
            for r in reads:
                if r is not None:
                    r.cancel()
            for p in writing:  # interrupted before its submission: it never starts
                if p.future.cancel():
                    p.finish.discard()
            finish_writes(0)
            # a file staged by an image whose Finish the interrupt kept from us
            discard_temporaries_for(job.dst for job in todo)
            raise
    return outcomes


def _run_lanes(
    todo: Sequence[Job],
    upscaler: Upscaler,
    lanes: int,
    quality: int | None,
    outscale: float | None,
    ev: BatchEvents,
    report: Callable[[Outcome], None],
) -> None:
    """:func:`run_jobs` with ``lanes`` images at once, each decoded, upscaled and written by one thread.

    On KeyboardInterrupt the lanes stop at their next tile (those images are not written)
    or finish the write they are in; outcomes of finished images are reported first.
    """
    stop = threading.Event()
    lock = threading.Lock()
    in_flight: dict[int, tuple[int, int]] = {}  # job index -> (tiles done, tiles planned)

    def tile_counter(index: int) -> Callable[[int, int], None]:
        def on_tile(done: int, total: int) -> None:
            if stop.is_set():
                raise _Stopped
            with lock:
                in_flight[index] = (done, total)
                done_all, total_all = (sum(v) for v in zip(*in_flight.values(), strict=True))
            ev.on_tile(done_all, total_all)

        return on_tile

    def lane(index: int, job: Job) -> Outcome | None:
        if stop.is_set():
            return None
        started = time.perf_counter()
        try:
            picture = upscaler.decode(job.src)
            h, w = picture.rgb.shape[:2]
            ev.on_start(job, h * w)
            finish = _upscale_part(upscaler, picture, job, quality, outscale, tile_counter(index))
            try:
                with lock:
                    in_flight.pop(index, None)
            except BaseException:
                finish.discard()
                raise
            finish()
        except _Stopped:
            return None
        except Exception as exc:  # one file's failure never stops the batch
            return Outcome(job, "failed", time.perf_counter() - started, _reason(exc))
        finally:
            with lock:
                in_flight.pop(index, None)
        return Outcome(job, "done", time.perf_counter() - started)

    with shared_threads(lanes), ThreadPoolExecutor(lanes, thread_name_prefix="lane") as pool:
        futures = [pool.submit(lane, i, job) for i, job in enumerate(todo)]
        reported = 0  # futures[:reported] are reported, in job order
        try:
            while reported < len(futures):
                outcome = futures[reported].result()  # an interrupt here: fetched again below
                with interrupt_after():
                    if outcome is not None:
                        report(outcome)
                    reported += 1
        except BaseException:
            stop.set()
            rest = futures[reported:]
            for future in rest:
                future.cancel()
            for future in rest:  # a running lane stops at its next tile or finishes its write
                outcome = None if future.cancelled() else future.result()
                if outcome is not None:
                    with interrupt_after():
                        report(outcome)
            raise
