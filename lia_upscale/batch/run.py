"""Batch running: decode, upscale and write the planned jobs, pipelined.

Decoding the next image and finishing and encoding the previous ones run in worker
threads while the network works on the current one; on a CPU, where memory allows, two
images run at once with half the threads each, so that one's file work fills the cores
while the other computes. A folder then costs little more than the network's time
(measured: ``lia-upscale bench --pipeline FOLDER``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from .. import images
from ..api import Upscaler
from ..engine.threads import shared_threads
from ..errors import LiaError, OutputExistsError
from ..files import NotRegularFileError, check_writable_target, discard_temporaries_for, remove_stale_temporaries
from ..pipeline import Finish, OutputSpec, plan_image, read, start
from .plan import Job
from .signals import interrupt_after

__all__ = ["Outcome", "BatchEvents", "ENCODES_IN_FLIGHT", "failure_reason", "image_lanes", "prescreen", "run_jobs"]

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


def failure_reason(exc: Exception) -> str:
    """Why a file failed: our own messages as they are, anything else with its type (whole:
    a path in it may hold a newline; the display makes it one printable line)."""
    text = str(exc)
    return text if isinstance(exc, LiaError) else f"{type(exc).__name__}: {text}".rstrip(": ")


def _outcome_of(job: Job, started: float, exc: Exception | None) -> Outcome:
    """The outcome of a job that ended with ``exc`` (None: done); a file that appeared at
    the destination while it was made, and was kept, is skipped."""
    seconds = time.perf_counter() - started
    if exc is None:
        return Outcome(job, "done", seconds)
    if isinstance(exc, OutputExistsError):
        return Outcome(job, "skipped", seconds, str(exc))
    return Outcome(job, "failed", seconds, failure_reason(exc))


def prescreen(jobs: Sequence[Job], overwrite: bool, exists: Callable[[Job], str | None]) -> tuple[list[Outcome], list[Job]]:
    """(outcomes of jobs settled before they run, jobs left to run), both in job order.

    A job that failed in planning fails; one whose output ``exists(job)`` says is a
    ``"folder"`` fails, as does one whose output is something else that is not a regular
    file (``exists`` returns what it is, e.g. "a named pipe (FIFO)": never replaced,
    ``overwrite`` or not); one whose output is a ``"file"`` is skipped unless ``overwrite``.
    """
    settled: list[Outcome] = []
    todo: list[Job] = []
    for job in jobs:
        kind = None if job.error is not None else exists(job)
        if job.error is not None:
            settled.append(Outcome(job, "failed", error=job.error))
        elif kind == "folder":
            settled.append(Outcome(job, "failed", error=f"{job.dst} is a directory"))
        elif kind not in (None, "file"):
            settled.append(Outcome(job, "failed", error=f"{job.dst} is {kind}, not a regular file: never replaced"))
        elif kind == "file" and not overwrite:
            settled.append(Outcome(job, "skipped"))
        else:
            todo.append(job)
    return settled, todo


def local_output(job: Job) -> str | None:
    """What a local job's output path holds now: ``"folder"``, ``"file"`` (a regular file or a
    dangling link), what else it is (``"a named pipe (FIFO)"``: never written), or None."""
    dst = Path(job.dst)
    if dst.is_dir():
        return "folder"
    try:
        check_writable_target(dst)
    except NotRegularFileError as exc:
        return exc.what
    except OSError:
        pass  # unreadable: the write will say why
    return "file" if os.path.lexists(dst) else None


@dataclass
class _Pending:
    job: Job
    started: float
    future: Future
    finish: Finish
    held: int = 0  # bytes the image holds until written (ImagePlan.held)


def _run_into(future: Future, fn: Callable[..., object], *args: object) -> None:
    """Run ``fn(*args)`` into ``future``, unless it was cancelled before it started."""
    if not future.set_running_or_notify_cancel():
        return
    try:
        future.set_result(fn(*args))
    except BaseException as exc:
        future.set_exception(exc)


class _Stopped(Exception):
    """Raised inside a lane when the batch is interrupted: the image is left unwritten."""


def image_lanes(upscaler: Upscaler, sizes: Iterable[tuple[int, int]]) -> int:
    """How many images the batch runs at once: 2 or 1.

    Two, each with half the CPU threads and half the memory budget, when the engine runs on
    a CPU with at least two threads and two of the largest image fit together: the memory
    model's policy, :meth:`~lia_upscale.engine.budget.MemoryModel.concurrent_images`.
    ``sizes`` (H, W) is only read when the device and threads allow two, so it may be a lazy
    probe of files.
    """
    return upscaler.engine.memory.concurrent_images(sizes, upscaler.max_memory)


def run_jobs(
    jobs: Sequence[Job],
    upscaler: Upscaler,
    *,
    spec: OutputSpec | None = None,
    events: BatchEvents | None = None,
    lanes: int | None = None,
) -> list[Outcome]:
    """Run ``jobs`` in order under ``spec`` (each job's own format); a failing file fails
    alone and the batch goes on.

    Existing outputs are skipped unless ``spec.overwrite``, and a file that appears at an
    output while its image is made is kept and the job reported skipped. ``lanes``: images
    at once (None: :func:`image_lanes` decides from the image headers); ``max_memory`` is
    the whole batch's, shared by the lanes and by the images waiting to be written. With
    two lanes, two worker threads each decode, upscale and write whole images, torch's
    threads split between them; ``on_tile`` then counts the tiles of the images in flight
    together, and outcomes are still reported in job order. With one lane only the network
    runs on the calling thread: decoding runs one image ahead in a worker thread, and
    finishing and encoding run behind in up to :data:`ENCODES_IN_FLIGHT` worker threads.
    On KeyboardInterrupt the encodes in flight are finished (or their temporary files
    removed) before the interrupt propagates; outcomes reported so far stand.
    """
    spec = spec or OutputSpec()
    ev = events or BatchEvents()
    outcomes: list[Outcome] = []

    def report(outcome: Outcome) -> None:
        outcomes.append(outcome)
        ev.on_outcome(outcome)

    settled, todo = prescreen(jobs, spec.overwrite, local_output)
    for outcome in settled:
        report(outcome)
    for folder in sorted({job.dst.parent for job in todo}):
        remove_stale_temporaries(folder)  # left by a run killed outright; a live run's are young
    if lanes is None:
        lanes = image_lanes(upscaler, (images.header_size(job.src) for job in todo))  # headers read only on a CPU
    if lanes > 1 and len(todo) > 1:
        _Lanes(upscaler, lanes, spec, ev).run(todo, report)
    elif todo:
        _Pipelined(todo, upscaler, spec, ev, report).run()
    return outcomes


class _Pipelined:
    """One lane: the network on the calling thread, decoding one image ahead and writing
    behind in worker threads (see :func:`run_jobs`)."""

    def __init__(self, todo: Sequence[Job], upscaler: Upscaler, spec: OutputSpec, ev: BatchEvents,
                 report: Callable[[Outcome], None]) -> None:
        self.todo, self.upscaler, self.spec, self.ev, self.report = todo, upscaler, spec, ev, report
        self.writing: list[_Pending] = []

    def finish_writes(self, keep: int | None) -> None:
        """Report finished writes in order; wait until at most ``keep`` are left (None: no wait)."""
        writing = self.writing
        while writing and ((keep is not None and len(writing) > keep) or writing[0].future.done()):
            p = writing[0]
            try:
                p.future.result()  # an interrupt here leaves p listed, so it is still reported
                outcome: Outcome | None = _outcome_of(p.job, p.started, None)
            except CancelledError:  # never written: not run
                outcome = None
            except Exception as exc:  # one file's failure never stops the batch
                outcome = _outcome_of(p.job, p.started, exc)
            with interrupt_after():  # listed or reported, never neither
                writing.pop(0)
                if outcome is not None:
                    self.report(outcome)

    def network(self, job: Job, picture: images.Picture) -> _Pending:
        """Plan ``picture`` (waiting for writes to make room in the budget) and run its network."""
        up = self.upscaler
        spec = replace(self.spec, fmt=job.fmt)
        plan = plan_image(up, picture, spec, named=Path(job.dst), streamable=True).check()
        if self.writing and plan.need + sum(p.held for p in self.writing) > up.max_memory:
            self.finish_writes(0)  # the images waiting to be written make room first
        self.ev.on_start(job, picture.height * picture.width)
        finish = start(up, picture, job.dst, spec, plan=plan, on_tile=self.ev.on_tile)
        return _Pending(job, 0.0, Future(), finish, plan.held)

    def run(self) -> None:
        todo, up = self.todo, self.upscaler
        with ThreadPoolExecutor(1, thread_name_prefix="decode") as decoder, ThreadPoolExecutor(
            ENCODES_IN_FLIGHT, thread_name_prefix="encode"
        ) as encoder:
            reads = [decoder.submit(read, up, todo[0].src)]
            try:
                for i, job in enumerate(todo):
                    started = time.perf_counter()
                    if i + 1 < len(todo):
                        reads.append(decoder.submit(read, up, todo[i + 1].src))
                    try:
                        picture = reads[i].result()
                        reads[i] = None  # type: ignore[call-overload]
                        pending = self.network(job, picture)
                        pending.started = started
                    except Exception as exc:  # one file's failure never stops the batch
                        self.finish_writes(0)  # earlier images are reported first, in job order
                        self.report(_outcome_of(job, started, exc))
                        continue
                    self.submit(encoder, pending)
                    del picture, pending
                self.finish_writes(0)
            except BaseException:
                self.stop(reads)
                raise

    def submit(self, encoder: ThreadPoolExecutor, pending: _Pending) -> None:
        try:
            # a bounded number of finished images waits for its encoder: bounds memory
            self.finish_writes(ENCODES_IN_FLIGHT - 1)
        except BaseException:
            pending.finish.discard()  # interrupted before it was listed: its file never appears
            raise
        # listed before it is submitted, so an interrupt cannot lose a write
        with interrupt_after():
            self.writing.append(pending)
        encoder.submit(_run_into, pending.future, pending.finish)

    def stop(self, reads: list) -> None:
        """After an interrupt: cancel what has not started, report what finished, remove temporaries."""
        for r in reads:
            if r is not None:
                r.cancel()
        for p in self.writing:  # interrupted before its submission: it never starts
            if p.future.cancel():
                p.finish.discard()
        self.finish_writes(0)
        # a file staged by an image whose Finish the interrupt kept from us
        discard_temporaries_for(job.dst for job in self.todo)


class _Lanes:
    """:func:`run_jobs` with ``lanes`` images at once, each decoded, upscaled and written by one
    thread, each within its share of ``max_memory``.

    On KeyboardInterrupt the lanes stop at their next tile (those images are not written)
    or finish the write they are in; outcomes of finished images are reported first.
    """

    def __init__(self, upscaler: Upscaler, lanes: int, spec: OutputSpec, ev: BatchEvents) -> None:
        self.upscaler, self.lanes, self.spec, self.ev = upscaler, lanes, spec, ev
        self.share = upscaler.max_memory // lanes
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.in_flight: dict[int, tuple[int, int]] = {}  # job index -> (tiles done, tiles planned)

    def tile_counter(self, index: int) -> Callable[[int, int], None]:
        def on_tile(done: int, total: int) -> None:
            if self.stop.is_set():
                raise _Stopped
            with self.lock:
                self.in_flight[index] = (done, total)
                done_all, total_all = (sum(v) for v in zip(*self.in_flight.values(), strict=True))
            self.ev.on_tile(done_all, total_all)

        return on_tile

    def lane(self, index: int, job: Job) -> Outcome | None:
        if self.stop.is_set():
            return None
        up, started = self.upscaler, time.perf_counter()
        try:
            picture = read(up, job.src, budget=self.share)
            self.ev.on_start(job, picture.height * picture.width)
            finish = start(up, picture, job.dst, replace(self.spec, fmt=job.fmt), on_tile=self.tile_counter(index),
                           budget=self.share)
            try:
                with self.lock:
                    self.in_flight.pop(index, None)
            except BaseException:
                finish.discard()
                raise
            finish()
        except _Stopped:
            return None
        except Exception as exc:  # one file's failure never stops the batch
            return _outcome_of(job, started, exc)
        finally:
            with self.lock:
                self.in_flight.pop(index, None)
        return _outcome_of(job, started, None)

    def run(self, todo: Sequence[Job], report: Callable[[Outcome], None]) -> None:
        with shared_threads(self.lanes), ThreadPoolExecutor(self.lanes, thread_name_prefix="lane") as pool:
            futures = [pool.submit(self.lane, i, job) for i, job in enumerate(todo)]
            reported = 0  # futures[:reported] are reported, in job order
            try:
                while reported < len(futures):
                    outcome = futures[reported].result()  # an interrupt here: fetched again below
                    with interrupt_after():
                        if outcome is not None:
                            report(outcome)
                        reported += 1
            except BaseException:
                self.stop.set()
                rest = futures[reported:]
                for future in rest:
                    future.cancel()
                for future in rest:  # a running lane stops at its next tile or finishes its write
                    outcome = None if future.cancelled() else future.result()
                    if outcome is not None:
                        with interrupt_after():
                            report(outcome)
                raise
